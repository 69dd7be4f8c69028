# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The operations engine on the controller: the planner's policy (cordoned and draining hosts,
asked moves, spares, marks on the platform), every refusal naming what is wrong, the waves of a
plan (make-before-break flows before/during/after, state carried, rolling drains, a VM moved by
libvirt), the compiler taking old copies' packets onward, and the operation figures."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _chains, _deploy, _operations, _probe
from ansible_collections.flowstream.platform.plugins.module_utils._planner import PlanError, plan

from test_planner import SWITCHES, chain, chains, feed_back, host, ids, step  # noqa: E402 pylint: disable=import-error

WEB = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2), step("out", "wire", "process"))


def platform(**extra):
    hosts = {"mh1": host(trunk="t1"), "mh2": host(trunk="t2"), "mh3": host(trunk="t3"), "spare1": host(spare=True, trunk="t9")}
    hosts.update(extra)
    return hosts


def deployed(request=None, hosts=None):
    """A platform as module_host_info reports it after the request was deployed."""
    request = request or chains(WEB)
    hosts = hosts or platform()
    return feed_back(plan(request, hosts), hosts)


def where(result):
    return {iid: e["host"] for iid, e in result["instances"].items()}


def mark(hosts, name, state):
    out = copy.deepcopy(hosts)
    out[name]["report"]["maintenance"] = {"state": state, "since": "2026-12-04T00:00:00Z", "reason": None}
    return out


# -- policy: cordon, drain, marks -----------------------------------------------------------------------
def test_a_cordoned_host_keeps_what_it_runs_and_takes_nothing_new():
    hosts = deployed()
    before = where(plan(chains(WEB), hosts))
    busy = sorted(set(before.values()))[0]
    bigger = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 6), step("out", "wire", "process"))
    result = plan(chains(bigger), hosts, policy={"cordoned": [busy]})
    new = {i: e["host"] for i, e in result["instances"].items() if e["new"]}
    assert new and busy not in new.values()
    assert all(result["instances"][i]["host"] == h for i, h in before.items())
    assert result["hosts"][busy]["status"] == "cordoned"
    assert result["policy"]["cordoned"] == [busy]


def test_a_draining_host_is_emptied_and_every_move_says_why():
    hosts = deployed()
    first = where(plan(chains(WEB), hosts))
    gone = sorted(set(first.values()))[0]
    result = plan(chains(WEB), hosts, policy={"draining": [gone]})
    leaving = sorted(i for i, h in first.items() if h == gone)
    assert result["moves"] == leaving
    for iid in leaving:
        entry = result["instances"][iid]
        assert entry["host"] not in (gone, "spare1")
        assert entry["action"] == "migrate" and entry["method"] == "live" and entry["moved_from"] == gone
        assert "is being drained" in entry["reason"]
        legs = hosts[gone]["report"]["instances"][iid]["legs"]
        assert entry["previous_vlans"] == {leg: legs[leg]["vlan"] for leg in ("left", "right")}
    assert sorted(result["remove"]) == leaving
    assert result["hosts"][gone]["status"] == "draining"


@pytest.mark.parametrize("state, moves", [("cordoned", False), ("draining", True), ("drained", True)])
def test_marks_on_the_platform_are_honoured_without_a_policy(state, moves):
    hosts = deployed()
    first = where(plan(chains(WEB), hosts))
    busy = sorted(set(first.values()))[0]
    result = plan(chains(WEB), mark(hosts, busy, state))
    assert (busy in where(result).values()) is not moves
    assert "is marked %s on the platform" % state in str(result["instances"]) if moves else result["moves"] == []
    # and nothing new goes there: a scale-up places elsewhere
    bigger = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 5), step("out", "wire", "process"))
    scaled = plan(chains(bigger), mark(hosts, busy, state))
    assert busy not in {e["host"] for e in scaled["instances"].values() if e["new"]}


def test_a_bad_mark_is_refused():
    hosts = mark(deployed(), "mh1", "asleep")
    with pytest.raises(PlanError, match="report.maintenance.state must be one of cordoned, draining, drained"):
        plan(chains(WEB), hosts)


# -- policy: asked moves --------------------------------------------------------------------------------
def test_an_asked_move_goes_exactly_there_and_says_how():
    hosts = deployed()
    first = where(plan(chains(WEB), hosts))
    mon = ids("web", 1, 2)[0]
    target = next(h for h in ("mh1", "mh2", "mh3") if h != first[mon])
    result = plan(chains(WEB), hosts, policy={"moves": [{"instance": mon, "to": target, "method": "cold"}]})
    entry = result["instances"][mon]
    assert (entry["host"], entry["action"], entry["method"], entry["moved_from"]) == (target, "migrate", "cold", first[mon])
    assert "asked to move to %s" % target in entry["reason"]
    assert result["moves"] == [mon] and result["remove"][mon]["host"] == first[mon]
    others = {i: h for i, h in where(result).items() if i != mon}
    assert others == {i: h for i, h in first.items() if i != mon}


def _move(iid, to, **extra):
    return {"moves": [dict(instance=iid, to=to, **extra)]}


