# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""openflow_flows / openflow_info as Ansible modules: arguments in, exit/fail JSON out.

ovs-ofctl is replaced by a script of canned Open vSwitch 3.1 answers keyed by subcommand; the
test asserts the exact argv the module ran, that check mode sends no bundle, and that failures
come back as fail_json with the switch's words.
"""

from __future__ import annotations

import json

import pytest

from ansible.module_utils import basic

from ansible_collections.flowstream.platform.plugins.module_utils import _ofctl
from ansible_collections.flowstream.platform.plugins.modules import openflow_flows, openflow_info

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # pragma: no cover - ansible-core < 2.19
    import contextlib

    from ansible.module_utils.common.text.converters import to_bytes

    @contextlib.contextmanager
    def patch_module_args(args):
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old


class Exit(Exception):
    def __init__(self, kind, result):
        super(Exit, self).__init__(kind)
        self.kind = kind
        self.result = result


@pytest.fixture
def ansible_exit(monkeypatch):
    def exit_json(self, **kw):
        raise Exit("exit", kw)

    def fail_json(self, **kw):
        raise Exit("fail", kw)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **kw: "/usr/bin/" + name)


class Script:
    """Answers ovs-ofctl calls by subcommand; records argv and stdin."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, data=None, timeout=None):
        self.calls.append((argv, data))
        for sub in ("dump-flows", "dump-groups", "dump-group-stats", "dump-ports-desc", "parse-flows",
                    "parse-group", "add-flows", "bundle", "dpif/show", "revalidator/purge"):
            if sub in argv:
                answer = self.answers.get(sub, (0, "", ""))
                return answer(argv, data) if callable(answer) else answer
        raise AssertionError("unexpected argv %s" % argv)

    def subcommands(self):
        return [next(a for a in argv if not a.startswith("-") and a not in ("/usr/bin/ovs-ofctl",)
                     and not a.startswith("OpenFlow")) for argv, data in self.calls]


def run_module(mod, args, script, monkeypatch):
    monkeypatch.setattr(_ofctl, "run_subprocess", script)
    with patch_module_args(args):
        with pytest.raises(Exit) as info:
            mod.main()
    return info.value


DUMP_EMPTY = "OFPST_FLOW reply (OF1.4) (xid=0x2):\n"
DUMP_ONE = DUMP_EMPTY + (" cookie=0xf5000000000000a1, duration=3.1s, table=0, n_packets=5, n_bytes=300, "
                         "priority=5,ip actions=output:1\n")
DUMP_ALL = DUMP_ONE + " cookie=0x0, duration=9.0s, table=0, n_packets=0, n_bytes=0, priority=0 actions=NORMAL\n"


def parse_answer(argv, data):
    lines = data.splitlines()
    out = "chosen protocol: OXM-OpenFlow14\n"
    canned = {"priority=5,ip,actions=output:1": "ADD priority=5,ip actions=output:1",
              "dl_type=0x0800,priority=5,actions=output:1": "ADD priority=5,ip actions=output:1",
              "priority=6,tcp,actions=drop": "ADD priority=6,tcp actions=drop"}
    for i, line in enumerate(lines):
        out += "OFPT_FLOW_MOD (OF1.4) (xid=0x%x): %s\n" % (i + 1, canned[line])
    return 0, out, ""


def test_present_adds_with_one_bundle(ansible_exit, monkeypatch):
    script = Script({"dump-flows": lambda argv, data: (0, DUMP_ONE if "cookie=" in argv[-1] else DUMP_ALL, ""),
                     "parse-flows": parse_answer,
                     "dpif/show": (0, "system@ovs-system: hit:0 missed:0\n  br0:\n    br0 65534/0: (internal)\n", "")})
    out = run_module(openflow_flows, {"switch": "br0", "cookie": "0xf5000000000000a1",
                                      "flows": ["dl_type=0x0800,priority=5,actions=output:1",
                                                "priority=6,tcp,actions=drop"]}, script, monkeypatch)
    assert out.kind == "exit", out.result
    r = out.result
    assert r["changed"] is True and r["added"] == ["table=0,priority=6,tcp,actions=drop"]
    assert r["counts"]["flows_unchanged"] == 1 and r["counts"]["flows_before"] == 1
    argvs = [argv for argv, data in script.calls]
    assert ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--timeout=60", "dump-flows", "br0",
            "cookie=0xf5000000000000a1/0xffffffffffffffff"] in argvs
    assert ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "parse-flows", "-"] in argvs
    assert argvs[-2] == ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--timeout=60", "--bundle",
                         "add-flows", "br0", "-"]
    assert script.calls[-2][1] == "add cookie=0xf5000000000000a1,priority=6,tcp,actions=drop\n"
    # then the datapath of the bridge's Open vSwitch is looked at (a kernel one here: not purged)
    assert argvs[-1] == ["ovs-appctl", "dpif/show"] and r["datapath"] == "kernel datapath"


