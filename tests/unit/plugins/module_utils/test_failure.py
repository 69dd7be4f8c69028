# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure detection (two witnesses, hysteresis) and the trunk's BFD settings, without a platform."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _failure, _trunk
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import Result
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB


def looks(*states, step=0.5):
    """[(t, dataplane, ssh)] from 'ud' strings: u up, d down, first letter the data plane."""
    return [(i * step, s[0] == "u", s[1] == "u") for i, s in enumerate(states)]


def test_both_witnesses_down_for_the_whole_grace_is_a_failure():
    v = _failure.assess({"mh2": looks("uu", "dd", "dd", "dd", "dd", "dd", "dd", "dd")}, grace=3.0)["mh2"]
    assert v["status"] == "failed" and v["down_for"] == 3.0 and v["flaps"] == 1


def test_down_for_less_than_the_grace_is_only_suspect():
    v = _failure.assess({"mh2": looks("dd", "dd", "dd")}, grace=3.0)["mh2"]
    assert v["status"] == "suspect" and v["down_for"] == 1.0


def test_one_good_look_starts_the_count_again():
    # down 3 s in all, but the data plane answered once at 1.5 s: a flap is not a failure
    v = _failure.assess({"mh2": looks("dd", "dd", "dd", "ud", "dd", "dd", "dd")}, grace=3.0)["mh2"]
    assert v["status"] == "suspect" and v["down_for"] == 1.0 and v["flaps"] == 2


def test_one_witness_down_is_not_a_failure():
    # the trunk cut while the host answers: isolated once the grace is over (a failover fences it)
    trunk_cut = _failure.assess({"mh1": looks(*["du"] * 10)}, grace=1.0)["mh1"]
    assert (trunk_cut["status"], trunk_cut["down_for"], trunk_cut["dataplane"], trunk_cut["ssh"]) == ("isolated", 4.5, False, True)
    assert _failure.assess({"mh1": looks("du", "du")}, grace=1.0)["mh1"]["status"] == "suspect"
    # the trunk forwards but SSH is gone: traffic flows, no failover
    sshd_gone = _failure.assess({"mh1": looks(*["ud"] * 10)}, grace=1.0)["mh1"]
    assert sshd_gone["status"] == "degraded"
    # a trunk down for the whole grace, SSH flapping in between: still isolated (the data plane decides)
    assert _failure.assess({"mh1": looks("du", "dd", "du", "dd", "du")}, grace=2.0)["mh1"]["status"] == "isolated"
    assert sorted(_failure.FAILOVER) == ["failed", "isolated"]


def test_a_fenced_host_stays_fenced_whatever_it_answers():
    mark = {"state": "fenced", "since": "2026-12-04T12:00:00Z", "reason": "failed"}
    v = _failure.assess({"mh2": looks("uu")}, grace=3.0, fenced={"mh2": mark})["mh2"]
    assert v["status"] == "fenced"


def test_a_host_powered_off_by_the_platform_is_not_a_failed_one():
    mark = {"state": "powered_off", "since": "2026-12-04T01:00:00Z", "reason": "quiet hours"}
    out = _failure.assess({"mh2": looks("dd", "dd", "dd"), "mh1": looks("dd", "dd", "dd")}, grace=0.5, fenced={"mh2": mark})
    assert out["mh2"]["status"] == "powered_off" and out["mh1"]["status"] == "failed"
    assert "powered_off" not in _failure.FAILOVER


def test_healthy_and_a_zero_grace():
    out = _failure.assess({"mh1": looks("uu"), "mh2": looks("dd")}, grace=0)
    assert out["mh1"]["status"] == "healthy" and out["mh2"]["status"] == "failed"
    with pytest.raises(ValueError, match="mh3: no look"):
        _failure.assess({"mh3": []}, grace=1)


def test_the_data_plane_witness_is_bfd_when_on_else_the_link():
    on = {"bfd": _trunk.bfd_summary({"enable": "true", "min_rx": "100"}, {"state": "down", "forwarding": "false"}), "link_state": "up"}
    off = {"bfd": _trunk.bfd_summary({}, {}), "link_state": "up"}
    assert _failure.dataplane_up(on) is False
    assert _failure.dataplane_up(off) is True
    assert _failure.dataplane_up(None) is False
    assert on["bfd"]["detect_ms"] == 300