@pytest.mark.parametrize("policy, words", [
    (lambda m, f: _move("nosuch", "mh2"), ["policy.moves[0]", "instance nosuch runs on no module host"]),
    (lambda m, f: _move(m, "mh9"), ["policy.moves[0]", "to 'mh9' is not a module host", "known: mh1, mh2, mh3, spare1"]),
    (lambda m, f: _move(m, f[m]), ["already runs on %s", "choose another host"]),
    (lambda m, f: _move(m, "spare1"), ["it is a spare", "allow_spares"]),
    (lambda m, f: dict(_move(m, "mhx"), cordoned=["mhx"]), ["is cordoned by this operation"]),
    (lambda m, f: _move(m, "mh2", method="teleport"), ["method must be one of live, cold"]),
    (lambda m, f: {"moves": [{"instance": m, "to": "mh2"}, {"instance": m, "to": "mh3"}]}, ["moved twice"]),
    (lambda m, f: {"objective": "fill"}, ["policy.objective must be one of spread, pack, got 'fill'"]),
    (lambda m, f: {"objective": "pack", "pack": {"headroom": 1.5}}, ["policy.pack.headroom must be a fraction from 0 to 0.9"]),
    (lambda m, f: {"objective": "pack", "pack": {"keep_spare": 1}}, ["policy.pack: unknown key(s) keep_spare"]),
    (lambda m, f: {"draining": ["mh7"]}, ["policy.draining: 'mh7' is not a module host"]),
    (lambda m, f: {"evict": True}, ["unknown key(s) evict"]),
])
def test_bad_moves_are_refused_naming_what_is_wrong(policy, words):
    hosts = deployed()
    first = where(plan(chains(WEB), hosts))
    mon = ids("web", 1, 2)[0]
    other = next(h for h in ("mh1", "mh2", "mh3") if h != first[mon])
    request = policy(mon, first)
    if "cordoned" in request:
        request = dict(request, cordoned=[other], moves=[dict(request["moves"][0], to=other)])
    with pytest.raises(PlanError) as err:
        plan(chains(WEB), hosts, policy=request)
    for word in words:
        assert (word % first[mon] if "%s" in word else word) in str(err.value), str(err.value)


def test_a_move_to_a_full_host_says_by_how_much():
    hosts = deployed(hosts=platform(mh3=host(cpu=0.05, trunk="t3")))
    first = where(plan(chains(WEB), hosts))
    mon = next(i for i in ids("web", 1, 2) if first[i] != "mh3")
    with pytest.raises(PlanError) as err:
        plan(chains(WEB), hosts, policy=_move(mon, "mh3"))
    assert "cannot move to mh3" in str(err.value) and "short" in str(err.value), str(err.value)


def test_a_vm_to_a_host_without_libvirt_is_refused():
    guest = chain("guest", step("vnf", "wire", "vm"))
    hosts = platform(mh1=host(trunk="t1", kinds=("vm", "kernel", "process")), mh2=host(trunk="t2"), mh3=host(trunk="t3"))
    hosts = deployed(chains(guest), hosts)
    vnf = ids("guest", 0, 1)[0]
    with pytest.raises(PlanError, match="does not run vm"):
        plan(chains(guest), hosts, policy=_move(vnf, "mh2"))


def test_moving_an_instance_that_is_being_removed_or_not_ours_is_refused():
    hosts = deployed()
    smaller = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 1), step("out", "wire", "process"))
    second = ids("web", 1, 2)[1]
    with pytest.raises(PlanError, match="is being removed"):
        plan(chains(smaller), hosts, policy=_move(second, "mh2"))
    hosts["mh1"]["report"]["instances"]["handmade"] = {"chain": "other", "kind": "kernel", "legs": {}}
    with pytest.raises(PlanError, match="which the request does not describe"):
        plan(chains(WEB), hosts, policy=_move("handmade", "mh2"))


def test_an_interrupted_move_is_resumed_not_undone():
    """Killed half way, a move leaves a copy on each host; running it again keeps the target's."""
    hosts, mon, source, target = _monitor_move()
    result = plan(chains(WEB), _half_moved(hosts, mon, source, target), policy=_move(mon, target))
    entry = result["instances"][mon]
    assert (entry["host"], entry["vlans"], entry["new"], entry["action"]) == (target, {"left": 900, "right": 901}, False, "migrate")
    assert result["remove"][mon]["hosts"] == [source]
    assert "resumed" in entry["reason"]


# -- waves: what the apply step does -------------------------------------------------------------------
def _build(request, hosts, **kw):
    return _deploy.build_plan(request, {}, hosts, SWITCHES, {}, **kw)


def _monitor_move():
    """The deployed web chain, its first monitor, the host it runs on and another one."""
    hosts = deployed(chains(WEB))
    mon = ids("web", 1, 2)[0]
    source = where(plan(chains(WEB), hosts))[mon]
    return hosts, mon, source, next(h for h in ("mh1", "mh2", "mh3") if h != source)


def _half_moved(hosts, mon, source, target):
    """``hosts`` as a move killed half way leaves them: a second copy of ``mon`` on ``target``
    (tags 900/901)."""
    half = copy.deepcopy(hosts)
    copy_of = copy.deepcopy(hosts[source]["report"]["instances"][mon])
    copy_of["legs"] = {"left": {"vlan": 900}, "right": {"vlan": 901}}
    half[target]["report"]["instances"][mon] = copy_of
    return half


