# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe's background sessions, both ends for real over loopback (127.0.0.1 only, no
namespaces), session directories under a temporary root: started and stopped with the same
figures as a run; stopped twice, unknown, or with a dead end gives a clear error; an abandoned
session ends by itself; only the session's own processes are ever signalled."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _probe as pr


def settings(port, **over):
    cfg = {"dst": "127.0.0.1", "src": "127.0.0.1", "settle": 0.2, "duration": 30,
           "groups": [{"name": "a", "flows": 4, "rate": 1000, "destination_port": port, "source_port": port + 100},
                      {"name": "b", "flows": 2, "rate": 500, "destination_port": port + 50, "source_port": port + 100}]}
    cfg.update(over)
    return cfg


def ended(pid):
    info = pr.proc_info(pid)
    return info is None or info[0] == "Z"


def wait_until(what, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return what()


@pytest.fixture(name="port")
def _port():
    return random.randint(20000, 29000)


def test_started_then_stopped_gives_the_figures_of_a_run(tmp_path, port):
    root = str(tmp_path / "sessions")
    session = pr.start_session(settings(port), root=root, limits={"lost": 0})
    assert set(session) == {"id", "dir", "started_ns", "pids", "settings", "swept"} and session["swept"] == []
    assert session["dir"] == os.path.join(root, session["id"]) and pr.SESSION_ID.match(session["id"])
    assert abs(session["started_ns"] - time.time_ns()) < 5 * 10 ** 9
    state = pr.load_session(session["id"], root)
    for role in ("sender", "receiver"):
        assert pr._process_of_session(state, role) == (True, "pid %d running" % session["pids"][role])  # pylint: disable=protected-access
        # a session of its own: not in the test's process group
        assert os.getsid(session["pids"][role]) == session["pids"][role]
    assert sorted(os.listdir(session["dir"])) == ["probe.py", "receiver.err", "receiver.out", "sender.err", "sender.out",
                                                  "session.json"]
    status = pr.session_status(session, root)
    assert (status["sender"]["state"], status["receiver"]["state"]) == ("running", "running")
    time.sleep(1.0)
    mid = time.time_ns()
    time.sleep(0.5)
    result, kept = pr.stop_session(session, root, windows=[{"name": "half", "start": mid, "end": time.time_ns()}])
    assert kept == {"lost": 0}
    t = result["totals"]
    assert t["sent"] > 1500 and (t["received"], t["lost"], t["reordered"], t["duplicated"]) == (t["sent"], 0, 0, 0), result["notes"]
    assert result["groups"]["a"]["flows"] == [0, 1, 2, 3] and result["groups"]["b"]["flows"] == [4, 5]
    assert result["groups"]["a"]["totals"]["sent"] + result["groups"]["b"]["totals"]["sent"] == t["sent"]
    half = result["windows"]["half"]
    assert 600 < half["sent"] < 900 and half["lost"] == 0 and half["groups"]["a"]["sent"] > half["groups"]["b"]["sent"]
    assert result["session"]["id"] == session["id"] and result["session"]["sender_stopped_by"] == "signal 15"
    assert result["settings"]["groups"][0]["name"] == "a" and pr.check_limits(result, kept) == []
    assert not os.path.exists(session["dir"])
    assert wait_until(lambda: all(ended(pid) for pid in session["pids"].values()), 5)
    # stopped twice: the session is gone, and the error says which and why
    with pytest.raises(pr.ProbeError, match="session %s does not exist .*stopped already, or never started" % session["id"]):
        pr.stop_session(session["id"], root)


def test_an_unknown_or_malformed_session_is_a_clear_error(tmp_path):
    root = str(tmp_path)
    with pytest.raises(pr.ProbeError, match=r"session 20991231-000000-abcdef does not exist \(no %s/20991231-000000-abcdef/session.json\)"
                       % root):
        pr.stop_session("20991231-000000-abcdef", root)
    for bad in ("../etc", "", {"dir": "/tmp"}, 42):
        with pytest.raises(pr.ProbeError, match="session must be a session id"):
            pr.stop_session(bad, root)
    with pytest.raises(pr.ProbeError, match="does not end in the session id"):
        pr.stop_session({"id": "abc", "dir": "/etc"}, root)


def test_a_session_whose_sender_died_says_so_and_ends_the_rest(tmp_path, port):
    root = str(tmp_path)
    session = pr.start_session(settings(port), root=root)
    os.kill(session["pids"]["sender"], signal.SIGKILL)
    assert wait_until(lambda: ended(session["pids"]["sender"]), 5)
    with pytest.raises(pr.ProbeError) as err:
        pr.stop_session(session["id"], root)
    text = str(err.value)
    assert text.startswith("session %s: the sender (pid %d: " % (session["id"], session["pids"]["sender"]))
    assert "ended without its report (killed, or it failed); the last lines of sender.err: " in text
    assert not os.path.exists(session["dir"])
    assert wait_until(lambda: ended(session["pids"]["receiver"]), 5)    # the receiver of the session was ended too


def test_a_failing_end_at_start_is_named_and_nothing_is_left(tmp_path, port):
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", port + 50))
    try:
        with pytest.raises(pr.ProbeError, match=r"the receiver of session .* did not start \(rc=2\): .*UDP port %d" % (port + 50)):
            pr.start_session(settings(port), root=str(tmp_path))
    finally:
        busy.close()
    assert os.listdir(str(tmp_path)) == []


def test_an_abandoned_session_ends_by_itself_after_its_duration(tmp_path, port):
    root = str(tmp_path)
    session = pr.start_session(settings(port, duration=0.6), root=root)
    assert wait_until(lambda: all(ended(pid) for pid in session["pids"].values()), 0.6 + 0.2 + 5)
    status = pr.session_status(session["id"], root)
    assert (status["sender"]["state"], status["receiver"]["state"]) == ("done", "done")
    result, _kept = pr.stop_session(session["id"], root)
    assert result["totals"]["sent"] == 900 and result["totals"]["lost"] == 0       # 1500 pps for 0.6 s
    assert result["session"]["sender_stopped_by"] == "duration" and result["session"]["receiver_stopped_by"] == "all arrived"
    assert any("had ended on its own at its bound (duration 0.6 s)" in n for n in result["notes"])
    assert not os.path.exists(session["dir"])


def test_a_stopped_session_that_lost_nothing_does_not_wait_its_whole_settle_time(tmp_path, port):
    root = str(tmp_path)
    session = pr.start_session(settings(port, settle=5.0), root=root)
    time.sleep(0.5)
    started = time.monotonic()
    result, _kept = pr.stop_session(session["id"], root)
    took = time.monotonic() - started
    assert result["totals"]["sent"] > 300 and result["totals"]["lost"] == 0, result["notes"]
    assert result["session"]["receiver_stopped_by"] == "all arrived" and took < 2.0, took


def test_only_the_session_s_own_processes_are_ever_signalled(tmp_path):
    """A pid recorded for a session that is now another program is left alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # pylint: disable=consider-using-with
    try:
        info = pr.proc_info(other.pid)
        directory = tmp_path / "20991231-000000-000001"
        directory.mkdir()
        files = pr.session_files(str(directory))
        state = {"id": directory.name, "dir": str(directory), "started_ns": time.time_ns(), "run_id": 1,
                 "program": files["program"], "files": files, "pids": {"sender": other.pid, "receiver": other.pid},
                 "starttimes": {"sender": info[1], "receiver": info[1]}, "settle": 0.1, "windows": [], "cfg": {}}
        (directory / "session.json").write_text(json.dumps(state))
        alive, found = pr._process_of_session(state, "sender")  # pylint: disable=protected-access
        assert not alive and found.startswith("pid %d: another program now: " % other.pid)
        with pytest.raises(pr.ProbeError, match="the sender .*another program now"):
            pr.stop_session(directory.name, str(tmp_path))
        time.sleep(0.3)
        assert other.poll() is None        # never signalled
        # a pid whose start time differs is another process, whatever it runs
        state["starttimes"]["sender"] += 1
        state["program"] = "-c"
        assert "another process now" in pr._process_of_session(state, "sender")[1]  # pylint: disable=protected-access
    finally:
        other.kill()
        other.wait()


def _left_behind(root, sid, owner, pids):
    """A session directory as a killed playbook run leaves it: its state written, its ends gone."""
    directory = os.path.join(root, sid)
    os.makedirs(directory)
    state = {"id": sid, "dir": directory, "pids": {"sender": pids[0], "receiver": pids[1]},
             "starttimes": {"sender": 1, "receiver": 1}, "program": "/nonexistent/probe.py", "run_id": 7,
             "cfg": {"watch_pid": owner} if owner else {}}
    with open(os.path.join(directory, pr.SESSION_FILES["state"]), "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    return directory


def test_sessions_of_killed_playbook_runs_are_swept_at_the_next_start_and_no_other(tmp_path, port):
    root = str(tmp_path / "sessions")
    dead = subprocess.Popen(["true"])  # pylint: disable=consider-using-with
    dead.wait()
    orphan = _left_behind(root, "20261207-010000-aaaaaa", dead.pid, (dead.pid, dead.pid))
    owned = _left_behind(root, "20261207-010000-bbbbbb", os.getpid(), (dead.pid, dead.pid))   # its run still runs
    by_hand = _left_behind(root, "20261207-010000-cccccc", None, (dead.pid, dead.pid))       # no owner: never swept
    half = os.path.join(root, "20261207-010000-dddddd")                                        # being started: no state yet
    os.makedirs(half)
    other = os.path.join(root, "not-a-session")
    os.makedirs(other)
    session = pr.start_session(settings(port), root=root)
    try:
        assert session["swept"] == ["20261207-010000-aaaaaa"]
        assert not os.path.exists(orphan)
        assert all(os.path.isdir(d) for d in (owned, by_hand, half, other, session["dir"]))
    finally:
        pr.stop_session(session, root=root)
    assert pr.sweep_orphans(root) == [] and pr.sweep_orphans(str(tmp_path / "none")) == []
