# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The traffic probe's pure parts: header, flow plan, the receiver's analysis from synthetic
arrival sequences, joining the two ends' reports, limits, the crossing report, settings.
One test runs both ends for real over loopback (127.0.0.1, no namespaces)."""

from __future__ import annotations

import argparse
import io
import json
import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _probe as pr

MS = 1000000  # ns


# --- header and flow plan ---------------------------------------------------------------------

def test_header_round_trip_and_layout():
    data = pr.pack_header(0xDEADBEEF, 7, (1 << 64) - 1, 1234567890123456789, flags=pr.FLAG_WARMUP, size=64)
    assert len(data) == 64 and pr.HEADER_SIZE == 32
    assert data[:4] == b"FSPB" and data[4] == pr.VERSION and data[5] == pr.FLAG_WARMUP
    assert data[8:12] == bytes.fromhex("deadbeef")          # run id, network order
    assert data[12:16] == bytes.fromhex("00000007")          # flow id
    assert data[16:24] == b"\xff" * 8                        # 64-bit sequence number
    assert pr.unpack_header(data) == (pr.FLAG_WARMUP, 0xDEADBEEF, 7, (1 << 64) - 1, 1234567890123456789)
    assert data[32:] == bytes(32)


def test_header_rejects_what_is_not_a_probe_datagram():
    assert pr.unpack_header(b"FSPB" + bytes(20)) is None                         # too short
    assert pr.unpack_header(b"XXXX" + bytes(28)) is None                         # wrong magic
    other_version = bytearray(pr.pack_header(1, 1, 1, 1))
    other_version[4] = 9
    assert pr.unpack_header(bytes(other_version)) is None
    with pytest.raises(ValueError, match="smaller than the 32-byte header"):
        pr.pack_header(1, 1, 1, 1, size=31)


def test_flow_plan_varies_what_it_is_asked_to():
    assert pr.flow_plan(3, 40000, 9000, "sport") == [
        {"flow": 0, "sport": 40000, "dport": 9000}, {"flow": 1, "sport": 40001, "dport": 9000},
        {"flow": 2, "sport": 40002, "dport": 9000}]
    assert [(f["sport"], f["dport"]) for f in pr.flow_plan(2, 5000, 7000, "dport")] == [(5000, 7000), (5000, 7001)]
    assert [(f["sport"], f["dport"]) for f in pr.flow_plan(2, 5000, 7000, "both")] == [(5000, 7000), (5001, 7001)]
    with pytest.raises(ValueError, match="need ports 65535-65536"):
        pr.flow_plan(2, 65535, 9000, "sport")
    with pytest.raises(ValueError, match="vary must be one of"):
        pr.flow_plan(2, 1, 1, "proto")
    with pytest.raises(ValueError, match="at least 1"):
        pr.flow_plan(0)


# --- the receiver's analysis ------------------------------------------------------------------

def feed(arrivals, expected=None):
    """arrivals: (flow, seq, tx_ms, rx_ms)."""
    an = pr.Analyzer(expected)
    for flow, seq, tx, rx in arrivals:
        an.arrive(flow, seq, int(round(tx * MS)), int(round(rx * MS)), "198.18.33.1", 40000 + flow, 9000)
    return an.report()


def test_in_order_arrivals_count_nothing_wrong():
    rep = feed([(0, s, s, s + 0.1) for s in range(10)])
    f = rep["flows"]["0"]
    assert (f["received"], f["unique"], f["duplicated"], f["reordered"], f["max_seq"]) == (10, 10, 0, 0, 9)
    assert f["max_gap_ns"] == 1 * MS
    assert f["latency_ns"]["min"] == f["latency_ns"]["max"] == int(0.1 * MS)


def test_reordering_is_a_first_arrival_below_the_highest_seen():
    # 0 1 3 2 4 7 5 6: 2 is late by 1; 5 and 6 are late by 2 and 1
    order = [0, 1, 3, 2, 4, 7, 5, 6]
    rep = feed([(0, s, s, i) for i, s in enumerate(order)])
    f = rep["flows"]["0"]
    assert (f["reordered"], f["max_reorder_extent"], f["unique"], f["duplicated"]) == (3, 2, 8, 0)


def test_a_duplicate_is_not_counted_as_reordered_and_not_as_unique():
    rep = feed([(0, 0, 0, 0), (0, 1, 1, 1), (0, 1, 1, 1.2), (0, 2, 2, 2), (0, 0, 0, 2.5)])
    f = rep["flows"]["0"]
    assert (f["received"], f["unique"], f["duplicated"], f["reordered"]) == (5, 3, 2, 0)


def test_flows_are_counted_apart():
    rep = feed([(0, 0, 0, 0), (1, 1, 0, 0.5), (1, 0, 0, 1), (0, 1, 1, 1.5)])
    assert rep["flows"]["0"]["reordered"] == 0 and rep["flows"]["1"]["reordered"] == 1


def test_gaps_per_flow_and_over_all_flows():
    # two flows alternate every 1 ms; both are gone from 10 ms to 310 ms
    arrivals = [(t % 2, t // 2, t, t + 0.05) for t in range(10)]
    arrivals += [(t % 2, t // 2, t, t + 0.05) for t in range(310, 320)]
    rep = feed(arrivals)
    assert rep["max_gap_ns"] == 301 * MS                      # 9.05 ms -> 310.05 ms
    assert rep["flows"]["1"]["max_gap_ns"] == 302 * MS        # flow 1: 9 -> 311
    assert rep["flows"]["0"]["max_gap_ns"] == 302 * MS        # flow 0: 8 -> 310


def test_total_gap_does_not_depend_on_the_order_arrivals_are_read_in():
    # the receiver drains one socket at a time: arrivals of two sockets are processed out of time order
    arrivals = [(0, s, s * 2, s * 2) for s in range(5)] + [(1, s, s * 2 + 1, s * 2 + 1) for s in range(5)]
    assert feed(arrivals)["max_gap_ns"] == 1 * MS


def test_latency_summary_and_percentiles():
    rep = feed([(0, s, s, s + (s + 1) / 10.0) for s in range(100)])   # 0.1 .. 10.0 ms
    lat = rep["latency_ns"]
    assert lat["min"] == int(0.1 * MS) and lat["max"] == 10 * MS
    assert lat["p50"] == 5 * MS and lat["p99"] == int(9.9 * MS)


def test_an_implausible_sequence_number_is_not_ours():
    rep = feed([(0, pr.SEQ_LIMIT + 5, 0, 0)])
    assert rep["invalid"] == 1 and rep["flows"] == {}


def test_a_flow_on_the_wrong_five_tuple_is_noticed():
    an = pr.Analyzer({0: (40000, 9000)})
    an.arrive(0, 0, 0, 1, "198.18.33.1", 40000, 9000)
    an.arrive(0, 1, 0, 1, "198.18.33.1", 41234, 9000)
    assert an.report()["flows"]["0"]["wrong_tuple"] == 1


def reference(arrivals):
    """A slow, obvious count of the same figures."""
    out = {}
    for flow, seq in arrivals:
        st_ = out.setdefault(flow, {"seen": set(), "max": -1, "dup": 0, "reord": 0, "recv": 0})
        st_["recv"] += 1
        if seq in st_["seen"]:
            st_["dup"] += 1
            continue
        st_["seen"].add(seq)
        if seq < st_["max"]:
            st_["reord"] += 1
        st_["max"] = max(st_["max"], seq)
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.data(), flows=st.integers(1, 4), sent=st.integers(1, 60))
def test_analysis_matches_a_reference_for_any_loss_duplication_and_order(data, flows, sent):
    seqs = [(f, s) for f in range(flows) for s in range(sent)]
    kept = [x for x in seqs if data.draw(st.booleans(), label="kept %s" % (x,))]
    dups = data.draw(st.lists(st.sampled_from(kept), max_size=20)) if kept else []
    arrivals = data.draw(st.permutations(kept + dups))
    rep = feed([(f, s, s, i) for i, (f, s) in enumerate(arrivals)])
    ref = reference(arrivals)
    sender = {"src": "198.18.33.1", "dst": "198.18.33.2", "size": 64, "sent": flows * sent, "first_tx_ns": 0,
              "last_tx_ns": (sent - 1) * MS,
              "flows": [{"flow": f, "sport": 40000 + f, "dport": 9000, "sent": sent, "first_tx_ns": 0,
                         "last_tx_ns": (sent - 1) * MS} for f in range(flows)]}
    res = pr.merge(sender, rep)
    for entry in res["flows"]:
        r = ref.get(entry["flow"], {"seen": set(), "dup": 0, "reord": 0, "recv": 0})
        assert entry["unique"] == len(r["seen"])
        assert entry["lost"] == sent - len(r["seen"])
        assert entry["duplicated"] == r["dup"] == entry["received"] - entry["unique"]
        assert entry["reordered"] == r["reord"]
    assert res["totals"]["lost"] == flows * sent - len(set(kept))
    assert res["totals"]["duplicated"] == len(dups)


# --- joining the two ends ---------------------------------------------------------------------

def sender_report(flows, sent, interval_ms=1.0, **over):
    """A sender that sent ``sent`` packets per flow, round robin, one every interval_ms in total."""
    rep = {"role": "send", "run_id": 5, "src": "198.18.33.1", "dst": "198.18.33.2", "size": 64, "asked_pps": 1000.0,
           "achieved_pps": 1000.0, "sent": flows * sent, "duration_s": 1.0, "interval_ms": flows * interval_ms,
           "first_tx_ns": 0, "last_tx_ns": int((flows * sent - 1) * interval_ms * MS), "max_send_gap_ms": interval_ms,
           "max_lag_ms": 0.1, "send_errors": {}, "warmup_sent": flows, "scheduling": "fifo",
           "flows": [{"flow": f, "src": "198.18.33.1", "sport": 40000 + f, "dport": 9000, "sent": sent,
                      "first_tx_ns": int(f * interval_ms * MS),
                      "last_tx_ns": int(((sent - 1) * flows + f) * interval_ms * MS)} for f in range(flows)]}
    rep.update(over)
    return rep


def arrivals_for(flows, sent, keep=lambda flow, seq: True, interval_ms=1.0, latency_ms=0.1):
    out = []
    for i in range(flows * sent):
        flow, seq = i % flows, i // flows
        if keep(flow, seq):
            out.append((flow, seq, i * interval_ms, i * interval_ms + latency_ms))
    return out


def test_merge_counts_loss_from_what_the_sender_says_it_sent():
    # flow 1 loses its last 3 packets: only the sender's count can see that
    rep = feed(arrivals_for(2, 10, keep=lambda f, s: not (f == 1 and s >= 7)))
    res = pr.merge(sender_report(2, 10), rep)
    f0, f1 = res["flows"]
    assert (f0["sent"], f0["lost"], f1["sent"], f1["received"], f1["lost"]) == (10, 0, 10, 7, 3)
    assert res["totals"] == {**res["totals"], "sent": 20, "received": 17, "unique": 17, "lost": 3, "loss_percent": 15.0}
    # the tail of flow 1: last arrival sent at 13 ms (seq 6), the flow's last packet at 19 ms
    assert f1["max_gap_ms"] == 6.0 and f0["max_gap_ms"] == 2.0
    # over all flows: arrivals every 1 ms until 16.1 ms, flow 0's last at 18.1: a 2 ms gap; no tail (flow 0 arrived last)
    assert res["totals"]["max_gap_ms"] == 2.0
    assert (f1["src"], f1["dst"], f1["proto"], f1["sport"], f1["dport"]) == ("198.18.33.1", "198.18.33.2", "udp", 40001, 9000)
    assert res["notes"] == []


def test_a_blackout_at_the_end_or_the_start_is_a_gap():
    tail = pr.merge(sender_report(1, 100), feed(arrivals_for(1, 100, keep=lambda f, s: s < 60)))
    assert tail["totals"]["lost"] == 40 and tail["totals"]["max_gap_ms"] == 40.0
    head = pr.merge(sender_report(1, 100), feed(arrivals_for(1, 100, keep=lambda f, s: s >= 30)))
    assert head["totals"]["lost"] == 30 and head["totals"]["max_gap_ms"] == 30.0


def test_a_blackout_in_the_middle_is_the_longest_gap():
    res = pr.merge(sender_report(4, 250), feed(arrivals_for(4, 250, keep=lambda f, s: not 100 <= s < 175)))
    # 300 packets (75 per flow at 4 ms per flow) missing: arrivals jump by 301 ms
    assert res["totals"]["lost"] == 300 and res["totals"]["max_gap_ms"] == 301.0
    assert all(f["lost"] == 75 and f["max_gap_ms"] == 304.0 for f in res["flows"])


def test_a_flow_that_never_arrived_is_all_lost_and_all_gap():
    res = pr.merge(sender_report(2, 10), feed(arrivals_for(2, 10, keep=lambda f, s: f == 0)))
    f1 = res["flows"][1]
    assert (f1["received"], f1["lost"], f1["loss_percent"], f1["max_gap_ms"]) == (0, 10, 100.0, 18.0)
    assert f1["latency_ms"] == {"min": None, "avg": None, "max": None}
    nothing = pr.merge(sender_report(2, 10), feed([]))
    assert nothing["totals"]["lost"] == 20 and nothing["totals"]["max_gap_ms"] == 19.0


def test_without_a_sender_report_loss_is_estimated_and_said_so():
    res = pr.merge(None, feed(arrivals_for(1, 10, keep=lambda f, s: s not in (3, 9))))
    assert res["totals"]["sent"] == 9 and res["totals"]["lost"] == 1  # seq 9 lost at the end is not seen
    assert any("no sender report" in n for n in res["notes"])


def test_notes_say_when_the_figures_are_the_probe_s_own():
    rep = feed(arrivals_for(1, 10))
    rep["socket_drops"] = 4
    res = pr.merge(sender_report(1, 10, achieved_pps=900.0, send_errors={"ENOBUFS": 2}, max_send_gap_ms=50.0,
                                 interval_ms=1.0), rep)
    text = " | ".join(res["notes"])
    assert "achieved 900 pps of the 1000 asked" in text
    assert "ENOBUFS 2" in text
    assert "receive buffer full" in text
    assert "the sender itself paused 50.0 ms" not in text  # no gap that large in these arrivals
    stalled = feed([(0, 0, 0, 0), (0, 1, 1, 60)])
    res = pr.merge(sender_report(1, 2, max_send_gap_ms=55.0), stalled)
    assert any("the sender itself paused 55.0 ms" in n for n in res["notes"])


def test_sequence_numbers_beyond_what_was_sent_are_flagged():
    res = pr.merge(sender_report(1, 5), feed([(0, s, s, s) for s in range(8)]))
    assert any("never sent" in n for n in res["notes"])


# --- limits -----------------------------------------------------------------------------------

def test_limits_name_what_was_exceeded():
    res = pr.merge(sender_report(1, 10), feed(arrivals_for(1, 10, keep=lambda f, s: s != 4)))
    assert pr.check_limits(res, {"lost": 0, "reordered": 0, "duplicated": None, "max_gap_ms": 1.5}) == [
        "lost 1 > 0", "max_gap_ms 2.0 > 1.5"]
    assert pr.check_limits(res, {"lost": 1, "max_gap_ms": 2.0}) == []
    assert pr.check_limits(res, {}) == []


# --- crossing report ----------------------------------------------------------------------------

def probe_result(flows=4, sent=10):
    return pr.merge(sender_report(flows, sent), feed(arrivals_for(flows, sent)))


def counters(flows, packets=10, reverse=False, proto=17):
    out = []
    for f in flows:
        out.append({"src": "198.18.33.1", "dst": "198.18.33.2", "proto": proto, "sport": 40000 + f, "dport": 9000,
                    "packets": packets, "bytes": packets * 92})
        if reverse:
            out.append({"src": "198.18.33.2", "dst": "198.18.33.1", "proto": proto, "sport": 9000, "dport": 40000 + f,
                        "packets": 1, "bytes": 92})
    return out


def test_each_flow_crossed_exactly_one_instance_of_each_step():
    res = probe_result()
    steps = {"fw": {"web-0-a": counters(range(4), reverse=True)},
             "mon": {"web-1-a": counters([0, 2]), "web-1-b": counters([1, 3], proto="udp")}}
    rep = pr.crossing_report(res, steps)
    assert rep["ok"] and rep["problems"] == []
    assert rep["steps"]["mon"]["instances"] == {"web-1-a": {"flows": 2, "packets": 20}, "web-1-b": {"flows": 2, "packets": 20}}
    assert rep["flows"][1] == {"flow": 1, "sport": 40001, "dport": 9000, "steps": {"fw": ["web-0-a"], "mon": ["web-1-b"]}}


def test_a_flow_that_crossed_no_instance_or_two_is_flagged():
    res = probe_result()
    steps = {"mon": {"a": counters([0, 1, 2]), "b": counters([2])}}
    rep = pr.crossing_report(res, steps)
    assert not rep["ok"]
    assert rep["steps"]["mon"]["missed"] == [3] and rep["steps"]["mon"]["multiple"] == [2]
    assert "step 'mon': flow 3 (198.18.33.1:40003 -> 198.18.33.2:9000) crossed no instance" in rep["problems"]
    assert "step 'mon': flow 2 (198.18.33.1:40002 -> 198.18.33.2:9000) crossed 2 instances (a, b)" in rep["problems"]


def test_counters_from_before_the_run_do_not_count():
    res = probe_result(flows=2)
    before = {"mon": {"a": counters([0, 1], packets=50), "b": counters([1], packets=7)}}
    after = {"mon": {"a": counters([0, 1], packets=60), "b": counters([1], packets=7)}}
    rep = pr.crossing_report(res, after, before=before)
    assert rep["ok"], rep["problems"]            # b's old packets of flow 1 are not this run's
    # without the baseline, b would be counted as a second instance for flow 1
    assert pr.crossing_report(res, after)["steps"]["mon"]["multiple"] == [1]


def test_with_a_baseline_a_step_that_saw_fewer_packets_than_arrived_is_flagged():
    res = probe_result(flows=1, sent=10)
    before = {"mon": {"a": []}}
    rep = pr.crossing_report(res, {"mon": {"a": counters([0], packets=6)}}, before=before)
    assert rep["steps"]["mon"]["short"] == [0]
    assert "10 packets reached the sink, instance a counted 6" in rep["problems"][0]


# --- settings, argv, presentation ---------------------------------------------------------------

def test_defaults_fill_in_and_check():
    cfg = pr.defaults({"dst": "198.18.33.2", "rate": 10000, "duration": 3})
    assert (cfg["flows"], cfg["sport"], cfg["dport"], cfg["size"], cfg["settle"], cfg["timeout"]) == (16, 40000, 9000, 64, 0.5, 33.5)
    assert 1 <= cfg["run_id"] <= 0xFFFFFFFF
    for bad, msg in (({"rate": 0}, "rate must be"), ({"size": 20}, "size must be 32-8972"),
                     ({"flows": 70000}, "outside 1-65535"), ({"dscp": [64]}, "dscp values are 0-63"),
                     ({"timeout": 1}, "shorter than the run"), ({"priority": 100}, "priority must be"),
                     ({"dst": None}, "dst) is required")):
        args = {"dst": "198.18.33.2", **bad}
        with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            pr.defaults(args)


def test_each_end_runs_in_its_namespace():
    cfg = pr.defaults({"dst": "198.18.33.2", "source_netns": "fsp-source", "sink_netns": "fsp-sink", "count": 100,
                       "run_id": 42, "dscp": [0, 8], "warmup": False})
    rcv = pr.plan_argv(cfg, "receive", "/p.py", "/py")
    snd = pr.plan_argv(cfg, "send", "/p.py", "/py")
    assert rcv[:7] == ["ip", "netns", "exec", "fsp-sink", "/py", "/p.py", "receive"] and "--stdin" in rcv
    assert snd[:7] == ["ip", "netns", "exec", "fsp-source", "/py", "/p.py", "send"]
    assert snd[snd.index("--count") + 1] == "100" and "--duration" not in snd
    assert snd[snd.index("--dscp") + 1] == "0,8" and "--no-warmup" in snd
    assert rcv[rcv.index("--run-id") + 1] == snd[snd.index("--run-id") + 1] == "42"


def test_preflight_names_the_missing_address():
    class Done:
        def __init__(self, out):
            self.returncode, self.stdout, self.stderr = 0, out, ""

    def run(argv, **_kwargs):
        ns = argv[argv.index("-n") + 1]
        addr = {"fsp-sink": "198.18.33.2", "fsp-source": "198.18.33.1"}[ns]
        return Done('[{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]},'
                    ' {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "%s"}]}]' % addr)
    cfg = {"dst": "198.18.33.2", "sink_netns": "fsp-sink", "source_netns": "fsp-source"}
    assert pr.preflight(cfg, run=run) == {"sink": ["127.0.0.1", "198.18.33.2"], "source": ["127.0.0.1", "198.18.33.1"]}
    with pytest.raises(pr.ProbeError, match="sink address 198.18.33.9 is not an address in namespace fsp-sink"):
        pr.preflight(dict(cfg, dst="198.18.33.9"), run=run)


def test_table_shows_totals_and_every_flow():
    text = pr.format_table(probe_result(flows=3))
    assert "total: 3 flows, sent 30, received 30, lost 0 (0.0000%), reordered 0, duplicated 0" in text
    assert "198.18.33.1:40002>198.18.33.2:9000" in text
    assert text.count("\n") == 6


def test_both_ends_for_real_over_loopback():
    """send and receive as processes (no namespaces, normal scheduling), 127.0.0.1 only."""
    sport = random.randint(20000, 30000)
    res = pr.run_probe({"dst": "127.0.0.1", "src": "127.0.0.1", "flows": 4, "sport": sport, "dport": sport + 100,
                        "vary": "both", "rate": 2000, "count": 400, "size": 100, "settle": 0.2, "priority": 0})
    t = res["totals"]
    assert (t["sent"], t["received"], t["lost"], t["reordered"], t["duplicated"]) == (400, 400, 0, 0, 0), res
    assert [f["sent"] for f in res["flows"]] == [100] * 4
    assert res["receiver"]["warmup_received"] == 4 and res["receiver"]["timestamps"] == "kernel"
    assert res["receiver"]["ports"] == [sport + 100 + i for i in range(4)]
    assert 1900 < res["rate"]["achieved_pps"] < 2100


def test_a_run_that_lost_nothing_does_not_wait_its_whole_settle_time():
    """settle 5 s: the receiver stops once the 400 packets arrived, not 5 s after the sender."""
    sport = random.randint(20000, 30000)
    res = pr.run_probe({"dst": "127.0.0.1", "src": "127.0.0.1", "flows": 4, "sport": sport, "dport": sport + 100,
                        "vary": "both", "rate": 2000, "count": 400, "settle": 5.0, "priority": 0})
    assert (res["totals"]["sent"], res["totals"]["lost"]) == (400, 0), res
    assert res["receiver"]["stopped_by"] == "all arrived" and res["elapsed_s"] < 0.2 + 2.0, res["elapsed_s"]


def arrived(flows):
    """An analyzer that saw ``flows`` ({flow: [(seq, latency ns)]})."""
    an = pr.Analyzer()
    for flow, packets in flows.items():
        for seq, lat in packets:
            an.arrive(flow, seq, 1000, 1000 + lat)
    return an


def test_settle_stops_a_linger_after_everything_sent_arrived_else_at_its_deadline():
    ms = 1000000
    full = arrived({0: [(0, ms), (1, ms)], 1: [(0, ms)]})
    settle = pr.Settle({0: 2, 1: 1, 2: 0}, 0.5, now=100.0)          # a flow that sent nothing needs nothing
    assert settle.due(full, 100.0) is None                           # all here: a linger for duplicates first
    assert settle.due(full, 100.0 + pr.LINGER_S - 0.001) is None
    assert settle.due(full, 100.0 + pr.LINGER_S) == "all arrived"
    one_missing = arrived({0: [(0, ms), (0, ms)], 1: [(0, ms)]})       # a duplicate of seq 0 is not seq 1
    settle = pr.Settle({0: 2, 1: 1}, 0.5, now=100.0)
    assert settle.due(one_missing, 100.4) is None and settle.due(one_missing, 100.5) == "sender done"
    slow = arrived({0: [(0, 200 * ms)]})                               # 200 ms one way: linger 400 ms
    settle = pr.Settle({0: 1}, 0.5, now=100.0)
    assert settle.due(slow, 100.0) is None and settle.due(slow, 100.39) is None and settle.due(slow, 100.4) == "all arrived"
    settle = pr.Settle({0: 1}, 0.3, now=100.0)                       # never beyond the settle time
    assert settle.due(slow, 100.0) is None and settle.due(slow, 100.3) == "all arrived"
    unknown = pr.Settle(None, 0.5, now=100.0)                        # no sender's report: the whole settle time
    assert unknown.due(full, 100.49) is None and unknown.due(full, 100.5) == "sender done"


def test_the_receiver_takes_a_settle_line_in_pieces_and_goes_on_after_end_of_file():
    args = argparse.Namespace(flows=2, sport=40000, dport=40100, vary="dport", dst="127.0.0.1", priority=0)
    receiver = pr.Receiver(args)
    assert receiver.command(b"settle 0.5 {\"0\": 3,", 10.0) and receiver.settling is None and receiver.running
    assert receiver.command(b" \"1\": 2}\n", 10.0) and receiver.settling.expect == {0: 3, 1: 2}
    assert receiver.settling.deadline == 10.5
    assert not receiver.command(b"", 10.1) and receiver.running      # end of file: it settles on
    plain = pr.Receiver(args)
    assert not plain.command(b"", 10.0) and not plain.running and plain.stopped_by == "stop"
    told = pr.Receiver(args)
    assert told.command(b"stop\n", 10.0) and not told.running and told.stopped_by == "stop"


def test_sender_does_not_burst_to_catch_up_after_its_own_pause(monkeypatch):
    """The schedule on a fake clock (1 us per reading): a 50 ms pause of the sender at 100 ms.
    It catches up at most --burst packets at once and moves its schedule on by the rest."""
    clock = {"ns": 0, "paused": False}

    def mono():
        clock["ns"] += 1000
        if clock["ns"] > 100 * MS and not clock["paused"]:
            clock["paused"] = True
            clock["ns"] += 50 * MS
        return clock["ns"]

    def sleep(seconds):
        clock["ns"] += max(0, int(seconds * 1e9))

    monkeypatch.setattr(pr.time, "monotonic_ns", mono)
    monkeypatch.setattr(pr.time, "sleep", sleep)
    port = random.randint(20000, 30000)
    args = pr.build_parser().parse_args(["send", "--dst", "127.0.0.1", "--src", "127.0.0.1", "--run-id", "1", "--flows", "2",
                                         "--sport", str(port), "--dport", str(port + 500), "--rate", "1000",
                                         "--count", "300", "--no-warmup", "--burst", "8"])
    out = io.StringIO()
    assert pr.send(args, out=out) == 0
    rep = json.loads(out.getvalue())
    assert rep["sent"] == 300 and [f["sent"] for f in rep["flows"]] == [150, 150]
    assert 50 <= rep["max_lag_ms"] < 52
    # 51 packets were due at once (50 ms late): 8 sent back to back, the schedule moved on by the other 43 ms
    assert 42.5 < rep["rescheduled_ms"] < 44
    assert rep["window_pps"]["windows"] == 3 and rep["window_pps"]["min"] < 700


def test_a_receive_port_in_use_is_named_and_nothing_is_left_open(capsys):
    """The loopback only: a port already bound makes the receiver say which port, close what it opened, exit 2."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        args = argparse.Namespace(flows=2, sport=40000, dport=port - 1, vary="dport", dst="127.0.0.1", priority=0)
        receiver = pr.Receiver(args)
        assert sorted({f["dport"] for f in receiver.plan}) == [port - 1, port]
        assert receiver.run() == 2
        err = capsys.readouterr().err
        assert "cannot listen on 127.0.0.1: " in err and "UDP port %d: " % port in err and "another probe" in err
        again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        again.bind(("127.0.0.1", port - 1))     # the port it opened before failing was closed
        again.close()
    finally:
        busy.close()


