# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real UDP traffic between the lab's source and sink namespaces, counted per flow."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

STEER_COOKIE = "0x5e57000000000bb1"

RECEIVER = r"""
import json, selectors, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
idle = float(sys.argv[2])
sel = selectors.DefaultSelector()
counts = {p: 0 for p in ports}
payload = {p: 0 for p in ports}
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", p))
    sel.register(s, selectors.EVENT_READ, p)
print("ready", flush=True)
last = time.monotonic()
while time.monotonic() - last < idle:
    for key, _ in sel.select(0.05):
        data = key.fileobj.recv(65535)
        counts[key.data] += 1
        payload[key.data] += len(data)
        last = time.monotonic()
print(json.dumps({"counts": counts, "bytes": payload}), flush=True)
"""

SENDER = r"""
import socket, sys, time
dst = sys.argv[1]
flows = [tuple(int(x) for x in f.split(":")) for f in sys.argv[2].split(",")]
count, size, rate = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
fill = bytes.fromhex(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] else b"f"
socks = []
for sport, dport in flows:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    socks.append((s, dport))
gap = 1.0 / rate if rate else 0
data = (fill * (size // len(fill) + 1))[:size]
t = time.monotonic()
for i in range(count):
    for s, dport in socks:
        s.sendto(data, (dst, dport))
    if gap:
        t += gap * len(socks)
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
"""


def exchange(flows, count, dst="198.18.1.2", sender_ns="fsl-source", receiver_ns="fsl-sink",
             size=64, rate=2000.0, idle=1.0, payload=b"f"):
    """Send ``count`` datagrams of ``size`` bytes on each (sport, dport) flow; return
    {dport: datagrams received} as counted by a receiver in ``receiver_ns``."""
    ports = sorted({d for _s, d in flows})
    recv = subprocess.Popen(["ip", "netns", "exec", receiver_ns, "python3", "-c", RECEIVER,
                             ",".join(map(str, ports)), str(idle)], stdout=subprocess.PIPE, text=True)
    assert recv.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", sender_ns, "python3", "-c", SENDER, dst,
                    ",".join("%d:%d" % f for f in flows), str(count), str(size), str(rate), payload.hex()],
                   check=True, timeout=120)
    out = recv.communicate(timeout=120)[0]
    return {int(k): v for k, v in json.loads(out)["counts"].items()}


def ping(count=5, dst="198.18.1.2", ns="fsl-source"):
    """Received echo replies (busybox ping: iputils is not installed)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "busybox", "ping", "-c", str(count), "-i", "0.2", "-W", "1", dst],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if "packets received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


def first_reply(within=60.0, **kwargs):
    """Single pings until one is answered (a path's first crossing waits for ARP through every
    box on it, and a guest may still be booting); seconds it took. Fails after ``within``."""
    started = time.monotonic()
    while ping(1, **kwargs) != 1:
        assert time.monotonic() - started < within, "no echo reply within %.0f s" % within
    return time.monotonic() - started


def settle(seconds=0.3):
    time.sleep(seconds)


def steer(trunk, left, right, switch="fsl-sw", src="fsl-up-src", sink="fsl-up-sink"):
    """Source -> VLAN(left) on the host's trunk; VLAN(right) back -> sink; and the reverse."""
    flows = "\n".join([
        "cookie=%s,priority=100,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (STEER_COOKIE, src, 4096 + left, trunk),
        "cookie=%s,priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (STEER_COOKIE, trunk, right, sink),
        "cookie=%s,priority=100,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (STEER_COOKIE, sink, 4096 + right, trunk),
        "cookie=%s,priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (STEER_COOKIE, trunk, left, src),
    ]) + "\n"
    unsteer(switch)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", switch, "-"], input=flows, text=True, check=True)


def unsteer(switch="fsl-sw"):
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "del-flows", switch, "cookie=%s/-1" % STEER_COOKIE], check=True)


def _out(port, in_port):
    # OpenFlow drops output to the port a packet came in on: hairpins use the in_port action
    return "in_port" if port == in_port else "output:%s" % port


def steer_chain(hops, switch="fsl-sw", src="fsl-up-src", sink="fsl-up-sink"):
    """Source -> every hop (trunk, left VLAN, right VLAN) in order -> sink; and back in reverse."""
    flows = []
    add = flows.append
    first, last = hops[0], hops[-1]
    add("in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (src, 4096 + first[1], first[0]))
    add("in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (sink, 4096 + last[2], last[0]))
    for i, (trunk, left, right) in enumerate(hops):
        if i + 1 < len(hops):
            nxt = hops[i + 1]
            add("in_port=%s,dl_vlan=%d,actions=set_field:%d->vlan_vid,%s" % (trunk, right, 4096 + nxt[1], _out(nxt[0], trunk)))
        else:
            add("in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (trunk, right, sink))
        if i > 0:
            prev = hops[i - 1]
            add("in_port=%s,dl_vlan=%d,actions=set_field:%d->vlan_vid,%s" % (trunk, left, 4096 + prev[2], _out(prev[0], trunk)))
        else:
            add("in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (trunk, left, src))
    text = "".join("cookie=%s,priority=100,%s\n" % (STEER_COOKIE, f) for f in flows)
    unsteer(switch)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", switch, "-"], input=text, text=True, check=True)


PROBE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugins", "module_utils", "_probe.py")
SESSION_ROOT = "/run/flowstream-probe-fsl"


def _probe(*argv):
    out = subprocess.run([sys.executable, PROBE] + list(argv), capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode in (0, 1), "_probe.py %s: %s" % (argv[0], out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def probe_session(dport=8000, flows=32, rate=2000, bound=600):
    """The probe's background session (flowstream-probe start/stop) through the lab's chain at
    ``dport`` (web's verify base port by default) while the block runs; the dict it yields gets
    the session's totals (sent, lost, reordered, duplicated, blackout_ms ...) when it ends. 2 kpps
    by default: beside the run under test and its own verify, inside what the two-CPU lab carries
    (docs/operations.md#known-gaps)."""
    session = _probe("start", "--session-root", SESSION_ROOT, "--duration", str(bound), "--source-netns", "fsl-source",
                     "--sink-netns", "fsl-sink", "--src", "198.18.1.1", "--dst", "198.18.1.2", "--flows", str(flows),
                     "--rate", str(rate), "--dport", str(dport), "--sport", "40000", "--vary", "sport")
    figures = {}
    try:
        time.sleep(1.0)
        yield figures
        time.sleep(1.0)
    finally:
        figures.update(_probe("stop", "--session-root", SESSION_ROOT, "--session", session["id"], "--json")["totals"])
        with contextlib.suppress(OSError):
            os.rmdir(SESSION_ROOT)
