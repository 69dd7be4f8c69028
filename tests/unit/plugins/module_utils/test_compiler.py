# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The chain compiler, proven by simulating packets through the flows it emits.

A small OpenFlow interpreter (priorities, in_port, VLANs, IP prefixes, masked ports, registers,
push/set/pop VLAN, output, in_port, multipath with a symmetric hash, goto_table) runs the
compiled table; instances and black boxes are bumps in the wire that return a packet on the
other leg's tag (or port). Hypothesis generates chains (parallel steps, black boxes, splits) and
placements; the properties are those of the issue.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils._chains import ChainError, instance_id, leg_port, validate
from ansible_collections.flowstream.platform.plugins.module_utils import _compiler
from ansible_collections.flowstream.platform.plugins.module_utils._compiler import SLOTS, check_overlaps, compile_chain

UPLINKS = {"source": "up-src", "sink": "up-sink"}
SWITCHES = {"sw1": {"uplinks": UPLINKS}}
TRUNKS = ["tr-mh1", "tr-mh2", "tr-mh3", "tr-mh4"]
TRUNK_HOST = {t: t[3:] for t in TRUNKS}
BOXES = {"bb1": {"switch": "sw1", "ports": {"left": "bb1-l", "right": "bb1-r"}},
         "bb2": {"switch": "sw1", "ports": {"left": "bb2-l", "right": "bb2-r"}}}
SRC, DST = "198.18.1.1", "198.18.1.2"


# ------------------------------------------------------------------------------------------
# the interpreter
# ------------------------------------------------------------------------------------------
# the fields that tell most flows apart first (a parallel step has a dispatch flow per slot)
_FIRST = {"reg0": 0, "in_port": 1, "dl_vlan": 2}


@functools.lru_cache(maxsize=None)
def _match_items(text):
    """The match's fields, the telling ones first; a masked number as (value & mask, mask)."""
    items = []
    for key, want in sorted(parse_match(text).items(), key=lambda kv: _FIRST.get(kv[0], 9)):
        if key in ("tp_src", "tp_dst", "ip_dscp", "reg0"):
            value, _sep, mask = want.partition("/")
            mask = int(mask, 0) if mask else 0xFFFFFFFF
            want = (int(value, 0) & mask, mask)
        items.append((key, want))
    return tuple(items)


@functools.lru_cache(maxsize=None)
def _network(text):
    return ipaddress.ip_network(text, strict=False)


def parse_match(text):
    out = {}
    for part in filter(None, text.split(",")):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key] = value
        else:
            out[part] = True
    return out


def field_matches(key, want, pkt):
    if key in ("ip", "udp", "tcp", "icmp"):
        return key == "ip" or pkt["proto"] == key
    if key == "in_port":
        return pkt["in_port"] == want
    if key == "dl_vlan":
        return pkt["vlan"] == int(want)
    if key in ("nw_src", "nw_dst"):
        return ipaddress.ip_address(pkt[key]) in _network(want)
    if key in ("tp_src", "tp_dst", "ip_dscp", "reg0"):
        value, mask = want
        return (pkt[key] & mask) == value
    raise AssertionError("the simulator does not know match field %s" % key)


def symmetric_slot(pkt, slots):
    ends = sorted([(pkt["nw_src"], pkt["tp_src"]), (pkt["nw_dst"], pkt["tp_dst"])])
    digest = hashlib.sha256(json.dumps([ends, pkt["proto"]]).encode()).digest()
    return int.from_bytes(digest[:4], "big") % slots


def lookup(flows, table, pkt):
    best = None
    for flow in flows:
        if flow["table"] != table:
            continue
        if all(field_matches(k, v, pkt) for k, v in _match_items(flow["match"])):
            if best is None or flow["priority"] > best["priority"]:
                assert best is None or flow["priority"] != best["priority"] or flow == best, \
                    "two flows of equal priority match: %s / %s" % (flow, best)
                best = flow
    return best