def test_a_make_before_break_move_carries_state_and_keeps_the_old_copy_flowing_until_the_end():
    raw = [WEB]
    hosts, mon, source, target = _monitor_move()
    out = _build(raw, hosts, policy=_move(mon, target), only_moves=True)
    (wave,) = out["waves"]
    (move,) = wave["moves"]
    assert (move["from"], move["to"], move["how"], move["carry"]) == (source, target, "make_before_break", True)
    assert [i["instance"] for i in wave["hosts"][target]["install"]] == [mon]  # only the move: kept ones are left alone
    assert wave["hosts"][target]["install"][0]["carry_from"] == source
    assert wave["hosts"][source]["export"] == [{"instance": mon, "to": target, "kind": "kernel"}]
    assert [(r["instance"], r["quiesce"], r["export_to"]) for r in wave["hosts"][source]["remove"]] == [(mon, True, target)]
    old = hosts[source]["report"]["instances"][mon]["legs"]
    new = wave["hosts"][target]["install"][0]["vlans"]
    during = "\n".join(f["match"] + " " + f["actions"] for f in wave["switches"]["sw1"]["flows_during"])
    final = "\n".join(f["match"] + " " + f["actions"] for f in wave["switches"]["sw1"]["flows"])
    # during the change the old copy's returning packets are still taken onward; afterwards not
    trunk = hosts[source]["trunk"]
    arrival = "in_port=%s,dl_vlan=%d" % (trunk, old["right"]["vlan"])
    assert arrival in during and arrival not in final
    # and the switch already sends to the new copy (its left tag) during the change
    assert "%d->vlan_vid" % (0x1000 | new["left"]) in during
    assert wave["transition"] is True and wave["vm_move"] is None
    # the order barrier: the new copy holds until markers sent into the old copy come through
    token = _deploy.marker_token(move)
    assert wave["hosts"][target]["install"][0]["hold"] == {"token": token, "timeout": _deploy.HOLD_TIMEOUT}
    # a marker per direction, from the switch into the old copy's input leg on its old trunk
    trunk = hosts[source]["trunk"]
    assert [m["actions"] for m in wave["switches"]["sw1"]["markers"]] == [
        "push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (0x1000 | old[leg]["vlan"], trunk) for leg in ("left", "right")]
    assert [m["packet"] for m in wave["switches"]["sw1"]["markers"]] == [_deploy.marker_frame(mon, d, token) for d in ("fwd", "rev")]
    # and before the switch moves, no host bridge sends the moving instance anything on its own
    for h, lists in wave["hosts"].items():
        assert not any("output:fs-%s-" % mon in f["actions"] for f in lists["flows_pre"]), h
    assert wave["switches"]["sw1"]["flows_pre"] is not None
    relays = [f for f in wave["switches"]["sw1"]["flows_during"] if "dl_type=0x88b5" in f["match"]]
    assert len(relays) == 2 and not any("dl_type=0x88b5" in f["match"] for f in wave["switches"]["sw1"]["flows"])


def test_a_resumed_move_never_sends_the_switch_back_to_the_old_copy():
    """Killed after the switch's bundle, a move's rerun finds both copies: before the switch's
    change it already sends to the target's copy, and the old copy's output stays an arrival
    (sending back to the old copy would strand what the new one holds)."""
    raw = [WEB]
    hosts, mon, source, target = _monitor_move()
    old = hosts[source]["report"]["instances"][mon]["legs"]
    half = _half_moved(hosts, mon, source, target)
    (wave,) = _build(raw, half, policy=_move(mon, target), only_moves=True)["waves"]
    pre = "\n".join(f["match"] + " " + f["actions"] for f in wave["switches"]["sw1"]["flows_pre"])
    sends = "set_field:%d->vlan_vid,output:%s"
    assert sends % (0x1000 | 900, hosts[target]["trunk"]) in pre
    assert sends % (0x1000 | old["left"]["vlan"], hosts[source]["trunk"]) not in pre
    for trunk, tag in ((hosts[target]["trunk"], 901), (hosts[source]["trunk"], old["right"]["vlan"])):
        assert "in_port=%s,dl_vlan=%d" % (trunk, tag) in pre, (trunk, tag)
    # and the markers follow that bundle (relayed to the new copy already), not one two tasks later
    switch = wave["switches"]["sw1"]
    token = _deploy.marker_token(wave["moves"][0])
    assert [m["packet"] for m in switch["markers_pre"]] == [_deploy.marker_frame(mon, d, token) for d in ("fwd", "rev")]
    assert switch["markers"] == []
    assert len([f for f in switch["flows_pre"] if "dl_type=0x88b5" in f["match"]]) == 2


def test_a_drain_of_two_hosts_is_rolling_one_host_per_wave_with_all_capacity_checked_first():
    mail = dict(chain("mail", step("w", "wire", "kernel")), match={"udp": True})
    request = chains(WEB, mail)
    hosts = deployed(request)
    first = where(plan(request, hosts))
    used = sorted(set(first.values()))
    out = _build([WEB, mail], hosts, policy={"draining": used[:2]}, rolling=True, only_moves=True)
    names = [w["name"] for w in out["waves"]]
    assert names == ["drain %s" % h for h in used[:2] if any(v == h for v in first.values())]
    for wave, gone in zip(out["waves"], used[:2]):
        assert {m["from"] for m in wave["moves"]} == {gone}
        assert not set(m["to"] for m in wave["moves"]) & set(used[:2])
    # nothing fits: refused before any wave
    tight = copy.deepcopy(hosts)
    for name in tight:
        tight[name]["capacity"]["cpu"] = 0.35 if name not in used[:2] else tight[name]["capacity"]["cpu"]
    with pytest.raises(_deploy.DeployError, match="capacity short"):
        _build([WEB, mail], tight, policy={"draining": used[:2]}, rolling=True)


def _bundles(wave):
    """(bridge, stage, the table it leaves, the plan's entry for the bridge) of every flow stage
    the apply step would run in ``wave`` if it skipped nothing."""
    for kind, bridges in (("switch", wave["switches"]), ("host", wave["hosts"])):
        for name, lists in bridges.items():
            for stage, groups in (("flows_pre", "groups_pre"), ("flows_during", "groups_during"), ("flows", "groups")):
                if lists[stage] is not None and (stage != "flows" or wave["transition"]):
                    yield (kind, name), stage, (lists[stage], lists[groups] if kind == "switch" else None), lists


def test_a_bridge_skips_a_stage_that_leaves_its_table_as_it_is_but_never_its_first_or_one_after_a_port_changed():
    mail = dict(chain("mail", step("w", "wire", "kernel")), match={"udp": True})
    request = chains(WEB, mail)
    hosts = deployed(request)
    used = sorted(set(where(plan(request, hosts)).values()))
    out = _build([WEB, mail], hosts, policy={"draining": used[:2]}, rolling=True, only_moves=True)
    assert len(out["waves"]) == 2
    holds, fresh, skipped = {}, set(), []
    for wave in out["waves"]:
        fresh.update(("host", h) for h, v in wave["hosts"].items() if v["install"] or v["remove_first"])
        for bridge, stage, table, lists in _bundles(wave):
            if stage in lists["unchanged"]:
                # the bridge holds this table already, no port was made or removed there since it
                # was written, and no marker goes with it (a bridge's first stage never skips)
                assert holds.get(bridge) == table and bridge not in fresh, (wave["name"], bridge, stage)
                assert not lists.get({"flows_pre": "markers_pre", "flows_during": "markers"}.get(stage), []), (bridge, stage)
                skipped.append((wave["name"], bridge, stage))
            else:
                holds[bridge] = table
                fresh.discard(bridge)
        fresh.update(("host", h) for h, v in wave["hosts"].items() if v["remove"])
    # a host the drain does not touch writes its table once, at the first stage
    quiet = [h for h in hosts if all(not w["hosts"][h]["install"] and not w["hosts"][h]["remove"] for w in out["waves"])]
    assert quiet
    for h in quiet:
        assert len([s for s in skipped if s[1] == ("host", h)]) == len([b for w in out["waves"] for b in _bundles(w) if b[0] == ("host", h)]) - 1
    # a re-run of deploy-chain: one wave, its one stage runs everywhere
    (again,) = _build([WEB, mail], hosts)["waves"]
    assert all(v["unchanged"] == [] for v in list(again["hosts"].values()) + list(again["switches"].values()))


def test_an_operation_refuses_a_platform_that_is_not_as_described():
    hosts = deployed()
    bigger = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 3), step("out", "wire", "process"))
    mon = ids("web", 1, 2)[0]
    with pytest.raises(_deploy.DeployError, match="run deploy-chain first; it would install"):
        _build([bigger], hosts, policy=_move(mon, "mh2"), only_moves=True)