# --- one probe run for many chains, each judged on its own ------------------------------------

def grouped_result(groups):
    """A grouped probe result as merge() makes it: ``groups`` {name: (flows, sent, lost, reordered)}."""
    flows, out, n = [], {}, 0
    for g, (count, sent, lost, reordered) in groups.items():
        ids = []
        for i in range(count):
            flows.append({"flow": n, "group": g, "src": "198.18.33.1", "dst": "198.18.33.2", "sport": 40000 + n,
                          "dport": 9000, "received": (sent - lost) // count if count else 0})
            ids.append(n)
            n += 1
        out[g] = {"flows": ids, "rate": {"achieved_pps": 1000.0},
                  "totals": {"sent": sent, "received": sent - lost, "lost": lost, "reordered": reordered, "duplicated": 0,
                             "max_gap_ms": 2.5}}
    return {"flows": flows, "groups": out}


def host_report(chain, step, instances):
    """A module_host_info result with monitors ``instances`` {id: [flow numbers]} of chain/step."""
    return {"instances": {i: {"chain": chain, "step": step, "flows": counters(f, packets=100)} for i, f in instances.items()}}


CHAINS = [{"name": "web", "verify": {"base_port": 8000}}, {"name": "inspect", "verify": {"base_port": 8960, "max_lost": 5}},
          {"name": "guest", "verify": {"base_port": 10240}}, {"name": "unverified"}]


def test_one_run_for_three_chains_judges_each_on_its_own_and_a_failed_chain_names_itself():
    res = grouped_result({"web": (4, 400, 0, 0), "inspect": (2, 200, 3, 0), "guest": (2, 200, 7, 0)})
    after = [host_report("web", "mon", {"web-a": [0, 2], "web-b": [1, 3]}), host_report("guest", "meter", {"gue-a": [6, 7]})]
    before = [host_report("web", "mon", {}), {"instances": {}}]
    verdicts = pr.chain_verdicts(res, CHAINS, after, before=before)
    by = {c["chain"]: c for c in verdicts["chains"]}
    assert [c["chain"] for c in verdicts["chains"]] == ["web", "inspect", "guest"]   # the chains' order; no group, no row
    assert by["web"]["ok"] and by["web"]["instances"] == {"mon": {"web-a": {"flows": 2, "packets": 200},
                                                                  "web-b": {"flows": 2, "packets": 200}}}
    assert by["inspect"]["ok"]                                   # 3 lost, within its max_lost 5
    assert not by["guest"]["ok"] and by["guest"]["problems"] == ["7 packets lost (at most 0)"]
    assert not verdicts["ok"] and by["guest"]["said"] == "chain guest: 7 packets lost (at most 0)"
    assert verdicts["table"][0] == pr.VERIFY_HEADER and len(verdicts["table"]) == 4
    assert verdicts["table"][1].split() == ["web", "4", "1000", "400", "400", "0", "0", "0", "2.5", "web-a+web-b"]
    assert verdicts["table"][2].split()[-1] == "-"               # no monitored step


def test_a_flow_of_one_chain_on_two_instances_fails_that_chain_only():
    res = grouped_result({"web": (2, 200, 0, 0), "guest": (2, 200, 0, 0)})
    # web's flow 1 crossed both monitors; the guest monitor counted only guest's flows
    after = [host_report("web", "mon", {"web-a": [0, 1], "web-b": [1]}), host_report("guest", "meter", {"gue-a": [2, 3]})]
    verdicts = pr.chain_verdicts(res, CHAINS, after, before=[{"instances": {}}])
    by = {c["chain"]: c for c in verdicts["chains"]}
    assert not by["web"]["ok"] and "crossed 2 instances (web-a, web-b)" in by["web"]["problems"][0]
    assert by["guest"]["ok"], by["guest"]["problems"]


def test_a_chain_that_went_around_its_monitors_fails_naming_a_few_flows_and_how_many_more():
    res = grouped_result({"web": (8, 800, 0, 0)})
    verdicts = pr.chain_verdicts(res, CHAINS, [host_report("web", "mon", {"web-a": [], "web-b": []})], before=[])
    (web,) = verdicts["chains"]
    assert len(web["problems"]) == pr.VERIFY_PROBLEMS + 1 and web["problems"][-1] == "... and 5 more of the kind"
    assert "flow 0 (198.18.33.1:40000 -> 198.18.33.2:9000) crossed no instance" in web["problems"][0]
    assert verdicts["table"][1].split()[-1] == "none"          # the monitored step no flow crossed


def test_a_chain_whose_group_sent_nothing_or_reordered_fails():
    res = grouped_result({"web": (2, 0, 0, 0), "guest": (2, 200, 0, 4)})
    verdicts = pr.chain_verdicts(res, CHAINS, [], before=[])
    by = {c["chain"]: c for c in verdicts["chains"]}
    assert by["web"]["problems"] == ["the probe sent nothing on the chain's ports"]
    assert by["guest"]["problems"] == ["4 packets reordered (at most 0)"]


def test_probe_crossing_of_a_grouped_run_checks_only_the_chains_group():
    from ansible_collections.flowstream.platform.plugins.filter.probe_crossing import probe_crossing
    res = grouped_result({"web": (2, 200, 0, 0), "guest": (2, 200, 0, 0)})
    rep = probe_crossing(res, [host_report("web", "mon", {"web-a": [0, 1]})], chain="web")
    assert rep["ok"] and [f["flow"] for f in rep["flows"]] == [0, 1]


def test_a_trials_candidate_counts_as_one_of_its_steps_instances_and_its_share_is_reported():
    res = grouped_result({"web": (10, 1000, 0, 0)})
    after = [{"instances": dict(host_report("web", "mon", {"web-a": [0, 2, 4, 6, 8], "web-b": [1, 3, 5, 7]})["instances"],
                                **host_report("web", "mon~trial", {"web4a": [9]})["instances"])}]
    verdicts = pr.chain_verdicts(res, CHAINS, after, before=[{"instances": {}}])
    (web,) = verdicts["chains"]
    assert web["ok"], web["problems"]
    assert web["instances"]["mon"]["web4a"] == {"flows": 1, "packets": 100}
    assert web["figures"]["trials"] == {"mon": {"candidates": ["web4a"], "flows": 1, "share_percent": 10.0}}
    assert verdicts["table"][1].endswith("web-a+web-b+web4a  trial mon 1/10 flows (10.0 %)")
    # a flow on the candidate AND an incumbent is a flow split between two instances
    after[0]["instances"]["web-a"]["flows"] += counters([9], packets=100)
    (web,) = pr.chain_verdicts(res, CHAINS, after, before=[{"instances": {}}])["chains"]
    assert not web["ok"] and "crossed 2 instances (web-a, web4a)" in web["problems"][0]


# --- short probes until every chain carries traffic (verify's warm-up, in the probe's own run) ---

def _run_of(totals_by_group):
    return {"groups": {name: {"totals": dict({"sent": 100, "received": 100, "lost": 0}, **t)} for name, t in totals_by_group.items()}}


def test_until_carried_probes_short_and_slow_until_every_group_carries_and_stops_there():
    seen = []
    answers = [_run_of({"web": {"lost": 3}, "guest": {"received": 0, "lost": 100}}),   # a VM still booting
               _run_of({"web": {}, "guest": {"lost": 1}}),
               _run_of({"web": {}, "guest": {}}),
               _run_of({"web": {"lost": 9}, "guest": {}})]                             # never reached

    def runner(cfg):
        seen.append(cfg)
        return answers[len(seen) - 1]

    cfg = {"dst": "198.18.0.2", "duration": 5.0, "run_id": 7, "windows": [{"name": "w", "start": 0, "end": 1}],
           "groups": [{"name": "web", "flows": 32, "rate": 10000.0}, {"name": "guest", "flows": 4, "rate": 500.0, "destination_port": 8600}]}
    got = pr.until_carried(cfg, 30, duration=0.5, rate=200, runner=runner)
    assert (got["attempts"], got["carried"], got["losing"]) == (3, True, [])
    assert len(seen) == 3 and got["seconds"] >= 0
    for short in seen:       # short, slow, uncounted: every group at the low rate, no windows, a run id of its own
        assert short["duration"] == 0.5 and short["count"] is None and short["windows"] == []
        assert [(g["name"], g["rate"], g["flows"]) for g in short["groups"]] == [("web", 200.0, 32), ("guest", 200.0, 4)]
        assert short["run_id"] != 7
    assert cfg["duration"] == 5.0 and cfg["groups"][0]["rate"] == 10000.0      # the measured run's settings untouched


def test_until_carried_names_the_groups_still_losing_when_the_tries_run_out():
    got = pr.until_carried({"dst": "198.18.0.2", "flows": 4}, 2,
                           runner=lambda cfg: _run_of({pr.DEFAULT_GROUP: {"received": 0, "lost": 100}}))
    assert (got["attempts"], got["carried"], got["losing"]) == (2, False, [pr.DEFAULT_GROUP])
    assert pr.losing_groups(_run_of({"a": {}, "b": {"received": 0}, "c": {"lost": 1}})) == ["b", "c"]
    assert pr.group_totals({"totals": {"sent": 1}}) == {pr.DEFAULT_GROUP: {"sent": 1}}


# --- where a chain lost its packets, from its instances' leg counters ---

def legs_report(instances, dropped=0):
    """A module_host_info result: {id: (step, kind, (left tx, right rx))} of chain guest, every left
    leg with ``dropped`` tx_dropped."""
    return {"instances": {i: {"chain": "guest", "step": step, "kind": kind,
                              "legs": {"left": {"tx_packets": into, "rx_packets": 0, "tx_dropped": dropped},
                                       "right": {"tx_packets": 0, "rx_packets": out}}}
                          for i, (step, kind, (into, out)) in instances.items()}}


GUEST = {"name": "guest", "verify": {"base_port": 10240},
         "steps": [{"name": "vnf"}, {"name": "deep", "only_split": True}, {"name": "meter"}, {"name": "box", "blackbox": "bb1"}]}


def test_a_chain_that_lost_its_packets_says_in_which_instance_they_stopped_and_shows_the_counts():
    res = grouped_result({"guest": (8, 3000, 3000, 0)})
    before = [legs_report({"gue0a": ("vnf", "vm", (100, 100))}), legs_report({"gue1a": ("meter", "click", (100, 100))})]
    after = [legs_report({"gue0a": ("vnf", "vm", (3140, 100))}), legs_report({"gue1a": ("meter", "click", (100, 100))})]
    (guest,) = pr.chain_verdicts(res, [GUEST], after, before=before, hosts=["mh1", "mh2"])["chains"]
    assert not guest["ok"]
    assert guest["problems"][1] == ("where: in step vnf (gue0a, vm on mh1): 3040 packets in, 0 out (packets in>out at each "
                                    "instance's legs: vnf gue0a@mh1 3040>0 | meter gue1a@mh2 0>0 | box: black box bb1)")
    assert [e["step"] for e in guest["path"]] == ["vnf", "meter", "box"]      # the split-only step is not on the path


def test_a_guest_that_takes_nothing_in_is_named_by_its_left_legs_drops_not_as_a_step_nothing_reached():
    # a VM whose guest stopped reading: its tap's queue full, the bridge's packets dropped there
    res = grouped_result({"guest": (8, 3000, 3000, 0)})
    before = [legs_report({"gue0a": ("vnf", "vm", (100, 100)), "gue1a": ("meter", "click", (100, 100))}, dropped=5)]
    after = [legs_report({"gue0a": ("vnf", "vm", (100, 100)), "gue1a": ("meter", "click", (100, 100))}, dropped=3045)]
    (guest,) = pr.chain_verdicts(res, [GUEST], after, before=before, hosts=["mh1"])["chains"]
    assert guest["problems"][1].startswith(
        "where: in step vnf (gue0a, vm on mh1): 0 packets in, 0 out, 3040 more dropped at its left leg (not taken in) "
        "(packets in>out at each instance's legs: vnf gue0a@mh1 0(+3040 dropped)>0 | meter gue1a@mh1 0(+3040 dropped)>0"), guest


def test_where_lost_names_a_gap_between_steps_a_step_nothing_reached_or_says_it_cannot_see():
    def path(*steps):
        return [{"step": name, "blackbox": counts} if isinstance(counts, str) else
                {"step": name, "instances": [{"instance": "%s-a" % name, "host": "mh1", "kind": "kernel", "into": i, "out": o}
                                             for i, o in counts]} for name, counts in steps]
    assert pr.where_lost(path(("fw", [(1000, 1000)]), ("mon", [(10, 10)])), 990) == (
        "between step fw (fw-a, kernel on mh1) and step mon (mon-a, kernel on mh1): 1000 packets left the one, 10 reached the other")
    assert pr.where_lost(path(("fw", [(0, 0)]), ("mon", [(0, 0)])), 500) == "nothing reached step fw (fw-a, kernel on mh1)"
    # parallel instances add up; a few lost (less than half) in one place are not "where"
    assert pr.where_lost(path(("fw", [(500, 499), (500, 500)]), ("box", "bb1"), ("mon", [(999, 999)])), 40) is None
    # after a black box the comparison starts again; an instance read only once is not counted
    assert pr.where_lost(path(("fw", [(500, 500)]), ("box", "bb1"), ("mon", [(20, 20)])), 480) is None
    assert pr.where_lost(path(("fw", [(None, 500)]), ("mon", [(20, 20)])), 480) is None
    assert pr.where_lost([{"step": "fw", "instances": []}], 3) == "step fw (no instance found): no instance of it reported its legs"
    assert pr.path_line(path(("fw", [(None, 5)]), ("box", "bb1"))) == "fw fw-a@mh1 ?>5 | box: black box bb1"


def test_a_chain_within_its_limits_or_without_counters_before_says_nothing_of_where():
    res = grouped_result({"guest": (8, 3000, 0, 0)})
    after = [legs_report({"gue0a": ("vnf", "vm", (3000, 3000))})]
    (guest,) = pr.chain_verdicts(res, [GUEST], after, before=[legs_report({"gue0a": ("vnf", "vm", (0, 0))})])["chains"]
    assert guest["ok"] and guest["path"][0]["instances"][0] == {"instance": "gue0a", "host": None, "kind": "vm",
                                                                "into": 3000, "dropped": 0, "out": 3000}
    (lossy,) = pr.chain_verdicts(grouped_result({"guest": (8, 3000, 3000, 0)}), [GUEST], after)["chains"]
    assert lossy["problems"] == ["3000 packets lost (at most 0)"] and lossy["path"] == []
