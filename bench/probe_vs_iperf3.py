# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cross-check the traffic probe's loss against iperf3, and measure how well it holds a rate.

    .venv/bin/python bench/probe_vs_iperf3.py [--reps 3] [--seconds 5] [--keep-lab]

``--priority N`` runs the probe's two ends under SCHED_FIFO (default: normal scheduling).
Run as root from the checkout. It brings up the probe's own lab (prefix ``fsp``, the one
tests/integration/probe uses: do not run both at once), and takes it down at the end.

1. Rate: the probe (64 flows, 64-byte payloads) and ``iperf3 -u -l 64`` at 1k, 10k and 20k pps
   on the direct path (the switch alone), ``--seconds`` each: the rate each achieved, and loss.
2. Loss on two paths that lose a known share, probe and iperf3 alternately, ``--reps`` times
   each, one flow, 1000-byte payloads (1042-byte frames), 2000 packets per second offered:
   - ``meter``: an OpenFlow meter on the switch (pktps, 1000 packets/s, burst 50) on UDP;
   - ``shaper``: a kernel ``shaper`` instance (tc tbf, 4 Mbit/s, burst 16 kB) on module host mh1.
   Each run is also compared with the path's own count of what it dropped (the meter's band
   counter; the tbf drop counter inside the instance), read before and after the run.

Both tools offer the same packet rate: iperf3 ``-b`` is the payload bit rate, so
``-b = pps * size * 8``. The probe's loss is sent - unique from its own per-flow counts;
iperf3's is the server's ``lost_packets`` (from its sequence numbers). Prints the tables, writes
the numbers as JSON to bench/results/. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration" / "probe"))
sys.path.insert(0, str(TOP / "plugins" / "module_utils"))
import probelab as lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import _probe  # noqa: E402  pylint: disable=wrong-import-position,import-error

IPERF_PORT = 5301
METER = 7


PRIORITY = 0


def probe(rate, seconds, size, flows):
    res = _probe.run_probe({"source_netns": lab.SOURCE_NS, "sink_netns": lab.SINK_NS, "src": lab.SOURCE_IP, "dst": lab.SINK_IP,
                            "flows": flows, "rate": rate, "duration": seconds, "size": size, "priority": PRIORITY})
    t, r = res["totals"], res["rate"]
    return {"tool": "probe", "sent": t["sent"], "received": t["received"], "lost": t["lost"], "loss_percent": t["loss_percent"],
            "achieved_pps": r["achieved_pps"], "max_send_gap_ms": r["max_send_gap_ms"], "max_lag_ms": r["max_lag_ms"],
            "reordered": t["reordered"], "duplicated": t["duplicated"], "max_gap_ms": t["max_gap_ms"],
            "scheduling": r["scheduling"], "socket_drops": res["receiver"]["socket_drops"],
            "window_min_pps": (r.get("window_pps") or {}).get("min"), "window_max_pps": (r.get("window_pps") or {}).get("max")}