def test_check_mode_sends_no_bundle(ansible_exit, monkeypatch):
    script = Script({"dump-flows": (0, DUMP_EMPTY, ""), "parse-flows": parse_answer})
    args = {"switch": "br0", "cookie": 0xF5000000000000A1, "flows": ["priority=6,tcp,actions=drop"],
            "_ansible_check_mode": True, "_ansible_diff": True}
    out = run_module(openflow_flows, args, script, monkeypatch)
    assert out.kind == "exit" and out.result["changed"] is True
    assert "add-flows" not in script.subcommands() and "bundle" not in script.subcommands()
    assert out.result["diff"]["after"] == "table=0,priority=6,tcp,actions=drop\n"


def test_no_change_no_bundle(ansible_exit, monkeypatch):
    script = Script({"dump-flows": (0, DUMP_ONE, ""), "parse-flows": parse_answer})
    out = run_module(openflow_flows, {"switch": "br0", "cookie": "0xf5000000000000a1", "state": "replaced",
                                      "flows": ["priority=5,ip,actions=output:1"]}, script, monkeypatch)
    assert out.result["changed"] is False
    assert script.subcommands() == ["dump-flows", "parse-flows"]


def test_switch_rejection_is_fail_json_with_switch_words(ansible_exit, monkeypatch):
    err = ("Error OFPBAC_BAD_OUT_PORT for: OFPT_FLOW_MOD (OF1.4) (xid=0x6): ADD priority=6,tcp "
           "cookie:0xf5000000000000a1 actions=drop\n"
           "Error OFPBFC_MSG_FAILED for: OFPT_BUNDLE_CONTROL (OF1.4) (xid=0x9):\n"
           " bundle_id=0 type=COMMIT_REQUEST flags=atomic ordered\n"
           "ovs-ofctl: talking to unix:/var/run/openvswitch/br0.mgmt (Protocol error)\n")
    script = Script({"dump-flows": (0, DUMP_EMPTY, ""), "parse-flows": parse_answer, "add-flows": (1, "", err)})
    out = run_module(openflow_flows, {"switch": "br0", "cookie": "0xf5000000000000a1",
                                      "flows": ["priority=6,tcp,actions=drop"]}, script, monkeypatch)
    assert out.kind == "fail"
    assert out.result["msg"].startswith("the switch rejected flows[0] ('priority=6,tcp,actions=drop'): "
                                        "OFPBAC_BAD_OUT_PORT")


def test_unreachable_is_fail_json_with_command(ansible_exit, monkeypatch):
    script = Script({"dump-flows": (1, "", "ovs-ofctl: connecting to tcp:127.0.0.1:1 (Connection refused)\n")})
    out = run_module(openflow_flows, {"switch": "tcp:127.0.0.1:1", "cookie": 5, "flows": []}, script, monkeypatch)
    assert out.kind == "fail" and out.result["error_kind"] == "connect"
    assert out.result["msg"] == "cannot reach tcp:127.0.0.1:1: ovs-ofctl: connecting to tcp:127.0.0.1:1 (Connection refused)"
    assert "dump-flows tcp:127.0.0.1:1" in out.result["cmd"]


def test_validation_happens_before_any_command(ansible_exit, monkeypatch):
    script = Script({})
    out = run_module(openflow_flows, {"switch": "br0", "cookie": 0, "flows": []}, script, monkeypatch)
    assert out.kind == "fail" and "cookie 0" in out.result["msg"] and script.calls == []
    out = run_module(openflow_flows, {"switch": "ssl:127.0.0.1:6653", "cookie": 5}, script, monkeypatch)
    assert out.kind == "fail" and "needs private_key, certificate and ca_cert" in out.result["msg"]
    assert script.calls == []


