# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The planner: placements kept on a re-run, parallel steps spread, spares kept free, kinds and
capacity (declared and live) respected, VLAN tags, removals, moves off a host that left service,
errors that name the chain, the step and the shortfall, determinism; and hypothesis properties
over random platforms and chains."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _chains
from ansible_collections.flowstream.platform.plugins.module_utils import _planner
from ansible_collections.flowstream.platform.plugins.module_utils._planner import PlanError, plan

SWITCHES = {"sw1": {"uplinks": {"source": "p1", "sink": "p2"}}, "sw2": {"uplinks": {"source": "p3", "sink": "p4"}}}


# -- helpers ----------------------------------------------------------------------------------------
def step(name, type_name="wire", kind="process", instances=1, **extra):
    out = {"name": name, "type": type_name, "kind": kind, "instances": instances}
    out.update(extra)
    return out


def chain(name, *steps, switch="sw1", state="present"):
    if state == "absent":
        return {"name": name, "state": "absent"}
    return {"name": name, "switch": switch, "from": "source", "to": "sink", "match": {"tcp": True}, "steps": list(steps)}


def chains(*descs):
    return _chains.validate(list(descs), switches=SWITCHES)


def host(cpu=2.0, memory=2048, kinds=("kernel", "process"), spare=False, in_service=True, util=0.0,
         available=8192, instances=None, in_use=(), switch="sw1", trunk=None, report=True):
    rep = None
    if report:
        rep = {"cpu": {"count": 4, "utilization": util, "load_1": 0.0},
               "memory": {"available_mib": available},
               "instances": copy.deepcopy(instances or {}),
               "vlans": {"in_use": {str(t): "port%d" % t for t in in_use}}}
    return {"capacity": {"cpu": cpu, "memory": memory}, "kinds": list(kinds), "spare": spare, "in_service": in_service,
            "trunk": trunk or "tr-x", "switch": switch, "report": rep}


def feed_back(result, hosts):
    """The hosts as module_host_info would report them after the plan was applied: the plan's
    instances with their external ids and VLANs, what it removed gone, live memory reduced."""
    out = copy.deepcopy(hosts)
    for name, spec in out.items():
        rep = spec["report"]
        if rep is None:
            continue
        for iid, entry in result["remove"].items():
            if name in entry["hosts"]:
                gone = rep["instances"].pop(iid)
                for leg in gone.get("legs", {}).values():
                    rep["vlans"]["in_use"].pop(str(leg.get("vlan")), None)
                rep["memory"]["available_mib"] += (gone.get("resources") or {}).get("memory", 0)
    for iid, entry in result["instances"].items():
        rep = out[entry["host"]]["report"]
        rep["instances"][iid] = {
            "chain": entry["chain"], "step": entry["step"], "kind": entry["kind"], "type": entry["type"],
            "resources": dict(entry["resources"]), "state": "running",
            "legs": {leg: {"vlan": tag, "port": "fs-%s-%s" % (iid, leg[0])} for leg, tag in entry["vlans"].items()}}
        for leg, tag in entry["vlans"].items():
            rep["vlans"]["in_use"][str(tag)] = "fs-%s-%s" % (iid, leg[0])
        if entry["new"]:
            rep["memory"]["available_mib"] -= entry["resources"].get("memory", 0)
    return out


def by_host(result):
    return {iid: e["host"] for iid, e in result["instances"].items()}


def ids(chain_name, step_index, count):
    return [_chains.instance_id(chain_name, step_index, n) for n in range(count)]


THREE = {"mh1": host(trunk="t1"), "mh2": host(trunk="t2"), "mh3": host(trunk="t3"), "spare1": host(spare=True, trunk="t9")}


# -- keeping, spreading, spares, kinds ------------------------------------------------------------------
def test_a_rerun_moves_nothing():
    request = chains(chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process", 3)),
                     chain("mail", step("ids", "inspect", "process", 2, params={"patterns": ["x"]})))
    first = plan(request, THREE)
    assert all(e["new"] for e in first["instances"].values()) and len(first["instances"]) == 6
    second = plan(request, feed_back(first, THREE))
    assert second["remove"] == {} and second["moves"] == []
    assert not any(e["new"] for e in second["instances"].values())
    for iid, entry in second["instances"].items():
        assert (entry["host"], entry["vlans"]) == (first["instances"][iid]["host"], first["instances"][iid]["vlans"])
        assert entry["reason"] == "kept on %s (already there)" % entry["host"]
    assert {h: e["reserved"] for h, e in second["hosts"].items()} == {h: e["reserved"] for h, e in first["hosts"].items()}


def test_a_rerun_keeps_placements_even_when_another_host_is_now_emptier():
    request = chains(chain("web", step("mon", "monitor", "process", 2)))
    first = plan(request, THREE)
    again = feed_back(first, THREE)
    for spec in again.values():
        spec["report"]["cpu"]["utilization"] = 0.9  # every host that runs something is busy now ...
    again["mh4"] = host(trunk="t4")  # ... and an idle one arrived
    second = plan(request, again)
    assert by_host(second) == by_host(first)
    assert second["hosts"]["mh4"]["instances"] == []


def test_a_parallel_step_spreads_over_hosts_before_doubling_up():
    hosts = dict(THREE, mh1=host(util=0.9, trunk="t1"))  # mh1 is the busiest, it still gets one
    result = plan(chains(chain("web", step("mon", "monitor", "process", 3))), hosts)
    assert sorted(by_host(result).values()) == ["mh1", "mh2", "mh3"]
    result = plan(chains(chain("web", step("mon", "monitor", "process", 7))), hosts)
    counts = {h: e["instances"] for h, e in result["hosts"].items()}
    assert sorted(len(v) for v in counts.values()) == [0, 2, 2, 3]
    assert counts["spare1"] == [] and len(counts["mh1"]) == 2  # the extra one goes to a less loaded host


def test_other_steps_do_not_count_against_spreading():
    # once mh1 holds web/mon, web/fw still goes there when mh1 is the less loaded: only the same step spreads
    hosts = {"mh1": host(cpu=4, trunk="t1"), "mh2": host(cpu=4, util=0.5, trunk="t2")}
    result = plan(chains(chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process"))), hosts)
    assert set(by_host(result).values()) == {"mh1"}


def test_spares_are_never_used_for_normal_placement():
    hosts = {"mh1": host(cpu=0.1, trunk="t1"), "spare1": host(cpu=8, spare=True, trunk="t9")}
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 2))), hosts)
    assert "(spares spare1 are kept free)" in str(err.value)
    assert err.value.details["hosts"] == {"mh1": "0.00 CPU left"}
    result = plan(chains(chain("web", step("mon", "monitor", "process", 1))), hosts)
    assert by_host(result) == {ids("web", 0, 1)[0]: "mh1"}
    assert result["hosts"]["spare1"]["status"] == "spare" and result["hosts"]["spare1"]["instances"] == []


