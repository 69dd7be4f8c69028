# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of processing modules: catalogue, rulesets, Click configurations, reports."""

from __future__ import annotations

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue
from ansible_collections.flowstream.platform.plugins.module_utils._host_info import packet_rates, ranges
from ansible_collections.flowstream.platform.plugins.module_utils._instance import Spec, check_id, check_vlans, ensure_leg_ports, port_name
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kind_click import ClickKind, config_for, graph_config
from ansible_collections.flowstream.platform.plugins.module_utils._kind_kernel import rate_bytes, ruleset
from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Port
from ansible_collections.flowstream.platform.plugins.modules.blackbox_info import health


def spec(type_name="wire", kind="kernel", params=None, definition=None):
    cat = _catalogue.merged({})
    return Spec("fw1", kind, type_name, params or {}, definition or cat.get(type_name, {}), {"left": 101, "right": 102}, "fs-host")


# -- catalogue ------------------------------------------------------------------------------------
def test_every_builtin_type_states_its_kinds_and_resources():
    for name, definition in _catalogue.BUILTIN_TYPES.items():
        assert definition["kinds"] and set(definition["kinds"]) <= set(_catalogue.KINDS), name
        assert definition["resources"]["memory"] > 0, name


@pytest.mark.parametrize("args, field, words", [
    (("antivirus", "kernel", {}), "type", "unknown type 'antivirus'"),
    (("inspect", "kernel", {"patterns": ["x"]}), "kind", "cannot run as kind 'kernel'"),
    (("wire", "teleport", {}), "kind", "unknown kind"),
    (("shaper", "kernel", {}), "params.rate", "is required"),
    (("shaper", "kernel", {"rate": "fast"}), "params.rate", "a tc rate"),
    (("firewall", "kernel", {"rules": [], "colour": "red"}), "params.colour", "unknown parameter"),
    (("inspect", "process", {"patterns": ["x"], "dscp": 99}), "params.dscp", "between 0 and 63"),
])
def test_resolve_names_the_field(args, field, words):
    type_name, kind, params = args
    with pytest.raises(InstanceError) as err:
        _catalogue.resolve(_catalogue.merged({}), "fw1", type_name, kind, params)
    assert err.value.field == field and words in str(err.value) and "fw1" in str(err.value)


def test_resolve_fills_defaults_and_checks_host_kinds():
    assert _catalogue.resolve(_catalogue.merged({}), "s1", "shaper", "kernel", {"rate": "10MBIT"}) == \
        {"rate": "10mbit", "burst": "64kb", "latency": "50ms"}
    with pytest.raises(InstanceError, match="does not run kind 'kernel'"):
        _catalogue.resolve(_catalogue.merged({}), "s1", "wire", "kernel", {}, host_kinds=["process"])


def test_user_types_are_checked_and_may_not_redefine_builtins():
    cat = _catalogue.merged({"dpi": {"kinds": ["process"], "process": {"command": ["/usr/bin/dpi", "{left}", "{right}"]},
                                     "params": {"level": {"type": "int", "default": 2}}}})
    assert cat["dpi"]["kinds"] == ["process"] and "wire" in cat
    with pytest.raises(InstanceError, match="redefines the built-in type 'wire'"):
        _catalogue.merged({"wire": {"kinds": ["process"]}})
    with pytest.raises(InstanceError) as err:
        _catalogue.merged({"dpi": {"kinds": ["process"]}})
    assert err.value.field == "catalogue.dpi.process.command"
    with pytest.raises(InstanceError, match="unknown key"):
        _catalogue.merged({"dpi": {"kinds": ["process"], "proces": {}}})


