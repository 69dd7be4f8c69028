# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What trials, promotions and scaling a step cost the traffic, measured on a lab of the bench's own.

    .venv/bin/python bench/trial_ops.py [--rounds N] [--rate PPS] [--keep-lab] [--no-lab-up]

Run as root from the checkout, with no other lab carrying traffic. It brings up bench/migrate.py's
lab (prefix ``fsb``, the example chains) and works on web's ``mon`` (two kernel monitors), each
operation under the bench's own probe session through web (32 flows at ``--rate``, 10 kpps by
default): the probe starts, runs a second, the operation runs, the probe runs a second more and
stops with the window [operation started, operation returned]: the window's sent, lost,
reordered, duplicated and blackout are the operation's. Per round:

- ``start``: ``trial.yml`` a process monitor on 10 % of mon's flows; ``rollback``; ``start``
  again; ``promote`` (``trial.yml -e action=promote``: the candidates take every flow, mon's own
  instances are re-made as process monitors while they carry nothing, the trial ends);
- back the same way: ``start`` a kernel monitor on 10 %, ``promote``, ``forget`` (no change: the
  description names the kernel monitor again);
- ``naive promote``: what an operator does without promote - write the new module (kind
  process) into the description and run deploy-chain, which re-makes mon's instances in place
  under the same ids; then ``naive back`` the same way.

Then scaling: ``scale-step.yml`` 2 -> 3 -> 4 -> 2. For each change the plan's share of mon's
slots that change instance (against the ideal |M-N|/max(N,M)), and, from the monitors' own
per-flow counters read before the probe, after its first second and after the change, which
probe flows moved (they crossed another instance during the change than before it) and which did
not; the probe's per-flow figures then give the loss of moved and of unmoved flows apart.

Prints the tables and writes everything to bench/results/trial_ops-<time>.json. The lab is
taken down at the end (also on failure) unless ``--keep-lab``. Not part of ``make test``.
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

import yaml

import migrate as lab_bench  # bench/migrate.py: its lab, playbook runner and probe sessions

TOP = lab_bench.TOP
if TOP.parent.parent.name == "ansible_collections":
    sys.path.insert(0, str(TOP.parent.parent.parent))
else:
    sys.path.insert(0, str(TOP / "collections"))  # scripts/setup.sh links the checkout there

from ansible_collections.flowstream.platform.plugins.module_utils._probe import (  # noqa: E402  pylint: disable=wrong-import-position
    _counter_index, _tuple_key, instances_by_step)

CHAIN, STEP = "web", "mon"
FLOWS = 32
REQUEST = ["-e", "chain=" + CHAIN, "-e", "step=" + STEP, "-e", "verify=false"]
SCALES = (3, 4, 2)
GOALS = "promote and rollback at 10 kpps: 0 lost, 0 reordered; scaling: 0 lost for flows that did not move, moved <= 1.1 x ideal"


def counters(inv):
    """{instance: [per-flow counter]} of web's mon instances (module_host_info flows=true on every host)."""
    argv = [str(lab_bench.BIN / "ansible"), "-i", str(inv), "flowstream_module_hosts", "-m", "flowstream.platform.module_host_info",
            "-a", json.dumps({"host_bridge": "fs-host", "sample_seconds": 0, "flows": True})]
    proc = subprocess.run(argv, cwd=TOP, env=lab_bench.ENV, capture_output=True, text=True, timeout=300, check=False)
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    reports = list(data["plays"][0]["tasks"][0]["hosts"].values())
    return instances_by_step(reports, CHAIN).get(STEP, {})


def crossed(flows, then, now):
    """{flow id: the instances that counted packets of the flow between ``then`` and ``now``}."""
    a = {inst: _counter_index(c) for inst, c in then.items()}
    b = {inst: _counter_index(c) for inst, c in now.items()}
    out = {}
    for f in flows:
        key = _tuple_key(f["src"], f["dst"], f.get("proto", "udp"), f["sport"], f["dport"])
        out[f["flow"]] = {inst for inst in b if b[inst].get(key, 0) - a.get(inst, {}).get(key, 0) > 0}
    return out