def test_an_instance_already_on_a_spare_stays_there_but_nothing_new_joins_it():
    # e.g. put there by a failover: moving it back is a deliberate operation, not a side effect of a re-run
    request = chains(chain("web", step("mon", "monitor", "process", 2)))
    iid = ids("web", 0, 2)[0]
    running = {iid: {"chain": "web", "step": "mon", "kind": "process", "type": "monitor", "resources": {"cpu": 0.1, "memory": 32},
                     "legs": {"left": {"vlan": 100}, "right": {"vlan": 101}}}}
    hosts = {"mh1": host(util=0.9, trunk="t1"), "spare1": host(spare=True, instances=running, in_use=(100, 101), trunk="t9")}
    result = plan(request, hosts)
    assert by_host(result) == {iid: "spare1", ids("web", 0, 2)[1]: "mh1"}
    assert result["instances"][iid]["reason"] == "kept on spare1 (already there)"


def test_kinds_are_respected():
    hosts = {"mh1": host(kinds=["kernel"], trunk="t1"), "mh2": host(kinds=["process"], util=0.5, trunk="t2"),
             "mh3": host(kinds=["vm"], trunk="t3")}
    result = plan(chains(chain("web", step("fw", "firewall", "kernel", 2), step("ids", "inspect", "process", 2, params={"patterns": ["x"]}),
                               step("g", "wire", "vm"))), hosts)
    for entry in result["instances"].values():
        assert entry["kind"] in hosts[entry["host"]]["kinds"]
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("w", "wire", "click"))), hosts)
    assert str(err.value) == ("chain 'web': step 'w': capacity short: needs 1 instance of 0.05 CPU and 16 MiB (kind click); none placed; "
                              "no host fits it: mh1 does not run click, mh2 does not run click, mh3 does not run click")


def test_a_chain_uses_only_hosts_on_its_switch():
    hosts = {"mh1": host(switch="sw1", util=0.9, trunk="t1"), "mh2": host(switch="sw2", trunk="t2")}
    result = plan(chains(chain("web", step("mon", "monitor", "process", 2), switch="sw1")), hosts)
    assert set(by_host(result).values()) == {"mh1"}
    assert all(e["trunk"] == "t1" for e in result["instances"].values())


def test_a_host_without_report_gets_nothing_new():
    hosts = {"mh1": host(report=False, trunk="t1"), "mh2": host(cpu=0.1, trunk="t2")}
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 2))), hosts)
    assert "mh1 has no report (its instances and VLAN tags are unknown)" in str(err.value)
    result = plan(chains(chain("web", step("mon", "monitor", "process", 1))), hosts)
    assert result["hosts"]["mh1"]["status"] == "unknown (no report)"


# -- capacity ------------------------------------------------------------------------------------------
def test_capacity_short_names_chain_step_and_shortfall():
    hosts = {"mh1": host(cpu=0.15, trunk="t1"), "mh2": host(cpu=0.02, trunk="t2"), "mh3": host(kinds=["kernel"], trunk="t3"),
             "mh4": host(in_service=False, trunk="t4"), "spare1": host(spare=True, trunk="t9")}
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 2))), hosts)
    assert (err.value.chain, err.value.step) == ("web", "mon")
    assert str(err.value) == (
        "chain 'web': step 'mon': capacity short: needs 2 instances of 0.10 CPU and 32 MiB (kind process); 1 placed (on mh1); "
        "no host fits the other 1: mh1 0.05 CPU left, mh2 0.02 CPU left, mh3 does not run process, mh4 is out of service "
        "(spares spare1 are kept free)")
    assert err.value.details == {
        "needed": 2, "placed": 1, "short": 1, "kind": "process", "cpu": 0.1, "memory": 32.0, "spares": ["spare1"],
        "hosts": {"mh1": "0.05 CPU left", "mh2": "0.02 CPU left", "mh3": "does not run process", "mh4": "is out of service"}}


def test_exact_fits_are_fits():
    # 0.1 + 0.1 + 0.1 ... in floating point is not 1.0; the planner counts in thousandths
    result = plan(chains(chain("web", step("mon", "monitor", "process", 10))), {"mh1": host(cpu=1.0, memory=320)})
    assert result["hosts"]["mh1"]["left"] == {"cpu": 0.0, "memory": 0.0}
    with pytest.raises(PlanError):
        plan(chains(chain("web", step("mon", "monitor", "process", 11))), {"mh1": host(cpu=1.0, memory=320)})


def test_declared_memory_is_a_bound():
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 2))), {"mh1": host(memory=40)})
    assert "mh1 8 MiB left" in str(err.value)


def test_live_memory_is_a_bound_too():
    # declared 2048 MiB, but the host reports only 40 MiB available: one 32 MiB monitor fits, not two
    hosts = {"mh1": host(available=40, trunk="t1"), "mh2": host(util=0.9, trunk="t2")}
    result = plan(chains(chain("web", step("mon", "monitor", "process", 2)), chain("mail", step("mon", "monitor", "process"))), hosts)
    assert sorted(by_host(result).values()) == ["mh1", "mh2", "mh2"]
    assert result["hosts"]["mh1"]["left"]["memory"] == 8.0
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 2))), {"mh1": host(available=40)})
    assert err.value.details["hosts"] == {"mh1": "8 MiB available now"}


def test_instances_left_alone_count_against_their_host():
    other = {"chain": None, "step": None, "kind": "process", "type": "wire", "resources": {"cpu": 1.9, "memory": 16},
             "legs": {"left": {"vlan": 100}, "right": {"vlan": 101}}}
    hosts = {"mh1": host(instances={"handmade": other}, in_use=(100, 101), trunk="t1"), "mh2": host(util=0.9, trunk="t2")}
    result = plan(chains(chain("web", step("mon", "monitor", "process", 2))), hosts)
    assert sorted(by_host(result).values()) == ["mh1", "mh2"]
    assert result["hosts"]["mh1"]["others"] == ["handmade"] and result["hosts"]["mh1"]["reserved"]["cpu"] == 2.0
    assert "handmade" not in result["remove"]


def test_largest_instances_are_placed_first():
    # a 1-CPU VM and two small wires; mh1 has room for the VM only while it is empty
    hosts = {"mh1": host(cpu=1.0, kinds=["vm", "process"], trunk="t1"), "mh2": host(cpu=0.1, kinds=["process"], trunk="t2")}
    result = plan(chains(chain("a", step("w", "wire", "process", 2)), chain("b", step("g", "wire", "vm"))), hosts)
    assert result["instances"][ids("b", 0, 1)[0]]["host"] == "mh1"


