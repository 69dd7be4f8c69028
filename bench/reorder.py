# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Two steps of a running chain swapped, and back, under traffic: what each change cost.

    .venv/bin/python bench/reorder.py [--rounds 4] [--rate 10000] [--keep-lab] [--snapshots]

Run as root from the checkout, with no other lab carrying traffic (it uses the example lab,
inventory/lab, prefix ``fsl``: lab-up, deploy-chain, and lab-down at the end unless
``--keep-lab``).

Each round: web's ``mon`` and ``shape`` steps swapped (deploy-chain with the inventory's chains
edited, ``-e flowstream_skip_verify=true``), then the inventory's own chains again - each change
under the probe's background session through web (32 flows, ``--rate`` pps, destination port
8000, source ports 40000-40031, in the lab's namespaces). Swapping two steps re-assigns the ids
that name step positions (``<short><step><n>``), so each change replaces instances with another
step's under the same id, on another host where one fits. Per change it prints the packets sent,
lost, reordered and duplicated, the flows that lost packets (source port, lost, longest gap), the
placement's lines about replaced copies, and what the removal of the old copies waited for
(``packets_since`` of a copy that never went quiet) and when the losses were (bursts, from
the change's start). Everything goes to bench/results/reorder-<time>.json. With
``--snapshots``, every second of each change the switch's and the module hosts' chain flows
(with their counters), the host bridges' MAC tables and port counters, and the datapath flows
that carry the probe's packets (``ovs-appctl dpctl/dump-flows``, the switch's and each host's)
are read; a change that lost packets keeps them in bench/results/reorder-<time>-<n>.json (to
see where the lost flows went: that is how the switch's stale datapath flows were found,
docs/reliability.md section 2). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "tests" / "integration"))
import traffic  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

LAB = LabHosts(("mh1", "mh2", "mh3"))

PLAYBOOK = [str(TOP / ".venv" / "bin" / "ansible-playbook")]
ENV = dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
           ANSIBLE_LOAD_CALLBACK_PLUGINS="1")


def run(*argv, inventory="inventory/lab"):
    proc = subprocess.run(PLAYBOOK + ["-i", str(TOP / inventory)] + [str(TOP / argv[0])] + list(argv[1:]), cwd=TOP, env=ENV,
                          capture_output=True, text=True, check=False)
    data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
    return proc.returncode, data


def snapshot():
    """The switch's and the hosts' flows with counters, and the hosts' MAC tables, now."""
    switch = subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "dump-flows", "fsl-sw"], capture_output=True, text=True, check=False)
    datapath = subprocess.run(["ovs-appctl", "dpctl/dump-flows"], capture_output=True, text=True, check=False)
    out = {"t": time.time(), "sw": switch.stdout, "sw dp": _probe_lines(datapath.stdout)}
    for host in LAB.hosts:
        out[host] = LAB.run(host, "ovs-ofctl", "-O", "OpenFlow14", "dump-flows", "fs-host", check=False)
        out[host + " fdb"] = LAB.run(host, "ovs-appctl", "fdb/show", "fs-host", check=False)
        out[host + " ports"] = LAB.run(host, "ovs-ofctl", "-O", "OpenFlow14", "dump-ports-desc", "fs-host", check=False)
        out[host + " stats"] = LAB.run(host, "ovs-ofctl", "-O", "OpenFlow14", "dump-ports", "fs-host", check=False)
        out[host + " dp"] = _probe_lines(LAB.run(host, "ovs-appctl", "dpctl/dump-flows", check=False))
    return out


def _probe_lines(text):
    """The datapath flows of the probe's packets (UDP to port 8000): the megaflows that carry them."""
    return "\n".join(line for line in text.splitlines() if "dst=8000" in line)


class Snapshots(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.taken, self.done = [], threading.Event()

    def run(self):
        while not self.done.wait(1.0):
            self.taken.append(snapshot())


def tasks(data, prefix):
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].startswith(prefix):
                yield task["hosts"]


def swapped_inventory(where):
    inv = Path(where) / "lab"
    shutil.copytree(TOP / "inventory" / "lab", inv)
    path = inv / "group_vars" / "all" / "chains.yml"
    data = yaml.safe_load(path.read_text())
    steps = next(c for c in data["flowstream_chains"] if c["name"] == "web")["steps"]
    names = [s["name"] for s in steps]
    a, b = names.index("mon"), names.index("shape")
    steps[a], steps[b] = steps[b], steps[a]
    path.write_text(yaml.safe_dump(data))
    return str(inv)