def operation_under_probe(lab, name, path, *args, rate, per_flow=False):
    """One playbook run under the bench's probe session; its row."""
    dport = lab.dport(CHAIN)
    row = {"op": name, "args": list(args), "at": time.strftime("%H:%M:%S"), "load_1": round(os.getloadavg()[0], 2)}
    row["ready_s"] = round(lab_bench.wait_forwarding(dport), 1)
    t0_counters = counters(lab.inv) if per_flow else None
    sid = lab_bench.probe_start(dport, FLOWS, rate)
    window = []
    try:
        time.sleep(lab_bench.LEAD_S)
        t1_counters = counters(lab.inv) if per_flow else None
        started = time.time()
        run = lab.playbook(path, *args)
        window.append(("op", started, time.time()))
        time.sleep(lab_bench.TAIL_S)
    finally:
        result = lab_bench.probe_stop(sid, window)
    row.update(secs=round(run.seconds, 1), changed=run.changed())
    if run.failed():
        row["error"] = run.error()
    win = (result.get("windows") or {}).get("op") or {}
    for key in ("sent", "lost", "reordered", "duplicated", "blackout_ms"):
        row[key] = win.get(key)
    if per_flow and not run.failed():
        t2_counters = counters(lab.inv)
        flows = result.get("flows") or []
        before = crossed(flows, t0_counters, t1_counters)
        during = crossed(flows, t1_counters, t2_counters)
        moved = [f for f in flows if during[f["flow"]] != before[f["flow"]]]
        still = [f for f in flows if f not in moved]
        row.update(flows_moved=len(moved), flows_unmoved=len(still),
                   lost_moved=sum(f.get("lost") or 0 for f in moved), lost_unmoved=sum(f.get("lost") or 0 for f in still),
                   reordered_moved=sum(f.get("reordered") or 0 for f in moved),
                   reordered_unmoved=sum(f.get("reordered") or 0 for f in still))
        said = [t["hosts"].get("localhost", {}).get("msg") for t in run.tasks() if t["task"]["name"] == "What the scaling did to the step's flows"]
        rebalanced = (said[0] or {}).get("rebalanced") if said else None
        row["rebalanced"] = rebalanced if isinstance(rebalanced, dict) else None
    say(row)
    return row


def say(row):
    text = "%-14s %6s s  sent %7s lost %5s reord %5s dup %4s blackout %7s ms" % (
        row["op"], row.get("secs"), row.get("sent"), row.get("lost"), row.get("reordered"), row.get("duplicated"),
        "-" if row.get("blackout_ms") is None else "%.1f" % row["blackout_ms"])
    if row.get("flows_moved") is not None:
        text += " | flows moved %d (lost %d, reord %d), unmoved %d (lost %d, reord %d)" % (
            row["flows_moved"], row["lost_moved"], row["reordered_moved"], row["flows_unmoved"], row["lost_unmoved"],
            row["reordered_unmoved"])
    if row.get("rebalanced"):
        r = row["rebalanced"]
        text += " | plan: %s/%s slots moved (%.3f, ideal %.3f)" % (r["slots_moved"], r["slots"], r["share_moved"], r["ideal"])
    print(text, flush=True)
    if row.get("error"):
        print("  FAILED: %s" % row["error"][:2000], flush=True)


def set_kind(lab, kind):
    """The description's web/mon made ``kind`` (the naive way to change a step's module)."""
    path = Path(lab.inv) / "group_vars" / "all" / "chains.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    chain = next(c for c in data["flowstream_chains"] if c["name"] == CHAIN)
    step = next(s for s in chain["steps"] if s["name"] == STEP)
    step["kind"] = kind
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def summary(rows):
    lines = ["| operation | runs | sent (median) | lost: median / max | reordered: median / max | duplicated: max "
             "| blackout ms: median / max | seconds (median) |",
             "|---|---|---|---|---|---|---|---|"]
    order = []
    for r in rows:
        if r["op"] not in order:
            order.append(r["op"])
    for op in order:
        mine = [r for r in rows if r["op"] == op and not r.get("error")]
        failed = len([r for r in rows if r["op"] == op and r.get("error")])
        if not mine:
            lines.append("| %s | 0 (%d failed) | | | | | | |" % (op, failed))
            continue

        def col(key, how):
            values = [r.get(key) or 0 for r in mine]
            return how(values)
        lines.append("| %s | %d%s | %d | %d / %d | %d / %d | %d | %.1f / %.1f | %.1f |" % (
            op, len(mine), " (%d failed)" % failed if failed else "", col("sent", statistics.median), col("lost", statistics.median),
            col("lost", max), col("reordered", statistics.median), col("reordered", max), col("duplicated", max),
            col("blackout_ms", statistics.median), col("blackout_ms", max), col("secs", statistics.median)))
    return lines