def test_ssh_witness_wants_a_greeting_not_just_a_port():
    def serve(sock, greeting):
        conn = sock.accept()[0]
        conn.sendall(greeting)
        conn.close()

    for greeting, want in ((b"SSH-2.0-OpenSSH_9.2\r\n", True), (b"HTTP/1.1 400\r\n", False)):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        t = threading.Thread(target=serve, args=(srv, greeting))
        t.start()
        assert _failure.ssh_answers("127.0.0.1", srv.getsockname()[1], timeout=2) is want
        t.join()
        srv.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert _failure.ssh_answers("127.0.0.1", port, timeout=1) is False


def test_bfd_settings_and_the_changes_they_need():
    assert _trunk.bfd_want(True, 100, 100) == {"enable": "true", "min_tx": "100", "min_rx": "100"}
    assert _trunk.bfd_want(False) == {"enable": "false"}
    with pytest.raises(ValueError, match="min_tx"):
        _trunk.bfd_want(True, -1, 100)
    with pytest.raises(ValueError, match="at least 1 ms"):
        _trunk.bfd_want(True, 0, 100)
    have = {"enable": "true", "min_tx": "100", "min_rx": "300", "decay_min_rx": "1000", "bfd_src_ip": "169.254.1.1"}
    to_set, to_remove = _trunk.bfd_changes(have, _trunk.bfd_want(True, 100, 100))
    # the operator's own key (bfd_src_ip) is left alone
    assert to_set == {"min_rx": "100"} and to_remove == ["decay_min_rx"]
    assert _trunk.bfd_changes(have, {k: have[k] for k in ("enable", "min_tx", "min_rx", "decay_min_rx")}) == ({}, [])


def _table(headings, rows):
    def datum(v):
        if isinstance(v, dict):
            return ["map", [[k, x] for k, x in v.items()]]
        return v
    return json.dumps({"headings": headings, "data": [[datum(v) for v in row] for row in rows]})


def test_read_all_takes_bfd_link_and_fence_from_two_tables():
    calls = []

    def run(argv, check=True, **kw):
        calls.append(argv)
        if "Interface" in argv:
            out = _table(["name", "bfd", "bfd_status", "link_state", "admin_state", "ofport"],
                         [["fsl-mh1-tr", {"enable": "true", "min_rx": "100", "min_tx": "100"},
                           {"state": "up", "forwarding": "true", "remote_state": "up", "flap_count": "1"}, "up", "up", 3],
                          ["fsl-mh2-tr", {}, {}, "down", "up", 4]])
        else:
            out = _table(["name", "external_ids"],
                         [["fsl-mh1-tr", {}], ["fsl-mh2-tr", {"flowstream-fence": "fenced", "flowstream-fence-since": "T"}]])
        return Result(argv, 0, out, "")

    got = _trunk.read_all(OVSDB(run=run), ["fsl-mh1-tr", "fsl-mh2-tr", "fsl-mh9-tr"])
    assert len(calls) == 2
    assert got["fsl-mh1-tr"]["bfd"]["forwarding"] is True and got["fsl-mh1-tr"]["fence"] is None
    assert got["fsl-mh2-tr"]["fence"] == {"state": "fenced", "since": "T", "reason": None}
    assert got["fsl-mh2-tr"]["bfd"]["enabled"] is False and got["fsl-mh9-tr"] is None
    assert [_failure.dataplane_up(got[p]) for p in sorted(got)] == [True, False, False]


def test_every_trunk_down_at_once_is_the_switch_not_the_hosts():
    down = looks(*["du"] * 8)
    out = _failure.assess({"mh1": down, "mh2": down, "mh3": looks(*["dd"] * 8)}, grace=1.0)
    assert sorted(v["status"] for v in out.values()) == ["failed", "isolated", "isolated"]
    assert _failure.switch_at_fault(out) is True
    assert {v["status"] for v in out.values()} == {"suspect"} and "switch is at fault" in out["mh1"]["why"]
    # one trunk still forwarding: the others are the hosts' own fault
    out = _failure.assess({"mh1": down, "mh2": looks(*["uu"] * 8)}, grace=1.0)
    assert _failure.switch_at_fault(out) is False and out["mh1"]["status"] == "isolated"
    # fenced hosts do not count, and one host alone is never "the switch"
    mark = {"state": "fenced", "since": "T", "reason": "failed"}
    out = _failure.assess({"mh1": down, "mh2": down}, grace=1.0, fenced={"mh2": mark})
    assert _failure.switch_at_fault(out) is False and out["mh1"]["status"] == "isolated"