def run_switch(flows, pkt, groups=None, dead=()):
    """Apply the flow table to ``pkt``; return the ports it is sent out of (with the packet).
    ``groups``: {group id: group} (fast-failover: the first bucket whose watch_port is not in
    ``dead``). An output to the port the packet came in on is dropped, as OpenFlow does."""
    table = 0
    while True:
        flow = lookup(flows, table, pkt)
        if flow is None:
            return []
        outputs = []
        goto = None
        for action in re.split(r",(?![^(]*\))", flow["actions"]):
            if action.startswith("push_vlan"):
                pkt["vlan"] = 0
            elif action.startswith("set_field:") and action.endswith("->vlan_vid"):
                pkt["vlan"] = int(action[len("set_field:"):-len("->vlan_vid")]) & 0xFFF
            elif action == "pop_vlan":
                pkt["vlan"] = None
            elif action.startswith("output:"):
                if action[len("output:"):] != str(pkt["in_port"]):
                    outputs.append((action[len("output:"):], dict(pkt)))
            elif action == "load:0->NXM_OF_IN_PORT[]":
                pkt["in_port"] = 0
            elif action.startswith("group:"):
                group = groups[int(action[len("group:"):])]
                assert group["type"] == "fast_failover", group
                live = [b for b in group["buckets"] if b.split(",")[0][len("watch_port:"):] not in dead]
                if live:
                    for bucket_action in live[0].split("actions=", 1)[1].split(","):
                        if bucket_action.startswith("set_field:"):
                            pkt["vlan"] = int(bucket_action[len("set_field:"):-len("->vlan_vid")]) & 0xFFF
                        elif bucket_action.startswith("output:"):
                            if bucket_action[len("output:"):] != str(pkt["in_port"]):
                                outputs.append((bucket_action[len("output:"):], dict(pkt)))
                        else:
                            raise AssertionError("the simulator does not know bucket action %s" % bucket_action)
            elif action == "in_port":
                outputs.append((pkt["in_port"], dict(pkt)))
            elif action == "NORMAL":
                outputs.append(("NORMAL", dict(pkt)))
            elif action.startswith("multipath("):
                args = action[len("multipath("):-1].split(",")
                assert args[0].startswith("symmetric"), action
                pkt["reg0"] = symmetric_slot(pkt, int(args[3]))
            elif action.startswith("goto_table:"):
                goto = int(action.split(":")[1])
            else:
                raise AssertionError("the simulator does not know action %s" % action)
        if goto is None:
            return outputs
        table = goto


def traverse(compiled, wires, pkt, hosts=True, max_hops=64, dead=()):
    """Send ``pkt`` through the switch, the module hosts' bridges and the instances until it
    leaves on an uplink. ``wires`` (from ``place``): black boxes and instances. A host bridge runs
    the compiled host flows of its host (``hosts=False``: none, the switch does everything) and
    NORMAL when none matches: trunk + VLAN -> the access port with that tag; an access port ->
    the trunk tagged with its VLAN. Returns (exit port, [visited], switch passes)."""
    host_flows = compiled.get("hosts", {}) if hosts else {}
    visited, passes = [], 0
    for _hop in range(max_hops):
        passes += 1
        outs = run_switch(compiled["flows"], pkt, {g["group_id"]: g for g in compiled.get("groups", [])}, dead)
        assert len(outs) == 1, "expected exactly one output, got %s (visited %s)" % (outs, visited)
        assert outs[0][0] not in dead, "sent to dead trunk %s (visited %s)" % (outs[0][0], visited)
        port, pkt = outs[0]
        if port in UPLINKS.values():
            assert pkt["vlan"] is None, "a packet leaves the platform tagged"
            return port, visited, passes
        if port not in TRUNK_HOST:  # a black box
            assert pkt["vlan"] is None and (port, None) in wires, "output to %s with VLAN %s reaches nothing" % (port, pkt["vlan"])
            name, (back_port, _none) = wires[(port, None)]
            visited.append(name)
            pkt = dict(pkt, in_port=back_port)
            continue
        host = TRUNK_HOST[port]
        leg = wires["access"].get((host, pkt["vlan"]))
        assert leg, "output to %s with VLAN %s reaches nothing" % (port, pkt["vlan"])
        pkt = dict(pkt, vlan=None)
        while True:  # on the host: through the instance, then the host bridge
            name, out_leg = wires["legs"][(host, leg)]
            visited.append(name)
            pkt = dict(pkt, in_port=out_leg)
            outs = run_switch(host_flows.get(host, []), pkt) or [("NORMAL", pkt)]
            assert len(outs) == 1, "host %s: expected exactly one output, got %s" % (host, outs)
            leg, pkt = outs[0]
            if leg == "NORMAL":
                pkt = dict(pkt, in_port=port, vlan=wires["vlan_of"][(host, out_leg)])
                break
            assert pkt["vlan"] is None and (host, leg) in wires["legs"], "host %s: output to %s reaches nothing" % (host, leg)
    raise AssertionError("a loop: more than %d hops (%s)" % (max_hops, visited))