# -- names -------------------------------------------------------------------------------------
def test_ids_and_vlans():
    check_id("fw-1")
    assert port_name("fw-1", "left") == "fs-fw-1-l"
    for bad in ("1fw", "FW", "a" * 11, "fw_1", ""):
        with pytest.raises(InstanceError):
            check_id(bad)
    check_vlans("x", {"left": 2, "right": 4094})
    for bad, field in (({"left": 1, "right": 5}, "vlans.left"), ({"left": 5, "right": 5}, "vlans"),
                       ({"left": 5}, "vlans"), ({"left": 5, "right": True}, "vlans.right")):
        with pytest.raises(InstanceError) as err:
            check_vlans("x", bad)
        assert err.value.field == field


# -- kernel rulesets ----------------------------------------------------------------------------------
def test_firewall_ruleset_replaces_the_table_and_maps_rule_lines():
    text, digest, lines = ruleset(spec("firewall", params={"rules": ["udp dport 9 drop", "tcp dport 23 drop"], "policy": "drop"}))
    rows = text.splitlines()
    assert rows[:2] == ["table bridge flowstream", "delete table bridge flowstream"]
    assert "policy drop;" in text and ('sha256:%s"' % digest) in text
    assert {rows[n - 1].strip(): i for n, i in lines.items()} == {"udp dport 9 drop": 0, "tcp dport 23 drop": 1}


def test_ruleset_digest_is_stable_and_changes_with_the_rules():
    one = ruleset(spec("firewall", params={"rules": ["udp dport 9 drop"], "policy": "accept"}))[1]
    assert one == ruleset(spec("firewall", params={"rules": ["udp dport 9 drop"], "policy": "accept"}))[1]
    assert one != ruleset(spec("firewall", params={"rules": ["udp dport 10 drop"], "policy": "accept"}))[1]


def test_monitor_ruleset_keeps_per_flow_counters():
    text = ruleset(spec("monitor"))[0]
    assert "flags dynamic" in text and "counter" in text and "update @flows" in text


def test_multi_line_rule_is_refused():
    with pytest.raises(InstanceError) as err:
        ruleset(spec("firewall", params={"rules": ["udp dport 9 drop\ntcp dport 1 drop"], "policy": "accept"}))
    assert err.value.field == "params.rules[0]"


@pytest.mark.parametrize("rate, value", [("10mbit", 1250000), ("500kbit", 62500), ("1gbit", 125000000), ("100kbps", 100000)])
def test_rate_bytes(rate, value):
    assert rate_bytes(rate) == value


# -- click ----------------------------------------------------------------------------------------
def test_click_wire_and_graph_configurations():
    assert "FromDevice(left" in config_for(spec("wire", "click")) and "ToDevice(right)" in config_for(spec("wire", "click"))
    graph = {"elements": {"in": "FromDevice(left)", "cnt": "Counter", "out": "Queue -> ToDevice(right)"},
             "connections": [["in", "cnt"], ["cnt", "out"]]}
    with pytest.raises(InstanceError):
        graph_config("c1", graph)  # an element declaration is one Class(args), not a pipeline
    graph["elements"]["out"] = "ToDevice(right)"
    text = graph_config("c1", graph)
    assert text == "cnt :: Counter;\nin :: FromDevice(left);\nout :: ToDevice(right);\nin -> cnt;\ncnt -> out;\n"
    with pytest.raises(InstanceError) as err:
        graph_config("c1", {"elements": {"a": "Idle"}, "connections": [["a", "b"]]})
    assert err.value.field == "click.connections[0]"


def test_click_missing_binary_is_a_plain_error(tmp_path):
    kind = ClickKind(ActionLog(), binary=str(tmp_path / "click"))
    with pytest.raises(InstanceError) as err:
        kind.validate(spec("wire", "click"))
    assert err.value.field == "kind" and "not packaged for Debian 12" in str(err.value)


# -- reports ---------------------------------------------------------------------------------------
def test_vlan_ranges():
    assert ranges([2, 3, 4, 7, 9, 10]) == ["2-4", "7", "9-10"]
    assert ranges([]) == []