def scale_lines(rows):
    lines = ["| change | plan: slots moved | share moved (x ideal) | probe flows moved / unmoved | lost: moved / unmoved flows "
             "| reordered: moved / unmoved | duplicated | blackout ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error") or not r.get("rebalanced"):
            lines.append("| %s | failed: %s |" % (r["op"], (r.get("error") or "no plan figures")[:200].replace("|", "/")))
            continue
        b = r["rebalanced"]
        lines.append("| %s | %d/%d | %.3f (%.2f) | %d / %d | %d / %d | %d / %d | %d | %.1f |" % (
            r["op"], b["slots_moved"], b["slots"], b["share_moved"], b["share_moved"] / b["ideal"], r["flows_moved"], r["flows_unmoved"],
            r["lost_moved"], r["lost_unmoved"], r["reordered_moved"], r["reordered_unmoved"], r.get("duplicated") or 0,
            r.get("blackout_ms") or 0))
    return lines


def rounds(lab, count, rate):
    rows = []
    trial = "playbooks/trial.yml"

    def operation(name, path, *args):
        return operation_under_probe(lab, name, path, *args, rate=rate)
    for _round in range(count):
        rows.append(operation("start", trial, *REQUEST, "-e", "type=monitor", "-e", "kind=process", "-e", "percent=10"))
        rows.append(operation("rollback", trial, *REQUEST, "-e", "action=rollback"))
        rows.append(operation("start", trial, *REQUEST, "-e", "type=monitor", "-e", "kind=process", "-e", "percent=10"))
        rows.append(operation("promote", trial, *REQUEST, "-e", "action=promote"))
        rows.append(operation("start", trial, *REQUEST, "-e", "type=monitor", "-e", "kind=kernel", "-e", "percent=10"))
        rows.append(operation("promote", trial, *REQUEST, "-e", "action=promote"))
        rows.append(operation("forget", trial, *REQUEST, "-e", "action=forget"))
        set_kind(lab, "process")
        rows.append(operation("naive promote", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
        set_kind(lab, "kernel")
        rows.append(operation("naive back", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of trial operations (default 3)")
    ap.add_argument("--rate", type=int, default=10000, help="the probe's packets per second through web (default 10000)")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsb lab up at the end")
    ap.add_argument("--no-lab-up", action="store_true", help="use the fsb lab as it is (deployed)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    tmp = tempfile.mkdtemp(prefix="fsb-trial-")
    inv, chains, platform = lab_bench.write_inventory(tmp)
    lab = lab_bench.Lab(inv, chains, platform)
    commit = lab_bench.sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
    result = {"argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit, "rate": args.rate, "flows": FLOWS,
              "rows": [], "scale": [], "goals": GOALS}
    out_dir = TOP / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("trial_ops-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    t_start = time.monotonic()
    try:
        if not args.no_lab_up:
            lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-down.yml"), "lab-down (before)")
            lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-up.yml"), "lab-up")
            lab_bench.must(lab_bench.playbook(inv, "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"), "deploy-chain")
        result["rows"] = rounds(lab, args.rounds, args.rate)
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        previous = 2
        for n in SCALES:
            result["scale"].append(operation_under_probe(lab, "%d -> %d" % (previous, n), "playbooks/scale-step.yml", *REQUEST,
                                                         "-e", "instances=%d" % n, rate=args.rate, per_flow=True))
            previous = n
    finally:
        lab_bench.stop_sessions()
        result["seconds"] = round(time.monotonic() - t_start, 1)
        lab_bench.lab_down(inv, tmp, args.keep_lab)
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("\nbench/trial_ops.py, %s, %d rounds, web at %d pps over %d flows; %.0f s in all; commit %s" % (
        result["started"], args.rounds, args.rate, FLOWS, result["seconds"], commit[:12]))
    print("\n".join(summary(result["rows"])))
    print("\nscale-step on web/mon")
    print("\n".join(scale_lines(result["scale"])))
    print("\ngoals (%s)\nevery row in %s" % (GOALS, path))


if __name__ == "__main__":
    main()