# ------------------------------------------------------------------------------------------
# building chains and placements
# ------------------------------------------------------------------------------------------
def place(chain, seed, spread=None):
    """A placement: instance n of step i on trunk (seed + i + n) mod ``spread`` (all hosts by
    default; 1 puts everything on one host), VLANs unique per host. Also the wires: black boxes
    by switch port; per host, access VLAN -> leg port, leg port -> (instance, other leg), leg
    port -> VLAN."""
    spread = spread or len(TRUNKS)
    placement, next_vlan = {}, {t: 100 for t in TRUNKS}
    wires = {"access": {}, "legs": {}, "vlan_of": {}}
    for step in chain["steps"]:
        if step["kind"] == "blackbox":
            ports = BOXES[step["blackbox"]]["ports"]
            wires[(ports["left"], None)] = ("%s" % step["name"], (ports["right"], None))
            wires[(ports["right"], None)] = ("%s" % step["name"], (ports["left"], None))
            continue
        for n in range(step["instances"]):
            trunk = TRUNKS[(seed + step["index"] + n) % spread]
            host = TRUNK_HOST[trunk]
            left, right = next_vlan[trunk], next_vlan[trunk] + 1
            next_vlan[trunk] += 2
            inst = instance_id(chain["name"], step["index"], n)
            placement[inst] = {"step": step["name"], "n": n, "host": host, "trunk": trunk, "vlans": {"left": left, "right": right}}
            name = "%s/%s" % (step["name"], inst)
            lport, rport = leg_port(inst, "left"), leg_port(inst, "right")
            wires["access"].update({(host, left): lport, (host, right): rport})
            wires["legs"].update({(host, lport): (name, rport), (host, rport): (name, lport)})
            wires["vlan_of"].update({(host, lport): left, (host, rport): right})
    return placement, wires


def packet(sport, dport, proto="udp", forward=True, dscp=0):
    src, dst = (SRC, DST) if forward else (DST, SRC)
    sp, dp = (sport, dport) if forward else (dport, sport)
    return {"in_port": UPLINKS["source"] if forward else UPLINKS["sink"], "vlan": None, "proto": proto,
            "nw_src": src, "nw_dst": dst, "tp_src": sp, "tp_dst": dp, "ip_dscp": dscp, "reg0": 0}


STEP_TYPES = [("wire", "kernel"), ("monitor", "process"), ("firewall", "kernel"), ("wire", "vm"), ("shaper", "kernel")]


@st.composite
def chains(draw):
    count = draw(st.integers(1, 5))
    steps = []
    for i in range(count):
        free = sorted(set(BOXES) - {s.get("blackbox") for s in steps})
        if free and draw(st.integers(0, 6)) == 0:
            steps.append({"name": "s%d" % i, "blackbox": draw(st.sampled_from(free))})
            continue
        type_name, kind = draw(st.sampled_from(STEP_TYPES))
        step = {"name": "s%d" % i, "type": type_name, "kind": kind, "instances": draw(st.integers(1, 4))}
        if type_name == "shaper":
            step["params"] = {"rate": "10mbit"}
        steps.append(step)
    # maybe a trial: a candidate on a share of one step's flows
    plain = [i for i, st_ in enumerate(steps) if "blackbox" not in st_]
    if plain and draw(st.booleans()):
        k = draw(st.sampled_from(plain))
        steps[k]["trial"] = {"type": "monitor", "kind": "process", "instances": draw(st.integers(1, 2)),
                             "percent": draw(st.sampled_from([1, 10, 50, 100]))}
    # maybe a split: step k diverts tp_dst=23 to step k+1
    if count >= 2 and draw(st.booleans()):
        k = draw(st.integers(0, count - 2))
        steps[k]["split"] = {"to": "s%d" % (k + 1), "match": {"udp": True, "tp_dst": 23}}
        steps[k + 1]["only_split"] = True
    chain = {"name": "c%d" % draw(st.integers(0, 99)), "switch": "sw1", "from": "source", "to": "sink",
             "match": {"udp": True, "nw_src": SRC, "nw_dst": DST}, "steps": steps}
    return validate([chain], switches=SWITCHES, blackboxes=BOXES)[0]


def expected_steps(chain, split):
    out = []
    for step in chain["steps"]:
        if step["only_split"] and not split or step.get("trial_of"):
            continue
        out.append(step["name"])
    return out


# ------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(chain=chains(), seed=st.integers(0, 3), spread=st.integers(1, 4),
       ports=st.lists(st.tuples(st.integers(1024, 65535), st.integers(1, 65535)), min_size=1, max_size=12))
def test_every_packet_visits_every_step_once_in_order_and_both_directions_meet(chain, seed, spread, ports):
    placement, wires = place(chain, seed, spread)
    compiled = compile_chain(chain, placement, UPLINKS, BOXES)
    for sport, dport in ports:
        split = dport == 23 and any(s["split"] for s in chain["steps"])
        out, fwd, _passes = traverse(compiled, wires, packet(sport, dport))
        assert out == UPLINKS["sink"]
        # a trial's candidate stands in for the step it tries out
        assert [v.split("/")[0].split("~")[0] for v in fwd] == expected_steps(chain, split), (fwd, chain["steps"])
        out, rev, _passes = traverse(compiled, wires, packet(sport, dport, forward=False))
        assert out == UPLINKS["source"]
        # the reverse direction: the same instances, in reverse order (a split by header fields
        # diverts both directions)
        assert rev == list(reversed(fwd)), (fwd, rev)


@settings(max_examples=150, deadline=None)
@given(chain=chains(), seed=st.integers(0, 3), spread=st.integers(1, 4),
       ports=st.lists(st.tuples(st.integers(1024, 65535), st.integers(1, 65535)), min_size=1, max_size=12))