def test_info_module(ansible_exit, monkeypatch):
    ports = ("OFPST_PORT_DESC reply (OF1.4) (xid=0x2):\n 1(p1): addr:0a:33:77:d4:65:63\n     config:     0\n"
             "     state:      LIVE\n LOCAL(br0): addr:f2:f4:35:b7:22:41\n     config:     PORT_DOWN\n"
             "     state:      LINK_DOWN\n")
    groups = "OFPST_GROUP_DESC reply (OF1.4) (xid=0x2):\n group_id=8,type=ff,bucket=watch_port:1,actions=output:1\n"
    stats = ("OFPST_GROUP reply (OF1.4) (xid=0x2):\n group_id=8,duration=1.5s,ref_count=2,packet_count=4,"
             "byte_count=400,bucket0:packet_count=4,byte_count=400\n")
    script = Script({"dump-flows": (0, DUMP_ONE, ""), "dump-groups": (0, groups, ""),
                     "dump-group-stats": (0, stats, ""), "dump-ports-desc": (0, ports, "")})
    out = run_module(openflow_info, {"switch": "br0", "cookie": "0xf5000000000000a1"}, script, monkeypatch)
    r = out.result
    assert out.kind == "exit" and r["changed"] is False
    assert r["flows"][0]["n_packets"] == 5 and r["flows"][0]["flow"] == "table=0,priority=5,ip,actions=output:1"
    assert r["groups"] == [{"group_id": 8, "type": "ff", "group": "group_id=8,type=ff,bucket=watch_port:1,actions=output:1",
                            "ref_count": 2, "packet_count": 4, "byte_count": 400, "duration": 1.5,
                            "buckets": [{"packet_count": 4, "byte_count": 400}]}]
    assert r["port_numbers"] == {"p1": "1", "br0": "LOCAL"} and r["port_names"] == {"1": "p1", "LOCAL": "br0"}


def test_info_cookie_mask_needs_cookie(ansible_exit, monkeypatch):
    out = run_module(openflow_info, {"switch": "br0", "cookie_mask": "0xff"}, Script({}), monkeypatch)
    assert out.kind == "fail" and "cookie_mask" in out.result["msg"]


# -- flow_cookies: many owners in one bundle -------------------------------------------------------

RANGE_ARGS = {"switch": "br0", "cookie": "0xf5c0000000000000", "cookie_mask": "0xffff000000000000", "flow_cookies": True}
DUMP_RANGE = DUMP_EMPTY + (
    " cookie=0xf5c000000000a001, duration=3.1s, table=0, n_packets=5, n_bytes=300, priority=10,tcp actions=output:1\n"
    " cookie=0xf5c000000000a001, duration=3.1s, table=0, n_packets=0, n_bytes=0, priority=9,tcp actions=output:2\n"
    " cookie=0xf5c000000000b002, duration=3.1s, table=0, n_packets=0, n_bytes=0, priority=10,udp actions=output:1\n")


def parse_echo(argv, data):
    """parse-flows of OVS 3.1 for flows of the shape priority=N,PROTO,actions=A (no cookie in them)."""
    out = "chosen protocol: OXM-OpenFlow14\n"
    for i, line in enumerate(data.splitlines()):
        assert "cookie" not in line, "the module must strip a flow's own cookie before parse-flows: %r" % line
        head, sep, actions = line.partition(",actions=")
        out += "OFPT_FLOW_MOD (OF1.4) (xid=0x%x): ADD %s actions=%s\n" % (i + 1, head, actions)
    return 0, out, ""


