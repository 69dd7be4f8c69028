# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Click's parts that need no Click: the built-in types' configurations, firewall rules in IPFilter
form, what a running instance can take live, and the ControlSocket protocol (against a stand-in
server on a unix socket)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue
from ansible_collections.flowstream.platform.plugins.module_utils import _kind_click as click
from ansible_collections.flowstream.platform.plugins.module_utils._click_control import ClickControl, ClickControlError
from ansible_collections.flowstream.platform.plugins.module_utils._instance import Spec
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError


def spec(type_name, params=None):
    definition = _catalogue.BUILTIN_TYPES[type_name]
    return Spec("ck1", "click", type_name, _catalogue.check_params("ck1", definition, params or {}), definition,
                {"left": 101, "right": 102}, "fs-host")


@pytest.mark.parametrize("rule, pattern", [
    ("ip saddr 198.18.1.99 drop", "1 src host 198.18.1.99"),
    ("ip daddr 198.18.1.0/28 accept", "0 dst net 198.18.1.0/28"),
    ("udp dport 8063 counter drop", "1 udp && dst port 8063"),
    ("ip saddr 198.18.1.1 tcp sport 1000-2000 drop", "1 src host 198.18.1.1 && tcp && src port >= 1000 && src port <= 2000"),
    ("ip protocol icmp accept", "0 icmp"),
    ("counter drop", "1 all"),
    ("deny src net 10.0.0.0/8", "1 src net 10.0.0.0/8"),
    ("allow udp && dst port 53", "0 udp && dst port 53"),
])
def test_firewall_rules_become_ipfilter_patterns(rule, pattern):
    assert click.ipfilter_rule("ck1", 0, rule) == pattern


@pytest.mark.parametrize("rule, words", [
    ("ip saddr 198.18.1.99", "ends without a verdict"),
    ("ct state established accept", "cannot translate 'ct state established'"),
    ("ip saddr 198.18.1.1, 198.18.1.2 drop", "without commas"),
    ("", "one rule on one line"),
])
def test_rules_the_click_kind_cannot_take_are_refused_by_index(rule, words):
    with pytest.raises(InstanceError) as err:
        click.ipfilter_rule("ck1", 3, rule)
    assert err.value.field == "params.rules[3]" and words in str(err.value)


def test_every_built_in_type_has_the_common_shape():
    for type_name, params in [("wire", {}), ("monitor", {}), ("firewall", {"rules": ["ip saddr 198.18.1.99 drop"]}),
                              ("shaper", {"rate": "400mbit", "burst": "256kb"}), ("classify", {"match": ["udp && dst port 9000"]})]:
        text = click.config_for(spec(type_name, params))
        decls, links = click.declarations(text)
        for leg in ("left", "right"):
            assert decls["in_%s" % leg] == ("FromDevice", "%s, PROMISC true, SNIFFER true" % leg)
            assert decls["out_%s" % leg][0] == "Counter" and decls["to_%s" % leg] == ("ToDevice", leg)
        assert any(link.startswith("q_right ->") and link.endswith("out_right -> to_right;") for link in links), text


def test_firewall_policy_and_non_ip_frames():
    text = click.config_for(spec("firewall", {"rules": ["udp dport 8063 drop"], "policy": "drop"}))
    assert "fw_fwd :: IPFilter(1 udp && dst port 8063, 1 all);" in text
    assert "ip_fwd [1] -> denied_fwd;" in text  # ARP takes the policy, as in the kernel kind
    assert "ip_rev [1] -> q_left;" in click.config_for(spec("firewall", {"rules": []}))


def test_shaper_paces_at_the_rate_and_sizes_its_queue():
    decls = click.declarations(click.config_for(spec("shaper", {"rate": "400mbit", "burst": "256kb", "latency": "50ms"})))[0]
    assert decls["shape_right"] == ("BandwidthShaper", "50000000Bps")
    assert decls["q_right"] == ("Queue", "1842")  # (50e6 B/s x 50 ms + 256 KiB) / 1500 B


def test_classify_marks_drops_or_counts():
    marked = click.config_for(spec("classify", {"match": ["udp && dst port 9000", "tcp"], "dscp": 10}))
    assert "cl_fwd :: IPClassifier(udp && dst port 9000, tcp, -);" in marked
    assert "hits_fwd -> dscp_fwd -> q_right;" in marked and "dscp_fwd :: SetIPDSCP(10);" in marked
    assert "cl_fwd [2] -> q_right;" in marked
    assert "hits_fwd -> drop_fwd;" in click.config_for(spec("classify", {"match": ["udp"], "action": "drop"}))
    with pytest.raises(InstanceError) as err:
        click.config_for(spec("classify", {"match": ["udp", "src port 1, 2"]}))
    assert err.value.field == "params.match[1]"


