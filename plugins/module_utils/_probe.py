# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic probe: sequence-numbered UDP over many 5-tuples, counted per flow.

This file is a standalone program (standard library only) and the pure analysis behind it:

    _probe.py receive --dst ADDR --run-id N [flow plan] [--max-time S] [--idle S]
    _probe.py send    --dst ADDR --run-id N [flow plan] --rate PPS (--duration S | --count N)
                      [--size BYTES] [--src ADDR] [--dscp D,D..] [--no-warmup]
    _probe.py run     --source-netns NS --sink-netns NS --dst ADDR [...]   (both ends, one report)
    _probe.py start   (the same settings)   a background session: both ends detached
    _probe.py stop    --session ID [--window NAME=START,END]                 (its report)

The flow plan (``--flows N --sport P --dport P --vary sport|dport|both``, or ``--groups JSON``:
several groups of flows, each at its own rate, one sender and one receiver for all) is given to
both ends, so each knows every flow's 5-tuple. Each datagram starts with a 32-byte header (see
``HEADER``): magic ``FSPB``, version, flags, run id, flow id, the flow's 64-bit sequence number
and the send time (CLOCK_REALTIME, ns). The sender prints, as its last stdout line (or into
``--report FILE``), one JSON object with what it really sent per flow (the achieved rate, not
the asked one); the receiver prints its per-flow counts when told to stop (a ``stop`` line or
end of file on stdin, SIGTERM, a stop file, ``--after`` the sender's report plus ``--settle``,
``--idle`` or ``--max-time``). ``merge`` joins the two reports: the counts are exchanged out of
band by the controller that started both ends, never over the path under test, which may be the
thing that is broken. With ``--record FILE`` the sender keeps every packet's send time and the
receiver every arrival, so ``window_figures`` can judge any part of the run exactly afterwards.
Method and limits: docs/probe.md.
"""

from __future__ import annotations

import argparse
import bisect
import errno as _errno
import json
import math
import operator
import os
import random
import re
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
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
MAX_RATE = 1e6
DEFAULT_GROUP = "default"    # the name of the one group of a probe run without ``groups``
SINGLE_GROUP_KEYS = ("flows", "rate", "dport", "sport", "vary", "dscp")   # what ``groups`` replaces
GROUP_KEYS = ("name", "flows", "rate", "destination_port", "source_port", "vary", "dscp")
SESSION_ROOT = "/run/flowstream-probe"
SESSION_DURATION = 600.0     # a started session's default bound (seconds): an abandoned one ends by itself
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NS_FROM = 10 ** 12           # a window edge from this value up is in ns, below it in seconds (both CLOCK_REALTIME)
RECORD_MAGIC = b"FSPREC1\n"
STOP_CHECK_NS = 50000000     # how often a session's ends look for their stop file (50 ms)
LINGER_S = 0.05              # after the last packet the sender sent arrived: duplicates still on their way


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


def _integer(value, where, field):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("%s: %s must be a whole number, not %r" % (where, field, value))
    try:
        number = float(value)
    except ValueError as exc:
        raise ValueError("%s: %s must be a whole number, not %r" % (where, field, value)) from exc
    if number != int(number):
        raise ValueError("%s: %s must be a whole number, not %r" % (where, field, value))
    return int(number)


def _ports_text(ports):
    """'9000', '40000-40007' or '40000, 40002' for a set of ports."""
    ports = sorted(ports)
    if len(ports) > 1 and ports[-1] - ports[0] == len(ports) - 1:
        return "%d-%d" % (ports[0], ports[-1])
    shown = ", ".join(str(p) for p in ports[:6])
    return shown + (", ... (%d ports)" % len(ports) if len(ports) > 6 else "")


def normalize_groups(groups):
    """The probe's groups of flows, checked: [{name, flows, rate, sport, dport, vary, dscp}].

    Each group given as {name, flows (16), rate (1000), destination_port (9000), source_port
    (40000), vary (sport), dscp (none)} (``dport``/``sport`` are accepted too). Names must be
    unique, and no two groups may share both source and destination ports: a switch (and the
    reader of the result) tells groups apart by their ports. Raises ValueError naming the group,
    the field and what would be right."""
    if not isinstance(groups, (list, tuple)) or not groups:
        raise ValueError("groups must be a non-empty list of {name, flows, rate, destination_port, source_port, vary, dscp}")
    out = []
    for index, group in enumerate(groups):
        where = "groups[%d]" % index
        if not isinstance(group, dict):
            raise ValueError("%s must be a dict of %s, not %r" % (where, ", ".join(GROUP_KEYS), group))
        given = {k: v for k, v in group.items() if v is not None}
        for alias, key in (("dport", "destination_port"), ("sport", "source_port")):
            if alias in given:
                if key in given:
                    raise ValueError("%s: give %s or %s, not both" % (where, key, alias))
                given[key] = given.pop(alias)
        unknown = sorted(set(given) - set(GROUP_KEYS))
        if unknown:
            raise ValueError("%s: unknown key(s) %s; a group has %s" % (where, ", ".join(unknown), ", ".join(GROUP_KEYS)))
        name = given.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("%s: name is required (a non-empty string)" % where)
        where = "groups[%d] '%s'" % (index, name)
        if name in [g["name"] for g in out]:
            raise ValueError("%s: the name is used by an earlier group; group names must be unique" % where)
        entry = {"name": name, "flows": _integer(given.get("flows", 16), where, "flows"),
                 "sport": _integer(given.get("source_port", 40000), where, "source_port"),
                 "dport": _integer(given.get("destination_port", 9000), where, "destination_port"),
                 "vary": given.get("vary", "sport"), "dscp": None}
        try:
            entry["rate"] = float(given.get("rate", 1000.0))
        except (TypeError, ValueError) as exc:
            raise ValueError("%s: rate must be a number of packets per second, not %r" % (where, given.get("rate"))) from exc
        if not 0 < entry["rate"] <= MAX_RATE:
            raise ValueError("%s: rate must be more than 0 and at most 1000000 packets per second, not %s" % (where, given.get("rate")))
        try:
            flow_plan(entry["flows"], entry["sport"], entry["dport"], entry["vary"])
        except ValueError as exc:
            raise ValueError("%s: %s" % (where, exc)) from exc
        if given.get("dscp") is not None:
            dscp = given["dscp"] if isinstance(given["dscp"], (list, tuple)) else [given["dscp"]]
            entry["dscp"] = [_integer(d, where, "dscp") for d in dscp] or None
            for d in entry["dscp"] or []:
                if not 0 <= d <= 63:
                    raise ValueError("%s: dscp values are 0-63, not %s" % (where, d))
        out.append(entry)
    ports = []
    for g in out:
        plan = flow_plan(g["flows"], g["sport"], g["dport"], g["vary"])
        ports.append(({f["sport"] for f in plan}, {f["dport"] for f in plan}))
    for a in range(len(out)):  # pylint: disable=consider-using-enumerate
        for b in range(a + 1, len(out)):
            sports, dports = ports[a][0] & ports[b][0], ports[a][1] & ports[b][1]
            if sports and dports:
                raise ValueError("groups '%s' and '%s' overlap: both use source port(s) %s and destination port(s) %s; "
                                 "give one of them other destination_port or source_port values (groups are told apart "
                                 "by their ports)" % (out[a]["name"], out[b]["name"], _ports_text(sports), _ports_text(dports)))
    total = sum(g["rate"] for g in out)
    if total > MAX_RATE:
        raise ValueError("the groups' rates add up to %s packets per second, more than the probe's limit of 1000000" % total)
    return out


def group_plan(groups):
    """The flows of all groups with global flow ids: [{flow, sport, dport, group}] - the first
    group's flows are 0..n-1, the next group's follow."""
    out = []
    for g in groups:
        for f in flow_plan(g["flows"], g["sport"], g["dport"], g["vary"]):
            out.append({"flow": len(out), "sport": f["sport"], "dport": f["dport"], "group": g["name"]})
    return out


def group_counts(groups, count=None, duration=None):
    """Packets each group sends: its rate x ``duration``, or ``count`` shared in proportion to the
    rates (so the groups end together; the shares add up to ``count``)."""
    if count is None:
        return [int(round(g["rate"] * duration)) for g in groups]
    total = sum(g["rate"] for g in groups)
    shares = [int(count * g["rate"] / total) for g in groups]
    shares[-1] += count - sum(shares)
    return shares


# ---------------------------------------------------------------------------------------------
# Receiver analysis (pure): fed one arrival at a time
# ---------------------------------------------------------------------------------------------

class FlowState:
    """What the receiver knows about one flow."""

    __slots__ = ("received", "unique", "duplicated", "reordered", "max_extent", "max_seq", "seen",
                 "first_rx", "last_rx", "min_tx", "max_tx", "max_gap_ns", "lat_min", "lat_max", "lat_sum",
                 "src", "sport", "dport", "wrong_tuple", "rx_log", "reordered_tx", "duplicated_tx")

    def __init__(self, src=None, sport=None, dport=None, record=False):
        self.received = self.unique = self.duplicated = self.reordered = self.max_extent = 0
        self.max_seq = -1
        self.seen = bytearray()
        self.first_rx = self.last_rx = self.min_tx = self.max_tx = None
        self.max_gap_ns = 0
        self.lat_min = self.lat_max = None
        self.lat_sum = 0
        self.src, self.sport, self.dport = src, sport, dport
        self.wrong_tuple = 0
        # with a record: every arrival's receive time, and the send times of the reordered and
        # duplicate arrivals (what window_figures needs to judge any part of the run afterwards)
        self.rx_log = array("q") if record else None
        self.reordered_tx = array("q") if record else None
        self.duplicated_tx = array("q") if record else None


class Analyzer:
    """Per-flow counts from arrivals: received, unique, duplicated, reordered (a first arrival
    whose sequence number is lower than the highest already seen in its flow), the longest
    interval between consecutive arrivals, and one-way latency (receive time - send time)."""

    def __init__(self, expected=None, groups=None, record=False):
        """``expected``: {flow id: (sport, dport)} from the flow plan, to notice packets of a flow
        arriving on another 5-tuple (a rewrite or mis-steering on the path). ``groups``: {flow id:
        group name}; with more than one group the total gap and latency percentiles are also
        kept per group. ``record``: keep every arrival for ``record_arrays`` (windows)."""
        self.flows = {}
        self.expected = expected or {}
        self.invalid = 0
        self.rx_times = array("q")
        self.latencies = array("q")
        self.samples_dropped = 0
        self.record = record
        names = []
        for name in (groups or {}).values():
            if name not in names:
                names.append(name)
        self.group_names = names if len(names) > 1 else []
        index = {name: i for i, name in enumerate(self.group_names)}
        self.group_index = {flow: index[name] for flow, name in (groups or {}).items()} if self.group_names else {}
        self.sample_groups = array("H") if self.group_names else None

    def arrive(self, flow, seq, tx_ns, rx_ns, src=None, sport=None, dport=None):
        """Count one arrival of a probe datagram (warm-up packets are never passed here)."""
        if seq >= SEQ_LIMIT:
            self.invalid += 1
            return
        st = self.flows.get(flow)
        if st is None:
            st = self.flows[flow] = FlowState(src, sport, dport, self.record)
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
        if self.record:
            st.rx_log.append(rx_ns)
        seen = st.seen
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1 - len(seen), len(seen), 1024)))
        if seen[seq]:
            st.duplicated += 1
            if self.record:
                st.duplicated_tx.append(tx_ns)
        else:
            seen[seq] = 1
            st.unique += 1
            if seq < st.max_seq:
                st.reordered += 1
                if self.record:
                    st.reordered_tx.append(tx_ns)
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
            if self.sample_groups is not None:
                self.sample_groups.append(self.group_index.get(flow, 0))
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
        out = {"flows": flows, "invalid": self.invalid, "max_gap_ns": _max_step(sorted(self.rx_times)),
               "latency_ns": summary(self.latencies), "samples_dropped": self.samples_dropped}
        if self.group_names:
            out["groups"] = {}
            for i, name in enumerate(self.group_names):
                mine = [k for k, g in enumerate(self.sample_groups) if g == i]
                out["groups"][name] = {"max_gap_ns": _max_step(sorted(self.rx_times[k] for k in mine)),
                                       "latency_ns": summary([self.latencies[k] for k in mine])}
        return out

    def record_arrays(self):
        """What ``window_figures`` needs of the arrivals: {flow: {rx, seen, reordered, duplicated}}
        (every arrival's receive time; the sequence numbers that arrived, as a byte per number;
        the send times of the reordered and of the duplicate arrivals)."""
        out = {}
        for flow, st in self.flows.items():
            out[flow] = {"rx": st.rx_log if st.rx_log is not None else array("q"), "seen": st.seen,
                         "reordered": st.reordered_tx if st.reordered_tx is not None else array("q"),
                         "duplicated": st.duplicated_tx if st.duplicated_tx is not None else array("q")}
        return out


def _max_step(ordered):
    """The largest difference between neighbours of an ascending sequence (0 when fewer than two)."""
    if len(ordered) < 2:
        return 0
    return max(map(operator.sub, ordered[1:], ordered[:-1]))


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


def _flow_group(sender, receiver):
    """{flow id: group name} from the sender's report (or, without one, the receiver's plan)."""
    out = {}
    for f in (sender or {}).get("flows") or []:
        out[f["flow"]] = f.get("group", DEFAULT_GROUP)
    if not out:
        for f in receiver.get("plan") or []:
            out[f["flow"]] = f.get("group", DEFAULT_GROUP)
    return out


def _totals(entries, rflows, gap_ns, latency, first_tx, last_tx):
    """Totals over some flows (all of them, or one group's): counts summed, the longest gap of
    their arrivals (``gap_ns``, from the receiver) or at either end of the sending (``first_tx``,
    ``last_tx``: the sender's first and last send time, None without a sender report), latency."""
    tot = {"sent": 0, "received": 0, "unique": 0, "lost": 0, "reordered": 0, "duplicated": 0, "max_reorder_extent": 0,
           "wrong_tuple": 0}
    lat_min = lat_max = None
    lat_sum = 0
    for entry in entries:
        for key in ("sent", "received", "unique", "lost", "reordered", "duplicated"):
            tot[key] += entry[key] or 0
        tot["max_reorder_extent"] = max(tot["max_reorder_extent"], entry["max_reorder_extent"])
        tot["wrong_tuple"] += entry.get("wrong_tuple", 0)
        r = rflows.get(str(entry["flow"]))
        if r and r["received"]:
            lat = r["latency_ns"]
            lat_min = lat["min"] if lat_min is None else min(lat_min, lat["min"])
            lat_max = lat["max"] if lat_max is None else max(lat_max, lat["max"])
            lat_sum += lat["sum"]
    # the longest gap: between any two consecutive arrivals, or at either end
    if first_tx is not None and last_tx is not None:
        arrived = [r for r in rflows.values() if r.get("min_tx_ns") is not None]
        if arrived:
            gap_ns = max(gap_ns, min(r["min_tx_ns"] for r in arrived) - first_tx, last_tx - max(r["max_tx_ns"] for r in arrived))
        else:
            gap_ns = max(gap_ns, last_tx - first_tx)
    totals = dict(tot)
    totals["loss_percent"] = _pct(tot["lost"], tot["sent"])
    totals["max_gap_ms"] = _ms(gap_ns)
    lat = latency or {}
    totals["latency_ms"] = {"min": _ms(lat_min), "avg": _ms(lat_sum / tot["received"]) if tot["received"] else None,
                            "p50": _ms(lat.get("p50")), "p99": _ms(lat.get("p99")), "max": _ms(lat_max)}
    if not totals["wrong_tuple"]:
        del totals["wrong_tuple"]
    return totals


def merge(sender, receiver):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    """The probe's result from the sender's report and the receiver's report.

    ``lost`` = sent - unique, per flow, from the sender's own count of what it sent. Without a
    sender report (``sender`` None) ``sent`` is estimated as the highest sequence number received
    + 1 per flow (which cannot see loss at the end of a flow) and the result says so.
    ``max_gap_ms``: the longest interval between consecutive arrivals (receive timestamps), and
    the time the sender spent sending before the first and after the last packet that arrived
    (send timestamps), so a path that is down at the start or the end shows as a gap too.
    Every flow belongs to a group (``default`` without groups); ``groups`` has each group's
    totals (the same figures over its flows) and its flow ids."""
    notes = []
    plan = {}
    if sender:
        for f in sender["flows"]:
            plan[f["flow"]] = f
    group_of = _flow_group(sender, receiver)
    rflows = receiver.get("flows", {})
    flows = []
    ids = sorted(set(plan) | {int(k) for k in rflows})
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
            "group": group_of.get(flow),
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
        flows.append(entry)
    with_sender = bool(sender and sender.get("sent"))
    totals = _totals(flows, rflows, receiver.get("max_gap_ns", 0), receiver.get("latency_ns"),
                     sender["first_tx_ns"] if with_sender else None, sender["last_tx_ns"] if with_sender else None)
    groups = {}
    sender_groups = {g["name"]: g for g in (sender or {}).get("groups") or []}
    receiver_groups = receiver.get("groups") or {}
    names = list(sender_groups) or sorted({g for g in group_of.values() if g is not None})
    for name in names:
        ids_g = [f["flow"] for f in flows if f["group"] == name]
        if len(names) == 1 and not receiver_groups:  # one group: its totals are the run's
            gtot = dict(totals)
        else:
            sg = sender_groups.get(name) or {}
            rg = receiver_groups.get(name) or {}
            mine = {str(i): rflows[str(i)] for i in ids_g if str(i) in rflows}
            gtot = _totals([f for f in flows if f["group"] == name], mine, rg.get("max_gap_ns") or 0, rg.get("latency_ns"),
                           sg.get("first_tx_ns") if sg.get("sent") else None, sg.get("last_tx_ns") if sg.get("sent") else None)
        groups[name] = {"totals": gtot, "flows": ids_g}
        if name in sender_groups:
            sg = sender_groups[name]
            groups[name]["rate"] = {k: sg.get(k) for k in ("asked_pps", "achieved_pps", "interval_ms", "dscp")}
    result = {
        "run_id": (sender or receiver).get("run_id"),
        "src": (sender or {}).get("src"), "dst": (sender or {}).get("dst") or receiver.get("dst"),
        "proto": "udp", "size": (sender or {}).get("size"), "flow_count": len(flows),
        "totals": totals,
        "flows": flows,
        "groups": groups,
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
# Windows: judging a part of the run (pure)
# ---------------------------------------------------------------------------------------------

WINDOW_KEYS = ("name", "start", "end")


def to_ns(value, where="time"):
    """A CLOCK_REALTIME time in ns. A value from 10**12 up is taken as ns (int), below it as
    seconds since the epoch (float): 10**12 s is 33,000 years away, 10**12 ns 17 minutes after
    1970, so the two never meet. Numeric strings are read as numbers."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None:
        exact = re.match(r"^(\d+)(?:\.(\d*))?$", text)
        if exact and int(exact.group(1)) < NS_FROM:  # decimal seconds, to the ns without float rounding
            return int(exact.group(1)) * 10 ** 9 + int(((exact.group(2) or "") + "000000000")[:9])
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError("%s must be a CLOCK_REALTIME time: epoch seconds (a float such as 1764139200.25) or "
                         "nanoseconds (an integer from 10**12 up), not %r" % (where, value))
    if value >= NS_FROM:
        return int(value)
    whole = int(value)
    return whole * 10 ** 9 + int(round((value - whole) * 1e9))


def parse_windows(windows):
    """[{name, start_ns, end_ns}] from [{name, start, end}] (see ``to_ns``), checked: names
    unique, end not before start. Raises ValueError naming the window and the field."""
    if windows is None:
        return []
    if not isinstance(windows, (list, tuple)):
        raise ValueError("windows must be a list of {name, start, end}, not %r" % (windows,))
    out = []
    for index, win in enumerate(windows):
        where = "windows[%d]" % index
        if not isinstance(win, dict):
            raise ValueError("%s must be a dict of name, start, end, not %r" % (where, win))
        if "start_ns" in win and "end_ns" in win and "start" not in win and "end" not in win:  # parsed before
            win = {"name": win.get("name"), "start": win["start_ns"], "end": win["end_ns"]}
        unknown = sorted(set(k for k, v in win.items() if v is not None) - set(WINDOW_KEYS))
        if unknown:
            raise ValueError("%s: unknown key(s) %s; a window has name, start, end" % (where, ", ".join(unknown)))
        name = win.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("%s: name is required (a non-empty string)" % where)
        where = "windows[%d] '%s'" % (index, name)
        if name in [w["name"] for w in out]:
            raise ValueError("%s: the name is used by an earlier window; window names must be unique" % where)
        for key in ("start", "end"):
            if win.get(key) is None:
                raise ValueError("%s: %s is required (CLOCK_REALTIME epoch seconds or nanoseconds)" % (where, key))
        start, end = to_ns(win["start"], "%s: start" % where), to_ns(win["end"], "%s: end" % where)
        if end < start:
            raise ValueError("%s: end (%d ns) is before start (%d ns)" % (where, end, start))
        out.append({"name": name, "start_ns": start, "end_ns": end})
    return out


def combine_windows(first, then):
    """Parsed windows ``first`` (given when a session started) and ``then`` (given when it is
    stopped): a window of ``then`` replaces the one of ``first`` with its name."""
    names = {w["name"] for w in then}
    return [w for w in first if w["name"] not in names] + list(then)


def _sorted_q(values):
    values = values if isinstance(values, array) else array("q", values)
    if len(values) > 1 and not all(map(operator.le, values[:-1], values[1:])):
        values = array("q", sorted(values))
    return values


class _FlowTimeline:
    """One flow's send times and arrivals, as window_figures reads them."""

    __slots__ = ("flow", "group", "spacing", "tx", "lost_tx", "reordered", "duplicated", "events")

    def __init__(self, flow, group, spacing_ns, tx, rec):
        self.flow, self.group, self.spacing = flow, group, spacing_ns
        self.tx = tx = _sorted_q(tx if tx is not None else array("q"))
        rec = rec or {}
        seen = rec.get("seen") or b""
        if isinstance(seen, array):
            seen = seen.tobytes()
        # the packets sent that never arrived: the sequence numbers 0..sent-1 not seen
        lost = array("q")
        limit = min(len(tx), len(seen))
        pos = seen.find(0, 0, limit) if limit else -1
        while pos != -1:
            lost.append(tx[pos])
            pos = seen.find(0, pos + 1, limit)
        lost.extend(tx[limit:])
        self.lost_tx = _sorted_q(lost)
        self.reordered = _sorted_q(rec.get("reordered") or array("q"))
        self.duplicated = _sorted_q(rec.get("duplicated") or array("q"))
        rx = _sorted_q(rec.get("rx") or array("q"))
        # the flow's timeline: its arrivals, led by its first send time when the first packets
        # did not arrive (the path was down from there) and closed by its last send time when
        # the last ones did not
        events = array("q")
        if tx and (not rx or tx[0] < rx[0]):
            events.append(tx[0])
        events.extend(rx)
        if tx and (not rx or tx[-1] > rx[-1]) and len(events) and tx[-1] > events[-1]:
            events.append(tx[-1])
        self.events = events

    def gap(self, start, end):
        """The longest interval between consecutive events of the flow that overlaps [start, end], or None."""
        ev = self.events
        if len(ev) < 2:
            return None
        lo = max(0, bisect.bisect_left(ev, start) - 1)
        hi = min(len(ev) - 2, bisect.bisect_right(ev, end) - 1)
        if lo > hi:
            return None
        return max(map(operator.sub, ev[lo + 1:hi + 2], ev[lo:hi + 1]))


def _count(values, start, end):
    """How many of the ascending ``values`` lie in [start, end]."""
    return bisect.bisect_right(values, end) - bisect.bisect_left(values, start)


BURST_GAP_NS = 10 * 1000000  # lost packets sent within 10 ms of each other are one burst
BURSTS_KEPT = 5


def _window_entry():
    return {"sent": 0, "received": 0, "lost": 0, "reordered": 0, "duplicated": 0, "max_gap_ns": None, "max_gap_flow": None,
            "blackout_ns": None, "lost_tx": []}


def loss_bursts(lost_tx, start_ns):
    """When the lost packets were sent: bursts of losses (send times less than 10 ms apart), the
    5 largest in time order, each {after_ms: from the window's start, ms: how long, lost}."""
    times = sorted(lost_tx)
    bursts = []
    for t in times:
        if bursts and t - bursts[-1][1] <= BURST_GAP_NS:
            bursts[-1][1] = t
            bursts[-1][2] += 1
        else:
            bursts.append([t, t, 1])
    kept = sorted(sorted(bursts, key=lambda b: -b[2])[:BURSTS_KEPT])
    return [{"after_ms": _ms(b[0] - start_ns), "ms": _ms(b[1] - b[0]), "lost": b[2]} for b in kept]


def _window_add(entry, tl, start, end):
    sent = _count(tl.tx, start, end)
    lost = _count(tl.lost_tx, start, end)
    if lost:
        lo = bisect.bisect_left(tl.lost_tx, start)
        entry["lost_tx"].extend(tl.lost_tx[lo:lo + lost])
    dup = _count(tl.duplicated, start, end)
    entry["sent"] += sent
    entry["lost"] += lost
    entry["duplicated"] += dup
    entry["reordered"] += _count(tl.reordered, start, end)
    entry["received"] += sent - lost + dup
    gap = tl.gap(start, end)
    if gap is not None:
        if entry["max_gap_ns"] is None or gap > entry["max_gap_ns"]:
            entry["max_gap_ns"], entry["max_gap_flow"] = gap, tl.flow
        blackout = max(0, gap - tl.spacing)
        if entry["blackout_ns"] is None or blackout > entry["blackout_ns"]:
            entry["blackout_ns"] = blackout


def _window_out(entry, start_ns):
    out = {k: entry[k] for k in ("sent", "received", "lost", "reordered", "duplicated")}
    out["max_gap_ms"] = _ms(entry["max_gap_ns"])
    out["max_gap_flow"] = entry["max_gap_flow"]
    out["blackout_ms"] = _ms(entry["blackout_ns"])
    out["lost_bursts"] = loss_bursts(entry["lost_tx"], start_ns)
    return out


def window_figures(windows, flows, send_times, arrivals):
    """What happened to the packets SENT within each window, exactly, from every packet's send
    time and every arrival.

    ``windows``: [{name, start_ns, end_ns}] (``parse_windows``); ``flows``: [{flow, group,
    spacing_ns}] (spacing: the flow's normal interval, its group's flows / rate); ``send_times``:
    {flow: array('q')} the send time of each sequence number 0..sent-1; ``arrivals``: {flow:
    {rx, seen, reordered, duplicated}} (``Analyzer.record_arrays``).

    Per window, in total and per group: ``sent`` (packets sent in [start, end]), ``lost`` (those
    of them that never arrived), ``reordered``/``duplicated`` (arrivals of them flagged so),
    ``received`` (their arrivals, duplicates included), ``max_gap_ms`` (the longest interval
    between consecutive arrivals of one flow that overlaps the window - the whole interval, also
    when it straddles an edge; before a flow's first arrival the interval starts at its first
    send time, after its last arrival it ends at its last send time), ``max_gap_flow`` (whose),
    ``blackout_ms`` (the longest of those gaps less its flow's normal spacing, never negative).
    A window that no arrival interval overlaps has None for the gap figures."""
    timelines = [_FlowTimeline(f["flow"], f.get("group", DEFAULT_GROUP), int(f.get("spacing_ns") or 0),
                               send_times.get(f["flow"]), arrivals.get(f["flow"])) for f in flows]
    groups = []
    for tl in timelines:
        if tl.group not in groups:
            groups.append(tl.group)
    out = {}
    for win in windows:
        start, end = win["start_ns"], win["end_ns"]
        total = _window_entry()
        per = {g: _window_entry() for g in groups}
        for tl in timelines:
            _window_add(total, tl, start, end)
            _window_add(per[tl.group], tl, start, end)
        entry = {"start_ns": start, "end_ns": end}
        entry.update(_window_out(total, start))
        entry["groups"] = {g: _window_out(per[g], start) for g in groups}
        out[win["name"]] = entry
    return out


def window_notes(figures, first_tx=None, last_tx=None):
    """Notes on windows that saw nothing of the run."""
    notes = []
    for name, win in figures.items():
        if not win["sent"] and win["max_gap_ms"] is None:
            span = (" (the run sent from %d to %d ns)" % (first_tx, last_tx)) if first_tx is not None and last_tx is not None else ""
            notes.append("window '%s' (%d to %d ns) holds no packet of the run%s" % (name, win["start_ns"], win["end_ns"], span))
    return notes


def write_record(path, arrays):
    """Arrays of numbers in one file, for the other side to read with ``read_record``: a magic
    line, a JSON line {byteorder, arrays: [[kind, flow, typecode, count], ...]}, then the arrays'
    bytes in that order. Written to a temporary name and renamed: complete or absent."""
    index = [[kind, flow, arr.typecode, len(arr)] for kind, flow, arr in arrays]
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(RECORD_MAGIC)
        handle.write(json.dumps({"byteorder": sys.byteorder, "arrays": index}).encode("ascii") + b"\n")
        for _kind, _flow, arr in arrays:
            arr.tofile(handle)
    os.replace(tmp, path)


def read_record(path):
    """{kind: {flow: array}} from a ``write_record`` file; raises ProbeError when it cannot be read."""
    out = {}
    try:
        with open(path, "rb") as handle:
            if handle.readline() != RECORD_MAGIC:
                raise ProbeError("%s is not a probe record" % path)
            head = json.loads(handle.readline().decode("ascii"))
            for kind, flow, typecode, count in head["arrays"]:
                arr = array(typecode)
                if count:
                    arr.fromfile(handle, count)
                if head.get("byteorder") != sys.byteorder and arr.itemsize > 1:
                    arr.byteswap()
                out.setdefault(kind, {})[flow] = arr
    except (OSError, EOFError, ValueError, KeyError) as exc:
        raise ProbeError("cannot read the probe record %s: %s" % (path, exc)) from exc
    return out


def arrivals_record(analyzer):
    """The receiver's record of arrivals as ``write_record`` arrays."""
    arrays = []
    for flow, rec in sorted(analyzer.record_arrays().items()):
        seen = array("B")
        seen.frombytes(bytes(rec["seen"]))
        arrays += [("rx", flow, rec["rx"]), ("seen", flow, seen), ("reordered", flow, rec["reordered"]),
                   ("duplicated", flow, rec["duplicated"])]
    return arrays


def judge_windows(windows, sender, send_record, arrival_record):
    """``window_figures`` from the sender's report and the two ends' record files; (figures, notes)."""
    sent = read_record(send_record).get("tx", {})
    rec = read_record(arrival_record)
    arrivals = {}
    for kind in ("rx", "seen", "reordered", "duplicated"):
        for flow, arr in rec.get(kind, {}).items():
            arrivals.setdefault(flow, {})[kind] = arr
    spacing = {g["name"]: int(round(g["interval_ms"] * 1e6)) for g in sender.get("groups") or []}
    if not spacing:  # a sender report without groups: one group
        spacing = {DEFAULT_GROUP: int(round((sender.get("interval_ms") or 0) * 1e6))}
    flows = [{"flow": f["flow"], "group": f.get("group", DEFAULT_GROUP), "spacing_ns": spacing.get(f.get("group", DEFAULT_GROUP), 0)}
             for f in sender["flows"]]
    figures = window_figures(windows, flows, sent, arrivals)
    return figures, window_notes(figures, sender.get("first_tx_ns"), sender.get("last_tx_ns"))


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


# the step label of a trial's candidate instances: "<step>~trial" (_chains.TRIAL_SUFFIX; a warm
# spare's is "<step>~spare"; this file
# imports nothing of the collection: it runs alone as the flowstream-probe command)
TRIAL_SUFFIX = "~trial"


def instances_by_step(reports, chain):
    """{step: {instance: per-flow counters}} of ``chain``'s monitors, from module_host_info results
    (one per host; those of hosts that did not answer are skipped)."""
    out = {}
    for report in reports or []:
        for inst, info in ((report or {}).get("instances") or {}).items():
            if info.get("chain") == chain and info.get("flows") is not None:
                # a trial's candidate ("<step>~trial"), a warm spare ("<step>~spare") is one of its
                # step's instances: each flow crosses it or another one, never two
                out.setdefault(str(info.get("step")).split("~", maxsplit=1)[0], {})[inst] = info.get("flows") or []
    return out


def trial_candidates(reports, chain):
    """{step: [its trial's candidate instances]} of ``chain``, from module_host_info results."""
    out = {}
    for report in reports or []:
        for inst, info in ((report or {}).get("instances") or {}).items():
            step = str(info.get("step"))
            if info.get("chain") == chain and step.endswith(TRIAL_SUFFIX):
                out.setdefault(step[:-len(TRIAL_SUFFIX)], []).append(inst)
    return {step: sorted(insts) for step, insts in out.items()}


def group_result(probe_result, name):
    """The part of a grouped probe result that is group ``name``'s: its flows, its totals and rate."""
    group = (probe_result.get("groups") or {}).get(name)
    if group is None:
        return None
    return {"flows": [f for f in probe_result.get("flows") or [] if f.get("group") == name],
            "totals": group.get("totals") or {}, "rate": group.get("rate") or {}}


def leg_path(chain, after, before=None, hosts=None):
    """The probe's way through ``chain``, counted at its instances' legs: per step on its main path
    (steps only split traffic visits are left out), in order, each instance with the packets its
    host bridge sent into its left leg (``into``), that leg dropped instead (``dropped``: its
    queue was full - an instance that takes nothing in, e.g. a VM guest that stopped reading) and
    took from its right leg (``out``) between the ``before`` and ``after`` module_host_info
    results (one per host, named by ``hosts`` in the same order) - the forward direction, the
    probe's. A black box step is there, not counted (its ports are the switch's). A trial's
    candidate or a warm spare counts with the step it stands in for. A count is None where an
    instance's legs were not read both times (``dropped``: 0 where a leg does not report drops)."""
    def by_instance(reports):
        out = {}
        for n, report in enumerate(reports or []):
            host = hosts[n] if hosts and n < len(hosts) else None
            for inst, info in ((report or {}).get("instances") or {}).items():
                if info.get("chain") == chain.get("name"):
                    out[inst] = (host, info)
        return out

    now, then = by_instance(after), by_instance(before)

    def delta(inst, leg, key):
        if inst not in then:
            return None
        a, b = (((rep[inst][1].get("legs") or {}).get(leg) or {}).get(key) for rep in (now, then))
        return None if a is None or b is None else max(int(a) - int(b), 0)

    path = []
    for step in chain.get("steps") or []:
        if step.get("only_split"):
            continue
        name = step.get("name")
        if step.get("blackbox"):
            path.append({"step": name, "blackbox": step["blackbox"]})
            continue
        mine = sorted(i for i, (_h, info) in now.items() if str(info.get("step")).split("~", maxsplit=1)[0] == name)
        path.append({"step": name, "instances": [
            {"instance": i, "host": now[i][0], "kind": now[i][1].get("kind"), "into": delta(i, "left", "tx_packets"),
             "dropped": delta(i, "left", "tx_dropped") or 0, "out": delta(i, "right", "rx_packets")} for i in mine]})
    return path


def _step_label(entry):
    return "step %s (%s)" % (entry["step"], ", ".join(
        "%s, %s%s" % (i["instance"], i["kind"] or "?", " on %s" % i["host"] if i["host"] else "") for i in entry["instances"])
        or "no instance found")


def where_lost(path, lost):
    """Where on ``path`` (:func:`leg_path`) the first half of ``lost`` packets went missing: a step
    whose instances took that many more in than they gave out, or between two counted steps, or
    a step nothing reached; None when the legs' counts do not show it (e.g. lost at a black box
    or on the way to the sink). What a step's left legs dropped reached it (the bridge handed it
    over) and did not go in: it counts as lost in that step."""
    need, prev = max(1, int(lost) // 2), None
    for entry in path:
        counts = [(i["into"], i.get("dropped") or 0, i["out"]) for i in entry.get("instances") or []]
        if "blackbox" in entry or not counts or any(c is None for triple in counts for c in triple):
            if "blackbox" not in entry and not counts:
                return "%s: no instance of it reported its legs" % _step_label(entry)
            prev = None         # not counted: the comparison starts again after it
            continue
        into, dropped, out = (sum(c[k] for c in counts) for k in range(3))
        label = _step_label(entry)
        if prev is None and into + dropped == 0:
            return "nothing reached %s" % label
        if prev is not None and prev[1] - into - dropped >= need:
            return "between %s and %s: %d packets left the one, %d reached the other" % (
                prev[0], label, prev[1], into + dropped)
        if into + dropped - out >= need:
            return "in %s: %d packets in, %d out%s" % (
                label, into, out, ", %d more dropped at its left leg (not taken in)" % dropped if dropped else "")
        prev = (label, out)
    return None


def path_line(path):
    """``path`` (:func:`leg_path`) in one line: ``vnf gue1a@mh1 3000>2990 | box: black box bb1``;
    a left leg's drops follow its count in (``0(+1000 dropped)>0``)."""
    def count(value):
        return "?" if value is None else str(value)

    def into(inst):
        return count(inst["into"]) + ("(+%d dropped)" % inst["dropped"] if inst.get("dropped") else "")
    return " | ".join(
        "%s: black box %s" % (e["step"], e["blackbox"]) if "blackbox" in e else "%s %s" % (e["step"], " ".join(
            "%s%s %s>%s" % (i["instance"], "@%s" % i["host"] if i["host"] else "", into(i), count(i["out"]))
            for i in e["instances"]) or "-") for e in path)


VERIFY_PROBLEMS = 3           # the crossing problems a chain's verdict names (then: how many more)
VERIFY_HEADER = "chain    flows     pps     sent received   lost  reord   dup   gap(ms)  parallel"


def chain_verdicts(probe_result, chains, after, before=None, hosts=None):
    """Each chain of one grouped probe run (a group per chain, named after it) judged on its own:
    its loss, reordering and duplicates against its ``verify`` limits (``max_lost``,
    ``max_reordered``: 0 unless given; duplicates: 0), and its flows' crossings of its monitored
    steps (:func:`crossing_report` with the monitors' counters read ``before`` and ``after``).
    A chain that lost more than it may also says where, from its instances' leg counters
    (:func:`leg_path`, :func:`where_lost`; ``hosts`` names the hosts of ``after``/``before``).
    Returns {ok, chains: [{chain, ok, problems, figures, path, instances}], table: [header, row per chain]}:
    a chain that failed names itself and what went wrong; the others still report."""
    out, table = [], [VERIFY_HEADER]
    for chain in chains or []:
        name = chain["name"]
        mine = group_result(probe_result, name)
        if mine is None:
            continue
        verify = chain.get("verify") or {}
        totals, problems = mine["totals"], []
        for figure, limit in (("lost", verify.get("max_lost", 0)), ("reordered", verify.get("max_reordered", 0)),
                              ("duplicated", 0)):
            if int(totals.get(figure) or 0) > int(limit):
                problems.append("%d packets %s (at most %d)" % (totals[figure], figure, int(limit)))
        if not totals.get("sent"):
            problems.append("the probe sent nothing on the chain's ports")
        path = leg_path(chain, after, before, hosts) if before is not None else []
        if int(totals.get("lost") or 0) > int(verify.get("max_lost", 0)) and path:
            where = where_lost(path, totals["lost"])
            problems.append("where: %s (packets in>out at each instance's legs: %s)" % (
                where or "not seen at the instances' legs", path_line(path)))
        crossing = crossing_report(mine, instances_by_step(after, name),
                                   instances_by_step(before, name) if before is not None else None)
        problems += crossing["problems"][:VERIFY_PROBLEMS]
        if len(crossing["problems"]) > VERIFY_PROBLEMS:
            problems.append("... and %d more of the kind" % (len(crossing["problems"]) - VERIFY_PROBLEMS))
        # the monitored steps' instances that the flows crossed ("none": a step they all missed)
        crossed = [sorted(i for i, e in entry["instances"].items() if e["flows"]) for entry in crossing["steps"].values()]
        parallel = " ".join("+".join(i) or "none" for i in crossed) or "-"
        figures = {k: totals.get(k) for k in ("sent", "received", "lost", "reordered", "duplicated", "max_gap_ms")}
        figures["achieved_pps"] = mine["rate"].get("achieved_pps")
        trials = {}
        for step, candidates in trial_candidates(after, name).items():
            entry = crossing["steps"].get(step) or {"instances": {}}
            taken = sum(entry["instances"].get(i, {}).get("flows", 0) for i in candidates)
            flows = len(mine["flows"]) or 1
            trials[step] = {"candidates": candidates, "flows": taken, "share_percent": round(100.0 * taken / flows, 1)}
        if trials:
            figures["trials"] = trials
            shares = ["%s %d/%d flows (%.1f %%)" % (step, t["flows"], len(mine["flows"]), t["share_percent"])
                      for step, t in sorted(trials.items())]
            parallel += "  trial " + ", ".join(shares)
        table.append("%-8s %5d %7.0f %8d %8d %6d %6d %5d %9.1f  %s" % (
            name, len(mine["flows"]), figures["achieved_pps"] or 0, totals.get("sent") or 0, totals.get("received") or 0,
            totals.get("lost") or 0, totals.get("reordered") or 0, totals.get("duplicated") or 0,
            totals.get("max_gap_ms") or 0, parallel))
        out.append({"chain": name, "ok": not problems, "problems": problems, "figures": figures, "path": path,
                    "said": "chain %s: %s" % (name, "; ".join(problems) if problems else "proven"),
                    "instances": {step: entry["instances"] for step, entry in crossing["steps"].items()}})
    return {"ok": all(c["ok"] for c in out), "chains": out, "table": table}


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
    groups = result.get("groups") or {}
    several = len(groups) > 1
    if several:
        for name, g in groups.items():
            gt, grate = g["totals"], g.get("rate") or {}
            lines.append("group %s: %d flows at %s pps (asked %s), sent %d, received %d, lost %d, reordered %d, duplicated %d, "
                         "longest gap %s ms" % (name, len(g["flows"]), _cell(grate.get("achieved_pps")), _cell(grate.get("asked_pps")),
                                                gt["sent"], gt["received"], gt["lost"], gt["reordered"], gt["duplicated"],
                                                _cell(gt["max_gap_ms"])))
    for name, w in (result.get("windows") or {}).items():
        lines.append("window %s: sent %d, received %d, lost %d, reordered %d, duplicated %d, longest flow gap %s ms (flow %s), "
                     "blackout %s ms" % (name, w["sent"], w["received"], w["lost"], w["reordered"], w["duplicated"],
                                         _cell(w["max_gap_ms"]), _cell(w["max_gap_flow"]), _cell(w["blackout_ms"])))
        if several:
            for gname, gw in w["groups"].items():
                lines.append("window %s, group %s: sent %d, lost %d, reordered %d, duplicated %d, longest flow gap %s ms, blackout %s ms"
                             % (name, gname, gw["sent"], gw["lost"], gw["reordered"], gw["duplicated"], _cell(gw["max_gap_ms"]),
                                _cell(gw["blackout_ms"])))
    head = ("flow",) + (("group",) if several else ()) + ("5-tuple", "sent", "recv", "lost", "reord", "dup", "gap_ms", "lat_avg_ms")
    rows = []
    for f in result["flows"][:max_rows] if max_rows else result["flows"]:
        rows.append((str(f["flow"]),) + ((str(f.get("group")),) if several else ()) + (
            "%s:%s>%s:%s" % (f["src"], f["sport"], f["dst"], f["dport"]), str(f["sent"]),
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


def args_groups(args):
    """The groups of an end's command line: ``--groups JSON``, or the one group of ``--flows`` &c."""
    if getattr(args, "groups", None):
        return normalize_groups(json.loads(args.groups) if isinstance(args.groups, str) else args.groups)
    return [{"name": DEFAULT_GROUP, "flows": args.flows, "rate": getattr(args, "rate", 1000.0), "sport": args.sport,
             "dport": args.dport, "vary": args.vary, "dscp": getattr(args, "dscp", None)}]


class _Schedule:
    """One group's sending schedule: packet i of the group is due at start + i x interval."""

    __slots__ = ("name", "flows", "n", "interval", "total", "i", "due", "start", "rescheduled", "tos", "sent", "first", "last")

    def __init__(self, group, flows, total, start):
        self.name = group["name"]
        self.flows = flows
        self.n = len(flows)
        self.interval = 1e9 / group["rate"]
        self.total = total
        self.i = self.due = 0
        self.start = start
        self.rescheduled = 0.0
        self.tos = [d << 2 for d in group["dscp"]] if group.get("dscp") else None
        self.sent = 0
        self.first = self.last = None


def _next_due(sch):
    return sch.start + sch.i * sch.interval


def _write_report(report, out, path):
    """The report as one JSON line on ``out``, or into ``path`` (a temporary name, then renamed)."""
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(report) + "\n")
        os.replace(tmp, path)
    else:
        out.write(json.dumps(report) + "\n")
        out.flush()


def send(args, out=sys.stdout):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    groups = args_groups(args)
    plan = group_plan(groups)
    src = args.src or source_address_for(args.dst)
    totals = group_counts(groups, args.count, args.duration)
    total = sum(totals)
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
    n = len(plan)
    buf = bytearray(args.size)
    pack = HEADER.pack_into
    run_id = args.run_id
    time_ns = time.time_ns
    mono = time.monotonic_ns
    _set_timer_slack(1000)
    policy = realtime_priority(args.priority)
    stop_file = getattr(args, "stop_file", None)
    report_file = getattr(args, "report", None)
    watch_pid = getattr(args, "watch_pid", None)
    halt = []
    if stop_file or report_file:
        # a session's sender: it runs until told (SIGTERM, the stop file), at most its count or duration
        signal.signal(signal.SIGTERM, lambda signum, frame: halt.append("signal %d" % signum))
        say(out, json.dumps({"ready": True, "role": "send", "src": src, "pid": os.getpid()}))
    record = [array("q") for _f in plan] if getattr(args, "record", None) else None

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
    burst = args.burst
    stats = {"max_send_gap": 0, "total_ok": 0, "prev_tx": None, "first": None, "last": None}
    max_lag = 0
    windows = []
    start = origin = mono()
    schedules = []
    base = 0
    for group, count in zip(groups, totals):
        schedules.append(_Schedule(group, list(range(base, base + group["flows"])), count, start))
        base += group["flows"]

    def emit(sch):
        """Send the group's next packet (round-robin over its flows)."""
        flow = sch.flows[sch.i % sch.n]
        seq = sent[flow]
        if sch.tos:
            setopt[flow](socket.IPPROTO_IP, socket.IP_TOS, sch.tos[seq % len(sch.tos)])
        tx = time_ns()
        pack(buf, 0, MAGIC, VERSION, 0, 0, run_id, flow, seq, tx)
        sch.i += 1
        try:
            sendto[flow](buf, addrs[flow])
        except OSError as exc:
            name = _errno.errorcode.get(exc.errno, str(exc.errno))
            errors[name] = errors.get(name, 0) + 1
            return
        sent[flow] = seq + 1
        if record is not None:
            record[flow].append(tx)
        stats["total_ok"] += 1
        sch.sent += 1
        if sch.first is None:
            sch.first = tx
        sch.last = tx
        if first_tx[flow] is None:
            first_tx[flow] = tx
        last_tx[flow] = tx
        prev = stats["prev_tx"]
        if prev is not None and tx - prev > stats["max_send_gap"]:
            stats["max_send_gap"] = tx - prev
        stats["prev_tx"] = tx
        if stats["first"] is None:
            stats["first"] = tx
        stats["last"] = tx

    active = [sch for sch in schedules if sch.total > 0]
    stopped_by = "count" if args.count is not None else "duration"
    next_check = start
    while active:
        now = mono()
        if stop_file or halt:
            if halt:
                stopped_by = halt[0]
                break
            if now >= next_check:
                next_check = now + STOP_CHECK_NS
                if os.path.exists(stop_file):
                    stopped_by = "stop-file"
                    break
                if watch_pid and not os.path.exists("/proc/%d" % watch_pid):
                    stopped_by = "owner gone (pid %d)" % watch_pid
                    break
        ready = []
        wait = None
        for sch in active:
            i = sch.i
            due = int((now - sch.start) / sch.interval) + 1
            if due > sch.total:
                due = sch.total
            if due <= i:
                left = sch.start + i * sch.interval - now
                if wait is None or left < wait:
                    wait = left
                continue
            lag = now - (sch.start + i * sch.interval)
            if lag > max_lag:
                max_lag = lag
            if due - i > burst:
                # the sender itself was held up: catching up at once would be a burst at line rate
                # that the path never asked for (measured: 589 lost after a 52 ms pause at 10 kpps),
                # so the schedule moves on by the time it cannot make up, and the run lasts longer
                behind = (due - i - burst) * sch.interval
                sch.start += behind
                sch.rescheduled += behind
                due = i + burst
            sch.due = due
            ready.append(sch)
        if not ready:
            time.sleep((min(wait, STOP_CHECK_NS) if stop_file else wait) / 1e9)
            continue
        done = stats["total_ok"]
        if len(ready) == 1:
            sch = ready[0]
            while sch.i < sch.due:
                emit(sch)
        else:
            # several groups due: their packets go out in the order of their due times
            while ready:
                sch = min(ready, key=_next_due)
                emit(sch)
                if sch.i >= sch.due:
                    ready.remove(sch)
        slot = int((now - origin) // WINDOW_NS)
        while len(windows) <= slot:
            windows.append(0)
        windows[slot] += stats["total_ok"] - done
        active = [sch for sch in active if sch.i < sch.total]
    finished = mono()
    for sock in socks.values():
        sock.close()
    count = sum(sent)
    first, last = stats["first"], stats["last"]
    span = (last - first) if count > 1 else 0
    full = windows[:int((finished - origin) // WINDOW_NS)]
    window_pps = ({"min": min(full) * 1e9 / WINDOW_NS, "max": max(full) * 1e9 / WINDOW_NS, "windows": len(full)}
                  if full else {"min": None, "max": None, "windows": 0})
    rate = sum(g["rate"] for g in groups)
    report = {
        "role": "send", "version": VERSION, "run_id": run_id, "src": src, "dst": args.dst, "size": args.size,
        "asked_pps": rate, "sent": count, "scheduled": total,
        "achieved_pps": round((count - 1) * 1e9 / span, 1) if span else None,
        "duration_s": round(span / 1e9, 6), "interval_ms": round(n * 1000.0 / rate, 6),
        "first_tx_ns": first, "last_tx_ns": last,
        "max_send_gap_ms": _ms(stats["max_send_gap"]), "max_lag_ms": _ms(max_lag), "window_pps": window_pps,
        "rescheduled_ms": _ms(int(max(sch.rescheduled for sch in schedules))),
        "send_errors": errors, "warmup_sent": warmup, "dscp": (groups[0]["dscp"] or []) if len(groups) == 1 else [],
        "scheduling": policy, "stopped_by": stopped_by,
        "groups": [{"name": g["name"], "flows": g["flows"], "asked_pps": g["rate"], "sent": sch.sent, "scheduled": sch.total,
                    "achieved_pps": round((sch.sent - 1) * 1e9 / (sch.last - sch.first), 1)
                    if sch.sent > 1 and sch.last > sch.first else None,
                    "interval_ms": round(g["flows"] * 1000.0 / g["rate"], 6), "first_tx_ns": sch.first, "last_tx_ns": sch.last,
                    "dscp": g["dscp"] or []} for g, sch in zip(groups, schedules)],
        "flows": [{"flow": f["flow"], "group": f["group"], "src": src, "sport": f["sport"], "dport": f["dport"],
                   "sent": sent[f["flow"]], "first_tx_ns": first_tx[f["flow"]], "last_tx_ns": last_tx[f["flow"]]} for f in plan],
    }
    if record is not None:
        write_record(args.record, [("tx", flow, arr) for flow, arr in enumerate(record)])
        report["record"] = args.record
    _write_report(report, out, report_file)
    return 0


# ---------------------------------------------------------------------------------------------
# The receiver (I/O)
# ---------------------------------------------------------------------------------------------

def all_arrived(analyzer, expect):
    """True when every packet of ``expect`` ({flow: packets sent}) arrived at ``analyzer``."""
    flows = analyzer.flows
    for flow, sent in expect.items():
        if sent and (flow not in flows or flows[flow].unique < sent):
            return False
    return True


class Settle:
    """When a receiver whose sender is done stops: once every packet the sender says it sent
    (``expect``, {flow: packets}; None when unknown) has arrived, after a short linger for
    duplicates still on their way (``LINGER_S``, or twice the longest one-way latency seen, if
    longer) - at the latest ``settle`` seconds after the sender was done (``now``). A run that
    lost nothing ends in milliseconds, not after the whole settle time; one that lost packets
    still waits the settle time for late ones."""

    CHECK_S = 0.01

    def __init__(self, expect, settle, now):
        self.expect = None if expect is None else {int(k): int(v) for k, v in expect.items()}
        self.deadline = now + float(settle)
        self.until = None
        self.next_check = now

    def due(self, analyzer, now):
        """Why the receiver stops now (``all arrived``, ``sender done`` at the deadline), or None."""
        if self.until is None and self.expect is not None and now >= self.next_check:
            self.next_check = now + self.CHECK_S
            if all_arrived(analyzer, self.expect):
                latency = max([st.lat_max or 0 for st in analyzer.flows.values()] + [0]) / 1e9
                self.until = min(self.deadline, now + max(LINGER_S, 2 * latency))
        if self.until is not None and now >= self.until:
            return "all arrived"
        if now >= self.deadline:
            return "sender done"
        return None


def sent_per_flow(report):
    """{flow: packets sent} from a sender's report (what a receiver settling waits for)."""
    return {int(f["flow"]): int(f["sent"]) for f in report.get("flows") or []}


def expected_of(report_path):
    """:func:`sent_per_flow` of a sender's report file, or None when it cannot be read."""
    try:
        with open(report_path, encoding="utf-8") as handle:
            return sent_per_flow(json.loads(handle.read()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        self.groups = args_groups(args)
        self.plan = group_plan(self.groups)
        self.analyzer = Analyzer({f["flow"]: (f["sport"], f["dport"]) for f in self.plan},
                                 groups={f["flow"]: f["group"] for f in self.plan}, record=bool(getattr(args, "record", None)))
        self.counts = {"foreign": 0, "other_runs": 0, "warmup_received": 0}
        self.kernel_ts = True
        self.running = True
        self.stopped_by = None
        self.last_arrival = None
        self.policy = "normal"
        self.settling = None        # a Settle once the sender is done
        self.stdin_buffer = b""

    def stop(self, signum=None, frame=None):  # pylint: disable=unused-argument
        self.running = False
        self.stopped_by = self.stopped_by or ("signal %d" % signum if signum else "stop")

    def command(self, chunk, now):
        """Lines from stdin: ``stop``, or ``settle SECONDS {flow: sent}`` (the sender is done: stop
        once its packets arrived, at most SECONDS later). End of file stops a receiver that was
        not told to settle; one that settles goes on to the settle's end. Returns False at end of
        file (stdin is not read again)."""
        self.stdin_buffer += chunk
        lines = self.stdin_buffer.split(b"\n")
        self.stdin_buffer = b"" if not chunk else lines.pop()
        for line in lines:
            words = line.strip().split(None, 2)
            if not words:
                continue
            if words[0] == b"settle" and len(words) == 3:
                try:
                    self.settling = Settle(json.loads(words[2]), float(words[1]), now)
                    continue
                except (ValueError, TypeError):
                    pass
            self.stop()
        if not chunk and self.settling is None:
            self.stop()
        return bool(chunk)

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
        # a session's receiver: it stops at its stop file, or once the packets of the sender's
        # report (--after) arrived, at most --settle seconds after it appeared (Settle), and
        # always at --max-time
        stop_file, after = getattr(self.args, "stop_file", None), getattr(self.args, "after", None)
        settle = getattr(self.args, "settle", None) or 0.0
        next_check = 0.0
        while self.running:
            try:
                events = sel.select(0.1 if self.settling is None else Settle.CHECK_S)
            except InterruptedError:
                continue
            for key, _mask in events:
                if key.data is None:
                    if not self.command(os.read(sys.stdin.fileno(), 1 << 16), time.monotonic()):
                        sel.unregister(sys.stdin)
                    continue
                self.drain(key.fileobj, key.data)
            now = time.monotonic()
            if (stop_file or after) and now >= next_check:
                next_check = now + STOP_CHECK_NS / 1e9
                if stop_file and os.path.exists(stop_file):
                    self.stopped_by = self.stopped_by or "stop-file"
                    self.running = False
                if after and self.settling is None and os.path.exists(after):
                    self.settling = Settle(expected_of(after), settle, now)
            why = self.settling.due(self.analyzer, now) if self.settling is not None else None
            if why:
                self.stopped_by = self.stopped_by or why
                self.running = False
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
                       "socket_drops": drops, "stopped_by": self.stopped_by, "scheduling": self.policy,
                       "plan": [{"flow": f["flow"], "group": f["group"]} for f in self.plan]})
        if getattr(self.args, "record", None):
            write_record(self.args.record, arrivals_record(self.analyzer))
            report["record"] = self.args.record
        _write_report(report, self.out, getattr(self.args, "report", None))
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


def plan_argv(cfg, role, program, python, files=None):
    """argv of one end (``send`` or ``receive``) from the probe's settings. ``files``: where a
    session's ends report, look for their stop file and keep their records (``session_files``),
    or only the records of a run judged by windows ({send_record, arrival_record})."""
    files = files or {}
    argv = [python, program, role, "--dst", cfg["dst"], "--run-id", str(cfg["run_id"]), "--flows", str(cfg["flows"]),
            "--sport", str(cfg["sport"]), "--dport", str(cfg["dport"]), "--vary", cfg["vary"],
            "--priority", str(cfg["priority"])]
    if cfg.get("grouped"):
        argv += ["--groups", json.dumps(cfg["groups"], separators=(",", ":"))]
    if role == "receive":
        if files.get("receiver_report"):
            argv += ["--report", files["receiver_report"], "--stop-file", files["receiver_stop"],
                     "--after", files["sender_report"], "--settle", repr(float(cfg["settle"]))]
        else:
            argv += ["--stdin"]
        argv += ["--max-time", str(cfg["timeout"])]
        if files.get("arrival_record"):
            argv += ["--record", files["arrival_record"]]
        return _in_netns(cfg.get("sink_netns"), argv)
    argv += ["--rate", repr(float(cfg["rate"])), "--size", str(cfg["size"]), "--burst", str(cfg.get("burst", 32))]
    argv += ["--count", str(cfg["count"])] if cfg.get("count") is not None else ["--duration", repr(float(cfg["duration"]))]
    if cfg.get("src"):
        argv += ["--src", cfg["src"]]
    if cfg.get("dscp") and not cfg.get("grouped"):
        argv += ["--dscp", ",".join(str(d) for d in cfg["dscp"])]
    if not cfg.get("warmup", True):
        argv += ["--no-warmup"]
    if files.get("sender_report"):
        argv += ["--report", files["sender_report"], "--stop-file", files["sender_stop"]]
        if cfg.get("watch_pid"):
            argv += ["--watch-pid", str(int(cfg["watch_pid"]))]
    if files.get("send_record"):
        argv += ["--record", files["send_record"]]
    return _in_netns(cfg.get("source_netns"), argv)


def defaults(cfg, session=False):  # pylint: disable=too-many-branches
    """The probe's settings with defaults filled in and checked (raises ValueError).

    ``groups`` (several groups of flows, each at its own rate) replaces the one group of
    ``flows``, ``rate``, ``dport``, ``sport``, ``vary`` and ``dscp``; giving both is an error.
    ``session``: the settings of a started session, which runs until it is stopped, at most
    ``duration`` seconds (default 600) - ``count`` is not for sessions."""
    given = {k: v for k, v in cfg.items() if v is not None}
    if "grouped" in given:  # settings checked before: they have both, the groups or the one group's options
        if not given.pop("grouped"):
            given.pop("groups", None)
    elif given.get("groups") is not None:
        clash = [k for k in SINGLE_GROUP_KEYS if k in given]
        if clash:
            raise ValueError("groups and %s are mutually exclusive: with groups, each group has its own flows, rate, "
                             "destination_port, source_port, vary and dscp" % clash[0])
    out = {"flows": 16, "sport": 40000, "dport": 9000, "vary": "sport", "rate": 1000.0, "duration": None, "count": None,
           "size": 64, "settle": 0.5, "warmup": True, "dscp": None, "src": None, "source_netns": None,
           "sink_netns": None, "burst": 32, "run_id": None, "timeout": None, "priority": 0, "groups": None, "windows": None,
           "watch_pid": None}
    out.update(given)
    if not out.get("dst"):
        raise ValueError("the sink's address (dst) is required")
    if out["groups"] is not None:
        out["groups"] = normalize_groups(out["groups"])
        out["grouped"] = True
        out["flows"] = sum(g["flows"] for g in out["groups"])
        out["rate"] = sum(g["rate"] for g in out["groups"])
    else:
        flow_plan(out["flows"], out["sport"], out["dport"], out["vary"])
        if not 0 < float(out["rate"]) <= MAX_RATE:
            raise ValueError("rate must be more than 0 and at most 1000000 packets per second, not %s" % out["rate"])
        for d in out["dscp"] or []:
            if not 0 <= int(d) <= 63:
                raise ValueError("dscp values are 0-63, not %s" % d)
        out["grouped"] = False
        out["groups"] = [{"name": DEFAULT_GROUP, "flows": out["flows"], "rate": float(out["rate"]), "sport": out["sport"],
                          "dport": out["dport"], "vary": out["vary"], "dscp": list(out["dscp"]) if out["dscp"] else None}]
    if not MIN_SIZE <= int(out["size"]) <= MAX_SIZE:
        raise ValueError("size must be %d-%d bytes of UDP payload, not %s" % (MIN_SIZE, MAX_SIZE, out["size"]))
    if session and out["count"] is not None:
        raise ValueError("count is not for a started session: it runs until it is stopped, at most duration seconds")
    if out["count"] is not None and out["count"] < 1:
        raise ValueError("count must be at least 1")
    if out["duration"] is None:
        out["duration"] = SESSION_DURATION if session else 3.0
    if out["count"] is None and float(out["duration"]) <= 0:
        raise ValueError("duration must be more than 0 seconds")
    if not 0 <= int(out["priority"]) <= 99:
        raise ValueError("priority must be 0 (normal scheduling) or a SCHED_FIFO priority 1-99, not %s" % out["priority"])
    if float(out["settle"]) < 0:
        raise ValueError("settle must not be negative")
    seconds = (out["count"] / float(out["rate"])) if out["count"] is not None else float(out["duration"])
    if out["timeout"] is None:
        out["timeout"] = round(seconds + float(out["settle"]) + 30, 3)
    elif out["timeout"] < seconds + float(out["settle"]):
        raise ValueError("timeout %s s is shorter than the run (%.1f s) and its settle time" % (out["timeout"], seconds))
    out["windows"] = parse_windows(out["windows"]) if out["windows"] else []
    if not out["run_id"]:
        out["run_id"] = random.randint(1, 0xFFFFFFFF)
    return out


SETTINGS_KEYS = ("source_netns", "sink_netns", "src", "dst", "flows", "sport", "dport", "vary", "rate", "duration", "count", "size",
                 "settle", "warmup", "dscp")


def settings_of(cfg):
    """The settings a result reports (``settings``): the existing keys, ``groups`` and, when
    given, the windows."""
    out = {k: cfg.get(k) for k in SETTINGS_KEYS}
    if cfg.get("grouped"):  # the groups' own ports and marks count, not the single-group defaults
        out.update({"sport": None, "dport": None, "vary": None, "dscp": None})
    out["groups"] = [dict(g) for g in cfg["groups"]]
    if cfg.get("windows"):
        out["windows"] = [dict(w) for w in cfg["windows"]]
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


def run_probe(cfg, program=None, python=None):  # pylint: disable=too-many-locals
    """Start the receiver (in the sink's namespace), then the sender (in the source's), wait
    ``settle`` seconds after the sender is done, stop the receiver, and return ``merge`` of the
    two reports with the settings (``probe`` key of the result). With ``windows`` the two ends
    keep records (in a temporary directory, removed after) and the result has ``windows``."""
    cfg = defaults(cfg)
    program = program or os.path.abspath(__file__)
    python = python or sys.executable
    workdir = tempfile.mkdtemp(prefix="flowstream-probe-") if cfg["windows"] else None
    files = {"send_record": os.path.join(workdir, "send-times.bin"),
             "arrival_record": os.path.join(workdir, "arrivals.bin")} if workdir else None
    try:
        recv_argv = plan_argv(cfg, "receive", program, python, files)
        send_argv = plan_argv(cfg, "send", program, python, files)
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
            # the receiver stops once what the sender sent arrived, at most settle seconds from now
            expect = json.dumps(sent_per_flow(sent), separators=(",", ":"))
            try:
                out, err = receiver.communicate("settle %r %s\n" % (float(cfg["settle"]), expect),
                                                timeout=float(cfg["settle"]) + 30)
            except subprocess.TimeoutExpired as exc:
                raise ProbeError("the receiver did not stop within %s s" % (float(cfg["settle"]) + 30)) from exc
            if receiver.returncode != 0:
                raise ProbeError("the receiver failed (rc=%d): %s" % (receiver.returncode, (err or "").strip()[-2000:]))
            got = _last_json(out, "the receiver")
        finally:
            if receiver.poll() is None:
                receiver.kill()
                receiver.wait()
        result = merge(sent, got)
        if cfg["windows"]:
            result["windows"], notes = judge_windows(cfg["windows"], sent, files["send_record"], files["arrival_record"])
            result["notes"] += notes
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result["settings"] = settings_of(cfg)
    result["settings"]["src"] = sent.get("src")
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    return result


def group_totals(result):
    """{group name: totals} of a result (a probe without groups is one group of its own)."""
    groups = result.get("groups") or {}
    if groups:
        return {name: g.get("totals", {}) for name, g in groups.items()}
    return {DEFAULT_GROUP: result.get("totals", {})}


def losing_groups(result):
    """The groups of a result that lost a packet or received none, sorted."""
    return sorted(name for name, t in group_totals(result).items() if t.get("lost") or not t.get("received"))


def until_carried(cfg, tries, duration=0.5, rate=200.0, settle=0.3, runner=None):
    """Short uncounted probes at a low ``rate`` (every group at it), ``duration`` seconds each,
    until every group receives with nothing lost, at most ``tries``: a step just started may
    not forward yet. Returns {attempts, carried, losing (the groups still losing at the last
    try), seconds}; the probes' figures are not kept."""
    runner = runner or run_probe
    cfg = defaults(cfg)
    short = dict(cfg, duration=float(duration), count=None, settle=float(settle), windows=[], run_id=None, timeout=None,
                 groups=[dict(g, rate=float(rate)) for g in cfg["groups"]])
    started = time.monotonic()
    attempts, losing = 0, []
    while attempts < max(1, int(tries)):
        attempts += 1
        losing = losing_groups(runner(short))
        if not losing:
            break
    return {"attempts": attempts, "carried": not losing, "losing": losing, "seconds": round(time.monotonic() - started, 3)}


# ---------------------------------------------------------------------------------------------
# Background sessions: started now, stopped (and judged) later, by another process
# ---------------------------------------------------------------------------------------------

SESSION_FILES = {"state": "session.json", "program": "probe.py", "sender_report": "sender.json",
                 "receiver_report": "receiver.json", "sender_out": "sender.out", "sender_err": "sender.err",
                 "receiver_out": "receiver.out", "receiver_err": "receiver.err", "sender_stop": "stop-sender",
                 "receiver_stop": "stop-receiver", "send_record": "send-times.bin", "arrival_record": "arrivals.bin"}
ROLES = (("sender", "send"), ("receiver", "receive"))


def session_files(directory):
    """The files of a session directory, by purpose."""
    return {k: os.path.join(directory, v) for k, v in SESSION_FILES.items()}


def new_session_id():
    """A session id: the UTC start time and 6 random hex digits (e.g. 20261126-052400-3fa9c1)."""
    return "%s-%s" % (time.strftime("%Y%m%d-%H%M%S", time.gmtime()), os.urandom(3).hex())


def proc_info(pid):
    """(state, start time in clock ticks since boot, argv) of process ``pid`` from /proc, or None."""
    try:
        with open("/proc/%d/stat" % int(pid), encoding="ascii", errors="replace") as handle:
            stat = handle.read()
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            argv = [a.decode("utf-8", "replace") for a in handle.read().split(b"\0") if a]
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[19]), argv


def _tail(path, lines=5):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return "(no %s)" % os.path.basename(path)
    text = text.strip()
    return " | ".join(text.splitlines()[-lines:]) if text else "(%s is empty)" % os.path.basename(path)


def _process_of_session(state, role):
    """Is the recorded pid of ``role`` (sender/receiver) still that end of this session? (True,
    what) - or (False, what was found there instead)."""
    pid = state["pids"][role]
    info = proc_info(pid)
    if info is None:
        return False, "pid %d: no such process" % pid
    proc_state, start, argv = info
    if proc_state == "Z":
        return False, "pid %d: ended, a zombie not yet reaped" % pid
    if start != state["starttimes"][role]:
        return False, "pid %d: another process now (started after this session's %s)" % (pid, role)
    cmd = dict(ROLES)[role]
    mine = state["program"] in argv and cmd in argv and "--run-id" in argv and \
        argv[argv.index("--run-id") + 1:argv.index("--run-id") + 2] == [str(state["run_id"])]
    if not mine:
        return False, "pid %d: another program now: %s" % (pid, " ".join(argv)[:200])
    return True, "pid %d running" % pid


def _session_ref(ref, root):
    """(id, directory) of a session given by its id or by the dict ``start_session`` returned."""
    if isinstance(ref, dict):
        sid, directory = ref.get("id"), ref.get("dir")
    else:
        sid, directory = ref, None
    if not isinstance(sid, str) or not SESSION_ID.match(sid):
        raise ProbeError("session must be a session id (letters, digits, '.', '_', '-') or the session dict that "
                         "state=started returned, not %r" % (ref,))
    directory = directory or os.path.join(root or SESSION_ROOT, sid)
    if os.path.basename(os.path.normpath(directory)) != sid:
        raise ProbeError("session %s: its dir %s does not end in the session id" % (sid, directory))
    return sid, directory


def load_session(ref, root=SESSION_ROOT):
    """The state a started session left in its directory; ProbeError naming the session when there is none."""
    sid, directory = _session_ref(ref, root)
    path = os.path.join(directory, SESSION_FILES["state"])
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError as exc:
        raise ProbeError("session %s does not exist (no %s): it was stopped already, or never started%s" % (
            sid, path, "" if os.path.isdir(os.path.dirname(directory)) else " (no %s)" % os.path.dirname(directory))) from exc
    except (OSError, ValueError) as exc:
        raise ProbeError("session %s: cannot read %s: %s" % (sid, path, exc)) from exc
    if state.get("id") != sid:
        raise ProbeError("session %s: %s belongs to session %s" % (sid, path, state.get("id")))
    return state


def session_status(ref, root=SESSION_ROOT):
    """What a session's ends are doing: {id, dir, started_ns, sender: {pid, state, found}, receiver: ...};
    state is ``running``, ``done`` (ended with its report) or ``gone`` (ended without one)."""
    state = load_session(ref, root)
    out = {"id": state["id"], "dir": state["dir"], "started_ns": state["started_ns"]}
    for role, _cmd in ROLES:
        alive, found = _process_of_session(state, role)
        if alive:
            status = "running"
        elif os.path.exists(state["files"][role + "_report"]):
            status, found = "done", found + "; ended with its report"
        else:
            status = "gone"
        out[role] = {"pid": state["pids"][role], "state": status, "found": found}
    return out


def _gone_error(state, status, role):
    files = state["files"]
    return ("session %s: the %s (%s) ended without its report (killed, or it failed); the last lines of %s: %s" % (
        state["id"], role, status[role]["found"], os.path.basename(files[role + "_err"]), _tail(files[role + "_err"])))


def _end_processes(state, grace=2.0):
    """End the session's ends that still run - by their recorded pids, each checked in /proc to
    be that end of this session first; SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [role for role, _c in ROLES if _process_of_session(state, role)[0]]
        if not alive:
            return
        for role in alive:
            try:
                os.kill(state["pids"][role], sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_process_of_session(state, role)[0] for role in alive):
            time.sleep(0.05)


def _touch(path):
    with open(path, "a", encoding="ascii"):
        pass


def _wait_report(state, role, timeout):
    """The report of ``role`` once it is there (or a ProbeError when the end ended without one,
    or did not report within ``timeout`` seconds)."""
    path = state["files"][role + "_report"]
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return _last_json(handle.read(), "the %s of session %s" % (role, state["id"]))
        alive, found = _process_of_session(state, role)
        if not alive and not os.path.exists(path):
            raise ProbeError("session %s: the %s (%s) ended without its report; the last lines of %s: %s" % (
                state["id"], role, found, os.path.basename(state["files"][role + "_err"]), _tail(state["files"][role + "_err"])))
        if time.monotonic() > deadline:
            raise ProbeError("session %s: the %s (pid %d) did not report within %s s of being told to stop" % (
                state["id"], role, state["pids"][role], timeout))
        time.sleep(0.05)


def _wait_line(proc, path, err_path, timeout, what):
    """The first JSON line an end started in a session writes to its output file (it is ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("{") and line.endswith("\n"):
                        return json.loads(line)
        except OSError:
            pass
        if proc.poll() is not None:
            raise ProbeError("%s did not start (rc=%s): %s" % (what, proc.returncode, _tail(err_path, 20)))
        if time.monotonic() > deadline:
            raise ProbeError("%s did not start within %s s: %s" % (what, timeout, _tail(err_path, 20)))
        time.sleep(0.02)


def owner_pid(start=None, names=("ansible-playbook", "ansible-runner")):
    """The pid of the playbook run this process belongs to: the outermost ancestor whose command
    line names ``ansible-playbook`` (or ansible-runner), or None (an ad-hoc run, a remote host)."""
    pid = start or os.getpid()
    found = None
    for _depth in range(64):
        try:
            with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
                ppid = int(handle.read().rsplit(") ", 1)[1].split()[1])
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            break
        if any(name in cmdline for name in names):
            found = pid
        if ppid <= 1:
            break
        pid = ppid
    return found


def sweep_orphans(root=SESSION_ROOT):
    """Remove the directories of sessions that a playbook run started and left behind when it was
    killed (SIGKILL gives it no chance to stop them): the run that owned the session (its
    ``watch_pid``, ``stop_with_playbook``) is gone, and neither end still runs - both stop by
    themselves once their owner is gone. A session without an owner (started by hand or by a
    test, stopped by whoever started it) is never touched, nor one whose state is not written
    yet. Returns the ids removed, in order."""
    removed = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return removed
    for sid in names:
        if not SESSION_ID.match(sid):
            continue
        try:
            state = load_session(sid, root)
        except ProbeError:
            continue
        owner = (state.get("cfg") or {}).get("watch_pid")
        if not owner or os.path.exists("/proc/%d" % owner):
            continue
        if any(_process_of_session(state, role)[0] for role, _c in ROLES):
            continue
        shutil.rmtree(os.path.join(root, sid), ignore_errors=True)
        removed.append(sid)
    return removed


def start_session(cfg, program=None, python=None, root=SESSION_ROOT, limits=None):  # pylint: disable=too-many-locals
    """Start a background session: the receiver, then the sender, both detached (a session of
    their own), both reporting into files of the session directory ``root/<id>``; return at once
    with {id, dir, started_ns (CLOCK_REALTIME), pids, settings, swept}. The sender runs until it is
    told to stop (``stop_session``), at most ``duration`` seconds; the receiver ends ``settle``
    seconds after the sender, when told, and always by ``timeout``. ``limits`` and the windows
    of ``cfg`` are kept for ``stop_session``. First the sessions of killed playbook runs are
    swept away (``sweep_orphans``; their ids in ``swept``)."""
    cfg = defaults(cfg, session=True)
    program = program or os.path.abspath(__file__)
    python = python or sys.executable
    root = root or SESSION_ROOT
    os.makedirs(root, mode=0o755, exist_ok=True)
    swept = sweep_orphans(root)
    sid = new_session_id()
    directory = os.path.join(root, sid)
    os.mkdir(directory, 0o700)
    files = session_files(directory)
    procs = {}
    started_ns = None
    try:
        shutil.copyfile(program, files["program"])  # the session outlives the module's temporary copy
        for role, cmd in (("receiver", "receive"), ("sender", "send")):
            argv = plan_argv(cfg, cmd, files["program"], python, files)
            if role == "sender":
                started_ns = time.time_ns()
            with open(files[role + "_out"], "w", encoding="utf-8") as out, open(files[role + "_err"], "w", encoding="utf-8") as err:
                procs[role] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,  # pylint: disable=consider-using-with
                                               start_new_session=True, close_fds=True)
            _wait_line(procs[role], files[role + "_out"], files[role + "_err"], 15, "the %s of session %s" % (role, sid))
        starttimes = {}
        for role, proc in procs.items():
            info = proc_info(proc.pid)
            if info is None:
                raise ProbeError("the %s of session %s (pid %d) ended at once: %s" % (role, sid, proc.pid, _tail(files[role + "_err"])))
            starttimes[role] = info[1]
    except BaseException:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    settings = settings_of(cfg)
    settings.update({"run_id": cfg["run_id"], "timeout": cfg["timeout"], "priority": cfg["priority"]})
    session = {"id": sid, "dir": directory, "started_ns": started_ns,
               "pids": {role: proc.pid for role, proc in procs.items()}, "settings": settings, "swept": swept}
    state = dict(session, version=VERSION, run_id=cfg["run_id"], program=files["program"], python=python, files=files,
                 starttimes=starttimes, settle=float(cfg["settle"]), limits=limits or {},
                 windows=[{"name": w["name"], "start": w["start_ns"], "end": w["end_ns"]} for w in cfg["windows"]],
                 cfg={k: v for k, v in cfg.items() if k != "windows"})
    tmp = files["state"] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(tmp, files["state"])
    return session


def stop_session(ref, root=SESSION_ROOT, windows=None, report_timeout=30):  # pylint: disable=too-many-locals
    """Stop a started session and return its result, exactly as ``run_probe`` would (plus
    ``session``): tell the sender to stop (its stop file and SIGTERM), take its report, wait
    ``settle``, stop the receiver, take its report, ``merge``, judge the windows given at start
    and here (``windows``, unparsed; one given here replaces one of the same name), remove the
    session directory. Only the session's own processes are signalled, by the pids recorded at
    start, each checked in /proc first. A session that does not exist, or whose ends ended
    without their reports, is a ProbeError naming the session and what was found."""
    state = load_session(ref, root)
    later = parse_windows(windows) if windows else []
    status = session_status(ref, root)
    files = state["files"]
    gone = [role for role, _c in ROLES if status[role]["state"] == "gone"]
    if gone:
        message = "; ".join([_gone_error(state, status, role) for role in gone])
        _end_processes(state)
        shutil.rmtree(state["dir"], ignore_errors=True)
        raise ProbeError(message)
    try:
        _touch(files["sender_stop"])
        if status["sender"]["state"] == "running" and _process_of_session(state, "sender")[0]:
            try:
                os.kill(state["pids"]["sender"], signal.SIGTERM)
            except OSError:
                pass
        sent = _wait_report(state, "sender", report_timeout)
        if status["receiver"]["state"] == "running":
            # the receiver ends by itself once the sender's packets arrived, at most settle later
            deadline = time.monotonic() + state["settle"] + 2 * STOP_CHECK_NS / 1e9
            while time.monotonic() < deadline and not os.path.exists(files["receiver_report"]):
                time.sleep(0.01)
        _touch(files["receiver_stop"])
        if _process_of_session(state, "receiver")[0]:
            try:
                os.kill(state["pids"]["receiver"], signal.SIGTERM)
            except OSError:
                pass
        got = _wait_report(state, "receiver", report_timeout)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_process_of_session(state, role)[0] for role, _c in ROLES):
            time.sleep(0.05)
        result = merge(sent, got)
        cfg = dict(state["cfg"])
        cfg["windows"] = combine_windows(parse_windows(state["windows"]), later)
        if cfg["windows"]:
            result["windows"], notes = judge_windows(cfg["windows"], sent, files["send_record"], files["arrival_record"])
            result["notes"] += notes
    finally:
        _end_processes(state)
        shutil.rmtree(state["dir"], ignore_errors=True)
    if sent.get("stopped_by") in ("duration", "count"):
        result["notes"].append("session %s had ended on its own at its bound (duration %s s) before it was stopped" % (
            state["id"], cfg["duration"]))
    result["settings"] = settings_of(cfg)
    result["settings"]["src"] = sent.get("src")
    stopped_ns = time.time_ns()
    result["elapsed_s"] = round((stopped_ns - state["started_ns"]) / 1e9, 3)
    result["session"] = {"id": state["id"], "dir": state["dir"], "started_ns": state["started_ns"], "stopped_ns": stopped_ns,
                         "sender_stopped_by": sent.get("stopped_by"), "receiver_stopped_by": got.get("stopped_by")}
    return result, state.get("limits") or {}


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


def _plan_args(parser, with_defaults=True):
    dflt = (lambda value: value) if with_defaults else (lambda value: None)
    parser.add_argument("--dst", required=True, help="the sink's address")
    parser.add_argument("--flows", type=int, default=dflt(16), help="number of flows (distinct 5-tuples), default 16")
    parser.add_argument("--sport", type=int, default=dflt(40000), help="first source port, default 40000")
    parser.add_argument("--dport", type=int, default=dflt(9000), help="first destination port, default 9000")
    parser.add_argument("--vary", choices=VARY, default=dflt("sport"), help="which port counts up from flow to flow, default sport")
    parser.add_argument("--groups", help="several groups of flows instead of --flows/--rate/--sport/--dport/--vary/--dscp: a JSON list "
                        "of {name, flows, rate, destination_port, source_port, vary, dscp}")
    parser.add_argument("--priority", type=int, default=0,
                        help="SCHED_FIFO priority of the probe's processes, default 0: normal scheduling (docs/probe.md)")


def _send_args(parser, with_defaults=True, session=False):
    dflt = (lambda value: value) if with_defaults else (lambda value: None)
    parser.add_argument("--rate", type=float, default=dflt(1000.0), help="total packets per second over all flows, default 1000")
    if session:
        parser.add_argument("--duration", type=float, help="the session's bound: it ends by itself after this many seconds, "
                            "default %d" % SESSION_DURATION)
    else:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--duration", type=float, default=dflt(3.0), help="seconds of sending, default 3")
        group.add_argument("--count", type=int, help="packets to send in total (instead of a duration)")
    parser.add_argument("--size", type=_size, default=64, help="UDP payload bytes, %d-%d, default 64" % (MIN_SIZE, MAX_SIZE))
    parser.add_argument("--src", help="source address (default: the one the kernel picks towards --dst)")
    parser.add_argument("--dscp", type=_dscp_list, help="DSCP values the packets of each flow cycle through (e.g. 0,8)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="do not send one uncounted packet per flow before the run")
    parser.add_argument("--burst", type=int, default=32,
                        help="most packets sent back to back to catch up after a pause of the sender's own, default 32")


def _window_arg(text):
    name, sep, span = text.partition("=")
    start, comma, end = span.partition(",")
    if not sep or not comma or not name:
        raise argparse.ArgumentTypeError("NAME=START,END (CLOCK_REALTIME epoch seconds or nanoseconds)")
    return {"name": name, "start": start, "end": end}


def _limit_args(parser):
    for key in ("lost", "reordered", "duplicated"):
        parser.add_argument("--max-" + key, type=int, help="exit 1 when more packets than this are %s in total" % key)
    parser.add_argument("--max-gap-ms", type=float, help="exit 1 when the longest gap is longer (ms)")


def build_parser():
    parser = argparse.ArgumentParser(prog="flowstream-probe", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="role", required=True)
    snd = sub.add_parser("send", help="send the probe's datagrams; print what was sent as JSON")
    _plan_args(snd)
    _send_args(snd)
    snd.add_argument("--run-id", type=int, required=True)
    snd.add_argument("--warmup-wait", type=float, default=0.1, help=argparse.SUPPRESS)
    snd.add_argument("--report", help="write the report into this file (renamed into place when complete), not to stdout")
    snd.add_argument("--stop-file", help="stop sending when this file appears (checked every 50 ms); SIGTERM stops too")
    snd.add_argument("--watch-pid", type=int, help="with --stop-file: stop sending when this process is gone (the playbook that "
                     "started the session)")
    snd.add_argument("--record", help="write every packet's send time into this file (per flow, array of int64 ns)")
    rcv = sub.add_parser("receive", help="count the probe's datagrams per flow; print the counts as JSON when stopped")
    _plan_args(rcv)
    rcv.add_argument("--run-id", type=int, required=True)
    rcv.add_argument("--stdin", action="store_true", help="stop at a 'stop' line or end of file on stdin")
    rcv.add_argument("--idle", type=float, help="stop this many seconds after the last arrival")
    rcv.add_argument("--max-time", type=float, default=600.0, help="stop after this many seconds in any case, default 600")
    rcv.add_argument("--report", help="write the report into this file (renamed into place when complete), not to stdout")
    rcv.add_argument("--stop-file", help="stop when this file appears")
    rcv.add_argument("--after", help="stop once the packets of this file (the sender's report) arrived, at most --settle seconds after it appears")
    rcv.add_argument("--settle", type=float, default=0.5,
                     help="with --after: seconds to keep receiving at most (less once all the report's packets arrived), default 0.5")
    rcv.add_argument("--record", help="write every arrival into this file (for windows)")
    run = sub.add_parser("run", help="both ends (ip netns exec), one report: a table and the JSON")
    _plan_args(run, with_defaults=False)
    _send_args(run, with_defaults=False)
    run.add_argument("--source-netns", help="network namespace of the sender")
    run.add_argument("--sink-netns", help="network namespace of the receiver")
    run.add_argument("--settle", type=float, default=0.5,
                     help="seconds to keep receiving after the sender is done, at most (less once all arrived), default 0.5")
    run.add_argument("--window", action="append", type=_window_arg, dest="windows", metavar="NAME=START,END",
                     help="judge the packets sent in this part of the run too (CLOCK_REALTIME epoch seconds, or ns from 10**12 "
                     "up); repeat for more")
    _limit_args(run)
    run.add_argument("--json", action="store_true", help="print only the JSON (one line), not the table before it")
    start = sub.add_parser("start", help="start a background session (both ends detached); print it as JSON")
    _plan_args(start, with_defaults=False)
    _send_args(start, with_defaults=False, session=True)
    start.add_argument("--source-netns", help="network namespace of the sender")
    start.add_argument("--sink-netns", help="network namespace of the receiver")
    start.add_argument("--settle", type=float, default=0.5,
                       help="seconds to keep receiving after the sender stopped, at most (less once all arrived), default 0.5")
    start.add_argument("--session-root", default=SESSION_ROOT, help="where session directories are made, default %s" % SESSION_ROOT)
    start.add_argument("--window", action="append", type=_window_arg, dest="windows", metavar="NAME=START,END",
                       help="a window to judge when the session is stopped (more can be given then)")
    stop = sub.add_parser("stop", help="stop a background session: a table and the JSON, as run")
    stop.add_argument("--session", required=True, help="the session id that start printed")
    stop.add_argument("--session-root", default=SESSION_ROOT, help="where session directories are made, default %s" % SESSION_ROOT)
    stop.add_argument("--window", action="append", type=_window_arg, dest="windows", metavar="NAME=START,END",
                      help="judge the packets sent in this part of the session; repeat for more")
    _limit_args(stop)
    stop.add_argument("--json", action="store_true", help="print only the JSON (one line), not the table before it")
    return parser


def _cli_cfg(args):
    cfg = {k: getattr(args, k, None) for k in ("dst", "flows", "sport", "dport", "vary", "rate", "duration", "count", "size",
                                               "src", "dscp", "warmup", "burst", "source_netns", "sink_netns", "settle",
                                               "priority", "windows")}
    if args.groups:
        try:
            cfg["groups"] = json.loads(args.groups)
        except ValueError as exc:
            raise ValueError("--groups must be a JSON list of {name, flows, rate, destination_port, ...}: %s" % exc) from exc
    return cfg


def _limits(args):
    return {"lost": args.max_lost, "reordered": args.max_reordered, "duplicated": args.max_duplicated,
            "max_gap_ms": args.max_gap_ms}


def _print_result(args, result):
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


def _run_command(args):
    try:
        cfg = _cli_cfg(args)
        preflight(defaults(dict(cfg)))
        result = run_probe(cfg)
    except (ProbeError, ValueError) as exc:
        say(sys.stderr, "flowstream-probe: %s" % exc)
        return 2
    result["exceeded"] = check_limits(result, _limits(args))
    return _print_result(args, result)


def _start_command(args):
    try:
        cfg = _cli_cfg(args)
        preflight(defaults(dict(cfg), session=True))
        session = start_session(cfg, root=args.session_root)
    except (ProbeError, ValueError, OSError) as exc:
        say(sys.stderr, "flowstream-probe start: %s" % exc)
        return 2
    say(sys.stdout, json.dumps(session, sort_keys=True))
    return 0


def _stop_command(args):
    try:
        result, kept = stop_session(args.session, root=args.session_root, windows=args.windows)
    except (ProbeError, ValueError, OSError) as exc:
        say(sys.stderr, "flowstream-probe stop: %s" % exc)
        return 2
    limits = dict(kept)
    limits.update({k: v for k, v in _limits(args).items() if v is not None})
    result["exceeded"] = check_limits(result, limits)
    return _print_result(args, result)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.role == "send":
        if not 0 < args.rate <= MAX_RATE:
            say(sys.stderr, "send: rate must be more than 0 and at most 1000000")
            return 2
        return send(args)
    if args.role == "receive":
        return Receiver(args).run()
    if args.role == "start":
        return _start_command(args)
    if args.role == "stop":
        return _stop_command(args)
    return _run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
