# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""want/have -> difference -> bundle, against an in-memory switch.

The fake switch canonicalises trivially (it keeps the text as written); Open vSwitch's real
canonicalisation is proven against ovs-ofctl and a real switch in tests/integration/openflow.
The fake applies a bundle all-or-nothing and rejects a flow that names a missing group, as OVS
does, so ordering and atomicity of what the planner sends are checked here too.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _openflow as of
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    FlowEntry,
    GroupEntry,
    OfctlError,
    Port,
)

COOKIE = 0xF5000000000000A1
OTHER = 0xF5000000000000B2
FULL = (1 << 64) - 1


def fake_parse(text):
    """A deliberately dumb canonicaliser: table/priority/timeouts/flags pulled out, rest kept."""
    head, sep, actions = text.partition("actions=")
    f = FlowEntry(actions=actions or "drop")
    match = []
    flags = []
    for tok in [t for t in head.split(",") if t]:
        name, eq, val = tok.partition("=")
        if name in ("table", "priority", "idle_timeout", "hard_timeout", "importance") and eq:
            setattr(f, name, int(val))
        elif name in ("send_flow_rem", "no_packet_counts", "no_byte_counts", "check_overlap", "reset_counts"):
            flags.append(name)
        else:
            match.append(tok)
    f.match = ",".join(match)
    f.flags = tuple(sorted(flags))
    return f


class FakeSwitch:
    version = "OpenFlow14"
    target = "fake-br"

    def __init__(self, flows=(), groups=(), ports=()):
        self.flows = {}
        for cookie, text in flows:
            f = fake_parse(text)
            f.cookie = cookie
            self.flows[f.key] = f
        self.groups = dict((g.group_id, g) for g in groups)
        self.ports = list(ports)
        self.bundles = []
        self.dumps = []
        self.openflow15_only = {}   # group id -> selection_method/fields an OpenFlow 1.4 reply leaves out

    # reads
    def dump_flows(self, cookie=None, cookie_mask=None, table=None):
        self.dumps.append((cookie, cookie_mask))
        out = []
        for f in self.flows.values():
            if cookie is None or (f.cookie & cookie_mask) == (cookie & cookie_mask):
                out.append(copy.copy(f))
        return out

    def dump_groups(self):
        return list(self.groups.values())

    def dump_groups_seen_fully(self):
        groups = self.dump_groups()
        for g in groups:
            g.openflow15_only = self.openflow15_only.get(g.group_id)
        return groups

    def dump_ports(self):
        return self.ports

    def parse_flows(self, lines):
        out = []
        for i, line in enumerate(lines):
            if "BAD" in line:
                raise OfctlError("unknown keyword BAD", kind="parse", line=i + 1)
            out.append(fake_parse(line))
        return out

    def parse_group(self, text):
        if "BAD" in text:
            raise OfctlError("unknown action BAD", kind="parse")
        if "type=" not in text:
            raise OfctlError("must specify a type", kind="parse")   # as ovs-ofctl parse-group
        gid = int(text.split(",")[0].split("=")[1])
        return GroupEntry(gid, text)

    def refresh_datapath(self):
        self.refreshed = getattr(self, "refreshed", 0) + 1
        return "purged"

    # writes (all or nothing)
    def bundle(self, lines):
        self.bundles.append(list(lines))
        flows = dict((k, copy.copy(v)) for k, v in self.flows.items())
        groups = dict(self.groups)
        for line in lines:
            kind, rest = line.split(" ", 1)
            if kind == "flow":
                self._flow_line(rest, flows, groups)
            else:
                cmd, text = rest.split(" ", 1)
                gid = int(text.split(",")[0].split("=")[1])
                if cmd == "add":
                    if gid in groups:
                        raise OfctlError("rejected", kind="rejected", code="OFPGMFC_GROUP_EXISTS", failed="ADD " + text)
                    groups[gid] = GroupEntry(gid, text)
                elif cmd == "modify":
                    groups[gid] = GroupEntry(gid, text)
                elif cmd == "delete":
                    groups.pop(gid, None)
                    for k in [k for k, f in flows.items() if "group:%d" % gid in f.actions]:
                        del flows[k]
        self.flows, self.groups = flows, groups

    def bundle_flows(self, lines):
        self.bundle(["flow " + line for line in lines])

    def _flow_line(self, rest, flows, groups):
        cmd, text = rest.split(" ", 1)
        if cmd == "delete":  # non-strict, only "cookie=C/M" (every table)
            cookie, mask = [int(x, 16) for x in text.split("=")[1].split("/")]
            for k in [k for k, f in flows.items() if f.cookie & mask == cookie & mask]:
                del flows[k]
            return
        if cmd == "delete_strict":
            flows.pop(fake_parse(text + ",actions=drop").key, None)
            return
        cookie = None
        if text.startswith("cookie="):
            cookie_tok, text = text.split(",", 1)
            cookie = int(cookie_tok.split("=")[1], 16)
        f = fake_parse(text)
        for ref in of.group_refs(f.actions):
            if ref not in groups:
                raise OfctlError("rejected", kind="rejected", code="OFPBAC_BAD_OUT_GROUP",
                                 failed="ADD priority=%d%s cookie:0x%x actions=%s"
                                 % (f.priority, "," + f.match if f.match else "", cookie or 0, f.actions))
        if cmd == "modify_strict":
            if f.key in flows:
                flows[f.key].actions = f.actions
            return
        f.cookie = cookie
        flows[f.key] = f

    # helpers for tests
    def texts(self, cookie=None):
        return sorted(f.text() for f in self.flows.values() if cookie is None or f.cookie == cookie)


def run(sw, **kw):
    kw.setdefault("cookie", COOKIE)
    return of.Reconciler(sw, **kw).run()


# -- scalars and ownership -----------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [(5, 5), ("5", 5), ("0x10", 16), ("0XfF", 255), (" 7 ", 7)])
def test_to_int(value, expected):
    assert of.to_int(value, "x") == expected


@pytest.mark.parametrize("value", [True, "abc", "0xzz", -1, 1 << 64, "1.5"])
def test_to_int_rejects(value):
    with pytest.raises(of.OpenFlowError):
        of.to_int(value, "cookie")


def test_cookie_zero_is_refused():
    with pytest.raises(of.OpenFlowError, match="cookie 0 is the cookie of every flow that nobody marked"):
        of.check_ownership(0, None)


def test_mask_zero_is_refused():
    with pytest.raises(of.OpenFlowError, match="cookie_mask 0 would claim every flow"):
        of.check_ownership(5, 0)


def test_cookie_outside_its_mask():
    with pytest.raises(of.OpenFlowError, match="has bits outside cookie_mask"):
        of.check_ownership(0xF500000000000001, 0xFFFF000000000000)


def test_mask_selecting_cookie_zero():
    # cookie bits all outside the mask would already fail; a mask that keeps no set bit of the
    # cookie is the same mistake seen from the other side
    with pytest.raises(of.OpenFlowError):
        of.check_ownership(0x1, 0xFFFF000000000000)