# -- VLAN tags --------------------------------------------------------------------------------------------
def test_vlans_are_the_lowest_free_pair_skipping_tags_in_use():
    hosts = {"mh1": host(in_use=(100, 101, 103))}
    result = plan(chains(chain("web", step("mon", "monitor", "process", 1), step("fw", "firewall", "kernel", 2))), hosts)
    tags = sorted((e["vlans"]["left"], e["vlans"]["right"]) for e in result["instances"].values())
    assert tags == [(102, 104), (105, 106), (107, 108)]
    assert all(e["vlans"]["left"] < e["vlans"]["right"] for e in result["instances"].values())


def test_vlan_range_is_honoured_and_can_run_out():
    result = plan(chains(chain("web", step("mon", "monitor", "process", 2))), {"mh1": host(), "mh2": host()}, vlan_range=(10, 11))
    assert {e["host"]: e["vlans"] for e in result["instances"].values()} == {"mh1": {"left": 10, "right": 11}, "mh2": {"left": 10, "right": 11}}
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor", "process", 3))), {"mh1": host(), "mh2": host()}, vlan_range=(10, 11))
    assert "mh1 has no two free VLAN tags in 10-11" in str(err.value)


def test_a_kept_instance_without_tags_gets_new_ones_and_clashing_tags_are_not_kept_twice():
    request = chains(chain("web", step("mon", "monitor", "process", 3)))
    first = plan(request, {"mh1": host()})
    hosts = feed_back(first, {"mh1": host()})
    a, b, c = ids("web", 0, 3)
    assert [first["instances"][i]["vlans"] for i in (a, b, c)] == [
        {"left": 100, "right": 101}, {"left": 102, "right": 103}, {"left": 104, "right": 105}]
    hosts["mh1"]["report"]["instances"][b]["legs"]["left"]["vlan"] = 100  # a's tag: only one of them keeps it
    hosts["mh1"]["report"]["instances"][c]["legs"] = {}
    result = plan(request, hosts)
    assert result["instances"][a]["vlans"] == {"left": 100, "right": 101}
    assert result["instances"][b]["vlans"] == {"left": 106, "right": 107}
    assert result["instances"][c]["vlans"] == {"left": 108, "right": 109}
    assert result["instances"][c]["reason"] == "kept on mh1 (already there); its legs had no VLAN tags: new ones"
    assert not any(e["new"] for e in result["instances"].values())


# -- removing ---------------------------------------------------------------------------------------------
def test_scale_down_removes_the_highest_numbers():
    first = plan(chains(chain("web", step("mon", "monitor", "process", 4))), THREE)
    hosts = feed_back(first, THREE)
    result = plan(chains(chain("web", step("mon", "monitor", "process", 2))), hosts)
    all_ids = ids("web", 0, 4)
    assert sorted(result["instances"]) == sorted(all_ids[:2]) and sorted(result["remove"]) == sorted(all_ids[2:])
    assert result["remove"][all_ids[3]] == {
        "host": first["instances"][all_ids[3]]["host"], "hosts": [first["instances"][all_ids[3]]["host"]],
        "reason": "scale down: step web/mon has 2 instance(s) now; this is instance 3", "chain": "web"}
    assert not any(e["new"] for e in result["instances"].values())


def test_scale_down_past_26_instances_decodes_long_ids():
    hosts = {"mh%d" % i: host() for i in range(4)}
    first = plan(chains(chain("web", step("w", "wire", "process", 30))), hosts)
    result = plan(chains(chain("web", step("w", "wire", "process", 27))), feed_back(first, hosts))
    assert sorted(result["remove"]) == sorted(ids("web", 0, 30)[27:])
    assert result["remove"][_chains.instance_id("web", 0, 29)]["reason"].endswith("this is instance 29")


def test_an_absent_chain_has_all_its_instances_removed_and_others_stay():
    request = chains(chain("web", step("mon", "monitor", "process", 2)), chain("mail", step("fw", "firewall", "kernel")))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    result = plan(chains(chain("web", state="absent"), chain("mail", step("fw", "firewall", "kernel"))), hosts)
    assert sorted(result["remove"]) == sorted(ids("web", 0, 2))
    assert all(e["reason"] == "chain web is absent" for e in result["remove"].values())
    assert list(result["instances"]) == ids("mail", 0, 1) and not result["instances"][ids("mail", 0, 1)[0]]["new"]
    assert sum(e["reserved"]["cpu"] for e in result["hosts"].values()) == pytest.approx(0.1)


def test_a_step_that_is_gone_or_is_now_a_black_box_has_its_instances_removed():
    first = plan(chains(chain("web", step("a", "wire"), step("b", "monitor"))), THREE)
    hosts = feed_back(first, THREE)
    result = plan(chains(chain("web", step("a", "wire"))), hosts)
    assert result["remove"][ids("web", 1, 1)[0]]["reason"].startswith(
        "chain web has 1 step(s) now, its trials' candidates counted; this was an instance of step 1 (")
    boxes = {"ids1": {"switch": "sw1", "ports": {"left": 5, "right": 6}}}
    request = _chains.validate([chain("web", step("a", "wire"), {"name": "b", "blackbox": "ids1"})], switches=SWITCHES, blackboxes=boxes)
    result = plan(request, hosts)
    assert result["remove"][ids("web", 1, 1)[0]]["reason"] == "step web/b is a black box now (no instances)"


def test_instances_of_chains_not_in_the_request_are_left_alone():
    first = plan(chains(chain("web", step("mon", "monitor"))), THREE)
    result = plan(chains(chain("mail", step("mon", "monitor"))), feed_back(first, THREE))
    assert result["remove"] == {}
    assert any(e["others"] == ids("web", 0, 1) for e in result["hosts"].values())


# -- moving and replacing ---------------------------------------------------------------------------------
def test_instances_on_a_host_out_of_service_move_and_nothing_else_does():
    request = chains(chain("web", step("fw", "firewall", "kernel", 2), step("mon", "monitor", "process", 3)))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    hosts["mh2"]["in_service"] = False
    result = plan(request, hosts)
    leaving = sorted(iid for iid, h in by_host(first).items() if h == "mh2")
    assert leaving and result["moves"] == leaving
    for iid, entry in result["instances"].items():
        if iid in leaving:
            assert entry["host"] in ("mh1", "mh3") and entry["new"] and entry["moved_from"] == "mh2"
            assert entry["reason"].startswith("moved from mh2 (mh2 is out of service): ")
            assert result["remove"][iid] == {"host": "mh2", "hosts": ["mh2"], "reason": "moves off mh2: mh2 is out of service", "chain": "web"}
        else:
            assert (entry["host"], entry["vlans"], entry["new"]) == (first["instances"][iid]["host"], first["instances"][iid]["vlans"], False)
    assert sorted(result["remove"]) == leaving
    assert result["hosts"]["mh2"]["status"] == "out of service" and result["hosts"]["mh2"]["instances"] == []


