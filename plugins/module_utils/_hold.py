# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order barrier of a make-before-break move: a new copy holds what it would send until the
old copy has let out everything it held (docs/operations.md#reordering).

The move's wave sends a *marker* (a broadcast frame of EtherType 0x88B5 naming the instance, the
direction and the move's token) into the OLD copy, per direction, from its host bridge, right
after that bridge (and, before it, the switch) stopped sending the old copy anything. The old
copy forwards it like any frame, behind every packet it still held; the switch relays it from the
old copy's output tag to the NEW copy's input. Until a direction's marker arrives, the new copy
holds that direction's output; then it lets everything out, in order. A packet of a flow that
was inside the old copy therefore leaves the chain before any later packet of the same flow
that went to the new copy: the links and each bridge's forwarding are FIFO.

Should a marker never come (an operator's firewall type that drops what it does not know, with
``policy drop``), the direction is released ``timeout`` seconds after its first held packet: no
packet is lost, but order is then not guaranteed, and the status says ``released_by: timeout``.

Where the hold is:

* process and click instances: in the program (``fs-packet.py``), which reads ``hold.json`` from
  its run directory at start and keeps the frames of a held direction in memory (:class:`Gate`);
* kernel instances: in the kernel, on the egress of the leg a direction leaves by: a token bucket
  (``tbf``) at 64 bit/s whose queue is *plugged* by a full-size dummy frame at its head (the
  bucket needs minutes to afford it, and a bucket only ever sends its head), so every frame
  behind it waits; an agent (``fs_hold.py agent``) watches the legs for the markers and opens the
  bucket (``tc qdisc change``: the queue is kept, the dummy and then everything behind it flow
  out in order). Measured on these kernels: frames held this way leave in order on the change.

This file is a standalone program too: the process kind installs it on the module host as
``/var/lib/flowstream/bin/fs_hold.py`` (standard library only).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import time

MARKER_ETHERTYPE = 0x88B5
ETH_P_ALL = 0x0003
ETH_P_8021Q = 0x8100
PACKET_OUTGOING = 4
MAGIC = b"FSMARK1 "
# the direction a marker names -> the leg it enters the instance by, and the leg it leaves by
LEGS = {"fwd": ("left", "right"), "rev": ("right", "left")}
MAX_HELD = 500000  # frames held per direction at most (then released: memory is finite)
HOLD_RATE = "64bit"     # tc keeps a 1600-byte burst at this rate (100bit rounds it below an MTU frame)
HOLD_BURST = "1600"
HOLD_LIMIT = "16mb"
PLUG = bytes.fromhex("ff" * 6 + "02f54d4b0002" + "%04x" % MARKER_ETHERTYPE) + b"FSPLUG" + b"\0" * 1494  # 1514 bytes
OPEN_TBF = ["rate", "100gbit", "burst", "16mb", "limit", "16mb"]
# What is let go after a hold leaves at twice the rate it came in (never below MIN_PACE frames/s):
# let out at once, a few hundred frames overflowed the next bridge's socket (measured: 114 lost)
PACE_FACTOR = 2.0
MIN_PACE = 5000.0
PACE_STEP = 0.1          # seconds: a pace under which the queue did not shrink for that long doubles
PACE_SECONDS = 10.0      # pacing ends after that long at most
MAX_PACE_BYTES = 1.25e9  # 10 Gbit/s


def unicast(frame):
    """Traffic of a chain is unicast; a new leg's own IPv6 chatter (router solicitations, MLD)
    is multicast and must not start a hold's timeout before the move's traffic comes."""
    return len(frame) >= 6 and not frame[0] & 1


def marker_of(frame):
    """(instance, direction, token) of a marker frame, else None."""
    if len(frame) < 14 + len(MAGIC):
        return None
    offset = 12
    ethertype = struct.unpack_from("!H", frame, offset)[0]
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        offset = 16
        ethertype = struct.unpack_from("!H", frame, offset)[0]
    if ethertype != MARKER_ETHERTYPE:
        return None
    body = frame[offset + 2:]
    if not body.startswith(MAGIC):
        return None
    words = body[len(MAGIC):].split(b"\0", 1)[0].decode("ascii", "replace").split()
    if len(words) != 3 or words[1] not in LEGS:
        return None
    return words[0], words[1], words[2]


class Gate:
    """The hold of one instance, per direction (``fwd``, ``rev``): frames offered while a
    direction is held are kept, in order, until that direction's marker comes (or ``timeout``
    seconds after its first held frame), and then given back to be sent, all of them."""

    def __init__(self, instance, token, timeout=2.0, clock=time.monotonic):
        self.instance = instance
        self.token = token
        self.timeout = float(timeout)
        self.clock = clock
        self.queues = {d: [] for d in LEGS}
        self.first = {d: None for d in LEGS}
        self.status = {d: {"released_by": None, "held": 0, "held_ms": None} for d in LEGS}
        self.bytes = {d: 0 for d in LEGS}
        self.armed = self.clock()

    def holding(self, direction):
        return self.status[direction]["released_by"] is None

    def is_marker(self, frame, direction):
        found = marker_of(frame)
        return found is not None and found == (self.instance, direction, self.token)

    def offer(self, direction, frame):
        """What to send now for ``frame`` arriving in ``direction``: nothing while held (it is
        kept), everything kept and then nothing more for the marker (a marker is not sent on),
        the frame itself once released."""
        if not self.holding(direction):
            return [frame] if marker_of(frame) is None else []
        if self.is_marker(frame, direction):
            return self.release(direction, "marker")
        if marker_of(frame) is not None:
            return []  # another move's marker: never sent on
        queue = self.queues[direction]
        if self.first[direction] is None and unicast(frame):
            self.first[direction] = self.clock()
        queue.append(frame)
        self.bytes[direction] += len(frame)
        if len(queue) >= MAX_HELD:
            return self.release(direction, "full")
        return []

    def watch(self, direction, frame):
        """For a hold kept elsewhere (a kernel queue): note ``frame`` entering in ``direction`` -
        its marker releases it, the first other frame starts its timeout."""
        if self.is_marker(frame, direction):
            self.release(direction, "marker")
        elif marker_of(frame) is None:
            if self.first[direction] is None and unicast(frame):
                self.first[direction] = self.clock()
            self.status[direction]["held"] += 1
            self.bytes[direction] += len(frame)

    def due(self):
        """{direction: frames} released now because their timeout passed."""
        out = {}
        now = self.clock()
        for direction in LEGS:
            first = self.first[direction]
            if self.holding(direction) and first is not None and now - first >= self.timeout:
                out[direction] = self.release(direction, "timeout")
        return out

    def release(self, direction, why):
        queue = self.queues[direction]
        self.queues[direction] = []
        first = self.first[direction]
        self.status[direction] = {"released_by": why, "held": len(queue) or self.status[direction]["held"],
                                  "held_ms": round((self.clock() - first) * 1000.0, 1) if first is not None else 0.0}
        if why == "marker":
            # the other direction's timeout runs from now at the latest: a direction that carries
            # nothing and whose marker does not come must not stay plugged (and its agent alive)
            # until the agent's lifetime ends
            for other in LEGS:
                if other != direction and self.holding(other) and self.first[other] is None:
                    self.first[other] = self.clock()
        return queue

    def done(self):
        return not any(self.holding(d) for d in LEGS)

    def pace(self, direction):
        """(frames/s, bytes/s) to let a released direction's backlog go at: twice the rate it came
        in while held (at least MIN_PACE frames/s), so the next bridge is not flooded."""
        st = self.status[direction]
        seconds = max((st.get("held_ms") or 0) / 1000.0, 0.001)
        frames = max(PACE_FACTOR * st["held"] / seconds, MIN_PACE)
        size = self.bytes[direction] / float(st["held"]) if st["held"] else 100.0
        return frames, frames * max(size, 64.0)


def read_config(run_dir):
    """The hold asked for an instance (``hold.json`` in its run directory), or None."""
    try:
        with open(os.path.join(run_dir, "hold.json"), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if data.get("token") else None


def write_status(run_dir, gate, final=False):
    data = {"token": gate.token, "final": final, "directions": gate.status}
    tmp = os.path.join(run_dir, "hold-status.json.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, os.path.join(run_dir, "hold-status.json"))


# -- the kernel kind's agent ------------------------------------------------------------------------
def tc(argv):
    return subprocess.run(["tc"] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False, timeout=10)


def backlog(dev):
    res = subprocess.run(["tc", "-j", "-s", "qdisc", "show", "dev", dev, "root"], capture_output=True, text=True, check=False)
    try:
        qdiscs = json.loads(res.stdout or "[]")
    except ValueError:
        return 0
    return sum(int(q.get("qlen", 0) or 0) for q in qdiscs)


def kick(sock, frame=None):
    """A frame through the leg's egress (the plug, or after opening a nudge: its dequeue lets out
    what waits before it at once)."""
    try:
        sock.send(frame or (bytes.fromhex("ff" * 6 + "02f54d4b0002" + "%04x" % MARKER_ETHERTYPE) + b"FSKICK" + b"\0" * 40))
    except OSError:
        pass


def close_bucket(dev, sock):
    """The leg's egress holds from now on: a 64 bit/s bucket whose initial tokens a first
    full-size dummy spends, and a second one at the head of its queue that the bucket cannot
    afford for minutes - every frame behind it waits."""
    res = tc(["qdisc", "replace", "dev", dev, "root", "tbf", "rate", HOLD_RATE, "burst", HOLD_BURST, "limit", HOLD_LIMIT])
    if res.returncode != 0:
        raise OSError("tc could not hold %s: %s" % (dev, res.stderr.decode(errors="replace").strip()))
    for _attempt in range(8):
        if backlog(dev):
            return
        kick(sock, PLUG)
    raise OSError("the bucket on %s never filled" % dev)


def agent(args):
    """Hold a kernel instance's output per direction until its markers come: watch both legs
    (copies of what enters them), open the bucket of a direction's outgoing leg on its marker or
    its timeout, then exit."""
    gate = Gate(args.instance, args.token, args.timeout)
    socks = {}
    for leg in ("left", "right"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((leg, 0))
        sock.setblocking(False)
        socks[leg] = sock
    for direction, (_enters, leaves) in LEGS.items():
        close_bucket(leaves, socks[leaves])
    write_status(args.run_dir, gate)
    opened = {}
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_a: stop.update(now=True))
    deadline = time.monotonic() + args.max_seconds
    entering = {enters: direction for direction, (enters, _leaves) in LEGS.items()}
    while not gate.done() and not stop["now"] and time.monotonic() < deadline:
        ready, _w, _x = select.select(list(socks.values()), [], [], 0.05)
        for sock in ready:
            leg = next(name for name, s in socks.items() if s is sock)
            direction = entering[leg]
            for _burst in range(256):
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] != PACKET_OUTGOING and gate.holding(direction):
                    gate.watch(direction, frame)   # the bucket holds the frame itself
        gate.due()
        for direction, (_enters, leaves) in LEGS.items():
            if not gate.holding(direction) and direction not in opened:
                opened[direction] = _open(leaves, args.release, socks[leaves], gate.pace(direction)[1])
                gate.status[direction].update(opened[direction] or {})
                write_status(args.run_dir, gate)
    for direction, (_enters, leaves) in LEGS.items():
        if direction not in opened:
            gate.release(direction, "agent stopped" if stop["now"] else "agent lifetime")
            _open(leaves, args.release, socks[leaves])
    write_status(args.run_dir, gate, final=True)
    return 0


def _open(dev, release, sock, pace_bytes=None, clock=time.monotonic, pause=time.sleep, depth=None, change=None):
    """Open the bucket: first at ``pace_bytes`` per second until what it held has gone (in order,
    not in one burst), then as the instance runs (``release``: the tbf options a shaper runs with,
    else wide open). The pace doubles every PACE_STEP seconds in which the queue did not shrink
    (an estimate of the arrival rate below the real one left a standing queue for the whole pacing
    time, which the final opening then let out in one burst: 300-500 frames lost downstream,
    measured). Returns {paced_ms, left, rate} (how long pacing took, what was still queued when it
    ended, the last pace in bytes/s) or None when there was nothing to pace."""
    depth = depth or backlog
    change = change or (lambda options: tc(["qdisc", "change", "dev", dev, "root", "tbf"] + options))
    paced = None

    def pace(rate):  # a bucket deep enough for two full-size frames and 2 ms of the pace
        change(["rate", "%dbit" % int(rate * 8), "burst", "%d" % max(3200, int(rate * 0.002)), "limit", HOLD_LIMIT])

    if pace_bytes and depth(dev):
        rate = float(pace_bytes)
        started = clock()
        pace(rate)
        kick(sock)
        left, last, step_at = depth(dev), None, started + PACE_STEP
        while left > 1 and clock() - started < PACE_SECONDS:
            now = clock()
            if now >= step_at:
                if last is not None and left >= last and rate < MAX_PACE_BYTES:
                    rate = min(rate * 2, MAX_PACE_BYTES)
                    pace(rate)
                last, step_at = left, now + PACE_STEP
            pause(0.005)
            left = depth(dev)
        paced = {"paced_ms": round((clock() - started) * 1000.0, 1), "left": left, "rate": int(rate)}
    options = release.split() if release else OPEN_TBF
    change(options)
    kick(sock)
    return paced


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fs_hold", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("agent", help="hold a kernel instance's output until its markers come")
    run.add_argument("--instance", required=True)
    run.add_argument("--token", required=True)
    run.add_argument("--timeout", type=float, default=2.0)
    run.add_argument("--run-dir", required=True)
    run.add_argument("--release", default="", help="tbf options to open with (a shaper's), default wide open")
    run.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    return agent(args)


if __name__ == "__main__":
    raise SystemExit(main())
