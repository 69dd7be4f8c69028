# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""openflow_flows and openflow_info, run through ansible against real Open vSwitch bridges.

Every state is idempotent (second run changed=0), check mode leaves the table byte-identical,
flows of other cookies are never touched, bad input fails with the flow or field named and the
switch's own words and leaves the table exactly as it was, and the module works over ``unix:``
(bridge name), ``tcp:127.0.0.1:PORT`` (``ptcp:``) and ``ssl:`` with certificates made by
``ovs-pki`` at test time.
"""

from __future__ import annotations

# The fixtures come from ofhelpers; test arguments of the same name are how pytest passes them.
# pylint: disable=redefined-outer-name

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ofhelpers import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    bridge, make_bridge, ovs_session, failed, free_port, module, ok, sh, wait_for_target)

COOKIE = "0xf5000000000000a1"
OTHER = 0xF5000000000000B2
FOREIGN = [  # flows of other owners: must survive every run byte for byte
    "cookie=0x%x,priority=300,udp,tp_dst=53,actions=NORMAL" % OTHER,
    "cookie=0x%x,table=2,priority=7,ip,actions=drop" % OTHER,
    "cookie=0x77,priority=250,arp,actions=NORMAL",
]


def install_foreign(bridge):
    bridge.ofctl("--bundle", "add-flows", bridge.name, "-", data="\n".join(FOREIGN) + "\n")
    return foreign_of(bridge)


def foreign_of(bridge):
    return [line for line in bridge.flows() if "cookie=0xf5000000000000a1" not in line]


def flows_args(bridge, flows, **kw):
    args = {"switch": bridge.name, "cookie": COOKIE, "flows": flows}
    args.update(kw)
    return args


WANT = [
    "table=0,priority=200,in_port={p1},tcp,tp_dst=80,actions=output:{p2}",
    "dl_type=0x0800,nw_proto=6,ip_src=10.0.0.1,tcp_dst=0x51,priority=90,actions=output:2",
    {"table": 1, "priority": 5, "match": {"ip": None, "nw_dst": "198.18.0.1"},
     "actions": ["push_vlan:0x8100", "mod_vlan_vid:10", "output:1"]},
    "priority=80,ip,nw_dst=198.18.0.0/16,idle_timeout=3600,send_flow_rem,actions=dec_ttl,output:3",
]


def want(bridge):
    p1, p2 = sorted(bridge.ports)[:2]
    return [w.format(p1=p1, p2=p2) if isinstance(w, str) else w for w in WANT]


def test_states_idempotent_check_mode_and_other_cookies(bridge):
    foreign = install_foreign(bridge)

    # check mode on an empty cookie: predicts, changes nothing
    before = bridge.state()
    r = ok(module("openflow_flows", flows_args(bridge, want(bridge), state="present"), check=True, diff=True))
    assert r["changed"] and r["counts"]["flows_added"] == 4
    assert bridge.state() == before
    assert r["diff"]["before"] == "" and r["diff"]["after"].count("\n") == 4

    # present, then again: changed=0 (flows written with names, synonyms, dicts)
    r = ok(module("openflow_flows", flows_args(bridge, want(bridge), state="present")))
    assert r["changed"] and r["counts"]["flows_added"] == 4 and r["counts"]["flows_after"] == 4
    assert "apply" in r["timings"] and r["timings"]["total"] > 0
    assert ok(module("openflow_flows", flows_args(bridge, want(bridge), state="present")))["changed"] is False
    # the same flows written the canonical way (as openflow_info returns them) are no change either
    info = ok(module("openflow_info", {"switch": bridge.name, "cookie": COOKIE}))
    canonical = [f["flow"] for f in info["flows"]]
    assert len(canonical) == 4 and all(f["cookie"] == COOKIE for f in info["flows"])
    assert ok(module("openflow_flows", flows_args(bridge, canonical, state="replaced")))["changed"] is False

    # replaced: exactly these flows under the cookie
    new = want(bridge)[:2] + ["priority=70,icmp,actions=drop"]
    before = bridge.state()
    r = ok(module("openflow_flows", flows_args(bridge, new, state="replaced"), check=True, diff=True))
    assert r["changed"] and bridge.state() == before
    r = ok(module("openflow_flows", flows_args(bridge, new, state="replaced")))
    assert (r["counts"]["flows_added"], r["counts"]["flows_removed"], r["counts"]["flows_unchanged"]) == (1, 2, 2)
    assert ok(module("openflow_flows", flows_args(bridge, new, state="replaced")))["changed"] is False
    assert len(bridge.flows("cookie=%s/-1" % COOKIE)) == 3

    # absent (listed, by key, actions left out), then again
    r = ok(module("openflow_flows", flows_args(bridge, ["priority=70,icmp"], state="absent")))
    assert r["counts"]["flows_removed"] == 1
    assert ok(module("openflow_flows", flows_args(bridge, ["priority=70,icmp"], state="absent")))["changed"] is False

    # absent with nothing listed: all flows of the cookie
    before = bridge.state()
    assert ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "absent"},
                     check=True))["changed"]
    assert bridge.state() == before
    r = ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "absent"}))
    assert r["counts"]["flows_removed"] == 2 and bridge.flows("cookie=%s/-1" % COOKIE) == []
    assert ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "absent"}))["changed"] is False

    # through all of it, other owners' flows are byte-identical
    assert foreign_of(bridge) == foreign


def test_drift_report_and_repair(bridge):
    foreign = install_foreign(bridge)
    flows = ["priority=100,tcp,tp_dst=80,actions=output:2", "priority=90,tcp,tp_dst=443,actions=output:2",
             "priority=80,udp,actions=output:3"]
    ok(module("openflow_flows", flows_args(bridge, flows, state="replaced")))
    counters_before = bridge.ofctl("dump-flows", bridge.name, "cookie=%s/-1,tcp,tp_dst=443" % COOKIE)
    # By hand: one altered, one deleted, one added under our cookie, one added under another
    bridge.ofctl("mod-flows", bridge.name, "cookie=%s/-1,priority=100,tcp,tp_dst=80,actions=drop" % COOKIE,
                 "--strict")
    bridge.ofctl("del-flows", "--strict", bridge.name, "priority=80,udp")
    bridge.ofctl("add-flow", bridge.name, "cookie=%s,priority=60,arp,actions=drop" % COOKIE)
    bridge.ofctl("add-flow", bridge.name, "cookie=0x77,priority=61,arp,actions=drop")
    foreign = foreign + ["cookie=0x77, priority=61,arp actions=drop"]

    drift = ok(module("openflow_flows", flows_args(bridge, flows, state="replaced"), check=True, diff=True))
    assert drift["changed"]
    assert drift["added"] == ["table=0,priority=80,udp,actions=output:3"]
    assert drift["removed"] == ["table=0,priority=60,arp,actions=drop"]
    assert drift["modified"] == [{"before": "table=0,priority=100,tcp,tp_dst=80,actions=drop",
                                  "after": "table=0,priority=100,tcp,tp_dst=80,actions=output:2"}]
    assert "-table=0,priority=60,arp,actions=drop" not in drift["diff"]["after"]
    assert "table=0,priority=60,arp,actions=drop\n" in drift["diff"]["before"]
    assert "table=0,priority=80,udp,actions=output:3\n" in drift["diff"]["after"]

    repair = ok(module("openflow_flows", flows_args(bridge, flows, state="replaced")))
    assert (repair["counts"]["flows_added"], repair["counts"]["flows_removed"],
            repair["counts"]["flows_modified"], repair["counts"]["flows_unchanged"]) == (1, 1, 1, 1)
    assert ok(module("openflow_flows", flows_args(bridge, flows, state="replaced")))["changed"] is False
    assert sorted(foreign_of(bridge)) == sorted(foreign)
    # the flow nobody touched kept its identity (never re-added)
    assert "duration" in counters_before


def test_groups_all_types_in_one_bundle(make_bridge):
    br = make_bridge("g", ports=4)
    args = {
        "switch": br.name, "cookie": COOKIE, "openflow_version": "OpenFlow15", "state": "replaced",
        "group_id_range": [100, 199],
        "groups": [
            {"group_id": 100, "type": "select", "selection_method": "hash", "fields": ["ip_src", "ip_dst"],
             "buckets": [{"actions": "output:1"}, {"actions": "output:2"}]},
            "group_id=101,type=fast_failover,bucket=watch_port:3,actions=output:3,bucket=watch_port:4,actions=output:4",
            "group_id=102,type=all,bucket=output:1,bucket=output:2",
            "group_id=103,type=indirect,bucket=actions=mod_dl_dst:02:00:00:00:00:01,output:3",
        ],
        "flows": ["priority=10,tcp,actions=group:100", "priority=11,udp,actions=group:101",
                  "priority=12,icmp,actions=group:102", "priority=13,arp,actions=group:103"],
    }
    before = br.state()
    r = ok(module("openflow_flows", args, check=True, diff=True))
    assert r["counts"]["groups_added"] == 4 and br.state() == before
    assert "group group_id=100,type=select,selection_method=hash,fields(ip_src,ip_dst)" in r["diff"]["after"]
    r = ok(module("openflow_flows", args))
    assert r["counts"]["groups_added"] == 4 and r["counts"]["flows_added"] == 4
    groups = br.groups()
    assert any("type=ff" in g for g in groups) and any("selection_method=hash" in g for g in groups)
    assert ok(module("openflow_flows", args))["changed"] is False

    # Swap: flows move to a new group 104, groups 102/103 go - in one bundle, in the right order.
    args2 = dict(args)
    args2["groups"] = args["groups"][:2] + ["group_id=104,type=all,bucket=output:4"]
    args2["flows"] = args["flows"][:2] + ["priority=12,icmp,actions=group:104"]
    r = ok(module("openflow_flows", args2))
    assert r["counts"]["groups_added"] == 1 and r["counts"]["groups_removed"] == 2
    assert r["counts"]["flows_removed"] == 1 and r["counts"]["flows_modified"] == 1
    assert [g.split(",")[0] for g in br.groups()] == ["group_id=100", "group_id=101", "group_id=104"]
    assert ok(module("openflow_flows", args2))["changed"] is False

    # A group modified in place (bucket change) keeps the flows that use it.
    args3 = dict(args2)
    args3["groups"] = args2["groups"][:2] + ["group_id=104,type=all,bucket=output:3,bucket=output:4"]
    r = ok(module("openflow_flows", args3))
    assert r["counts"]["groups_modified"] == 1 and len(br.flows("cookie=%s/-1" % COOKIE)) == 3

    # absent: everything of the cookie and the range
    r = ok(module("openflow_flows", {"switch": br.name, "cookie": COOKIE, "openflow_version": "OpenFlow15",
                                     "state": "absent", "group_id_range": [100, 199]}))
    assert r["counts"]["groups_removed"] == 3 and br.groups() == [] and br.flows("cookie=%s/-1" % COOKIE) == []
    assert ok(module("openflow_flows", {"switch": br.name, "cookie": COOKIE, "openflow_version": "OpenFlow15",
                                        "state": "absent", "group_id_range": [100, 199]}))["changed"] is False


def test_group_of_another_owner_is_not_deleted(bridge):
    bridge.ofctl("add-group", bridge.name, "group_id=150,type=all,bucket=output:1")
    bridge.ofctl("add-flow", bridge.name, "cookie=0x77,priority=5,ip,actions=group:150")
    before = bridge.state()
    failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "replaced", "flows": [],
                                     "groups": [], "group_id_range": [100, 199]}),
           "group 150 cannot be deleted: a flow of cookie 0x77")
    assert bridge.state() == before


# -- bad input: message names the flow/field and the switch's words; the table is as before -------

def test_999_good_flows_and_1_rejected_change_nothing(bridge):
    install_foreign(bridge)
    ok(module("openflow_flows", flows_args(bridge, ["priority=5,arp,actions=NORMAL"], state="replaced")))
    before = bridge.state()
    flows = ["priority=100,ip,nw_src=10.1.%d.%d,actions=output:2" % (i >> 8, i & 255) for i in range(999)]
    flows.insert(500, "priority=100,ip,nw_src=10.9.9.9,actions=meter:7,output:2")  # no meter 7: switch refuses
    r = failed(module("openflow_flows", flows_args(bridge, flows, state="replaced")),
               "the switch rejected flows[500] ('priority=100,ip,nw_src=10.9.9.9,actions=meter:7,output:2')",
               "OFPMMFC_INVALID_METER", "Nothing was changed")
    assert bridge.state() == before, r["msg"]


def test_malformed_flow_named_with_ovs_words(bridge):
    before = bridge.state()
    flows = ["priority=1,ip,actions=drop", "priority=2,ipx,actions=drop"]
    failed(module("openflow_flows", flows_args(bridge, flows)), "flows[1] ('priority=2,ipx,actions=drop')",
           "field ipx missing value")
    failed(module("openflow_flows", flows_args(bridge, ["priority=2,ip,actions=frobnicate:1"])),
           "flows[0]", "unknown action frobnicate")
    failed(module("openflow_flows", flows_args(bridge, ["priority=2,actions=dec_ttl"])),
           "flows[0]", "no usable protocol")
    failed(module("openflow_flows", flows_args(bridge, ["cookie=0x5,priority=2,actions=drop"])),
           "flows[0]", "sets a cookie")
    failed(module("openflow_flows", flows_args(bridge, ["priority=2,in_port=nosuchport,actions=drop"])),
           "flows[0] names port 'nosuchport', which the switch does not have")
    assert bridge.state() == before


def test_group_named_but_not_defined(bridge):
    before = bridge.state()
    failed(module("openflow_flows", flows_args(bridge, ["priority=2,ip,actions=group:4242"])),
           "flows[0] ('priority=2,ip,actions=group:4242') names group 4242, which neither this task nor the switch defines")
    assert bridge.state() == before


@pytest.mark.parametrize("cookie,mask,fragment", [
    (0, None, "cookie 0 is the cookie of every flow that nobody marked"),
    ("0x0", None, "cookie 0"),
    ("0xf5000000000000a1", "0xffff000000000000", "has bits outside cookie_mask"),
    ("banana", None, "cookie: 'banana' is not an integer"),
])
def test_bad_cookies(bridge, cookie, mask, fragment):
    args = flows_args(bridge, ["priority=2,ip,actions=drop"], cookie=cookie)
    if mask is not None:
        args["cookie_mask"] = mask
    before = bridge.state()
    failed(module("openflow_flows", args), fragment)
    assert bridge.state() == before


def test_cookie_mask_overlapping_another_task(bridge):
    install_foreign(bridge)  # flows of cookie 0xf5000000000000b2
    before = bridge.state()
    failed(module("openflow_flows", flows_args(bridge, ["priority=2,ip,actions=drop"], cookie="0xf500000000000000",
                                               cookie_mask="0xffff000000000000", state="replaced")),
           "overlaps flows of other cookie(s) 0xf5000000000000b2")
    assert bridge.state() == before


def test_overwriting_another_owners_flow_is_refused(bridge):
    install_foreign(bridge)
    before = bridge.state()
    failed(module("openflow_flows", flows_args(bridge, ["priority=250,arp,actions=drop"])),
           "flows[0]", "same table, priority and match as a flow of cookie 0x77")
    assert bridge.state() == before


def test_unreachable_switch_and_wrong_version(make_bridge):
    port = free_port()
    r = failed(module("openflow_flows", {"switch": "tcp:127.0.0.1:%d" % port, "cookie": COOKIE,
                                         "flows": ["actions=drop"], "timeout": 5}),
               "cannot reach tcp:127.0.0.1:%d" % port, "Connection refused")
    assert r["error_kind"] == "connect"
    failed(module("openflow_flows", {"switch": "fst-of-nope", "cookie": COOKIE, "flows": ["actions=drop"]}),
           "fst-of-nope is not a bridge or a socket")
    old = make_bridge("v13", ports=1, protocols="OpenFlow13")
    before = old.flows(version="OpenFlow13")
    r = failed(module("openflow_flows", {"switch": old.name, "cookie": COOKIE, "flows": ["actions=drop"]}),
               "%s does not speak OpenFlow14 (it offers OpenFlow13;" % old.name, "version negotiation failed")
    assert r["error_kind"] == "version" and old.flows(version="OpenFlow13") == before
    failed(module("openflow_flows", {"switch": old.name, "cookie": COOKIE, "openflow_version": "OpenFlow13",
                                     "flows": ["actions=drop"]}), "OpenFlow13 has no bundles")
    failed(module("openflow_flows", {"switch": "udp:1.2.3.4:5", "cookie": COOKIE}),
           "neither a bridge name nor an OpenFlow target")


def test_selection_method_needs_openflow15(bridge):
    failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "groups": [
        "group_id=5,type=select,selection_method=hash,fields(ip_src),bucket=output:1"]}),
        "groups[0]", "set openflow_version: OpenFlow15")


def test_absent_group_by_id_alone(bridge):
    bridge.ofctl("add-group", bridge.name, "group_id=600,type=all,bucket=output:1")
    bridge.ofctl("add-group", bridge.name, "group_id=601,type=select,bucket=output:1,bucket=output:2")
    args = {"switch": bridge.name, "cookie": COOKIE, "state": "absent", "groups": [600, {"group_id": 601}, "group_id=650"]}
    before = bridge.state()
    r = ok(module("openflow_flows", args, check=True))
    assert r["counts"]["groups_removed"] == 2 and bridge.state() == before
    r = ok(module("openflow_flows", args))
    assert r["groups_removed"] == ["group_id=600,type=all,bucket=actions=output:1",
                                   "group_id=601,type=select,bucket=actions=output:1,bucket=actions=output:2"]
    assert bridge.groups() == []
    assert ok(module("openflow_flows", args))["changed"] is False


def test_selection_method_set_by_hand_is_drift_at_openflow14(make_bridge):
    """OpenFlow 1.4 replies leave out selection_method/fields: the module reads them over 1.5,
    reports the group as drift, and a normal run writes the listed group back (clearing them)."""
    br = make_bridge("h", ports=2)
    plain = "group_id=300,type=select,bucket=output:1,bucket=output:2"
    args = {"switch": br.name, "cookie": COOKIE, "groups": [plain], "flows": ["priority=5,ip,actions=group:300"]}
    ok(module("openflow_flows", args))
    assert ok(module("openflow_flows", args))["changed"] is False
    br.ofctl("mod-group", br.name, "group_id=300,type=select,selection_method=hash,fields(ip_src,nw_proto),"
             "bucket=output:1,bucket=output:2", version="OpenFlow15")
    before = br.state()
    assert "selection_method=hash" in before[1][0]
    r = ok(module("openflow_flows", args, check=True, diff=True))
    assert r["changed"] is True and br.state() == before
    assert r["groups_modified"][0]["before"].startswith(
        "group_id=300,type=select,selection_method=hash,fields(ip_src,nw_proto),bucket=")
    assert "selection_method=hash" in r["diff"]["before"] and "selection_method" not in r["diff"]["after"]
    info = ok(module("openflow_info", {"switch": br.name, "flows": False, "ports": False}))
    assert info["groups"][0]["openflow15_only"] == "selection_method=hash,fields(ip_src,nw_proto)"
    assert any("group 300 also has selection_method=hash" in w for w in info.get("warnings", []))
    r = ok(module("openflow_flows", args))
    assert r["counts"]["groups_modified"] == 1 and "selection_method" not in br.groups()[0]
    assert ok(module("openflow_flows", args))["changed"] is False
    assert "openflow15_only" not in ok(module("openflow_info", {"switch": br.name, "flows": False}))["groups"][0]


def test_groups_at_openflow14_on_a_switch_without_openflow15(make_bridge):
    br = make_bridge("n15", ports=2, protocols="OpenFlow13,OpenFlow14")
    args = {"switch": br.name, "cookie": COOKIE, "groups": ["group_id=7,type=all,bucket=output:1"],
            "flows": ["priority=5,ip,actions=group:7"]}
    assert ok(module("openflow_flows", args))["counts"]["groups_added"] == 1
    assert ok(module("openflow_flows", args))["changed"] is False
    info = ok(module("openflow_info", {"switch": br.name, "cookie": COOKIE}))
    assert info["groups"][0]["group"] == "group_id=7,type=all,bucket=actions=output:1" and not info.get("warnings")


# -- transports --------------------------------------------------------------------------------------

def test_over_tcp(bridge):
    port = free_port()
    sh("ovs-vsctl", "set-controller", bridge.name, "ptcp:%d:127.0.0.1" % port)
    target = "tcp:127.0.0.1:%d" % port
    wait_for_target(target)
    args = {"switch": target, "cookie": COOKIE, "state": "replaced",
            "flows": ["priority=10,in_port=%s,actions=output:2" % sorted(bridge.ports)[0]]}
    r = ok(module("openflow_flows", args))
    assert r["added"] == ["table=0,priority=10,in_port=1,actions=output:2"]
    assert ok(module("openflow_flows", args))["changed"] is False
    info = ok(module("openflow_info", {"switch": target, "cookie": COOKIE, "groups": False}))
    assert [f["flow"] for f in info["flows"]] == r["added"]
    assert info["port_numbers"][bridge.name] == "LOCAL"
    assert ok(module("openflow_flows", dict(args, state="absent", flows=None)))["counts"]["flows_removed"] == 1
    sh("ovs-vsctl", "del-controller", bridge.name)


@pytest.fixture
def pki(tmp_path):
    if sh("ovs-vsctl", "get-ssl").strip():
        pytest.skip("Open vSwitch already has an SSL configuration; not replacing it")
    d = str(tmp_path)
    log = os.path.join(d, "pki.log")
    sh("ovs-pki", "--dir=%s/pki" % d, "-l", log, "init")
    for name, kind in (("sw", "switch"), ("ctl", "controller"), ("rogue", "controller")):
        subprocess.run(["ovs-pki", "--dir=%s/pki" % d, "-l", log, "req+sign", name, kind], cwd=d,
                       capture_output=True, check=True)
    sh("ovs-vsctl", "set-ssl", "%s/sw-privkey.pem" % d, "%s/sw-cert.pem" % d, "%s/pki/controllerca/cacert.pem" % d)
    try:
        yield d
    finally:
        sh("ovs-vsctl", "del-ssl")


def test_over_ssl(bridge, pki):
    port = free_port()
    sh("ovs-vsctl", "set-controller", bridge.name, "pssl:%d:127.0.0.1" % port)
    target = "ssl:127.0.0.1:%d" % port
    tls = {"private_key": "%s/ctl-privkey.pem" % pki, "certificate": "%s/ctl-cert.pem" % pki,
           "ca_cert": "%s/pki/switchca/cacert.pem" % pki}
    wait_for_target(target, ["--private-key=" + tls["private_key"], "--certificate=" + tls["certificate"],
                             "--ca-cert=" + tls["ca_cert"]])
    args = dict(tls, switch=target, cookie=COOKIE, state="replaced", flows=["priority=10,ip,actions=output:2"])
    r = ok(module("openflow_flows", args))
    assert r["counts"]["flows_added"] == 1
    assert ok(module("openflow_flows", args))["changed"] is False
    # The switch is verified: the wrong CA (the controller CA instead of the switch CA) fails.
    bad = dict(args, ca_cert="%s/pki/controllerca/cacert.pem" % pki, timeout=5)
    r = failed(module("openflow_flows", bad), "TLS with %s failed" % target, "certificate verify failed")
    # SSL options are only for ssl: targets, and all three are needed.
    failed(module("openflow_flows", dict(args, ca_cert=None)), "needs private_key, certificate and ca_cert")
    sh("ovs-vsctl", "del-controller", bridge.name)


# -- openflow_info ------------------------------------------------------------------------------------

def test_info_counters_groups_ports(bridge):
    ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "openflow_version": "OpenFlow15",
                                 "groups": ["group_id=9,type=all,bucket=actions=drop"],
                                 "flows": ["priority=10,udp,actions=group:9", "priority=9,tcp,actions=drop"]}))
    # Three packets into our own bridge's table (nothing leaves the bridge's own ports).
    pkt = "ffffffffffff0200000000010800" + "4500001c000000004011ee8ec612000ac6120014" + "04d2003500080000"
    for dummy in range(3):  # UDP 198.18.0.10 -> .20
        bridge.ofctl("packet-out", bridge.name, "in_port=1 packet=%s actions=table" % pkt)
    r = ok(module("openflow_info", {"switch": bridge.name, "cookie": COOKIE, "openflow_version": "OpenFlow15"}))
    udp = [f for f in r["flows"] if f["match"] == "udp"][0]
    assert udp["n_packets"] == 3 and udp["n_bytes"] == 3 * 42 and udp["flow"] == "table=0,priority=10,udp,actions=group:9"
    assert r["groups"][0]["group_id"] == 9 and r["groups"][0]["packet_count"] == 3 and r["groups"][0]["ref_count"] == 1
    assert r["port_numbers"] == dict([(p, str(n)) for p, n in bridge.ports.items()] + [(bridge.name, "LOCAL")])
    assert r["port_names"]["1"] == sorted(bridge.ports)[0]
    everything = ok(module("openflow_info", {"switch": bridge.name, "groups": False, "ports": False}))
    assert any(f["actions"] == "NORMAL" and f["cookie"] == "0x0" for f in everything["flows"])
    assert "groups" not in everything and "ports" not in everything


def test_flows_text_is_the_same_table_as_the_list(bridge, tmp_path):
    flows = ["priority=%d,ip,nw_dst=198.18.%d.0/24,actions=output:2" % (100 + i, i) for i in range(50)]
    ok(module("openflow_flows", flows_args(bridge, flows, state="replaced")))
    text = "# the same 50 flows, written as a flow file\n" + "\n".join(
        "dl_type=0x0800,nw_dst=198.18.%d.0/255.255.255.0,priority=%d,actions=output:2   # line %d" % (i, 100 + i, i)
        for i in range(50)) + "\n"
    r = ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "replaced", "flows_text": text}))
    assert r["changed"] is False and r["counts"]["flows_unchanged"] == 50
    r = failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "flows_text": text + "priority=1,ipx,actions=drop\n"}),
               "flows_text line 52 ('priority=1,ipx,actions=drop')", "field ipx missing value")
    # the same flow file on the managed node: the same table, nothing moves; a bad line is named
    # by the file's path and line, and the table stays as it was
    path = tmp_path / "chain.flows"
    path.write_text(text)
    r = ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "replaced", "flows_file": str(path)}))
    assert r["changed"] is False and r["counts"]["flows_unchanged"] == 50
    path.write_text(text.replace("198.18.7.0", "198.18.77.0") + "priority=1,ipx,actions=drop\n")
    before = [f["flow"] for f in ok(module("openflow_info", {"switch": bridge.name, "cookie": COOKIE}))["flows"]]
    failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "replaced", "flows_file": str(path)}),
           "flows_file %s line 52 ('priority=1,ipx,actions=drop')" % path, "field ipx missing value")
    assert [f["flow"] for f in ok(module("openflow_info", {"switch": bridge.name, "cookie": COOKIE}))["flows"]] == before
    path.write_text(text.replace("198.18.7.0", "198.18.77.0"))
    r = ok(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "state": "replaced", "flows_file": str(path)}))
    assert r["counts"]["flows_added"] == 1 and r["counts"]["flows_removed"] == 1
    failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "flows_file": str(tmp_path / "none.flows")}),
           "flows_file %s cannot be read" % (tmp_path / "none.flows"), "No such file")
    failed(module("openflow_flows", {"switch": bridge.name, "cookie": COOKIE, "flows_file": str(path), "flows_text": text}),
           "mutually exclusive")


def test_over_an_explicit_unix_target(bridge):
    target = "unix:/var/run/openvswitch/%s.mgmt" % bridge.name
    args = {"switch": target, "cookie": COOKIE, "state": "replaced", "flows": ["priority=10,arp,actions=NORMAL"]}
    r = ok(module("openflow_flows", args))
    assert r["added"] == ["table=0,priority=10,arp,actions=NORMAL"]
    assert ok(module("openflow_flows", args))["changed"] is False
    # the bridge name and the unix: target are the same switch
    assert ok(module("openflow_flows", dict(args, switch=bridge.name)))["changed"] is False


def test_one_table_managed_at_openflow14_and_15_in_turn_is_no_change(bridge):
    """The same flows, the table managed at OpenFlow 1.4 and then at 1.5 and back: nothing to
    change either way, though the two versions print some actions differently (a masked 128-bit
    ``ct_label`` set_field is ``load:...->NXM_NX_CT_LABEL[96..103]`` at 1.3/1.4); a ``bundle_load``
    whose ``members:`` list is in brackets (as ovs-ofctl takes it) names ports by name too; and the
    bundle that changed the table says what it did to the bridge's userspace datapath."""
    p1, p2 = sorted(bridge.ports)[:2]
    flows = ["priority=5,ip,actions=ct(commit,exec(set_field:0x1000000000000000000000000/0xff000000000000000000000000->ct_label)),"
             "output:%s" % p1,
             "priority=6,udp,actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:[%s,%s])" % (p1, p2)]
    first = ok(module("openflow_flows", flows_args(bridge, flows, state="replaced", openflow_version="OpenFlow14")))
    assert first["changed"] and first["counts"]["flows_added"] == 2 and first["datapath"] == "purged", first
    # (ovs-ofctl prints the list without the brackets)
    members = "members:%d,%d" % (bridge.ports[p1], bridge.ports[p2])
    assert any(members in line for line in bridge.flows("cookie=%s/-1" % COOKIE)), bridge.flows("cookie=%s/-1" % COOKIE)
    for version in ("OpenFlow15", "OpenFlow14", "OpenFlow15"):
        r = ok(module("openflow_flows", flows_args(bridge, flows, state="replaced", openflow_version=version), diff=True))
        assert r["changed"] is False and r["counts"]["flows_unchanged"] == 2, (version, r)
        assert "datapath" not in r, r