def test_host_flows_change_no_decision_only_the_switch_passes(chain, seed, spread, ports):
    """Host-local chaining: with the host flows a packet meets exactly the instances it meets
    when the switch does everything, and crosses the switch no more often - once per stay on a
    host plus once to leave (and once per black box)."""
    placement, wires = place(chain, seed, spread)
    compiled = compile_chain(chain, placement, UPLINKS, BOXES)
    for sport, dport in ports:
        for forward in (True, False):
            out, via_hosts, passes = traverse(compiled, wires, packet(sport, dport, forward=forward))
            out_switch, via_switch, switch_passes = traverse(compiled, wires, packet(sport, dport, forward=forward), hosts=False)
            assert (out, via_hosts) == (out_switch, via_switch)
            assert switch_passes == len(via_switch) + 1
            hosts_in_a_row = [placement[v.split("/")[1]]["host"] if "/" in v else v for v in via_hosts]
            stays = sum(1 for i, h in enumerate(hosts_in_a_row) if i == 0 or h != hosts_in_a_row[i - 1])
            assert passes == stays + 1, (via_hosts, hosts_in_a_row, passes)


def test_a_chain_on_one_host_crosses_the_switch_twice():
    chain = validate([base_chain("web", {"udp": True, "nw_src": SRC, "nw_dst": DST}, [
        {"name": "fw", "type": "firewall", "kind": "kernel"},
        {"name": "mon", "type": "monitor", "kind": "kernel", "instances": 2},
        {"name": "shape", "type": "shaper", "kind": "kernel", "params": {"rate": "10mbit"}}])], switches=SWITCHES)[0]
    placement, wires = place(chain, 0, spread=1)
    compiled = compile_chain(chain, placement, UPLINKS)
    assert list(compiled["hosts"]) == ["mh1"]
    for flow in compiled["hosts"]["mh1"]:
        assert flow["cookie"] == chain["cookie"]
        assert flow["match"].startswith("in_port=fs-web") or flow["table"] == 1
    for sport in range(30000, 30032):
        for forward in (True, False):
            _out, visited, passes = traverse(compiled, wires, packet(sport, 8000, forward=forward))
            assert passes == 2 and len(visited) == 3
    # spread over two hosts the other monitor's connections leave the host and come back
    placement, wires = place(chain, 0, spread=2)
    compiled = compile_chain(chain, placement, UPLINKS)
    seen = {traverse(compiled, wires, packet(sport, 8000))[2] for sport in range(30000, 30064)}
    assert seen == {2, 4} or seen == {3}, seen


def test_no_host_flows_when_no_two_consecutive_steps_share_a_host():
    chain = validate([base_chain("web", {"udp": True}, [
        {"name": "a", "type": "wire", "kind": "kernel"}, {"name": "b", "type": "wire", "kind": "kernel"}])], switches=SWITCHES)[0]
    placement, _wires = place(chain, 0)
    assert {w["host"] for w in placement.values()} == {"mh1", "mh2"}
    assert compile_chain(chain, placement, UPLINKS)["hosts"] == {}


@settings(max_examples=60, deadline=None)
@given(chain=chains(), seed=st.integers(0, 3))
def test_compiled_flows_are_deterministic(chain, seed):
    placement, _wires = place(chain, seed)
    one = json.dumps(compile_chain(chain, placement, UPLINKS, BOXES), sort_keys=True)
    two = json.dumps(compile_chain(chain, dict(reversed(list(placement.items()))), UPLINKS, BOXES), sort_keys=True)
    assert one == two


def base_chain(name, match, steps=None, **extra):
    chain = {"name": name, "switch": "sw1", "from": "source", "to": "sink", "match": match,
             "steps": steps or [{"name": "fw", "type": "wire", "kind": "kernel"}]}
    chain.update(extra)
    return chain


def test_parallel_step_is_stable_when_an_instance_goes():
    chain = validate([base_chain("web", {"udp": True}, [{"name": "mon", "type": "monitor", "kind": "process", "instances": 4}])],
                     switches=SWITCHES)[0]
    placement, wires = place(chain, 0)
    before = {p: traverse(compile_chain(chain, placement, UPLINKS), wires, packet(p, 80))[1][0] for p in range(2000, 2400)}
    gone = instance_id("web", 0, 2)
    smaller = dict(chain, steps=[dict(chain["steps"][0], instances=3)])
    rest = {k: v for k, v in placement.items() if k != gone}
    # the planner keeps instance 3 as it is: the compiler takes instances as placed
    for inst in rest.values():
        inst["n"] = sorted(rest).index([k for k, v in rest.items() if v is inst][0])
    after = {p: traverse(compile_chain(smaller, rest, UPLINKS), wires, packet(p, 80))[1][0] for p in range(2000, 2400)}
    moved = [p for p in before if before[p] != after[p]]
    assert all(before[p].endswith(gone) for p in moved), "connections of remaining instances moved"
    assert 50 < len(moved) < 150  # about a quarter of 400 were on the removed instance


