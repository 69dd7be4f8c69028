# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The order barrier of a make-before-break move: markers (as the plan writes them, as the hold
reads them) and the gate that holds a new copy's output until its marker or its timeout."""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils import _deploy, _hold


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def frame(n):
    return bytes.fromhex("02000000000102000000000208004500") + bytes([n]) * 30


def marker(instance, direction, token, vlan=None):
    raw = bytes.fromhex(_deploy.marker_frame(instance, direction, token))
    if vlan is not None:
        raw = raw[:12] + bytes.fromhex("8100%04x" % vlan) + raw[12:]
    return raw


def test_the_plans_marker_is_what_the_hold_reads():
    raw = marker("web4b51a", "fwd", "3f2a9c1e0b4d")
    assert len(raw) == 60 and raw[:6] == b"\xff" * 6 and raw[12:14] == b"\x88\xb5"
    assert _hold.marker_of(raw) == ("web4b51a", "fwd", "3f2a9c1e0b4d")
    assert _hold.marker_of(marker("web4b51a", "rev", "t", vlan=101)) == ("web4b51a", "rev", "t")  # tagged on a trunk
    assert _hold.marker_of(frame(1)) is None
    assert _hold.marker_of(raw[:14] + b"FSMARK1 only two") is None


def test_a_direction_is_held_until_its_own_marker_then_let_out_in_order():
    clock = Clock()
    gate = _hold.Gate("web4b51a", "tok", timeout=2.0, clock=clock)
    assert gate.offer("fwd", frame(1)) == [] and gate.offer("fwd", frame(2)) == []
    assert gate.offer("rev", frame(9)) == []
    # another move's marker, or this instance's marker of the other direction, releases nothing
    assert gate.offer("fwd", marker("other", "fwd", "tok")) == [] and gate.holding("fwd")
    assert gate.offer("fwd", marker("web4b51a", "rev", "tok")) == [] and gate.holding("fwd")
    assert gate.offer("fwd", marker("web4b51a", "fwd", "old")) == [] and gate.holding("fwd")
    clock.now += 0.5
    assert gate.offer("fwd", marker("web4b51a", "fwd", "tok")) == [frame(1), frame(2)]
    assert gate.status["fwd"] == {"released_by": "marker", "held": 2, "held_ms": 500.0}
    assert gate.offer("fwd", frame(3)) == [frame(3)]  # open from now on; markers are never sent on
    assert gate.offer("fwd", marker("web4b51a", "fwd", "tok")) == []
    assert gate.holding("rev") and not gate.done()
    assert gate.offer("rev", marker("web4b51a", "rev", "tok")) == [frame(9)]
    assert gate.done()


def test_a_direction_whose_marker_never_comes_goes_after_its_timeout_losing_nothing():
    clock = Clock()
    gate = _hold.Gate("m1", "tok", timeout=2.0, clock=clock)
    clock.now += 30  # armed long before traffic comes: the timeout counts from the first held frame
    assert gate.due() == {}
    gate.offer("rev", frame(5))
    clock.now += 1.9
    assert gate.due() == {}
    clock.now += 0.2
    assert gate.due() == {"rev": [frame(5)]}
    assert gate.status["rev"]["released_by"] == "timeout" and gate.holding("fwd")


def test_multicast_chatter_of_a_new_leg_does_not_start_the_timeout():
    clock = Clock()
    gate = _hold.Gate("m1", "tok", timeout=2.0, clock=clock)
    ipv6_rs = bytes.fromhex("333300000002" + "020000000001" + "86dd") + b"\0" * 50
    assert gate.offer("fwd", ipv6_rs) == []
    clock.now += 10
    assert gate.due() == {} and gate.holding("fwd")
    gate.offer("fwd", frame(1))
    clock.now += 2.5
    assert gate.due() == {"fwd": [ipv6_rs, frame(1)]}   # held in order with the rest, lost nothing


def test_a_watched_hold_counts_and_releases_on_its_marker():
    clock = Clock()
    gate = _hold.Gate("k1", "tok", clock=clock)
    gate.watch("fwd", frame(1))
    gate.watch("fwd", frame(2))
    clock.now += 0.25
    gate.watch("fwd", marker("k1", "fwd", "tok"))
    assert gate.status["fwd"] == {"released_by": "marker", "held": 2, "held_ms": 250.0}