def targets(flows):
    """(trunk, VLAN) pairs the flows send packets to."""
    out = set()
    for f in flows:
        acts = f["actions"].split(",")
        tags = [int(a.split(":")[1].split("->")[0]) & 0xFFF for a in acts if a.startswith("set_field:") and a.endswith("->vlan_vid")]
        ports = [a.split(":")[1] for a in acts if a.startswith("output:")] + \
            [f["match"].split(",")[0].split("=")[1] for a in acts if a == "in_port"]
        out.update((p, t) for p in ports for t in tags)
    return out


def test_a_vm_moved_by_libvirt_gets_its_own_wave_and_a_switchover():
    guest = chain("guest", step("pre", "wire", "kernel"), step("vnf", "wire", "vm"))
    vm_hosts = {h: host(trunk="t%d" % i, kinds=("vm", "kernel", "process")) for i, h in enumerate(("mh1", "mh2", "mh3"), 1)}
    hosts = deployed(chains(guest), vm_hosts)
    for name, spec in hosts.items():
        spec["libvirt_uri"] = "qemu+tcp://%s/system" % name
    first = where(plan(chains(guest), hosts))
    vnf = ids("guest", 1, 1)[0]
    target = next(h for h in ("mh1", "mh2", "mh3") if h != first[vnf])
    out = _build([guest], hosts, policy=_move(vnf, target), only_moves=True)
    (wave,) = out["waves"]
    vm = wave["vm_move"]
    assert (vm["instance"], vm["from"], vm["to"], vm["how"], vm["carry"]) == (vnf, first[vnf], target, "libvirt", False)
    assert vm["to_libvirt_uri"] == "qemu+tcp://%s/system" % target and vm["switch"] == "sw1"
    assert wave["hosts"][target]["install"] == [] and wave["hosts"][first[vnf]]["remove"] == []  # libvirt does both
    new, old = vm["to_vlans"], vm["from_vlans"]
    was, goes = hosts[first[vnf]]["trunk"], hosts[target]["trunk"]
    pre, during = wave["switches"]["sw1"]["flows_pre"], wave["switches"]["sw1"]["flows_during"]
    # before the switchover traffic still goes to the old copy, and the new tags are already known
    assert (was, old["left"]) in targets(pre) and (goes, new["left"]) not in targets(pre)
    assert any(f["match"].startswith("in_port=%s,dl_vlan=%d," % (goes, new["right"])) for f in pre)
    assert (goes, new["left"]) in targets(during) and (was, old["left"]) not in targets(during)
    # no host flow names the VM's ports while libvirt moves it
    for h in hosts:
        assert not any("fs-%s-" % vnf in f["match"] + f["actions"] for f in wave["hosts"][h]["flows_pre"] or [])


def test_a_rerun_of_deploy_chain_is_one_wave_without_transition():
    hosts = deployed()
    out = _build([WEB], hosts)
    (wave,) = out["waves"]
    assert wave["transition"] is False and wave["moves"] == []
    assert sorted(i["instance"] for h in wave["hosts"].values() for i in h["install"]) == sorted(where(plan(chains(WEB), hosts)))


# -- the compiler: old copies' packets taken onward --------------------------------------------------
def test_a_draining_copy_is_an_arrival_not_a_target():
    from ansible_collections.flowstream.platform.plugins.module_utils._compiler import compile_chain
    (web,) = chains(chain("web", step("a", "wire", "kernel"), step("b", "wire", "kernel")))
    a, b = _chains.instance_id("web", 0, 0), _chains.instance_id("web", 1, 0)
    placement = {a: {"step": "a", "n": 0, "host": "mh1", "trunk": "t1", "vlans": {"left": 100, "right": 101}},
                 b: {"step": "b", "n": 0, "host": "mh2", "trunk": "t2", "vlans": {"left": 100, "right": 101}}}
    draining = {a + "@mh3": {"step": "a", "n": 0, "host": "mh3", "trunk": "t3", "vlans": {"left": 200, "right": 201}}}
    plain = compile_chain(web, placement, {"source": "p1", "sink": "p2"})
    both = compile_chain(web, placement, {"source": "p1", "sink": "p2"}, draining=draining)
    extra = [f for f in both["flows"] if f not in plain["flows"]]
    assert sorted((f["match"].split(",")[:2], f["actions"].split(",")[-1]) for f in extra) == [
        (["in_port=t3", "dl_vlan=200"], "output:p1"), (["in_port=t3", "dl_vlan=201"], "output:t2")]
    assert not any("200->" in f["actions"] or "201->" in f["actions"] for f in both["flows"])  # never a target


