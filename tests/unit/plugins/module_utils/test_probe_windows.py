# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The probe's groups and windows, pure: several groups of flows (checks, global flow ids, each
group's totals), and windows judged from canned send records and arrivals - loss in and out of
a window, reordering, duplicates, gaps straddling a window's edges, several groups. One test
runs both ends over loopback with two groups and a window."""

from __future__ import annotations

import random
from array import array

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _probe as pr

MS = 1000000  # ns
T0 = 1764139200 * 10 ** 9  # a CLOCK_REALTIME origin for the canned runs


def ns(ms):
    return T0 + int(round(ms * MS))


def judge(windows, sent, arrivals, groups=None, spacing_ms=10.0):
    """windows: {name: (start_ms, end_ms)}; sent: {flow: [tx_ms of seq 0, 1, ...]};
    arrivals: [(flow, seq, rx_ms)] in arrival order (tx from ``sent``); groups: {flow: (group, spacing_ms)}."""
    an = pr.Analyzer(record=True)
    for flow, seq, rx in arrivals:
        an.arrive(flow, seq, ns(sent[flow][seq]), ns(rx))
    send_times = {flow: array("q", [ns(t) for t in txs]) for flow, txs in sent.items()}
    groups = groups or {flow: (pr.DEFAULT_GROUP, spacing_ms) for flow in sent}
    flows = [{"flow": flow, "group": groups[flow][0], "spacing_ns": int(groups[flow][1] * MS)} for flow in sorted(sent)]
    parsed = pr.parse_windows([{"name": name, "start": ns(a), "end": ns(b)} for name, (a, b) in windows.items()])
    return pr.window_figures(parsed, flows, send_times, an.record_arrays())


def one_flow_with_outage(lost=range(40, 50)):
    """One flow, a packet every 10 ms (seq s sent at 10 s ms), each arriving 1 ms later, but ``lost``."""
    sent = {0: [10.0 * s for s in range(100)]}
    arrivals = [(0, s, 10.0 * s + 1) for s in range(100) if s not in lost]
    return sent, arrivals


def pick(win, *keys):
    return tuple(win[k] for k in keys)


KEYS = ("sent", "received", "lost", "reordered", "duplicated", "max_gap_ms", "blackout_ms")


# --- windows --------------------------------------------------------------------------------------

def test_loss_inside_a_window_and_none_outside_it():
    sent, arrivals = one_flow_with_outage()
    got = judge({"before": (0, 300), "outage": (395, 505), "after": (600, 900)}, sent, arrivals)
    # before: seqs 0..30 sent; the arrival interval 291 -> 301 overlaps its end
    assert pick(got["before"], *KEYS) == (31, 31, 0, 0, 0, 10.0, 0.0)
    # the outage: seqs 40..50 sent, 40..49 lost; seq 39 arrived at 391, seq 50 at 501: 110 ms, 100 ms over the spacing
    assert pick(got["outage"], *KEYS) == (11, 1, 10, 0, 0, 110.0, 100.0)
    assert got["outage"]["max_gap_flow"] == 0
    assert pick(got["after"], *KEYS) == (31, 31, 0, 0, 0, 10.0, 0.0)
    assert got["outage"]["start_ns"] == ns(395) and got["outage"]["end_ns"] == ns(505)
    assert got["outage"]["groups"] == {pr.DEFAULT_GROUP: {k: v for k, v in got["outage"].items()
                                                          if k not in ("start_ns", "end_ns", "groups")}}


def test_a_gap_that_straddles_a_window_edge_counts_whole():
    sent, arrivals = one_flow_with_outage()
    got = judge({"into": (380, 420), "inside": (420, 460), "out_of": (480, 520), "after": (502, 520),
                 "touching": (501, 520)}, sent, arrivals)
    # the window catches the start of the outage: 38..42 sent, 40..42 lost, the whole 110 ms gap
    assert pick(got["into"], *KEYS) == (5, 2, 3, 0, 0, 110.0, 100.0)
    # entirely inside the outage: all it sent lost, the gap around it
    assert pick(got["inside"], *KEYS) == (5, 0, 5, 0, 0, 110.0, 100.0)
    assert pick(got["out_of"], *KEYS) == (5, 3, 2, 0, 0, 110.0, 100.0)
    # from 502 on: the gap ended at 501 (the edges are inclusive: from 501 it still touches)
    assert pick(got["after"], *KEYS) == (2, 2, 0, 0, 0, 10.0, 0.0)
    assert got["touching"]["max_gap_ms"] == 110.0


def test_reordered_and_duplicated_arrivals_count_in_the_window_of_their_send_time():
    sent = {0: [float(s) for s in range(10)]}
    order = [0, 1, 3, 2, 4, 5, 5, 6, 7, 8, 9]           # 2 late (reordered), 5 twice (a duplicate)
    arrivals = [(0, s, 0.5 + i) for i, s in enumerate(order)]
    got = judge({"early": (0, 2.5), "dup": (4.5, 5.5), "late": (6, 9), "all": (0, 9)}, sent, arrivals, spacing_ms=1.0)
    assert pick(got["early"], "sent", "received", "lost", "reordered", "duplicated") == (3, 3, 0, 1, 0)
    assert pick(got["dup"], "sent", "received", "lost", "reordered", "duplicated") == (1, 2, 0, 0, 1)
    assert pick(got["late"], "sent", "received", "lost", "reordered", "duplicated") == (4, 4, 0, 0, 0)
    assert pick(got["all"], "sent", "received", "lost", "reordered", "duplicated") == (10, 11, 0, 1, 1)
    assert got["all"]["max_gap_ms"] == 1.0 and got["all"]["blackout_ms"] == 0.0


def test_loss_at_the_start_and_the_end_of_a_flow_is_a_gap_from_its_send_times():
    head = judge({"w": (0, 50)}, *one_flow_with_outage(lost=range(0, 5)))["w"]
    # nothing arrived until seq 5 (sent 50, arrived 51): the flow was dark from its first send time
    assert pick(head, "sent", "lost", "max_gap_ms", "blackout_ms") == (6, 5, 51.0, 41.0)
    tail = judge({"w": (950, 990)}, *one_flow_with_outage(lost=range(95, 100)))["w"]
    # the last arrival (seq 94 at 941) to the last send (seq 99 at 990)
    assert pick(tail, "sent", "lost", "max_gap_ms", "blackout_ms") == (5, 5, 49.0, 39.0)
    never = judge({"w": (100, 200)}, {0: [10.0 * s for s in range(100)]}, [])["w"]
    assert pick(never, "sent", "received", "lost", "max_gap_ms") == (11, 0, 11, 990.0)


def test_a_window_outside_the_run_sees_nothing_and_says_so():
    sent, arrivals = one_flow_with_outage()
    got = judge({"later": (5000, 6000), "earlier": (-500, -100)}, sent, arrivals)
    for name in ("later", "earlier"):
        assert pick(got[name], *KEYS) == (0, 0, 0, 0, 0, None, None)
    notes = pr.window_notes(got, ns(0), ns(990))
    assert len(notes) == 2 and "window 'later' (%d to %d ns) holds no packet of the run" % (ns(5000), ns(6000)) in notes[0]


def test_several_groups_the_per_flow_gap_shows_what_the_total_hides():
    # group a: flows 0 and 1, 100 pps in total (a flow every 20 ms); group b: flow 2, 100 pps (10 ms)
    # b's path is down from 300 to 400 ms; a keeps flowing
    sent = {0: [20.0 * s for s in range(50)], 1: [20.0 * s + 10 for s in range(50)], 2: [10.0 * s + 5 for s in range(100)]}
    arrivals = []
    for flow, txs in sent.items():
        for seq, tx in enumerate(txs):
            if flow == 2 and 300 <= tx <= 400:
                continue
            arrivals.append((flow, seq, tx + 1))
    arrivals.sort(key=lambda a: a[2])
    groups = {0: ("a", 20.0), 1: ("a", 20.0), 2: ("b", 10.0)}
    got = judge({"move": (290, 410), "before": (0, 250)}, sent, arrivals, groups=groups)
    move = got["move"]
    assert pick(move["groups"]["b"], "sent", "lost", "max_gap_ms", "max_gap_flow", "blackout_ms") == (12, 10, 110.0, 2, 100.0)
    assert pick(move["groups"]["a"], "sent", "lost", "max_gap_ms", "blackout_ms") == (13, 0, 20.0, 0.0)
    assert pick(move, "sent", "lost", "max_gap_ms", "max_gap_flow", "blackout_ms") == (25, 10, 110.0, 2, 100.0)
    for key in ("sent", "received", "lost", "reordered", "duplicated"):
        assert move[key] == move["groups"]["a"][key] + move["groups"]["b"][key]
    before = got["before"]
    assert (before["lost"], before["blackout_ms"], before["groups"]["b"]["max_gap_ms"]) == (0, 0.0, 10.0)
    # the total gap of the run hides it: group a's arrivals kept coming every 10 ms
    rx = sorted(a[2] for a in arrivals)
    assert max(b - a for a, b in zip(rx, rx[1:])) == 10.0


def test_the_blackout_is_the_gap_less_its_own_flow_s_spacing():
    # flow 0 (spacing 100 ms) has a 150 ms gap, flow 1 (spacing 10 ms) one of 120 ms: flow 1's is the worse blackout
    sent = {0: [0.0, 100.0, 250.0], 1: [10.0 * s for s in range(30)]}
    arrivals = [(0, 0, 1), (0, 1, 101), (0, 2, 251)] + [(1, s, 10.0 * s + 1) for s in range(30) if s not in range(10, 21)]
    arrivals.sort(key=lambda a: a[2])
    got = judge({"w": (0, 300)}, sent, arrivals, groups={0: ("slow", 100.0), 1: ("fast", 10.0)})["w"]
    assert (got["max_gap_ms"], got["max_gap_flow"], got["blackout_ms"]) == (150.0, 0, 110.0)
    assert got["groups"]["slow"]["blackout_ms"] == 50.0 and got["groups"]["fast"]["blackout_ms"] == 110.0


def test_window_edges_in_seconds_or_nanoseconds_by_magnitude():
    assert pr.to_ns(1764139200.25) == 1764139200250000000
    assert pr.to_ns(1764139200250000123) == 1764139200250000123
    assert pr.to_ns("1764139200250000123") == 1764139200250000123      # a templated value arrives as a string
    assert pr.to_ns("1764139200.5") == 1764139200500000000
    assert pr.to_ns("1764139200.123456789") == 1764139200123456789      # decimal seconds to the ns
    assert pr.to_ns(" 1764139200 ") == 1764139200000000000
    assert pr.to_ns(10 ** 12) == 10 ** 12 and pr.to_ns(10 ** 12 - 1) == (10 ** 12 - 1) * 10 ** 9
    for bad in (True, None, "soon", -1, float("nan"), [1]):
        with pytest.raises(ValueError, match="must be a CLOCK_REALTIME time"):
            pr.to_ns(bad)
    got = pr.parse_windows([{"name": "a", "start": 1764139200, "end": 1764139201.5},
                            {"name": "b", "start": 1764139200000000000, "end": 1764139200000000001}])
    assert got == [{"name": "a", "start_ns": 1764139200000000000, "end_ns": 1764139201500000000},
                   {"name": "b", "start_ns": 1764139200000000000, "end_ns": 1764139200000000001}]
    assert pr.parse_windows(got) == got          # settings checked before are taken as they are


@pytest.mark.parametrize("windows, message", [
    ([{"name": "m", "start": 2e9, "end": 1e9}], r"windows\[0\] 'm': end \(1000000000000000000 ns\) is before start"),
    ([{"name": "m", "start": 1, "end": 2}, {"name": "m", "start": 1, "end": 2}], r"windows\[1\] 'm': the name is used"),
    ([{"start": 1, "end": 2}], r"windows\[0\]: name is required"),
    ([{"name": "m", "start": 1}], r"windows\[0\] 'm': end is required"),
    ([{"name": "m", "start": 1, "end": 2, "stop": 3}], r"windows\[0\]: unknown key\(s\) stop"),
    ([{"name": "m", "start": "yesterday", "end": 2}], r"windows\[0\] 'm': start must be a CLOCK_REALTIME time"),
    ("m", "windows must be a list"),
])
def test_bad_windows_name_the_window_and_the_field(windows, message):
    with pytest.raises(ValueError, match=message):
        pr.parse_windows(windows)


def test_windows_given_at_the_stop_replace_those_of_the_start_by_name():
    first = pr.parse_windows([{"name": "a", "start": 1, "end": 2}, {"name": "b", "start": 1, "end": 2}])
    then = pr.parse_windows([{"name": "b", "start": 3, "end": 4}, {"name": "c", "start": 5, "end": 6}])
    got = pr.combine_windows(first, then)
    assert [(w["name"], w["start_ns"]) for w in got] == [("a", 10 ** 9), ("b", 3 * 10 ** 9), ("c", 5 * 10 ** 9)]


def test_records_round_trip_through_a_file(tmp_path):
    an = pr.Analyzer(record=True)
    for seq in (0, 2, 1, 1):
        an.arrive(3, seq, 100 + seq, 200 + seq)
    path = str(tmp_path / "arrivals.bin")
    pr.write_record(path, pr.arrivals_record(an))
    rec = pr.read_record(path)
    assert list(rec["rx"][3]) == [200, 202, 201, 201] and rec["seen"][3].tobytes()[:3] == b"\x01\x01\x01"
    assert list(rec["reordered"][3]) == [101] and list(rec["duplicated"][3]) == [101]
    assert not (tmp_path / "arrivals.bin.tmp").exists()
    (tmp_path / "junk.bin").write_bytes(b"nothing")
    with pytest.raises(pr.ProbeError, match="is not a probe record"):
        pr.read_record(str(tmp_path / "junk.bin"))


def test_memory_per_packet_is_arrays_not_objects():
    """10 kpps for 10 minutes is 6 M packets: the records are flat int64 arrays (8 bytes a packet
    at each end), never a Python object per packet."""
    an = pr.Analyzer(record=True)
    for seq in range(5000):
        an.arrive(0, seq, seq, seq + 1)
    rec = an.record_arrays()[0]
    assert isinstance(rec["rx"], array) and rec["rx"].typecode == "q" and rec["rx"].itemsize == 8
    assert isinstance(rec["seen"], bytearray)


# --- groups -----------------------------------------------------------------------------------

def test_groups_get_global_flow_ids_and_their_own_ports():
    groups = pr.normalize_groups([{"name": "web", "flows": 3, "rate": 3000, "destination_port": 9000},
                                  {"name": "guest", "flows": 2, "rate": 500, "destination_port": 9100, "vary": "dport",
                                   "source_port": 41000, "dscp": [8]}])
    assert groups[1] == {"name": "guest", "flows": 2, "rate": 500.0, "sport": 41000, "dport": 9100, "vary": "dport", "dscp": [8]}
    assert pr.group_plan(groups) == [
        {"flow": 0, "sport": 40000, "dport": 9000, "group": "web"}, {"flow": 1, "sport": 40001, "dport": 9000, "group": "web"},
        {"flow": 2, "sport": 40002, "dport": 9000, "group": "web"},
        {"flow": 3, "sport": 41000, "dport": 9100, "group": "guest"}, {"flow": 4, "sport": 41000, "dport": 9101, "group": "guest"}]
    assert pr.group_counts(groups, duration=2) == [6000, 1000]
    assert pr.group_counts(groups, count=700) == [600, 100]
    assert sum(pr.group_counts(pr.normalize_groups([{"name": "a", "rate": 1}, {"name": "b", "rate": 2, "dport": 1}]), count=10)) == 10


@pytest.mark.parametrize("groups, message", [
    ([{"name": "a"}, {"name": "a", "destination_port": 9100}], r"groups\[1\] 'a': the name is used by an earlier group"),
    ([{"name": "a", "flows": 8}, {"name": "b", "flows": 4, "source_port": 40004}],
     r"groups 'a' and 'b' overlap: both use source port\(s\) 40004-40007 and destination port\(s\) 9000"),
    ([{"name": "a", "vary": "dport", "flows": 4}, {"name": "b", "vary": "dport", "destination_port": 9002, "flows": 4}],
     r"groups 'a' and 'b' overlap: both use source port\(s\) 40000 and destination port\(s\) 9002-9003"),
    ([{"name": "a", "rate": 600000}, {"name": "b", "rate": 600000, "destination_port": 9100}],
     r"the groups' rates add up to 1200000.0 packets per second, more than the probe's limit of 1000000"),
    ([{"name": "a", "rate": 0}], r"groups\[0\] 'a': rate must be more than 0"),
    ([{"name": "a", "flows": 2, "source_port": 65535}], r"groups\[0\] 'a': 2 flows from sport 65535 need ports 65535-65536"),
    ([{"name": "a", "dscp": [64]}], r"groups\[0\] 'a': dscp values are 0-63"),
    ([{"name": "a", "chain": "web"}], r"groups\[0\]: unknown key\(s\) chain"),
    ([{"flows": 2}], r"groups\[0\]: name is required"),
    ([], "groups must be a non-empty list"),
    ([{"name": "a", "flows": "many"}], r"groups\[0\] 'a': flows must be a whole number"),
])
def test_bad_groups_name_the_group_and_what_would_be_right(groups, message):
    with pytest.raises(ValueError, match=message):
        pr.normalize_groups(groups)


def test_groups_may_share_source_ports_when_their_destination_ports_differ():
    groups = pr.normalize_groups([{"name": "a", "flows": 8}, {"name": "b", "flows": 8, "destination_port": 9100}])
    assert [g["dport"] for g in groups] == [9000, 9100]


def test_groups_and_the_single_group_options_are_mutually_exclusive():
    for key in ("flows", "rate", "dport", "sport", "vary", "dscp"):
        with pytest.raises(ValueError, match="groups and %s are mutually exclusive" % key):
            pr.defaults({"dst": "198.18.33.2", "groups": [{"name": "a"}], key: {"vary": "sport", "dscp": [0]}.get(key, 1)})
    cfg = pr.defaults({"dst": "198.18.33.2", "groups": [{"name": "a", "rate": 300}, {"name": "b", "rate": 200, "dport": 9100}]})
    assert (cfg["flows"], cfg["rate"], cfg["grouped"]) == (32, 500.0, True)
    assert pr.defaults(cfg)["groups"] == cfg["groups"]       # settings checked before pass again
    plain = pr.defaults({"dst": "198.18.33.2", "dscp": [0, 8]})
    assert plain["groups"] == [{"name": "default", "flows": 16, "rate": 1000.0, "sport": 40000, "dport": 9000, "vary": "sport",
                                "dscp": [0, 8]}] and plain["grouped"] is False and plain["duration"] == 3.0
    # the module checks the settings, then run_probe/start_session check them again: the same settings
    for checked in (cfg, plain):
        again = pr.defaults(dict(checked))
        assert again == checked and pr.defaults(dict(checked), session=True)["groups"] == checked["groups"]


def test_a_session_runs_at_most_its_duration_and_has_no_count():
    assert pr.defaults({"dst": "198.18.33.2"}, session=True)["duration"] == 600.0
    assert pr.defaults({"dst": "198.18.33.2"}, session=True)["timeout"] == 630.5
    with pytest.raises(ValueError, match="count is not for a started session"):
        pr.defaults({"dst": "198.18.33.2", "count": 100}, session=True)


def test_the_ends_get_the_groups():
    cfg = pr.defaults({"dst": "198.18.33.2", "groups": [{"name": "a", "dscp": [8]}, {"name": "b", "dport": 9100}], "run_id": 7})
    for role in ("send", "receive"):
        argv = pr.plan_argv(cfg, role, "/p.py", "/py")
        assert [g["name"] for g in pr.normalize_groups(__import__("json").loads(argv[argv.index("--groups") + 1]))] == ["a", "b"]
    assert "--dscp" not in pr.plan_argv(cfg, "send", "/p.py", "/py")   # the groups carry their own


def sender_report(groups, sent):
    """A sender report of ``groups`` [(name, flows, interval_ms)] where every flow sent ``sent`` packets."""
    flows, out, base = [], [], 0
    for name, count, interval in groups:
        out.append({"name": name, "flows": count, "asked_pps": count * 1000.0 / interval, "sent": count * sent,
                    "achieved_pps": count * 1000.0 / interval, "interval_ms": interval, "first_tx_ns": 0,
                    "last_tx_ns": (sent - 1) * interval * MS, "dscp": []})
        for f in range(count):
            flows.append({"flow": base + f, "group": name, "src": "198.18.33.1", "sport": 40000 + f, "dport": 9000 + base,
                          "sent": sent, "first_tx_ns": 0, "last_tx_ns": int((sent - 1) * interval * MS)})
        base += count
    return {"role": "send", "run_id": 5, "src": "198.18.33.1", "dst": "198.18.33.2", "size": 64, "asked_pps": 3000.0,
            "achieved_pps": 3000.0, "sent": len(flows) * sent, "interval_ms": 1.0, "first_tx_ns": 0,
            "last_tx_ns": int((sent - 1) * 10 * MS), "max_send_gap_ms": 1.0, "send_errors": {}, "groups": out, "flows": flows}


def test_merge_gives_every_group_its_totals():
    # group a: flows 0, 1 (10 ms apart per flow); group b: flow 2, which lost seqs 10..19
    an = pr.Analyzer(groups={0: "a", 1: "a", 2: "b"})
    for seq in range(50):
        for flow in (0, 1, 2):
            if flow == 2 and 10 <= seq < 20:
                continue
            an.arrive(flow, seq, seq * 10 * MS, (seq * 10 + 1 + flow) * MS)
    res = pr.merge(sender_report([("a", 2, 10.0), ("b", 1, 10.0)], 50), an.report())
    assert [f["group"] for f in res["flows"]] == ["a", "a", "b"]
    a, b = res["groups"]["a"], res["groups"]["b"]
    assert a["flows"] == [0, 1] and b["flows"] == [2]
    assert (a["totals"]["sent"], a["totals"]["lost"], b["totals"]["sent"], b["totals"]["lost"]) == (100, 0, 50, 10)
    assert b["totals"]["max_gap_ms"] == 110.0 and a["totals"]["max_gap_ms"] == 9.0
    assert res["totals"]["lost"] == 10 and res["totals"]["max_gap_ms"] == 9.0      # group a hid b's blackout
    assert set(a["totals"]) == set(res["totals"]) and a["rate"]["interval_ms"] == 10.0


def test_without_groups_the_one_group_is_the_run():
    an = pr.Analyzer()
    for seq in range(10):
        an.arrive(0, seq, seq * MS, seq * MS + 1)
    rep = sender_report([("default", 1, 1.0)], 10)
    del rep["groups"]
    for f in rep["flows"]:
        del f["group"]
    res = pr.merge(rep, an.report())
    assert res["groups"] == {"default": {"totals": res["totals"], "flows": [0]}}
    assert res["flows"][0]["group"] == "default"


def test_two_groups_and_a_window_for_real_over_loopback():
    """send and receive as processes over 127.0.0.1: two groups at their own rates, one window over the middle."""
    port = random.randint(20000, 29000)
    now = pr.time.time_ns()
    res = pr.run_probe({"dst": "127.0.0.1", "src": "127.0.0.1", "settle": 0.2, "count": 600,
                        "groups": [{"name": "a", "flows": 4, "rate": 2000, "destination_port": port, "source_port": port + 100},
                                   {"name": "b", "flows": 2, "rate": 1000, "destination_port": port + 50, "source_port": port + 100}],
                        "windows": [{"name": "all", "start": now, "end": now + 60 * 10 ** 9}]})
    a, b = res["groups"]["a"], res["groups"]["b"]
    assert (a["totals"]["sent"], a["totals"]["lost"], b["totals"]["sent"], b["totals"]["lost"]) == (400, 0, 200, 0), res["notes"]
    assert a["flows"] == [0, 1, 2, 3] and b["flows"] == [4, 5]
    assert 1800 < a["rate"]["achieved_pps"] < 2200 and 900 < b["rate"]["achieved_pps"] < 1100
    assert sorted(res["receiver"]["ports"]) == [port, port + 50]
    win = res["windows"]["all"]
    assert pick(win, "sent", "received", "lost", "reordered", "duplicated") == (600, 600, 0, 0, 0)
    assert (win["groups"]["a"]["sent"], win["groups"]["b"]["sent"]) == (400, 200)
    assert win["blackout_ms"] < 200
    assert res["settings"]["groups"][1]["name"] == "b" and res["settings"]["windows"][0]["name"] == "all"
    assert "group a: 4 flows" in pr.format_table(res) and "window all: sent 600" in pr.format_table(res)


def test_loss_bursts_say_when_in_the_window_the_lost_packets_were_sent():
    start = 10 ** 12
    ms = 1000000
    lost = [start + 5 * ms + i * ms // 10 for i in range(30)] + [start + 900 * ms] + [start + 2000 * ms + i * ms for i in range(5)]
    assert pr.loss_bursts(lost, start) == [{"after_ms": 5.0, "ms": 2.9, "lost": 30}, {"after_ms": 900.0, "ms": 0.0, "lost": 1},
                                           {"after_ms": 2000.0, "ms": 4.0, "lost": 5}]
    many = [start + i * 50 * ms for i in range(8)]  # 8 single losses: the 5 kept are the first 5 (ties keep time order)
    assert [b["after_ms"] for b in pr.loss_bursts(many, start)] == [0.0, 50.0, 100.0, 150.0, 200.0]
    assert pr.loss_bursts([], start) == []