def test_what_a_running_instance_can_take_through_its_handlers():
    old = click.config_for(spec("firewall", {"rules": ["ip saddr 198.18.1.99 drop"]}))
    new = click.config_for(spec("firewall", {"rules": ["ip saddr 198.18.1.98 drop"]}))
    assert click.argument_changes(old, new) == {"fw_fwd": "1 src host 198.18.1.98, 0 all", "fw_rev": "1 src host 198.18.1.98, 0 all"}
    assert click.argument_changes(old, old) == {}
    # another rule count is still arguments; another policy for non-IP frames is a new connection
    assert set(click.argument_changes(old, click.config_for(spec("firewall", {"rules": []})))) == {"fw_fwd", "fw_rev"}
    assert click.argument_changes(old, click.config_for(spec("firewall", {"rules": [], "policy": "drop"}))) is None
    assert click.argument_changes(old, click.config_for(spec("wire"))) is None
    assert click.argument_changes("FromDevice(left) -> ToDevice(right);", old) is None
    assert click.argument_changes("x :: Counter; y :: Idle -> x;", old) is None  # not one declaration per line


def test_a_built_in_type_error_names_params_and_a_given_configuration_names_click_config(tmp_path, monkeypatch):
    binary = tmp_path / "click"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    seen = []

    class Refusal:
        rc, stdout = 1, ""

        def __init__(self, folder):
            self.stderr = "%s/ck1.click:4: While configuring 'fw_fwd :: IPFilter':\n  pattern 0: garbage\nRouter could not be initialized!\n" % folder

    def run(argv, **_):
        seen.append(argv)
        return Refusal(os.path.dirname(argv[-1]))
    kind = click.ClickKind(None, run=run, binary=str(binary))
    with pytest.raises(InstanceError) as err:
        kind.validate(spec("firewall", {"rules": ["deny srcx 1"]}))
    assert err.value.field == "params.rules[0]"
    assert str(err.value) == ("instance ck1: params.rules[0]: Click refuses the configuration: ck1.click:4: While configuring "
                              "'fw_fwd :: IPFilter': | pattern 0: garbage")
    assert seen[0][:3] == ["unshare", "--net", "sh"]  # a namespace of its own: nothing on the host changes
    own = Spec("ck1", "click", "wire", {}, {"click": {"config": "Idle -> Discard;"}}, {"left": 1, "right": 2}, "fs-host")
    with pytest.raises(InstanceError) as err:
        kind.validate(own)
    assert err.value.field == "click.config"


# -- the control socket -------------------------------------------------------------------------------
class StandIn(threading.Thread):
    """Answers as Click's ControlSocket does, from a table {command line: answer bytes}."""

    def __init__(self, path, answers):
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.answers = answers
        self.got = []

    def run(self):
        conn = self.server.accept()[0]
        conn.sendall(b"Click::ControlSocket/1.3\r\n")
        buffer = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                line = line.rstrip(b"\r").decode()
                if line.startswith("WRITEDATA"):
                    size = int(line.split()[-1])
                    while len(buffer) < size:
                        buffer += conn.recv(4096)
                    line, buffer = "%s <%s>" % (line, buffer[:size].decode()), buffer[size:]
                self.got.append(line)
                if line == "QUIT":
                    conn.close()
                    return
                conn.sendall(self.answers.get(line, b"510 No such handler\r\n"))


def data(text):
    return b"200 Read handler OK\r\nDATA %d\r\n%s" % (len(text), text.encode())


def test_control_socket_reads_writes_and_reports_errors(tmp_path):
    path = str(tmp_path / "click.sock")
    server = StandIn(path, {
        "READ list": data("2\nin_left\nout_right\n"),
        "READ in_left.count": data("42\n"),
        "WRITEDATA fw_fwd.config 5 <0 all>": b"200 Write handler 'fw_fwd.config' OK\r\n",
        "WRITEDATA hotconfig 3 <bad>": b"520-Write handler 'hotconfig' error:\r\n520 bad.click:1: syntax error\r\n",
    })
    server.start()
    with ClickControl(path) as ctl:
        assert ctl.elements() == ["in_left", "out_right"]
        assert ctl.read("in_left.count") == "42\n"
        ctl.write("fw_fwd.config", "0 all")
        with pytest.raises(ClickControlError) as err:
            ctl.write("hotconfig", "bad")
        assert err.value.code == 520 and err.value.message == "Write handler 'hotconfig' error:\nbad.click:1: syntax error"
        with pytest.raises(ClickControlError):
            ctl.read("nothing.here")
    server.join(5)
    assert server.got[-1] == "QUIT"


def test_an_instance_that_does_not_answer_has_no_counters(tmp_path, monkeypatch):
    monkeypatch.setattr(click, "socket_path", lambda instance: str(tmp_path / "none.sock"))
    assert click.counters("ck1", timeout=0.5) is None


def test_socket_drops_are_added_up_across_reads(tmp_path, monkeypatch):
    """The kernel clears PACKET_STATISTICS at every read: the reads are kept as totals."""
    monkeypatch.setattr(click, "RUN_DIR", str(tmp_path))
    (tmp_path / "ck1").mkdir()
    first = {"in_left": {"class": "FromDevice", "kernel_drops": 3}, "in_right": {"class": "FromDevice", "kernel_drops": 0}}
    click._kernel_drop_totals("ck1", first)  # pylint: disable=protected-access
    second = {"in_left": {"class": "FromDevice", "kernel_drops": 2}, "in_right": {"class": "FromDevice", "kernel_drops": 0}}
    click._kernel_drop_totals("ck1", second)  # pylint: disable=protected-access
    assert (first["in_left"]["kernel_drops"], second["in_left"]["kernel_drops"], second["in_right"]["kernel_drops"]) == (3, 5, 0)