def change(what, inventory, rate, snapshots=None):
    session = traffic._probe("start", "--session-root", traffic.SESSION_ROOT, "--duration", "600", "--source-netns", "fsl-source",
                             "--sink-netns", "fsl-sink", "--src", "198.18.1.1", "--dst", "198.18.1.2", "--flows", "32",
                             "--rate", str(rate), "--dport", "8000", "--sport", "40000", "--vary", "sport")
    wall = time.time()
    try:
        time.sleep(1.0)
        if snapshots:
            snapshots.start()
        started, wall = time.monotonic(), time.time()
        rc, data = run("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true", inventory=inventory)
        seconds = time.monotonic() - started
        time.sleep(1.0)
    finally:
        if snapshots:
            snapshots.done.set()
        # one window over the whole change: its loss bursts say when the losses were (after_ms from
        # the change's start, the snapshots' clock)
        probe = traffic._probe("stop", "--session-root", traffic.SESSION_ROOT, "--session", session["id"], "--json",
                               "--window", "change=%.6f,%.6f" % (wall, time.time()))
        try:
            os.rmdir(traffic.SESSION_ROOT)
        except OSError:
            pass
    placed = [line for hosts in tasks(data, "Where each instance goes") for line in hosts["localhost"].get("msg", [])]
    removal = [dict(r, host=h) for hosts in tasks(data, "Old copies removed once quiet") for h, res in hosts.items()
               for r in res.get("removed") or []]
    t = probe["totals"]
    return {"change": what, "rc": rc, "seconds": round(seconds, 1),
            "sent": t["sent"], "lost": t["lost"], "reordered": t["reordered"], "duplicated": t["duplicated"],
            "lossy_flows": [[f["sport"], f["lost"], f["max_gap_ms"]] for f in probe["flows"] if f["lost"]],
            # when the losses were, from the change's start
            "lost_bursts": ((probe.get("windows") or {}).get("change") or {}).get("lost_bursts") or [],
            # "<id>: replaces the copy on <old host> (<why>): <new host>: <why there>" -> "<id>: <old host> -> <new host>"
            "replaced": ["%s: %s -> %s" % (line.split(":")[0], line.split("replaces the copy on ")[1].split(" ")[0],
                                           line.split("): ", 1)[1].split(":")[0]) for line in placed if "replaces the copy" in line],
            "not_quiet": [{"instance": r["instance"], "host": r["host"], "packets_since": r["quiesce"]["packets_since"],
                           "waited_ms": r["quiesce"]["waited_ms"]} for r in removal if r.get("quiesce") and not r["quiesce"].get("quiet")]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--rate", type=int, default=10000)
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--snapshots", action="store_true", help="read the flows and MAC tables every second of each change")
    args = ap.parse_args()
    rows = []
    work = tempfile.mkdtemp(prefix="fsl-reorder-")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        for argv in (("playbooks/lab-up.yml",), ("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")):
            rc, _data = run(*argv)
            if rc:
                raise SystemExit("%s failed (rc %d)" % (argv[0], rc))
        swapped = swapped_inventory(work)
        for round_ in range(args.rounds):
            for what, inventory in (("swap", swapped), ("back", "inventory/lab")):
                taken = Snapshots() if args.snapshots else None
                row = dict(change(what, inventory, args.rate, taken), round=round_ + 1)
                rows.append(row)
                if taken and row["lost"]:
                    kept = TOP / "bench" / "results" / ("reorder-%s-%d.json" % (stamp, len(rows)))
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    kept.write_text(json.dumps({"row": row, "snapshots": taken.taken}))
                    row["snapshots"] = str(kept)
                print("round %d %-4s rc %d %5.1f s  sent %d lost %d reordered %d duplicated %d  lossy flows %s  not quiet %s  bursts %s"
                      % (row["round"], what, row["rc"], row["seconds"], row["sent"], row["lost"], row["reordered"], row["duplicated"],
                         row["lossy_flows"] or "-", row["not_quiet"] or "-", row["lost_bursts"] or "-"), flush=True)
                for line in row["replaced"]:
                    print("    " + line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_lab:
            run("playbooks/lab-down.yml")
        out = TOP / "bench" / "results" / ("reorder-%s.json" % stamp)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rate": args.rate, "rounds": args.rounds, "rows": rows}, indent=1))
        print("wrote %s" % out)
    lossy = [r for r in rows if r["lost"]]
    print("%d of %d changes lost packets" % (len(lossy), len(rows)))


if __name__ == "__main__":
    main()