def test_full_mask_default():
    assert of.check_ownership("0xf5000000000000a1", None) == (COOKIE, FULL)


# -- want items ----------------------------------------------------------------------------------

def test_flow_dict_rendering():
    item = {"table": 1, "priority": 5, "match": {"ip": None, "nw_dst": "198.18.0.1"},
            "actions": ["push_vlan:0x8100", "output:1"], "idle_timeout": 10, "flags": ["send_flow_rem"]}
    assert of.flow_item_text(item, 0) == \
        "table=1,priority=5,idle_timeout=10,ip,nw_dst=198.18.0.1,send_flow_rem,actions=push_vlan:0x8100,output:1"


def test_flow_dict_unknown_key():
    with pytest.raises(of.OpenFlowError, match=r"flows\[3\] has unknown key\(s\) prio"):
        of.flow_item_text({"prio": 5, "actions": "drop"}, 3)


@pytest.mark.parametrize("text,msg", [
    ("cookie=0x5,priority=1,actions=drop", "sets a cookie"),
    ("priority=1,ip", "has no actions="),
    ("priority=1,ip,actions=drop\npriority=2,actions=drop", "contains a newline"),
    ("priority=1,ip,actions=drop # comment", "'#'"),
    ("", "is empty"),
])
def test_flow_text_rejections(text, msg):
    with pytest.raises(of.OpenFlowError, match=msg):
        of.flow_item_text(text, 0)


def test_learn_cookie_in_actions_is_not_a_flow_cookie():
    text = "priority=1,ip,actions=learn(table=2,cookie=0x5,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[])"
    assert of.flow_item_text(text, 0) == text


def test_absent_flow_without_actions():
    assert of.flow_item_text("priority=1,ip", 0, need_actions=False) == "priority=1,ip,actions=drop"


def test_group_dict_rendering():
    item = {"group_id": 7, "type": "select", "selection_method": "hash", "fields": ["ip_src", "ip_dst"],
            "buckets": [{"weight": 10, "actions": "output:1"}, {"watch_port": 2, "actions": ["output:2"]}]}
    assert of.group_item_text(item, 0) == ("group_id=7,type=select,selection_method=hash,fields(ip_src,ip_dst),"
                                           "bucket=weight:10,actions=output:1,bucket=watch_port:2,actions=output:2")
    assert of.group_item_text(9, 1) == "group_id=9"
    with pytest.raises(of.OpenFlowError, match=r"groups\[0\].type 'round_robin' is not one of"):
        of.group_item_text({"group_id": 1, "type": "round_robin"}, 0)


# -- port names ----------------------------------------------------------------------------------

PORTS = [Port("1", "web-left"), Port("2", "web-right"), Port("3", "ids"), Port("LOCAL", "br0")]


@pytest.mark.parametrize("text,expected", [
    ("in_port=web-left,actions=output:web-right", "in_port=1,actions=output:2"),
    ('in_port="web-left",actions=output:"web-right"', "in_port=1,actions=output:2"),
    ("in_port=1,actions=web-right,ids", "in_port=1,actions=2,3"),
    ("ip,actions=enqueue:ids:3,resubmit(web-left,2),output(port=ids,max_len=100)",
     "ip,actions=enqueue:3:3,resubmit(1,2),output(port=3,max_len=100)"),
    ("ip,actions=bundle(eth_src,0,hrw,ofport,members:web-left,web-right)",
     "ip,actions=bundle(eth_src,0,hrw,ofport,members:1,2)"),
    # a members: list in brackets, as ovs-ofctl also takes it (numbers and names, the brackets kept)
    ("ip,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:[web-left, web-right])",
     "ip,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:[1,2])"),
    ("ip,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:[1,2])",
     "ip,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:[1,2])"),
    ("ip,actions=output:NXM_NX_REG0[0..15]", "ip,actions=output:NXM_NX_REG0[0..15]"),
    ("in_port=LOCAL,actions=LOCAL,normal", "in_port=LOCAL,actions=LOCAL,normal"),
    ("in_port=br0,actions=clone(output:ids),drop", "in_port=LOCAL,actions=clone(output:3),drop"),
    ("group_id=5,type=ff,bucket=watch_port:ids,actions=output:ids,bucket=watch_port:web-left,output:web-left",
     "group_id=5,type=ff,bucket=watch_port:3,actions=output:3,bucket=watch_port:1,output:1"),
    ("tcp,nw_src=10.0.0.1,actions=output:7", "tcp,nw_src=10.0.0.1,actions=output:7"),
])
def test_port_names_resolve(text, expected):
    assert of.PortNames(PORTS).resolve(text, "flows[0]") == expected


def test_unknown_port_name_lists_the_ports():
    with pytest.raises(of.OpenFlowError, match=r"flows\[4\] names port 'nope', which the switch does not have "
                                               r"\(ports: br0=LOCAL, ids=3, web-left=1, web-right=2\)"):
        of.PortNames(PORTS).resolve("in_port=nope,actions=drop", "flows[4]")


def test_an_unknown_port_in_a_bracketed_members_list_is_named_without_the_bracket():
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] names port 'nope', which the switch does not have"):
        of.PortNames(PORTS).resolve("ip,actions=bundle(eth_src,0,hrw,ofport,members:[nope,web-left])", "flows[0]")
    with pytest.raises(of.OpenFlowError, match=r"names port 'nope'"):
        of.PortNames([]).resolve("ip,actions=bundle(eth_src,0,hrw,ofport,members:[2,nope])", "flows[0]")


def test_needs_port_names():
    assert not of.needs_port_names(["in_port=1,tcp,actions=output:2,LOCAL,normal", "actions=resubmit(,2)",
                                    "actions=output:NXM_NX_REG0[0..3]"])
    assert of.needs_port_names(["in_port=web,actions=drop"])
    assert of.needs_port_names(["actions=web"])
    assert of.needs_port_names(["group_id=1,bucket=watch_port:x,actions=output:1"])


def test_names_resolved_before_canonicalisation():
    sw = FakeSwitch(ports=PORTS)
    r = run(sw, flows=["priority=5,in_port=web-left,actions=output:web-right"])
    assert r["added"] == ["table=0,priority=5,in_port=1,actions=output:2"]
    assert sw.texts() == ["table=0,priority=5,in_port=1,actions=output:2"]


# -- states ----------------------------------------------------------------------------------------

def test_present_adds_only_what_is_missing_and_leaves_other_cookies():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL"),
                           (OTHER, "priority=7,ip,actions=drop")])
    r = run(sw, flows=["priority=5,ip,actions=output:1", "priority=9,tcp,actions=output:2"])
    assert r["changed"] and r["counts"]["flows_added"] == 1 and r["counts"]["flows_unchanged"] == 1
    assert r["counts"]["flows_removed"] == 0
    assert sw.bundles == [["flow add cookie=0x%x,priority=9,tcp,actions=output:2" % COOKIE]]
    assert "table=0,priority=6,arp,actions=NORMAL" in sw.texts(COOKIE)
    assert sw.texts(OTHER) == ["table=0,priority=7,ip,actions=drop"]
    assert run(sw, flows=["priority=5,ip,actions=output:1", "priority=9,tcp,actions=output:2"])["changed"] is False