def test_an_instance_moves_when_its_host_stops_running_its_kind():
    request = chains(chain("web", step("mon", "monitor", "process")))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    old = first["instances"][ids("web", 0, 1)[0]]["host"]
    hosts[old]["kinds"] = ["kernel"]
    result = plan(request, hosts)
    assert result["moves"] == ids("web", 0, 1) and result["remove"][ids("web", 0, 1)[0]]["host"] == old


def test_a_move_that_fits_nowhere_is_a_capacity_error_naming_the_host_it_leaves():
    hosts = {"mh1": host(trunk="t1"), "mh2": host(cpu=0.05, trunk="t2")}
    first = plan(chains(chain("web", step("mon", "monitor"))), hosts)
    assert by_host(first) == {ids("web", 0, 1)[0]: "mh1"}
    hosts = feed_back(first, hosts)
    hosts["mh1"]["in_service"] = False
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("mon", "monitor"))), hosts)
    assert "%s must leave mh1 (mh1 is out of service)" % ids("web", 0, 1)[0] in str(err.value)
    assert "mh2 0.05 CPU left" in str(err.value)


def test_a_kind_change_replaces_the_instance_and_a_type_change_keeps_it_in_place():
    first = plan(chains(chain("web", step("mon", "monitor", "process"))), THREE)
    hosts = feed_back(first, THREE)
    iid = ids("web", 0, 1)[0]
    old = first["instances"][iid]["host"]
    result = plan(chains(chain("web", step("mon", "monitor", "kernel"))), hosts)
    assert result["instances"][iid]["new"] and result["moves"] == []
    assert result["remove"][iid] == {"host": old, "hosts": [old], "reason": "replaced (kind changes process -> kernel)", "chain": "web"}
    assert result["instances"][iid]["reason"].startswith("replaces the copy on %s (kind changes process -> kernel): " % old)
    result = plan(chains(chain("web", step("mon", "wire", "process"))), hosts)
    assert result["instances"][iid]["host"] == old and not result["instances"][iid]["new"] and result["remove"] == {}
    assert result["instances"][iid]["reason"] == "kept on %s (already there); type changes monitor -> wire in place" % old


def test_a_step_inserted_before_others_replaces_the_instances_whose_ids_now_name_another_step():
    first = plan(chains(chain("web", step("a"), step("b"))), THREE)
    hosts = feed_back(first, THREE)
    result = plan(chains(chain("web", step("new"), step("a"), step("b"))), hosts)
    (i0,), (i1,), (i2,) = ids("web", 0, 1), ids("web", 1, 1), ids("web", 2, 1)
    assert result["remove"][i0]["reason"] == "replaced (it served step a, this id is now step web/new)"
    assert result["remove"][i1]["reason"] == "replaced (it served step b, this id is now step web/a)"
    assert all(result["instances"][i]["new"] for i in (i0, i1, i2)) and i2 not in result["remove"]
    # the step as an index (what processing_module examples write) is recognised as well
    for spec in hosts.values():
        for info in spec["report"]["instances"].values():
            info["step"] = {"a": "0", "b": "1"}[info["step"]]
    again = plan(chains(chain("web", step("a"), step("b"))), hosts)
    assert again["remove"] == {} and not any(e["new"] for e in again["instances"].values())


def test_instances_that_must_move_are_placed_before_new_ones():
    hosts = {"mh1": host(trunk="t1"), "mh2": host(cpu=0.1, trunk="t2")}
    first = plan(chains(chain("web", step("mon", "monitor"))), hosts)
    hosts = feed_back(first, hosts)
    hosts["mh1"]["in_service"] = False
    # chain 'aaa' sorts first and is as large, but web/mon's instance is moving: it gets mh2's room
    with pytest.raises(PlanError) as err:
        plan(chains(chain("aaa", step("mon", "monitor")), chain("web", step("mon", "monitor"))), hosts)
    assert (err.value.chain, err.value.step) == ("aaa", "mon")


def _with_a_second_copy(**changed):
    """web's one process monitor deployed, a copy of it (with ``changed`` fields) on another
    host as well: (the plan then, its id, the host it was placed on, the other host)."""
    request = chains(chain("web", step("mon", "monitor", "process")))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    iid = ids("web", 0, 1)[0]
    kept_on = first["instances"][iid]["host"]
    other = "mh3" if kept_on != "mh3" else "mh2"
    hosts[other]["report"]["instances"][iid] = dict(copy.deepcopy(hosts[kept_on]["report"]["instances"][iid]), **changed)
    return plan(request, hosts), iid, kept_on, other


def test_a_second_copy_of_an_instance_is_an_interrupted_move_resumed():
    """The same instance on two hosts is what a move killed half-way leaves (a drain, a
    power-down): one copy stays, the other goes as a moved instance's old copy does (drained,
    its state carried) - a migrate, not a bare removal."""
    result, iid, kept_on, other = _with_a_second_copy()
    first_name, second = min(kept_on, other), max(kept_on, other)
    entry = result["instances"][iid]
    assert (entry["host"], entry["new"], entry["action"]) == (first_name, False, "migrate")
    assert "an interrupted move, resumed" in entry["reason"], entry
    assert result["remove"][iid]["hosts"] == [second]
    assert result["remove"][iid]["reason"] == ("%s: moves off %s to %s (an interrupted move, resumed: the copy there exists already)"
                                               % (second, second, first_name))


def test_a_second_copy_of_another_step_under_the_id_is_replaced_not_moved():
    """A copy under the same id that runs another step (a swap of steps killed half-way) is not
    the same instance: it goes as a second copy, nothing is carried from it."""
    result, iid, kept_on, other = _with_a_second_copy(step="shape")
    entry = result["instances"][iid]
    assert (entry["host"], entry["action"]) == (kept_on, "keep"), entry
    assert result["remove"][iid]["hosts"] == [other]
    assert result["remove"][iid]["reason"] == "%s: a second copy: the one on %s is kept" % (other, kept_on)


def test_kept_instances_over_a_shrunk_capacity_stay_with_a_warning():
    request = chains(chain("web", step("mon", "monitor", "process", 2)))
    hosts = {"mh1": host(cpu=0.2)}
    hosts = feed_back(plan(request, hosts), hosts)
    hosts["mh1"]["capacity"]["cpu"] = 0.1
    result = plan(request, hosts)
    assert not any(e["new"] for e in result["instances"].values())
    assert result["warnings"] == ["mh1: the instances kept there reserve more than its capacity (-0.10 CPU, 1984 MiB left); "
                                  "they are not moved for that (drain it, or raise its capacity)"]


