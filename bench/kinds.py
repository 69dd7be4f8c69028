# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The processing-module kinds side by side, in one run: loss-free rate and latency per kind.

    .venv/bin/python bench/kinds.py [--quick] [--kinds kernel,process,click,vm] [--keep-lab]

Run as root from the checkout. It brings up the probe's own lab (prefix ``fsp``, the one
tests/integration/probe and bench/probe_vs_iperf3.py use: do not run them at once; never the
shared ``fsl`` lab), makes the instances on module host mh1, and at the end removes them, its
switch flows and (unless ``--keep-lab``) the lab, also when it fails or is interrupted.

1. Type ``wire`` for kinds kernel, process, click and vm (a TCG guest of the lab's wire image,
   96 MiB, 1 vCPU, which lab-up builds into /var/lib/flowstream-lab-fsp/images/wire), all four
   instances on mh1 at once, plus the direct path (the switch alone) as a reference.
2. Type ``firewall`` with the same rules (``FIREWALL_RULES``) for kinds kernel and click, the
   only kinds that run it. The probe's traffic matches no rule: every packet is checked against
   them and passes.

For each (type, kind) the traffic probe (``_probe.run_probe``: ``FLOWS`` flows, ``SIZE``-byte
UDP payloads, source fsp-source -> sink fsp-sink) is steered through the one instance's VLANs
on mh1's trunk (``probelab.via``) and measures:

a. capacity: the highest offered rate at which all ``PROBES`` probes lost nothing. The rates
   (``RATES``; ``--quick``: ``QUICK_RATES`` and shorter probes) go up; a path is probed no higher
   once a rate lost in any probe (its remaining probes at that rate are skipped), or once the
   probe's sender reached less than 95 % of the offered rate (the figure is then the probe's
   limit, marked ``*``). At each rate the paths take turns, probe by probe, so they share the
   machine's moods alike;
b. latency through the instance at ``LATENCY_RATE`` pps: the probe's own one-way latency (the
   sink's kernel receive timestamp minus the send time in the datagram; both ends on this one
   machine, one clock), p50 and p99 over every packet of a probe, the median over
   ``LATENCY_PROBES`` probes. It includes the switch and the probe's own sockets: the direct
   path's figure, measured alongside, is that floor, and the table also shows each kind's p50
   above it.

