# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Many owners in one bundle: openflow_flows with flow_cookies, against real Open vSwitch bridges.

One task claims the range of every service chain (cookie 0xf5c0000000000000, mask
0xffff000000000000) and installs two "chains", A and B, each flow under its chain's cookie, in one
bundle.  Proven on the switch: each chain's flows are found by its own cookie; changing B leaves
A's flows untouched (same text, counters kept, age not restarted); a flow moved from A to B is one
delete + add, reported as modified with both cookies; check mode and diff show cookies and change
nothing; a second run changes nothing; a flow with a cookie outside the range fails before
anything is sent; the bundle stays all or nothing; and flows of cookies outside the range (another
namespace, a neighbouring range, unmarked) are byte-identical and never re-added throughout.
"""

from __future__ import annotations

# The fixtures come from ofhelpers; test arguments of the same name are how pytest passes them.
# pylint: disable=redefined-outer-name

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ofhelpers import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    bridge, make_bridge, ovs_session, failed, module, ok, sh)

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import parse_dump_flows  # noqa: E402

RANGE = "0xf5c0000000000000"
MASK = "0xffff000000000000"
A = 0xF5C000000000A001       # chain A (the compiler's chain cookies: 0xf5c0 in the top 16 bits)
B = 0xF5C000000000B002       # chain B
OUTSIDE = [                  # flows of other owners: never touched
    "cookie=0xf5000000000000b2,priority=300,udp,tp_dst=5353,actions=NORMAL",  # another namespace
    "cookie=0xf5c1000000000001,table=1,priority=7,ip,actions=drop",            # the neighbouring range
    "cookie=0x77,priority=250,arp,actions=NORMAL",
]
# UDP 198.18.0.10:1234 -> 198.18.0.20:53, entering on port 1 (chain A's entry flow counts it)
UDP_PKT = "ffffffffffff0200000000010800" + "4500001c000000004011ee8ec612000ac6120014" + "04d2003500080000"
# and the answer, 198.18.0.20:53 -> 198.18.0.10:1234, entering on port 2 (chain A's return flow)
UDP_REPLY = "ffffffffffff0200000000020800" + "4500001c000000004011ee8ec6120014c612000a" + "003504d200080000"


def in_range(cookie):
    return cookie & int(MASK, 16) == int(RANGE, 16)


def snapshot(bridge):
    """{(cookie, canonical flow): (duration, n_packets)} of the whole table."""
    out = bridge.ofctl("--no-names", "dump-flows", bridge.name)
    return dict(((f.cookie, f.text()), (f.duration, f.n_packets)) for f in parse_dump_flows(out))


def untouched(before, after, keep):
    """Every flow of ``before`` for which ``keep(cookie, flow)`` holds is still there: same text and
    cookie, same packet count, and an age that went on (a re-added flow's age restarts)."""
    kept = dict((k, v) for k, v in before.items() if keep(*k))
    assert kept, "nothing to compare"
    for key, (duration, n_packets) in kept.items():
        assert key in after, "flow %r of cookie 0x%x is gone" % (key[1], key[0])
        assert after[key][1] == n_packets, "flow %r lost its counters" % (key[1],)
        assert after[key][0] >= duration, "flow %r was re-added (age %s -> %s)" % (key[1], duration, after[key][0])


def chain_flows(bridge):
    p1, p2, p3 = sorted(bridge.ports)
    return [
        # chain A: DNS through port 2, as strings (cookie first, port names)
        "cookie=0x%x,priority=100,in_port=%s,udp,tp_dst=53,actions=output:%s" % (A, p1, p2),
        "cookie=0x%x,priority=100,in_port=%s,udp,tp_src=53,actions=output:%s" % (A, p2, p1),
        # chain B: web through port 3, as dicts (the chain compiler's shape)
        {"cookie": B, "table": 0, "priority": 100, "match": {"in_port": p1, "tcp": None, "tp_dst": 80},
         "actions": ["output:%s" % p3]},
        {"cookie": "0x%x" % B, "table": 0, "priority": 100, "match": "in_port=%s,tcp,tp_src=80" % p3,
         "actions": "output:%s" % p1},
    ]


def b_changed(bridge):
    """Chain B's entry now leaves on port 2; chain A as it was."""
    flows = chain_flows(bridge)
    flows[2] = dict(flows[2], actions=["output:2"])
    return flows


def args(bridge, flows, **kw):
    a = {"switch": bridge.name, "cookie": RANGE, "cookie_mask": MASK, "flow_cookies": True, "state": "replaced",
         "flows": flows}
    a.update(kw)
    return a


def by_cookie(bridge, cookie):
    return bridge.flows("cookie=0x%x/-1" % cookie)


def outside_lines(bridge):
    """The dump (without statistics) of every flow outside the range, as ovs-ofctl prints it."""
    return [line for line in bridge.flows() if not line.startswith("cookie=0xf5c0")]


def test_two_chains_in_one_task(bridge):
    bridge.ofctl("--bundle", "add-flows", bridge.name, "-", data="\n".join(OUTSIDE) + "\n")
    start = snapshot(bridge)
    assert len(start) == 4  # with the bridge's own cookie-0 NORMAL flow
    outside = outside_lines(bridge)
    assert len(outside) == 4

    # check mode + diff: predicts both chains with their cookies, sends nothing
    r = ok(module("openflow_flows", args(bridge, chain_flows(bridge)), check=True, diff=True))
    assert r["changed"] and r["counts"]["flows_added"] == 4
    assert snapshot(bridge).keys() == start.keys()
    assert r["diff"]["before"] == ""
    after_lines = r["diff"]["after"].splitlines()
    assert len(after_lines) == 4 and sum(line.startswith("cookie=0x%x," % A) for line in after_lines) == 2
    assert sum(line.startswith("cookie=0x%x," % B) for line in after_lines) == 2
    assert r["diff"]["after_header"] == "%s cookie=0xf5c0000000000000/0xffff000000000000" % bridge.name

    # both chains in one task, one bundle
    r = ok(module("openflow_flows", args(bridge, chain_flows(bridge))))
    assert r["changed"] and r["counts"]["flows_added"] == 4 and r["counts"]["flows_before"] == 0
    assert sorted(r["added"]) == sorted(after_lines)
    # each chain's flows are found by its own cookie, on the switch and with openflow_info
    assert by_cookie(bridge, A) == [
        "cookie=0x%x, priority=100,udp,in_port=1,tp_dst=53 actions=output:2" % A,
        "cookie=0x%x, priority=100,udp,in_port=2,tp_src=53 actions=output:1" % A]
    assert by_cookie(bridge, B) == [
        "cookie=0x%x, priority=100,tcp,in_port=1,tp_dst=80 actions=output:3" % B,
        "cookie=0x%x, priority=100,tcp,in_port=3,tp_src=80 actions=output:1" % B]
    info = ok(module("openflow_info", {"switch": bridge.name, "cookie": "0x%x" % B, "groups": False, "ports": False}))
    assert [f["flow"] for f in info["flows"]] == ["table=0,priority=100,tcp,in_port=1,tp_dst=80,actions=output:3",
                                                  "table=0,priority=100,tcp,in_port=3,tp_src=80,actions=output:1"]
    # idempotent
    r = ok(module("openflow_flows", args(bridge, chain_flows(bridge))))
    assert r["changed"] is False and r["counts"]["flows_unchanged"] == 4

    # traffic through chain A, so "untouched" can be proven by counters too; let the flows age
    for dummy in range(3):
        bridge.ofctl("packet-out", bridge.name, "in_port=1 packet=%s actions=table" % UDP_PKT)
        bridge.ofctl("packet-out", bridge.name, "in_port=2 packet=%s actions=table" % UDP_REPLY)
    time.sleep(1.1)
    installed = snapshot(bridge)
    assert installed[(A, "table=0,priority=100,udp,in_port=1,tp_dst=53,actions=output:2")][1] == 3
    assert installed[(A, "table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1")][1] == 3

    # B changes (its entry now leaves on port 2), A does not: only B's flow changes
    r = ok(module("openflow_flows", args(bridge, b_changed(bridge))))
    assert (r["counts"]["flows_modified"], r["counts"]["flows_added"], r["counts"]["flows_removed"],
            r["counts"]["flows_unchanged"]) == (1, 0, 0, 3)
    assert r["modified"] == [{"before": "cookie=0x%x,table=0,priority=100,tcp,in_port=1,tp_dst=80,actions=output:3" % B,
                              "after": "cookie=0x%x,table=0,priority=100,tcp,in_port=1,tp_dst=80,actions=output:2" % B}]
    changed_b = snapshot(bridge)
    untouched(installed, changed_b, lambda c, f: c == A)
    untouched(start, changed_b, lambda c, f: not in_range(c))
    assert outside_lines(bridge) == outside

    # a flow moves from chain A to chain B: a modification showing both cookies, one bundle
    moved = b_changed(bridge)
    moved[1] = moved[1].replace("cookie=0x%x" % A, "cookie=0x%x" % B)
    r = ok(module("openflow_flows", args(bridge, moved), check=True, diff=True))
    assert r["changed"] and snapshot(bridge).keys() == changed_b.keys()
    want_mod = [{"before": "cookie=0x%x,table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1" % A,
                 "after": "cookie=0x%x,table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1" % B}]
    assert r["modified"] == want_mod
    assert "cookie=0x%x,table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1\n" % A in r["diff"]["before"]
    assert "cookie=0x%x,table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1\n" % B in r["diff"]["after"]
    r = ok(module("openflow_flows", args(bridge, moved)))
    assert r["modified"] == want_mod and r["counts"]["flows_modified"] == 1 and r["counts"]["flows_unchanged"] == 3
    assert by_cookie(bridge, A) == ["cookie=0x%x, priority=100,udp,in_port=1,tp_dst=53 actions=output:2" % A]
    assert "cookie=0x%x, priority=100,udp,in_port=2,tp_src=53 actions=output:1" % B in by_cookie(bridge, B)
    assert len(by_cookie(bridge, B)) == 3
    moved_snap = snapshot(bridge)
    untouched(changed_b, moved_snap, lambda c, f: c == A and "tp_dst=53" in f)  # A's other flow: counters, age kept
    # the moved flow was deleted and added: its counters restart under its new owner (an add over it
    # would have kept chain A's 3 packets), and so does its age
    moved_now = moved_snap[(B, "table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1")]
    moved_was = changed_b[(A, "table=0,priority=100,udp,in_port=2,tp_src=53,actions=output:1")]
    assert moved_was[1] == 3 and moved_now[1] == 0 and moved_now[0] < moved_was[0]
    untouched(start, moved_snap, lambda c, f: not in_range(c))
    assert outside_lines(bridge) == outside
    assert ok(module("openflow_flows", args(bridge, moved)))["changed"] is False

    # replaced owns the range: a chain C flow added by hand in the range is removed, outside stays
    bridge.ofctl("add-flow", bridge.name, "cookie=0xf5c000000000c003,priority=90,arp,actions=drop")
    r = ok(module("openflow_flows", args(bridge, moved)))
    assert r["removed"] == ["cookie=0xf5c000000000c003,table=0,priority=90,arp,actions=drop"]

    # absent with nothing listed: the whole range goes, nothing else
    r = ok(module("openflow_flows", {"switch": bridge.name, "cookie": RANGE, "cookie_mask": MASK,
                                     "flow_cookies": True, "state": "absent"}))
    assert r["counts"]["flows_removed"] == 4
    end = snapshot(bridge)
    assert not [k for k in end if in_range(k[0])]
    untouched(start, end, lambda c, f: not in_range(c))
    assert len(end) == len(start) and outside_lines(bridge) == outside


def test_absent_listed_flows_by_cookie(bridge):
    ok(module("openflow_flows", args(bridge, chain_flows(bridge))))
    p1 = sorted(bridge.ports)[0]
    # listed with chain B's cookie: A's flow of that table/priority/match stays
    r = ok(module("openflow_flows", args(bridge, ["cookie=0x%x,priority=100,in_port=%s,udp,tp_dst=53" % (B, p1)],
                                         state="absent")))
    assert r["changed"] is False and len(by_cookie(bridge, A)) == 2
    r = ok(module("openflow_flows", args(bridge, ["cookie=0x%x,priority=100,in_port=%s,udp,tp_dst=53" % (A, p1)],
                                         state="absent")))
    assert r["removed"] == ["cookie=0x%x,table=0,priority=100,udp,in_port=1,tp_dst=53,actions=output:2" % A]
    # listed without a cookie: whatever cookie of the range the flow has
    r = ok(module("openflow_flows", args(bridge, ["priority=100,in_port=%s,tcp,tp_dst=80" % p1], state="absent")))
    assert r["counts"]["flows_removed"] == 1 and len(by_cookie(bridge, B)) == 1


def test_cookie_outside_the_range_fails_before_anything_is_sent(bridge):
    bridge.ofctl("--bundle", "add-flows", bridge.name, "-", data="\n".join(OUTSIDE) + "\n")
    ok(module("openflow_flows", args(bridge, chain_flows(bridge))))
    before = bridge.state()
    flows = chain_flows(bridge) + ["cookie=0xf5c1000000000001,priority=5,ip,actions=drop"]
    failed(module("openflow_flows", args(bridge, flows)),
           "flows[4] ('cookie=0xf5c1000000000001,priority=5,ip,actions=drop'): cookie=0xf5c1000000000001 lies outside "
           "the task's cookie range 0xf5c0000000000000/0xffff000000000000")
    flows = chain_flows(bridge)
    flows[3] = dict(flows[3], cookie=0x77)
    failed(module("openflow_flows", args(bridge, flows)), "flows[3] (", "cookie: 0x77 lies outside")
    # the switch: per-flow cookies need the option, and the option needs a range
    failed(module("openflow_flows", args(bridge, chain_flows(bridge), flow_cookies=False)),
           "flows[0]", "sets a cookie", "flow_cookies: true")
    failed(module("openflow_flows", args(bridge, chain_flows(bridge), cookie="0x%x" % A, cookie_mask=None)),
           "flow_cookies needs a cookie range")
    assert bridge.state() == before


def test_many_cookies_999_good_1_bad_change_nothing(bridge):
    bridge.ofctl("--bundle", "add-flows", bridge.name, "-", data="\n".join(OUTSIDE) + "\n")
    ok(module("openflow_flows", args(bridge, chain_flows(bridge))))
    before = bridge.state()
    start = snapshot(bridge)
    # 999 flows under ten chain cookies, one moved flow, and one flow the switch refuses
    flows = ["cookie=0xf5c00000000000%02x,priority=10,ip,nw_src=10.1.%d.%d,actions=output:2" % (i % 10, i >> 8, i & 255)
             for i in range(999)]
    flows.insert(500, "cookie=0xf5c0000000000005,priority=10,ip,nw_src=10.9.9.9,actions=meter:7,output:2")
    moved = chain_flows(bridge)
    moved[1] = moved[1].replace("cookie=0x%x" % A, "cookie=0x%x" % B)
    r = failed(module("openflow_flows", args(bridge, flows + moved)),
               "the switch rejected flows[500] ('cookie=0xf5c0000000000005,priority=10,ip,nw_src=10.9.9.9,"
               "actions=meter:7,output:2')", "OFPMMFC_INVALID_METER", "Nothing was changed")
    assert bridge.state() == before, r["msg"]
    # without the bad flow, all of it in one run; each chain cookie holds its share
    del flows[500]
    r = ok(module("openflow_flows", args(bridge, flows + moved, report_limit=0)))
    assert (r["counts"]["flows_added"], r["counts"]["flows_modified"], r["counts"]["flows_unchanged"]) == (999, 1, 3)
    assert r["added"] == [] and r["truncated"]
    assert len(bridge.flows("cookie=0xf5c0000000000003/-1")) == 100
    assert len(bridge.flows("cookie=%s/%s" % (RANGE, MASK))) == 1003
    end = snapshot(bridge)
    untouched(start, end, lambda c, f: not in_range(c))
    assert len([k for k in end if not in_range(k[0])]) == len([k for k in start if not in_range(k[0])]) == 4
    assert ok(module("openflow_flows", args(bridge, flows + moved)))["changed"] is False