def test_replaced_exactly_these_flows_never_other_cookies():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL"),
                           (OTHER, "priority=7,arp,actions=drop"), (OTHER, "priority=8,ip,actions=drop")])
    want = ["priority=5,ip,actions=output:1", "priority=9,tcp,actions=output:2"]
    r = run(sw, state="replaced", flows=want)
    assert r["removed"] == ["table=0,priority=6,arp,actions=NORMAL"]
    assert sw.texts(COOKIE) == ["table=0,priority=5,ip,actions=output:1", "table=0,priority=9,tcp,actions=output:2"]
    assert sw.texts(OTHER) == ["table=0,priority=7,arp,actions=drop", "table=0,priority=8,ip,actions=drop"]
    assert "flow delete_strict table=0,priority=6,arp" in sw.bundles[0]
    again = run(sw, state="replaced", flows=want)
    assert again["changed"] is False and len(sw.bundles) == 1


def test_replaced_with_no_flows_empties_the_cookie():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (OTHER, "priority=8,ip,actions=drop")])
    r = run(sw, state="replaced", flows=[])
    assert r["counts"]["flows_removed"] == 1 and sw.texts(COOKIE) == [] and sw.texts(OTHER)


def test_absent_listed_by_key_actions_optional():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL")])
    r = run(sw, state="absent", flows=["priority=5,ip", "priority=77,udp"])
    assert r["removed"] == ["table=0,priority=5,ip,actions=output:1"]
    assert r["counts"] == dict(r["counts"], flows_removed=1, flows_unchanged=1)
    assert sw.texts(COOKIE) == ["table=0,priority=6,arp,actions=NORMAL"]
    assert run(sw, state="absent", flows=["priority=5,ip"])["changed"] is False


def test_absent_everything_of_the_cookie():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL"),
                           (OTHER, "priority=8,ip,actions=drop")])
    r = run(sw, state="absent")
    assert r["counts"]["flows_removed"] == 2 and sw.texts(COOKIE) == [] and len(sw.texts(OTHER)) == 1
    # one non-strict delete of the cookie, not one strict delete per flow
    assert sw.bundles == [["flow delete cookie=0x%x/0x%x" % (COOKIE, FULL)]]


def test_absent_with_mask_removes_a_cookie_range():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (OTHER, "priority=8,ip,actions=drop"),
                           (0x77, "priority=9,ip,actions=drop")])
    r = run(sw, cookie=0xF500000000000000, cookie_mask=0xFFFF000000000000, state="absent")
    assert r["counts"]["flows_removed"] == 2
    assert [f.cookie for f in sw.flows.values()] == [0x77]
    assert r["removed"][0].startswith("cookie=0xf5")


def test_mask_overlapping_another_cookie_is_refused_for_present():
    sw = FakeSwitch(flows=[(OTHER, "priority=8,ip,actions=drop")])
    with pytest.raises(of.OpenFlowError, match="overlaps flows of other cookie"):
        run(sw, cookie=0xF500000000000000, cookie_mask=0xFFFF000000000000, state="replaced", flows=[])
    assert sw.bundles == []


def test_actions_change_is_modify_strict_timeouts_change_is_readd():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL")])
    r = run(sw, flows=["priority=5,ip,actions=output:2", "priority=6,arp,idle_timeout=30,actions=NORMAL"])
    assert r["counts"]["flows_modified"] == 2
    assert sw.bundles[0] == [
        "flow modify_strict table=0,priority=5,ip,actions=output:2",
        "flow add cookie=0x%x,priority=6,arp,idle_timeout=30,actions=NORMAL" % COOKIE]
    assert r["modified"] == [  # sorted like a dump: table, then descending priority
        {"before": "table=0,priority=6,arp,actions=NORMAL", "after": "table=0,priority=6,arp,idle_timeout=30,actions=NORMAL"},
        {"before": "table=0,priority=5,ip,actions=output:1", "after": "table=0,priority=5,ip,actions=output:2"}]


def test_adding_over_another_owners_flow_is_refused():
    sw = FakeSwitch(flows=[(OTHER, "priority=5,ip,actions=drop")])
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] .* same table, priority and match as a flow of cookie "
                                               r"0xf5000000000000b2"):
        run(sw, flows=["priority=5,ip,actions=output:1"])
    assert sw.bundles == [] and sw.texts(OTHER) == ["table=0,priority=5,ip,actions=drop"]


def test_conflicting_duplicates_are_refused_identical_ones_merge():
    sw = FakeSwitch()
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] .* and flows\[1\] .* are the same flow"):
        run(sw, flows=["priority=5,ip,actions=output:1", "priority=5,ip,actions=output:2"])
    r = run(sw, flows=["priority=5,ip,actions=output:1", "priority=5,ip,actions=output:1"])
    assert r["counts"]["flows_added"] == 1


def test_parse_error_names_the_flow():
    sw = FakeSwitch()
    with pytest.raises(of.OpenFlowError, match=r"^flows\[1\] \('priority=5,BAD,actions=drop'\): unknown keyword BAD"):
        run(sw, flows=["priority=4,ip,actions=drop", "priority=5,BAD,actions=drop"])


def test_reset_counts_flag_is_refused():
    with pytest.raises(of.OpenFlowError, match="reset_counts apply to one flow_mod"):
        run(FakeSwitch(), flows=["priority=4,ip,reset_counts,actions=drop"])


def test_check_mode_changes_nothing():
    sw = FakeSwitch(flows=[(COOKIE, "priority=6,arp,actions=NORMAL")])
    r = run(sw, state="replaced", flows=["priority=5,ip,actions=output:1"], check_mode=True)
    assert r["changed"] and r["counts"]["flows_added"] == 1 and r["counts"]["flows_removed"] == 1
    assert sw.bundles == [] and sw.texts(COOKIE) == ["table=0,priority=6,arp,actions=NORMAL"]
    assert "apply" not in r["timings"]


def test_diff_is_sorted_text():
    sw = FakeSwitch(flows=[(COOKIE, "table=1,priority=6,arp,actions=NORMAL"), (COOKIE, "priority=1,ip,actions=drop")])
    r = run(sw, state="replaced", diff=True, check_mode=True,
            flows=["priority=1,ip,actions=drop", "priority=90,tcp,actions=output:1"])
    assert r["diff"]["before"] == "table=0,priority=1,ip,actions=drop\ntable=1,priority=6,arp,actions=NORMAL\n"
    assert r["diff"]["after"] == "table=0,priority=90,tcp,actions=output:1\ntable=0,priority=1,ip,actions=drop\n"


def test_report_limit_truncates_lists_not_counts():
    sw = FakeSwitch()
    flows = ["priority=%d,ip,actions=drop" % p for p in range(1, 30)]
    r = run(sw, flows=flows, report_limit=5)
    assert len(r["added"]) == 5 and r["truncated"] and r["counts"]["flows_added"] == 29
    r = run(FakeSwitch(), flows=flows, report_limit=-1)
    assert len(r["added"]) == 29 and not r["truncated"]