def test_disjoint_chains_share_no_flow_and_overlaps_are_refused():
    web = base_chain("web", {"tcp": True, "nw_dst": DST, "tp_dst": 80})
    dns = base_chain("dns", {"udp": True, "nw_dst": DST, "tp_dst": 53})
    chains_ = validate([web, dns], switches=SWITCHES)
    check_overlaps(chains_)
    keys = []
    for chain in chains_:
        placement, _w = place(chain, 0 if chain["name"] == "web" else 1)
        keys.append({(f["table"], f["priority"], f["match"]) for f in compile_chain(chain, placement, UPLINKS)["flows"]})
    assert not keys[0] & keys[1]
    mail = base_chain("mail", {"tcp": True, "nw_dst": "198.18.1.0/24"})
    with pytest.raises(ChainError) as err:
        check_overlaps(validate([web, dns, mail], switches=SWITCHES))
    assert "chain 'mail'" in str(err.value) and "chain 'web'" in str(err.value) and err.value.field == "match"
    other = base_chain("other", {"tcp": True, "nw_dst": "198.18.2.0/24"})
    check_overlaps(validate([web, other], switches=SWITCHES))


def _overlap_error_pairwise(chains_):
    """The reference: every pair of chains, in order, the first that overlaps."""
    present = [c for c in chains_ if c["state"] == "present"]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            try:
                _compiler._check_pair(a, b)   # pylint: disable=protected-access
            except ChainError as exc:
                return str(exc)
    return None


_MATCH_PARTS = st.fixed_dictionaries({}, optional={
    "tcp": st.just(True), "udp": st.just(True), "ip": st.just(True),
    "nw_proto": st.sampled_from([6, 17, "6", 1]),
    "tp_dst": st.sampled_from([53, 80, "80", "0x50", "85/0xfff0", "57/0xff00", 443]),
    "udp_dst": st.sampled_from([53, 80]),
    "tp_src": st.sampled_from([1024, "1030/0xfc00", 5000]),
    "nw_dst": st.sampled_from(["198.18.1.2", "198.18.1.2/32", "198.18.1.0/24", "198.18.1.3", "198.18.2.0/255.255.255.0",
                               "198.18.1.7/255.255.255.0"]),
    "ip_dst": st.sampled_from(["198.18.1.2", "198.18.1.0/24"]),
    "nw_src": st.sampled_from(["198.18.0.1", "198.18.0.0/16", "198.18.0.2"]),
})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_MATCH_PARTS, st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"]), st.sampled_from(["sw1", "sw2"]),
                          st.sampled_from(["present", "present", "absent"])), min_size=1, max_size=12))
def test_overlap_check_finds_what_comparing_every_pair_finds(specs):
    """check_overlaps splits matches by what makes them disjoint for sure instead of comparing
    every pair: the same first overlap (the same error), or none, as every pair compared."""
    chains_ = [{"name": "c%d" % n, "state": state, "switch": switch, "from": src, "to": dst, "match": match}
               for n, (match, src, dst, switch, state) in enumerate(specs) if src != dst]
    try:
        check_overlaps(chains_)
        said = None
    except ChainError as exc:
        said = str(exc)
    assert said == _overlap_error_pairwise(chains_)


def test_the_overlap_check_of_a_thousand_chains_compares_few_pairs():
    """1,000 chains on one uplink pair told apart by tp_dst: no pair needs comparing, and one that
    overlaps is still named, after the ones before it."""
    chains_ = [{"name": "c%d" % n, "state": "present", "switch": "sw1", "from": "a", "to": "b",
                "match": {"udp": True, "nw_dst": "198.18.1.2", "tp_dst": 1000 + n}} for n in range(1000)]
    entries = [(n, c["match"]) for n, c in enumerate(chains_)]
    assert not list(_compiler._maybe_overlapping(entries, _compiler._DISCRIMINATORS))   # pylint: disable=protected-access
    check_overlaps(chains_)
    chains_.append({"name": "wide", "state": "present", "switch": "sw1", "from": "a", "to": "b",
                    "match": {"udp": True, "nw_dst": "198.18.1.0/24", "tp_dst": "1047/0xfff0"}})      # ports 1040-1055
    with pytest.raises(ChainError) as err:
        check_overlaps(chains_)
    assert str(err.value).startswith("chain 'wide': match: overlaps chain 'c40' at uplink a"), str(err.value)


