# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A power-down killed inside the switch's bundle of its first wave, and run again: what the
resumed moves cost the traffic, and where the lab counted the packets it lost.

    .venv/bin/python bench/resumed_moves.py [--rounds 3] [--rate 5000] [--verify-rate 5000] [--system-trunks] [--keep-lab]

Run as root from the checkout, with no other lab carrying traffic. It uses the example lab
(inventory/lab, prefix ``fsl``: lab-up, uncordon, deploy-chain; lab-down at the end unless
``--keep-lab``). ``--system-trunks`` runs it on a copy of that inventory whose host trunks are
``system`` ports (AF_PACKET) instead of the lab's ``afxdp-nonpmd``: Open vSwitch 3.1 does not
report an AF_XDP ring that overflowed, a packet socket's drops are counted (``ss -0 -m``).

Each round, under the probe's background session through web (16 flows at ``--rate`` pps,
destination ports 8040-8055, source ports 40000 up): ``playbooks/power-down.yml`` (10 %
headroom, each chain's verify and move probes capped at ``--verify-rate`` pps) killed with SIGKILL 0.3 s after the banner of the switch's bundle
of its first wave (tests/integration/ansible_cli.py ``killed_at``, as the quiet-hours test), then
run again to its end. Every drop counter of the lab is read before the re-run and, every second
or so during it, again (the hosts it switches off keep their last reading): each packet socket's
drops, every qdisc's and every link's (the machine's namespaces, each lab host's and each
instance's inside it), Open vSwitch's own (each ``ovs-vswitchd``'s interface statistics,
``coverage/show`` drop counters, ``dpctl/show`` lost), UDP buffer errors and the CPUs' backlog.
Then ``playbooks/power-up.yml`` (a failed one - the lab's TCG guest that broke in its live move
- is followed by lab-up, uncordon-host and deploy-chain).

Per round it prints the session's figures, the resumed moves, the re-run's moves with their loss
bursts (ms from the wave's start) and the counters that grew beyond the lab's background noise
(the hosts' internal ports and the pipeline's drops of traffic no chain takes are left out of the
table, kept in the JSON), and the JSON keeps the re-run's tasks with their times from the wave's
start, to set beside the loss bursts. Everything goes to bench/results/resumed-moves-<time>.json.
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration"))
from ansible_cli import killed_at, playbook  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position
from traffic import probe_session  # noqa: E402  pylint: disable=wrong-import-position

HOSTS = ("mh1", "mh2", "mh3", "spare1")
LAB = LabHosts(HOSTS)
SWITCH_DURING = "The switch's chain flows, one atomic bundle (flows_during, "
PACK = ["-e", '{"flowstream_power_down": {"headroom": 0.1}}']
NOISE = ("fs-host", "drop_action_of_pipeline", " br0 rx")


def _out(argv):
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _places():
    """(name, command prefix) of every namespace the lab forwards in."""
    yield "machine", []
    for ns in ("fsl-source", "fsl-sink", "fsl-bb1"):
        yield ns, ["ip", "netns", "exec", ns]
    for host in HOSTS:
        enter = LAB.enter(host)
        if subprocess.run(enter + ["true"], capture_output=True, check=False).returncode:
            continue    # switched off
        yield host, enter
        for line in _out(enter + ["ip", "netns", "list"]).splitlines():
            if line.startswith("fs-"):
                yield "%s/%s" % (host, line.split()[0]), enter + ["ip", "netns", "exec", line.split()[0]]


def drop_counters():
    """{'<namespace> <what> <name>': count} of every drop counter of the lab."""
    out = {}
    for tag, pre in _places():
        for line in _out(pre + ["ss", "-0", "-a", "-m"]).splitlines()[1:]:
            m = re.search(r"\*:(\S+).*d(\d+)\)", line)
            if m:
                out["%s socket %s" % (tag, m.group(1))] = int(m.group(2))
        dev = None
        for line in _out(pre + ["tc", "-s", "qdisc"]).splitlines():
            m = re.match(r"qdisc (\S+) \S+ dev (\S+)", line)
            if m:
                dev = "%s %s" % (m.group(2), m.group(1))
            m = re.search(r"dropped (\d+)", line)
            if m and dev:
                out["%s qdisc %s" % (tag, dev)] = int(m.group(1))
        for link in json.loads(_out(pre + ["ip", "-s", "-j", "link"]) or "[]"):
            stats = link.get("stats64") or {}
            for way in ("rx", "tx"):
                s = stats.get(way) or {}
                out["%s link %s %s" % (tag, link["ifname"], way)] = sum(s.get(k, 0) for k in ("dropped", "errors", "missed"))
        for line in _out(pre + ["nstat", "-az"]).splitlines():
            parts = line.split()
            if len(parts) > 1 and parts[0] in ("UdpRcvbufErrors", "UdpSndbufErrors", "UdpInErrors", "IpInDiscards", "IpOutDiscards"):
                out["%s nstat %s" % (tag, parts[0])] = int(parts[1])
        if "/" in tag or tag.startswith("fsl-"):
            continue
        for line in _out(pre + ["ovs-appctl", "coverage/show"]).splitlines():
            parts = line.split()
            if parts and "total:" in line and any(w in parts[0] for w in ("drop", "lost", "fail")):
                out["%s ovs %s" % (tag, parts[0])] = int(line.split("total:")[1])
        text = _out(pre + ["ovs-vsctl", "--format=json", "--columns=name,statistics", "list", "interface"])
        for name, stats in json.loads(text)["data"] if text else []:
            for key, value in stats[1]:
                if "drop" in key or "error" in key:
                    out["%s ovs-interface %s %s" % (tag, name, key)] = value
        m = re.search(r"lost:(\d+)", _out(pre + ["ovs-appctl", "dpctl/show"]))
        if m:
            out["%s ovs datapath lost" % tag] = int(m.group(1))
    for cpu, line in enumerate(open("/proc/net/softnet_stat", encoding="ascii")):
        out["cpu%d backlog dropped" % cpu] = int(line.split()[1], 16)
    return out


class Watch(threading.Thread):
    """Reads the counters again and again until stopped; keeps each one's highest reading."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen, self.stop = {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for key, value in drop_counters().items():
                self.seen[key] = max(value, self.seen.get(key, 0))
            time.sleep(0.3)


def ok(run, what):
    if run.rc != 0:
        raise SystemExit("%s failed:\n%s" % (what, run.explain()[-3000:]))
    return run


def whole_again(inventory, cap):
    ok(playbook("playbooks/lab-up.yml", inventory=inventory), "lab-up")
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(HOSTS), inventory=inventory), "uncordon-host")
    ok(playbook("playbooks/deploy-chain.yml", *cap, inventory=inventory), "deploy-chain")


def one_round(inventory, rate, cap):
    with probe_session(dport=8040, flows=16, rate=rate) as figures:
        killed_at("playbooks/power-down.yml", SWITCH_DURING, *PACK, *cap, inventory=inventory)
        half = LAB.placement()
        before = drop_counters()
        watch = Watch()
        watch.start()
        rerun = playbook("playbooks/power-down.yml", *PACK, *cap, inventory=inventory)
        watch.stop.set()
        watch.join()
    grew = {k: v - before.get(k, 0) for k, v in watch.seen.items() if v > before.get(k, 0)}
    planned = rerun.task_results("What moves where, by which method, and why").get("localhost", {}).get("msg") or []
    moves = [r["msg"] for r in rerun.task_results("Move").get("localhost", {}).get("results", [])]
    timeline = tasks_of(rerun)
    up = playbook("playbooks/power-up.yml", *cap, inventory=inventory)
    if up.rc != 0:
        whole_again(inventory, cap)
    return {"session": figures, "half_way": half, "rerun_rc": rerun.rc,
            "resumed": [line.split(" | ")[0] for line in planned if "an interrupted move, resumed" in line],
            "moves": [{k: m.get(k) for k in ("instance", "chain", "kind", "from", "to", "sent", "lost", "reordered", "lost_bursts")}
                      for m in moves],
            "counters_grew": grew, "power_up_rc": up.rc, "tasks": timeline}


def tasks_of(run):
    """[seconds from the first wave's start at the task's start and end, task, hosts that ran it]
    of every task of ``run`` that a host did not skip (the ansible.posix.json callback's times)."""
    def seconds(text):
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    rows, base = [], None
    for play in run.data.get("plays", []):
        for task in play.get("tasks", []):
            for res in task["hosts"].values():
                times = (res.get("ansible_facts") or {}).get("flowstream_wave_times") or {}
                if base is None and times:
                    base = min(t["started"] for t in times.values())
            span = task["task"].get("duration") or {}
            ran = sorted(h for h, r in task["hosts"].items() if not r.get("skipped"))
            if span.get("start") and span.get("end") and ran:
                rows.append([seconds(span["start"]), seconds(span["end"]), task["task"]["name"], ran])
    base = base or (rows[0][0] if rows else 0.0)
    return [[round(a - base, 3), round(b - base, 3), name, ran] for a, b, name, ran in rows]


def system_trunks(workdir):
    """A copy of inventory/lab whose host trunks are system ports."""
    inv = Path(workdir) / "inventory"
    shutil.copytree(TOP / "inventory" / "lab", inv, symlinks=True)
    desc = inv / "platform.flowstream.yml"
    text = desc.read_text(encoding="utf-8")
    if "  port_type: afxdp-nonpmd" not in text:
        raise SystemExit("inventory/lab no longer sets port_type: afxdp-nonpmd - update bench/resumed_moves.py")
    desc.write_text(text.replace("  port_type: afxdp-nonpmd", "  port_type: system"), encoding="utf-8")
    return str(inv)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--verify-rate", type=int, default=5000, help="flowstream_verify_max_rate: each chain's probe rate cap")
    ap.add_argument("--system-trunks", action="store_true")
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="fs-resumed-")
    inventory = system_trunks(workdir) if args.system_trunks else "inventory/lab"
    rounds = []
    cap = ["-e", "flowstream_verify_max_rate=%d" % args.verify_rate]
    try:
        whole_again(inventory, cap)
        for n in range(args.rounds):
            row = one_round(inventory, args.rate, cap)
            rounds.append(row)
            s = row["session"]
            print("round %d: sent %d, lost %d, reordered %d, duplicated %d, longest gap %s ms; re-run rc %d; resumed: %s"
                  % (n + 1, s.get("sent", 0), s.get("lost", 0), s.get("reordered", 0), s.get("duplicated", 0),
                     s.get("max_gap_ms"), row["rerun_rc"], ", ".join(row["resumed"]) or "none"))
            for m in row["moves"]:
                print("  %s %s %s %s->%s: sent %s, lost %s, reordered %s; losses at %s"
                      % (m["instance"], m["chain"], m["kind"], m["from"], m["to"], m["sent"], m["lost"], m["reordered"],
                         ", ".join("%.0f ms (%d)" % (b["after_ms"], b["lost"]) for b in m.get("lost_bursts") or []) or "-"))
            counted = {k: v for k, v in row["counters_grew"].items() if not any(w in k for w in NOISE)}
            print("  drops counted: %s" % (", ".join("%s %d" % kv for kv in sorted(counted.items(), key=lambda kv: -kv[1])[:8]) or "none"))
    finally:
        results = TOP / "bench" / "results"
        results.mkdir(exist_ok=True)
        path = results / ("resumed-moves-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
        path.write_text(json.dumps({"args": vars(args), "rounds": rounds}, indent=1, default=str), encoding="utf-8")
        print("written: %s" % path)
        if not args.keep_lab:
            playbook("playbooks/lab-down.yml", inventory=inventory)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