def test_flow_cookies_argv_and_bundle_text(ansible_exit, monkeypatch):
    whole = DUMP_RANGE + " cookie=0x77, duration=9.0s, table=0, n_packets=0, n_bytes=0, priority=0 actions=NORMAL\n"
    script = Script({"dump-flows": lambda argv, data: (0, DUMP_RANGE if "cookie=" in argv[-1] else whole, ""),
                     "parse-flows": parse_echo})
    args = dict(RANGE_ARGS, state="replaced", flows=[
        "cookie=0xf5c000000000a001,priority=10,tcp,actions=output:1",      # unchanged
        {"cookie": "0xf5c000000000b002", "priority": 9, "match": "tcp", "actions": "output:2"},  # moved A -> B
        "cookie=0xf5c000000000b002,priority=8,udp,actions=output:3",       # new in B
    ])                                                                     # B's priority=10,udp: removed
    out = run_module(openflow_flows, args, script, monkeypatch)
    assert out.kind == "exit", out.result
    argvs = [argv for argv, data in script.calls]
    assert ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--timeout=60", "dump-flows", "br0",
            "cookie=0xf5c0000000000000/0xffff000000000000"] in argvs
    parse = [data for argv, data in script.calls if "parse-flows" in argv]
    assert parse == ["priority=10,tcp,actions=output:1\npriority=9,tcp,actions=output:2\npriority=8,udp,actions=output:3\n"]
    # the whole table is read too (an add must not overwrite a flow outside the range)
    assert ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--timeout=60", "dump-flows", "br0"] in argvs
    assert argvs[-2] == ["/usr/bin/ovs-ofctl", "-O", "OpenFlow14", "--no-names", "--timeout=60", "--bundle",
                         "add-flows", "br0", "-"]
    assert script.calls[-2][1] == ("delete_strict table=0,priority=10,udp\n"
                                   "delete_strict table=0,priority=9,tcp\n"
                                   "add cookie=0xf5c000000000b002,priority=9,tcp,actions=output:2\n"
                                   "add cookie=0xf5c000000000b002,priority=8,udp,actions=output:3\n")
    r = out.result
    assert r["counts"] == dict(r["counts"], flows_added=1, flows_removed=1, flows_modified=1, flows_unchanged=1,
                               flows_before=3, flows_after=3)
    assert r["modified"] == [{"before": "cookie=0xf5c000000000a001,table=0,priority=9,tcp,actions=output:2",
                              "after": "cookie=0xf5c000000000b002,table=0,priority=9,tcp,actions=output:2"}]
    assert r["added"] == ["cookie=0xf5c000000000b002,table=0,priority=8,udp,actions=output:3"]
    assert r["removed"] == ["cookie=0xf5c000000000b002,table=0,priority=10,udp,actions=output:1"]


def test_flow_cookie_outside_the_range_fails_before_any_command(ansible_exit, monkeypatch):
    script = Script({})
    out = run_module(openflow_flows, dict(RANGE_ARGS, flows=["cookie=0xf5c000000000a001,priority=1,actions=drop",
                                                             {"cookie": 0x77, "priority": 2, "actions": "drop"}]),
                     script, monkeypatch)
    assert out.kind == "fail" and script.calls == []
    assert out.result["msg"].startswith("flows[1] ('cookie=0x77,priority=2,actions=drop'): cookie: 0x77 lies outside "
                                        "the task's cookie range 0xf5c0000000000000/0xffff000000000000")
    out = run_module(openflow_flows, dict(RANGE_ARGS, cookie_mask=None), script, monkeypatch)
    assert out.kind == "fail" and "flow_cookies needs a cookie range" in out.result["msg"] and script.calls == []
    out = run_module(openflow_flows, dict(RANGE_ARGS, flow_cookies=False, flows=["cookie=0xf5c000000000a001,actions=drop"]),
                     script, monkeypatch)
    assert out.kind == "fail" and "sets a cookie" in out.result["msg"] and "flow_cookies: true" in out.result["msg"]
    assert script.calls == []


def test_flow_cookies_check_mode_diff(ansible_exit, monkeypatch):
    script = Script({"dump-flows": (0, DUMP_RANGE, ""), "parse-flows": parse_echo})
    args = dict(RANGE_ARGS, state="replaced", _ansible_check_mode=True, _ansible_diff=True,
                flows=["cookie=0xf5c000000000b002,priority=10,tcp,actions=output:1"])
    out = run_module(openflow_flows, args, script, monkeypatch)
    assert out.kind == "exit" and out.result["changed"] is True
    assert "add-flows" not in script.subcommands() and "bundle" not in script.subcommands()
    assert out.result["diff"]["after"] == "cookie=0xf5c000000000b002,table=0,priority=10,tcp,actions=output:1\n"
    assert out.result["diff"]["before"].splitlines() == [
        "cookie=0xf5c000000000a001,table=0,priority=10,tcp,actions=output:1",
        "cookie=0xf5c000000000b002,table=0,priority=10,udp,actions=output:1",
        "cookie=0xf5c000000000a001,table=0,priority=9,tcp,actions=output:2"]