def iperf3(rate, seconds, size):
    server = subprocess.Popen(["ip", "netns", "exec", lab.SINK_NS, "iperf3", "-s", "-1", "-B", lab.SINK_IP, "-p", str(IPERF_PORT), "-J"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    try:
        time.sleep(0.5)
        client = subprocess.run(["ip", "netns", "exec", lab.SOURCE_NS, "iperf3", "-c", lab.SINK_IP, "-p", str(IPERF_PORT), "-u",
                                 "-b", str(int(rate * size * 8)), "-l", str(size), "-t", str(seconds), "-J"],
                                capture_output=True, text=True, check=False, timeout=seconds + 30)
        out = server.communicate(timeout=30)[0]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    cli = json.loads(client.stdout)
    if "error" in cli:
        raise SystemExit("iperf3: %s" % cli["error"])
    srv = json.loads(out)["end"]["sum"]
    sent = cli["end"]["sum"]["packets"]
    secs = cli["end"]["sum"]["seconds"]
    return {"tool": "iperf3", "sent": sent, "received": srv["packets"] - srv["lost_packets"], "lost": srv["lost_packets"],
            "loss_percent": round(100.0 * srv["lost_packets"] / sent, 4) if sent else 0.0,
            "achieved_pps": round(sent / secs, 1) if secs else None, "out_of_order": json.loads(out)["end"]["streams"][0]["udp"].get("out_of_order")}


def meter_drops():
    out = lab.sh("ovs-ofctl", "-O", "OpenFlow13", "meter-stats", lab.SWITCH, "meter=%d" % METER).stdout
    return int(out.split("0: packet_count:")[1].split()[0])


def tbf_drops():
    out = lab.sh("nsenter", "--mount=%s/ns/mh1.mnt" % lab.STATE, "--net=/run/netns/fsp-mh1",
                 "ip", "netns", "exec", "fs-bsh1", "tc", "-s", "-j", "qdisc", "show").stdout
    return sum(q.get("drops", 0) for q in json.loads(out) if q.get("kind") == "tbf")


def rate_rows(seconds, reps):
    lab.del_flows()
    lab.add_flows(lab.direct())
    rows = []
    for rate in (1000, 10000, 20000):
        for rep in range(reps):
            for row in (probe(rate, seconds, 64, 64), iperf3(rate, seconds, 64)):
                row.update(asked_pps=rate, rep=rep)
                rows.append(row)
                print("  rate %5d %-6s achieved %9.1f pps  lost %5d  %s" % (
                    rate, row["tool"], row["achieved_pps"], row["lost"],
                    "longest pause %s ms, behind schedule at most %s ms" % (row["max_send_gap_ms"], row["max_lag_ms"])
                    if row["tool"] == "probe" else ""), flush=True)
    return rows


def loss_rows(path, counter, seconds, reps, rate=2000, size=1000):
    rows = []
    for rep in range(reps):
        for tool in ("probe", "iperf3"):
            before = counter()
            row = probe(rate, seconds, size, 1) if tool == "probe" else iperf3(rate, seconds, size)
            row.update(path=path, rep=rep, offered_pps=rate, size=size, path_dropped=counter() - before)
            rows.append(row)
            print("  %-6s %-6s sent %6d received %6d lost %6d (%.2f %%), the path dropped %6d" % (
                path, tool, row["sent"], row["received"], row["lost"], row["loss_percent"], row["path_dropped"]), flush=True)
    return rows


def table(rows, keys, head):
    widths = [max(len(h), *(len(str(r.get(k))) for r in rows)) for k, h in zip(keys, head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(k)).ljust(w) for k, w in zip(keys, widths)) + " |")
    return "\n".join(lines)


def summarise(rows):
    out = []
    for path in ("meter", "shaper"):
        p = [r for r in rows if r["path"] == path and r["tool"] == "probe"]
        i = [r for r in rows if r["path"] == path and r["tool"] == "iperf3"]
        pl = statistics.mean(r["loss_percent"] for r in p)
        il = statistics.mean(r["loss_percent"] for r in i)
        out.append({"path": path, "probe_loss_percent": round(pl, 2), "iperf3_loss_percent": round(il, 2),
                    "ratio": round(pl / il, 3) if il else None,
                    "probe_minus_path_counter": sum(r["lost"] - r["path_dropped"] for r in p),
                    "iperf3_minus_path_counter": sum(r["lost"] - r["path_dropped"] for r in i)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsp lab up at the end")
    ap.add_argument("--priority", type=int, default=0, help="the probe's SCHED_FIFO priority (default 0: normal scheduling)")
    args = ap.parse_args()
    global PRIORITY  # pylint: disable=global-statement
    PRIORITY = args.priority
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    inv = lab.write_inventory(tempfile.mkdtemp(prefix="fsp-bench-"))
    print("lab-up (fsp): %.1f s" % lab.lab_up(inv), flush=True)
    started = time.strftime("%Y%m%d-%H%M%S")
    try:
        rc, res = lab.on_host(inv, "mh1", "processing_module", instance="bsh1", kind="kernel", type="shaper",
                              params={"rate": "4mbit", "burst": "16kb"}, vlans={"left": 201, "right": 202})
        assert rc == 0, res
        print("1. rate accuracy, direct path, 64-byte payloads", flush=True)
        rates = rate_rows(args.seconds, args.reps)
        print("2. loss on lossy paths, 2000 pps of 1000-byte payloads", flush=True)
        lab.sh("ovs-ofctl", "-O", "OpenFlow13", "add-meter", lab.SWITCH,
               "meter=%d,pktps,burst,band=type=drop,rate=1000,burst_size=50" % METER)
        lab.del_flows()
        lab.add_flows(lab.direct() + ["priority=110,udp,in_port=%s,actions=meter:%d,output:%s" % (lab.UPLINK_SRC, METER, lab.UPLINK_SINK)])
        losses = loss_rows("meter", meter_drops, args.seconds, args.reps)
        lab.del_flows()
        lab.add_flows(lab.via(lab.TRUNKS["mh1"], 201, 202))
        losses += loss_rows("shaper", tbf_drops, args.seconds, args.reps)
    finally:
        if not args.keep_lab:
            lab.lab_down(inv)
    summary = summarise(losses)
    print()
    print(table(rates, ["asked_pps", "tool", "rep", "achieved_pps", "window_min_pps", "window_max_pps", "lost", "max_send_gap_ms",
                        "max_lag_ms"],
                ["asked pps", "tool", "run", "achieved pps", "lowest 100 ms", "highest 100 ms", "lost", "longest pause ms",
                 "behind ms"]))
    print()
    print(table(losses, ["path", "tool", "rep", "sent", "received", "lost", "loss_percent", "path_dropped"],
                ["path", "tool", "run", "sent", "received", "lost", "loss %", "path dropped"]))
    print()
    print(table(summary, ["path", "probe_loss_percent", "iperf3_loss_percent", "ratio", "probe_minus_path_counter",
                          "iperf3_minus_path_counter"],
                ["path", "probe loss %", "iperf3 loss %", "probe/iperf3", "probe lost - path dropped", "iperf3 lost - path dropped"]))
    out = TOP / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("probe_vs_iperf3-%s.json" % started)
    path.write_text(json.dumps({"seconds": args.seconds, "reps": args.reps, "priority": args.priority, "load_average": os.getloadavg(),
                                "rates": rates, "losses": losses,
                                "summary": summary}, indent=1) + "\n")
    print("\nwritten: %s" % path.relative_to(TOP))


if __name__ == "__main__":
    main()