@pytest.mark.parametrize("chain, step, field, words", [
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "antivirus", "kind": "kernel"}]), "a", "type", "unknown type"),
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "inspect", "kind": "kernel", "params": {"patterns": ["x"]}}]),
     "a", "kind", "cannot run as kind"),
    (base_chain("c", {"udp": True, "vlan_tci": 5}), None, "match.vlan_tci", "not an OpenFlow match field"),
    (base_chain("c", {"nw_dst": DST}), None, "match", "must name the protocol"),
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "wire", "kind": "kernel", "split": {"to": "zz", "match": {"udp": True}}},
                                     {"name": "b", "type": "wire", "kind": "kernel", "only_split": True}]), "a", "split.to", "does not have"),
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "wire", "kind": "kernel"},
                                     {"name": "b", "type": "wire", "kind": "kernel", "split": {"to": "a", "match": {"udp": True}}}]),
     "b", "split.to", "no loops"),
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "wire", "kind": "kernel"}, {"name": "a", "type": "wire", "kind": "kernel"}]),
     "a", "name", "is used by steps"),
    (base_chain("c", {"udp": True}, [{"name": "a", "blackbox": "ids9"}]), "a", "blackbox", "does not have"),
    (base_chain("c", {"udp": True}, [{"name": "a", "blackbox": "bb1"}, {"name": "b", "blackbox": "bb1"}]), "b", "blackbox",
     "is already step a"),
    (base_chain("c", {"udp": True}, [{"name": "a", "type": "wire", "kind": "kernel", "instances": 0}]), "a", "instances", "1 to"),
    (base_chain("c", {"udp": True}, frm="nowhere"), None, "frm", "unknown key"),
])
def test_bad_chains_name_chain_step_and_field(chain, step, field, words):
    with pytest.raises(ChainError) as err:
        validate([chain], switches=SWITCHES, blackboxes=BOXES)
    assert (err.value.chain, err.value.step, err.value.field) == ("c", step, field), str(err.value)
    assert words in str(err.value)


def test_every_chain_and_step_with_a_problem_is_reported_at_once():
    """The first problem of each step and of each chain, one line each (a user met them one run at a time)."""
    web = base_chain("web", {"udp": True}, [{"name": "fw", "type": "firewal", "kind": "kernel"},
                                            {"name": "mon", "type": "monitr", "kind": "kernel"},
                                            {"name": "ok", "type": "wire", "kind": "kernel"}])
    web["form"] = "source"                       # a chain-level mistake as well
    dns = base_chain("dns", {"udp": True}, [{"name": "a", "type": "wire", "kind": "kernel", "instances": 0}])
    dns["cookie"] = "0xnothex"
    good = base_chain("good", {"tcp": True})
    with pytest.raises(ChainError) as err:
        validate([web, dns, good], switches=SWITCHES, blackboxes=BOXES)
    text = str(err.value)
    assert text.startswith("5 problems in the chains:\n"), text
    lines = text.splitlines()[1:]
    assert lines[0].startswith("chain 'web': form: unknown key (did you mean 'from'?)"), lines
    assert lines[1].startswith("chain 'web': step 'fw': type: unknown type 'firewal'"), lines
    assert lines[2].startswith("chain 'web': step 'mon': type: unknown type 'monitr'"), lines
    assert lines[3].startswith("chain 'dns': cookie: must be a 64-bit cookie"), lines
    assert lines[4] == ("chain 'dns': step 'a': instances: must be a whole number from 1 to 256 (a step's flows hash into 256 slots, "
                        "each instance owns some), got 0")
    assert (err.value.chain, err.value.step, err.value.field) == ("web", None, "form")   # the first, for callers that take one


# ------------------------------------------------------------------------------------------
# trials: a candidate on a slice of a step's flows
# ------------------------------------------------------------------------------------------
def trial_chain(percent=10, instances=2, trial=True):
    mon = {"name": "mon", "type": "monitor", "kind": "kernel", "instances": instances}
    if trial:
        mon["trial"] = {"type": "monitor", "kind": "process", "percent": percent}
    return validate([base_chain("web", {"udp": True, "nw_src": SRC, "nw_dst": DST}, [
        {"name": "fw", "type": "firewall", "kind": "kernel"}, mon,
        {"name": "shape", "type": "shaper", "kind": "kernel", "params": {"rate": "10mbit"}}])], switches=SWITCHES)[0]


def crossed(chain, placement, wires, ports, step="mon"):
    compiled = compile_chain(chain, placement, UPLINKS)
    out = {}
    for sport in ports:
        for forward in (True, False):
            _out, visited, _p = traverse(compiled, wires, packet(sport, 8000, forward=forward))
            (inst,) = [v.split("/")[1] for v in visited if v.split("/")[0].split("~")[0] == step]
            assert out.setdefault(sport, inst) == inst, "the two directions of a flow met different instances"
    return out


