# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a live migration of a VM instance costs the traffic crossing it, by the way the switch flips.

    .venv/bin/python bench/vm_migrate.py [--moves 10] [--rates 1000,10000] [--flows 16] [--seconds 10]
                                         [--methods source_suspended,destination_resumed,naive] [--keep-lab] [--no-lab-up]

Run as root from the checkout. It brings up the lab of tests/integration/vm/test_vm_migrate.py
(prefix ``fsm``, two module hosts with libvirt, 198.18.70.0/24: do not run both at once), puts
the wire guest on mh1 and steers the source's traffic through it, then moves the guest back and
forth between mh1 (VLANs 101/102) and mh2 (201/202) while the traffic probe sends ``--flows``
flows at each rate. Methods, interleaved move by move so that the machine's noise spreads evenly:

- ``source_suspended`` / ``destination_resumed``: ``_vm_migrate.Migrator`` (what the vm_migrate
  module runs), the switch flipped in that libvirt lifecycle event by a pre-started ovs-ofctl;
- ``naive``: ``virsh migrate --live --p2p --persistent --undefinesource`` (with the same
  retargeted XML; QEMU's default max downtime), and the same prepared bundle applied as soon as
  virsh returns - the lower bound of "migrate, then run openflow_flows".

A ``none`` row per rate is the probe with no move (what the guest path loses anyway). A move
after which the guest no longer forwards (the lab's QEMU sometimes breaks the guest's memory,
docs/vm-modules.md) is counted as ``guest crashed`` with the guest's console words, the guest
is restarted, and the move is left out of the medians.
Per move: the probe's blackout (the longest gap of any one flow), lost, reordered, duplicated;
libvirt's downtime; the flip's delay after its event. Prints medians and p95 per method and
rate, and writes every move as JSON to bench/results/. The lab is taken down at the end unless
``--keep-lab``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration" / "vm"))
sys.path.insert(0, str(TOP / "collections"))
import test_vm_migrate as mlab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from ansible_collections.flowstream.platform.plugins.module_utils import _vm  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils import _vm_migrate as vmm  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl  # noqa: E402  pylint: disable=wrong-import-position

METHODS = ("source_suspended", "destination_resumed", "naive")
LEAD_S = 1.5   # the probe sends this long before the move starts


def where_is_the_guest():
    for host in ("mh1", "mh2"):
        if mlab.domains(host).get(mlab.DOMAIN) == "running":
            return host
    raise SystemExit("the guest %s runs on neither host" % mlab.DOMAIN)


def flip_for(dst):
    return vmm.SwitchFlip(Ofctl(mlab.TARGET), cookie=mlab.COOKIE, flows=mlab.via(dst))


def move_module(method, src, dst):
    res = vmm.Migrator(mlab.INSTANCE, mlab.HOSTS[src]["uri"], mlab.HOSTS[dst]["uri"], mlab.HOSTS[dst]["vlans"], flip_for(dst),
                       flip_on=method).run()
    return {"downtime_ms": res["downtime_ms"], "migration_ms": res["migration_ms"], "flip_delay_ms": res["flip"]["delay_ms"],
            "flip_event": res["flip"]["event"], "flip_ns": res["flip"]["applied_ns"], "started_ns": res["started_ns"],
            "events": [(e["host"], e["event"], e["ns"]) for e in res["events"]]}


def move_naive(src, dst):
    import libvirt  # pylint: disable=import-outside-toplevel
    flip = flip_for(dst)
    flip.prepare()
    dom = libvirt.open(mlab.HOSTS[src]["uri"]).lookupByName(mlab.DOMAIN)
    with tempfile.TemporaryDirectory(prefix="fsm-bench-") as tmp:
        live, persistent = Path(tmp, "live.xml"), Path(tmp, "persistent.xml")
        vlans = mlab.HOSTS[dst]["vlans"]
        live.write_text(_vm.retarget_domain_xml(dom.XMLDesc(vmm.XML_SECURE | vmm.XML_MIGRATABLE), vlans))
        persistent.write_text(_vm.retarget_domain_xml(dom.XMLDesc(vmm.XML_SECURE | vmm.XML_MIGRATABLE | vmm.XML_INACTIVE), vlans))
        started = time.time_ns()
        mlab.sh("virsh", "-c", mlab.HOSTS[src]["uri"], "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                "--xml", live, "--persistent-xml", persistent, mlab.DOMAIN, mlab.HOSTS[dst]["uri"])
        returned = time.time_ns()
    applied = flip.apply()
    stats = libvirt.open(mlab.HOSTS[dst]["uri"]).lookupByName(mlab.DOMAIN).jobStats(vmm.JOB_STATS_COMPLETED)
    return {"downtime_ms": stats.get("downtime"), "migration_ms": round((returned - started) / 1e6, 3),
            "flip_delay_ms": round((applied - returned) / 1e6, 3), "flip_event": "virsh returned", "flip_ns": applied,
            "started_ns": started, "events": []}


def socket_drops():
    """{(host, port): datagrams dropped} of the module hosts' Open vSwitch AF_PACKET sockets
    (``ss -0 -m``: the ``d`` of skmem): where a burst that overflows a port's receive buffer
    goes. A tap re-created by a migration starts from 0."""
    out = {}
    for host in ("mh1", "mh2"):
        text = mlab.sh("ip", "netns", "exec", "fsm-" + host, "ss", "-0", "-m", "-p", check=False).stdout
        for line in text.splitlines():
            parts = line.split()
            found = re.search(r",d(\d+)\)", line)
            if len(parts) > 4 and parts[0] == "p_raw" and "ovs-vswitchd" in line and found:
                out[(host, parts[3].rpartition(":")[2])] = int(found.group(1))
    return out


def one(method, rate, flows, seconds):
    src = where_is_the_guest()
    dst = "mh2" if src == "mh1" else "mh1"
    drops = socket_drops()
    probe = mlab.Probe(rate, seconds, flows=flows)
    probe.start()
    time.sleep(LEAD_S)
    row = {"method": method, "rate": rate, "from": src, "to": dst}
    if method == "none":
        row.update(downtime_ms=None, migration_ms=None, flip_delay_ms=None, flip_ns=None)
    elif method == "naive":
        row.update(move_naive(src, dst))
    else:
        row.update(move_module(method, src, dst))
    row.update(probe.figures())
    after = socket_drops()
    grown = {"%s %s" % key: value - drops.get(key, 0) for key, value in after.items() if value - drops.get(key, 0) > 0}
    row["ovs_socket_drops"] = grown
    row["ovs_socket_drops_total"] = sum(grown.values())
    if row["flip_ns"] is not None:
        # the flip must fall well inside the probe's run, or the run says nothing about it
        row["flip_inside_probe"] = row["flip_ns"] < probe.start_ns + int((seconds - 0.5) * 1e9)
    row["guest_crashed"] = None
    if not alive():
        row["guest_crashed"] = crash_words(dst if method != "none" else src)
        restart_guest()
    return row


def alive(tries=3):
    return any(mlab.ping(count=1, wait=1).returncode == 0 for _try in range(tries))


def crash_words(host):
    """What the guest printed on its serial console on ``host`` (the log starts afresh when the
    guest arrives there): the panic's first lines, or a note that it printed nothing."""
    return mlab.guest_crash(mlab.console(host)) or "no forwarding after the move, nothing on the console of %s" % host


def restart_guest():
    """A guest that stopped forwarding (it crashed): destroyed and started again where it is."""
    host = where_is_the_guest()
    uri = mlab.HOSTS[host]["uri"]
    mlab.sh("virsh", "-c", uri, "destroy", mlab.DOMAIN, check=False)
    mlab.sh("virsh", "-c", uri, "start", mlab.DOMAIN)
    print("  the guest stopped forwarding; restarted on %s, forwarding again after %.1f s"
          % (host, mlab.wait_forwarding()), flush=True)


def pct(values, fraction):
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def table(rows):
    keys = (("blackout_ms", "blackout ms"), ("lost", "lost"), ("reordered", "reord"), ("duplicated", "dup"),
            ("downtime_ms", "libvirt downtime ms"), ("flip_delay_ms", "flip delay ms"), ("migration_ms", "migrate call ms"),
            ("ovs_socket_drops_total", "host OVS socket drops"))
    head = "| rate (pps) | method | moves | guest crashed | " + " | ".join("%s median / p95" % name for _k, name in keys) + " |"
    lines = [head, "|" + "---|" * (4 + len(keys))]
    seen = []
    for r in rows:
        if (r["rate"], r["method"]) not in seen:
            seen.append((r["rate"], r["method"]))
    for rate, method in seen:
        every = [r for r in rows if (r["rate"], r["method"]) == (rate, method)]
        group = [r for r in every if not r.get("guest_crashed")]
        cells = []
        for key, _name in keys:
            values = [r.get(key) for r in group]
            if all(v is None for v in values):
                cells.append("-")
                continue
            med, p95 = statistics.median([v for v in values if v is not None]), pct(values, 0.95)
            cells.append("%s / %s" % (_fmt(med), _fmt(p95)))
        lines.append("| %d | %s | %d | %d | %s |" % (rate, method, len(group), len(every) - len(group), " | ".join(cells)))
    return "\n".join(lines)


def _fmt(value):
    return ("%.0f" % value) if abs(value) >= 10 or value == int(value) else ("%.1f" % value)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--moves", type=int, default=10, help="moves per method and rate")
    ap.add_argument("--rates", default="1000,10000")
    ap.add_argument("--flows", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="probe duration around each move")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--baseline", type=int, default=3, help="probe runs with no move per rate")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsm lab up at the end")
    ap.add_argument("--no-lab-up", action="store_true", help="use the fsm lab and guest that are up already")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    missing = mlab.missing_prerequisites()
    if missing:
        raise SystemExit(missing)
    methods = [m for m in args.methods.split(",") if m]
    rates = [int(r) for r in args.rates.split(",") if r]
    inv = mlab.write_inventory(tempfile.mkdtemp(prefix="fsm-bench-"))
    rows = []
    t0 = time.monotonic()
    try:
        if not args.no_lab_up:
            print("lab-up (fsm): %.1f s" % mlab.lab_up(inv), flush=True)
            rc, res = mlab.guest(inv, "mh1")
            if rc != 0:
                raise SystemExit("the guest did not install: %s" % res.get("msg"))
            mlab.set_flows("mh1")
            print("guest forwards after %.1f s" % mlab.wait_forwarding(), flush=True)
        else:
            mlab.set_flows(where_is_the_guest())
        for rate in rates:
            for _run in range(args.baseline):
                rows.append(one("none", rate, args.flows, args.seconds))
                _say(rows[-1])
            for _move in range(args.moves):
                for method in methods:
                    rows.append(one(method, rate, args.flows, args.seconds))
                    _say(rows[-1])
    finally:
        out = TOP / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = out / ("vm_migrate-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
        path.write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=1))
        if rows:
            print()
            print(table(rows))
            print("\n%d runs in %.0f s; every run in %s" % (len(rows), time.monotonic() - t0, path))
        if not args.keep_lab:
            mlab.lab_down(inv)
            print("lab-down (fsm): done")


def _say(row):
    figures = (row["method"], row["rate"], row["from"], row["to"], row["blackout_ms"], row["lost"], row["reordered"],
               row["duplicated"], row.get("downtime_ms"), row.get("flip_delay_ms"), row.get("flip_event"),
               row.get("migration_ms"), row.get("ovs_socket_drops") or 0)
    print("%-19s %5d pps %s->%s: blackout %7s ms lost %5d reord %d dup %d | downtime %s ms, flip +%s ms (%s), migrate call %s ms"
          " | OVS socket drops %s" % figures, flush=True)
    if row.get("guest_crashed"):
        print("  GUEST CRASHED (left out of the medians): %s" % row["guest_crashed"], flush=True)


if __name__ == "__main__":
    main()
