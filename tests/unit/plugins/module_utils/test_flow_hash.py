# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The symmetric HRW load-balancing helper: pure properties of the slot assignment and flows.

Symmetry (both directions of a 5-tuple reach the same member) is a property of Open vSwitch's
multipath hash and is proven against a real switch in tests/integration/openflow/test_lb.py;
here: stability (only a removed member's slots move; an added member only takes slots),
balance, determinism and the exact flows.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _flow_hash as fh

names = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8),
                 min_size=2, max_size=12, unique=True)


@settings(max_examples=200, deadline=None)
@given(members=names, data=st.data())
def test_removing_a_member_moves_only_its_slots(members, data):
    gone = data.draw(st.sampled_from(members))
    before = fh.slot_owners(members, 128)
    after = fh.slot_owners([m for m in members if m != gone], 128)
    for slot in fh.moved_slots(before, after):
        assert before[slot] == gone
    assert gone not in after
    assert all(after[s] == before[s] for s in range(128) if before[s] != gone)


@settings(max_examples=200, deadline=None)
@given(members=names, new=st.text(alphabet="ABCDEFGH", min_size=1, max_size=4))
def test_adding_a_member_only_takes_slots(members, new):
    before = fh.slot_owners(members, 128)
    after = fh.slot_owners(members + [new], 128)
    for slot in fh.moved_slots(before, after):
        assert after[slot] == new


@settings(max_examples=100, deadline=None)
@given(members=names, data=st.data())
def test_assignment_depends_on_the_set_not_the_order(members, data):
    shuffled = data.draw(st.permutations(members))
    assert fh.slot_owners(members, 64, seed="s") == fh.slot_owners(shuffled, 64, seed="s")


def test_balance_with_256_slots():
    for n in (2, 3, 4, 8):
        counts = fh.share(fh.slot_owners(["m%d" % i for i in range(n)], 256))
        assert len(counts) == n
        ideal = 256 / n
        assert max(counts.values()) <= ideal * 1.5 and min(counts.values()) >= ideal * 0.5, counts


def test_seed_changes_the_assignment():
    assert fh.slot_owners(["a", "b", "c"], 64, seed="x") != fh.slot_owners(["a", "b", "c"], 64, seed="y")


def test_scores_and_assignment_are_pinned():
    # Literal values: a change of hash function or tie-break would silently move every
    # connection of every step on upgrade, so it must show up as a failing test.
    assert fh.hrw_score(3, "ids1", "chain-web") == 0x0E9FEFCB2368CB01
    assert fh.slot_owners(["a", "b", "c"], 8) == ["c", "a", "c", "c", "b", "c", "b", "a"]


@pytest.mark.parametrize("members,slots,msg", [
    ([], 8, "at least one member"), (["a", "a"], 8, "distinct"), (["a"], 0, "slots must be"),
    (["a"], 70000, "slots must be")])
def test_slot_owners_rejects(members, slots, msg):
    with pytest.raises(ValueError, match=msg):
        fh.slot_owners(members, slots)


def test_symmetric_lb_flows_exact():
    flows = fh.symmetric_lb_flows({"ids1": "output:3", "ids2": ["push_vlan:0x8100", "output:4"]},
                                  match="tcp,in_port=1", table=0, dispatch_table=5, priority=200, slots=4)
    assert flows[0] == {"table": 0, "priority": 200, "match": "tcp,in_port=1",
                        "actions": "multipath(symmetric_l3l4+udp,0,modulo_n,4,0,NXM_NX_REG0[0..1]),goto_table:5"}
    owners = fh.slot_owners(["ids1", "ids2"], 4)
    acts = {"ids1": "output:3", "ids2": "push_vlan:0x8100,output:4"}
    assert flows[1:] == [{"table": 5, "priority": 200, "match": "tcp,in_port=1,reg0=0x%x/0x3" % s,
                          "actions": acts[owners[s]]} for s in range(4)]