@pytest.mark.parametrize("percent, slots", [(10, 26), (50, 128), (1, 3)])
def test_a_trial_takes_whole_flows_of_its_share_and_leaves_the_rest_where_they_were(percent, slots):
    with_trial = trial_chain(percent)
    (candidate,) = [s for s in with_trial["steps"] if s.get("trial_of")]
    assert (candidate["name"], candidate["kind"], candidate["index"], with_trial["steps"][1]["trial"]) == (
        "mon~trial", "process", 3, {"step": "mon~trial", "percent": float(percent)})
    placement, wires = place(with_trial, 1)
    ports = range(20000, 22000)
    during = crossed(with_trial, placement, wires, ports)
    new = instance_id("web", 3, 0)
    share = sum(1 for inst in during.values() if inst == new) / float(len(ports))
    assert abs(share - slots / float(SLOTS)) < 0.03, share
    # the flows the trial did not take are exactly where they are without it; ending the trial
    # (rollback) gives the candidate's flows back to the instances that had them
    without = trial_chain(trial=False)
    before = crossed(without, {k: v for k, v in placement.items() if k != new}, wires, ports)
    assert all(during[p] == before[p] for p in ports if during[p] != new)
    assert {before[p] for p in ports if during[p] == new} <= {instance_id("web", 1, 0), instance_id("web", 1, 1)}


def test_a_trial_on_a_single_instance_step_and_a_bad_trial_named():
    one = trial_chain(10, instances=1)
    placement, wires = place(one, 0)
    seen = set(crossed(one, placement, wires, range(30000, 30500)).values())
    assert seen == {instance_id("web", 1, 0), instance_id("web", 3, 0)}
    for trial, field, words in (({"type": "monitor", "kind": "process", "percent": 0}, "trial.percent", "must be a number in (0, 100]"),
                                ({"type": "monitor", "kind": "process", "percent": 10, "share": 1}, "trial.share", "unknown key"),
                                ({"type": "nosuch", "kind": "process", "percent": 10}, "trial.type", "")):
        chain = base_chain("web", {"udp": True}, [{"name": "mon", "type": "monitor", "kind": "kernel", "trial": trial}])
        with pytest.raises(ChainError) as err:
            validate([chain], switches=SWITCHES)
        assert (err.value.chain, err.value.step, err.value.field) == ("web", "mon", field) and words in str(err.value), str(err.value)


def test_what_is_inside_a_candidate_when_its_trial_ends_goes_on_to_the_next_step():
    """Rollback: the switch and the host bridges no longer send anything to the candidate, but the
    packets already inside it are taken onward from it (it is an old copy of the step it tried)."""
    with_trial = trial_chain(50)
    placement, wires = place(with_trial, 1)
    cand = instance_id("web", 3, 0)
    rest = {k: v for k, v in placement.items() if k != cand}
    during = compile_chain(trial_chain(trial=False), rest, UPLINKS, draining={cand: placement[cand]})
    host = placement[cand]["host"]
    for forward, leg in ((True, "right"), (False, "left")):
        # a packet that leaves the candidate now: its host bridge, then the switch, take it on
        pkt = dict(packet(20000, 8000, forward=forward), in_port=leg_port(cand, leg))
        outs = run_switch(during["hosts"].get(host, []), pkt) or [("NORMAL", pkt)]
        (port, pkt), = outs
        if port == "NORMAL":
            pkt = dict(pkt, in_port="tr-" + host, vlan=placement[cand]["vlans"][leg])
            out, visited, _passes = traverse(during, wires, pkt)
        else:
            name, out_leg = wires["legs"][(host, port)]
            moved_on = dict(pkt, in_port="tr-" + host, vlan=wires["vlan_of"][(host, out_leg)])
            out, visited, _passes = traverse(during, wires, moved_on)
            visited = [name] + visited
        assert out == UPLINKS["sink" if forward else "source"], (forward, visited)
        assert not any(cand in v for v in visited)
    # without the candidate among the old copies its packets would be dropped at the switch
    bare = compile_chain(trial_chain(trial=False), rest, UPLINKS)
    pkt = dict(packet(20000, 8000), in_port="tr-" + host, vlan=placement[cand]["vlans"]["right"])
    assert run_switch(bare["flows"], pkt) == []


# ------------------------------------------------------------------------------------------
# warm spares: fast-failover groups
# ------------------------------------------------------------------------------------------
def spare_chain(spare="warm", instances=2):
    return validate([base_chain("web", {"udp": True, "nw_src": SRC, "nw_dst": DST}, [
        {"name": "fw", "type": "firewall", "kind": "kernel"},
        {"name": "mon", "type": "monitor", "kind": "kernel", "instances": instances, "spare": spare},
        {"name": "shape", "type": "shaper", "kind": "kernel", "params": {"rate": "10mbit"}}])], switches=SWITCHES)[0]


def spare_placement(chain, hosts):
    """``hosts``: {step name: [trunk of each instance]} (the warm spare: 'mon~spare')."""
    placement, next_vlan = {}, {t: 100 for t in TRUNKS}
    wires = {"access": {}, "legs": {}, "vlan_of": {}}
    for step in chain["steps"]:
        for n in range(step["instances"]):
            trunk = hosts[step["name"]][n]
            host, left, right = TRUNK_HOST[trunk], next_vlan[trunk], next_vlan[trunk] + 1
            next_vlan[trunk] += 2
            inst = instance_id(chain["name"], step["index"], n)
            placement[inst] = {"step": step["name"], "n": n, "host": host, "trunk": trunk, "vlans": {"left": left, "right": right}}
            lport, rport = leg_port(inst, "left"), leg_port(inst, "right")
            name = "%s/%s" % (step["name"], inst)
            wires["access"].update({(host, left): lport, (host, right): rport})
            wires["legs"].update({(host, lport): (name, rport), (host, rport): (name, lport)})
            wires["vlan_of"].update({(host, lport): left, (host, rport): right})
    return placement, wires


