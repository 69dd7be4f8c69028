# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark the consolidation planner (objective pack): hosts left on against the lower bound,
moves, seconds; goal 1,000 instances on 100 hosts in under 1 s, at most the lower bound + 1.

    .venv/bin/python bench/consolidate.py [--hosts 100] [--seeds 3] [--pps]

Pure Python, no lab. The platform and chains are bench/planner.py's (mixed kinds and capacities,
every twentieth host a spare), deployed as deploy-chain does it (objective spread, from empty),
at three loads: 150, 500 and 1,000 instances (15, 50 and 100 chains of 5 steps of 2). Each is
then consolidated three ways, side by side:

- ``plan(pack)``: the planner with ``objective: pack`` (headroom 20 %, keep_free 0), the whole
  plan - what chain_plan runs;
- ``pack() alone``: the packing on its own (_consolidate.pack), the same model;
- ``first fit``: the naive way - every instance, in id order, on the first host (by name) with
  room (the same headroom, kinds and switch), nothing kept in place.

With ``--pps`` every host also declares a packet rate (250,000, 500,000 or 1,000,000 pps) and
every deployed instance carries a measured rate (1,000 to 60,000 pps, as its host's report would
say): the packing counts it as a third resource.

``lower bound``: per resource, the fewest of the largest hosts whose room adds up to the demand.
Prints one table; the ratios are hosts over the lower bound and seconds over the 1 s goal.
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from planner import SWITCHES, feed_back, platform, request  # noqa: E402  pylint: disable=wrong-import-position,import-error

from ansible_collections.flowstream.platform.plugins.module_utils import _chains, _consolidate, _planner  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

GOAL_SECONDS = 1.0
HEADROOM = 0.2
LOADS = (15, 50, 100)  # chains of 5 steps x 2 instances


def model(chains, hosts):
    """The packing's model of a deployed platform, as the planner builds it."""
    states = _planner.host_states(hosts)
    policy = _planner.check_policy({"objective": "pack", "pack": {"headroom": HEADROOM, "keep_free": 0}}, states)
    wanted, _by_name = _planner._wanted(chains)  # pylint: disable=protected-access
    bins = [_consolidate.Bin(st.name, int(st.cap_cpu * (1 - HEADROOM)), int(st.cap_mem * (1 - HEADROOM)), kinds=st.kinds,
                             switch=st.switch, pps=None if st.cap_pps is None else int(st.cap_pps * (1 - HEADROOM)))
            for st in states.values() if not st.spare]
    items = []
    for iid, (chain, step, _n) in wanted.items():
        home = next((st.name for st in states.values() if iid in st.instances), None)
        pps = (states[home].instances[iid].get("pps") or 0) if home else 0
        items.append(_consolidate.Item(iid, _planner._milli(step["resources"].get("cpu")),  # pylint: disable=protected-access
                                       _planner._milli(step["resources"].get("memory")),  # pylint: disable=protected-access
                                       kind=step["kind"], switch=chain.get("switch"), home=home, pps=pps))
    return items, bins, policy


def first_fit(items, bins):
    load = {b.name: [0, 0, 0] for b in bins}
    out = {}
    for item in sorted(items, key=lambda i: i.iid):
        for box in bins:
            used = load[box.name]
            if _consolidate.can_hold(item, box) and used[0] + item.cpu <= box.cpu and used[1] + item.mem <= box.mem \
                    and (box.pps is None or used[2] + item.pps <= box.pps):
                used[0] += item.cpu
                used[1] += item.mem
                used[2] += item.pps
                out[item.iid] = box.name
                break
        else:
            return None
    return {"active": sorted(set(out.values())), "moves": [i.iid for i in items if i.home and out[i.iid] != i.home]}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pps", action="store_true", help="hosts declare a packet rate, instances carry measured ones")
    args = parser.parse_args()
    print("consolidation: %d hosts (bench/planner.py's platform, every twentieth a spare), chains of 5 steps x 2 instances, "
          "headroom %.0f %%%s, Python %s" % (args.hosts, HEADROOM * 100, ", packet rates counted" if args.pps else "",
                                             sys.version.split()[0]))
    print("| seed | instances | hosts with instances (spread) | lower bound | way | hosts on after | / lower bound | moves | seconds "
          "| / %.0f s goal |" % GOAL_SECONDS)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        hosts = platform(args.hosts, seed=20091 + seed)
        rng = random.Random(seed)
        if args.pps:
            for spec in hosts.values():
                spec["capacity"]["pps"] = rng.choice([250000, 500000, 1000000])
        for count in LOADS:
            chains = _chains.validate(request(count, 5, 2), None, SWITCHES)
            deployed = feed_back(_planner.plan(chains, hosts), hosts)
            if args.pps:
                for spec in deployed.values():
                    for info in (spec["report"] or {}).get("instances", {}).values():
                        info["pps"] = rng.choice([1000, 5000, 20000, 60000])
            spread = sum(1 for h in deployed.values() if h["report"]["instances"])
            items, bins, _policy = model(chains, deployed)
            bound = _consolidate.lower_bound(items, bins)
            pack = {"objective": "pack", "pack": {"headroom": HEADROOM, "keep_free": 0}}
            seconds, result = timed(_planner.plan, chains, deployed, policy=pack)
            report = result["consolidation"]
            rows = [("plan(pack)", len(report["after"]), len(result["moves"]), seconds)]
            seconds, packed = timed(_consolidate.pack, items, bins)
            rows.append(("pack() alone", len(packed["active"]), len(packed["moves"]), seconds))
            seconds, naive = timed(first_fit, items, bins)
            rows.append(("first fit", len(naive["active"]) if naive else None, len(naive["moves"]) if naive else None, seconds))
            for way, on, moves, secs in rows:
                print("| %d | %d | %d | %d | %s | %s | %s | %s | %.3f | %.2f |" % (
                    seed, len(items), spread, bound, way, on, "%.2f" % (on / float(bound)) if on else "-", moves, secs,
                    secs / GOAL_SECONDS))


if __name__ == "__main__":
    main()
