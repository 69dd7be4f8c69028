# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What moving processing modules costs the traffic, measured side by side on a lab of the bench's own.

    .venv/bin/python bench/migrate.py [--moves N] [--quick] [--shapes spread,one,max] [--baseline K]
                                      [--keep-lab] [--no-lab-up] [--no-drain]

Run as root from the checkout. It brings up a lab of its own (prefix ``fsb``: three module hosts
running vm, process and kernel instances, capacity as the default lab; management
198.18.90.0/24, source 198.18.91.1, sink 198.18.91.2, state in /var/lib/flowstream-lab-fsb),
deploys the example chains of inventory/lab (rewritten for those addresses) and then, per kind -
a kernel ``monitor`` of ``web``, the process ``inspect`` filter of ``inspect``, the ``wire`` VM of
``guest`` - moves the instance back and forth between its host and another one, N times per
method and traffic shape, the methods interleaved move by move:

- ``ours``: ``playbooks/migrate-module.yml -e instance=... -e to=... -e verify=false``
  (make-before-break; a VM live by libvirt with the switch flipped at the switchover);
- ``naive``: ``bench/naive_move.yml``, the cold re-create deploy-chain did before the operations
  engine (copy installed on the target, host bridges then the switch programmed with the final
  flows, old copy removed at once);
- ``virsh`` (VMs): ``virsh migrate --live --p2p --persistent --undefinesource`` between the hosts'
  libvirt URIs, then ``playbooks/deploy-chain.yml -e flowstream_skip_verify=true`` to re-plumb
  (run a second time when the first fails, as an operator would; the row says so).

The traffic shapes: ``spread`` 10 kpps over 32 flows; ``one`` ONE flow at 10 kpps (packets 100 us
apart: where reordering shows first; for the kernel monitor the bench moves the one of the two
parallel monitors that this flow crosses); ``max`` 32 flows at the highest rate the chain carries
clean, found first with short probes (as bench/deploy_chain.py: the median of 3 probes of 3 s per
rate, a rate counts when it lost <= 0.1 % at >= 95 % of the offered rate and every lower rate
did too; rates up to 30 kpps).

