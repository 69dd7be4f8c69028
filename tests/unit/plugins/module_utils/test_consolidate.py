# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The consolidation packing (objective pack): on small platforms as few hosts as exhaustive
search finds, and of those placements one with the fewest moves; on larger ones the lower bound
or one host more; kinds, switches, cordons, steps kept apart and headroom respected."""

from __future__ import annotations

import copy
import itertools
import random

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils._consolidate import Bin, Item, PackError, lower_bound, pack

K = 1000  # thousandths


def feasible(assignment, items, bins):
    by_name = {b.name: b for b in bins}
    used = {b.name: [b.base_cpu, b.base_mem, set(), b.base_pps] for b in bins}
    for item in items:
        box = by_name[assignment[item.iid]]
        if box.kinds is not None and item.kind not in box.kinds:
            return False
        if box.switch and item.switch and box.switch != item.switch:
            return False
        if not box.open and item.home != box.name:
            return False
        use = used[box.name]
        if item.group is not None and item.group in use[2]:
            return False
        use[0] += item.cpu
        use[1] += item.mem
        use[3] += item.pps
        if item.group is not None:
            use[2].add(item.group)
        if use[0] > box.cpu or use[1] > box.mem or (box.pps is not None and use[3] > box.pps):
            return False
    return True


def brute_force(items, bins):
    """(fewest hosts on, fewest moves at that count) over every placement."""
    best = None
    names = [b.name for b in bins]
    fixed = set(b.name for b in bins if b.fixed)
    for choice in itertools.product(names, repeat=len(items)):
        assignment = {i.iid: host for i, host in zip(items, choice)}
        if not feasible(assignment, items, bins):
            continue
        score = (len(set(choice) | fixed), sum(1 for i, host in zip(items, choice) if i.home is not None and host != i.home))
        if best is None or score < best:
            best = score
    return best


def random_platform(rng, n_bins, n_items):
    bins = []
    for index in range(n_bins):
        bins.append(Bin("mh%d" % index, rng.choice([2, 4]) * K, rng.choice([1024, 2048]) * K,
                        kinds=rng.choice([None, ("kernel", "process"), ("kernel", "process", "vm")]),
                        is_open=rng.random() > 0.15))
    items = []
    for index in range(n_items):
        home = rng.choice([None] + [b.name for b in bins] * 2)
        kind = rng.choice(["kernel", "process", "vm"])
        items.append(Item("i%d" % index, rng.choice([250, 500, 1000, 1500]), rng.choice([64, 256, 512, 1024]) * K, kind=kind,
                          group=rng.choice([None, None, "web/mon"]), home=home))
    return items, bins


@pytest.mark.parametrize("seed", range(40))
def test_small_platforms_use_as_few_hosts_as_exhaustive_search_and_the_fewest_moves(seed):
    rng = random.Random(seed)
    packs_as_brute_force(*random_platform(rng, rng.randint(2, 4), rng.randint(1, 6)))


def packs_as_brute_force(items, bins):
    """pack() fails where no placement exists, else finds the fewest hosts and, of those, the
    fewest moves, proven (exact), above its lower bound."""
    best = brute_force(items, bins)
    if best is None:
        with pytest.raises(PackError):
            pack(items, bins)
        return
    out = pack(items, bins)
    assert out["exact"]
    assert feasible(out["assignment"], items, bins)
    assert (len(out["active"]), len(out["moves"])) == best, out
    assert out["lower_bound"] <= best[0]


def test_what_fits_at_home_stays_home():
    bins = [Bin("a", 4 * K, 4096 * K), Bin("b", 4 * K, 4096 * K), Bin("c", 4 * K, 4096 * K)]
    items = [Item("x", 1 * K, 512 * K, home="a"), Item("y", 1 * K, 512 * K, home="b"), Item("z", 1 * K, 512 * K, home="b")]
    out = pack(items, bins)
    assert out["active"] == ["b"] and out["moves"] == ["x"]   # the host that holds the most stays on


def test_steps_kept_apart_cordons_kinds_and_fixed_hosts():
    bins = [Bin("a", 8 * K, 8192 * K, kinds=("kernel",)), Bin("b", 8 * K, 8192 * K), Bin("c", 8 * K, 8192 * K, is_open=False),
            Bin("d", 8 * K, 8192 * K, base_cpu=K, base_mem=K, fixed="holds instances of chains not described")]
    items = [Item("m0", K, K, kind="kernel", group="web/mon", home="a"), Item("m1", K, K, kind="kernel", group="web/mon", home="a"),
             Item("v", K, K, kind="vm", home="c")]
    out = pack(items, bins)
    assigned = out["assignment"]
    assert assigned["m0"] != assigned["m1"]          # apart
    assert assigned["v"] in ("b", "d", "c")            # not the kernel-only host
    assert "d" in out["active"]                        # fixed: stays on
    assert feasible(assigned, items, bins)
    assert len(out["active"]) == 2                     # d and one of the others
    assert lower_bound(items, bins) == 2


def test_nothing_fits_names_the_instance():
    bins = [Bin("a", 1 * K, 1024 * K)]
    with pytest.raises(PackError, match="big fits on no host"):
        pack([Item("big", 2 * K, 64 * K, label="big")], bins)


@pytest.mark.parametrize("seed", range(3))
def test_larger_platforms_stay_within_one_host_of_the_lower_bound(seed):
    rng = random.Random(1000 + seed)
    bins = [Bin("mh%03d" % n, rng.choice([8, 16]) * K, rng.choice([16384, 32768]) * K) for n in range(30)]
    items = [Item("i%d" % n, rng.choice([250, 500, 1000, 2000]), rng.choice([128, 512, 1024, 2048]) * K,
                  home=rng.choice(bins).name) for n in range(200)]
    out = pack(items, bins)
    assert feasible(out["assignment"], items, bins)
    assert len(out["active"]) <= out["lower_bound"] + 1, (len(out["active"]), out["lower_bound"])


# -- through the planner: policy objective pack -------------------------------------------------------
from ansible_collections.flowstream.platform.plugins.module_utils import _deploy  # noqa: E402 pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._planner import PlanError, plan  # noqa: E402 pylint: disable=wrong-import-position

from test_planner import SWITCHES, chain, chains, feed_back, host, ids, step  # noqa: E402 pylint: disable=import-error,wrong-import-position

WEB = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2), step("out", "wire", "process"))


def spread_over(hosts, request):
    """The platform as deploy-chain leaves it: spread over every host."""
    return feed_back(plan(request, hosts), hosts)


def four_hosts(**extra):
    hosts = {"mh%d" % n: host(trunk="t%d" % n) for n in range(1, 5)}
    hosts.update(extra)
    return hosts


def test_pack_moves_everything_onto_the_fewest_hosts_live_and_says_why():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    before = {e["host"] for e in plan(request, hosts)["instances"].values()}
    assert len(before) >= 2
    result = plan(request, hosts, policy={"objective": "pack", "pack": {"keep_free": 0}})
    report = result["consolidation"]
    assert report["worth_it"] and report["exact"]
    after = {e["host"] for e in result["instances"].values()}
    assert sorted(after) == report["after"] and len(after) == 1        # 4 small instances fit on one host
    assert sorted(report["power_off"]) == sorted(set(hosts) - after)
    for iid in result["moves"]:
        entry = result["instances"][iid]
        assert entry["action"] == "migrate" and entry["method"] == "live"
        assert "consolidation: 1 host(s) instead of" in entry["reason"]
    for name in report["power_off"]:
        assert result["hosts"][name]["status"] == "draining" and result["hosts"][name]["instances"] == []


def test_pack_keeps_a_host_free_for_failover_and_counts_declared_spares():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    report = plan(request, hosts, policy={"objective": "pack"})["consolidation"]   # keep_free 1 by default
    assert len(report["standby"]) == 1 and len(report["power_off"]) == 2
    with_spare = spread_over(four_hosts(spare1=host(spare=True, trunk="t9")), request)
    report = plan(request, with_spare, policy={"objective": "pack"})["consolidation"]
    assert report["standby"] == [] and report["spares"] == ["spare1"] and len(report["power_off"]) == 3


def test_pack_that_is_not_worth_it_moves_nothing_and_says_why():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    result = plan(request, hosts, policy={"objective": "pack", "pack": {"min_freed": 4}})
    assert result["moves"] == [] and not result["consolidation"]["worth_it"]
    assert "not worth it: 2 host(s) could be powered off" in result["consolidation"]["why"]
    soon = plan(request, hosts, policy={"objective": "pack", "pack": {"min_interval": 3600, "last": 1000, "now": 1600}})
    assert soon["moves"] == [] and "too soon: the last consolidation was 600 s ago" in soon["consolidation"]["why"]


def test_pack_twice_moves_nothing_the_second_time():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    first = plan(request, hosts, policy={"objective": "pack", "pack": {"keep_free": 0}})
    again = feed_back(first, hosts)
    second = plan(request, again, policy={"objective": "pack", "pack": {"keep_free": 0}})
    assert second["moves"] == [] and second["consolidation"]["freed"] == []


def test_pack_keeps_apart_what_the_chain_asks_apart_and_leaves_others_instances_where_they_are():
    apart = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2, apart=True), step("out", "wire", "process"))
    request = chains(apart)
    hosts = spread_over(four_hosts(), request)
    hosts["mh4"]["report"]["instances"]["handmade"] = {"chain": "other", "kind": "kernel", "legs": {},
                                                       "resources": {"cpu": 0.1, "memory": 16}}
    result = plan(request, hosts, policy={"objective": "pack", "pack": {"keep_free": 0}})
    mons = [result["instances"][i]["host"] for i in ids("web", 1, 2)]
    assert mons[0] != mons[1]
    report = result["consolidation"]
    assert "mh4" in report["after"] and "handmade" in report["fixed"]["mh4"]
    assert len(report["after"]) == 2


def test_pack_that_cannot_fit_with_the_headroom_names_the_instance():
    big = chain("big", step("vnf", "wire", "process", params={}))
    request = chains(big)
    hosts = spread_over({"mh1": host(cpu=0.1, trunk="t1")}, request)
    with pytest.raises(PlanError, match=r"chain 'big': step 'vnf': cannot consolidate with headroom 60 %: big2a20a \(big/vnf\) fits on no"):
        plan(request, hosts, policy={"objective": "pack", "pack": {"headroom": 0.6}})


def test_a_pack_plan_is_a_make_before_break_plan():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    out = _deploy.build_plan([WEB], {}, hosts, SWITCHES, {}, policy={"objective": "pack", "pack": {"keep_free": 0}}, only_moves=True)
    moves = [m for wave in out["waves"] for m in wave["moves"]]
    assert moves and all(m["how"] == "make_before_break" and m["carry"] for m in moves)
    assert out["consolidation"]["worth_it"]


def test_a_power_down_killed_half_way_is_finished_by_the_next_run():
    """Killed after it marked the hosts to free and moved one instance half-way (a copy on each
    host): the re-run names the hosts it was freeing (``freeing``), resumes that move, makes the
    rest, and powers off the same hosts; without ``freeing`` those hosts, marked draining, would
    be no host of the packing and stay on."""
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    policy = {"objective": "pack", "pack": {"keep_free": 0}}
    first = _deploy.build_plan([WEB], {}, hosts, SWITCHES, {}, policy=copy.deepcopy(policy), only_moves=True)
    off = first["consolidation"]["power_off"]
    moves = {m["instance"]: m for wave in first["waves"] for m in wave["moves"]}
    assert off and len(moves) >= 2
    half = copy.deepcopy(hosts)
    for name in off:
        half[name]["report"]["maintenance"] = {"state": "draining", "since": "2026-12-07T01:00:00Z",
                                               "reason": "powered off for quiet hours (power-down.yml)"}
    moved, *rest = sorted(moves)
    source, target = moves[moved]["from"], moves[moved]["to"]
    copy_of = copy.deepcopy(half[source]["report"]["instances"][moved])
    copy_of["legs"] = {"left": {"vlan": 900}, "right": {"vlan": 901}}
    half[target]["report"]["instances"][moved] = copy_of
    again = _deploy.build_plan([WEB], {}, half, SWITCHES, {}, only_moves=True,
                               policy={"objective": "pack", "pack": {"keep_free": 0, "freeing": off}})
    assert sorted(again["consolidation"]["power_off"]) == sorted(off), again["consolidation"]
    resumed = {m["instance"]: m for wave in again["waves"] for m in wave["moves"]}
    assert (resumed[moved]["from"], resumed[moved]["to"]) == (source, target), resumed
    assert all(resumed[i]["from"] == moves[i]["from"] for i in rest), resumed
    assert "an interrupted move, resumed" in again["instances"][moved]["reason"], again["instances"][moved]
    # the hosts it marked, not named: no host of the packing, left on
    unnamed = plan(request, half, policy={"objective": "pack", "pack": {"keep_free": 0}})
    assert not set(off) & set(unnamed["consolidation"]["power_off"]), unnamed["consolidation"]
    with pytest.raises(PlanError, match=r"policy.pack.freeing must be a list of module host names, got 'mh1'"):
        plan(request, half, policy={"objective": "pack", "pack": {"freeing": "mh1"}})


def test_respread_after_a_pack_restores_the_layout_placement_makes_from_empty():
    request = chains(WEB)
    hosts = four_hosts()
    day = plan(request, hosts)
    deployed = feed_back(day, hosts)
    night = feed_back(plan(request, deployed, policy={"objective": "pack", "pack": {"keep_free": 0}}), deployed)
    assert len({i["host"] for i in plan(request, night)["instances"].values()}) == 1
    morning = plan(request, night, policy={"respread": True})
    assert {i: e["host"] for i, e in morning["instances"].items()} == {i: e["host"] for i, e in day["instances"].items()}
    assert morning["moves"] and all("re-spread" in morning["instances"][i]["reason"] for i in morning["moves"])
    settled = feed_back(morning, night)
    again = plan(request, settled, policy={"respread": True})
    assert again["moves"] == []
    for n, name in enumerate(sorted(settled)):  # the hosts' live load moves; the layout does not
        settled[name]["report"]["cpu"]["utilization"] = 0.9 - 0.3 * n
        settled[name]["report"]["memory"]["available_mib"] -= 100 * n
    assert plan(request, settled, policy={"respread": True})["moves"] == []
    assert plan(request, deployed, policy={"respread": True})["moves"] == []   # not packed: nothing to undo
    with pytest.raises(PlanError, match="policy.respread goes with objective spread"):
        plan(request, night, policy={"respread": True, "objective": "pack"})


# -- packets per second ---------------------------------------------------------------------------------
def with_rates(hosts, rates, capacity_pps):
    """The hosts with each instance's measured packet rate (``rates``: {iid: pps}) in its report
    and every host declaring ``capacity_pps``."""
    out = copy.deepcopy(hosts)
    for spec in out.values():
        spec["capacity"]["pps"] = capacity_pps
        for iid, info in spec["report"]["instances"].items():
            info["pps"] = rates.get(iid, 0)
    return out


def test_a_pack_counts_the_packet_rate_each_instance_carries_against_the_hosts_declared_rate():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    iids = sorted(plan(request, hosts)["instances"])
    # the firewall and the first monitor carry 30,000 pps each; a host declares 50,000 (40,000 with the headroom)
    busy = with_rates(hosts, {iids[0]: 30000, iids[1]: 30000}, 50000)
    result = plan(request, busy, policy={"objective": "pack", "pack": {"keep_free": 0}})
    hosts_of = {iid: e["host"] for iid, e in result["instances"].items()}
    assert hosts_of[iids[0]] != hosts_of[iids[1]] and len(result["consolidation"]["after"]) == 2, result["consolidation"]
    for name in result["consolidation"]["after"]:
        assert result["hosts"][name]["reserved"]["pps"] <= 50000 and "pps" in result["hosts"][name]["left"]
    # the same rates with no pps declared: one host holds them all (rates are not counted)
    quiet = with_rates(hosts, {iids[0]: 30000, iids[1]: 30000}, None)
    assert len(plan(request, quiet, policy={"objective": "pack", "pack": {"keep_free": 0}})["consolidation"]["after"]) == 1


def test_a_drain_places_what_a_host_carries_where_its_packet_rate_fits_and_a_move_onto_a_full_host_is_refused():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    first = plan(request, hosts)
    moving = sorted(i for i, e in first["instances"].items() if e["host"] == "mh1")
    assert moving
    rates = {iid: 20000 for iid in first["instances"]}
    busy = with_rates(hosts, rates, 45000)
    drained = plan(request, busy, policy={"draining": ["mh1"]})
    for name, summary in drained["hosts"].items():
        assert summary["reserved"]["pps"] <= 45000, (name, summary)
    for iid in moving:
        assert drained["instances"][iid]["host"] != "mh1" and drained["instances"][iid]["action"] == "migrate"
    # asked onto a host that has no room for its packets: refused, naming the rate
    target = next(h for h in ("mh2", "mh3", "mh4") if drained["hosts"][h]["reserved"]["pps"] + 20000 > 45000)
    said = r"cannot move to %s: %s \d+ pps left \(it carries 20000 pps\) \(it needs 0.10 CPU, 16 MiB and 20000 pps; \d+ pps short\)"
    with pytest.raises(PlanError, match=said % (target, target)):
        plan(request, with_rates(feed_back(drained, busy), rates, 45000), policy={"moves": [{"instance": moving[0], "to": target}]})


def test_pack_items_with_packet_rates_against_exhaustive_search():
    rng = random.Random(7)
    for _round in range(25):
        items, bins = random_platform(rng, rng.randint(2, 4), rng.randint(1, 6))
        for box in bins:
            box.pps = rng.choice([None, 10000, 20000])
        for item in items:
            item.pps = rng.choice([0, 2000, 8000, 15000])
        packs_as_brute_force(items, bins)


@pytest.mark.parametrize("seed", range(4))
def test_larger_platforms_with_packet_rates_and_kinds_pack_feasibly_on_fewer_hosts_than_first_fit(seed):
    """Beyond the exact search (best fit, the most constrained first, shrinking): every packing
    holds what each host may hold (kinds, CPU, memory, declared pps), and needs fewer hosts than
    placing in id order on the first host with room."""
    rng = random.Random(2000 + seed)
    bins = [Bin("mh%03d" % n, rng.choice([8, 16]) * K, rng.choice([16384, 32768]) * K,
                kinds=rng.choice([("kernel", "process"), ("kernel", "process", "vm"), ("vm",)]),
                pps=rng.choice([None, 200000, 800000])) for n in range(30)]
    items = [Item("i%03d" % n, rng.choice([250, 500, 1000, 2000]), rng.choice([128, 512, 1024]) * K,
                  kind=rng.choice(["kernel", "process", "vm"]), home=rng.choice(bins).name,
                  pps=rng.choice([0, 5000, 20000, 60000])) for n in range(150)]
    items = [i for i in items if any(i.kind in b.kinds for b in bins if b.name == i.home)]   # each where it may run now
    out = pack(items, bins)
    assert feasible(out["assignment"], items, bins)
    first = {}
    load = {b.name: [0, 0, 0] for b in bins}
    for item in sorted(items, key=lambda i: i.iid):
        box = next(b for b in bins if item.kind in b.kinds and load[b.name][0] + item.cpu <= b.cpu and load[b.name][1] + item.mem <= b.mem
                   and (b.pps is None or load[b.name][2] + item.pps <= b.pps))
        load[box.name] = [load[box.name][0] + item.cpu, load[box.name][1] + item.mem, load[box.name][2] + item.pps]
        first[item.iid] = box.name
    assert out["lower_bound"] <= len(out["active"]) <= len(set(first.values())), (len(out["active"]), len(set(first.values())))


def test_kept_instances_carrying_more_than_a_hosts_packet_rate_stay_and_are_warned_about():
    request = chains(WEB)
    hosts = spread_over(four_hosts(), request)
    first = plan(request, hosts)
    on_mh1 = [i for i, e in first["instances"].items() if e["host"] == "mh1"]
    busy = with_rates(hosts, {iid: 90000 for iid in on_mh1}, 50000)
    again = plan(request, busy)
    assert again["moves"] == [] and all(again["instances"][i]["host"] == "mh1" for i in on_mh1)
    assert any(w.startswith("mh1: the instances kept there carry more than its packet rate capacity (%d pps, measured now, of "
                            "50000 pps)" % (90000 * len(on_mh1))) for w in again["warnings"]), again["warnings"]