def test_flows_only_use_the_flow_bundle():
    sw = FakeSwitch()
    calls = []
    sw.bundle_flows = calls.append
    run(sw, flows=["priority=1,actions=drop"])
    assert calls == [["add cookie=0x%x,priority=1,actions=drop" % COOKIE]]


# -- groups ----------------------------------------------------------------------------------------

def test_flow_naming_an_undefined_group_fails_before_sending():
    sw = FakeSwitch()
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] .* names group 42, which neither this task nor the switch"):
        run(sw, flows=["priority=1,ip,actions=group:42"])
    assert sw.bundles == []


def test_group_and_flow_in_one_bundle_group_first():
    sw = FakeSwitch()
    r = run(sw, groups=["group_id=10,type=all,bucket=output:1"], flows=["priority=1,ip,actions=group:10"])
    assert sw.bundles == [["group add group_id=10,type=all,bucket=output:1",
                           "flow add cookie=0x%x,priority=1,ip,actions=group:10" % COOKIE]]
    assert r["groups_added"] == ["group_id=10,type=all,bucket=output:1"]
    assert run(sw, groups=["group_id=10,type=all,bucket=output:1"],
               flows=["priority=1,ip,actions=group:10"])["changed"] is False


def test_replaced_removes_flow_before_its_group():
    sw = FakeSwitch(flows=[(COOKIE, "priority=1,ip,actions=group:10")],
                    groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1")])
    run(sw, state="replaced", flows=[], groups=[], group_id_range=[10, 19])
    assert sw.bundles == [["flow delete_strict table=0,priority=1,ip", "group delete group_id=10"]]
    assert sw.groups == {} and sw.flows == {}


def test_replaced_groups_need_a_range():
    with pytest.raises(of.OpenFlowError, match="state=replaced with groups needs group_id_range"):
        of.Reconciler(FakeSwitch(), cookie=COOKIE, state="replaced", flows=[], groups=[])


def test_group_outside_range():
    with pytest.raises(of.OpenFlowError, match=r"groups\[0\] .*group_id 5 is outside group_id_range \[10, 19\]"):
        run(FakeSwitch(), groups=["group_id=5,type=all,bucket=output:1"], group_id_range=[10, 19])


def test_group_used_by_another_owner_is_not_deleted():
    sw = FakeSwitch(flows=[(OTHER, "priority=1,ip,actions=group:10")],
                    groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1")])
    with pytest.raises(of.OpenFlowError, match="group 10 cannot be deleted: a flow of cookie 0xf5000000000000b2"):
        run(sw, state="absent", group_id_range=[10, 19])
    assert 10 in sw.groups and sw.bundles == []


def test_group_still_used_by_our_flow_is_not_deleted():
    sw = FakeSwitch(flows=[(COOKIE, "priority=1,ip,actions=group:10")],
                    groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1")])
    with pytest.raises(of.OpenFlowError, match="uses group 10, which this task would delete"):
        run(sw, state="replaced", flows=["priority=1,ip,actions=group:10"], groups=[], group_id_range=[10, 19])


def test_chained_groups_added_in_dependency_order():
    sw = FakeSwitch()
    run(sw, groups=["group_id=1,type=indirect,bucket=actions=group:2", "group_id=2,type=all,bucket=output:1"])
    assert sw.bundles[0] == ["group add group_id=2,type=all,bucket=output:1",
                             "group add group_id=1,type=indirect,bucket=actions=group:2"]


def test_group_modify():
    sw = FakeSwitch(groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1")])
    r = run(sw, groups=["group_id=10,type=all,bucket=output:2"])
    assert sw.bundles == [["group modify group_id=10,type=all,bucket=output:2"]]
    assert r["groups_modified"] == [{"before": "group_id=10,type=all,bucket=output:1",
                                     "after": "group_id=10,type=all,bucket=output:2"}]


@pytest.mark.parametrize("item", [10, {"group_id": 10}, "group_id=10", " group_id = 10 "])
def test_absent_group_by_id_alone(item):
    sw = FakeSwitch(groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1"),
                            GroupEntry(11, "group_id=11,type=all,bucket=output:1")])
    r = run(sw, state="absent", groups=[item])
    assert sw.bundles == [["group delete group_id=10"]] and list(sw.groups) == [11]
    assert r["groups_removed"] == ["group_id=10,type=all,bucket=output:1"]
    assert run(sw, state="absent", groups=[item])["changed"] is False


def test_absent_group_id_above_the_largest_is_refused():
    with pytest.raises(of.OpenFlowError, match=r"groups\[0\] .*: group_id 4294967041 is above the largest OpenFlow group id"):
        run(FakeSwitch(), state="absent", groups=[0xffffff01])


def test_present_group_without_type_is_a_parse_error_naming_it():
    with pytest.raises(of.OpenFlowError, match=r"groups\[0\].*must specify a type"):
        run(FakeSwitch(), groups=["group_id=10,bucket=output:1"])


def test_openflow15_only_properties_on_the_switch_are_drift():
    """A group the switch hashes by selection_method/fields (invisible over OpenFlow 1.4) differs
    from the listed group: reported with what the switch holds, and written again (which clears them)."""
    text = "group_id=10,type=select,bucket=output:1,bucket=output:2"
    sw = FakeSwitch(groups=[GroupEntry(10, text)])
    sw.openflow15_only[10] = "selection_method=hash,fields(ip_src)"
    r = run(sw, groups=[text], check_mode=True, diff=True)
    assert r["changed"] is True and sw.bundles == []
    before = "group_id=10,type=select,selection_method=hash,fields(ip_src),bucket=output:1,bucket=output:2"
    assert r["groups_modified"] == [{"before": before, "after": text}]
    assert "group %s\n" % before in r["diff"]["before"] and "group %s\n" % text in r["diff"]["after"]
    run(sw, groups=[text])
    assert sw.bundles == [["group modify %s" % text]]
    sw.openflow15_only = {}    # what the switch then reports over OpenFlow 1.5
    assert run(sw, groups=[text])["changed"] is False


def test_selection_method_needs_openflow15():
    with pytest.raises(of.OpenFlowError, match=r"OpenFlow 1.4 cannot carry .*set openflow_version: OpenFlow15"):
        run(FakeSwitch(), groups=[{"group_id": 1, "type": "select", "selection_method": "hash",
                                   "fields": ["ip_src"], "buckets": [{"actions": "output:1"}]}])


def test_rejected_flow_is_named_and_nothing_changes():
    sw = FakeSwitch(flows=[(COOKIE, "priority=1,arp,actions=NORMAL")])
    sw.groups = {}
    # Make the pre-check pass (the switch claims group 9 exists) but the bundle fail on it,
    # as when the group vanishes between the read and the bundle.
    sw.dump_groups = lambda: [GroupEntry(9, "group_id=9,type=all,bucket=output:1")]
    with pytest.raises(of.OpenFlowError) as info:
        run(sw, state="replaced", flows=["priority=%d,ip,actions=output:1" % p for p in range(2, 10)]
            + ["priority=50,ip,actions=group:9"])
    assert str(info.value).startswith("the switch rejected flows[8] ('priority=50,ip,actions=group:9'): "
                                      "OFPBAC_BAD_OUT_GROUP")
    assert "Nothing was changed" in str(info.value)
    assert sw.texts(COOKIE) == ["table=0,priority=1,arp,actions=NORMAL"]


def test_openflow13_has_no_bundles():
    sw = FakeSwitch()
    sw.version = "OpenFlow13"
    with pytest.raises(of.OpenFlowError, match="has no bundles"):
        of.Reconciler(sw, cookie=COOKIE)


# -- a property: replaced converges in one run and never touches other cookies ---------------------

flow_st = st.builds(lambda t, p, port, out: "table=%d,priority=%d,in_port=%d,actions=output:%d" % (t, p, port, out),
                    st.integers(0, 2), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4))


@settings(max_examples=150, deadline=None)
@given(before=st.lists(flow_st, max_size=12), others=st.lists(flow_st, max_size=6), want=st.lists(flow_st, max_size=12))
def test_replaced_converges_and_spares_other_cookies(before, others, want):
    sw = FakeSwitch()
    for text in others:
        f = fake_parse(text)
        f.cookie = OTHER
        sw.flows[f.key] = f
    for text in before:
        f = fake_parse(text)
        if f.key not in sw.flows:
            f.cookie = COOKIE
            sw.flows[f.key] = f
    other_before = sw.texts(OTHER)
    want_keys = {}
    for text in want:
        want_keys.setdefault(fake_parse(text).key, text)
    want = list(want_keys.values())
    collides = any(f.key in want_keys and f.cookie == OTHER for f in sw.flows.values())
    try:
        run(sw, state="replaced", flows=want)
    except of.OpenFlowError as exc:
        assert collides, exc
        return
    assert not collides
    assert sw.texts(COOKIE) == sorted(fake_parse(t).text() for t in want)
    assert sw.texts(OTHER) == other_before
    assert run(sw, state="replaced", flows=want)["changed"] is False


def test_parse_error_without_line_number_is_bisected_to_the_flow():
    sw = FakeSwitch()

    def parse(lines):
        if any("dec_ttl" in line for line in lines):
            raise OfctlError("no usable protocol", kind="parse")
        return [fake_parse(line) for line in lines]

    sw.parse_flows = parse
    flows = ["priority=%d,ip,actions=drop" % p for p in range(1, 40)]
    flows[23] = "priority=99,actions=dec_ttl"
    with pytest.raises(of.OpenFlowError, match=r"^flows\[23\] \('priority=99,actions=dec_ttl'\): no usable protocol"):
        run(sw, flows=flows)


@pytest.mark.parametrize("text,suspect", [
    ("in_port=1,actions=output:2", False), ("actions=resubmit(,2),resubmit(3,4)", False),
    ("in_port=LOCAL,actions=output:local,IN_PORT", False), ("actions=output:NXM_NX_REG0[0..15]", False),
    ("actions=output:reg1[0..3]", False), ("actions=enqueue:1:2", False),
    ("in_port=web,actions=drop", True), ('actions=output:"web-left"', True), ("actions=enqueue(web,2)", True),
    ("actions=bundle(eth_src,0,hrw,ofport,members:a,b)", True), ("bucket=watch_port:ids,actions=output:1", True),
    ("actions=output:localhost", True),
])
def test_suspect_port_positions(text, suspect):
    assert of._suspect(text) is suspect


def test_flows_text_like_a_flow_file():
    sw = FakeSwitch()
    text = "# chain web\n\npriority=5,ip,actions=output:1   # to the firewall\n  priority=6,arp,actions=NORMAL\n"
    r = run(sw, flows=["priority=7,tcp,actions=drop"], flows_text=text, state="replaced")
    assert r["counts"]["flows_added"] == 3
    assert sw.texts(COOKIE) == ["table=0,priority=5,ip,actions=output:1", "table=0,priority=6,arp,actions=NORMAL",
                                "table=0,priority=7,tcp,actions=drop"]


def test_flows_text_errors_name_the_line():
    with pytest.raises(of.OpenFlowError, match=r"^flows_text line 4 \('priority=5,BAD,actions=drop'\): unknown keyword BAD"):
        run(FakeSwitch(), flows_text="priority=1,ip,actions=drop\n# x\n\npriority=5,BAD,actions=drop\n")
    with pytest.raises(of.OpenFlowError, match=r"flows_text line 2 .*sets a cookie"):
        run(FakeSwitch(), flows_text="priority=1,ip,actions=drop\ncookie=0x1,priority=2,actions=drop\n")
    with pytest.raises(of.OpenFlowError, match="flows_text line 1 ends in a backslash"):
        run(FakeSwitch(), flows_text="priority=1,ip,\\\n actions=drop\n")


def test_absent_with_flows_text_removes_only_those():
    sw = FakeSwitch(flows=[(COOKIE, "priority=5,ip,actions=output:1"), (COOKIE, "priority=6,arp,actions=NORMAL")])
    r = run(sw, state="absent", flows_text="priority=5,ip\n")
    assert r["counts"]["flows_removed"] == 1 and sw.texts(COOKIE) == ["table=0,priority=6,arp,actions=NORMAL"]


def test_replaced_needs_flows_and_leaves_groups_alone_when_none_listed():
    with pytest.raises(of.OpenFlowError, match="state=replaced needs flows, flows_text or flows_file"):
        of.Reconciler(FakeSwitch(), cookie=COOKIE, state="replaced")
    sw = FakeSwitch(groups=[GroupEntry(10, "group_id=10,type=all,bucket=output:1")])
    r = run(sw, state="replaced", flows=[], group_id_range=[10, 19])
    assert r["changed"] is False and 10 in sw.groups


def test_group_id_alone_only_for_absent():
    with pytest.raises(of.OpenFlowError, match=r"groups\[0\] is only a group id \(9\); state=present needs the whole group"):
        run(FakeSwitch(), groups=[9])
    sw = FakeSwitch(groups=[GroupEntry(9, "group_id=9,type=all,bucket=output:1")])
    r = run(sw, state="absent", groups=[9])
    assert r["counts"]["groups_removed"] == 1 and sw.groups == {}


# -- many owners in one bundle: flow_cookies ----------------------------------------------------------

RANGE = 0xF5C0000000000000
RANGE_MASK = 0xFFFF000000000000
CHAIN_A = 0xF5C000000000A001
CHAIN_B = 0xF5C000000000B002


def chains(sw, **kw):
    kw.setdefault("cookie", RANGE)
    kw.setdefault("cookie_mask", RANGE_MASK)
    kw.setdefault("flow_cookies", True)
    return of.Reconciler(sw, **kw).run()


@pytest.mark.parametrize("item,expected", [
    ("cookie=0xf5c000000000a001,priority=1,ip,actions=drop", ("priority=1,ip,actions=drop", CHAIN_A)),
    ("  cookie=0xF5C000000000A001,actions=drop", ("actions=drop", CHAIN_A)),
    ("priority=1,cookie=0x5,ip,actions=drop", ("priority=1,ip,actions=drop", 5)),
    ("priority=1 cookie:0x5 ip actions=drop", ("priority=1 ip actions=drop", 5)),
    ("cookie(0x5),priority=1,actions=drop", ("priority=1,actions=drop", 5)),
    ("cookie=17,priority=1,actions=drop", ("priority=1,actions=drop", 17)),
    ("priority=1,ip,cookie=0x5,actions=drop", ("priority=1,ip,actions=drop", 5)),
    ("priority=1,ip,actions=drop", ("priority=1,ip,actions=drop", None)),
    ("priority=1,ip,actions=learn(table=2,cookie=0x5,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[])",
     ("priority=1,ip,actions=learn(table=2,cookie=0x5,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[])", None)),
    ({"cookie": CHAIN_B, "priority": 5, "match": "ip", "actions": "drop"}, ("priority=5,ip,actions=drop", CHAIN_B)),
    ({"cookie": "0xf5c000000000b002", "priority": 5, "actions": ["drop"]}, ("priority=5,actions=drop", CHAIN_B)),
    ({"priority": 5, "actions": "drop"}, ("priority=5,actions=drop", None)),
])
def test_flow_item_cookie(item, expected):
    assert of.flow_item_cookie(item, 0) == expected


def test_flow_item_cookie_absent_without_actions():
    assert of.flow_item_cookie("cookie=0x5,priority=1,ip", 2, need_actions=False) == ("priority=1,ip,actions=drop", 5)


@pytest.mark.parametrize("item,msg", [
    ("cookie=0x5/0xff,priority=1,actions=drop", r"flows\[0\] \('cookie=0x5/0xff,priority=1,actions=drop'\) gives its "
                                                r"cookie a mask \(0x5/0xff\); a flow has one cookie"),
    ("cookie=0x5,priority=1,cookie=0x6,actions=drop", r"flows\[0\] .* sets cookie 2 times"),
    ("cookie=0xzz,priority=1,actions=drop", r"flows\[0\] .* cookie: '0xzz' is not an integer"),
    ("cookie=0x10000000000000000,priority=1,actions=drop", r"flows\[0\] .* cookie: 0x10000000000000000 is out of range"),
    ({"cookie": "banana", "actions": "drop"}, r"flows\[0\]\.cookie: 'banana' is not an integer"),
    ({"cookie": True, "actions": "drop"}, r"flows\[0\]\.cookie must be an integer"),
    ({"cookie": 5, "match": "cookie=0x6,ip", "actions": "drop"}, r"flows\[0\] .* sets a cookie"),
])
def test_flow_item_cookie_rejections(item, msg):
    with pytest.raises(of.OpenFlowError, match=msg):
        of.flow_item_cookie(item, 0)


@pytest.mark.parametrize("item", [
    "cookie=0x5,priority=1,actions=drop", "cookie:0x5,priority=1,actions=drop", "cookie(0x5),priority=1,actions=drop",
    "priority=1 cookie=0x5 actions=drop", {"cookie": 5, "actions": "drop"},
])
def test_without_flow_cookies_a_flow_cookie_is_refused_with_the_way_out(item):
    with pytest.raises(of.OpenFlowError, match=r"^flows\[0\] .*sets a cookie.*set flow_cookies: true"):
        of.flow_item_text(item, 0)


def test_flow_cookies_need_a_range():
    with pytest.raises(of.OpenFlowError, match=r"flow_cookies needs a cookie range: under the full cookie_mask"):
        of.Reconciler(FakeSwitch(), cookie=CHAIN_A, flow_cookies=True)


def test_flow_cookie_outside_the_range_fails_before_anything_is_read_or_sent():
    sw = FakeSwitch(flows=[(CHAIN_A, "priority=5,ip,actions=output:1")])
    with pytest.raises(of.OpenFlowError, match=r"^flows\[1\] \('cookie=0xf5000000000000b2,priority=6,ip,actions=drop'\): "
                                               r"cookie=0xf5000000000000b2 lies outside the task's cookie range "
                                               r"0xf5c0000000000000/0xffff000000000000 \(it differs in bits "
                                               r"0xc0000000000000 of cookie_mask\)"):
        chains(sw, state="replaced", flows=["cookie=0x%x,priority=5,ip,actions=output:1" % CHAIN_A,
                                            "cookie=0x%x,priority=6,ip,actions=drop" % OTHER])
    with pytest.raises(of.OpenFlowError, match=r"^flows\[0\] \('cookie=0x77,priority=6,actions=drop'\): cookie: 0x77 "
                                               r"lies outside"):
        chains(sw, flows=[{"cookie": 0x77, "priority": 6, "actions": "drop"}])
    with pytest.raises(of.OpenFlowError, match=r"^flows_text line 3 \(.*\): cookie=0x77 lies outside"):
        chains(sw, flows_text="cookie=0x%x,priority=5,ip,actions=output:1\n\ncookie=0x77,priority=6,actions=drop\n" % CHAIN_A)
    assert sw.dumps == [] and sw.bundles == []


def test_flow_cookies_without_the_option_are_refused():
    sw = FakeSwitch()
    with pytest.raises(of.OpenFlowError, match=r"flows_text line 1 .*sets a cookie"):
        run(sw, cookie=RANGE, cookie_mask=RANGE_MASK, flows_text="cookie=0x%x,priority=5,actions=drop\n" % CHAIN_A)
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] sets a cookie \(cookie: 12\)"):
        run(sw, flows=[{"cookie": 12, "actions": "drop"}])
    assert sw.dumps == [] and sw.bundles == []


def two_chains(a_port=1, b_port=2):
    return ["cookie=0x%x,priority=10,in_port=1,tcp,actions=output:%d" % (CHAIN_A, a_port),
            "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_A,
            {"cookie": CHAIN_B, "priority": 10, "match": "in_port=1,udp", "actions": "output:%d" % b_port},
            {"cookie": "0x%x" % CHAIN_B, "table": 1, "priority": 10, "match": {"in_port": 2, "udp": None},
             "actions": ["output:1"]}]


OUTSIDE = [(OTHER, "priority=10,in_port=1,icmp,actions=drop"), (0x77, "priority=1,actions=NORMAL")]


def test_two_chains_in_one_bundle_each_flow_under_its_cookie():
    sw = FakeSwitch(flows=OUTSIDE)
    outside = sw.texts(OTHER) + sw.texts(0x77)
    r = chains(sw, state="replaced", flows=two_chains())
    assert r["changed"] and r["counts"]["flows_added"] == 4 and r["cookie"] == "0xf5c0000000000000"
    assert sw.bundles == [[
        "flow add cookie=0x%x,priority=10,in_port=1,tcp,actions=output:1" % CHAIN_A,
        "flow add cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_A,
        "flow add cookie=0x%x,priority=10,in_port=1,udp,actions=output:2" % CHAIN_B,
        "flow add cookie=0x%x,table=1,priority=10,in_port=2,udp,actions=output:1" % CHAIN_B]]
    assert r["added"] == [
        "cookie=0x%x,table=0,priority=10,in_port=1,tcp,actions=output:1" % CHAIN_A,
        "cookie=0x%x,table=0,priority=10,in_port=1,udp,actions=output:2" % CHAIN_B,
        "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_A,
        "cookie=0x%x,table=1,priority=10,in_port=2,udp,actions=output:1" % CHAIN_B]
    assert sw.texts(CHAIN_A) == ["table=0,priority=10,in_port=1,tcp,actions=output:1",
                                 "table=1,priority=10,in_port=2,tcp,actions=output:1"]
    assert sw.texts(CHAIN_B) == ["table=0,priority=10,in_port=1,udp,actions=output:2",
                                 "table=1,priority=10,in_port=2,udp,actions=output:1"]
    assert sw.texts(OTHER) + sw.texts(0x77) == outside
    # the range was read, not a single cookie; no "overlaps flows of other cookie(s)"
    assert sw.dumps[0] == (RANGE, RANGE_MASK)
    again = chains(sw, state="replaced", flows=two_chains())
    assert again["changed"] is False and again["counts"]["flows_unchanged"] == 4 and len(sw.bundles) == 1


def test_one_chain_changes_the_other_is_not_touched():
    sw = FakeSwitch(flows=OUTSIDE)
    chains(sw, state="replaced", flows=two_chains())
    a_before = sw.texts(CHAIN_A)
    r = chains(sw, state="replaced", flows=two_chains(b_port=3))
    assert sw.bundles[-1] == ["flow modify_strict table=0,priority=10,in_port=1,udp,actions=output:3"]
    assert r["modified"] == [{"before": "cookie=0x%x,table=0,priority=10,in_port=1,udp,actions=output:2" % CHAIN_B,
                              "after": "cookie=0x%x,table=0,priority=10,in_port=1,udp,actions=output:3" % CHAIN_B}]
    assert sw.texts(CHAIN_A) == a_before  # and the bundle above has no line for chain A


def test_a_flow_moved_to_another_cookie_is_deleted_and_added_in_one_bundle():
    sw = FakeSwitch(flows=OUTSIDE)
    chains(sw, state="replaced", flows=two_chains())
    moved = two_chains()
    moved[1] = moved[1].replace("cookie=0x%x" % CHAIN_A, "cookie=0x%x" % CHAIN_B)
    r = chains(sw, state="replaced", flows=moved, diff=True)
    assert sw.bundles[-1] == ["flow delete_strict table=1,priority=10,in_port=2,tcp",
                              "flow add cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_B]
    assert r["counts"]["flows_modified"] == 1 and r["counts"]["flows_unchanged"] == 3
    assert r["counts"]["flows_added"] == r["counts"]["flows_removed"] == 0
    assert r["modified"] == [{"before": "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_A,
                              "after": "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1" % CHAIN_B}]
    assert "-cookie=0x%x,table=1" % CHAIN_A not in r["diff"]["after"]
    assert "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1\n" % CHAIN_A in r["diff"]["before"]
    assert "cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:1\n" % CHAIN_B in r["diff"]["after"]
    assert sw.texts(CHAIN_A) == ["table=0,priority=10,in_port=1,tcp,actions=output:1"]
    assert chains(sw, state="replaced", flows=moved)["changed"] is False
    # cookie and actions at once: still one delete and one add
    moved[1] = moved[1].replace("cookie=0x%x" % CHAIN_B, "cookie=0x%x" % CHAIN_A).replace("output:1", "output:3")
    chains(sw, state="replaced", flows=moved)
    assert sw.bundles[-1] == ["flow delete_strict table=1,priority=10,in_port=2,tcp",
                              "flow add cookie=0x%x,table=1,priority=10,in_port=2,tcp,actions=output:3" % CHAIN_A]


def test_a_flow_without_its_own_cookie_carries_the_tasks():
    sw = FakeSwitch()
    r = chains(sw, flows=["priority=5,ip,actions=drop", "cookie=0x%x,priority=6,ip,actions=drop" % CHAIN_B])
    assert sw.bundles == [["flow add cookie=0x%x,priority=5,ip,actions=drop" % RANGE,
                           "flow add cookie=0x%x,priority=6,ip,actions=drop" % CHAIN_B]]
    assert r["cookie"] == "0x%016x" % RANGE and r["cookie_mask"] == "0xffff000000000000"
    assert r["added"] == ["cookie=0x%x,table=0,priority=6,ip,actions=drop" % CHAIN_B,
                          "cookie=0x%x,table=0,priority=5,ip,actions=drop" % RANGE]


def test_the_tasks_cookie_is_the_base_of_its_range():
    with pytest.raises(of.OpenFlowError, match=r"cookie 0xf5c000000000a001 has bits outside cookie_mask "
                                               r"0xffff000000000000 \(0xa001\).*with flow_cookies the cookie is the base "
                                               r"of the range \(0xf5c0000000000000\)"):
        chains(FakeSwitch(), cookie=CHAIN_A, flows=[])


def test_replaced_owns_the_whole_range():
    # chain C is in the range but not listed: replaced removes it (the task owns the range);
    # cookies outside the range stay
    sw = FakeSwitch(flows=OUTSIDE + [(0xF5C000000000C003, "priority=30,arp,actions=drop")])
    r = chains(sw, state="replaced", flows=two_chains())
    assert r["removed"] == ["cookie=0xf5c000000000c003,table=0,priority=30,arp,actions=drop"]
    assert sw.texts(0xF5C000000000C003) == [] and len(sw.texts(OTHER)) == 1 and len(sw.texts(0x77)) == 1


def test_present_adds_and_corrects_leaves_the_rest_of_the_range():
    sw = FakeSwitch(flows=OUTSIDE + [(0xF5C000000000C003, "priority=30,arp,actions=drop"),
                                     (CHAIN_B, "priority=10,in_port=1,tcp,actions=output:1")])
    r = chains(sw, state="present", flows=two_chains()[:1])
    assert sw.bundles == [["flow delete_strict table=0,priority=10,in_port=1,tcp",
                           "flow add cookie=0x%x,priority=10,in_port=1,tcp,actions=output:1" % CHAIN_A]]
    assert r["counts"]["flows_modified"] == 1 and sw.texts(0xF5C000000000C003)


def test_absent_with_flow_cookies():
    sw = FakeSwitch(flows=OUTSIDE)
    chains(sw, state="replaced", flows=two_chains())
    # listed with a cookie: only a flow of that cookie goes (this key is chain A's, not B's)
    r = chains(sw, state="absent", flows=["cookie=0x%x,priority=10,in_port=1,tcp" % CHAIN_B])
    assert r["changed"] is False and len(sw.texts(CHAIN_A)) == 2
    r = chains(sw, state="absent", flows=["cookie=0x%x,priority=10,in_port=1,tcp" % CHAIN_A])
    assert r["removed"] == ["cookie=0x%x,table=0,priority=10,in_port=1,tcp,actions=output:1" % CHAIN_A]
    # listed without a cookie: whatever cookie of the range it has
    r = chains(sw, state="absent", flows=["table=1,priority=10,in_port=2,udp"])
    assert r["counts"]["flows_removed"] == 1 and len(sw.texts(CHAIN_B)) == 1
    # nothing listed: the whole range, outside untouched
    r = chains(sw, state="absent")
    assert r["counts"]["flows_removed"] == 2 and sw.bundles[-1] == ["flow delete cookie=0x%x/0x%x" % (RANGE, RANGE_MASK)]
    assert sorted(f.cookie for f in sw.flows.values()) == [0x77, OTHER]


def test_same_flow_under_two_cookies_is_refused():
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] .* and flows\[1\] .* are the same flow \(table 0, priority 5, "
                                               r"match 'ip'\) with different cookies \(0xf5c000000000a001, 0xf5c000000000b002\)"):
        chains(FakeSwitch(), flows=["cookie=0x%x,priority=5,ip,actions=drop" % CHAIN_A,
                                    "cookie=0x%x,priority=5,ip,actions=drop" % CHAIN_B])


def test_adding_over_a_flow_outside_the_range_is_refused():
    sw = FakeSwitch(flows=OUTSIDE)
    with pytest.raises(of.OpenFlowError, match=r"flows\[0\] \('cookie=0xf5c000000000a001,priority=10,in_port=1,icmp,"
                                               r"actions=output:2'\) has the same table, priority and match as a flow "
                                               r"of cookie 0xf5000000000000b2"):
        chains(sw, flows=["cookie=0x%x,priority=10,in_port=1,icmp,actions=output:2" % CHAIN_A])
    assert sw.bundles == []


def test_check_mode_and_diff_show_cookies():
    sw = FakeSwitch(flows=[(CHAIN_A, "priority=5,ip,actions=drop")])
    r = chains(sw, state="replaced", flows=["cookie=0x%x,priority=5,ip,actions=drop" % CHAIN_B], check_mode=True, diff=True)
    assert r["changed"] and sw.bundles == [] and sw.texts(CHAIN_A)
    assert r["diff"]["before_header"] == "fake-br cookie=0xf5c0000000000000/0xffff000000000000"
    assert r["diff"]["before"] == "cookie=0x%x,table=0,priority=5,ip,actions=drop\n" % CHAIN_A
    assert r["diff"]["after"] == "cookie=0x%x,table=0,priority=5,ip,actions=drop\n" % CHAIN_B


def test_a_cookie_ovs_reads_but_the_module_did_not_is_refused():
    sw = FakeSwitch()

    def parse(lines):
        out = [fake_parse(line) for line in lines]
        out[-1].cookie = 0x99           # as ovs-ofctl parse-flows would print "cookie:0x99"
        return out

    sw.parse_flows = parse
    with pytest.raises(of.OpenFlowError, match=r"flows\[1\] .* sets a cookie \(Open vSwitch reads cookie 0x99 from it\)"):
        chains(sw, flows=["priority=1,actions=drop", "priority=2,actions=drop"])
    assert sw.bundles == []


def test_moved_flow_and_a_rejected_one_change_nothing():
    sw = FakeSwitch(flows=OUTSIDE)
    chains(sw, state="replaced", flows=two_chains())
    before = dict((k, (f.cookie, f.text())) for k, f in sw.flows.items())
    sw.dump_groups = lambda: [GroupEntry(9, "group_id=9,type=all,bucket=output:1")]  # claimed, not there
    moved = two_chains()
    moved[1] = moved[1].replace("cookie=0x%x" % CHAIN_A, "cookie=0x%x" % CHAIN_B)
    with pytest.raises(of.OpenFlowError, match=r"the switch rejected flows\[4\] \('cookie=0xf5c000000000b002,priority=50,"
                                               r"ip,actions=group:9'\): OFPBAC_BAD_OUT_GROUP.*Nothing was changed"):
        chains(sw, state="replaced", flows=moved + ["cookie=0x%x,priority=50,ip,actions=group:9" % CHAIN_B])
    assert dict((k, (f.cookie, f.text())) for k, f in sw.flows.items()) == before


cookie_st = st.sampled_from([CHAIN_A, CHAIN_B, 0xF5C000000000C003, None])


@settings(max_examples=150, deadline=None)
@given(before=st.lists(st.tuples(flow_st, st.sampled_from([CHAIN_A, CHAIN_B, 0xF5C000000000C003])), max_size=12),
       outside=st.lists(st.tuples(flow_st, st.sampled_from([OTHER, 0x77])), max_size=6),
       want=st.lists(st.tuples(flow_st, cookie_st), max_size=12))
def test_flow_cookies_replaced_converges_and_spares_the_outside(before, outside, want):
    sw = FakeSwitch()
    for text, cookie in outside + before:
        f = fake_parse(text)
        if f.key not in sw.flows:
            f.cookie = cookie
            sw.flows[f.key] = f
    outside_before = sorted((f.cookie, f.text()) for f in sw.flows.values() if f.cookie & RANGE_MASK != RANGE)
    wanted = {}
    for text, cookie in want:
        wanted.setdefault(fake_parse(text).key, (text, RANGE if cookie is None else cookie, cookie))
    items = [("cookie=0x%x,%s" % (own, text)) if own is not None else text for text, cookie, own in wanted.values()]
    collides = any(f.key in wanted and f.cookie & RANGE_MASK != RANGE for f in sw.flows.values())
    try:
        chains(sw, state="replaced", flows=items)
    except of.OpenFlowError as exc:
        assert collides, exc
        return
    assert not collides
    inside = sorted((f.cookie, f.text()) for f in sw.flows.values() if f.cookie & RANGE_MASK == RANGE)
    assert inside == sorted((cookie, fake_parse(text).text()) for text, cookie, own in wanted.values())
    assert sorted((f.cookie, f.text()) for f in sw.flows.values() if f.cookie & RANGE_MASK != RANGE) == outside_before
    assert chains(sw, state="replaced", flows=items)["changed"] is False


def test_check_mode_names_ports_the_run_would_create_with_placeholders():
    """A run that creates an instance and then programs flows naming its legs: in check mode the
    legs are not there, so they stand for numbers of their own instead of failing the task."""
    names = of.PortNames(PORTS, placeholders=True)
    out = names.resolve("in_port=fs-new-l,udp,actions=output:fs-new-r,output:fs-new-l", "flows[0]")
    assert names.missing == {"fs-new-l": "65024", "fs-new-r": "65025"}
    assert out == "in_port=65024,udp,actions=output:65025,output:65024"
    with pytest.raises(of.OpenFlowError, match="fs-new-l"):
        of.PortNames(PORTS).resolve("in_port=fs-new-l,udp,actions=drop", "flows[0]")
