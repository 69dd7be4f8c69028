# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Canonical form, proven with the real ovs-ofctl and the real switch.

1. A flow written two ways (field synonyms, hex/decimal, explicit prerequisites, field order,
   port name/number) canonicalises to the same text: no spurious changes.
2. What the switch dumps back for an installed flow equals the canonical form of what was sent,
   for a broad set of matches and actions and for generated flows: so want and have compare
   without a round trip through the switch per run.
3. The canonical text re-parses to itself (the module sends it back in modify/delete lines).
"""

from __future__ import annotations

# The fixtures come from ofhelpers; test arguments of the same name are how pytest passes them.
# pylint: disable=redefined-outer-name

import os
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ofhelpers import bridge, make_bridge, ovs_session  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, parse_dump_flows  # noqa: E402
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import PortNames  # noqa: E402

# Written two ways: (a, b) must canonicalise identically.
SYNONYMS = [
    ("tcp,nw_src=10.0.0.1,tp_dst=80,actions=output:2",
     "dl_type=0x0800,nw_proto=6,ip_src=10.0.0.1,tcp_dst=0x50,actions=output:2"),
    ("udp6,ipv6_src=2001:db8::/64,udp_dst=53,actions=drop",
     "ipv6,nw_proto=17,ipv6_src=2001:0DB8:0:0:0:0:0:0/64,tp_dst=53,actions=drop"),
    ("priority=5,ip,nw_dst=198.18.0.0/16,actions=mod_nw_src:1.2.3.4,output:1",
     "nw_dst=198.18.0.0/255.255.0.0,priority=5,dl_type=0x800,actions=set_field:1.2.3.4->ip_src,output:1"),
    ("ip,actions=mod_vlan_vid:10,output:1", "ip,actions=push_vlan:0x8100,set_field:4106->vlan_vid,output:1"),
    ("arp,arp_tpa=198.18.0.1,actions=NORMAL", "dl_type=0x0806,arp_tpa=198.18.0.1,actions=normal"),
    ("table=0,priority=32768,ip,actions=drop", "ip,actions="),
    ("tcp,tcp_flags=+syn-ack,actions=controller:128", "tcp,tcp_flags=+syn-ack,actions=CONTROLLER:128"),
    ("in_port=1,dl_vlan=100,actions=strip_vlan,output:LOCAL", "in_port=1,dl_vlan=100,actions=pop_vlan,LOCAL"),
    ("reg0=0x5/0xff,ip,actions=load:0x1->NXM_NX_REG1[],goto_table:3",
     "ip,reg0=5/255,actions=load:1->NXM_NX_REG1[0..31],goto_table:3"),
    ("ip,actions=enqueue:1:3", "ip,actions=set_queue:3,output:1,pop_queue"),
]


def canonical(ofctl, texts):
    return [f.text() for f in ofctl.parse_flows(texts)]


def test_written_two_ways_compare_equal():
    ofctl = Ofctl("br-unused")
    a = canonical(ofctl, [one for one, other in SYNONYMS])
    b = canonical(ofctl, [other for one, other in SYNONYMS])
    assert a == b


def test_port_names_and_numbers_compare_equal(bridge):
    ofctl = Ofctl(bridge.name)
    names = PortNames(ofctl.dump_ports())
    p1, p2 = sorted(bridge.ports)[:2]
    by_name = names.resolve("priority=7,in_port=%s,actions=output:%s,%s" % (p1, p2, p1), "flows[0]")
    assert canonical(ofctl, [by_name]) == canonical(ofctl, ["priority=7,in_port=1,actions=output:2,1"])


# Matches and actions of many kinds (the ones the chain compiler and the recipes use, and more).
BROAD = """\
priority=100,tcp,nw_src=10.0.0.1,tp_dst=80,actions=output:2
table=1,priority=5,dl_type=0x0800,nw_proto=6,ip_src=10.0.0.1,tcp_dst=0x51,actions=mod_nw_src:1.2.3.4,output:2
priority=10,udp6,ipv6_src=2001:db8::1/64,udp_dst=53,actions=drop
priority=11,arp,arp_tpa=198.18.0.1,actions=NORMAL
priority=12,in_port=1,dl_vlan=100,actions=strip_vlan,output:LOCAL
priority=13,in_port=1,vlan_tci=0x1000/0x1000,actions=pop_vlan,resubmit(,2)
priority=14,ip,nw_dst=198.18.0.0/16,actions=push_vlan:0x8100,set_field:4196->vlan_vid,output:2
priority=16,reg0=0x5/0xff,ip,actions=load:0x1->NXM_NX_REG1[],move:NXM_OF_IP_SRC[]->NXM_NX_REG2[],goto_table:3
priority=17,ct_state=-trk,ip,actions=ct(table=4,zone=5)
priority=18,ct_state=+trk+new,tcp,actions=ct(commit,zone=5,exec(set_field:0x1->ct_mark)),output:2
priority=19,icmp,icmp_type=8,actions=dec_ttl,mod_dl_dst:00:11:22:33:44:55,output:2
priority=20,tcp,actions=multipath(symmetric_l3l4+udp,0,modulo_n,256,0,NXM_NX_REG0[0..7]),goto_table:5
priority=21,ip,actions=learn(table=6,hard_timeout=10,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])
priority=22,metadata=0x1/0xff,ip,actions=write_metadata:0x2/0xff,goto_table:7
priority=23,ip,nw_tos=32,actions=clear_actions,write_actions(output:2)
priority=24,ip,ip_dscp=9,actions=note:aa.bb,output:2
priority=25,tcp,tcp_flags=+syn-ack,actions=controller:128
priority=26,dl_src=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop
priority=27,idle_timeout=30,hard_timeout=60,ip,actions=output:2
priority=28,importance=5,ip,actions=output:2
priority=29,send_flow_rem,ip,actions=output:2
priority=30,conj_id=7,ip,actions=output:2
priority=31,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)
priority=32,ipv6,ipv6_dst=2001:DB8:0:0::5,actions=output:2
priority=33,tcp,tp_src=1024/0xfc00,actions=enqueue:2:1
priority=34,mpls,mpls_label=5,actions=pop_mpls:0x0800,output:2
priority=35,ip,actions=set_field:10.0.0.9->nw_dst,output(port=2,max_len=100)
priority=36,ip,actions=bundle(eth_src,0,hrw,ofport,members:1,2)
priority=37,tcp,actions=check_pkt_larger(1500)->reg0[0],resubmit(,8)
priority=38,udp,actions=clone(push_vlan:0x8100,output:2),output:LOCAL
priority=40,dl_dst=ff:ff:ff:ff:ff:ff,actions=FLOOD
priority=41,ip,nw_frag=first,actions=drop
priority=42,tcp,actions=set_queue:3,output:2
priority=43,ip,actions=sample(probability=100,collector_set_id=1,obs_domain_id=2,obs_point_id=3)
priority=44,ip,nw_ttl=1,actions=controller(reason=invalid_ttl,max_len=128)
priority=45,tcp,actions=mod_tp_dst:8080,output:2
priority=46,dl_type=0x86dd,nw_proto=58,icmp_type=135,nd_target=fe80::1,actions=drop
priority=47,ip,actions=output:NXM_NX_REG0[0..15]
priority=48,tun_id=0x5,actions=drop
priority=49,no_packet_counts,ip,actions=output:1
table=3,actions=
priority=0,actions=drop
"""


def _install_and_compare(bridge, texts, cookie):
    ofctl = Ofctl(bridge.name)
    want = ofctl.parse_flows(texts)
    ofctl.bundle_flows(["add cookie=0x%x,%s" % (cookie, t) for t in texts])
    have = ofctl.dump_flows(cookie, (1 << 64) - 1)
    assert sorted((f.key, f.value) for f in have) == sorted((f.key, f.value) for f in want)
    # The canonical text is a fixed point: it parses back to itself.
    again = ofctl.parse_flows([f.text() for f in want])
    assert [(f.key, f.value) for f in again] == [(f.key, f.value) for f in want]
    ofctl.bundle_flows(["delete cookie=0x%x/-1" % cookie])


def test_switch_dumps_back_the_canonical_form(bridge):
    _install_and_compare(bridge, BROAD.splitlines(), 0xF5000000000C0001)


ip4 = st.builds(lambda a, b, p: "10.%d.%d.0/%d" % (a, b, p), st.integers(0, 255), st.integers(0, 255),
                st.integers(8, 32))
match_parts = st.fixed_dictionaries({}, optional={
    "proto": st.sampled_from(["ip", "tcp", "udp", "icmp", "dl_type=0x0800", "dl_type=0x0800,nw_proto=6"]),
    "nw_src": ip4, "nw_dst": ip4,
    "in_port": st.integers(1, 3),
    "dl_vlan": st.integers(1, 4094),
    "reg1": st.integers(0, 0xffff),
    "tp": st.integers(0, 65535),
})
action_parts = st.lists(st.sampled_from([
    "output:1", "output:2", "LOCAL", "NORMAL", "mod_dl_src:02:00:00:00:00:01",
    "push_vlan:0x8100,set_field:4097->vlan_vid", "load:0x7->NXM_NX_REG3[0..3]", "resubmit(,4)",
]), min_size=0, max_size=3, unique=True)


def _render(parts, actions, priority, table):
    items = ["table=%d" % table, "priority=%d" % priority]
    proto = parts.get("proto")
    l3 = proto is not None
    if proto:
        items.append(proto)
    for key in ("nw_src", "nw_dst"):
        if key in parts and l3:
            items.append("%s=%s" % (key, parts[key]))
    if "tp" in parts and proto in ("tcp", "udp", "dl_type=0x0800,nw_proto=6"):
        items.append("tp_dst=%d" % parts["tp"])
    if "in_port" in parts:
        items.append("in_port=%d" % parts["in_port"])
    if "dl_vlan" in parts:
        items.append("dl_vlan=%d" % parts["dl_vlan"])
    if "reg1" in parts:
        items.append("reg1=%d" % parts["reg1"])
    if "dl_vlan" in parts:  # a second 802.1Q tag would need push_vlan:0x88a8 (OFPBAC_BAD_TAG)
        actions = [a for a in actions if not a.startswith("push_vlan")]
    items.append("actions=%s" % (",".join(actions) or "drop"))
    return ",".join(items)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flows=st.lists(st.tuples(match_parts, action_parts, st.integers(0, 65535), st.integers(0, 3)),
                      min_size=1, max_size=20))
def test_generated_flows_dump_back_canonical(bridge, flows):
    texts = {}
    for parts, actions, priority, table in flows:
        text = _render(parts, actions, priority, table)
        texts[text] = None
    ofctl = Ofctl(bridge.name)
    # Keep one flow per (table, priority, match): OpenFlow would merge the others.
    seen = {}
    for text, f in zip(list(texts), ofctl.parse_flows(list(texts))):
        seen.setdefault(f.key, text)
    _install_and_compare(bridge, list(seen.values()), 0xF5000000000C0002)


def test_dump_parser_handles_a_real_multipart_dump(bridge):
    ofctl = Ofctl(bridge.name)
    lines = ["add cookie=0xf5000000000c0003,priority=9,ip,nw_src=10.%d.%d.1,actions=output:1" % (i >> 8, i & 255)
             for i in range(3000)]
    ofctl.bundle_flows(lines)
    raw = bridge.ofctl("--no-names", "dump-flows", bridge.name, "cookie=0xf5000000000c0003/-1")
    assert raw.count("OFPST_FLOW reply") > 1          # several multipart parts
    assert len(parse_dump_flows(raw)) == 3000
