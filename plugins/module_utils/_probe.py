# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic probe: sequence-numbered UDP over many 5-tuples, counted per flow.

This file is a standalone program (standard library only) and the pure analysis behind it:

    _probe.py receive --dst ADDR --run-id N [flow plan] [--max-time S] [--idle S]
    _probe.py send    --dst ADDR --run-id N [flow plan] --rate PPS (--duration S | --count N)
                      [--size BYTES] [--src ADDR] [--dscp D,D..] [--no-warmup]
    _probe.py run     --source-netns NS --sink-netns NS --dst ADDR [...]   (both ends, one report)

The flow plan (``--flows N --sport P --dport P --vary sport|dport|both``) is given to both ends,
so each knows every flow's 5-tuple. Each datagram starts with a 32-byte header (see ``HEADER``):
magic ``FSPB``, version, flags, run id, flow id, the flow's 64-bit sequence number and the send
time (CLOCK_REALTIME, ns). The sender prints, as its last stdout line, one JSON object with what
it really sent per flow (the achieved rate, not the asked one); the receiver prints its per-flow
counts when told to stop (a ``stop`` line or end of file on stdin, SIGTERM, ``--idle`` or
``--max-time``). ``merge`` joins the two reports: the counts are exchanged out of band by the
controller that started both ends, never over the path under test, which may be the thing that
is broken. Method and limits: docs/probe.md.
"""

from __future__ import annotations

import argparse
import errno as _errno
import json
import math
import os
import random
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from array import array

MAGIC = b"FSPB"
VERSION = 1
# magic, version, flags, reserved, run id, flow id, sequence number, send time (ns, CLOCK_REALTIME)
HEADER = struct.Struct("!4sBBHIIQQ")
HEADER_SIZE = HEADER.size  # 32
FLAG_WARMUP = 0x01
MIN_SIZE = HEADER_SIZE
MAX_SIZE = 8972
SEQ_LIMIT = 1 << 26          # a sequence number beyond this is not ours (64 M packets per flow)
SAMPLE_LIMIT = 4 << 20       # arrival times and latencies kept for exact totals (4 Mi arrivals)
WINDOW_NS = 100000000        # the sender's rate is also reported per 100-ms window (lowest, highest)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
TIMESPEC = struct.Struct("@ll")
VARY = ("sport", "dport", "both")
LIMIT_KEYS = ("lost", "reordered", "duplicated", "max_gap_ms")


class ProbeError(Exception):
    """The probe could not run or could not be read; the message says which end and why."""


# ---------------------------------------------------------------------------------------------
# Header and flow plan (pure)
# ---------------------------------------------------------------------------------------------

def pack_header(run_id, flow, seq, tx_ns, flags=0, size=HEADER_SIZE):
    """A datagram of ``size`` bytes that starts with the probe header."""
    if size < HEADER_SIZE:
        raise ValueError("size %d is smaller than the %d-byte header" % (size, HEADER_SIZE))
    buf = bytearray(size)
    HEADER.pack_into(buf, 0, MAGIC, VERSION, flags, 0, run_id, flow, seq, tx_ns)
    return bytes(buf)


def unpack_header(data):
    """(flags, run id, flow id, seq, tx_ns) of a probe datagram, or None when it is not one."""
    if len(data) < HEADER_SIZE:
        return None
    magic, version, flags, _reserved, run_id, flow, seq, tx_ns = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return None
    return flags, run_id, flow, seq, tx_ns


def flow_plan(flows, sport=40000, dport=9000, vary="sport"):
    """The probe's flows: [{flow, sport, dport}], flow ids 0..flows-1.

    ``vary`` says what makes the 5-tuples distinct: ``sport`` (source ports sport, sport+1, ...
    to one destination port), ``dport`` (one source port, destination ports dport, dport+1, ...)
    or ``both`` (both ports count up together)."""
    if vary not in VARY:
        raise ValueError("vary must be one of %s, not %r" % (", ".join(VARY), vary))
    if flows < 1:
        raise ValueError("flows must be at least 1, not %d" % flows)
    out = []
    for flow in range(flows):
        sp = sport + flow if vary in ("sport", "both") else sport
        dp = dport + flow if vary in ("dport", "both") else dport
        out.append({"flow": flow, "sport": sp, "dport": dp})
    for key, base in (("sport", sport), ("dport", dport)):
        top = max(f[key] for f in out)
        if base < 1 or top > 65535:
            raise ValueError("%d flows from %s %d need ports %d-%d, outside 1-65535" % (flows, key, base, base, top))
    return out


# ---------------------------------------------------------------------------------------------
# Receiver analysis (pure): fed one arrival at a time
# ---------------------------------------------------------------------------------------------

class FlowState:
    """What the receiver knows about one flow."""

    __slots__ = ("received", "unique", "duplicated", "reordered", "max_extent", "max_seq", "seen",
                 "first_rx", "last_rx", "min_tx", "max_tx", "max_gap_ns", "lat_min", "lat_max", "lat_sum",
                 "src", "sport", "dport", "wrong_tuple")

    def __init__(self, src=None, sport=None, dport=None):
        self.received = self.unique = self.duplicated = self.reordered = self.max_extent = 0
        self.max_seq = -1
        self.seen = bytearray()
        self.first_rx = self.last_rx = self.min_tx = self.max_tx = None
        self.max_gap_ns = 0
        self.lat_min = self.lat_max = None
        self.lat_sum = 0
        self.src, self.sport, self.dport = src, sport, dport
        self.wrong_tuple = 0


class Analyzer:
    """Per-flow counts from arrivals: received, unique, duplicated, reordered (a first arrival
    whose sequence number is lower than the highest already seen in its flow), the longest
    interval between consecutive arrivals, and one-way latency (receive time - send time)."""

    def __init__(self, expected=None):
        """``expected``: {flow id: (sport, dport)} from the flow plan, to notice packets of a flow
        arriving on another 5-tuple (a rewrite or mis-steering on the path)."""
        self.flows = {}
        self.expected = expected or {}
        self.invalid = 0
        self.rx_times = array("q")
        self.latencies = array("q")
        self.samples_dropped = 0

    def arrive(self, flow, seq, tx_ns, rx_ns, src=None, sport=None, dport=None):
        """Count one arrival of a probe datagram (warm-up packets are never passed here)."""
        if seq >= SEQ_LIMIT:
            self.invalid += 1
            return
        st = self.flows.get(flow)
        if st is None:
            st = self.flows[flow] = FlowState(src, sport, dport)
            st.first_rx = rx_ns
        else:
            gap = rx_ns - st.last_rx
            if gap > st.max_gap_ns:
                st.max_gap_ns = gap
        want = self.expected.get(flow)
        if want is not None and sport is not None and (sport, dport) != want:
            st.wrong_tuple += 1
        st.last_rx = rx_ns
        st.received += 1
        seen = st.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), len(seen), 1024)))
        if seen[seq]:
            st.duplicated += 1
        else:
            seen[seq] = 1
            st.unique += 1
            if seq < st.max_seq:
                st.reordered += 1
                extent = st.max_seq - seq
                if extent > st.max_extent:
                    st.max_extent = extent
            else:
                st.max_seq = seq
        if st.min_tx is None or tx_ns < st.min_tx:
            st.min_tx = tx_ns
        if st.max_tx is None or tx_ns > st.max_tx:
            st.max_tx = tx_ns
        lat = rx_ns - tx_ns
        if st.lat_min is None or lat < st.lat_min:
            st.lat_min = lat
        if st.lat_max is None or lat > st.lat_max:
            st.lat_max = lat
        st.lat_sum += lat
        if len(self.rx_times) < SAMPLE_LIMIT:
            self.rx_times.append(rx_ns)
            self.latencies.append(lat)
        else:
            self.samples_dropped += 1

    def report(self):
        """The receiver's counts as plain data (what ``receive`` prints)."""
        flows = {}
        for flow, st in self.flows.items():
            flows[str(flow)] = {
                "received": st.received, "unique": st.unique, "duplicated": st.duplicated,
                "reordered": st.reordered, "max_reorder_extent": st.max_extent, "max_seq": st.max_seq,
                "first_rx_ns": st.first_rx, "last_rx_ns": st.last_rx, "min_tx_ns": st.min_tx, "max_tx_ns": st.max_tx,
                "max_gap_ns": st.max_gap_ns, "latency_ns": {"min": st.lat_min, "max": st.lat_max, "sum": st.lat_sum},
                "src": st.src, "sport": st.sport, "dport": st.dport, "wrong_tuple": st.wrong_tuple,
            }
        rx = sorted(self.rx_times)
        max_gap = 0
        for i in range(1, len(rx)):
            gap = rx[i] - rx[i - 1]
            if gap > max_gap:
                max_gap = gap
        return {"flows": flows, "invalid": self.invalid, "max_gap_ns": max_gap,
                "latency_ns": summary(self.latencies), "samples_dropped": self.samples_dropped}