def test_symmetric_lb_flows_deterministic_and_sized():
    args = dict(members={"a": "output:1", "b": "output:2", "c": "output:3"}, match="ip", table=1,
                dispatch_table=2, register=3, basis=7)
    flows = fh.symmetric_lb_flows(**args)
    assert flows == fh.symmetric_lb_flows(**args)
    assert len(flows) == 1 + 256
    assert flows[0]["actions"] == "multipath(symmetric_l3l4+udp,7,modulo_n,256,0,NXM_NX_REG3[0..7]),goto_table:2"
    assert flows[-1]["match"] == "ip,reg3=0xff/0xff"


@pytest.mark.parametrize("kw,msg", [
    (dict(table=3, dispatch_table=3), "must come after"),
    (dict(fields="nw_src"), "symmetric multipath hash"),
    (dict(register=16), "register must be"),
    (dict(match="ip,actions=drop"), "must not contain actions"),
])
def test_symmetric_lb_flows_rejects(kw, msg):
    args = dict(members={"a": "output:1"}, match="ip", table=0, dispatch_table=1)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        fh.symmetric_lb_flows(**args)


def test_members_must_be_a_mapping():
    with pytest.raises(ValueError, match="non-empty mapping"):
        fh.symmetric_lb_flows(["a"], "ip", 0, 1)


# trials: a slice of a step's flows to candidates (issue: trials on a slice of live traffic)

@pytest.mark.parametrize("percent, count", [(1, 1), (10, 6), (12.5, 8), (50, 32), (100, 64), (0.1, 1)])
def test_a_trial_takes_the_nearest_whole_number_of_slots(percent, count):
    assert len(fh.trial_slots(percent, 64, seed="web/mon")) == count


def test_a_larger_trial_takes_every_slot_of_a_smaller_one():
    steps = [fh.trial_slots(p, 64, seed="web/mon") for p in (1, 10, 25, 50, 100)]
    for small, large in zip(steps, steps[1:]):
        assert set(small) < set(large)


@pytest.mark.parametrize("percent", [0, -5, 100.5, "ten", None])
def test_a_trial_percent_outside_0_100_is_refused(percent):
    with pytest.raises(ValueError, match="percent must be"):
        fh.trial_slots(percent, 64)


def test_a_trial_leaves_every_other_slot_with_its_incumbent_and_rollback_restores_them():
    incumbents = ["weba", "webb"]
    before = fh.slot_owners(incumbents, 64, seed="web/mon")
    during = fh.trial_owners(incumbents, ["webc"], 10, 64, seed="web/mon")
    taken = fh.trial_slots(10, 64, seed="web/mon")
    assert fh.moved_slots(before, during) == [s for s in taken if before[s] != "webc"] == taken
    assert {during[s] for s in taken} == {"webc"}
    assert fh.share(during)["webc"] == 6
    # two candidates share the slice by rendezvous hashing; the incumbents' slots do not move
    two = fh.trial_owners(incumbents, ["webc", "webd"], 10, 64, seed="web/mon")
    assert set(fh.moved_slots(during, two)) <= set(taken) and {two[s] for s in taken} <= {"webc", "webd"}
    with pytest.raises(ValueError, match="candidate cannot be an incumbent"):
        fh.trial_owners(incumbents, ["weba"], 10, 64)
    with pytest.raises(ValueError, match="at least one candidate"):
        fh.trial_owners(incumbents, [], 10, 64)


def test_lb_flows_follow_given_owners():
    owners = fh.trial_owners(["a", "b"], ["c"], 50, 8, seed="s")
    flows = fh.symmetric_lb_flows({"a": "output:1", "b": "output:2", "c": "output:3"}, "ip", 0, 1, slots=8, seed="s", owners=owners)
    assert [f["actions"] for f in flows[1:]] == ["output:%d" % " abc".index(o) for o in owners]
    with pytest.raises(ValueError, match="owners must name a member"):
        fh.symmetric_lb_flows({"a": "output:1"}, "ip", 0, 1, slots=8, owners=owners)