def test_a_removed_steps_instances_stay_arrivals_until_the_change_is_done():
    """A step taken out of a chain: what is still inside its copies when the switch moves on goes
    where the step sent it (forward to the exit, backward to the step before), until the end."""
    hosts = deployed()
    out_id = ids("web", 2, 1)[0]
    gone_on = where(plan(chains(WEB), hosts))[out_id]
    trunk = hosts[gone_on]["trunk"]
    tags = hosts[gone_on]["report"]["instances"][out_id]["legs"]
    shorter = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2))
    (wave,) = _build([shorter], hosts)["waves"]
    assert [r["instance"] for r in wave["hosts"][gone_on]["remove"]] == [out_id]
    during, final = wave["switches"]["sw1"]["flows_during"], wave["switches"]["sw1"]["flows"]
    mons = {(hosts[h]["trunk"], hosts[h]["report"]["instances"][m]["legs"]["right"]["vlan"])
            for m, h in where(plan(chains(WEB), hosts)).items() if m in ids("web", 1, 2)}
    fwd = [f for f in during if f["match"].startswith("in_port=%s,dl_vlan=%d," % (trunk, tags["right"]["vlan"]))]
    rev = [f for f in during if f["match"].startswith("in_port=%s,dl_vlan=%d," % (trunk, tags["left"]["vlan"]))]
    assert fwd and all(f["actions"].split(",")[-1] == "output:p2" for f in fwd)  # onward to the exit
    assert rev and targets(rev) == mons  # back to the monitors, into their right legs
    assert not any("dl_vlan=%d," % tags["right"]["vlan"] in f["match"] and f["match"].startswith("in_port=%s," % trunk) for f in final)


def test_a_removed_middle_steps_copies_go_on_to_the_step_now_after_it_or_before_it():
    """Taking out web's monitors shifts the ids after them: the step after them takes a
    monitor's id, on another host (the id names the ports on the old one), so both monitors drain,
    forward to that step and backward to the firewall; nothing is removed first."""
    hosts = deployed()
    mon_a, mon_b = ids("web", 1, 2)
    shorter = chain("web", step("fw", "firewall", "kernel"), step("out", "wire", "process"))
    out = _build([shorter], hosts)
    (wave,) = out["waves"]
    was = where(plan(chains(WEB), hosts))
    fw = ids("web", 0, 1)[0]
    assert not any(wave["hosts"][h]["remove_first"] for h in hosts)
    drained = sorted((r["instance"], h) for h in hosts for r in wave["hosts"][h]["remove"] if r["instance"] in (mon_a, mon_b))
    assert drained == sorted([(mon_a, was[mon_a]), (mon_b, was[mon_b])])
    tags = hosts[was[mon_b]]["report"]["instances"][mon_b]["legs"]
    trunk = hosts[was[mon_b]]["trunk"]
    during = wave["switches"]["sw1"]["flows_during"]
    fwd = [f for f in during if f["match"].startswith("in_port=%s,dl_vlan=%d," % (trunk, tags["right"]["vlan"]))]
    rev = [f for f in during if f["match"].startswith("in_port=%s,dl_vlan=%d," % (trunk, tags["left"]["vlan"]))]
    new_out = out["instances"][mon_a]   # the id web's monitor had names the new "out" now
    assert new_out["step"] == "out" and new_out["host"] != was[mon_a], new_out
    assert targets(fwd) == {(hosts[new_out["host"]]["trunk"], new_out["vlans"]["left"])}
    fw_at = out["instances"][fw]
    assert targets(rev) == {(hosts[fw_at["host"]]["trunk"], fw_at["vlans"]["right"])}


def test_a_steps_module_changed_in_place_is_made_elsewhere_and_the_old_copy_drains():
    """A step whose type changes keeps its id: the new copy goes to another host, so the old one
    keeps carrying (and then drains) until the switch moved - never removed first."""
    hosts = deployed()
    out_id = ids("web", 2, 1)[0]
    was = where(plan(chains(WEB), hosts))[out_id]
    changed = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 2), step("out", "monitor", "kernel"))
    out = _build([changed], hosts)
    (wave,) = out["waves"]
    entry = out["instances"][out_id]
    assert entry["action"] == "replace" and entry["host"] != was and "replaces the copy on %s" % was in entry["reason"], entry
    assert not any(wave["hosts"][h]["remove_first"] for h in hosts)
    assert [r["instance"] for r in wave["hosts"][was]["remove"]] == [out_id]
    tags = hosts[was]["report"]["instances"][out_id]["legs"]
    during = wave["switches"]["sw1"]["flows_during"]
    fwd = [f for f in during if f["match"].startswith("in_port=%s,dl_vlan=%d," % (hosts[was]["trunk"], tags["right"]["vlan"]))]
    assert fwd and all(f["actions"].split(",")[-1] == "output:p2" for f in fwd)  # the old copy's output still leaves


# -- the figures of an operation --------------------------------------------------------------------------
@pytest.mark.parametrize("count, flows", [(100, 16), (1000, 32), (7, 250)])
def test_probe_groups_source_ports_stay_in_range_and_apart(count, flows):
    chains = [{"name": "c%d" % i, "verify": {"rate": 100, "flows": flows, "base_port": 30000 + i}} for i in range(count)]
    groups = _operations.probe_groups(chains)
    assert len(groups) == count
    assert all(20000 <= g["source_port"] and g["source_port"] + g["flows"] - 1 <= 65535 for g in groups)
    ranges = [set(range(g["source_port"], g["source_port"] + g["flows"])) for g in groups]
    fit = 45536 // (-(-flows // 100) * 100)
    assert all(not ranges[a] & ranges[b] for a in range(min(count, fit)) for b in range(a + 1, min(count, fit)))
    # the probe accepts them: chains that share source ports still differ in destination port
    assert len(_probe.normalize_groups(groups)) == count
    # a chain keeps its ports whichever chains a run names
    assert _operations.probe_groups(chains, names=["c5"]) == [groups[5]]