# -- reasons, determinism, bad input ------------------------------------------------------------------------
def test_reasons_say_why():
    hosts = {"mh1": host(util=0.3, trunk="t1"), "mh2": host(util=0.1, trunk="t2"), "mh3": host(kinds=["process"], util=0.2, trunk="t3")}
    result = plan(chains(chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process", 3))), hosts)
    reasons = {iid: e["reason"] for iid, e in result["instances"].items()}
    fw, = ids("web", 0, 1)
    mon = ids("web", 1, 3)
    assert reasons[mon[0]] == ("mh2: no other instance of web/mon there; least loaded of 3 hosts (load 0.10 = 0.00 reserved + 0.10 CPU busy; "
                               "next mh3 at 0.20); left after: 1.90 CPU, 2016 MiB")
    assert reasons[mon[2]] == "mh1: no other instance of web/mon there (mh2 has 1); load 0.30 = 0.00 reserved + 0.30 CPU busy; left after: 1.90 CPU, 2016 MiB"
    assert reasons[fw] == ("mh2: next to 1 instance(s) of the steps before and after it; least loaded of 2 hosts (load 0.15 = 0.05 reserved "
                           "+ 0.10 CPU busy; next mh1 at 0.35); left after: 1.80 CPU, 2000 MiB")
    solo = plan(chains(chain("web", step("fw", "firewall", "kernel"))), {"mh1": host(kinds=["process"]), "mh2": host()})
    assert solo["instances"][fw]["reason"] == "mh2: the only host where it fits (load 0.00 = 0.00 reserved + 0.00 CPU busy); left after: 1.90 CPU, 2032 MiB"
    tie = plan(chains(chain("web", step("fw", "firewall", "kernel"))), {"mh2": host(), "mh1": host()})
    assert tie["instances"][fw]["reason"].startswith("mh1: as loaded as mh2 (load 0.00 = 0.00 reserved + 0.00 CPU busy), first by name")


def test_same_input_same_bytes_whatever_the_order_of_chains_and_hosts():
    descs = [chain("web", step("fw", "firewall", "kernel", 2), step("mon", "monitor", "process", 3)),
             chain("mail", step("ids", "inspect", "process", 2, params={"patterns": ["x"]}))]
    hosts = {"mh%d" % i: host(cpu=1 + i % 3, util=(i % 4) / 10.0, trunk="t%d" % i) for i in range(6)}
    one = json.dumps(plan(chains(*descs), hosts), sort_keys=True)
    assert one == json.dumps(plan(chains(*descs), copy.deepcopy(hosts)), sort_keys=True)
    reordered = dict(reversed(list(hosts.items())))
    assert one == json.dumps(plan(chains(*reversed(descs)), reordered), sort_keys=True)


def test_two_chains_whose_ids_collide_are_refused():
    names = {}
    for i in range(2000):  # chain_short keeps 3 letters and 12 bits of hash: find two names that share it
        name = "web%d" % i
        names.setdefault(_chains.chain_short(name), []).append(name)
    first, second = next(v for v in names.values() if len(v) > 1)[:2]
    # in one request the chain description itself is refused, naming both chains
    with pytest.raises(_chains.ChainError) as cerr:
        chains(chain(first, step("a")), chain(second, step("a")))
    assert (cerr.value.chain, cerr.value.field) == (second, "tag") and first in str(cerr.value)
    # ... and a tag of its own resolves it
    chains(chain(first, step("a")), dict(chain(second, step("a")), tag="other"))
    # the same clash against an instance already running for a chain not in the request
    hosts = feed_back(plan(chains(chain(first, step("a"))), THREE), THREE)
    with pytest.raises(PlanError) as err:
        plan(chains(chain(second, step("a"))), hosts)
    assert "already runs an instance %s of chain '%s'" % (ids(second, 0, 1)[0], first) in str(err.value)


@pytest.mark.parametrize("hosts, vlan_range, words", [
    ({"mh1": dict(host(), capacity={"cpu": "four", "memory": 1})}, (100, 4094), "host 'mh1': capacity.cpu must be a number of cores >= 0, got 'four'"),
    ({"mh1": dict(host(), capacity={"cpu": 1, "memory": float("nan")})}, (100, 4094), "host 'mh1': capacity.memory must be a number of MiB"),
    ({"mh1": dict(host(), capacity=None)}, (100, 4094), "host 'mh1': capacity must be a mapping"),
    ({"mh1": dict(host(), spare="yes")}, (100, 4094), "host 'mh1': spare must be true or false, got 'yes'"),
    ({"mh1": dict(host(), kinds="process")}, (100, 4094), "host 'mh1': kinds must be a list"),
    ({"mh1": dict(host(), report=[])}, (100, 4094), "host 'mh1': report must be module_host_info's result or null"),
    ({"mh1": host(in_use=())}, (0, 4094), "vlan_range must be two VLAN tags (low, high) with 1 <= low < high <= 4094, got (0, 4094)"),
    ({"mh1": host(in_use=())}, (200, 100), "vlan_range must be two VLAN tags"),
    ([], (100, 4094), "hosts must be a mapping"),
])
def test_bad_input_is_refused_before_anything(hosts, vlan_range, words):
    with pytest.raises(PlanError) as err:
        plan(chains(chain("web", step("a"))), hosts, vlan_range)
    assert words in str(err.value)


def test_bad_report_values_are_refused():
    hosts = {"mh1": host()}
    hosts["mh1"]["report"]["vlans"]["in_use"]["trunk"] = "x"
    with pytest.raises(PlanError, match="host 'mh1': report.vlans.in_use has 'trunk', which is not a VLAN tag"):
        plan(chains(chain("web", step("a"))), hosts)
    hosts = {"mh1": host()}
    hosts["mh1"]["report"]["cpu"]["utilization"] = "busy"
    with pytest.raises(PlanError, match=r"host 'mh1': report.cpu.utilization must be a number, got 'busy'"):
        plan(chains(chain("web", step("a"))), hosts)


# -- properties ------------------------------------------------------------------------------------------------
TYPES = [("wire", "kernel"), ("wire", "process"), ("wire", "vm"), ("firewall", "kernel"), ("monitor", "kernel"),
         ("monitor", "process"), ("inspect", "process")]
PARAMS = {"inspect": {"patterns": ["x"]}}


@st.composite
def platforms(draw):
    """Random module hosts; half of the platforms roomy (every kind, plenty of CPU and memory), so
    that both plans and capacity errors are common."""
    roomy = draw(st.booleans())
    hosts = {}
    for i in range(draw(st.integers(1, 8))):
        if roomy:
            cpu, memory, kinds, available = draw(st.sampled_from([2, 4, 8])), 4096, ["kernel", "process", "vm"], 100000
        else:
            cpu = draw(st.sampled_from([0, 0.1, 0.25, 0.5, 1, 2, 4, 8]))
            memory = draw(st.sampled_from([0, 32, 64, 128, 512, 4096]))
            kinds = draw(st.lists(st.sampled_from(["kernel", "process", "vm"]), unique=True, max_size=3))
            available = draw(st.sampled_from([0, 64, 256, 100000]))
        hosts["mh%d" % i] = host(
            cpu=cpu, memory=memory, kinds=kinds, available=available, trunk="t%d" % i,
            spare=draw(st.integers(0, 4)) == 0 and i > 0, in_service=draw(st.integers(0, 5)) > 0,
            util=draw(st.sampled_from([0, 0.2, 0.5, 1])), in_use=draw(st.lists(st.integers(100, 110), unique=True, max_size=5)))
    return hosts


@st.composite
def requests(draw):
    out = []
    for name in draw(st.lists(st.sampled_from(["web", "mail", "dns", "vpn"]), unique=True, min_size=1, max_size=3)):
        steps = []
        for index in range(draw(st.integers(1, 3))):
            type_name, kind = draw(st.sampled_from(TYPES))
            steps.append(step("s%d" % index, type_name, kind, draw(st.integers(1, 4)), **({"params": PARAMS[type_name]} if type_name in PARAMS else {})))
        out.append(chain(name, *steps))
    return chains(*out)


def check_plan(request, hosts, result):
    """Every step has exactly its instances, each on a host that may run it, no host over its
    declared or live capacity, VLAN tags unique per host, in range and not in use."""
    wanted = {iid for c in request if c["state"] == "present" for s in c["steps"] for iid in ids(c["name"], s["index"], s["instances"])}
    assert set(result["instances"]) == wanted
    used = {}
    for iid, entry in result["instances"].items():
        spec = hosts[entry["host"]]
        assert spec["in_service"] and not spec["spare"] and spec["report"] is not None and entry["kind"] in spec["kinds"]
        assert entry["trunk"] == spec["trunk"]
        cpu, mem, new_mem, tags = used.setdefault(entry["host"], [0.0, 0.0, 0.0, []])
        used[entry["host"]] = [cpu + entry["resources"]["cpu"], mem + entry["resources"]["memory"],
                               new_mem + (entry["resources"]["memory"] if entry["new"] else 0), tags + [entry["vlans"]["left"], entry["vlans"]["right"]]]
    for name, (cpu, mem, new_mem, tags) in used.items():
        spec = hosts[name]
        assert cpu <= spec["capacity"]["cpu"] + 1e-9 and mem <= spec["capacity"]["memory"] + 1e-9
        assert new_mem <= spec["report"]["memory"]["available_mib"] + 1e-9
        assert len(tags) == len(set(tags)) and all(100 <= t <= 4094 for t in tags)
        old = {int(t) for t in spec["report"]["vlans"]["in_use"]}
        new_tags = [t for iid, e in result["instances"].items() if e["host"] == name and e["new"] for t in e["vlans"].values()]
        assert not old.intersection(new_tags)


def check_error(request, hosts, err):
    assert str(err).startswith("chain '%s': step '%s': capacity short: " % (err.chain, err.step))
    assert any(c["name"] == err.chain and any(s["name"] == err.step for s in c["steps"]) for c in request)
    assert err.details["short"] >= 1
    assert set(err.details["hosts"]) == {h for h, spec in hosts.items() if not spec["spare"]}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=platforms(), request=requests())
def test_property_every_plan_fits_and_a_rerun_changes_nothing(hosts, request):
    try:
        result = plan(request, hosts)
    except PlanError as err:
        check_error(request, hosts, err)
        return
    check_plan(request, hosts, result)
    again = plan(request, feed_back(result, hosts))
    assert again["remove"] == {} and again["moves"] == [] and not any(e["new"] for e in again["instances"].values())
    assert by_host(again) == by_host(result)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=platforms(), request=requests(), data=st.data())
