# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Packet programs of the built-in process types, run inside an instance namespace.

This file is a standalone program: the process kind installs its source on the module host as
``/var/lib/flowstream/bin/fs-packet.py`` and runs, under the supervisor,

    fs-packet.py wire    LEFT RIGHT [--stats FILE]
    fs-packet.py monitor LEFT RIGHT --stats FILE
    fs-packet.py inspect LEFT RIGHT --stats FILE --pattern RE [--pattern RE ...]
                 [--action drop|mark|count] [--dscp N]

Frames are read from each leg with an AF_PACKET socket and written to the other leg, so the
program is a bump in the wire. ``monitor`` keeps per-flow (5-tuple) packet and byte counters for
both directions (bytes of the IP datagrams, as the kernel kind's monitor counts them);
``inspect`` matches regular expressions over each packet's payload and drops matching packets,
or flags the flow and marks it (sets the IPv4 DSCP of that packet and of every later packet of
the connection, both directions, fixing the header checksum) so the switch can divert the flow,
or only counts them. Counters (and the flagged connections) are written atomically to the
stats file once a second, at exit, and at once on SIGUSR1 (a move reading the state to carry).

State carried over from an earlier copy of the instance (a move: make-before-break) is read
from ``carried.json`` next to the stats file, at start and whenever it changes: its flagged
connections are marked from then on, as if this copy had flagged them itself. (Its counters
are added to this copy's by the host's report, not here.)

A new copy of a moving instance starts *held* when ``hold.json`` is in its run directory (the
order barrier of a make-before-break move, see _hold.py, installed beside this program as
``fs_hold.py``): the frames of each direction wait in memory until that direction's marker
comes through the old copy, then leave in order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import struct
import time

try:
    import fs_hold  # installed beside this program on the module host (plugins/module_utils/_hold.py)
except ImportError:  # imported as module_utils (its source is what is installed): no hold here
    fs_hold = None

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
ETH_P_IP = 0x0800
ETH_P_8021Q = 0x8100
STATS_VERSION = 2  # 2: "flagged" in the stats, SIGUSR1 dumps at once, carried.json is read


SOCKET_BUFFER = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def open_leg(name):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # deep buffers: a bump in the wire must ride out the moments the scheduler takes it off the
    # CPU (measured on 2 shared cores: ~8 % loss at 2 kpps with the default 208 KiB)
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:  # not root: as much as net.core.[rw]mem_max allows
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
    sock.bind((name, 0))
    sock.setblocking(False)
    return sock


def parse_flow(frame):
    """(src, dst, proto, sport, dport, ip header offset) of an IPv4 frame, else None."""
    if len(frame) < 34:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    if ethertype == ETH_P_8021Q and len(frame) >= 38:
        ethertype = struct.unpack_from("!H", frame, 16)[0]
        offset = 18
    if ethertype != ETH_P_IP:
        return None
    ihl = (frame[offset] & 0x0F) * 4
    proto = frame[offset + 9]
    src = socket.inet_ntoa(frame[offset + 12:offset + 16])
    dst = socket.inet_ntoa(frame[offset + 16:offset + 20])
    sport = dport = 0
    if proto in (6, 17) and len(frame) >= offset + ihl + 4:
        sport, dport = struct.unpack_from("!HH", frame, offset + ihl)
    return src, dst, proto, sport, dport, offset


def connection(flow):
    """The connection of a flow, the same for both directions."""
    ends = sorted([(flow[0], flow[3]), (flow[1], flow[4])])
    return (flow[2],) + tuple(ends)


def payload_of(frame, flow):
    offset = flow[5]
    ihl = (frame[offset] & 0x0F) * 4
    start = offset + ihl
    if flow[2] == 6 and len(frame) >= start + 13:
        start += (frame[start + 12] >> 4) * 4
    elif flow[2] == 17:
        start += 8
    return frame[start:]


def set_dscp(frame, offset, dscp):
    """Return ``frame`` with the IPv4 DSCP set to ``dscp`` and the header checksum fixed."""
    data = bytearray(frame)
    data[offset + 1] = (dscp << 2) | (data[offset + 1] & 0x03)
    ihl = (data[offset] & 0x0F) * 4
    data[offset + 10:offset + 12] = b"\0\0"
    total = 0
    for i in range(offset, offset + ihl, 2):
        total += (data[i] << 8) + data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", data, offset + 10, ~total & 0xFFFF)
    return bytes(data)


class Program:
    def __init__(self, args):
        self.args = args
        self.flows = {}
        self.totals = {"left_to_right": [0, 0], "right_to_left": [0, 0], "dropped": 0, "marked": 0, "matched": 0}
        self.patterns = [re.compile(p.encode()) for p in (args.pattern or [])]
        self.flagged = set()  # flows (both directions) a pattern was seen in: marked from then on
        self.running = True
        self.last_dump = 0.0
        self.dump_now = False
        self.carried = os.path.join(os.path.dirname(args.stats), "carried.json") if args.stats else None
        self.carried_mtime = None
        self.gate = None
        self.backlog = {"left_to_right": [], "right_to_left": []}
        self.backlog_at = {}
        if fs_hold is not None and args.stats:
            run_dir = os.path.dirname(args.stats)
            hold = fs_hold.read_config(run_dir)
            if hold:
                self.gate = fs_hold.Gate(hold.get("instance", ""), hold["token"], hold.get("timeout", 2.0))
                self.run_dir = run_dir
                os.unlink(os.path.join(run_dir, "hold.json"))  # a restart later must not hold again
                fs_hold.write_status(run_dir, self.gate)

    def stop(self, *_args):
        self.running = False

    def request_dump(self, *_args):
        self.dump_now = True

    def load_carried(self):
        """Flagged connections of an earlier copy (carried.json), when the file is new or changed."""
        if not self.carried:
            return
        try:
            mtime = os.stat(self.carried).st_mtime_ns
        except OSError:
            return
        if mtime == self.carried_mtime:
            return
        self.carried_mtime = mtime
        try:
            with open(self.carried, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return
        for key in data.get("flagged") or []:
            proto, one, two = key
            self.flagged.add((int(proto), (one[0], int(one[1])), (two[0], int(two[1]))))

    def handle(self, frame, direction):
        """The frame to forward (possibly rewritten), or None to drop it."""
        mode = self.args.mode
        flow = parse_flow(frame) if mode in ("monitor", "inspect") else None
        if mode == "inspect" and flow and self.patterns:
            payload = payload_of(frame, flow)
            key = connection(flow)
            if any(p.search(payload) for p in self.patterns):
                self.totals["matched"] += 1
                self.count(flow, frame, direction, matched=True)
                if self.args.action == "drop":
                    self.totals["dropped"] += 1
                    return None
                self.flagged.add(key)
            if self.args.action == "mark" and key in self.flagged:
                # the quick filter flags a flow: every later packet of it, both directions, is marked
                self.totals["marked"] += 1
                return set_dscp(frame, flow[5], self.args.dscp)
            return frame
        if flow and mode == "monitor":
            self.count(flow, frame, direction)
        return frame

    def count(self, flow, frame, direction, matched=False):
        key = "%s %s %d %d %d" % flow[:5]
        entry = self.flows.setdefault(key, {"src": flow[0], "dst": flow[1], "proto": flow[2], "sport": flow[3],
                                            "dport": flow[4], "packets": 0, "bytes": 0, "matched": 0,
                                            "direction": direction})
        entry["packets"] += 1
        entry["bytes"] += len(frame) - flow[5]  # IP bytes, as the kernel monitor counts them
        if matched:
            entry["matched"] += 1

    def dump(self, force=False):
        now = time.monotonic()
        if self.dump_now:
            force, self.dump_now = True, False
        if not self.args.stats or (not force and now - self.last_dump < 1.0):
            return
        self.last_dump = now
        data = {"mode": self.args.mode, "version": STATS_VERSION, "time": time.time(),
                "flagged": sorted([k[0], list(k[1]), list(k[2])] for k in self.flagged), "totals": {
            "left_to_right_packets": self.totals["left_to_right"][0], "left_to_right_bytes": self.totals["left_to_right"][1],
            "right_to_left_packets": self.totals["right_to_left"][0], "right_to_left_bytes": self.totals["right_to_left"][1],
            "matched": self.totals["matched"], "dropped": self.totals["dropped"], "marked": self.totals["marked"]},
            "flows": sorted(self.flows.values(), key=lambda f: (f["src"], f["dst"], f["proto"], f["sport"], f["dport"]))}
        tmp = self.args.stats + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, self.args.stats)

    def send(self, out, frames):
        for frame in frames:
            try:
                out.send(frame)
            except OSError:
                pass  # the other leg is down: the packet is lost, as on a wire

    def gated(self, out, direction, frame):
        """Send ``frame`` on - or keep it: while the move's marker has not come (see fs_hold), and
        behind what a released hold still lets go at its pace."""
        gate_dir = "fwd" if direction == "left_to_right" else "rev"
        if self.gate is not None and self.gate.holding(gate_dir):
            released = self.gate.offer(gate_dir, frame)
            if not self.gate.holding(gate_dir):
                self.start_backlog(direction, released, self.gate.pace(gate_dir)[0])
            self.finish_gate()
            return
        if self.backlog.get(direction):
            if fs_hold is None or fs_hold.marker_of(frame) is None:
                self.backlog[direction].append(frame)
            return
        self.send(out, [frame])

    def start_backlog(self, direction, frames, rate):
        """A released hold's frames go out at ``rate`` frames/s, in order, new ones behind them."""
        if frames:
            self.backlog[direction] = list(frames)
            self.backlog_at[direction] = (time.monotonic(), float(rate), 0)

    def drain_backlogs(self, outs):
        """Let go what the paces allow now; True while something waits."""
        waiting = False
        for direction, queue in self.backlog.items():
            if not queue:
                continue
            start, rate, sent = self.backlog_at[direction]
            due = int((time.monotonic() - start) * rate) + 1 - sent
            if due > 0:
                self.send(outs[direction], queue[:due])
                del queue[:due]
                self.backlog_at[direction] = (start, rate, sent + due)
            waiting = waiting or bool(queue)
        return waiting

    def finish_gate(self):
        if self.gate is not None and self.gate.done():
            fs_hold.write_status(self.run_dir, self.gate, final=True)
            self.gate = None

    def settle_gate(self, outs):  # pylint: disable=unused-argument
        """Directions whose hold timed out go (at their pace); a gate that let both go is done."""
        if self.gate is None:
            return
        for gate_dir, frames in self.gate.due().items():
            self.start_backlog("left_to_right" if gate_dir == "fwd" else "right_to_left", frames, self.gate.pace(gate_dir)[0])
        self.finish_gate()

    def run(self):
        left, right = open_leg(self.args.left), open_leg(self.args.right)
        peer = {left.fileno(): (right, "left_to_right"), right.fileno(): (left, "right_to_left")}
        outs = {"left_to_right": right, "right_to_left": left}
        socks = {left.fileno(): left, right.fileno(): right}
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGUSR1, self.request_dump)
        self.load_carried()
        while self.running:
            waiting = self.drain_backlogs(outs) if self.backlog_at else False
            for fd, _event in poller.poll(1 if waiting else 200):
                src = socks[fd]
                out, direction = peer[fd]
                for _burst in range(64):
                    try:
                        frame, addr = src.recvfrom(65535)
                    except BlockingIOError:
                        break
                    except InterruptedError:
                        continue
                    if addr[2] == PACKET_OUTGOING:
                        continue  # our own transmission on this leg
                    self.totals[direction][0] += 1
                    self.totals[direction][1] += len(frame)
                    frame = self.handle(frame, direction)
                    if frame is not None:
                        self.gated(out, direction, frame)
            if self.gate is not None:
                self.settle_gate(outs)
            self.load_carried()
            self.dump()
        self.dump(force=True)
        return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fs-packet", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("mode", choices=["wire", "monitor", "inspect"])
    parser.add_argument("left")
    parser.add_argument("right")
    parser.add_argument("--stats")
    parser.add_argument("--pattern", action="append")
    parser.add_argument("--action", choices=["drop", "mark", "count"], default="drop")
    parser.add_argument("--dscp", type=int, default=8)
    args = parser.parse_args(argv)
    if args.mode == "inspect" and not args.pattern:
        parser.error("inspect needs at least one --pattern")
    return Program(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