def test_probe_groups_and_move_figures():
    raw = [{"name": "web", "verify": {"rate": 10000, "flows": 32, "base_port": 8000}},
           {"name": "guest", "verify": {"rate": 1000, "flows": 8, "base_port": 10240}},
           {"name": "quiet"}]
    groups = _operations.probe_groups(raw, names=["guest"], max_rate=500)
    assert groups == [{"name": "guest", "flows": 8, "rate": 500.0, "destination_port": 10240, "source_port": 20100, "vary": "sport"}]
    assert [g["source_port"] for g in _operations.probe_groups(raw)] == [20000, 20100]
    move = {"instance": "web4b51a", "chain": "web", "step": "mon", "kind": "kernel", "from": "mh1", "to": "mh2", "method": "live",
            "how": "make_before_break"}
    plan_ = {"waves": [{"name": "drain mh1", "moves": [move], "hosts": {}}]}
    times = {"drain mh1": {"started": 100.0, "ended": 104.5}}
    probe = {"windows": {"drain mh1": {"groups": {"web": {"sent": 45000, "lost": 0, "reordered": 0, "duplicated": 0,
                                                          "blackout_ms": 1.5, "max_gap_ms": 4.7}}}}}
    (row,) = _operations.move_figures(probe, plan_, times)
    assert (row["duration_s"], row["sent"], row["lost"], row["probed"], row["blackout_ms"]) == (4.5, 45000, 0, True, 1.5)
    assert _operations.wave_windows(times) == [{"name": "drain mh1", "start": 100.0, "end": 104.5}]
    unprobed = _operations.move_figures({}, plan_, times)[0]
    assert unprobed["probed"] is False and unprobed["lost"] is None
    assert _operations.moves_table([row])[1].split()[:5] == ["web4b51a", "web", "mh1", "mh2", "make_before_break"]
    assert _operations.affected_chains(plan_) == ["web"]
    hold = {"directions": {"fwd": {"released_by": "marker", "held_ms": 80.5}, "rev": {"released_by": "marker", "held_ms": 0.0}}}
    registered = [{"results": [{"item": {"instance": "web4b51a"}, "hold": hold}, {"item": {"instance": "x"}}]}, {"skipped": True}]
    assert _operations.hold_results(registered) == {"web4b51a": hold}
    batched = [{"converged": [{"instance": "web4b51a", "hold": hold}, {"instance": "x", "changed": False}]}, {"skipped": True}]
    assert _operations.hold_results(batched) == {"web4b51a": hold}
    (row,) = _operations.move_figures(probe, plan_, times, holds={"web4b51a": hold})
    assert (row["order"], row["held_ms"]) == ("marker", 80.5)
    late = {"directions": {"fwd": {"released_by": "marker"}, "rev": {"released_by": "timeout"}}}
    assert _operations.order_of(late) == "timeout" and _operations.order_of(None) is None


def test_failover_report_says_when_each_chain_carried_traffic_again():
    plan = {"waves": [{"name": "changes", "moves": [], "hosts": {
        "spare1": {"install": [{"instance": "web4b50a", "chain": "web", "new": True}]},
        "mh1": {"install": [{"instance": "ins14a0a", "chain": "inspect", "new": False}]}}}]}
    probe = {"windows": {"changes": {"groups": {"web": {
        "sent": 5000, "lost": 1200, "reordered": 0, "duplicated": 0, "blackout_ms": 2400.0,
        "lost_bursts": [{"after_ms": 0.1, "ms": 2399.0, "lost": 1200}]}}}}}
    rows = _operations.failover_report(probe, plan, {"changes": {"started": 1000.5, "ended": 1004.0}}, 998.0, ["mh2"])
    assert rows == [{"chain": "web", "failed_hosts": ["mh2"], "placed": {"web4b50a": "spare1"}, "probed": True,
                     "restored_s": 4.9, "sent": 5000, "lost": 1200, "reordered": 0, "duplicated": 0, "blackout_ms": 2400.0,
                     "held": None}]
    # without a probe the figures are unknown, not zero
    bare = _operations.failover_report({}, plan, {}, 998.0, ["mh2"])[0]
    assert bare["probed"] is False and bare["lost"] is None and bare["restored_s"] is None
    table = _operations.failover_table(rows + [bare])
    assert table[1].split()[:3] == ["web", "4.90", "5000"] and table[2].split()[1:3] == ["-", "-"]


def test_a_held_chain_has_a_row_that_says_it_was_not_restored_and_why():
    plan = {"waves": [{"name": "changes", "moves": [], "hosts": {}}],
            "held": {"guest": {"restore_priority": 100, "fail_mode": "open", "step": "fw", "reason": "capacity short: ...",
                               "missing": ["gst0a1b2"], "running": {}, "details": {}}}}
    (row,) = _operations.failover_report({}, plan, {}, 998.0, ["mh2"])
    assert row["chain"] == "guest" and row["restored_s"] is None and row["lost"] is None
    assert row["held"] == {"restore_priority": 100, "fail_mode": "open", "step": "fw", "reason": "capacity short: ...",
                           "missing": ["gst0a1b2"]}
    line = _operations.failover_table([row])[1]
    assert line.startswith("guest    NOT RESTORED (restore_priority 100; fail_mode open: its traffic is sent past its steps): "
                           "step fw: capacity short"), line


def test_moves_off_a_fenced_host_are_cold_and_wait_for_no_marker():
    """A failover: the host's trunk is fenced (nothing passes), so its copies are re-created with
    no order barrier - a marker sent into them would never come back, and the new copies would
    hold their output until the timeout."""
    hosts, mon, source, target = _monitor_move()
    hosts = copy.deepcopy(hosts)
    hosts[source]["fence"] = {"state": "fenced", "since": "2026-12-04T12:00:00Z", "reason": "isolated"}
    out = _build([WEB], hosts, policy={"allow_spares": True})
    moves = [m for w in out["waves"] for m in w["moves"]]
    assert mon in [m["instance"] for m in moves]
    assert all(m["method"] == "cold" and m["barrier"] is False and m["from"] == source for m in moves)
    for wave in out["waves"]:
        assert wave["switches"]["sw1"]["markers"] == []
        assert not any("dl_type=0x88b5" in f["match"] for f in wave["switches"]["sw1"]["flows_during"])
        for lists in wave["hosts"].values():
            assert all("hold" not in item for item in lists["install"])
    # the same move off a host that is not fenced keeps its barrier
    live = _build([WEB], _monitor_move()[0], policy=_move(mon, target), only_moves=True)
    assert [m["barrier"] for w in live["waves"] for m in w["moves"]] == [True]