def test_property_a_host_leaving_service_moves_exactly_its_instances(hosts, request, data):
    try:
        first = plan(request, hosts)
    except PlanError:
        return
    used = sorted({e["host"] for e in first["instances"].values()})
    if not used:
        return
    gone = data.draw(st.sampled_from(used))
    after = feed_back(first, hosts)
    after[gone]["in_service"] = False
    try:
        result = plan(request, after)
    except PlanError as err:
        check_error(request, after, err)
        return
    check_plan(request, after, result)
    leaving = sorted(iid for iid, h in by_host(first).items() if h == gone)
    assert result["moves"] == leaving and sorted(result["remove"]) == leaving
    assert all(result["instances"][iid]["host"] == h for iid, h in by_host(first).items() if h != gone)


def test_consecutive_steps_go_together_and_a_parallel_step_still_spreads():
    """Host-local chaining: a step goes where the steps before and after it are, as long as it
    fits; the instances of a parallel step still go to different hosts first."""
    hosts = {"mh1": host(trunk="t1", util=0.2), "mh2": host(trunk="t2"), "mh3": host(trunk="t3", util=0.1)}
    web = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2), step("shape", "wire", "kernel"))
    result = plan(chains(web), hosts)
    where = {iid: e["host"] for iid, e in result["instances"].items()}
    (fw,), mon, (shape,) = ids("web", 0, 1), ids("web", 1, 2), ids("web", 2, 1)
    # the monitors (the largest) first: spread over the two least loaded hosts
    assert (where[mon[0]], where[mon[1]]) == ("mh2", "mh3")
    # then the firewall and the shaper next to a monitor (never on mh1), not by load alone
    assert where[fw] == "mh2" and where[shape] == "mh2"
    assert "next to 1 instance(s) of the steps before and after it" in result["instances"][fw]["reason"]
    # the shaper: both hosts have one monitor; mh2 is the less loaded (mh3 is 10 % busy)
    assert "least loaded of 2 hosts" in result["instances"][shape]["reason"]
    # affinity never beats capacity: a full host is passed over
    tight = {"mh1": host(trunk="t1", util=0.2), "mh2": host(cpu=0.12, trunk="t2"), "mh3": host(trunk="t3", util=0.1)}
    result = plan(chains(web), tight)
    where = {iid: e["host"] for iid, e in result["instances"].items()}
    assert (where[mon[0]], where[mon[1]], where[fw], where[shape]) == ("mh2", "mh3", "mh3", "mh3")


