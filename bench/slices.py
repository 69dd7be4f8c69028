# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark trial shares and scaling a step: our fixed slots + HRW against OVS's own ways, on real Open vSwitch.

    .venv/bin/python bench/slices.py [--flows 10000] [--sample N] [--seeds 200] [--quick]

Run as root from the checkout, with Open vSwitch running. No traffic is sent: every answer is
Open vSwitch's own, from ``ofproto/trace`` on a scratch bridge ``fsbs-br`` (netdev datapath, two
internal ports ``fsbs-p1``/``fsbs-p2``, deleted at the end, also on error). ``--flows`` distinct
UDP 5-tuples (addresses in 198.18.0.0/15, random source and destination ports, fixed seed; no
flow is the reverse of another) are traced through one flow that computes, in one pass:

- ``multipath(symmetric_l3l4+udp,0,modulo_n,256,0,NXM_NX_REG0[0..7])``: the slot, exactly the
  classify action the chain compiler emits (``_compiler.SLOTS``, 256 since 0.2.0; basis 0); also
  the same over 64 slots (the compiler's before 0.2.0) for comparison;
- ``multipath(symmetric_l3l4+udp,0,hrw,N,...)`` and ``multipath(...,modulo_n,N,...)`` for
  N = 2, 3, 4, 8: OVS hashing straight onto the members (hrw; modulo_n is the naive way);
- ``group:N``: select groups (OpenFlow 1.5, ``selection_method=hash,
  fields(ip_src,ip_dst,udp_src,udp_dst)``) of N buckets, and one of 3 buckets whose middle
  bucket was taken out with ``ovs-ofctl remove-buckets`` (bucket ids 0 and 2 kept).

Ours: each flow's slot (from OVS) -> the slot's owner from ``_flow_hash.slot_owners`` /
``trial_owners`` with the compiler's seed (``chain/step``, here ``web/mon``) and its instance
ids (``web1a``...); the slot does not depend on the members, so one trace per flow serves every
N and every percent. Also over ``--seeds`` other seeds (other chains' steps), pure Python on
the same traced slots.

Prints three tables: (1) the share of flows a trial's candidate gets for percent 1, 5, 10, 25,
50 against the percent asked; (2) the fraction of flows that change instance when a step goes
from N to M instances (and when its middle instance goes), each way against the ideal minimum
|M-N|/max(N,M); (3) balance and symmetry (does the reply meet the same instance). Per-flow
columns of (2) and (3) use the first ``--sample`` flows (default: all). Writes the numbers as
JSON to bench/results/. Not part of ``make test``.

It works on the system Open vSwitch, the one that also runs a lab's switch: its bridge and its
20,000 traces in 3 s stalled a lab switch under probe traffic for about 50 ms (every chain lost
packets then, measured on 2026-12-05). Run it with no lab carrying traffic.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
if TOP.parent.parent.name == "ansible_collections":
    sys.path.insert(0, str(TOP.parent.parent.parent))
else:
    sys.path.insert(0, str(TOP / "collections"))  # scripts/setup.sh links the checkout there

from ansible_collections.flowstream.platform.plugins.module_utils import _compiler  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._flow_hash import (  # noqa: E402  pylint: disable=wrong-import-position
    slot_owners, trial_owners, trial_slots)

BRIDGE = "fsbs-br"
PORTS = ("fsbs-p1", "fsbs-p2")  # ofport 1: every hash; ofport 2: the slot only (flows outside --sample)
SLOTS = _compiler.SLOTS          # 256 since 0.2.0
OTHER = 64                       # the compiler's slots before 0.2.0, for comparison
FIELDS = "symmetric_l3l4+udp"   # _flow_hash's default, what the compiler emits
GROUP_FIELDS = "fields(ip_src,ip_dst,udp_src,udp_dst)"
SIZES = (2, 3, 4, 8)
MIDDLE_GROUP = 103              # 3 buckets, bucket 1 removed by remove-buckets
PERCENTS = (1, 5, 10, 25, 50)
CHANGES = ((1, 2), (2, 3), (3, 4), (4, 3), (3, 2), (4, 8), (3, "2m"))  # "2m": 3 -> 2 removing the middle member
SEED = "web/mon"
MEMBERS = ["web1%s" % c for c in "abcdefgh"]   # the step's instance ids, as the compiler names them
CANDIDATE = "web3a"                            # a trial's candidate (a step of its own: mon~trial)
INCUMBENTS = 2

# registers: reg0 slot (SLOTS), reg1 slot (OTHER), reg2..5 hrw N, reg6..9 modulo_n N
REG_SLOT, REG_OTHER = 0, 1
REG_HRW = {n: 2 + i for i, n in enumerate(SIZES)}
REG_MOD = {n: 6 + i for i, n in enumerate(SIZES)}


def sh(*cmd):
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def ofctl(*args):
    return sh("ovs-ofctl", "-O", "OpenFlow15", *args)


def make_bridge():
    sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE)
    cmd = ["ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev", "protocols=OpenFlow13,OpenFlow15",
           "fail_mode=secure"]
    for n, port in enumerate(PORTS, 1):
        cmd += ["--", "add-port", BRIDGE, port, "--", "set", "interface", port, "type=internal", "ofport_request=%d" % n]
    sh(*cmd)
    ofctl("del-flows", BRIDGE)
    for n in SIZES:
        buckets = ",".join("bucket=bucket_id:%d,actions=set_field:%d->reg15" % (b, b) for b in range(n))
        ofctl("add-group", BRIDGE, "group_id=%d,type=select,selection_method=hash,%s,%s" % (n, GROUP_FIELDS, buckets))
    buckets = ",".join("bucket=bucket_id:%d,actions=set_field:%d->reg15" % (b, b) for b in range(3))
    ofctl("add-group", BRIDGE, "group_id=%d,type=select,selection_method=hash,%s,%s" % (MIDDLE_GROUP, GROUP_FIELDS, buckets))
    ofctl("remove-buckets", BRIDGE, "group_id=%d,command_bucket_id=1" % MIDDLE_GROUP)
    slot = "multipath(%s,0,modulo_n,%d,0,NXM_NX_REG%d[0..%d])" % (FIELDS, SLOTS, REG_SLOT, (SLOTS - 1).bit_length() - 1)
    other = "multipath(%s,0,modulo_n,%d,0,NXM_NX_REG%d[0..%d])" % (FIELDS, OTHER, REG_OTHER, (OTHER - 1).bit_length() - 1)
    acts = [slot, other]
    for n in SIZES:
        acts.append("multipath(%s,0,hrw,%d,0,NXM_NX_REG%d[0..3])" % (FIELDS, n, REG_HRW[n]))
        acts.append("multipath(%s,0,modulo_n,%d,0,NXM_NX_REG%d[0..3])" % (FIELDS, n, REG_MOD[n]))
    acts += ["group:%d" % n for n in SIZES] + ["group:%d" % MIDDLE_GROUP]
    ofctl("add-flow", BRIDGE, "table=0,priority=10,in_port=1,udp,actions=%s" % ",".join(acts))
    ofctl("add-flow", BRIDGE, "table=0,priority=10,in_port=2,udp,actions=%s" % slot)
    return ofctl("dump-flows", "--no-stats", BRIDGE), ofctl("dump-groups", BRIDGE)


class Tracer:
    """ofproto/trace through ovs-vswitchd's unixctl socket (JSON-RPC, what ovs-appctl sends) -
    the same answer as ``ovs-appctl ofproto/trace`` without a process per trace."""

    def __init__(self):
        rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
        pid = Path(rundir, "ovs-vswitchd.pid").read_text().strip()
        path = Path(rundir, "ovs-vswitchd.%s.ctl" % pid)
        if not path.exists():
            path = Path(sorted(glob.glob(os.path.join(rundir, "ovs-vswitchd.*.ctl")))[0])
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.dec = json.JSONDecoder()
        self.buf = ""
        self.n = 0

    def trace(self, flow):
        self.n += 1
        self.sock.sendall(json.dumps({"method": "ofproto/trace", "params": [BRIDGE, flow], "id": self.n}).encode())
        while True:
            try:
                reply, end = self.dec.raw_decode(self.buf)
                self.buf = self.buf[end:].lstrip()
                break
            except ValueError:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise RuntimeError("ovs-vswitchd closed the unixctl connection")
                self.buf += chunk.decode()
        if reply.get("error") or reply.get("id") != self.n:
            raise RuntimeError("ofproto/trace %s: %s" % (flow, reply.get("error")))
        return reply["result"]

    def close(self):
        self.sock.close()


FINAL = re.compile(r"^Final flow: (.*)$", re.M)


def parse(text):
    """{"reg": {n: value}, "group": {gid: bucket id}} from one trace."""
    final = FINAL.search(text).group(1)
    regs = {int(m.group(1)): int(m.group(2), 16) for m in re.finditer(r"\breg(\d+)=0x([0-9a-f]+)", final)}
    groups, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("group:"):
            current = int(line[6:])
        elif line.startswith("-> using bucket") and current is not None:
            groups[current] = int(line.split()[-1])
            current = None
    return {"reg": regs, "group": groups}


def flow_text(in_port, f, reverse=False):
    src, dst, sport, dport = (f[1], f[0], f[3], f[2]) if reverse else f
    return "in_port=%d,udp,nw_src=%s,nw_dst=%s,udp_src=%d,udp_dst=%d" % (in_port, src, dst, sport, dport)


def make_flows(count, seed=20261205):
    rnd = random.Random(seed)
    seen, out = set(), []

    def addr():
        v = (198 << 24) | (18 << 16) | rnd.randrange(1 << 17)   # 198.18.0.0/15
        return "%d.%d.%d.%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)

    while len(out) < count:
        f = (addr(), addr(), rnd.randrange(1024, 65536), rnd.choice((53, 123, 443, 4789, 5060, rnd.randrange(1024, 65536))))
        key = frozenset(((f[0], f[2]), (f[1], f[3])))
        if f[0] == f[1] or key in seen:
            continue
        seen.add(key)
        out.append(f)
    return out


def members_of(n):
    """The instances of a step of ``n`` (``"2m"``: 3 with the middle one gone)."""
    if n == "2m":
        return [MEMBERS[0], MEMBERS[2]]
    return MEMBERS[:n]


def assign(traces, slots, n, way, seed=SEED):
    """Member of each traced flow for a step of ``n`` instances, one way."""
    mem = members_of(n)
    if way == "ours":
        owners = slot_owners(mem, SLOTS, seed)
        return [owners[s] for s in slots]
    if len(mem) == 1:
        return [mem[0]] * len(traces)
    size = len(mem)
    if way == "hrw":
        return [mem[t["reg"].get(REG_HRW[size], 0)] for t in traces]
    if way == "modulo_n":
        return [mem[t["reg"].get(REG_MOD[size], 0)] for t in traces]
    if way == "group":            # a group written with the members as buckets 0..n-1
        return [mem[t["group"][size]] for t in traces]
    if way == "group-rb":         # the 3-bucket group after remove-buckets: bucket ids 0 and 2
        byid = {0: MEMBERS[0], 2: MEMBERS[2]} if n == "2m" else dict(enumerate(mem))
        gid = MIDDLE_GROUP if n == "2m" else size
        return [byid[t["group"][gid]] for t in traces]
    raise ValueError(way)


def moved(a, b):
    return sum(1 for x, y in zip(a, b) if x != y) / float(len(a))


def largest_share(assigned, n):
    counts = {}
    for m in assigned:
        counts[m] = counts.get(m, 0) + 1
    return max(counts.values()) / float(len(assigned)) * n


def share_rows(slots, other, seeds):
    rows = []
    total = len(slots)
    incumbents = MEMBERS[:INCUMBENTS]
    for p in PERCENTS:
        taken = trial_slots(p, SLOTS, SEED)
        owners = trial_owners(incumbents, [CANDIDATE], p, SLOTS, SEED)
        plain = slot_owners(incumbents, SLOTS, SEED)
        got = sum(1 for s in slots if owners[s] == CANDIDATE)
        others = sum(1 for s in slots if owners[s] != CANDIDATE and owners[s] != plain[s])   # flows moved between incumbents
        other_taken = set(trial_slots(p, OTHER, SEED))
        other_got = sum(1 for s in other if s in other_taken)
        errs = []
        for k in range(seeds):
            chosen = set(trial_slots(p, SLOTS, "chain%d/mon" % k))
            errs.append(abs(100.0 * sum(1 for s in slots if s in chosen) / total - p))
        rows.append({
            "percent": p, "slots": len(taken), "slot_share": 100.0 * len(taken) / SLOTS, "flows": got, "of": total,
            "measured": 100.0 * got / total, "moved_between_incumbents": others,
            "other_slots": len(other_taken), "other_measured": 100.0 * other_got / total,
            "seeds": seeds, "seeds_mean_abs_err": sum(errs) / len(errs), "seeds_worst_abs_err": max(errs),
        })
    return rows


def change_rows(traces, slots, seeds):
    rows = []
    for n, m in CHANGES:
        size_m = 2 if m == "2m" else m
        ideal = abs(size_m - n) / float(max(n, size_m))
        row = {"from": n, "to": m, "ideal": ideal}
        for way in ("ours", "hrw", "modulo_n", "group", "group-rb"):
            row[way] = moved(assign(traces, slots, n, way), assign(traces, slots, m, way))
        per_seed = [moved(assign(traces, slots, n, "ours", "chain%d/mon" % k), assign(traces, slots, m, "ours", "chain%d/mon" % k))
                    for k in range(seeds)]
        row["ours_seeds_mean"] = sum(per_seed) / len(per_seed)
        row["ours_seeds_worst"] = max(per_seed)
        old, new = slot_owners(members_of(n), SLOTS, SEED), slot_owners(members_of(m), SLOTS, SEED)
        row["ours_slots_moved"] = sum(1 for a, b in zip(old, new) if a != b)
        rows.append(row)
    return rows


def balance_rows(traces, slots, rtraces, rslots, seeds):
    rows = []
    for n in SIZES:
        row = {"n": n}
        for way in ("ours", "hrw", "modulo_n", "group"):
            fwd = assign(traces, slots, n, way)
            row[way + "_largest"] = largest_share(fwd, n)
            row[way + "_symmetric"] = 1.0 - moved(fwd, assign(rtraces, rslots, n, way))
        row["ours_seeds_largest_worst"] = max(largest_share(assign(traces, slots, n, "ours", "chain%d/mon" % k), n) for k in range(seeds))
        row["ours_slots_largest"] = max(slot_owners(MEMBERS[:n], SLOTS, SEED).count(x) for x in MEMBERS[:n])
        rows.append(row)
    return rows


def name(n, m):
    return "%s -> 2, middle member removed" % n if m == "2m" else "%s -> %s" % (n, m)


def ratio(x, ideal):
    return "%.2f" % (x / ideal) if ideal else "-"


def report(res):
    out = []
    total, sample = res["flows"], res["sample"]
    out.append("slices: %d distinct UDP flows (198.18.0.0/15, random ports, fixed seed), Open vSwitch %s, ofproto/trace on %s "
               "(%d traces in %.1f s); per-flow columns of tables 2 and 3 over %s"
               % (total, res["ovs"], BRIDGE, res["traces"], res["trace_seconds"], "all %d flows" % sample if sample == total
                  else "the first %d flows (a sample)" % sample))
    out.append("")
    out.append("1. Trial share: a step of %d instances, one candidate, seed %s; %d slots, so a share is a multiple of 1/%d = %.4g %%"
               % (INCUMBENTS, SEED, SLOTS, SLOTS, 100.0 / SLOTS))
    out.append("")
    out.append("| asked %% | slots taken | slots' share %% | flows to the candidate | measured %% | error vs asked, pp "
               "| hash's part (measured - slots' share), pp | other flows moved | %d slots: taken, measured %%, error pp "
               "| %d other seeds, %d slots: mean / worst abs error, pp |" % (OTHER, res["seeds"], SLOTS))
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["shares"]:
        out.append("| %d | %d/%d | %.4g | %d/%d | %.2f | %+.2f | %+.2f | %d | %d/%d, %.2f, %+.2f | %.2f / %.2f |" % (
            r["percent"], r["slots"], SLOTS, r["slot_share"], r["flows"], r["of"], r["measured"], r["measured"] - r["percent"],
            r["measured"] - r["slot_share"], r["moved_between_incumbents"], r["other_slots"], OTHER, r["other_measured"],
            r["other_measured"] - r["percent"], r["seeds_mean_abs_err"], r["seeds_worst_abs_err"]))
    out.append("")
    out.append("2. Scaling a step N -> M: fraction of flows that change instance (ratio to the ideal |M-N|/max(N,M))")
    out.append("")
    out.append("| change | ideal | ours (%d slots, HRW owners) | ours' slots moved | ours, %d other seeds: mean / worst | OVS multipath hrw "
               "| OVS multipath modulo_n (naive) | OVS select group (hash) |" % (SLOTS, res["seeds"]))
    out.append("|---|---|---|---|---|---|---|---|")
    for r in res["changes"]:
        out.append("| %s | %.3f | %.3f (%s) | %d/%d | %.3f / %.3f | %.3f (%s) | %.3f (%s) | %.3f (%s) |" % (
            name(r["from"], r["to"]), r["ideal"], r["ours"], ratio(r["ours"], r["ideal"]), r["ours_slots_moved"], SLOTS,
            r["ours_seeds_mean"], r["ours_seeds_worst"], r["hrw"], ratio(r["hrw"], r["ideal"]), r["modulo_n"],
            ratio(r["modulo_n"], r["ideal"]), r["group"], ratio(r["group"], r["ideal"])))
    mid = [r for r in res["changes"] if r["to"] == "2m"][0]
    out.append("")
    out.append("select group: OVS scores each bucket by its bucket id (HRW, ofproto/trace shows the scores); the column above is "
               "a group with the members as bucket ids 0..M-1 (rewritten). The middle bucket taken out with remove-buckets "
               "instead (ids 0 and 2 kept): %.3f moved (%s x ideal)." % (mid["group-rb"], ratio(mid["group-rb"], mid["ideal"])))
    out.append("")
    out.append("3. Balance (largest instance's share of flows x N; 1.00 = even) and symmetry (the reverse direction of a flow meets "
               "the same instance)")
    out.append("")
    out.append("| N | ours: largest x N (slots) | ours, %d other seeds: worst | hrw | modulo_n | select group "
               "| reverse meets same: ours | hrw | modulo_n | select group |" % res["seeds"])
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["balance"]:
        out.append("| %d | %.2f (%d/%d slots) | %.2f | %.2f | %.2f | %.2f | %.1f %% | %.1f %% | %.1f %% | %.1f %% |" % (
            r["n"], r["ours_largest"], r["ours_slots_largest"], SLOTS, r["ours_seeds_largest_worst"], r["hrw_largest"],
            r["modulo_n_largest"], r["group_largest"], 100 * r["ours_symmetric"], 100 * r["hrw_symmetric"],
            100 * r["modulo_n_symmetric"], 100 * r["group_symmetric"]))
    return "\n".join(out)


def run(args):
    flows = make_flows(args.flows)
    sample = min(args.sample or args.flows, args.flows)
    tracer = Tracer()
    start = time.perf_counter()
    try:
        traces = [parse(tracer.trace(flow_text(1 if i < sample else 2, f))) for i, f in enumerate(flows)]
        rtraces = [parse(tracer.trace(flow_text(1, f, reverse=True))) for f in flows[:sample]]
    finally:
        tracer.close()
    seconds = time.perf_counter() - start
    # the socket's answers are ovs-appctl's: check a few against the command itself
    for i in range(min(5, sample)):
        text = sh("ovs-appctl", "ofproto/trace", BRIDGE, flow_text(1, flows[i]))
        if parse(text) != traces[i]:
            raise RuntimeError("ovs-appctl and the unixctl socket disagree on flow %d" % i)
    slots = [t["reg"].get(REG_SLOT, 0) for t in traces]
    other = [t["reg"].get(REG_OTHER, 0) for t in traces]
    rslots = [t["reg"].get(REG_SLOT, 0) for t in rtraces]
    per = traces[:sample]
    return {
        "flows": len(flows), "sample": sample, "seeds": args.seeds, "traces": len(traces) + len(rtraces), "trace_seconds": seconds,
        "slot_counts": [slots.count(s) for s in range(SLOTS)],
        "shares": share_rows(slots, other, args.seeds),
        "changes": change_rows(per, slots[:sample], args.seeds),
        "balance": balance_rows(per, slots[:sample], rtraces, rslots, args.seeds),
    }


def _term(_signum, _frame):
    raise SystemExit("bench: terminated")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--flows", type=int, default=10000, help="distinct UDP flows (default 10000)")
    ap.add_argument("--sample", type=int, default=0, help="flows traced for the per-flow columns of tables 2 and 3 (default: all)")
    ap.add_argument("--seeds", type=int, default=200, help="other seeds for ours' spread (pure Python on the same slots)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1000 flows, 20 seeds")
    args = ap.parse_args()
    if args.quick:
        args.flows, args.seeds = min(args.flows, 1000), min(args.seeds, 20)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it creates an OVS bridge)")
    signal.signal(signal.SIGTERM, _term)
    wall = time.perf_counter()
    try:
        flows_text, groups_text = make_bridge()
        res = run(args)
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE)
    res["ovs"] = sh("ovs-vswitchd", "--version").splitlines()[0].split()[-1]
    res["openflow"] = {"flows": flows_text.strip().splitlines(), "groups": groups_text.strip().splitlines()[1:]}
    res["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    res["cpus"] = os.cpu_count()
    res["wall_seconds"] = time.perf_counter() - wall
    print(report(res))
    print("\nwall clock %.1f s" % res["wall_seconds"])
    out = TOP / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("slices-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    path.write_text(json.dumps(res, indent=1) + "\n")
    print("(numbers saved to %s)" % path.relative_to(TOP))


if __name__ == "__main__":
    main()