def test_trials_recorded_on_a_switch_reach_the_chains_and_a_request_overrides_them():
    from ansible_collections.flowstream.platform.plugins.module_utils._deploy import with_trials
    chains = [{"name": "web", "steps": [{"name": "fw"}, {"name": "mon"}]},
              {"name": "dns", "steps": [{"name": "mon", "trial": {"type": "wire", "kind": "kernel", "percent": 5}}]}]
    trial = {"type": "monitor", "kind": "process", "percent": 10}
    switches = {"sw1": {"trials": {"web/mon": {"chain": "web", "step": "mon", "trial": trial, "since": "2026-12-05T04:00:00Z"},
                                   "dns/mon": {"chain": "dns", "step": "mon", "trial": dict(trial, percent=90)},
                                   "old/gone": {"chain": "old", "step": "gone", "trial": trial, "since": "x"}}}}
    out, warnings = with_trials(chains, switches)
    assert out[0]["steps"][1]["trial"] == trial and "trial" not in out[0]["steps"][0]
    assert out[1]["steps"][0]["trial"]["percent"] == 5            # the description's own trial wins
    assert "trial" not in chains[0]["steps"][1]                   # the input is left as it was
    assert warnings == ["the trial of old/gone (recorded on sw1 since x) names no step of the chains: playbooks/trial.yml "
                        "-e chain=old -e step=gone -e action=rollback ends it"]
    ended, _warnings = with_trials(chains, switches, [{"chain": "web", "step": "mon", "trial": None}])
    assert "trial" not in ended[0]["steps"][1]
    bigger, _warnings = with_trials(chains, switches, [{"chain": "web", "step": "mon", "trial": dict(trial, percent=50)}])
    assert bigger[0]["steps"][1]["trial"]["percent"] == 50


def test_a_promotion_gives_the_step_its_module_while_the_description_gives_the_old_one():
    from ansible_collections.flowstream.platform.plugins.module_utils._deploy import with_trials
    old = {"type": "monitor", "kind": "kernel"}
    new = {"type": "monitor", "kind": "process", "params": {"interval": 2}}
    chains = [{"name": "web", "steps": [{"name": "fw", "type": "firewall"}, dict(old, name="mon", instances=2)]}]
    record = {"chain": "web", "step": "mon", "trial": None, "since": None, "promotion": {"module": new, "from": old},
              "promotion_since": "2026-12-05T18:00:00Z"}
    switches = {"sw1": {"trials": {"web/mon": record}}}
    out, warnings = with_trials(chains, switches)
    assert out[0]["steps"][1] == dict(new, name="mon", instances=2) and warnings == []   # instances stay the step's
    assert chains[0]["steps"][1] == dict(old, name="mon", instances=2)                   # the input is left as it was
    # the step's trial at 100 % beside the promotion (promote's second phase): both apply
    both = {"sw1": {"trials": {"web/mon": dict(record, trial={"type": "monitor", "kind": "process", "percent": 100.0})}}}
    out, _warnings = with_trials(chains, both)
    assert out[0]["steps"][1]["kind"] == "process" and out[0]["steps"][1]["trial"]["percent"] == 100.0
    # the description says something else now (the operator wrote the new module in, or another one): it wins, named
    edited = [{"name": "web", "steps": [{"name": "fw", "type": "firewall"}, dict(new, name="mon", instances=2)]}]
    out, warnings = with_trials(edited, switches)
    assert out[0]["steps"][1] == dict(new, name="mon", instances=2)
    assert len(warnings) == 1 and warnings[0].startswith("web/mon: the description gives the step") and "action=forget" in warnings[0]
    # a request forgets it; a step that went away is named
    out, warnings = with_trials(chains, switches, [{"chain": "web", "step": "mon", "promotion": None}])
    assert out[0]["steps"][1]["kind"] == "kernel" and warnings == []
    out, warnings = with_trials([{"name": "web", "steps": [{"name": "fw"}]}], switches)
    assert warnings == ["the promotion of web/mon (recorded on sw1 since 2026-12-05T18:00:00Z) names no step of the chains: "
                        "playbooks/trial.yml -e chain=web -e step=mon -e action=forget ends it"]


def test_scaling_a_step_reports_the_share_of_its_flows_that_change_instance():
    hosts = deployed(chains(WEB))
    assert _build([WEB], hosts)["rebalanced"] == {}                            # nothing changes: nothing to report
    bigger = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 3), step("out", "wire", "process"))
    up = _build([bigger], hosts)["rebalanced"]
    two, three = ids("web", 1, 2), ids("web", 1, 3)
    assert list(up) == ["web/mon"] and (up["web/mon"]["before"], up["web/mon"]["after"]) == (two, three)
    # rendezvous hashing: only the slots the new instance now owns move, about a third of them
    assert up["web/mon"]["ideal"] == round(1 / 3.0, 4) and up["web/mon"]["slots"] == 256
    assert 0.25 < up["web/mon"]["share_moved"] < 0.42 and up["web/mon"]["slots_moved"] == round(up["web/mon"]["share_moved"] * 256)
    one = chain("web", step("fw", "firewall", "kernel"), step("mon", "monitor", "kernel", 1), step("out", "wire", "process"))
    down = _build([one], hosts)["rebalanced"]["web/mon"]
    assert (down["after"], down["ideal"]) == (two[:1], 0.5) and 0.4 < down["share_moved"] < 0.6


def test_a_scaling_recorded_on_the_switch_holds_while_the_description_gives_the_old_count():
    from ansible_collections.flowstream.platform.plugins.module_utils._deploy import with_trials
    chains = [{"name": "web", "steps": [{"name": "fw"}, {"name": "mon", "instances": 2}]}]
    switches = {"sw1": {"trials": {"web/mon": {"chain": "web", "step": "mon", "trial": None, "promotion": None,
                                               "scale": {"instances": 4, "from": 2}, "scale_since": "t"}}}}
    out, warnings = with_trials(chains, switches)
    assert out[0]["steps"][1]["instances"] == 4 and warnings == [] and chains[0]["steps"][1]["instances"] == 2
    # the description written to 3 since: it wins, and the record is named
    out, warnings = with_trials([{"name": "web", "steps": [{"name": "fw"}, {"name": "mon", "instances": 3}]}], switches)
    assert out[0]["steps"][1]["instances"] == 3 and "scale-step.yml -e chain=web -e step=mon" in warnings[0]
    # a step written without instances has 1; a request scales it
    out, _warnings = with_trials([{"name": "web", "steps": [{"name": "fw"}]}], {},
                                 [{"chain": "web", "step": "fw", "scale": {"instances": 2, "from": 1}}])
    assert out[0]["steps"][0]["instances"] == 2


