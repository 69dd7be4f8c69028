# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark the planner: 1,000 instances on 100 module hosts, goal under 1 s.

    .venv/bin/python bench/planner.py [--chains 100] [--steps 5] [--instances 2] [--hosts 100]

Pure Python, no lab. The platform: ``--hosts`` module hosts (every twentieth a spare) with
mixed kinds (kernel+process, kernel+process+vm, process+vm, kernel) and capacities (8/16/32
cores, 16/32/64 GiB), live CPU utilization and available memory drawn from a fixed seed, 20
VLAN tags already in use on each. The request: ``--chains`` chains of ``--steps`` steps
(firewall/kernel, monitor/process, inspect/process, wire/vm, shaper/kernel, cycling) of
``--instances`` instances each. One run of each scenario, wall clock of ``plan()`` alone:

- ``from empty``: nothing runs yet, every instance is placed;
- ``re-run, everything exists``: the plan fed back as host reports (what module_host_info
  would say after it was applied): everything is kept;
- ``one host out of service``: the same, with the busiest host drained: its instances move.

Prints a table of seconds and the ratio to the 1 s goal. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
if TOP.parent.parent.name == "ansible_collections":
    sys.path.insert(0, str(TOP.parent.parent.parent))
else:
    sys.path.insert(0, str(TOP / "collections"))  # scripts/setup.sh links the checkout there

from ansible_collections.flowstream.platform.plugins.module_utils import _chains  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._planner import plan  # noqa: E402  pylint: disable=wrong-import-position

GOAL_SECONDS = 1.0
STEP_TYPES = [("firewall", "kernel", {}), ("monitor", "process", {}), ("inspect", "process", {"patterns": ["evil"]}),
              ("wire", "vm", {}), ("shaper", "kernel", {"rate": "10mbit"})]
HOST_KINDS = [["kernel", "process"], ["kernel", "process", "vm"], ["process", "vm"], ["kernel"]]
SWITCHES = {"sw1": {"uplinks": {"source": "up-src", "sink": "up-sink"}}}


def platform(count, seed=20091):
    rnd = random.Random(seed)
    hosts = {}
    for i in range(count):
        memory = rnd.choice([16384, 32768, 65536])
        hosts["mh%03d" % i] = {
            "capacity": {"cpu": rnd.choice([8, 16, 32]), "memory": memory},
            "kinds": HOST_KINDS[i % len(HOST_KINDS)], "spare": i % 20 == 19, "in_service": True,
            "trunk": "tr%03d" % i, "switch": "sw1",
            "report": {"cpu": {"count": 32, "utilization": round(rnd.random() * 0.6, 3), "load_1": 1.0},
                       "memory": {"available_mib": memory - rnd.choice([512, 1024, 4096])},
                       "instances": {},
                       "vlans": {"in_use": {str(t): "other%s" % t for t in rnd.sample(range(100, 200), 20)}}}}
    return hosts


def request(chains, steps, instances):
    descs = []
    for c in range(chains):
        # c000, c001, ...: chain_short keeps 3 letters and a few bits of hash, so names sharing
        # their first letters collide and validate refuses them: each chain gets its own tag
        descs.append({"name": "c%03d" % c, "tag": "c%03d" % c, "from": "source", "to": "sink", "match": {"tcp": True, "tp_dst": 1000 + c},
                      "steps": [{"name": "s%d" % s, "type": STEP_TYPES[s % len(STEP_TYPES)][0], "kind": STEP_TYPES[s % len(STEP_TYPES)][1],
                                 "params": STEP_TYPES[s % len(STEP_TYPES)][2], "instances": instances} for s in range(steps)]})
    return descs


def feed_back(result, hosts):
    """The hosts as module_host_info reports them once the plan is applied."""
    out = copy.deepcopy(hosts)
    for iid, entry in result["remove"].items():
        for name in entry["hosts"]:
            out[name]["report"]["instances"].pop(iid, None)
    for iid, entry in result["instances"].items():
        rep = out[entry["host"]]["report"]
        rep["instances"][iid] = {"chain": entry["chain"], "step": entry["step"], "kind": entry["kind"], "type": entry["type"],
                                 "resources": dict(entry["resources"]), "state": "running",
                                 "legs": {leg: {"vlan": tag} for leg, tag in entry["vlans"].items()}}
        for tag in entry["vlans"].values():
            rep["vlans"]["in_use"][str(tag)] = "fs-%s" % iid
        if entry["new"]:
            rep["memory"]["available_mib"] -= entry["resources"].get("memory", 0)
    return out


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--hosts", type=int, default=100)
    args = parser.parse_args()

    hosts = platform(args.hosts)
    seconds, chains = timed(_chains.validate, request(args.chains, args.steps, args.instances), None, SWITCHES)
    rows = [("_chains.validate (%d chains)" % args.chains, "-", seconds)]

    seconds, first = timed(plan, chains, hosts)
    rows.append(("from empty", "%d placed" % sum(e["new"] for e in first["instances"].values()), seconds))

    existing = feed_back(first, hosts)
    seconds, again = timed(plan, chains, existing)
    assert not again["remove"] and not again["moves"] and not any(e["new"] for e in again["instances"].values())
    rows.append(("re-run, everything exists", "%d kept" % len(again["instances"]), seconds))

    busiest = max(sorted(again["hosts"]), key=lambda name: len(again["hosts"][name]["instances"]))
    existing[busiest]["in_service"] = False
    seconds, drained = timed(plan, chains, existing)
    rows.append(("one host out of service (%s)" % busiest, "%d moved" % len(drained["moves"]), seconds))

    in_service = sum(1 for h in hosts.values() if not h["spare"])
    print("planner: %d instances (%d chains x %d steps x %d), %d hosts (%d in service, %d spares), Python %s"
          % (len(first["instances"]), args.chains, args.steps, args.instances, len(hosts), in_service, len(hosts) - in_service,
             sys.version.split()[0]))
    print("| scenario | instances | seconds | ratio to the %.0f s goal |" % GOAL_SECONDS)
    print("|---|---|---|---|")
    for name, what, secs in rows:
        print("| %s | %s | %.3f | %.2f |" % (name, what, secs, secs / GOAL_SECONDS))


if __name__ == "__main__":
    main()
