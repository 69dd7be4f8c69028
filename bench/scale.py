# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the platform's cost grows with its work: 3, 10, 30 and 100 chains on the lab, and the
planner and compiler alone at 1,000 chains on 100 simulated hosts.

    .venv/bin/python bench/scale.py [--sizes 3,10,30,100] [--plan-only] [--no-drain] [--keep-lab]
                                    [--verify-seconds 3]

Run as root from the checkout, with no other lab carrying traffic.

1. **Planning alone** (no lab, pure Python): ``_deploy.build_plan`` - validate, the overlap
   check, placement and the compiled flows of every chain - for 1,000 chains of 3 steps on 100
   simulated module hosts (bench/planner.py's platform), from nothing; and the overlap check
   alone, ours (matches split by what makes them disjoint) against the naive way (every pair of
   chains compared, as the check did before), on the same 1,000 chains.
2. **On the lab** (bench/migrate.py's lab, prefix ``fsb``; one switch, three module hosts): for
   each size N, N one-step chains (a kernel ``wire`` each: 0.05 CPU, 16 MiB, so 100 fit the lab's
   hosts as they are), each on its own 16 destination ports, verified with 4 flows at
   ``max(50, 6000 / N)`` pps each (so all chains together stay within what the lab carries) for
   ``--verify-seconds`` (3), and timed as whole commands:
   - ``deploy``: ``deploy-chain.yml -e flowstream_skip_verify=true`` from nothing;
   - ``re-run``: the same again (must say changed=0);
   - ``verify``: ``verify_chains.yml`` - one probe for every chain at once, each judged on its own;
   - ``drain``: ``drain-host.yml -e hosts=mh1`` (the host's instances moved make-before-break,
     with the probe through every chain it touches, then a verify), then ``uncordon-host.yml``;
   - ``remove``: the chains written ``state: absent`` and deploy-chain run (back to nothing).

Prints both tables with the cost per chain and writes everything to
bench/results/scale-<time>.json. The lab is taken down at the end (also on failure) unless
``--keep-lab``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

import migrate as lab_bench  # bench/migrate.py: its lab, playbook runner
import planner as planner_bench  # bench/planner.py: the simulated platform and request

TOP = lab_bench.TOP
if TOP.parent.parent.name == "ansible_collections":
    sys.path.insert(0, str(TOP.parent.parent.parent))
else:
    sys.path.insert(0, str(TOP / "collections"))  # scripts/setup.sh links the checkout there

from ansible_collections.flowstream.platform.plugins.module_utils import _compiler  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._chains import ChainError, validate  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._deploy import build_plan  # noqa: E402  pylint: disable=wrong-import-position

SIZES = (3, 10, 30, 100)
BASE_PORT = 20000
PORTS = 16
TOTAL_PPS = 6000
GOALS = "verify 100 chains <= 30 s, 1 chain <= 6 s; deploy 100 chains from nothing <= 60 s, re-run <= 20 s (changed=0); " \
        "planner + compiler for 1,000 chains on 100 hosts <= 5 s"


# -- planning alone ---------------------------------------------------------------------------------
def pairwise(chains):
    """The naive overlap check: every pair of chains compared (what check_overlaps did before)."""
    present = [c for c in chains if c["state"] == "present"]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            _compiler._check_pair(a, b)  # pylint: disable=protected-access


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def planning(count=1000, hosts=100, steps=3):
    platform = planner_bench.platform(hosts)
    for host in platform.values():
        host["host_bridge"] = "fs-host"
    switches = {"sw1": {"uplinks": {"source": "up-src", "sink": "up-sink"}, "openflow_target": "unix:/x", "openflow_version": "OpenFlow13"}}
    request = planner_bench.request(count, steps, 1)
    whole, plan = timed(build_plan, request, {}, platform, switches, {})
    valid = validate(request, None, {"sw1": {"uplinks": switches["sw1"]["uplinks"]}})
    ours = timed(_compiler.check_overlaps, valid)[0]
    naive = timed(pairwise, valid)[0]
    # one chain overlapping the last: both ways must find it (and say the same)
    wide = dict(valid[-1], name="wide", match={"tcp": True})
    said = []
    for fn in (_compiler.check_overlaps, pairwise):
        try:
            fn(valid + [wide])
            said.append(None)
        except ChainError as exc:
            said.append(str(exc))
    row = {"chains": count, "steps": steps, "hosts": hosts, "instances": len(plan["instances"]),
           "flows": sum(len(s.get("flows") or []) for s in plan["switches"].values()),
           "build_plan_s": round(whole, 3), "overlaps_ours_s": round(ours, 4), "overlaps_naive_s": round(naive, 3),
           "overlap_found_alike": said[0] == said[1] and said[0] is not None}
    print("planning, %d chains of %d steps on %d hosts: build_plan %.2f s (%d instances, %d switch flows); overlap check: ours %.4f s, "
          "every pair %.2f s (%.0f x); the same overlap found both ways: %s" % (
              count, steps, hosts, whole, row["instances"], row["flows"], ours, naive, naive / max(ours, 1e-6),
              row["overlap_found_alike"]), flush=True)
    return row


# -- on the lab -----------------------------------------------------------------------------------------
def chains_file(inv, count, state="present", seconds=3):
    """chains.yml for ``count`` one-step chains (a kernel wire each), every chain on its own 16
    destination ports, verified at a share of TOTAL_PPS for ``seconds``."""
    path = Path(inv) / "group_vars" / "all" / "chains.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rate = max(50, TOTAL_PPS // max(count, 1))
    chains = []
    for n in range(count):
        port = BASE_PORT + PORTS * n
        chains.append({"name": "s%03d" % n, "tag": "s%03d" % n, "switch": "sw1", "from": "source", "to": "sink", "state": state,
                       "match": {"udp": True, "nw_src": lab_bench.SOURCE_IP, "nw_dst": lab_bench.SINK_IP, "tp_dst": "0x%x/0xfff0" % port},
                       "steps": [{"name": "w", "type": "wire", "kind": "kernel"}],
                       "verify": {"rate": rate, "flows": 4, "duration": seconds, "base_port": port}})
    data["flowstream_chains"] = chains
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return rate


def command(inv, name, path, *args, timeout=1800):
    run = lab_bench.playbook(inv, path, *args, timeout=timeout)
    out = {"secs": round(run.seconds, 1), "changed": run.changed(), "ok": not run.failed()}
    if run.failed():
        out["error"] = run.error()[:3000]
    if name == "verify" and not run.failed():
        rows = [t["hosts"].get("localhost", {}).get("msg") for t in run.tasks() if t["task"]["name"] == "The probe's figures, chain by chain"]
        out["table_rows"] = len(rows[0]) - 1 if rows and isinstance(rows[0], list) else None
    print("  %-8s %7.1f s  changed=%-4d %s" % (name, out["secs"], out["changed"], "ok" if out["ok"] else "FAILED: " + out["error"][:600]),
          flush=True)
    return out


def on_lab(inv, sizes, drain, seconds=3):
    rows = []
    for count in sizes:
        rate = chains_file(inv, count, seconds=seconds)
        print("%d chains (each 4 flows at %d pps):" % (count, rate), flush=True)
        row = {"chains": count, "rate_per_chain": rate}
        row["deploy"] = command(inv, "deploy", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        row["re-run"] = command(inv, "re-run", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        row["verify"] = command(inv, "verify", "playbooks/verify_chains.yml")
        if drain:
            row["drain"] = command(inv, "drain", "playbooks/drain-host.yml", "-e", "hosts=mh1")
            row["uncordon"] = command(inv, "uncordon", "playbooks/uncordon-host.yml", "-e", "hosts=mh1")
        chains_file(inv, count, state="absent", seconds=seconds)
        row["remove"] = command(inv, "remove", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        rows.append(row)
    return rows


def table(rows, drain):
    ops = ["deploy", "re-run", "verify"] + (["drain", "uncordon"] if drain else []) + ["remove"]
    lines = ["| chains | " + " | ".join("%s s (per chain)" % op for op in ops) + " | re-run changed |",
             "|---|" + "---|" * len(ops) + "---|"]
    for row in rows:
        cells = []
        for op in ops:
            got = row.get(op) or {}
            cells.append("%.1f (%.2f)%s" % (got["secs"], got["secs"] / row["chains"], "" if got.get("ok") else " FAILED") if got else "-")
        lines.append("| %d | %s | %s |" % (row["chains"], " | ".join(cells), row["re-run"]["changed"]))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default=",".join(str(s) for s in SIZES), help="chain counts on the lab (default 3,10,30,100)")
    ap.add_argument("--plan-only", action="store_true", help="the planning part only (no lab)")
    ap.add_argument("--no-drain", action="store_true", help="leave out the drain and uncordon")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsb lab up at the end")
    ap.add_argument("--verify-seconds", type=float, default=3, help="each chain's verify duration (default 3)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    commit = lab_bench.sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
    result = {"argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit, "goals": GOALS}
    out_dir = TOP / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("scale-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    t_start = time.monotonic()
    result["planning"] = planning()
    if not args.plan_only:
        if os.geteuid() != 0:
            raise SystemExit("run as root")
        tmp = tempfile.mkdtemp(prefix="fsb-scale-")
        inv, _chains, _platform = lab_bench.write_inventory(tmp)
        try:
            lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-down.yml"), "lab-down (before)")
            lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-up.yml"), "lab-up")
            result["lab"] = on_lab(inv, sizes, not args.no_drain, seconds=args.verify_seconds)
        finally:
            result["seconds"] = round(time.monotonic() - t_start, 1)
            lab_bench.lab_down(inv, tmp, args.keep_lab)
            path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["seconds"] = round(time.monotonic() - t_start, 1)
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("\nbench/scale.py, %s, commit %s, %.0f s in all" % (result["started"], commit[:12], result["seconds"]))
    if result.get("lab"):
        print("\n".join(table(result["lab"], not args.no_drain)))
    print("\ngoals (%s)\nevery figure in %s" % (GOALS, path))


if __name__ == "__main__":
    main()