For each move the bench starts its own probe session (scripts/flowstream-probe start) through
the chain's ports, waits a second, runs the method, waits a second, and stops the session with
the window [method started, method returned]: the probe's window figures (sent, lost,
reordered, duplicated, blackout = the longest silence of one flow less its normal spacing) are
the move's. The probe's set-up is outside the timing. ``secs`` is the wall time of the whole
method (playbooks included); ``change`` the part of it that changes the path (ours: the wave;
naive: from the install to the removal; virsh: from virsh to the end of deploy-chain's apply).
For VMs, libvirt's downtime (ours: vm_migrate's report; virsh: ``domjobinfo --completed``).
Baselines per kind and shape: ``idle`` (the probe for 8 s, no move) and ``noop`` (a deploy-chain
that changes nothing, under the probe: what the controller's own CPU load costs). Before each
measurement the chain must carry a short probe without loss. A VM that no longer forwards after
its move (a guest left crashed by a live migration, docs/vm-modules.md) is restarted where it is
and its move counted apart (``guest crashed``), out of the medians; a move that fails is counted
as failed, its playbook runs are written whole next to the result, and deploy-chain repairs.

Then a drain: ``playbooks/drain-host.yml -e hosts=<a host with 3 instances>`` with its own probe
through the chains at their verify rates, its total seconds and its per-move figures; then
uncordon, the instances moved back, and a deploy-chain that should change nothing.

Prints tables (median / p95 per kind, shape and method; ratios ours vs naive; the goals) and
writes everything as JSON to bench/results/migrate-<time>.json. The lab is taken down at the end
(also on failure) unless ``--keep-lab``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

TOP = Path(__file__).resolve().parents[1]
BIN = TOP / ".venv" / "bin"
PREFIX = "fsb"
OCTET = 90
STATE = "/var/lib/flowstream-lab-%s" % PREFIX
SOURCE_NS, SOURCE_IP = PREFIX + "-source", "198.18.%d.1" % (OCTET + 1)
SINK_NS, SINK_IP = PREFIX + "-sink", "198.18.%d.2" % (OCTET + 1)
HOSTS = ("mh1", "mh2", "mh3")
SESSION_ROOT = "/run/flowstream-probe-%s" % PREFIX
# kind: (chain, step) of the instance moved
KINDS = {"kernel": ("web", "mon"), "process": ("inspect", "filter"), "vm": ("guest", "vnf")}
METHODS = {"kernel": ("ours", "naive"), "process": ("ours", "naive"), "vm": ("ours", "naive", "virsh")}
SHAPES = ("spread", "one", "max")
RATE_STEPS = (1000, 2000, 5000, 10000, 15000, 20000, 25000, 30000)
SPORT = 40000
LEAD_S = 1.0      # the probe runs this long before the method starts
TAIL_S = 1.0      # ... and after it returned
IDLE_S = 8.0
GOALS = "kernel, process: 0 lost, 0 reordered, 0 duplicated; vm: median blackout <= 100 ms, 0 reordered, duplicates reported"


# -- the lab ---------------------------------------------------------------------------------------
def write_inventory(directory):
    """inventory/lab for the fsb lab: its own prefix, addresses and state directory, three module
    hosts (vm, process, kernel, click; the default lab's capacity), no spare; the example chains with
    the fsb endpoints' addresses."""
    inv = Path(directory)
    (inv / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    lab = TOP / "inventory" / "lab"
    platform = yaml.safe_load((lab / "platform.flowstream.yml").read_text(encoding="utf-8"))
    platform["platform"] = {"name": PREFIX, "management_network": "198.18.%d.0/24" % OCTET}
    switch = platform["switches"][0]
    switch.update(bridge=PREFIX + "-sw", openflow_target="unix:/var/run/openvswitch/%s-sw.mgmt" % PREFIX,
                  uplinks={"source": PREFIX + "-up-src", "sink": PREFIX + "-up-sink"})
    platform["module_host_defaults"]["kinds"] = ["vm", "process", "kernel", "click"]
    platform["module_hosts"] = [{"name": h, "management_address": "198.18.%d.%d" % (OCTET, 11 + i), "trunk": "%s-%s-tr" % (PREFIX, h)}
                                for i, h in enumerate(HOSTS)]
    platform["spares"] = []
    # the black boxes lab-up stands in, on ports of the bench's own prefix
    platform["blackboxes"] = [dict(box, ports={leg: port.replace("fsl-", PREFIX + "-", 1) for leg, port in box["ports"].items()})
                              for box in platform.get("blackboxes") or []]
    (inv / "platform.flowstream.yml").write_text("# bench/migrate.py's lab (prefix %s)\n" % PREFIX + yaml.safe_dump(platform, sort_keys=False),
                                                 encoding="utf-8")
    labvars = yaml.safe_load((lab / "group_vars" / "all" / "lab.yml").read_text(encoding="utf-8"))
    labvars.update(flowstream_lab_prefix=PREFIX, flowstream_lab_state_dir=STATE,
                   flowstream_lab_management_address="198.18.%d.1/24" % OCTET)
    labvars["flowstream_lab_endpoints"] = [
        {"name": "source", "switch": "sw1", "uplink": "source", "address": SOURCE_IP + "/24"},
        {"name": "sink", "switch": "sw1", "uplink": "sink", "address": SINK_IP + "/24"}]
    (inv / "group_vars" / "all" / "lab.yml").write_text(yaml.safe_dump(labvars, sort_keys=False), encoding="utf-8")
    chains = (lab / "group_vars" / "all" / "chains.yml").read_text(encoding="utf-8")
    chains = chains.replace("fsl-", PREFIX + "-").replace("198.18.1.", "198.18.%d." % (OCTET + 1))
    data = yaml.safe_load(chains)
    ends = [data["flowstream_probe"]["source"], data["flowstream_probe"]["sink"]]
    ends += [{"netns": ns, "address": c["match"][key]} for c in data["flowstream_chains"] for ns, key in ((SOURCE_NS, "nw_src"), (SINK_NS, "nw_dst"))]
    if any(e not in ({"netns": SOURCE_NS, "address": SOURCE_IP}, {"netns": SINK_NS, "address": SINK_IP}) for e in ends):
        raise SystemExit("inventory/lab's chains.yml no longer rewrites to the fsb addresses: %s" % ends)
    (inv / "group_vars" / "all" / "chains.yml").write_text(chains, encoding="utf-8")
    shutil.copy(lab / "group_vars" / "flowstream_module_hosts.yml", inv / "group_vars")
    return inv, data["flowstream_chains"], platform


def sh(*argv, check=True, timeout=300):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError("%s: rc %d\n%s%s" % (" ".join(str(a) for a in argv), proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


LAB = LabHosts(HOSTS, prefix=PREFIX, state=STATE)
on_host = LAB.run
placement = LAB.placement


def leg_packets(host, iid):
    """Packets through an instance's two legs on its host bridge, live (kernel and process instances)."""
    total = 0
    for leg in ("l", "r"):
        out = on_host(host, "ovs-ofctl", "-O", "OpenFlow13", "dump-ports", "fs-host", "fs-%s-%s" % (iid, leg), check=False)
        total += sum(int(n) for n in re.findall(r"[rt]x pkts=(\d+)", out))
    return total


# -- ansible ---------------------------------------------------------------------------------------
class Run:
    """One ansible-playbook run: rc, wall seconds, the JSON callback's data."""

    def __init__(self, argv, proc, seconds, started):
        self.argv, self.rc, self.seconds, self.started = argv, proc.returncode, seconds, started
        self.raw, self.stderr = proc.stdout, proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
        except ValueError:
            self.data = {}

    def changed(self):
        return sum(s.get("changed", 0) for s in self.data.get("stats", {}).values())

    def failed(self):
        stats = self.data.get("stats", {})
        return self.rc != 0 or any(s.get("failures") or s.get("unreachable") for s in stats.values())

    def tasks(self):
        for play in self.data.get("plays", []):
            yield from play.get("tasks", [])

    def results(self, name):
        return [task["hosts"] for task in self.tasks() if task["task"]["name"] == name]

    def span(self, first, last):
        """Epoch seconds from the start of the first task whose name starts with ``first`` to the
        end of the last whose name starts with ``last`` (the JSON callback's task times)."""
        starts = [_epoch(t["task"]["duration"]["start"]) for t in self.tasks() if t["task"]["name"].startswith(first)]
        ends = [_epoch(t["task"]["duration"]["end"]) for t in self.tasks()
                if t["task"]["name"].startswith(last) and t["task"]["duration"].get("end")]
        return (min(starts), max(ends)) if starts and ends else (None, None)

    def error(self):
        """The failed tasks' messages (or the tail of the output)."""
        msgs = []
        for task in self.tasks():
            for host, res in task["hosts"].items():
                if res.get("failed") or res.get("unreachable"):
                    items = [str(i.get("msg")) for i in res.get("results") or [] if isinstance(i, dict) and i.get("failed")]
                    msgs.append("%s [%s]: %s" % (task["task"]["name"], host, "; ".join(items) or str(res.get("msg") or res.get("stderr") or res)[:600]))
        return "\n".join(msgs) or (self.raw[-1500:] + self.stderr[-1500:])


def _epoch(text):
    return datetime.datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=datetime.timezone.utc).timestamp()


ENV = dict(os.environ, ANSIBLE_CONFIG=str(TOP / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
           ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))


def playbook(inv, path, *args, timeout=900):
    argv = [str(BIN / "ansible-playbook"), "-i", str(inv), str(TOP / path)] + list(args)
    started = time.time()
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=TOP, env=ENV, capture_output=True, text=True, timeout=timeout, check=False)
    return Run(argv, proc, time.monotonic() - t0, started)


def stop_sessions():
    """Every probe session the bench started and has not stopped, stopped (a bench's end, also on
    failure)."""
    for sid in list(OPEN_SESSIONS):
        try:
            probe_stop(sid)
        except (RuntimeError, ValueError) as exc:
            print("stopping probe session %s: %s" % (sid, exc), flush=True)


def lab_down(inv, tmp, keep_lab=False):
    """The bench's end, also on failure: its lab taken down (unless ``keep_lab``), its inventory
    directory removed, and the probe's session directory once empty."""
    if not keep_lab:
        down = playbook(inv, "playbooks/lab-down.yml")
        print("lab-down (%s): rc %d" % (PREFIX, down.rc), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.isdir(SESSION_ROOT) and not os.listdir(SESSION_ROOT):
        os.rmdir(SESSION_ROOT)


def must(run, what):
    if run.failed():
        raise RuntimeError("%s failed (rc %d): %s" % (what, run.rc, run.error()))
    return run


def host_reports(inv):
    """{host: module_host_info result} of every module host."""
    argv = [str(BIN / "ansible"), "-i", str(inv), "flowstream_module_hosts", "-m", "flowstream.platform.module_host_info",
            "-a", json.dumps({"host_bridge": "fs-host", "sample_seconds": 0})]
    proc = subprocess.run(argv, cwd=TOP, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    return data["plays"][0]["tasks"][0]["hosts"]


# -- the probe -------------------------------------------------------------------------------------
def _probe_cli(*args):
    proc = sh(TOP / "scripts" / "flowstream-probe", *args, check=False, timeout=600)
    if proc.returncode == 2:
        raise RuntimeError("flowstream-probe %s: %s" % (args[0], proc.stderr.strip()))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _flow_args(dport, flows, rate, sport=SPORT):
    return ["--source-netns", SOURCE_NS, "--sink-netns", SINK_NS, "--src", SOURCE_IP, "--dst", SINK_IP, "--flows", str(flows),
            "--rate", str(rate), "--dport", str(dport), "--sport", str(sport), "--vary", "sport"]


def probe_start(dport, flows, rate, sport=SPORT, bound=600):
    session = _probe_cli("start", "--session-root", SESSION_ROOT, "--duration", str(bound), *_flow_args(dport, flows, rate, sport))
    OPEN_SESSIONS.add(session["id"])
    return session["id"]


def probe_stop(sid, windows=()):
    args = ["stop", "--session-root", SESSION_ROOT, "--session", sid, "--json"]
    for name, start, end in windows:
        args += ["--window", "%s=%.6f,%.6f" % (name, start, end)]
    OPEN_SESSIONS.discard(sid)
    return _probe_cli(*args)


def probe_run(dport, flows, rate, seconds, sport=SPORT):
    return _probe_cli("run", "--json", "--duration", str(seconds), *_flow_args(dport, flows, rate, sport))


OPEN_SESSIONS = set()


def wait_forwarding(dport, timeout=90):
    """Seconds until a short probe through the chain loses nothing (a re-created VM boots)."""
    t0 = time.monotonic()
    while True:
        totals = probe_run(dport, 8, 1000, 0.5)["totals"]
        if totals["lost"] == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the chain on port %d does not forward: %s" % (dport, totals))


# -- moving ----------------------------------------------------------------------------------------
class Lab:
    def __init__(self, inv, chains, platform):
        self.inv = inv
        self.chains = {c["name"]: c for c in chains}
        uri = platform["module_host_defaults"]["libvirt_uri"]
        self.uri = {h["name"]: uri.replace("{address}", h["management_address"]) for h in platform["module_hosts"]}
        self.runs = []   # the playbook runs of the current measurement (kept when it went wrong)

    def playbook(self, path, *args):
        run = playbook(self.inv, path, *args)
        self.runs.append(run)
        return run

    def dport(self, chain):
        return int(self.chains[chain]["verify"]["base_port"])

    def ours(self, iid, src, dst):
        run = self.playbook("playbooks/migrate-module.yml", "-e", "instance=" + iid, "-e", "to=" + dst, "-e", "verify=false")
        out = {"secs": run.seconds, "changed": run.changed()}
        if run.failed():
            return dict(out, error=run.error())
        rows = [r["msg"] for hosts in run.results("Move") for r in hosts.get("localhost", {}).get("results", [])]
        row = next((r for r in rows if r["instance"] == iid), {})
        out.update(change=row.get("duration_s"), how=row.get("how"), downtime_ms=row.get("downtime_ms"), order=row.get("order"),
                   held_ms=row.get("held_ms"))
        if row.get("from") != src or row.get("to") != dst:
            out["error"] = "the Move row says %s" % row
        return out

    def naive(self, iid, src, dst):
        run = self.playbook("bench/naive_move.yml", "-e", "instance=" + iid, "-e", "to=" + dst)
        out = {"secs": run.seconds, "changed": run.changed(), "how": "cold re-create"}
        if run.failed():
            return dict(out, error=run.error())
        start, end = run.span("Installed", "Removed")
        out["change"] = round(end - start, 2) if start else None
        return out

    def virsh(self, iid, src, dst):
        t0, v0 = time.monotonic(), time.time()
        domain = "fs-" + iid
        proc = sh("virsh", "-c", self.uri[src], "migrate", "--live", "--p2p", "--persistent", "--undefinesource", domain, self.uri[dst],
                  check=False)
        migrated = time.monotonic() - t0
        out = {"how": "virsh migrate + deploy-chain", "virsh_secs": round(migrated, 2)}
        if proc.returncode != 0:
            return dict(out, secs=migrated, error="virsh migrate: rc %d: %s" % (proc.returncode, proc.stderr.strip()))
        info = sh("virsh", "-c", self.uri[dst], "domjobinfo", "--completed", domain, check=False).stdout
        found = re.search(r"Total downtime:\s+(\d+)\s*ms", info)
        out["downtime_ms"] = int(found.group(1)) if found else None
        run = self.playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        out["deploy_runs"] = 1
        if run.failed():
            # what an operator does next: read the error, run it again
            out["first_deploy_error"] = run.error()
            run = self.playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
            out["deploy_runs"] = 2
        out.update(secs=time.monotonic() - t0, changed=run.changed())
        if run.failed():
            return dict(out, error="deploy-chain (twice) after virsh migrate: " + run.error())
        end = run.span("Started (", "Done (")[1]
        out["change"] = round(end - v0, 2) if end else None
        return out

    def noop(self, iid, src, dst):  # pylint: disable=unused-argument
        run = self.playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        out = {"secs": run.seconds, "changed": run.changed(), "how": "deploy-chain, no change"}
        return dict(out, error=run.error()) if run.failed() else out

    @staticmethod
    def idle(iid, src, dst):  # pylint: disable=unused-argument
        time.sleep(IDLE_S)
        return {"secs": IDLE_S, "how": "nothing"}


def measure(lab, method, kind, shape, iid, src, dst, flows, rate, index):
    """One move (or baseline) under the bench's own probe session; the row of figures."""
    chain = KINDS[kind][0]
    dport = lab.dport(chain)
    row = {"kind": kind, "shape": shape, "method": method, "index": index, "instance": iid, "from": src, "to": dst,
           "flows": flows, "rate": rate, "load_1": round(os.getloadavg()[0], 2), "at": time.strftime("%H:%M:%S")}
    lab.runs = []
    try:
        row["ready_s"] = round(wait_forwarding(dport), 1)
    except RuntimeError as exc:
        row["error"] = str(exc)
        return row
    sid = probe_start(dport, flows, rate)
    window = []
    try:
        time.sleep(LEAD_S)
        t0 = time.time()
        row.update(getattr(lab, method)(iid, src, dst))
        window.append(("move", t0, time.time()))
        time.sleep(TAIL_S)
    finally:
        result = probe_stop(sid, window)
    win = (result.get("windows") or {}).get("move") or {}
    for key in ("sent", "lost", "reordered", "duplicated", "blackout_ms", "max_gap_ms"):
        row[key] = win.get(key)
    row["secs"] = round(row["secs"], 2) if row.get("secs") is not None else None
    row["probe_achieved_pps"] = result.get("rate", {}).get("achieved_pps")
    return row


def say(row):
    text = "%-7s %-6s %-6s #%-2s %s %s->%s: secs %s change %s | sent %s lost %s reord %s dup %s blackout %s ms" % (
        row["kind"], row["shape"], row["method"], row["index"], row["instance"], row["from"], row["to"], _c(row.get("secs")),
        _c(row.get("change")), _c(row.get("sent")), _c(row.get("lost")), _c(row.get("reordered")), _c(row.get("duplicated")),
        _c(row.get("blackout_ms")))
    if row.get("downtime_ms") is not None:
        text += " | libvirt downtime %s ms" % row["downtime_ms"]
    if row.get("first_deploy_error"):
        text += " | deploy-chain failed once, ran again: %s" % row["first_deploy_error"][:300]
    if row.get("order") is not None:
        text += " | order %s, held %s ms" % (row["order"], _c(row.get("held_ms")))
    print(text, flush=True)
    if row.get("error"):
        print("  FAILED: %s" % row["error"][:3000], flush=True)


def _c(value):
    if value is None:
        return "-"
    return ("%.1f" % value) if isinstance(value, float) else str(value)


def find_capacity(lab, kind, seconds=3.0, repeat=3):
    """The highest rate the kind's chain carries clean (32 flows), as bench/deploy_chain.py counts it."""
    dport = lab.dport(KINDS[kind][0])
    steps, best = [], 0
    for rate in RATE_STEPS:
        runs = sorted((probe_run(dport, 32, rate, seconds) for attempt in range(repeat)), key=lambda r: r["totals"]["loss_percent"])
        median = runs[len(runs) // 2]
        got = median["rate"]["achieved_pps"]
        loss = median["totals"]["loss_percent"]
        steps.append({"rate": rate, "achieved_pps": got, "loss_percent": loss, "reordered": median["totals"]["reordered"],
                      "losses": [r["totals"]["loss_percent"] for r in runs]})
        print("  capacity %-7s %6d pps: achieved %8.0f, loss %.2f %% (median of %s)" % (kind, rate, got, loss, steps[-1]["losses"]), flush=True)
        if loss <= 0.1 and got >= 0.95 * rate:
            best = rate
        else:
            break
    return best, steps


def one_flow_monitor(lab, monitors):
    """The monitor (of web's two, parallel) that the one-flow shape's flow crosses."""
    where = placement()
    before = {iid: leg_packets(where[iid][0], iid) for iid in monitors}
    probe_run(lab.dport("web"), 1, 1000, 1.0)
    after = {iid: leg_packets(where[iid][0], iid) for iid in monitors}
    grown = {iid: after[iid] - before[iid] for iid in monitors}
    print("one flow (sport %d): packets through the monitors' legs %s" % (SPORT, grown), flush=True)
    return max(grown, key=grown.get)


def revive_guest(lab, iid, host, dport):
    """None when the guest forwards after its move; else (a guest that a live migration left
    crashed: docs/vm-modules.md) what its console said, and it is restarted where it is."""
    try:
        wait_forwarding(dport, timeout=30)
        return None
    except RuntimeError:
        pass
    domain = "fs-" + iid
    try:
        lines = Path("%s/hosts/%s/log/libvirt/qemu/%s.console.log" % (STATE, host, domain)).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    found = [i for i, line in enumerate(lines) if "BUG" in line or "panic" in line or "corruption" in line or "Oops" in line]
    words = " | ".join(line.strip() for line in lines[found[0]:found[0] + 3]) if found else "no forwarding, nothing on the console"
    sh("virsh", "-c", lab.uri[host], "destroy", domain, check=False)
    sh("virsh", "-c", lab.uri[host], "start", domain)
    print("  the guest stopped forwarding on %s (%s); restarted, forwarding again after %.1f s" % (host, words, wait_forwarding(dport)),
          flush=True)
    return words


def keep_runs(lab, path, row):
    """The playbook runs of a move that went wrong, whole, next to the result (for the report)."""
    log = path.with_name("%s-%s-%s-%s-%d.json" % (path.stem, row["kind"], row["shape"], row["method"], row["index"]))
    log.write_text(json.dumps([{"argv": r.argv, "rc": r.rc, "seconds": r.seconds, "data": r.data, "stderr": r.stderr[-5000:],
                                "raw_tail": r.raw[-5000:] if not r.data else ""} for r in lab.runs], indent=1), encoding="utf-8")
    return str(log)


def put_back(lab, iid, home):
    where = placement().get(iid, [])
    if where != [home]:
        must(playbook(lab.inv, "playbooks/migrate-module.yml", "-e", "instance=" + iid, "-e", "to=" + home, "-e", "verify=false"),
             "moving %s back to %s" % (iid, home))


def repair(lab):
    """After a failed move: deploy-chain converges what the failure left."""
    run = playbook(lab.inv, "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
    print("  repair: deploy-chain rc %d changed=%d" % (run.rc, run.changed()), flush=True)
    return must(run, "deploy-chain after a failed move")


def drain(lab):
    """drain-host on a host with 3 instances (or the most), then everything back."""
    where = placement()
    count = {h: sorted(i for i, hs in where.items() if h in hs) for h in HOSTS}
    host = min(HOSTS, key=lambda h: (abs(len(count[h]) - 3), -len(count[h])))
    print("\ndrain-host %s (%s); instances per host: %s" % (host, ", ".join(count[host]), {h: len(v) for h, v in count.items()}), flush=True)
    run = playbook(lab.inv, "playbooks/drain-host.yml", "-e", "hosts=" + host)
    out = {"host": host, "instances": count[host], "secs": round(run.seconds, 1), "rc": run.rc, "changed": run.changed()}
    if run.failed():
        out["error"] = run.error()
    out["moves"] = [r["msg"] for hosts in run.results("Move") for r in hosts.get("localhost", {}).get("results", [])]
    totals = run.results("The probe's totals, chain by chain")
    out["probe_groups"] = {k: v.get("totals") for k, v in (totals[0].get("localhost", {}).get("msg") or {}).items()} if totals else {}
    start, end = run.span("Started (", "Done (")
    out["apply_secs"] = round(end - start, 1) if start else None
    out["after"] = {h: sorted(i for i, hs in placement().items() if h in hs) for h in HOSTS}
    uncordon = playbook(lab.inv, "playbooks/uncordon-host.yml", "-e", "hosts=" + host)
    out["uncordon_rc"] = uncordon.rc
    for iid in count[host]:
        put_back(lab, iid, host)
    back = must(playbook(lab.inv, "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"), "deploy-chain after the drain")
    out["deploy_after_changed"] = back.changed()
    out["placement_restored"] = {h: sorted(i for i, hs in placement().items() if h in hs) for h in HOSTS} == count
    return out


# -- figures ---------------------------------------------------------------------------------------
def pct(values, fraction):
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _f(value):
    if value is None:
        return "-"
    return ("%.0f" % value) if abs(value) >= 100 or value == int(value) else ("%.1f" % value)


FIGURES = (("secs", "secs"), ("change", "change s"), ("sent", "sent"), ("lost", "lost"), ("reordered", "reord"),
           ("duplicated", "dup"), ("blackout_ms", "blackout ms"), ("downtime_ms", "libvirt downtime ms"), ("held_ms", "held ms"))


def groups(rows):
    seen = []
    for r in rows:
        key = (r["kind"], r["shape"], r["method"])
        if key not in seen:
            seen.append(key)
    return seen


def table(rows):
    lines = ["| kind | shape | pps / flows | method | moves (failed, guest crashed) | " + " | ".join("%s median / p95" % n for _k, n in FIGURES)
             + " | order |", "|" + "---|" * (6 + len(FIGURES))]
    for kind, shape, method in groups(rows):
        every = [r for r in rows if (r["kind"], r["shape"], r["method"]) == (kind, shape, method)]
        good = [r for r in every if _good(r)]
        crashed = sum(1 for r in every if r.get("guest_restarted") and not r.get("error"))
        cells = []
        for key, _name in FIGURES:
            values = [r.get(key) for r in good]
            cells.append("-" if all(v is None for v in values) else "%s / %s" % (_f(med(values)), _f(pct(values, 0.95))))
        orders = {}
        for r in good:
            if r.get("order"):
                orders[r["order"]] = orders.get(r["order"], 0) + 1
        lines.append("| %s | %s | %d / %d | %s | %d (%d, %d) | %s | %s |" % (
            kind, shape, every[0]["rate"], every[0]["flows"], method, len(good), len(every) - len(good) - crashed, crashed, " | ".join(cells),
            " ".join("%s %d" % kv for kv in sorted(orders.items())) or "-"))
    return lines


def _good(row):
    return not row.get("error") and not row.get("guest_restarted")


def _ratio(ours, other):
    if ours is None or other is None:
        return "-"
    if other == 0:
        return "= (both 0)" if ours == 0 else "inf (%s vs 0)" % _f(ours)
    return "%.2f" % (ours / other)


def ratios(rows):
    lines = ["| kind | shape | vs | lost: ours / other median (ratio); mean (ratio) | blackout ms: ours / other median (ratio); mean (ratio) |",
             "|---|---|---|---|---|"]
    for kind in KINDS:
        for shape in SHAPES:
            ours = [r for r in rows if (r["kind"], r["shape"], r["method"]) == (kind, shape, "ours") and _good(r)]
            if not ours:
                continue
            for other in METHODS[kind][1:]:
                them = [r for r in rows if (r["kind"], r["shape"], r["method"]) == (kind, shape, other) and _good(r)]
                if not them:
                    continue
                cells = []
                for key in ("lost", "blackout_ms"):
                    a, b = med([r[key] for r in ours]), med([r[key] for r in them])
                    ma, mb = statistics.mean([r[key] or 0 for r in ours]), statistics.mean([r[key] or 0 for r in them])
                    cells.append("%s / %s (%s); %s / %s (%s)" % (_f(a), _f(b), _ratio(a, b), _f(ma), _f(mb), _ratio(ma, mb)))
                lines.append("| %s | %s | %s | %s |" % (kind, shape, other, " | ".join(cells)))
    return lines


def goals(rows, drained):
    lines = []
    for kind in KINDS:
        ours = [r for r in rows if r["kind"] == kind and r["method"] == "ours" and r["shape"] in SHAPES and _good(r)]
        if not ours:
            continue
        failed = [r for r in rows if r["kind"] == kind and r["method"] == "ours" and r["shape"] in SHAPES and not _good(r)]
        if failed:
            lines.append("%s (ours): %d moves failed or left the guest crashed (not in the figures below)" % (kind, len(failed)))
        lost, reord, dup = (sum(r.get(k) or 0 for r in ours) for k in ("lost", "reordered", "duplicated"))
        moves_with = {k: sum(1 for r in ours if r.get(k)) for k in ("lost", "reordered", "duplicated")}
        if kind == "vm":
            blackout = med([r.get("blackout_ms") for r in ours])
            met = blackout is not None and blackout <= 100 and reord == 0
            lines.append("vm (ours, %d moves): median blackout %s ms (goal <= 100), reordered %d (goal 0), duplicated %d (reported): %s"
                         % (len(ours), _f(blackout), reord, dup, "met" if met else "NOT met"))
        else:
            met = lost == reord == dup == 0
            lines.append("%s (ours, %d moves): lost %d in %d moves, reordered %d in %d, duplicated %d in %d (goal 0, 0, 0): %s"
                         % (kind, len(ours), lost, moves_with["lost"], reord, moves_with["reordered"], dup, moves_with["duplicated"],
                            "met" if met else "NOT met"))
    if drained:
        # a move's figures are its chain's during its wave: moves of one chain in one wave share them
        seen = {(m["wave"], m["chain"]): m.get("lost") or 0 for m in drained.get("moves", []) if m["kind"] in ("kernel", "process")}
        kp = sum(seen.values())
        met = not drained.get("error") and drained["secs"] <= 30 and kp == 0
        lines.append("drain %s: %.1f s (goal <= 30 s), lost by kernel/process moves %d (goal 0): %s"
                     % (drained["host"], drained["secs"], kp, "met" if met else "NOT met"))
    return lines


def drain_lines(drained):
    lines = ["drain-host %s (instances %s): %.1f s in all (apply %s s), rc %d%s" % (
        drained["host"], ", ".join(drained["instances"]), drained["secs"], _c(drained.get("apply_secs")), drained["rc"],
        "" if not drained.get("error") else "; FAILED: " + drained["error"][:2000])]
    lines.append("| instance | kind | chain | from | to | how | wave secs | sent | lost | reord | dup | blackout ms | libvirt downtime ms "
                 "| order, held ms |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in drained.get("moves", []):
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s, %s |" % (
            m["instance"], m["kind"], m["chain"], m["from"], m["to"], m["how"], _c(m.get("duration_s")), _c(m.get("sent")), _c(m.get("lost")),
            _c(m.get("reordered")), _c(m.get("duplicated")), _c(m.get("blackout_ms")), _c(m.get("downtime_ms")), m.get("order") or "-",
            _c(m.get("held_ms"))))
    lines.append("(a move's figures are its chain's while its wave ran: moves of one chain in one wave show the same figures)")
    lines.append("probe totals per chain during the drain: %s" % json.dumps(
        {c: {k: t.get(k) for k in ("sent", "lost", "reordered", "duplicated", "max_gap_ms")} for c, t in (drained.get("probe_groups") or {}).items()}))
    lines.append("after: %s; uncordon rc %s; moved back, then deploy-chain changed=%s, placement as before: %s" % (
        drained.get("after"), drained.get("uncordon_rc"), drained.get("deploy_after_changed"), drained.get("placement_restored")))
    return lines


# -- the run ---------------------------------------------------------------------------------------
def main():  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--moves", type=int, default=20, help="moves per kind, shape and method (default 20)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 moves per kind and method, the spread shape only, 1 baseline")
    ap.add_argument("--shapes", default=",".join(SHAPES), help="spread, one, max (default all)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="kernel, process, vm (default all)")
    ap.add_argument("--baseline", type=int, default=2, help="idle and no-op baseline runs per kind and shape (default 2)")
    ap.add_argument("--no-drain", action="store_true", help="leave out the drain")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsb lab up at the end")
    ap.add_argument("--no-lab-up", action="store_true", help="use the fsb lab as it is (deployed)")
    args = ap.parse_args()
    if args.quick:
        args.moves, args.shapes, args.baseline = 3, "spread", 1
    shapes = [s for s in args.shapes.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    for tool in ("virsh", "nsenter", "ovs-vsctl"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    tmp = tempfile.mkdtemp(prefix="fsb-bench-")
    inv, chains, platform = write_inventory(tmp)
    lab = Lab(inv, chains, platform)
    commit = sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
    dirty = sh("git", "-C", TOP, "status", "--short", "--", "playbooks", "plugins", "roles", check=False).stdout.split("\n")
    result = {"argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "moves": args.moves, "shapes": shapes, "rows": [],
              "capacity": {}, "drain": None, "goals": GOALS, "commit": commit, "uncommitted": [d for d in dirty if d]}
    rows = result["rows"]
    t_start = time.monotonic()
    out_dir = TOP / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("migrate-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    try:
        if not args.no_lab_up:
            t0 = time.monotonic()
            must(playbook(inv, "playbooks/lab-down.yml"), "lab-down (before)")
            must(playbook(inv, "playbooks/lab-up.yml"), "lab-up")
            result["lab_up_s"] = round(time.monotonic() - t0, 1)
            deploy = must(playbook(inv, "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"), "deploy-chain")
            result["deploy_s"] = round(deploy.seconds, 1)
            print("lab-up (fsb) %.1f s, deploy-chain %.1f s (changed=%d)" % (result["lab_up_s"], deploy.seconds, deploy.changed()), flush=True)
        reports = host_reports(inv)
        info = {}
        for host, rep in reports.items():
            for iid, inst in (rep.get("instances") or {}).items():
                info[iid] = dict(inst, host=host)
        for chain in ("web", "inspect", "guest"):
            print("chain %s forwards after %.1f s" % (chain, wait_forwarding(lab.dport(chain))), flush=True)
        home = {iid: i["host"] for iid, i in info.items()}
        result["placement"] = {h: sorted(i for i in home if home[i] == h) for h in HOSTS}
        print("placement: %s" % result["placement"], flush=True)
        for kind in kinds:
            chain, step = KINDS[kind]
            candidates = sorted(i for i, v in info.items() if v.get("chain") == chain and v.get("step") == step)
            if not candidates:
                raise RuntimeError("no instance of %s/%s in %s" % (chain, step, {i: (v.get("chain"), v.get("step")) for i, v in info.items()}))
            iid = one_flow_monitor(lab, candidates) if len(candidates) > 1 else candidates[0]
            pair = (home[iid], next(h for h in HOSTS if h != home[iid]))
            print("\n%s: instance %s (%s/%s), moved between %s and %s" % (kind, iid, chain, step, pair[0], pair[1]), flush=True)
            for shape in shapes:
                if shape == "max":
                    rate, steps = find_capacity(lab, kind)
                    result["capacity"][kind] = {"rate": rate, "steps": steps}
                    if not rate:
                        print("  %s carries no rate clean: the max shape is left out" % chain, flush=True)
                        continue
                flows, rate = {"spread": (32, 10000), "one": (1, 10000), "max": (32, result["capacity"].get(kind, {}).get("rate"))}[shape]
                for index in range(args.baseline):
                    for method in ("idle", "noop"):
                        src = placement()[iid][0]
                        rows.append(measure(lab, method, kind, shape + "/base", iid, src, src, flows, rate, index))
                        say(rows[-1])
                for index in range(args.moves):
                    for method in METHODS[kind]:
                        where = placement().get(iid, [])
                        if len(where) != 1:
                            repair(lab)
                            where = placement().get(iid, [])
                        src = where[0]
                        dst = pair[1] if src == pair[0] else pair[0]
                        row = measure(lab, method, kind, shape, iid, src, dst, flows, rate, index)
                        row["where_after"] = placement().get(iid, [])
                        if not row.get("error") and row["where_after"] != [dst]:
                            row["error"] = "after the move %s runs on %s (expected %s)" % (iid, row["where_after"], dst)
                        if kind == "vm" and row["where_after"] == [dst]:
                            row["guest_restarted"] = revive_guest(lab, iid, dst, lab.dport(chain))
                        rows.append(row)
                        if row.get("error"):
                            row["log"] = keep_runs(lab, path, row)
                        say(row)
                        if row.get("error"):
                            repair(lab)
                        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
            put_back(lab, iid, pair[0])
        if not args.no_drain:
            result["drain"] = drain(lab)
    finally:
        stop_sessions()
        result["seconds"] = round(time.monotonic() - t_start, 1)
        result["commit_end"] = sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
        if result["commit_end"] != commit:
            # the engine is read afresh by every playbook run: say what changed under the bench
            result["changed_during_run"] = sh("git", "-C", TOP, "diff", "--stat", commit, result["commit_end"], "--", "playbooks", "plugins",
                                              "roles", "inventory", check=False).stdout.strip().splitlines()
        lab_down(inv, tmp, args.keep_lab)
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        report(result, path)


def report(result, path):
    rows = result["rows"]
    print("\nbench/migrate.py, %s, %d moves per kind, shape and method; %.0f s in all; commit %s"
          % (result["started"], result["moves"], result["seconds"], result["commit"][:12]))
    if result.get("changed_during_run"):
        print("NOTE: the checkout moved from %s to %s during the run (%s): the figures straddle both"
              % (result["commit"][:12], result["commit_end"][:12], result["changed_during_run"][-1]))
    if rows:
        print("\nper kind, shape and method (window: the method's whole run; idle/noop: baselines without a move)")
        print("\n".join(table([r for r in rows if r["shape"].endswith("/base")] + [r for r in rows if not r["shape"].endswith("/base")])))
        print("\nours vs the others (medians and means over the moves; ratio = ours / other)")
        print("\n".join(ratios(rows)))
    virsh = [r for r in rows if r["method"] == "virsh"]
    if virsh:
        again = [r for r in virsh if r.get("deploy_runs") == 2]
        print("virsh: deploy-chain failed and was run again in %d of %d moves%s" % (
            len(again), len(virsh), (" (%s)" % again[0]["first_deploy_error"][:300]) if again else ""))
    for kind, cap in result["capacity"].items():
        print("capacity %s: %s pps clean (%s)" % (kind, cap["rate"], ", ".join("%d: %.2f %%" % (s["rate"], s["loss_percent"])
                                                                               for s in cap["steps"])))
    if result.get("drain"):
        print()
        print("\n".join(drain_lines(result["drain"])))
    print("\ngoals (%s)" % GOALS)
    print("\n".join(goals(rows, result.get("drain"))))
    print("\nevery row in %s" % path)


if __name__ == "__main__":
    main()