def percentile(ordered, fraction):
    """Nearest-rank percentile of an ascending sequence (None when empty)."""
    if not ordered:
        return None
    rank = max(1, int(math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values):
    """min, avg, p50, p99, max of integers (ns), or Nones."""
    if not values:
        return {"min": None, "avg": None, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {"min": ordered[0], "avg": sum(ordered) / len(ordered), "p50": percentile(ordered, 0.50),
            "p99": percentile(ordered, 0.99), "max": ordered[-1]}


# ---------------------------------------------------------------------------------------------
# Joining the two ends (pure)
# ---------------------------------------------------------------------------------------------

def _ms(ns):
    return None if ns is None else round(ns / 1e6, 3)


def _pct(part, whole):
    return round(100.0 * part / whole, 4) if whole else 0.0


RECEIVER_KEYS = ("ports", "timestamps", "foreign", "other_runs", "warmup_received", "socket_drops", "invalid", "stopped_by",
                 "samples_dropped", "scheduling")
RATE_KEYS = ("asked_pps", "achieved_pps", "duration_s", "interval_ms", "max_send_gap_ms", "max_lag_ms", "window_pps",
             "rescheduled_ms", "send_errors", "warmup_sent", "scheduling")


def merge(sender, receiver):
    """The probe's result from the sender's report and the receiver's report.

    ``lost`` = sent - unique, per flow, from the sender's own count of what it sent. Without a
    sender report (``sender`` None) ``sent`` is estimated as the highest sequence number received
    + 1 per flow (which cannot see loss at the end of a flow) and the result says so.
    ``max_gap_ms``: the longest interval between consecutive arrivals (receive timestamps), and
    the time the sender spent sending before the first and after the last packet that arrived
    (send timestamps), so a path that is down at the start or the end shows as a gap too."""
    notes = []
    plan = {}
    if sender:
        for f in sender["flows"]:
            plan[f["flow"]] = f
    rflows = receiver.get("flows", {})
    flows = []
    ids = sorted(set(plan) | {int(k) for k in rflows})
    tot = {"sent": 0, "received": 0, "unique": 0, "lost": 0, "reordered": 0, "duplicated": 0, "max_reorder_extent": 0,
           "wrong_tuple": 0}
    lat_min = lat_max = None
    lat_sum = 0
    beyond = 0
    for flow in ids:
        s = plan.get(flow, {})
        r = rflows.get(str(flow))
        if sender and not s:
            notes.append("flow %d arrived but the sender has no such flow" % flow)
        sent = s.get("sent") if sender else ((r["max_seq"] + 1) if r else 0)
        received = r["received"] if r else 0
        unique = r["unique"] if r else 0
        if r and sender and r["max_seq"] >= sent:
            beyond += 1
        lost = max(0, (sent or 0) - unique)
        gap_ns = r["max_gap_ns"] if r else 0
        first_tx, last_tx = s.get("first_tx_ns"), s.get("last_tx_ns")
        if first_tx is not None and last_tx is not None:
            if r and r["min_tx_ns"] is not None:
                gap_ns = max(gap_ns, r["min_tx_ns"] - first_tx, last_tx - r["max_tx_ns"])
            else:
                gap_ns = max(gap_ns, last_tx - first_tx)
        entry = {
            "flow": flow,
            "src": s.get("src") or (r or {}).get("src") or (sender or {}).get("src"),
            "dst": (sender or {}).get("dst") or receiver.get("dst"),
            "proto": "udp",
            "sport": s.get("sport", (r or {}).get("sport")),
            "dport": s.get("dport", (r or {}).get("dport")),
            "sent": sent, "received": received, "unique": unique, "lost": lost,
            "loss_percent": _pct(lost, sent),
            "reordered": r["reordered"] if r else 0,
            "max_reorder_extent": r["max_reorder_extent"] if r else 0,
            "duplicated": r["duplicated"] if r else 0,
            "max_gap_ms": _ms(gap_ns),
            "latency_ms": ({"min": _ms(r["latency_ns"]["min"]), "max": _ms(r["latency_ns"]["max"]),
                            "avg": _ms(r["latency_ns"]["sum"] / received)} if r and received
                           else {"min": None, "avg": None, "max": None}),
        }
        if r and r.get("wrong_tuple"):
            entry["wrong_tuple"] = r["wrong_tuple"]
            tot["wrong_tuple"] += r["wrong_tuple"]
        flows.append(entry)
        for key in ("sent", "received", "unique", "lost", "reordered", "duplicated"):
            tot[key] += entry[key] or 0
        tot["max_reorder_extent"] = max(tot["max_reorder_extent"], entry["max_reorder_extent"])
        if r and received:
            lat = r["latency_ns"]
            lat_min = lat["min"] if lat_min is None else min(lat_min, lat["min"])
            lat_max = lat["max"] if lat_max is None else max(lat_max, lat["max"])
            lat_sum += lat["sum"]
    # the whole run's longest gap: between any two consecutive arrivals, or at either end
    gap_ns = receiver.get("max_gap_ns", 0)
    if sender and sender.get("sent"):
        arrived = [r for r in rflows.values() if r.get("min_tx_ns") is not None]
        if arrived:
            gap_ns = max(gap_ns, min(r["min_tx_ns"] for r in arrived) - sender["first_tx_ns"],
                         sender["last_tx_ns"] - max(r["max_tx_ns"] for r in arrived))
        else:
            gap_ns = max(gap_ns, sender["last_tx_ns"] - sender["first_tx_ns"])
    totals = dict(tot)
    totals["loss_percent"] = _pct(tot["lost"], tot["sent"])
    totals["max_gap_ms"] = _ms(gap_ns)
    lat = receiver.get("latency_ns") or {}
    totals["latency_ms"] = {"min": _ms(lat_min), "avg": _ms(lat_sum / tot["received"]) if tot["received"] else None,
                            "p50": _ms(lat.get("p50")), "p99": _ms(lat.get("p99")), "max": _ms(lat_max)}
    if not totals["wrong_tuple"]:
        del totals["wrong_tuple"]
    result = {
        "run_id": (sender or receiver).get("run_id"),
        "src": (sender or {}).get("src"), "dst": (sender or {}).get("dst") or receiver.get("dst"),
        "proto": "udp", "size": (sender or {}).get("size"), "flow_count": len(flows),
        "totals": totals,
        "flows": flows,
        "receiver": {k: receiver.get(k) for k in RECEIVER_KEYS},
    }
    if sender:
        result["rate"] = {k: sender.get(k) for k in RATE_KEYS}
        asked, got = sender.get("asked_pps"), sender.get("achieved_pps")
        if asked and got is not None and abs(got - asked) > 0.02 * asked:
            notes.append("the sender achieved %.0f pps of the %.0f asked (%.1f%%)" % (got, asked, 100.0 * got / asked))
        if sender.get("send_errors"):
            notes.append("send errors (not counted as sent): %s" % ", ".join(
                "%s %d" % kv for kv in sorted(sender["send_errors"].items())))
        stall = sender.get("max_send_gap_ms") or 0
        spacing = (sender.get("interval_ms") or 0) / max(1, len(sender["flows"]))  # between two packets of the run
        gap = totals["max_gap_ms"] or 0
        if gap > 5 * spacing and stall >= 0.5 * gap:
            notes.append("the sender itself paused %.1f ms between two packets: a gap up to that size may be the "
                         "sender's, not the path's" % stall)
    else:
        notes.append("no sender report: sent is estimated per flow as the highest sequence number received + 1, "
                     "which misses loss at the end of a flow")
    if beyond:
        notes.append("%d flow(s) received sequence numbers the sender never sent (another sender with this run id?)" % beyond)
    if receiver.get("socket_drops"):
        notes.append("the receiver's own sockets dropped %d datagrams (receive buffer full): that part of the loss "
                     "is the probe's, not the path's" % receiver["socket_drops"])
    if receiver.get("samples_dropped"):
        notes.append("latency percentiles and the total gap use the first %d arrivals only" % SAMPLE_LIMIT)
    if totals.get("wrong_tuple"):
        notes.append("%d datagrams arrived on another 5-tuple than their flow was sent on" % totals["wrong_tuple"])
    result["notes"] = notes
    return result


def check_limits(result, limits):
    """The limits (``lost``, ``reordered``, ``duplicated``, ``max_gap_ms``; None = not checked)
    that the result's totals exceed, as messages."""
    out = []
    for key in LIMIT_KEYS:
        limit = (limits or {}).get(key)
        if limit is None:
            continue
        value = result["totals"].get(key)
        if value is None or value > limit:
            out.append("%s %s > %s" % (key, value, limit))
    return out


# ---------------------------------------------------------------------------------------------
# Which instances each probe flow crossed (pure)
# ---------------------------------------------------------------------------------------------

PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132}


def _proto(value):
    if isinstance(value, str) and not value.isdigit():
        return PROTO_NUMBERS.get(value.lower(), value.lower())
    return int(value)


def _tuple_key(src, dst, proto, sport, dport):
    return (str(src), str(dst), _proto(proto), int(sport), int(dport))


def _counter_index(counters):
    index = {}
    for c in counters or []:
        key = _tuple_key(c["src"], c["dst"], c["proto"], c["sport"], c["dport"])
        index[key] = index.get(key, 0) + int(c.get("packets", 0))
    return index


def _flow_name(f):
    return "flow %d (%s:%s -> %s:%s)" % (f["flow"], f["src"], f["sport"], f["dst"], f["dport"])


def crossing_report(probe_result, instances_by_step, before=None, min_packets=1):
    """Which instance of each step every probe flow crossed, from the instances' per-flow counters.

    ``instances_by_step``: {step: {instance: [counter, ...]}} where a counter is
    {src, dst, proto, sport, dport, packets} (what ``module_host_info`` with ``flows: true``
    reports for a monitor); ``before``: the same, read before the probe ran, so that only this
    run's packets count (counters are cumulative). A flow crossed an instance when that
    instance counted at least ``min_packets`` packets of the flow's 5-tuple. Every flow must
    cross exactly one instance of every step (parallel instances share a step's flows);
    with ``before`` given, a step must also have counted at least as many packets of a flow as
    reached the sink (fewer means some packets went around it)."""
    flows = probe_result["flows"]
    steps = {}
    per_flow = {f["flow"]: {"flow": f["flow"], "sport": f["sport"], "dport": f["dport"], "steps": {}} for f in flows}
    problems = []
    for step, instances in instances_by_step.items():
        now = {inst: _counter_index(counters) for inst, counters in instances.items()}
        then = {inst: _counter_index(((before or {}).get(step) or {}).get(inst)) for inst in instances}
        entry = {"instances": {inst: {"flows": 0, "packets": 0} for inst in instances}, "missed": [], "multiple": [],
                 "short": []}
        for f in flows:
            key = _tuple_key(f["src"], f["dst"], f.get("proto", "udp"), f["sport"], f["dport"])
            crossed = {}
            for inst in instances:
                count = now[inst].get(key, 0) - then[inst].get(key, 0)
                if count >= min_packets:
                    crossed[inst] = count
            per_flow[f["flow"]]["steps"][step] = sorted(crossed)
            for inst, count in crossed.items():
                entry["instances"][inst]["flows"] += 1
                entry["instances"][inst]["packets"] += count
            if not crossed:
                entry["missed"].append(f["flow"])
                problems.append("step '%s': %s crossed no instance" % (step, _flow_name(f)))
            elif len(crossed) > 1:
                entry["multiple"].append(f["flow"])
                names = ", ".join(sorted(crossed))
                problems.append("step '%s': %s crossed %d instances (%s)" % (step, _flow_name(f), len(crossed), names))
            elif before is not None and sum(crossed.values()) < f.get("received", 0):
                entry["short"].append(f["flow"])
                problems.append("step '%s': %s: %d packets reached the sink, instance %s counted %d" % (
                    step, _flow_name(f), f["received"], next(iter(crossed)), sum(crossed.values())))
        steps[step] = entry
    return {"ok": not problems, "steps": steps, "flows": [per_flow[f["flow"]] for f in flows], "problems": problems}


# ---------------------------------------------------------------------------------------------
# Presentation (pure)
# ---------------------------------------------------------------------------------------------

def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return "%.3f" % value
    return str(value)


def format_table(result, max_rows=None):
    """A plain-text report: rate, totals, then one row per flow."""
    lines = []
    rate = result.get("rate") or {}
    if rate:
        win = rate.get("window_pps") or {}
        lines.append("rate: asked %s pps, achieved %s pps over %s s (100-ms windows: %s to %s pps); longest pause between sends "
                     "%s ms; behind schedule at most %s ms"
                     % (_cell(rate.get("asked_pps")), _cell(rate.get("achieved_pps")), _cell(rate.get("duration_s")),
                        _cell(win.get("min")), _cell(win.get("max")), _cell(rate.get("max_send_gap_ms")), _cell(rate.get("max_lag_ms"))))
    t = result["totals"]
    lat = t.get("latency_ms") or {}
    lines.append("total: %d flows, sent %d, received %d, lost %d (%.4f%%), reordered %d, duplicated %d, longest gap %s ms"
                 % (result["flow_count"], t["sent"], t["received"], t["lost"], t["loss_percent"], t["reordered"],
                    t["duplicated"], _cell(t["max_gap_ms"])))
    lines.append("latency ms: min %s avg %s p50 %s p99 %s max %s" % tuple(_cell(lat.get(k)) for k in ("min", "avg", "p50", "p99", "max")))
    head = ("flow", "5-tuple", "sent", "recv", "lost", "reord", "dup", "gap_ms", "lat_avg_ms")
    rows = []
    for f in result["flows"][:max_rows] if max_rows else result["flows"]:
        rows.append((str(f["flow"]), "%s:%s>%s:%s" % (f["src"], f["sport"], f["dst"], f["dport"]), str(f["sent"]),
                     str(f["received"]), str(f["lost"]), str(f["reordered"]), str(f["duplicated"]), _cell(f["max_gap_ms"]),
                     _cell(f["latency_ms"]["avg"])))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    if max_rows and len(result["flows"]) > max_rows:
        lines.append("... %d more flows" % (len(result["flows"]) - max_rows))
    for note in result.get("notes") or []:
        lines.append("note: " + note)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The sender (I/O)
# ---------------------------------------------------------------------------------------------

def say(stream, text):
    stream.write(text + "\n")
    stream.flush()


def source_address_for(dst):
    """The address the kernel would send from towards ``dst`` (a connected UDP socket sends nothing)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((dst, 9))
        return probe.getsockname()[0]
    finally:
        probe.close()


def realtime_priority(priority):
    """Run this process under SCHED_FIFO at ``priority`` (0: leave it alone). Returns the policy
    in effect ("fifo" or "normal").

    Measured on two loaded cores: under SCHED_FIFO the sender's own longest pause dropped from
    4-12 ms to 0.25-0.55 ms in 8 of 9 runs, but at 20 kpps the probe then takes the CPU from the switch's one
    forwarding thread and causes loss itself (1,199-3,098 of 100,000 lost, against 0 under
    normal scheduling). Hence off by default; worth it where cores are to spare."""
    if priority and hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            return "fifo"
        except (OSError, ValueError):
            pass
    return "normal"


def _set_timer_slack(ns):
    """Ask for a fine sleep granularity (prctl PR_SET_TIMERSLACK); harmless where unavailable."""
    try:
        import ctypes  # pylint: disable=import-outside-toplevel
        ctypes.CDLL(None, use_errno=True).prctl(29, ctypes.c_ulong(ns), 0, 0, 0)
    except (OSError, AttributeError, ImportError):
        pass


def send(args, out=sys.stdout):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    plan = flow_plan(args.flows, args.sport, args.dport, args.vary)
    src = args.src or source_address_for(args.dst)
    total = args.count if args.count is not None else int(round(args.rate * args.duration))
    socks = {}
    for port in sorted({f["sport"] for f in plan}):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            sock.bind((src, port))
        except OSError as exc:
            sock.close()
            for other in socks.values():
                other.close()
            say(sys.stderr, "send: cannot bind %s:%s: %s" % (src, port, exc))
            return 2
        socks[port] = sock
    sendto = [socks[f["sport"]].sendto for f in plan]
    setopt = [socks[f["sport"]].setsockopt for f in plan]
    addrs = [(args.dst, f["dport"]) for f in plan]
    tos = [d << 2 for d in args.dscp] if args.dscp else None
    n = len(plan)
    buf = bytearray(args.size)
    pack = HEADER.pack_into
    run_id = args.run_id
    time_ns = time.time_ns
    mono = time.monotonic_ns
    _set_timer_slack(1000)
    policy = realtime_priority(args.priority)

    warmup = 0
    if args.warmup:
        # one packet per flow, outside the count: resolves ARP and sets up the switch's caches
        for flow in range(n):
            pack(buf, 0, MAGIC, VERSION, FLAG_WARMUP, 0, run_id, flow, 0, time_ns())
            try:
                sendto[flow](buf, addrs[flow])
                warmup += 1
            except OSError:
                pass
            if flow % 32 == 31:
                time.sleep(0.001)
        time.sleep(args.warmup_wait)

    sent = [0] * n
    first_tx = [None] * n
    last_tx = [None] * n
    errors = {}
    interval = 1e9 / args.rate
    burst = args.burst
    max_lag = 0
    max_send_gap = 0
    total_ok = 0
    rescheduled = 0.0
    windows = []
    prev_tx = None
    first = last = None
    i = 0
    start = origin = mono()
    while i < total:
        now = mono()
        due = int((now - start) / interval) + 1
        if due > total:
            due = total
        if due <= i:
            time.sleep((start + i * interval - now) / 1e9)
            continue
        lag = now - (start + i * interval)
        if lag > max_lag:
            max_lag = lag
        if due - i > burst:
            # the sender itself was held up: catching up at once would be a burst at line rate
            # that the path never asked for (measured: 589 lost after a 52 ms pause at 10 kpps),
            # so the schedule moves on by the time it cannot make up, and the run lasts longer
            behind = (due - i - burst) * interval
            start += behind
            rescheduled += behind
            due = i + burst
        end = min(due, i + burst)
        done = total_ok
        while i < end:
            flow = i % n
            seq = sent[flow]
            if tos:
                setopt[flow](socket.IPPROTO_IP, socket.IP_TOS, tos[seq % len(tos)])
            tx = time_ns()
            pack(buf, 0, MAGIC, VERSION, 0, 0, run_id, flow, seq, tx)
            i += 1
            try:
                sendto[flow](buf, addrs[flow])
            except OSError as exc:
                name = _errno.errorcode.get(exc.errno, str(exc.errno))
                errors[name] = errors.get(name, 0) + 1
                continue
            sent[flow] = seq + 1
            total_ok += 1
            if first_tx[flow] is None:
                first_tx[flow] = tx
            last_tx[flow] = tx
            if prev_tx is not None and tx - prev_tx > max_send_gap:
                max_send_gap = tx - prev_tx
            prev_tx = tx
            if first is None:
                first = tx
            last = tx
        slot = int((now - origin) // WINDOW_NS)
        while len(windows) <= slot:
            windows.append(0)
        windows[slot] += total_ok - done
    finished = mono()
    for sock in socks.values():
        sock.close()
    count = sum(sent)
    span = (last - first) if count > 1 else 0
    full = windows[:int((finished - origin) // WINDOW_NS)]
    window_pps = ({"min": min(full) * 1e9 / WINDOW_NS, "max": max(full) * 1e9 / WINDOW_NS, "windows": len(full)}
                  if full else {"min": None, "max": None, "windows": 0})
    report = {
        "role": "send", "version": VERSION, "run_id": run_id, "src": src, "dst": args.dst, "size": args.size,
        "asked_pps": args.rate, "sent": count, "scheduled": total,
        "achieved_pps": round((count - 1) * 1e9 / span, 1) if span else None,
        "duration_s": round(span / 1e9, 6), "interval_ms": round(n * 1000.0 / args.rate, 6),
        "first_tx_ns": first, "last_tx_ns": last,
        "max_send_gap_ms": _ms(max_send_gap), "max_lag_ms": _ms(max_lag), "window_pps": window_pps,
        "rescheduled_ms": _ms(int(rescheduled)),
        "send_errors": errors, "warmup_sent": warmup, "dscp": args.dscp or [], "scheduling": policy,
        "flows": [{"flow": f["flow"], "src": src, "sport": f["sport"], "dport": f["dport"], "sent": sent[f["flow"]],
                   "first_tx_ns": first_tx[f["flow"]], "last_tx_ns": last_tx[f["flow"]]} for f in plan],
    }
    out.write(json.dumps(report) + "\n")
    out.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# The receiver (I/O)
# ---------------------------------------------------------------------------------------------

def socket_drops(socks):
    """Datagrams the kernel dropped on these sockets (receive buffer full), from /proc/net/udp
    of the namespace the receiver runs in; None when it cannot be read."""
    inodes = {str(os.fstat(s.fileno()).st_ino) for s in socks}
    total = 0
    try:
        with open("/proc/net/udp", encoding="ascii") as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if len(fields) >= 13 and fields[9] in inodes:
                    total += int(fields[-1])
    except OSError:
        return None
    return total


class Receiver:
    def __init__(self, args, out=sys.stdout):
        self.args = args
        self.out = out
        self.plan = flow_plan(args.flows, args.sport, args.dport, args.vary)
        self.analyzer = Analyzer({f["flow"]: (f["sport"], f["dport"]) for f in self.plan})
        self.counts = {"foreign": 0, "other_runs": 0, "warmup_received": 0}
        self.kernel_ts = True
        self.running = True
        self.stopped_by = None
        self.last_arrival = None
        self.policy = "normal"

    def stop(self, signum=None, frame=None):  # pylint: disable=unused-argument
        self.running = False
        self.stopped_by = self.stopped_by or ("signal %d" % signum if signum else "stop")

    def open(self):
        socks = []
        for dport in sorted({f["dport"] for f in self.plan}):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:
                self.kernel_ts = False
            try:
                sock.bind((self.args.dst, dport))
            except OSError as exc:
                for opened, dummy in socks + [(sock, dport)]:
                    opened.close()
                raise OSError(exc.errno, "UDP port %d: %s (another probe, or another program, listens there)"
                              % (dport, exc.strerror)) from exc
            sock.setblocking(False)
            socks.append((sock, dport))
        return socks

    def drain(self, sock, dport, limit=512):  # pylint: disable=too-many-locals
        arrive = self.analyzer.arrive
        run_id = self.args.run_id
        counts = self.counts
        kernel_ts = self.kernel_ts
        for _count in range(limit):
            try:
                data, anc, _flags, addr = sock.recvmsg(MAX_SIZE + 64, 64)
            except (BlockingIOError, InterruptedError):
                return
            rx = None
            if kernel_ts:
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= TIMESPEC.size:
                        sec, nsec = TIMESPEC.unpack_from(cdata)
                        rx = sec * 1000000000 + nsec
            if rx is None:
                rx = time.time_ns()
            head = unpack_header(data)
            if head is None:
                counts["foreign"] += 1
                continue
            flags, run, flow, seq, tx = head
            if run != run_id:
                counts["other_runs"] += 1
                continue
            if flags & FLAG_WARMUP:
                counts["warmup_received"] += 1
                continue
            arrive(flow, seq, tx, rx, addr[0], addr[1], dport)
            self.last_arrival = time.monotonic()

    def run(self):
        try:
            socks = self.open()
        except OSError as exc:
            say(sys.stderr, "receive: cannot listen on %s: %s" % (self.args.dst, exc))
            return 2
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.policy = realtime_priority(self.args.priority)
        sel = selectors.DefaultSelector()
        for sock, dport in socks:
            sel.register(sock, selectors.EVENT_READ, dport)
        if self.args.stdin:
            sel.register(sys.stdin, selectors.EVENT_READ, None)
        self.out.write(json.dumps({"ready": True, "dst": self.args.dst, "ports": [d for _s, d in socks],
                                   "timestamps": "kernel" if self.kernel_ts else "user"}) + "\n")
        self.out.flush()
        deadline = time.monotonic() + self.args.max_time
        while self.running:
            try:
                events = sel.select(0.1)
            except InterruptedError:
                continue
            for key, _mask in events:
                if key.data is None:
                    line = os.read(sys.stdin.fileno(), 4096)
                    if not line or b"stop" in line:
                        self.stop()
                    continue
                self.drain(key.fileobj, key.data)
            now = time.monotonic()
            if self.args.idle and self.last_arrival is not None and now - self.last_arrival > self.args.idle:
                self.stopped_by = "idle"
                self.running = False
            if now > deadline:
                self.stopped_by = "max-time"
                self.running = False
        for sock, dport in socks:  # whatever is already queued arrived before the stop
            self.drain(sock, dport, limit=1 << 20)
        drops = socket_drops([s for s, _d in socks])
        for sock, _dport in socks:
            sock.close()
        report = self.analyzer.report()
        report.update(self.counts)
        report.update({"role": "receive", "version": VERSION, "run_id": self.args.run_id, "dst": self.args.dst,
                       "ports": [d for _s, d in socks], "timestamps": "kernel" if self.kernel_ts else "user",
                       "socket_drops": drops, "stopped_by": self.stopped_by, "scheduling": self.policy})
        self.out.write(json.dumps(report) + "\n")
        self.out.flush()
        return 0


# ---------------------------------------------------------------------------------------------
# Both ends from one place (what the module and the command use)
# ---------------------------------------------------------------------------------------------

def _in_netns(netns, argv):
    return (["ip", "netns", "exec", netns] + argv) if netns else argv


def _last_json(text, what):
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise ProbeError("%s printed no report" % what)


def plan_argv(cfg, role, program, python):
    """argv of one end (``send`` or ``receive``) from the probe's settings."""
    argv = [python, program, role, "--dst", cfg["dst"], "--run-id", str(cfg["run_id"]), "--flows", str(cfg["flows"]),
            "--sport", str(cfg["sport"]), "--dport", str(cfg["dport"]), "--vary", cfg["vary"],
            "--priority", str(cfg["priority"])]
    if role == "receive":
        argv += ["--stdin", "--max-time", str(cfg["timeout"])]
        return _in_netns(cfg.get("sink_netns"), argv)
    argv += ["--rate", repr(float(cfg["rate"])), "--size", str(cfg["size"]), "--burst", str(cfg.get("burst", 32))]
    argv += ["--count", str(cfg["count"])] if cfg.get("count") is not None else ["--duration", repr(float(cfg["duration"]))]
    if cfg.get("src"):
        argv += ["--src", cfg["src"]]
    if cfg.get("dscp"):
        argv += ["--dscp", ",".join(str(d) for d in cfg["dscp"])]
    if not cfg.get("warmup", True):
        argv += ["--no-warmup"]
    return _in_netns(cfg.get("source_netns"), argv)


def defaults(cfg):
    """The probe's settings with defaults filled in and checked (raises ValueError)."""
    out = {"flows": 16, "sport": 40000, "dport": 9000, "vary": "sport", "rate": 1000.0, "duration": 3.0, "count": None,
           "size": 64, "settle": 0.5, "warmup": True, "dscp": None, "src": None, "source_netns": None,
           "sink_netns": None, "burst": 32, "run_id": None, "timeout": None, "priority": 0}
    out.update({k: v for k, v in cfg.items() if v is not None})
    if not out.get("dst"):
        raise ValueError("the sink's address (dst) is required")
    flow_plan(out["flows"], out["sport"], out["dport"], out["vary"])
    if not 0 < float(out["rate"]) <= 1e6:
        raise ValueError("rate must be more than 0 and at most 1000000 packets per second, not %s" % out["rate"])
    if not MIN_SIZE <= int(out["size"]) <= MAX_SIZE:
        raise ValueError("size must be %d-%d bytes of UDP payload, not %s" % (MIN_SIZE, MAX_SIZE, out["size"]))
    if out["count"] is not None and out["count"] < 1:
        raise ValueError("count must be at least 1")
    if out["count"] is None and float(out["duration"]) <= 0:
        raise ValueError("duration must be more than 0 seconds")
    if not 0 <= int(out["priority"]) <= 99:
        raise ValueError("priority must be 0 (normal scheduling) or a SCHED_FIFO priority 1-99, not %s" % out["priority"])
    if float(out["settle"]) < 0:
        raise ValueError("settle must not be negative")
    for d in out["dscp"] or []:
        if not 0 <= int(d) <= 63:
            raise ValueError("dscp values are 0-63, not %s" % d)
    seconds = (out["count"] / float(out["rate"])) if out["count"] is not None else float(out["duration"])
    if out["timeout"] is None:
        out["timeout"] = round(seconds + float(out["settle"]) + 30, 3)
    elif out["timeout"] < seconds + float(out["settle"]):
        raise ValueError("timeout %s s is shorter than the run (%.1f s) and its settle time" % (out["timeout"], seconds))
    if not out["run_id"]:
        out["run_id"] = random.randint(1, 0xFFFFFFFF)
    return out


def _addresses(netns, run):
    argv = ["ip", "-j"] + (["-n", netns] if netns else []) + ["addr", "show"]
    proc = run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ProbeError("%s: %s" % ("network namespace %s" % netns if netns else "the root namespace",
                                     (proc.stderr or "").strip() or "ip addr failed"))
    found = set()
    for link in json.loads(proc.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.add(info.get("local"))
    return found


def preflight(cfg, run=subprocess.run):
    """Check, without sending anything, that both ends can run: the namespaces exist and hold
    the addresses. Returns what was found ({"source": [...], "sink": [...]}); raises ProbeError."""
    found = {}
    for end, netns, address in (("sink", cfg.get("sink_netns"), cfg.get("dst")),
                                ("source", cfg.get("source_netns"), cfg.get("src"))):
        have = _addresses(netns, run)
        found[end] = sorted(have)
        where = "namespace %s" % netns if netns else "the root namespace"
        if address and address not in have:
            raise ProbeError("%s address %s is not an address in %s (it has: %s)" % (
                end, address, where, ", ".join(sorted(have)) or "none"))
        if end == "source" and not address and not have - {"127.0.0.1"}:
            raise ProbeError("source: %s has no IPv4 address to send from" % where)
    return found


def _wait_ready(proc, timeout):
    """The receiver's first line (it is listening), or a ProbeError with its stderr."""
    ready, _w, _x = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("{"):
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate()[1]
        why = (err or line or "").strip()[-2000:]
        raise ProbeError("the receiver did not start%s: %s" % ("" if ready else " within %s s" % timeout, why))
    return json.loads(line)


def run_probe(cfg, program=None, python=None):
    """Start the receiver (in the sink's namespace), then the sender (in the source's), wait
    ``settle`` seconds after the sender is done, stop the receiver, and return ``merge`` of the
    two reports with the settings (``probe`` key of the result)."""
    cfg = defaults(cfg)
    program = program or os.path.abspath(__file__)
    python = python or sys.executable
    recv_argv = plan_argv(cfg, "receive", program, python)
    send_argv = plan_argv(cfg, "send", program, python)
    started = time.monotonic()
    receiver = subprocess.Popen(recv_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(receiver, 15)
        try:
            sender = subprocess.run(send_argv, capture_output=True, text=True, check=False, timeout=cfg["timeout"])
        except subprocess.TimeoutExpired as exc:
            raise ProbeError("the sender did not finish within %s s" % cfg["timeout"]) from exc
        if sender.returncode != 0:
            raise ProbeError("the sender failed (rc=%d): %s" % (sender.returncode, (sender.stderr or sender.stdout).strip()[-2000:]))
        sent = _last_json(sender.stdout, "the sender")
        time.sleep(float(cfg["settle"]))
        try:
            out, err = receiver.communicate("stop\n", timeout=30)
        except subprocess.TimeoutExpired as exc:
            raise ProbeError("the receiver did not stop within 30 s") from exc
        if receiver.returncode != 0:
            raise ProbeError("the receiver failed (rc=%d): %s" % (receiver.returncode, (err or "").strip()[-2000:]))
        got = _last_json(out, "the receiver")
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    result = merge(sent, got)
    result["settings"] = {k: cfg[k] for k in ("source_netns", "sink_netns", "src", "dst", "flows", "sport", "dport",
                                              "vary", "rate", "duration", "count", "size", "settle", "warmup", "dscp")}
    result["settings"]["src"] = sent.get("src")
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    return result


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def _dscp_list(text):
    try:
        values = [int(v) for v in text.split(",") if v != ""]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of DSCP values 0-63") from exc
    if not values or not all(0 <= v <= 63 for v in values):
        raise argparse.ArgumentTypeError("DSCP values are 0-63")
    return values


def _size(text):
    value = int(text)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError("%d-%d bytes of UDP payload" % (MIN_SIZE, MAX_SIZE))
    return value


def _plan_args(parser):
    parser.add_argument("--dst", required=True, help="the sink's address")
    parser.add_argument("--flows", type=int, default=16, help="number of flows (distinct 5-tuples), default 16")
    parser.add_argument("--sport", type=int, default=40000, help="first source port, default 40000")
    parser.add_argument("--dport", type=int, default=9000, help="first destination port, default 9000")
    parser.add_argument("--vary", choices=VARY, default="sport", help="which port counts up from flow to flow, default sport")
    parser.add_argument("--priority", type=int, default=0,
                        help="SCHED_FIFO priority of the probe's processes, default 0: normal scheduling (docs/probe.md)")


def _send_args(parser):
    parser.add_argument("--rate", type=float, default=1000.0, help="total packets per second over all flows, default 1000")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--duration", type=float, default=3.0, help="seconds of sending, default 3")
    group.add_argument("--count", type=int, help="packets to send in total (instead of a duration)")
    parser.add_argument("--size", type=_size, default=64, help="UDP payload bytes, %d-%d, default 64" % (MIN_SIZE, MAX_SIZE))
    parser.add_argument("--src", help="source address (default: the one the kernel picks towards --dst)")
    parser.add_argument("--dscp", type=_dscp_list, help="DSCP values the packets of each flow cycle through (e.g. 0,8)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="do not send one uncounted packet per flow before the run")
    parser.add_argument("--burst", type=int, default=32,
                        help="most packets sent back to back to catch up after a pause of the sender's own, default 32")


def build_parser():
    parser = argparse.ArgumentParser(prog="flowstream-probe", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="role", required=True)
    snd = sub.add_parser("send", help="send the probe's datagrams; print what was sent as JSON")
    _plan_args(snd)
    _send_args(snd)
    snd.add_argument("--run-id", type=int, required=True)
    snd.add_argument("--warmup-wait", type=float, default=0.1, help=argparse.SUPPRESS)
    rcv = sub.add_parser("receive", help="count the probe's datagrams per flow; print the counts as JSON when stopped")
    _plan_args(rcv)
    rcv.add_argument("--run-id", type=int, required=True)
    rcv.add_argument("--stdin", action="store_true", help="stop at a 'stop' line or end of file on stdin")
    rcv.add_argument("--idle", type=float, help="stop this many seconds after the last arrival")
    rcv.add_argument("--max-time", type=float, default=600.0, help="stop after this many seconds in any case, default 600")
    run = sub.add_parser("run", help="both ends (ip netns exec), one report: a table and the JSON")
    _plan_args(run)
    _send_args(run)
    run.add_argument("--source-netns", help="network namespace of the sender")
    run.add_argument("--sink-netns", help="network namespace of the receiver")
    run.add_argument("--settle", type=float, default=0.5, help="seconds to keep receiving after the sender is done, default 0.5")
    for key in ("lost", "reordered", "duplicated"):
        run.add_argument("--max-" + key, type=int, help="exit 1 when more packets than this are %s in total" % key)
    run.add_argument("--max-gap-ms", type=float, help="exit 1 when the longest gap is longer (ms)")
    run.add_argument("--json", action="store_true", help="print only the JSON (one line), not the table before it")
    return parser


def _run_command(args):
    cfg = {k: getattr(args, k) for k in ("dst", "flows", "sport", "dport", "vary", "rate", "duration", "count", "size",
                                         "src", "dscp", "warmup", "burst", "source_netns", "sink_netns", "settle",
                                         "priority")}
    if args.count is not None:
        cfg["duration"] = None
    try:
        preflight(defaults(dict(cfg)))
        result = run_probe(cfg)
    except (ProbeError, ValueError) as exc:
        say(sys.stderr, "flowstream-probe: %s" % exc)
        return 2
    limits = {"lost": args.max_lost, "reordered": args.max_reordered, "duplicated": args.max_duplicated,
              "max_gap_ms": args.max_gap_ms}
    result["exceeded"] = check_limits(result, limits)
    try:
        if not args.json:
            say(sys.stdout, format_table(result))
            for line in result["exceeded"]:
                say(sys.stdout, "EXCEEDED: " + line)
        say(sys.stdout, json.dumps(result, sort_keys=True))
        sys.stdout.flush()
    except BrokenPipeError:  # a reader that stopped early (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if result["exceeded"] else 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.role == "send":
        if not 0 < args.rate <= 1e6:
            say(sys.stderr, "send: rate must be more than 0 and at most 1000000")
            return 2
        return send(args)
    if args.role == "receive":
        return Receiver(args).run()
    return _run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