def test_blackbox_health():
    ports = [Port("7", "bb-l", state=("LIVE",)), Port("8", "bb-r", config=("PORT_DOWN",), state=("LINK_DOWN",))]
    report = health("ids1", {"left": "bb-l", "right": 8}, ports, {"7": {"rx_packets": 4}})
    assert not report["healthy"]
    assert report["problems"] == ["right port bb-r is administratively down", "right port bb-r has no link"]
    assert report["ports"]["left"]["rx_packets"] == 4 and report["ports"]["left"]["link_up"]
    assert health("ids1", {"left": "bb-l", "right": "gone"}, ports, {})["problems"] == ["right port gone does not exist on the switch"]


class _FakeOVS:
    """The OVSDB calls ensure_leg_ports makes, on an in-memory host bridge."""

    def __init__(self, ports):
        self.ports = ports          # {port: {"bridge", "tag", "type", "external_ids"}}
        self.calls = []

    def port_bridge(self, port):
        return self.ports.get(port, {}).get("bridge")

    def list_table(self, table, columns, records=()):
        return [{c: self.ports[r].get(c) for c in columns} for r in records if r in self.ports]

    def port_type(self, port):
        return self.ports[port].get("type") or "system"

    def add_port(self, bridge, port, external_ids=None, tag=None, iface_settings=None, port_type=None, replace=False):
        self.calls.append(("add_port", port, tag, port_type, replace))
        self.ports[port] = {"bridge": bridge, "tag": tag, "type": "" if port_type == "system" else port_type,
                            "external_ids": {}}

    def set_external_ids(self, table, record, ids):
        self.calls.append(("set_external_ids", record))
        self.ports[record]["external_ids"] = dict(ids)

    def del_port(self, port, bridge=None):
        self.calls.append(("del_port", port))
        self.ports.pop(port, None)

    def vsctl(self, *args):
        self.calls.append(("vsctl",) + args)


def _leg_spec(port_type):
    s = Spec("fw1", "kernel", "wire", {}, {"resources": {"cpu": 0.1, "memory": 16}}, {"left": 101, "right": 102},
             "fs-host", port_type=port_type)
    return s


@pytest.mark.parametrize("have, want", [("", "afxdp-nonpmd"), ("afxdp-nonpmd", "system")])
def test_a_leg_of_another_port_type_is_re_created_then_left_alone(have, want):
    spec = _leg_spec(want)
    ovs = _FakeOVS({port_name("fw1", leg): {"bridge": "fs-host", "tag": spec.vlans[leg], "type": have,
                                            "external_ids": spec.external_ids(leg)} for leg in ("left", "right")})
    log = ActionLog()
    ensure_leg_ports(ovs, spec, log)
    assert [c for c in ovs.calls if c[0] == "add_port"] == [
        ("add_port", "fs-fw1-l", 101, want, True), ("add_port", "fs-fw1-r", 102, want, True)]
    assert all("re-created fs-fw1-" in a and "as a %s port" % want in a for a in log.actions if "re-created" in a)
    assert log.changed
    # the ports carry their labels again, and a second pass changes nothing
    assert all(p["external_ids"] == spec.external_ids(leg) for leg, p in
               (("left", ovs.ports["fs-fw1-l"]), ("right", ovs.ports["fs-fw1-r"])))
    again = ActionLog()
    ovs.calls = []
    ensure_leg_ports(ovs, spec, again)
    assert not again.changed and not [c for c in ovs.calls if c[0] != "vsctl"]


@pytest.mark.parametrize("state, running", [("running", True), ("restarting", True), ("stopped", False)])
def test_a_supervisor_that_wrote_stopped_is_not_running(tmp_path, monkeypatch, state, running):
    """Between writing "stopped" and exiting, a supervisor is still a live process: not running (a user saw
    module_host_info say running right after killing one)."""
    import json
    from ansible_collections.flowstream.platform.plugins.module_utils import _kind_process
    monkeypatch.setattr(_kind_process, "run_dir", lambda instance: str(tmp_path))
    monkeypatch.setattr(_kind_process, "_pid_alive", lambda pid, needle: True)
    (tmp_path / "status.json").write_text(json.dumps({"supervisor_pid": 4036, "child_pid": 4037, "state": state, "restarts": 0}))
    status = _kind_process.ProcessKind(ActionLog()).status("nu4mon")
    assert status["running"] is running and status["state"] == state
    assert status["supervisor_pid"] == (4036 if running else None)