def test_every_move_of_kernel_or_process_kind_gets_relays_markers_and_a_hold():
    move = {"instance": "web4b51a", "from": "mh1", "to": "mh2", "from_vlans": {"left": 102, "right": 103},
            "to_vlans": {"left": 100, "right": 101}}
    relays = _deploy._marker_relays(move, {"cookie": 0xF5C0000000000001, "priority": 100}, "t1", "t2")
    assert [(r["match"], r["actions"]) for r in relays] == [
        ("in_port=t1,dl_vlan=103,dl_type=0x88b5", "set_field:4196->vlan_vid,output:t2"),   # fwd: out of old right, into new left
        ("in_port=t1,dl_vlan=102,dl_type=0x88b5", "set_field:4197->vlan_vid,output:t2")]   # rev: out of old left, into new right
    assert _deploy.marker_token(move) == _deploy.marker_token(dict(move))
    assert _deploy.marker_token(move) != _deploy.marker_token(dict(move, to="mh3"))


def test_a_released_hold_goes_at_twice_the_rate_it_came_in():
    clock = Clock()
    gate = _hold.Gate("m1", "tok", clock=clock)
    for n in range(100):
        gate.offer("fwd", frame(n % 250))
    clock.now += 0.05   # 100 frames in 50 ms: 2000 frames/s
    gate.offer("fwd", marker("m1", "fwd", "tok"))
    frames, rate_bytes = gate.pace("fwd")
    assert frames == _hold.MIN_PACE  # 2 x 2000 = 4000/s is below the floor
    assert rate_bytes == frames * 64  # bytes per frame counted at least as a minimal Ethernet frame


def test_the_program_lets_a_released_hold_go_in_order_behind_which_new_frames_wait(monkeypatch):
    import argparse
    from ansible_collections.flowstream.platform.plugins.module_utils import _packet_programs
    monkeypatch.setattr(_packet_programs, "fs_hold", _hold)
    program = _packet_programs.Program(argparse.Namespace(mode="wire", stats=None, pattern=None, action="drop", dscp=8,
                                                          left="left", right="right"))
    program.gate = _hold.Gate("w1", "tok", timeout=10.0)
    program.run_dir = "/nonexistent"
    monkeypatch.setattr(_hold, "write_status", lambda *a, **k: None)
    sent = []
    program.send = lambda out, frames: sent.extend(frames)
    outs = {"left_to_right": "R", "right_to_left": "L"}
    for n in range(50):
        program.gated("R", "left_to_right", frame(n))
    assert sent == []
    program.gated("R", "left_to_right", marker("w1", "fwd", "tok"))
    program.gated("R", "left_to_right", frame(99))          # new: behind the held ones
    while program.drain_backlogs(outs):
        pass
    assert sent == [frame(n) for n in range(50)] + [frame(99)]
    program.gated("L", "right_to_left", frame(7))           # the other direction still holds
    assert sent[-1] == frame(99)


class _Sock:
    def __init__(self):
        self.sent = []

    def send(self, frame):
        self.sent.append(frame)


def test_a_pace_under_which_the_queue_does_not_shrink_doubles_until_it_drains():
    """The arrival rate seen while holding was too low: the queue stands still at the first pace,
    so the pace doubles until the queue drains - never a standing queue let out in one burst."""
    now = [0.0]
    changes = []
    queue = [400]

    def depth(_dev):
        if changes and changes[-1][1] != "%dbit" % (100000 * 8):
            queue[0] = max(0, queue[0] - 30)  # faster than what comes in: it drains
        return queue[0]

    def pause(seconds):
        now[0] += seconds

    paced = _hold._open("left", "", _Sock(), pace_bytes=100000, clock=lambda: now[0], pause=pause, depth=depth, change=changes.append)
    assert [c[1] for c in changes[:2]] == ["%dbit" % (100000 * 8), "%dbit" % (200000 * 8)]
    assert paced["left"] <= 1 and paced["paced_ms"] < 1000 and paced["rate"] == 200000
    assert changes[-1] == _hold.OPEN_TBF  # then wide open


def test_nothing_queued_nothing_paced():
    changes = []
    assert _hold._open("left", "rate 400mbit burst 256kb latency 50ms", _Sock(), pace_bytes=100000, depth=lambda _d: 0,
                       change=changes.append) is None
    assert changes == [["rate", "400mbit", "burst", "256kb", "latency", "50ms"]]


def test_a_direction_without_traffic_or_marker_is_let_go_a_timeout_after_the_other_s_marker():
    now = [100.0]
    gate = _hold.Gate("web4b50a", "tok", timeout=10.0, clock=lambda: now[0])
    gate.watch("fwd", bytes.fromhex(_deploy.marker_frame("web4b50a", "fwd", "tok")))
    assert not gate.holding("fwd") and gate.holding("rev")
    now[0] += 9.9
    assert gate.due() == {}
    now[0] += 0.2
    assert "rev" in gate.due() and gate.done()
    assert gate.status["rev"]["released_by"] == "timeout"