def mon_of(compiled, wires, ports, dead=()):
    """{source port: the mon instance (or spare) the flow crosses}, both directions checked."""
    out = {}
    for sport in ports:
        for forward in (True, False):
            exit_port, visited, _p = traverse(compiled, wires, packet(sport, 8000, forward=forward), dead=dead)
            assert exit_port == UPLINKS["sink" if forward else "source"]
            steps = [v.split("/")[0].split("~")[0] for v in visited]
            assert steps == (["fw", "mon", "shape"] if forward else ["shape", "mon", "fw"]), visited
            (inst,) = [v.split("/")[1] for v in visited if v.split("/")[0].split("~")[0] == "mon"]
            assert out.setdefault(sport, inst) == inst, "the two directions of a flow met different instances"
    return out


@pytest.mark.parametrize("layout", [
    # fw, mon a, mon b, shape on hosts of their own; the spare on mh4
    {"fw": ["tr-mh1"], "mon": ["tr-mh2", "tr-mh3"], "shape": ["tr-mh1"], "mon~spare": ["tr-mh4"]},
    # the spare on the host of the steps before and after it: what fails over to it comes back
    # out of the trunk it arrived on (the ingress port is cleared first, or the switch drops it)
    {"fw": ["tr-mh4"], "mon": ["tr-mh2", "tr-mh3"], "shape": ["tr-mh4"], "mon~spare": ["tr-mh4"]},
])
def test_a_warm_spare_takes_exactly_the_flows_of_an_instance_whose_trunk_died(layout):
    chain = spare_chain()
    (standby,) = [s for s in chain["steps"] if s.get("spare_of")]
    assert (standby["name"], standby["index"], standby["kind"], standby["instances"], chain["steps"][1]["spare"]) == (
        "mon~spare", 3, "kernel", 1, {"step": "mon~spare"})
    placement, wires = spare_placement(chain, layout)
    compiled = compile_chain(chain, placement, UPLINKS)
    a, b, spare = instance_id("web", 1, 0), instance_id("web", 1, 1), instance_id("web", 3, 0)
    # one fast-failover group per instance and leg: the instance's trunk first, then the spare's
    assert len(compiled["groups"]) == 4 and all(g["type"] == "fast_failover" and len(g["buckets"]) == 2 for g in compiled["groups"])
    assert all(_compiler.GROUP_ID_RANGE[0] <= g["group_id"] <= _compiler.GROUP_ID_RANGE[1] for g in compiled["groups"])
    ports = range(20000, 20400)
    alive = mon_of(compiled, wires, ports)
    # all alive: the flows meet the step's instances exactly as without a spare
    without, wires_without = spare_placement(spare_chain("none"), {k: v for k, v in layout.items() if k != "mon~spare"})
    assert alive == mon_of(compile_chain(spare_chain("none"), without, UPLINKS), wires_without, ports)
    assert set(alive.values()) == {a, b}
    # a's host trunk dead: a's flows - both directions - cross the spare, b's stay with b
    failed = mon_of(compiled, wires, ports, dead={layout["mon"][0]})
    assert all(failed[p] == (spare if alive[p] == a else b) for p in ports)
    # both dead: everything crosses the spare
    assert set(mon_of(compiled, wires, ports, dead=set(layout["mon"])).values()) == {spare}


def test_a_warm_spare_is_named_in_errors_and_shown_in_the_path():
    for step, field, words in (({"name": "mon", "type": "monitor", "kind": "kernel", "spare": "hot"}, "spare", "must be warm"),
                               ({"name": "mon", "blackbox": "bb1", "spare": "warm"}, "spare", "black box has no warm spare")):
        with pytest.raises(ChainError) as err:
            validate([base_chain("web", {"udp": True}, [step])], switches=SWITCHES, blackboxes=BOXES)
        assert (err.value.chain, err.value.step, err.value.field) == ("web", "mon", field) and words in str(err.value), str(err.value)
    chain = spare_chain()
    placement, _wires = spare_placement(chain, {"fw": ["tr-mh1"], "mon": ["tr-mh2", "tr-mh3"], "shape": ["tr-mh1"],
                                                "mon~spare": ["tr-mh4"]})
    path = compile_chain(chain, placement, UPLINKS)["path"]
    assert path[1]["spare"] == {"step": "mon~spare"} and path[3]["spare_of"] == "mon" and path[3]["instances"] == [instance_id("web", 3, 0)]
    # spare: none (or no spare key) is a chain without groups
    none = spare_chain("none")
    assert not any(s.get("spare_of") for s in none["steps"])