def test_packet_rates_count_what_the_bridge_sent_into_both_legs_over_the_sample():
    instances = {
        "fw1": {"legs": {"left": {"ofport": 5, "tx_packets": 1000}, "right": {"ofport": 6, "tx_packets": 200}}},
        "mon1": {"legs": {"left": {"ofport": 7, "tx_packets": 50}, "right": {"ofport": 8, "tx_packets": 50}}},
        "half": {"legs": {"left": {"ofport": 9, "tx_packets": 0}, "right": {"ofport": 10, "tx_packets": 0}}},
        "bare": {"legs": {}},
    }
    counters = {"5": {"tx_packets": 4000}, "6": {"tx_packets": 1200}, "7": {"tx_packets": 50}, "8": {"tx_packets": 40},
                "9": {"tx_packets": 500}}
    assert packet_rates(instances, counters, 0.5) == 8000
    assert instances["fw1"]["pps"] == 8000          # (3000 + 1000) packets in 0.5 s
    assert instances["mon1"]["pps"] == 0            # a counter that went back (a port made again) counts nothing
    assert "pps" not in instances["half"] and "pps" not in instances["bare"]   # a leg not read twice: no rate


# -- a new command that does not stay up: the running one runs again --------------------------------

class _Legs:
    def __init__(self, *args, **kwargs):
        pass

    def ensure(self, *args, **kwargs):
        pass


def _fake_process_kind(monkeypatch, fails_too=False):
    from ansible_collections.flowstream.platform.plugins.module_utils import _kind_process
    monkeypatch.setattr(_kind_process, "NamespaceLegs", _Legs)

    class Fake(_kind_process.ProcessKind):
        def __init__(self):
            super().__init__(ActionLog())
            self.running, self.started = ["prog", "--old"], []

        def validate(self, spec):
            pass

        def install_programs(self):
            pass

        def argv(self, spec):
            return ["prog", "--new"]

        def status(self, instance):
            return {"running": self.running is not None, "argv": self.running}

        def stop(self, instance):
            self.running = None

        def start(self, instance, argv):
            self.started.append(argv)
            if argv == ["prog", "--new"] or fails_too:
                raise InstanceError(instance, "process", "the program did not stay up; its log says: bad option")
            self.running = argv
    return Fake()


def test_a_new_command_that_does_not_stay_up_rolls_back_to_the_running_one(monkeypatch):
    kind = _fake_process_kind(monkeypatch)
    with pytest.raises(InstanceError, match=r"instance fw1: process: the program did not stay up; its log says: bad option - "
                                            r"rolled back: it runs with its running configuration again"):
        kind.ensure(spec(kind="process"))
    assert kind.started == [["prog", "--new"], ["prog", "--old"]] and kind.running == ["prog", "--old"]
    assert [a for a in kind.log.actions if "again" in a] == ["started fw1 again with its running configuration"]


def test_a_roll_back_that_fails_too_says_both(monkeypatch):
    kind = _fake_process_kind(monkeypatch, fails_too=True)
    with pytest.raises(InstanceError, match=r"bad option; starting it again with its running configuration failed too"):
        kind.ensure(spec(kind="process"))
    assert kind.running is None


def test_an_instance_that_was_not_running_has_nothing_to_roll_back_to(monkeypatch):
    kind = _fake_process_kind(monkeypatch)
    kind.running = None
    with pytest.raises(InstanceError) as info:
        kind.ensure(spec(kind="process"))
    assert "rolled back" not in str(info.value) and kind.started == [["prog", "--new"]]