@pytest.mark.parametrize("fail_mode, fwd, rev", [("closed", "drop", "drop"), ("open", "output:p2", "output:p1")])
def test_a_held_chain_is_never_half_plumbed_the_switch_holds_its_traffic(fail_mode, fwd, rev):
    """A failover that cannot restore a chain leaves it held: no instance of it installed or
    removed, no flow to a step, no host-bridge flow - only its two entries, dropped (closed) or
    sent from uplink to uplink (open)."""
    web = dict(WEB, fail_mode=fail_mode)
    hosts = copy.deepcopy(deployed(chains(web)))
    lost = sorted(hosts["mh2"]["report"]["instances"])
    hosts["mh2"]["report"], hosts["mh2"]["fence"] = None, {"state": "fenced", "since": "2026-12-04T12:00:00Z", "reason": "failed"}
    for name in ("mh1", "mh3", "spare1"):
        hosts[name]["capacity"]["cpu"] = 0.01    # what runs there stays, nothing more fits
    assert lost
    out = _build([web], hosts, policy={"allow_spares": True, "restore_by_priority": True})
    assert list(out["held"]) == ["web"] and out["chains"]["web"]["state"] == "held"
    assert out["chains"]["web"]["held"]["fail_mode"] == fail_mode
    flows = out["switches"]["sw1"]["flows"]
    assert [(f["match"].split(",")[0], f["actions"]) for f in flows] == [("in_port=p1", fwd), ("in_port=p2", rev)]
    assert out["switches"]["sw1"]["groups"] == [] and out["moves"] == []
    for lists in out["hosts"].values():
        assert lists["install"] == [] and lists["remove"] == [] and lists["remove_first"] == [] and lists["flows"] == []
    with pytest.raises(_deploy.DeployError, match="capacity short"):
        _build([web], hosts, policy={"allow_spares": True})


@pytest.mark.parametrize("chains_, catalogue, words", [
    ([{"name": "web", "from": "source", "to": "sink", "match": {"udp": True}, "steps": 5}], {}, "chain 'web': steps: "),
    ([{"name": ["web"], "steps": []}], {}, "name: a chain name is"),
    ([dict(WEB)], {"x": 5}, "flowstream_catalogue.x: must be a mapping"),
    ([dict(WEB)], {"monitor": {"kinds": 7}}, "flowstream_catalogue.monitor: redefines the built-in type"),
])
def test_a_malformed_description_or_catalogue_is_a_deploy_error_before_anything_reads_it(chains_, catalogue, words):
    """The plan validates the description as written before it applies the switches' records to
    it (with_trials), and the operator's catalogue before any chain: only DeployError escapes."""
    with pytest.raises(_deploy.DeployError) as err:
        _deploy.build_plan(chains_, catalogue, platform(), SWITCHES, {})
    assert words in str(err.value), str(err.value)


def test_a_failover_makes_only_what_failed_and_leaves_what_runs_as_planned():
    """converge false (failover.yml): the instances of the fenced host are made again elsewhere;
    the others, running as their steps say, are not checked again one by one - unless their host
    reports one stopped or of another type, which is made again too."""
    hosts, mon, source = _monitor_move()[:3]
    hosts = copy.deepcopy(hosts)
    hosts[source]["fence"] = {"state": "fenced", "since": "2026-12-04T12:00:00Z", "reason": "failed"}

    def installed(out):
        return sorted(item["instance"] for w in out["waves"] for lists in w["hosts"].values() for item in lists["install"])

    lost = sorted(iid for iid, info in hosts[source]["report"]["instances"].items())
    everything = installed(_build([WEB], hosts, policy={"allow_spares": True}))
    only = installed(_build([WEB], hosts, policy={"allow_spares": True}, converge=False))
    assert mon in lost and only == lost
    assert set(everything) > set(only)
    survivor, other = next((h, iid) for h in ("mh1", "mh2", "mh3") if h != source
                           for iid in sorted(hosts[h]["report"]["instances"]))
    for change in ({"state": "stopped"}, {"type": "wire"}, {"legs": {}}):
        broken = copy.deepcopy(hosts)
        broken[survivor]["report"]["instances"][other].update(change)
        assert installed(_build([WEB], broken, policy={"allow_spares": True}, converge=False)) == sorted(lost + [other]), change


def test_instance_requests_take_each_entry_s_own_options_and_a_moving_one_s_state():
    plain = {"instance": "web1", "kind": "kernel", "type": "wire", "params": {}, "vlans": {"left": 101, "right": 102},
             "chain": "web", "step": "fw", "new": True, "reason": "placed by load", "carry_from": None}
    moving = dict(plain, instance="web2", type="monitor", carry_from="mh1", hold={"token": "ab12", "timeout": 10.0})
    stateless = dict(plain, instance="web3", carry_from="mh2")
    exported = [{"skipped": True}, {"exported_state": {"web2": {"flows": [1]}}}, {"exported_state": {"web3": None}}]
    first, second, third = _operations.instance_requests([plain, moving, stateless], exported)
    assert first == {k: plain[k] for k in ("instance", "kind", "type", "params", "vlans", "chain", "step")}
    assert second["carried_state"] == {"flows": [1]} and second["hold"] == moving["hold"]
    assert "carried_state" not in third and "hold" not in third
    assert "hold" not in _operations.instance_requests([moving], exported, hold=False)[0]
    with pytest.raises(ValueError, match="web2 carries its state from mh1, but no state was read there"):
        _operations.instance_requests([moving], [{"exported_state": {}}])
