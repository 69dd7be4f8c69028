# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The symmetric, flow-affine, stable load-balancing recipe on a real switch.

The flows come from plugins/module_utils/_flow_hash.py and are installed with openflow_flows.
Which member a packet reaches is read from ``ovs-appctl ofproto/trace`` (the switch's own
classifier and multipath hash, without sending traffic).  Proven: both directions of every
5-tuple (the reverse with other MAC addresses, another VLAN and entering on another port) reach
the same member; removing a member moves only the 5-tuples that were on it, and the module
changes only the dispatch flows of that member's slots.  For contrast, an OpenFlow select group
hashing the same fields is shown not to be symmetric (LAB.md measured 15/50).
"""

from __future__ import annotations

# The fixtures come from ofhelpers; test arguments of the same name are how pytest passes them.
# pylint: disable=redefined-outer-name

import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ofhelpers import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    bridge, make_bridge, ovs_session, module, ok, sh)

from ansible_collections.flowstream.platform.plugins.module_utils import _flow_hash as fh  # noqa: E402

COOKIE = "0xf5000000000000c1"
MEMBERS = {"ids1": "output:2", "ids2": "output:3", "ids3": "output:4", "ids4": "output:5"}
PORT_OF = dict((name, int(a.split(":")[1])) for name, a in MEMBERS.items())
CLIENT_PORT, SERVER_PORT = 1, 6
_OUT_RE = re.compile(r"^\s+output:(\d+)\s*$", re.M)
_SLOT_RE = re.compile(r"^Final flow: .*?\breg0=0x([0-9a-f]+)", re.M)


def tuples(n, seed=7):
    rnd = random.Random(seed)
    out = []
    for dummy in range(n):
        proto = rnd.choice(["tcp", "udp"])
        out.append((proto, "198.18.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255)),
                    "198.19.%d.%d" % (rnd.randrange(256), rnd.randrange(1, 255)),
                    rnd.randrange(1024, 65536), rnd.choice([80, 443, 53, 8080, rnd.randrange(1, 65536)])))
    return out


def trace(bridge, proto, src, dst, sport, dport, in_port, mac_a, mac_b, vlan=None):
    flow = "in_port=%d,%s,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s,%s_src=%d,%s_dst=%d" % (
        in_port, proto, mac_a, mac_b, src, dst, proto, sport, proto, dport)
    if vlan is not None:
        flow += ",dl_vlan=%d" % vlan
    out = sh("ovs-appctl", "ofproto/trace", bridge.name, flow)
    ports = [int(p) for p in _OUT_RE.findall(out)]
    assert len(ports) == 1, out
    slot = _SLOT_RE.search(out)
    return ports[0], int(slot.group(1), 16) if slot else 0  # reg0=0 is not printed


def both_directions(bridge, t):
    proto, src, dst, sport, dport = t
    fwd = trace(bridge, proto, src, dst, sport, dport, CLIENT_PORT, "02:00:00:00:00:01", "02:00:00:00:00:02")
    # The reply: addresses and ports swapped, other MACs (a router rewrote them), a VLAN tag,
    # and it enters the switch on the server side.
    rev = trace(bridge, proto, dst, src, dport, sport, SERVER_PORT, "02:00:00:00:00:99", "02:00:00:00:00:98", vlan=42)
    return fwd, rev


def install(bridge, members, state="replaced"):
    flows = fh.symmetric_lb_flows(members, match="ip", table=0, dispatch_table=10, priority=100, slots=64)
    return ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": state, "flows": flows}))


def test_symmetric_and_stable(make_bridge):
    br = make_bridge("lb", ports=6)
    r = install(br, MEMBERS)
    assert r["counts"]["flows_added"] == 1 + 64
    assert install(br, MEMBERS)["changed"] is False

    owners = fh.slot_owners(sorted(MEMBERS), 64)
    sample = tuples(120)
    before = {}
    for t in sample:
        (fwd_port, fwd_slot), (rev_port, rev_slot) = both_directions(br, t)
        assert fwd_slot == rev_slot, t                      # the hash is symmetric
        assert fwd_port == rev_port, t                      # so is the member
        assert fwd_port == PORT_OF[owners[fwd_slot]], t     # and it is the slot's owner
        before[t] = (fwd_port, fwd_slot)
    used = set(port for port, slot in before.values())
    assert used == set(PORT_OF.values()), "120 connections should reach all 4 members: %s" % used

    # ids3 goes away: only its connections move, and only its slots' dispatch flows change.
    remaining = dict((k, v) for k, v in MEMBERS.items() if k != "ids3")
    r = install(br, remaining)
    moved_slots = fh.moved_slots(owners, fh.slot_owners(sorted(remaining), 64))
    assert r["counts"]["flows_modified"] == len(moved_slots) == owners.count("ids3")
    assert r["counts"]["flows_added"] == r["counts"]["flows_removed"] == 0
    moved = 0
    for t in sample:
        (fwd_port, fwd_slot), (rev_port, rev_slot) = both_directions(br, t)
        assert fwd_port == rev_port, t
        assert fwd_slot == before[t][1], t                  # flow-affine: same slot for ever
        if before[t][0] == PORT_OF["ids3"]:
            assert fwd_port != PORT_OF["ids3"]
            moved += 1
        else:
            assert fwd_port == before[t][0], t              # everybody else stays put
    assert moved == sum(1 for port, slot in before.values() if port == PORT_OF["ids3"]) > 0

    # ids3 comes back: exactly its old connections return to it.
    install(br, MEMBERS)
    for t in sample:
        assert both_directions(br, t)[0][0] == before[t][0], t


def test_select_group_hash_is_not_symmetric(make_bridge):
    """Why the recipe does not use a select group (kept as evidence, see LAB.md)."""
    br = make_bridge("sg", ports=6)
    ok(module("openflow_flows", {
        "switch": br.name, "cookie": COOKIE, "openflow_version": "OpenFlow15", "group_id_range": [1, 1],
        "groups": [{"group_id": 1, "type": "select", "selection_method": "hash",
                    "fields": ["ip_src", "ip_dst", "tcp_src", "tcp_dst"],
                    "buckets": [{"actions": a} for a in sorted(MEMBERS.values())]}],
        "flows": ["priority=100,tcp,actions=group:1"]}))
    same = 0
    sample = [t for t in tuples(60, seed=11) if t[0] == "tcp"]
    for proto, src, dst, sport, dport in sample:
        fwd = trace(br, proto, src, dst, sport, dport, CLIENT_PORT, "02:00:00:00:00:01", "02:00:00:00:00:02")[0]
        rev = trace(br, proto, dst, src, dport, sport, SERVER_PORT, "02:00:00:00:00:02", "02:00:00:00:00:01")[0]
        same += fwd == rev
    assert same < len(sample), "a select group was symmetric for all %d connections" % len(sample)