Prints per type the sweep (lost per probe at each rate), then one table with every kind's
figures and their ratios to the kernel kind's (kind / kernel: above 1 is a higher capacity, or
a longer latency, than kernel's), writes the numbers as JSON to
bench/results/kinds-<timestamp>.json and prints the command line that produced them. A kind
that cannot run here (no Click binary, no QEMU/libvirtd, no guest image, no traffic through the
instance in time) is reported as unavailable with the reason, never given a number. The lab's
trunks and legs are AF_PACKET ports (``port_type: system``, the private lab's default), not the
fsl lab's AF_XDP trunks: compare the ratios, not the absolute figures, with docs/benchmarks.md.
A full run takes about 10-13 minutes, ``--quick`` about 4-5 (lab-up and lab-down about 40 s of
each).
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
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

KINDS = ("kernel", "process", "click", "vm")
REFERENCE = "kernel"                       # the kind the ratios are taken against
TYPES = {"wire": KINDS, "firewall": ("kernel", "click")}   # each type and the kinds that run it
FIREWALL_RULES = ["ip saddr 198.18.1.99 drop", "udp dport 8063 counter drop"]
PARAMS = {"wire": {}, "firewall": {"rules": FIREWALL_RULES}}

RATES = (2000, 5000, 10000, 20000, 40000, 80000)   # offered pps, upwards
PROBES = 3                                 # probes per rate and path: all must lose nothing
PROBE_SECONDS = 3.0
QUICK_RATES = (2000, 10000, 40000)
QUICK_PROBE_SECONDS = 1.0
MIN_ACHIEVED = 0.95                        # below this share of the offered rate the sender is the limit
LATENCY_RATE = 1000
LATENCY_PROBES = 3
LATENCY_SECONDS = 5.0
QUICK_LATENCY_PROBES = 1
QUICK_LATENCY_SECONDS = 2.0
FLOWS = 32
SIZE = 64                                  # UDP payload bytes

HOST = "mh1"
TRUNK = lab.TRUNKS[HOST]
# (type, kind) -> instance id and VLAN tags of its legs on mh1's host bridge
INSTANCES = {
    ("wire", "kernel"): ("w-kernel", 211, 212),
    ("wire", "process"): ("w-process", 213, 214),
    ("wire", "click"): ("w-click", 215, 216),
    ("wire", "vm"): ("w-vm", 217, 218),
    ("firewall", "kernel"): ("f-kernel", 221, 222),
    ("firewall", "click"): ("f-click", 223, 224),
}
IMAGE = lab.STATE + "/images/wire"
VM = {"image": {"kernel": IMAGE + "/vmlinuz", "initrd": IMAGE + "/initrd.img", "cmdline": "console=ttyS0"},
      "memory": 96, "vcpus": 1}
CLICK_BINARY = "/opt/flowstream/click/bin/click"
READY_SECONDS = {"vm": 90.0}               # until the first echo reply through the instance (a TCG guest boots)
READY_DEFAULT = 20.0
DIRECT = "direct"


def probe(rate, seconds):
    res = _probe.run_probe({"source_netns": lab.SOURCE_NS, "sink_netns": lab.SINK_NS, "src": lab.SOURCE_IP, "dst": lab.SINK_IP,
                            "flows": FLOWS, "rate": rate, "duration": seconds, "size": SIZE})
    t, r = res["totals"], res["rate"]
    lat = t.get("latency_ms") or {}
    return {"sent": t["sent"], "received": t["received"], "lost": t["lost"], "loss_percent": t["loss_percent"],
            "reordered": t["reordered"], "duplicated": t["duplicated"], "max_gap_ms": t["max_gap_ms"],
            "achieved_pps": r["achieved_pps"], "socket_drops": res["receiver"]["socket_drops"],
            "latency_ms": {k: lat.get(k) for k in ("min", "avg", "p50", "p99", "max")}}


# --- where the CPU goes --------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def machine_ticks():
    """(busy, softirq, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]          # idle + iowait
    return sum(fields) - idle, fields[6], sum(fields)


def instance_ticks(instance):
    """CPU jiffies (user + system, all threads) of the processes that run ``instance``: those whose
    command line names it (the click or process kind's program and its supervisor; the QEMU of a
    VM, ``guest=fs-<id>``). None when no process does (the kernel kind works in softirq)."""
    total, found = 0, False
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
            if not any(instance.encode() in arg for arg in argv) or int(pid) == os.getpid():
                continue
            with open("/proc/%s/stat" % pid, encoding="ascii") as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])   # utime, stime
        found = True
    return total if found else None


def probe_with_cpu(rate, seconds, instance):
    """probe() plus where the CPU went meanwhile: ``instance_cores`` (the instance's own processes,
    in cores; None for the kernel kind and the direct path), ``softirq_cores`` and
    ``machine_busy_cores`` (of CPUS)."""
    m0, i0, t0 = machine_ticks(), instance_ticks(instance) if instance else None, time.monotonic()
    row = probe(rate, seconds)
    m1, i1, wall = machine_ticks(), instance_ticks(instance) if instance else None, time.monotonic() - t0
    share = CPUS / max(1, m1[2] - m0[2])
    row["machine_busy_cores"] = round((m1[0] - m0[0]) * share, 2)
    row["softirq_cores"] = round((m1[1] - m0[1]) * share, 2)
    row["instance_cores"] = round((i1 - i0) / TICKS / wall, 2) if i0 is not None and i1 is not None else None
    return row


# --- steering ------------------------------------------------------------------------------------

STEERED = [None]


def steer(path, paths):
    """The probe's traffic through ``path`` (DIRECT or an instance's key in ``paths``)."""
    if STEERED[0] == path:
        return
    lab.del_flows()
    lab.add_flows(lab.direct() if path == DIRECT else lab.via(TRUNK, *paths[path]))
    STEERED[0] = path


def unsteer():
    lab.del_flows()
    STEERED[0] = None


def ping_through():
    """True when an echo request from the source got its reply (busybox ping: no iputils here)."""
    out = subprocess.run(["ip", "netns", "exec", lab.SOURCE_NS, "busybox", "ping", "-c", "1", "-W", "1", lab.SINK_IP],
                         capture_output=True, text=True, check=False).stdout
    return any("packets received" in line and int(line.split(",")[1].split()[0]) >= 1 for line in out.splitlines())


# --- instances -----------------------------------------------------------------------------------

def local_reason(kind):
    """Why ``kind`` cannot run on this machine at all (None when it can, as far as one can tell)."""
    if kind == "click" and not (shutil.which("click") or os.access(CLICK_BINARY, os.X_OK)):
        return "no Click binary (%s; scripts/click.sh builds it)" % CLICK_BINARY
    if kind == "vm":
        for tool in ("qemu-system-x86_64", "libvirtd"):
            if not shutil.which(tool):
                return "%s is not installed" % tool
    return None


def make(inv, typ, kind, made):
    """Make the instance of (typ, kind) on mh1 and wait for traffic through it: None, or why not."""
    instance, left, right = INSTANCES[(typ, kind)]
    if kind == "vm":
        for name in ("vmlinuz", "initrd.img"):
            if not os.path.exists(os.path.join(IMAGE, name)):
                return "no guest image %s/%s (lab-up builds it)" % (IMAGE, name)
    extra = {"vm": VM} if kind == "vm" else {}
    made.append(instance)
    t0 = time.monotonic()
    rc, res = lab.on_host(inv, HOST, "processing_module", instance=instance, kind=kind, type=typ, params=PARAMS[typ],
                          vlans={"left": left, "right": right}, **extra)
    if rc != 0 or res.get("failed"):
        return "processing_module failed: %s" % str(res.get("msg", res))[:500]
    steer((typ, kind), {(typ, kind): (left, right)})
    limit = READY_SECONDS.get(kind, READY_DEFAULT)
    while not ping_through():
        if time.monotonic() - t0 > limit:
            return "no echo reply through %s within %.0f s of making it" % (instance, limit)
        time.sleep(0.2)
    print("  %-8s %-7s %s ready (made and forwarding) in %.1f s" % (typ, kind, instance, time.monotonic() - t0), flush=True)
    return None


def remove(inv, made):
    """Remove the instances in ``made`` (every one this run asked for); returns what failed."""
    failed = []
    for instance in reversed(list(made)):
        try:
            rc, res = lab.on_host(inv, HOST, "processing_module", instance=instance, state="absent")
        except Exception as exc:  # pylint: disable=broad-except
            rc, res = 1, {"msg": repr(exc)}
        if rc != 0 or res.get("failed"):
            failed.append("%s: %s" % (instance, str(res.get("msg", res))[:300]))
        else:
            made.remove(instance)   # a failed one stays, for the final clean-up to try again
    return failed


# --- measurements --------------------------------------------------------------------------------

def latency(names, paths, probes, seconds):
    """{path: {p50_ms, p99_ms, ...}}: the probe at LATENCY_RATE through each path, taking turns."""
    runs = {name: [] for name in names}
    for attempt in range(probes):
        for name in names:
            steer(name, paths)
            try:
                row = probe(LATENCY_RATE, seconds)
            except _probe.ProbeError as exc:
                row = {"error": str(exc)}
            row["attempt"] = attempt
            runs[name].append(row)
            if "error" in row:
                said = "error: %s" % row["error"]
            else:
                said = "p50 %s ms  p99 %s ms  lost %d" % (row["latency_ms"]["p50"], row["latency_ms"]["p99"], row["lost"])
            print("  latency %-17s run %d: %s" % (label(name), attempt, said), flush=True)
    out = {}
    for name, rows in runs.items():
        good = [r for r in rows if "error" not in r and r["latency_ms"]["p50"] is not None]
        out[name] = {"p50_ms": statistics.median(r["latency_ms"]["p50"] for r in good) if good else None,
                     "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in good) if good else None,
                     "lost": sum(r["lost"] for r in good), "probes": len(good), "runs": rows}
    return out


def verdict(rate, runs):
    """ok, lost, sender (reached < MIN_ACHIEVED of the rate) or error, for one path at one rate."""
    if any("error" in r for r in runs):
        return "error"
    if any(r["lost"] for r in runs):
        return "lost"
    if any(r["achieved_pps"] < MIN_ACHIEVED * rate for r in runs):
        return "sender"
    return "ok"


def sweep(names, paths, rates, seconds):
    """(rows, capacity): every path through the rates upwards, PROBES probes each, paths taking
    turns; capacity {path: {pps, stopped_by, stopped_at}} (``stopped_by`` ``top`` when it
    carried the highest rate)."""
    capacity = {name: {"pps": 0, "stopped_by": "top", "stopped_at": None} for name in names}
    active = list(names)
    rows = []
    for rate in rates:
        if not active:
            break
        runs = {name: [] for name in active}
        for attempt in range(PROBES):
            for name in active:
                if runs[name] and verdict(rate, runs[name]) != "ok":
                    continue   # this rate already failed for this path: its remaining probes tell nothing new
                steer(name, paths)
                try:
                    row = probe_with_cpu(rate, seconds, None if name == DIRECT else INSTANCES[name][0])
                except _probe.ProbeError as exc:
                    row = {"error": str(exc)}
                row.update(attempt=attempt)
                runs[name].append(row)
                print("  %6d pps %-17s run %d: %s" % (rate, label(name), attempt, "error: %s" % row["error"] if "error" in row else
                                                      "achieved %8.1f pps  lost %6d  socket drops %d  cpu: instance %s, "
                                                      "softirq %.2f, machine %.2f of %d cores" % (
                                                          row["achieved_pps"], row["lost"], row["socket_drops"],
                                                          cell(row["instance_cores"]), row["softirq_cores"],
                                                          row["machine_busy_cores"], CPUS)), flush=True)
        still = []
        for name in active:
            good = [r for r in runs[name] if "error" not in r]
            v = verdict(rate, runs[name])
            rows.append({"path": label(name), "offered_pps": rate, "verdict": v,
                         "lost": "/".join(str(r["lost"]) if "error" not in r else "err" for r in runs[name]),
                         "achieved_min_pps": min(r["achieved_pps"] for r in good) if good else None,
                         "socket_drops": sum(r["socket_drops"] for r in good),
                         "instance_cores": peak(good, "instance_cores"), "softirq_cores": peak(good, "softirq_cores"),
                         "machine_busy_cores": peak(good, "machine_busy_cores"), "runs": runs[name]})
            cpu = {k: rows[-1][k] for k in ("instance_cores", "softirq_cores", "machine_busy_cores")}
            if v == "ok":
                capacity[name].update(pps=rate, cpu_at_capacity=cpu)
                still.append(name)
            else:
                capacity[name].update(stopped_by=v, stopped_at=rate, cpu_at_stop=cpu)
        active = still
    return rows, capacity


def peak(rows, key):
    values = [r[key] for r in rows if r.get(key) is not None]
    return max(values) if values else None


# --- output --------------------------------------------------------------------------------------

def label(name):
    return DIRECT if name == DIRECT else "%s/%s" % name


def table(rows, keys, head):
    widths = [max(len(h), *(len(cell(r.get(k))) for r in rows)) for k, h in zip(keys, head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)).ljust(w) for k, w in zip(keys, widths)) + " |")
    return "\n".join(lines)


def cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return ("%.3f" % value).rstrip("0").rstrip(".")
    return str(value)


def capacity_text(cap, rates):
    if cap["stopped_by"] == "top":
        return ">= %d" % cap["pps"]
    if cap["pps"] == 0:
        return "< %d%s" % (rates[0], "" if cap["stopped_by"] == "lost" else " *")
    return "%d%s" % (cap["pps"], "" if cap["stopped_by"] == "lost" else " *")


def cpu_text(cap):
    """Where the CPU went at the rate that stopped the sweep (else at the top rate): the instance's
    own processes / softirq / the whole machine, in cores."""
    cpu = cap.get("cpu_at_stop") or cap.get("cpu_at_capacity")
    if not cpu:
        return None
    return "%s / %s / %s" % tuple(cell(cpu[k]) for k in ("instance_cores", "softirq_cores", "machine_busy_cores"))


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def summary_rows(results, rates):
    rows = []
    for typ, res in results["types"].items():
        ref_cap = res["capacity"].get(REFERENCE, {}).get("pps")
        ref_lat = res["latency"].get(REFERENCE, {})
        floor = results["direct_latency"].get("p50_ms")
        if typ == "wire" and results["direct_capacity"]:
            d = results["direct_capacity"]
            rows.append({"type": "-", "kind": "direct (no instance)", "capacity": capacity_text(d, rates), "cpu": cpu_text(d),
                         "p50": results["direct_latency"].get("p50_ms"), "p99": results["direct_latency"].get("p99_ms")})
        for kind in TYPES[typ]:
            if kind not in res["capacity"]:
                if kind in res["unavailable"]:
                    rows.append({"type": typ, "kind": kind, "capacity": "unavailable: %s" % res["unavailable"][kind][:70]})
                continue
            cap, lat = res["capacity"][kind], res["latency"][kind]
            rows.append({"type": typ, "kind": kind, "capacity": capacity_text(cap, rates), "cpu": cpu_text(cap),
                         "cap_ratio": ratio(cap["pps"], ref_cap), "p50": lat["p50_ms"], "p50_ratio": ratio(lat["p50_ms"], ref_lat.get("p50_ms")),
                         "p99": lat["p99_ms"], "p99_ratio": ratio(lat["p99_ms"], ref_lat.get("p99_ms")),
                         "above": round(lat["p50_ms"] - floor, 3) if lat["p50_ms"] is not None and floor is not None else None})
    return rows


# --- main ----------------------------------------------------------------------------------------

def _terminate(signum, _frame):
    raise SystemExit("bench: signal %d, cleaning up" % signum)


def git_head():
    proc = subprocess.run(["git", "-C", str(TOP), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or None


def measure(inv, typ, kinds, args, results, made):
    """One type: its instances made, latency and the sweep, its instances removed."""
    rates = QUICK_RATES if args.quick else RATES
    seconds = QUICK_PROBE_SECONDS if args.quick else PROBE_SECONDS
    lat_probes = QUICK_LATENCY_PROBES if args.quick else LATENCY_PROBES
    lat_seconds = QUICK_LATENCY_SECONDS if args.quick else LATENCY_SECONDS
    res = {"kinds": list(kinds), "params": PARAMS[typ], "unavailable": {}, "capacity": {}, "latency": {}, "sweep": []}
    results["types"][typ] = res
    paths = {}
    print("%s: making %s on %s" % (typ, ", ".join(kinds), HOST), flush=True)
    for kind in kinds:
        why = local_reason(kind) or make(inv, typ, kind, made)
        if why:
            res["unavailable"][kind] = why
            print("  %-8s %-7s UNAVAILABLE: %s" % (typ, kind, why), flush=True)
        else:
            paths[(typ, kind)] = INSTANCES[(typ, kind)][1:]
    names = ([DIRECT] if typ == "wire" else []) + list(paths)
    if names:
        print("%s: latency at %d pps (%d probe(s) of %g s per path)" % (typ, LATENCY_RATE, lat_probes, lat_seconds), flush=True)
        lat = latency(names, paths, lat_probes, lat_seconds)
        print("%s: capacity, %s pps, %d probes of %g s per rate and path" % (typ, ",".join(map(str, rates)), PROBES, seconds), flush=True)
        rows, cap = sweep(names, paths, rates, seconds)
        res["sweep"] = rows
        for name in names:
            if name == DIRECT:
                results["direct_latency"], results["direct_capacity"] = lat[name], cap[name]
            else:
                res["latency"][name[1]], res["capacity"][name[1]] = lat[name], cap[name]
    unsteer()
    failed = remove(inv, made)
    if failed:
        raise SystemExit("removing the %s instances failed: %s" % (typ, "; ".join(failed)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="rates %s, probes of %g s, %d latency probe of %g s (default: rates %s, %g s, %d of %g s)" % (
                        ",".join(map(str, QUICK_RATES)), QUICK_PROBE_SECONDS, QUICK_LATENCY_PROBES, QUICK_LATENCY_SECONDS,
                        ",".join(map(str, RATES)), PROBE_SECONDS, LATENCY_PROBES, LATENCY_SECONDS))
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated subset of %s (default: all; the ratios need kernel)" % ",".join(KINDS))
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsp lab up at the end (the instances and flows are removed)")
    args = ap.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        ap.error("--kinds: %s is not a kind (kinds: %s)" % (", ".join(unknown) or "nothing", ", ".join(KINDS)))
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root")
    command = shlex.join([sys.executable] + sys.argv)
    rates = QUICK_RATES if args.quick else RATES
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    started = time.strftime("%Y%m%d-%H%M%S")
    t0 = time.monotonic()
    results = {"command": command, "cwd": os.getcwd(), "started": started, "git": git_head(), "quick": args.quick,
               "host": HOST, "settings": {"rates": list(rates), "probes": PROBES,
                                          "probe_seconds": QUICK_PROBE_SECONDS if args.quick else PROBE_SECONDS,
                                          "flows": FLOWS, "size": SIZE, "min_achieved": MIN_ACHIEVED,
                                          "latency_rate": LATENCY_RATE,
                                          "latency_probes": QUICK_LATENCY_PROBES if args.quick else LATENCY_PROBES,
                                          "latency_seconds": QUICK_LATENCY_SECONDS if args.quick else LATENCY_SECONDS,
                                          "vm": VM, "latency_source": "traffic probe one-way latency (sink kernel receive "
                                                                      "timestamp - send time, one clock)"},
               "load_average_start": os.getloadavg(), "types": {}, "direct_latency": {}, "direct_capacity": None}
    inv = lab.write_inventory(tempfile.mkdtemp(prefix="fsp-kinds-"))
    made = []
    try:
        results["lab_up_seconds"] = round(lab.lab_up(inv), 1)
        print("lab-up (fsp): %.1f s" % results["lab_up_seconds"], flush=True)
        for typ, runs in TYPES.items():
            chosen = [k for k in runs if k in kinds]
            if chosen:
                measure(inv, typ, chosen, args, results, made)
    finally:
        problems = []
        try:
            unsteer()
        except Exception as exc:  # pylint: disable=broad-except
            problems.append("removing the switch flows: %s" % exc)
        if made:
            problems += ["removing %s" % p for p in remove(inv, made)]
        if not args.keep_lab:
            try:
                lab.lab_down(inv)
            except Exception as exc:  # pylint: disable=broad-except
                problems.append("lab-down: %s" % str(exc)[:1000])
        if args.keep_lab:
            print("bench: the fsp lab stays up (--keep-lab); its inventory: %s" % inv, flush=True)
        else:
            shutil.rmtree(inv, ignore_errors=True)
        for p in problems:
            print("bench: cleanup: %s" % p, file=sys.stderr, flush=True)
    results["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - t0, 1)

    for typ, res in results["types"].items():
        print("\n%s: lost per probe at each offered rate (%d flows, %d-byte payloads)" % (typ, FLOWS, SIZE))
        if res["sweep"]:
            print(table(res["sweep"], ["path", "offered_pps", "lost", "achieved_min_pps", "socket_drops", "verdict"],
                        ["path", "offered pps", "lost per probe", "lowest achieved pps", "socket drops", "verdict"]))
    results["summary"] = summary_rows(results, rates)
    print("\nkinds side by side on %s (one run, %s); ratios are kind / %s%s" % (
        HOST, started, REFERENCE, "" if REFERENCE in kinds else " (not in --kinds: no ratios)"))
    print("capacity: highest offered rate with 0 lost in all %d probes of %g s (>= : the sweep's top rate; * : stopped by the "
          "probe's sender or an error, not by loss)" % (PROBES, results["settings"]["probe_seconds"]))
    print("latency: the probe's one-way latency (sink's kernel receive timestamp - send time, one clock) at %d pps, "
          "%d flows, median over %d probe(s) of %g s; 'above direct' = p50 - the direct path's p50" % (
              LATENCY_RATE, FLOWS, results["settings"]["latency_probes"], results["settings"]["latency_seconds"]))
    shown = [dict(r, **{k: "%.2f" % r[k] for k in ("cap_ratio", "p50_ratio", "p99_ratio") if r.get(k) is not None})
             for r in results["summary"]]
    print("cpu at the limit: cores used by the instance's own processes / softirq / the whole machine (of %d) during the "
          "busiest probe at the rate that stopped the sweep (else its top rate)" % CPUS)
    print(table(shown, ["type", "kind", "capacity", "cap_ratio", "cpu", "p50", "p50_ratio", "p99", "p99_ratio", "above"],
                ["type", "kind", "capacity pps", "capacity / kernel", "cpu at the limit", "p50 ms", "p50 / kernel", "p99 ms",
                 "p99 / kernel", "p50 above direct ms"]))
    out = TOP / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("kinds-%s.json" % started)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print("\nwritten: %s (%.0f s in all)" % (path.relative_to(TOP), results["seconds"]))
    print("command: cd %s && %s" % (shlex.quote(results["cwd"]), command))


if __name__ == "__main__":
    main()