def test_a_split_target_goes_next_to_its_filter():
    inspect = chain("inspect", step("filter", "inspect", "process", params={"patterns": ["X"]}, split={"to": "deep", "match": {"tcp": True, "ip_dscp": 8}}),
                    step("deep", "inspect", "process", params={"patterns": ["Y"]}, only_split=True), step("out", "wire", "process"))
    result = plan(chains(inspect), {"mh1": host(trunk="t1", util=0.3), "mh2": host(trunk="t2"), "mh3": host(trunk="t3", util=0.6)})
    assert {e["host"] for e in result["instances"].values()} == {"mh2"}
    assert _planner.neighbours(chains(inspect)[0]["steps"]) == {"filter": ["deep", "out"], "deep": ["filter", "out"], "out": ["deep", "filter"]}


# -- applying a plan: deploy-chain's per-host lists ---------------------------------------------------
def test_deploy_removes_an_id_replaced_on_the_same_host_before_installing_it():
    """A step inserted before others shifts their ids: the id of step 1 (was mon) now names the
    inserted tap. On the same host the old instance must go BEFORE the new one is made (the id
    names its ports and namespace), never after it - that removed the new one (found by a user)."""
    from ansible_collections.flowstream.platform.plugins.module_utils import _deploy
    one = {"mh1": host(trunk="t1"), "spare1": host(spare=True, trunk="t9")}
    before = [chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process"))]
    first = plan(chains(*before), one)
    hosts = feed_back(first, one)
    after = [chain("web", step("fw", "firewall", "kernel"), step("tap", "wire", "kernel"), step("mon", "monitor", "process"))]
    out = _deploy.build_plan(after, {}, hosts, SWITCHES, {})
    mh1 = out["hosts"]["mh1"]
    installed = set(i["instance"] for i in mh1["install"])
    shifted = _chains.instance_id("web", 1, 0)
    assert [e["instance"] for e in mh1["remove_first"]] == [shifted]
    assert "this id is now step web/tap" in mh1["remove_first"][0]["reason"]
    assert shifted in installed and not installed & set(e["instance"] for e in mh1["remove"])
    assert out["hosts"]["spare1"]["remove_first"] == []
    # a plain scale-down stays in "remove" (after the switch stopped sending it traffic)
    scaled = [chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process", 2))]
    hosts2 = feed_back(plan(chains(*scaled), one), one)
    down = _deploy.build_plan(before, {}, hosts2, SWITCHES, {})
    assert down["hosts"]["mh1"]["remove_first"] == []
    assert [e["instance"] for e in down["hosts"]["mh1"]["remove"]] == [_chains.instance_id("web", 1, 1)]


# -- failover: a failed host (no report) and a fenced one ------------------------------------------------------
FENCE = {"state": "fenced", "since": "2026-12-04T12:00:00Z", "reason": "failed"}


def test_a_failed_hosts_instances_are_placed_again_on_the_rest_and_the_spares():
    request = chains(chain("web", step("fw", "firewall", "kernel", 2), step("mon", "monitor", "process", 3)))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    lost = sorted(iid for iid, h in by_host(first).items() if h == "mh2")
    # mh2 died: no report, fenced on the switch
    hosts["mh2"]["report"], hosts["mh2"]["fence"] = None, FENCE
    hosts["mh1"]["capacity"]["cpu"] = hosts["mh3"]["capacity"]["cpu"] = 0.25  # what runs there stays, nothing more fits
    result = plan(request, hosts, policy={"allow_spares": True})
    assert lost and all(result["instances"][i]["host"] == "spare1" and result["instances"][i]["new"] for i in lost)
    assert result["hosts"]["mh2"]["status"] == "fenced" and result["remove"] == {}
    without_spares = pytest.raises(PlanError, plan, request, hosts)
    assert "spare1" in str(without_spares.value) and "fenced on the switch" in str(without_spares.value)


def test_a_fenced_host_that_comes_back_loses_its_stale_copies_and_takes_nothing_new():
    request = chains(chain("web", step("mon", "monitor", "process", 3)))
    first = plan(request, THREE)
    before = feed_back(first, THREE)
    stale = {iid: copy.deepcopy(i) for iid, i in before["mh2"]["report"]["instances"].items()}
    before["mh2"]["report"], before["mh2"]["fence"] = None, FENCE
    healed = feed_back(plan(request, before, policy={"allow_spares": True}), before)
    # mh2 answers again, still running its old copies, still fenced
    healed["mh2"]["report"] = host(instances=stale)["report"]
    result = plan(request, healed, policy={"allow_spares": True})
    assert stale and sorted(result["remove"]) == sorted(stale)
    for iid in stale:
        assert result["instances"][iid]["host"] != "mh2" and not result["instances"][iid]["new"]
        assert result["remove"][iid]["hosts"] == ["mh2"]
    assert result["moves"] == [] and result["hosts"]["mh2"]["instances"] == []


def test_a_copy_only_on_a_fenced_host_is_re_created_cold():
    request = chains(chain("web", step("mon", "monitor", "process")))
    first = plan(request, THREE)
    hosts = feed_back(first, THREE)
    iid = ids("web", 0, 1)[0]
    on = first["instances"][iid]["host"]
    hosts[on]["fence"] = FENCE
    result = plan(request, hosts)
    assert result["moves"] == [iid] and result["instances"][iid]["method"] == "cold"
    assert "fenced on the switch" in result["instances"][iid]["reason"]
    with pytest.raises(PlanError, match="fence must be the fence mark"):
        plan(request, dict(hosts, mh1=dict(hosts["mh1"], fence="yes")))


def test_a_step_kept_apart_never_shares_a_host_and_says_so_when_hosts_run_out():
    two = {"mh1": host(trunk="t1"), "mh2": host(trunk="t2")}
    apart = chain("web", step("mon", "monitor", "kernel", 2, apart=True))
    result = plan(chains(apart), two)
    assert sorted(e["host"] for e in result["instances"].values()) == ["mh1", "mh2"]
    three = chain("web", step("mon", "monitor", "kernel", 3, apart=True))
    with pytest.raises(PlanError, match="runs an instance of web/mon already \\(the step keeps its instances apart\\)"):
        plan(chains(three), two)
    with pytest.raises(_chains.ChainError, match="apart: must be true"):
        chains(chain("web", step("mon", "monitor", "kernel", 2, apart="yes")))


# -- warm spares ------------------------------------------------------------------------------------------
def test_a_warm_spare_goes_to_a_spare_host_apart_from_its_step_and_instances_keep_off_it():
    request = chains(chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "process", 2, spare="warm")))
    (fw,), (mon_a, mon_b), (standby,) = ids("web", 0, 1), ids("web", 1, 2), ids("web", 2, 1)
    first = plan(request, THREE)
    placed = by_host(first)
    assert placed[standby] == "spare1" and first["instances"][standby]["step"] == "mon~spare"
    assert "a spare host, apart from the instances of web/mon it stands in for" in first["instances"][standby]["reason"]
    assert placed[mon_a] != placed[mon_b] and "spare1" not in (placed[fw], placed[mon_a], placed[mon_b])
    again = plan(request, feed_back(first, THREE))
    assert again["remove"] == {} and again["moves"] == [] and not again["warnings"]
    # no spare host: the standby goes to a host that runs none of the step's instances
    hosts = {"mh1": host(trunk="t1"), "mh2": host(trunk="t2"), "mh3": host(trunk="t3")}
    placed = by_host(plan(request, hosts))
    assert placed[standby] not in (placed[mon_a], placed[mon_b])
    # a failover re-places an instance (spares allowed): it keeps off the host of its step's standby
    dead = feed_back(first, THREE)
    dead[placed_a := by_host(first)[mon_a]]["in_service"] = False
    moved = plan(request, dead, policy={"allow_spares": True})
    assert by_host(moved)[mon_a] not in ("spare1", placed_a) and by_host(moved)[standby] == "spare1", moved["instances"]


def test_a_warm_spare_with_no_host_to_hold_it_is_named_and_nothing_is_planned():
    request = chains(chain("web", step("mon", "monitor", "process", 2, spare="warm")))
    hosts = {"mh1": host(trunk="t1"), "mh2": host(trunk="t2"), "mh3": host(kinds=["kernel"], trunk="t3")}
    with pytest.raises(PlanError) as err:
        plan(request, hosts)
    assert (err.value.chain, err.value.step) == ("web", "mon"), str(err.value)
    assert str(err.value) == (
        "chain 'web': step 'mon': no host can hold the warm spare of web/mon (spare: warm asks for a standby instance of 0.10 CPU "
        "and 32 MiB, kind process, on a host that runs none of its instances): mh1 runs an instance of web/mon (its warm spare "
        "stands on another host: a host that dies takes both), mh2 runs an instance of web/mon (its warm spare stands on another "
        "host: a host that dies takes both), mh3 does not run process")


# -- a failover short of capacity: chains restored whole, by restore_priority ---------------------------
def _all_on_mh2_then_mh2_dies(request, mh1_cpu):
    """``request`` deployed on mh2 alone; then mh2 dies (no report, fenced) and mh1 (``mh1_cpu``) is left."""
    hosts = feed_back(plan(request, {"mh2": host(cpu=4.0, trunk="t2")}), {"mh2": host(cpu=4.0, trunk="t2")})
    hosts["mh2"]["report"], hosts["mh2"]["fence"] = None, FENCE
    hosts["mh1"] = host(cpu=mh1_cpu, trunk="t1")
    return hosts


def test_capacity_short_a_failover_restores_chains_whole_highest_restore_priority_first():
    low = dict(chain("low", step("mon", "monitor", "process", 2)), restore_priority=100)
    mid = dict(chain("mid", step("mon", "monitor", "process", 3)), restore_priority=500)
    top = dict(chain("top", step("mon", "monitor", "process", 2)), restore_priority=900, fail_mode="open")
    request = chains(low, mid, top)            # listed lowest first: the order is restore_priority's
    hosts = _all_on_mh2_then_mh2_dies(request, 0.45)  # room for 4 monitors of 7
    result = plan(request, hosts, policy={"allow_spares": True, "restore_by_priority": True})
    # top (2) first, then mid (3) does not fit in the 2 left and is held whole, then low (2) does
    assert sorted({e["chain"] for e in result["instances"].values()}) == ["low", "top"]
    assert all(e["host"] == "mh1" and e["new"] for e in result["instances"].values())
    held = result["held"]["mid"]
    assert (held["restore_priority"], held["fail_mode"], held["step"], held["running"]) == (500, "closed", "mon", {})
    assert held["missing"] == ids("mid", 0, 3)
    assert held["reason"].startswith("capacity short: needs 3 instances of 0.10 CPU and 32 MiB (kind process); 2 placed (on mh1)")
    assert held["details"]["short"] == 1
    assert result["remove"] == {} and result["policy"]["restore_by_priority"] is True
    # without the policy the shortfall fails the plan, naming the first chain that did not fit
    with pytest.raises(PlanError, match="capacity short"):
        plan(request, hosts, policy={"allow_spares": True})
    # room for everything: nothing held, the same as without the policy
    roomy = _all_on_mh2_then_mh2_dies(request, 2.0)
    assert plan(request, roomy, policy={"allow_spares": True, "restore_by_priority": True})["held"] == {}
    assert plan(request, roomy, policy={"allow_spares": True})["held"] == {}


def test_a_held_chain_keeps_what_still_runs_and_ties_go_in_the_requests_order():
    one = chain("one", step("mon", "monitor", "process", 2))
    two = chain("two", step("mon", "monitor", "process", 2))
    request = chains(one, two)
    first = plan(request, {"mh1": host(cpu=0.25, trunk="t1"), "mh2": host(cpu=0.25, trunk="t2")})
    hosts = feed_back(first, {"mh1": host(cpu=0.25, trunk="t1"), "mh2": host(cpu=0.25, trunk="t2")})
    assert sorted(by_host(first).values()) == ["mh1", "mh1", "mh2", "mh2"]
    hosts["mh2"]["report"], hosts["mh2"]["fence"] = None, FENCE
    hosts["mh3"] = host(cpu=0.15, trunk="t3")    # room for one of the two monitors lost
    result = plan(request, hosts, policy={"allow_spares": True, "restore_by_priority": True})
    assert list(result["held"]) == ["two"]    # the same restore_priority: the first listed goes first
    survivor = [iid for iid in ids("two", 0, 2) if iid in hosts["mh1"]["report"]["instances"]]
    assert result["held"]["two"]["running"] == {iid: ["mh1"] for iid in survivor}
    assert result["held"]["two"]["missing"] == sorted(set(ids("two", 0, 2)) - set(survivor))
    # nothing of the held chain is placed, moved or removed; its survivor still counts on mh1
    assert not any(e["chain"] == "two" for e in result["instances"].values()) and result["remove"] == {}
    assert result["hosts"]["mh1"]["left"]["cpu"] == pytest.approx(0.05)


@pytest.mark.parametrize("key, value, words", [
    ("restore_priority", 1001, "restore_priority: must be 0..1000"), ("restore_priority", "high", "restore_priority: must be 0..1000"),
    ("restore_priority", True, "restore_priority: must be 0..1000"), ("fail_mode", "bypass", "fail_mode: must be closed"),
])
def test_bad_restore_priority_or_fail_mode_is_refused_naming_the_chain(key, value, words):
    with pytest.raises(_chains.ChainError, match=words) as err:
        chains(dict(chain("web", step("mon", "monitor", "process")), **{key: value}))
    assert "web" in str(err.value)
    with pytest.raises(PlanError, match="policy.restore_by_priority must be true or false"):
        plan(chains(chain("web", step("mon", "monitor", "process"))), THREE, policy={"restore_by_priority": "yes"})
