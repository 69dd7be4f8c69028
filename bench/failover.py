# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a dead module host costs the traffic - warm spares, the failover rulebook, an operator -
measured side by side on a lab of the bench's own.

    .venv/bin/python bench/failover.py [--failures N] [--quick] [--modes warm-link,warm-bfd,cold-rulebook,operator]
                                       [--rate PPS] [--hold S] [--grace S] [--verify-max-rate PPS] [--bfd-ms MS] [--keep-lab]

Run as root from the checkout, with no other lab carrying traffic. It brings up bench/migrate.py's
lab (prefix ``fsb``: management 198.18.90.0/24, source 198.18.91.1, sink 198.18.91.2, state in
/var/lib/flowstream-lab-fsb) with the spare put back (``spare1``, 198.18.90.21, trunk
``fsb-spare1-tr``: a warm standby is what a spare is for), deploys the example chains of
inventory/lab (rewritten for those addresses) and kills, N times per mode (``--failures``,
default 10; ``--quick`` 2), the module host that runs the web chain's first instance (its first
step's, ``fw``), the modes interleaved failure by failure:

- ``warm-link``: every step of web with ``spare: warm`` (the chains file rewritten, passed as
  ``-e @file`` to every playbook while the layout is warm): a standby per step, on the spare, and
  the switch sends each instance's flows through a fast-failover group watching its host trunk.
  The switch's end of the host's trunk (``fsb-<host>-tr``) is cut (``ip link set ... down``),
  held ``--hold`` s (3), and brought up again; nobody runs anything. The window is [the cut, one
  second after the switch's BFD session on the trunk forwards again]: the cut and the way back
  together (windows ``cut`` and ``back`` are kept apart in the JSON).
- ``warm-bfd``: the same layout; the host killed (tests/integration/labhosts.py ``kill_all``:
  SIGKILL to every process of its namespaces, its Open vSwitch included), so its link stays up and
  only BFD sees it (100 ms x 3); nobody runs anything. The window is [the kill, ``--hold`` s later].
- ``cold-rulebook``: the chains deployed WITHOUT spares; extensions/eda/rulebooks/failover.yml
  running under ansible-rulebook (``flowstream_failover_grace`` = ``--grace``, 3, the rulebook's
  default; the verify probes capped at ``--verify-max-rate``, 5000); the host killed. The window is
  [the kill, the rulebook's run printed PLAY RECAP]; also the seconds from the kill until the run
  said ``failed now: <host>`` (detect_s), began verifying (restored_s) and printed its recap, the
  chains verified (done_s).
- ``operator``: without spares; the host killed, and at once the operator's way: the host set out
  of service statically (``flowstream_in_service: false`` in the bench inventory's
  ``host_vars/<host>.yml``, docs/platform-description.md) and deploy-chain run again (verify on,
  capped as above; the dead host unreachable is expected). The window is [the kill, deploy-chain
  returned]. The operator's own reaction time is not in it: a lower bound.

``--bfd-ms`` sets the trunks' BFD timers for the whole run (``flowstream_bfd``: ``min_tx`` and
``min_rx`` in the bench inventory's group_vars; the platform's default is 100 ms, and OVS's
multiplier is 3, so a silent host is seen after about 3 x the timer). The switch's BFD
``flap_count`` of every trunk is read after the first deploy and at the end: the flaps on the
trunks of hosts the bench never failed are false alarms - timers too short for the machine's
load would show there (and, with warm spares, move traffic to the standbys for nothing).

For each failure the bench starts its own probe session (scripts/flowstream-probe start, as
bench/migrate.py) through web: 32 flows at ``--rate`` (10 kpps), source ports varied, to the
destination port one above web's ``verify.base_port`` (inside the chain's block of ports: the
failover and verify_chains start the platform's own probe on ``base_port`` itself, one UDP socket
per port, so the bench's session keeps off it). It waits a second, fails the host, waits a
second after the window and stops the session with the window: the probe's window figures (sent,
lost, reordered, duplicated, blackout = the longest silence of one flow less its normal spacing:
in the cold modes the time from the kill until the probe sees that flow's traffic again) are the
failure's. ``bfd_down_ms``: from the cut or the kill until the switch's BFD session on the
trunk stops forwarding (ovs-vsctl polled every 20 ms).

After a kill the lab is repaired: ``failover.yml -e flowstream_skip_verify=true`` while the
host is still dead (warm-bfd: fences it and re-places its instances - the heal after a warm
failover, docs/failover.md; cold-rulebook: the rulebook did it, this run changes nothing), lab-up
(the host back), for the operator mode deploy-chain with the host still out of service (its stale
copies removed) and the host_vars file removed, ``failover.yml -e flowstream_skip_verify=true``
(a fenced host's stale copies removed), ``uncordon-host.yml -e hosts=<host>``. Before each
failure the layout of its mode is made again: every instance moved back to where the first
deploy put it (``migrate-module.yml``), deploy-chain with or without the spares file, the
standbys checked (one per web step, none on the host to fail), every trunk's BFD forwarding,
every chain forwarding (a short clean probe).

Prints a table per mode (median and p95 of blackout ms, lost packets, reordered, duplicated),
the ratios cold/warm and operator/warm, and writes everything as JSON to
bench/results/failover-<time>.json (the playbook runs of a failure that went wrong, and the
rulebook's output, next to it). The lab is taken down at the end (also on failure) unless
``--keep-lab``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import migrate as lab_bench  # bench/migrate.py: its lab, playbook runner, probe sessions, figures

sys.path.insert(0, str(lab_bench.TOP / "tests" / "integration"))
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

TOP = lab_bench.TOP
PREFIX = lab_bench.PREFIX
SPARE = "spare1"
SPARE_ADDRESS = "198.18.%d.21" % lab_bench.OCTET
HOSTS = lab_bench.HOSTS + (SPARE,)
LAB = LabHosts(HOSTS, prefix=PREFIX, state=lab_bench.STATE)   # migrate.py's LAB has no spare: this one has
CHAIN = "web"
CHAINS = ("web", "inspect", "guest")
FLOWS = 32
MODES = ("warm-link", "warm-bfd", "cold-rulebook", "operator")
WARM = ("warm-link", "warm-bfd")
SPARE_SUFFIX = "~spare"           # a warm standby's step: "<step>~spare" (_chains.SPARE_SUFFIX)
BFD_POLL_S = 0.02
BFD_BACK_S = 15.0                 # a trunk's BFD session forwards again within this after the link is up
AFTER_BACK_S = 1.0                # warm-link: the window ends this long after BFD forwards again
RULEBOOK_READY_S = 180
RULEBOOK_DONE_S = 600
PROBE_BOUND_S = 1200              # the probe session ends by itself after this (a bench killed half-way)
RULEBOOKS = set()                 # the ansible-rulebook runs not stopped yet
CUT = set()                       # the trunks the bench has set down and not up again
_c, _f, med, pct = lab_bench._c, lab_bench._f, lab_bench.med, lab_bench.pct  # pylint: disable=protected-access


# -- the lab ---------------------------------------------------------------------------------------
def write_inventory(directory):
    """bench/migrate.py's inventory with the lab's spare back in (addresses and trunk of the fsb
    prefix): the standbys of ``spare: warm`` go there, and a cold failover may use it."""
    inv, chains, platform = lab_bench.write_inventory(directory)
    path = Path(inv) / "platform.flowstream.yml"
    platform = yaml.safe_load(path.read_text(encoding="utf-8"))
    platform["spares"] = [{"name": SPARE, "management_address": SPARE_ADDRESS, "trunk": "%s-%s-tr" % (PREFIX, SPARE)}]
    path.write_text("# bench/failover.py's lab: bench/migrate.py's and its spare (prefix %s)\n" % PREFIX
                    + yaml.safe_dump(platform, sort_keys=False), encoding="utf-8")
    return inv, chains, platform


def spares_file(inv, path):
    """The inventory's chains with every step of web asking for a warm spare, as an extra-vars file."""
    data = yaml.safe_load((Path(inv) / "group_vars" / "all" / "chains.yml").read_text(encoding="utf-8"))
    chains = data["flowstream_chains"]
    for step in next(c for c in chains if c["name"] == CHAIN)["steps"]:
        step["spare"] = "warm"
    Path(path).write_text(yaml.safe_dump({"flowstream_chains": chains}, sort_keys=False), encoding="utf-8")
    return path


def bench_dport(chain):
    """The destination port of the bench's probe: one above the chain's verify.base_port (where
    the platform's own probes listen), checked to be inside the chain's match."""
    port = int(chain["verify"]["base_port"]) + 1
    tp_dst = (chain.get("match") or {}).get("tp_dst")
    if tp_dst is not None:
        text = str(tp_dst)
        value, _sep, mask = text.partition("/")
        value, mask = int(value, 0), int(mask, 0) if mask else 0xFFFF
        if port & mask != value & mask:
            raise SystemExit("port %d is not inside %s's match tp_dst=%s" % (port, chain["name"], text))
    return port


class FailoverLab(lab_bench.Lab):
    """bench/migrate.py's Lab with the layout of the failover modes: warm (web's steps with
    warm spares) or cold, the instances' first places, and the host that fails."""

    def __init__(self, inv, chains, platform, tmp, args):
        super().__init__(inv, chains, platform)
        uri = platform["module_host_defaults"]["libvirt_uri"]
        self.uri.update({h["name"]: uri.replace("{address}", h["management_address"]) for h in platform.get("spares") or []})
        self.trunk = {h["name"]: h["trunk"] for h in platform["module_hosts"] + (platform.get("spares") or [])}
        self.switch = platform["switches"][0]["bridge"]
        self.tmp, self.args = Path(tmp), args
        self.spares = spares_file(inv, self.tmp / ("%s-spares.yml" % PREFIX))
        self.probe_port = bench_dport(self.chains[CHAIN])
        self.warm = None      # the layout deployed: True (spares), False, None (not known)
        self.dirty = True     # a failure or a repair changed the lab since the layout was made
        self.home = {}        # instance: the host the first deploy put it on
        self.host = None      # the host that fails: the one running web's first instance
        self.target = None    # web's first instance

    def layout(self, warm=None):
        """The extra vars of the layout (the current one by default)."""
        warm = self.warm if warm is None else warm
        return ["-e", "@%s" % self.spares] if warm else []

    def run(self, what, path, *args):
        run = lab_bench.must(self.playbook(path, *args), what)
        print("  %-60s %6.1f s  changed=%d" % (what, run.seconds, run.changed()), flush=True)
        return run

    def deploy(self, warm, what="deploy-chain"):
        self.run("%s (%s)" % (what, "warm spares" if warm else "no spares"), "playbooks/deploy-chain.yml",
                 "-e", "flowstream_skip_verify=true", *self.layout(warm))
        self.warm = warm


def instances(lab):
    """{instance: (host, chain, step)} from every module host's own report (all hosts up)."""
    out = {}
    for host, rep in lab_bench.host_reports(lab.inv).items():
        for iid, inst in ((rep or {}).get("instances") or {}).items():
            out[iid] = (host, inst.get("chain"), str(inst.get("step")))
    return out


def first_layout(lab):
    """The cold layout from the first deploy: where each instance is (its home), the host that fails."""
    lab.deploy(False, "deploy-chain, the first")
    info = instances(lab)
    where = LAB.placement()
    doubles = {i: h for i, h in where.items() if len(h) != 1}
    if doubles:
        raise RuntimeError("after the first deploy, instances on no or several hosts: %s" % doubles)
    lab.home = {i: h[0] for i, h in where.items()}
    first_step = lab.chains[CHAIN]["steps"][0]["name"]
    ids = sorted(i for i, (_h, chain, step) in info.items() if chain == CHAIN and step == first_step)
    if not ids:
        raise RuntimeError("no instance of %s/%s in %s" % (CHAIN, first_step, info))
    lab.target, lab.host = ids[0], lab.home[ids[0]]
    if lab.host == SPARE:
        raise RuntimeError("%s runs on the spare after the first deploy" % lab.target)
    lab.dirty = False


def put_back(lab):
    """Every instance moved back to its home (migrate-module, the layout as it is); the moves."""
    moved = []
    where = LAB.placement()
    if any(len(where.get(i, [])) != 1 for i in lab.home):
        lab.deploy(lab.warm, "deploy-chain, one copy of each instance")
        where = LAB.placement()
    for iid, host in sorted(lab.home.items()):
        if where.get(iid) != [host]:
            lab.run("%s back to %s (from %s)" % (iid, host, ",".join(where.get(iid) or ["nowhere"])), "playbooks/migrate-module.yml",
                    "-e", "instance=" + iid, "-e", "to=" + host, "-e", "verify=false", *lab.layout())
            moved.append(iid)
    return moved


def settle(lab, warm):
    """The layout of the next failure: instances at home, deployed with (warm) or without the
    spares, the standbys where they belong, every trunk's BFD forwarding, every chain forwarding."""
    t0 = time.monotonic()
    out = {}
    if lab.dirty or lab.warm != warm:
        print("layout: %s" % ("warm spares on web" if warm else "no spares"), flush=True)
        out["moved_back"] = put_back(lab)
        lab.deploy(warm)
        where = LAB.placement()
        astray = {i: where.get(i) for i, h in lab.home.items() if where.get(i) != [h]}
        if astray:
            out["moved_back"] += put_back(lab)
            lab.deploy(warm, "deploy-chain, again")
            where = LAB.placement()
            astray = {i: where.get(i) for i, h in lab.home.items() if where.get(i) != [h]}
            if astray:
                raise RuntimeError("instances not back at home (%s): %s" % ({i: lab.home[i] for i in astray}, astray))
        info = instances(lab)
        standbys = {i: h for i, (h, chain, step) in info.items() if chain == CHAIN and step.endswith(SPARE_SUFFIX)}
        out["standbys"] = standbys
        if warm:
            steps = len(lab.chains[CHAIN]["steps"])
            if len(standbys) != steps or lab.host in standbys.values():
                raise RuntimeError("warm layout: %d standbys expected apart from %s, found %s" % (steps, lab.host, standbys))
            groups = lab_bench.sh("ovs-ofctl", "-O", "OpenFlow13", "dump-groups", lab.switch).stdout.count("type=ff")
            out["ff_groups"] = groups
            if not groups:
                raise RuntimeError("warm layout: no fast-failover group on %s" % lab.switch)
            if set(standbys.values()) != {SPARE}:
                print("  NOTE: standbys not (all) on %s: %s" % (SPARE, standbys), flush=True)
        elif standbys:
            raise RuntimeError("cold layout: standbys left: %s" % standbys)
        lab.dirty = False
    for host, port in sorted(lab.trunk.items()):
        if watch_bfd(port, True, time.monotonic(), time.monotonic() + BFD_BACK_S + 5) is None:
            raise RuntimeError("the BFD session on %s's trunk %s does not forward" % (host, port))
    out["ready_s"] = {c: round(forwarding(lab, c), 1) for c in CHAINS}
    out["secs"] = round(time.monotonic() - t0, 1)
    return out


def forwarding(lab, chain):
    """Seconds until the chain carries a short probe clean; a guest a move left crashed restarted."""
    try:
        return lab_bench.wait_forwarding(lab.dport(chain))
    except RuntimeError:
        if chain != "guest":
            raise
    vm = [(i, h) for i, (h, c, step) in instances(lab).items() if c == chain and lab.chains[chain]["steps"][0]["name"] == step]
    if not vm:
        raise RuntimeError("the guest chain does not forward and runs no VM")
    lab_bench.revive_guest(lab, vm[0][0], vm[0][1], lab.dport(chain))
    return lab_bench.wait_forwarding(lab.dport(chain))


def flap_counts(ports):
    """{port: the switch's BFD flap_count on it (None when it has none)}."""
    out = {}
    for port in ports:
        proc = subprocess.run(["ovs-vsctl", "--if-exists", "get", "interface", port, "bfd_status:flap_count"],
                              capture_output=True, text=True, check=False, timeout=10)
        text = proc.stdout.strip().strip('"')
        out[port] = int(text) if proc.returncode == 0 and text.isdigit() else None
    return out


def bfd_file(inv, ms):
    """The trunks' BFD timers of the whole run, as the bench inventory's group variable."""
    path = Path(inv) / "group_vars" / "all" / "bfd.yml"
    path.write_text("# bench/failover.py --bfd-ms\n" + yaml.safe_dump({"flowstream_bfd": {"min_tx": ms, "min_rx": ms}}), encoding="utf-8")
    return path


def bfd_forwarding(port):
    """The switch's BFD session on ``port``: True when forwarding, False when not, None unknown."""
    proc = subprocess.run(["ovs-vsctl", "--if-exists", "get", "interface", port, "bfd_status:forwarding"],
                          capture_output=True, text=True, check=False, timeout=10)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return proc.stdout.strip().strip('"') == "true"


def watch_bfd(port, want, since, deadline):
    """Milliseconds from ``since`` (monotonic) until the BFD session on ``port`` is forwarding
    (``want`` True) or not (False); None when it was not so by ``deadline``."""
    while True:
        if bfd_forwarding(port) is want:
            return round((time.monotonic() - since) * 1000)
        if time.monotonic() > deadline:
            return None
        time.sleep(BFD_POLL_S)


def sleep_until(deadline):
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def link(port, state):
    """The switch's end of a trunk set up or down (ip link, in the machine's own namespace)."""
    if state == "down":
        CUT.add(port)
    lab_bench.sh("ip", "link", "set", port, state)
    if state == "up":
        CUT.discard(port)


# -- the rulebook ----------------------------------------------------------------------------------
def _stat(pid):
    """(parent pid, start time in clock ticks) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def descendants(pid):
    """[(pid, start time)] of ``pid``'s children, theirs, and so on (from /proc)."""
    seen = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            got = _stat(int(entry))
            if got:
                seen[int(entry)] = got
    out, todo = [], [pid]
    while todo:
        here = todo.pop()
        kids = [p for p, (pp, _t) in seen.items() if pp == here]
        out += [(p, seen[p][1]) for p in kids]
        todo += kids
    return out


class Rulebook:
    """extensions/eda/rulebooks/failover.yml under ansible-rulebook on the bench's inventory, its
    output in a file (as tests/integration/operations/test_failover.py runs it)."""

    def __init__(self, lab, index):
        self.log = lab.tmp / ("%s-rulebook-%d.log" % (PREFIX, index))
        varsfile = lab.tmp / ("%s-rulebook-vars.yml" % PREFIX)
        varsfile.write_text(yaml.safe_dump({"flowstream_inventory": str(lab.inv), "flowstream_failover_grace": lab.args.grace,
                                            "flowstream_verify_max_rate": lab.args.verify_max_rate}), encoding="utf-8")
        argv = [str(lab_bench.BIN / "ansible-rulebook"), "-i", str(lab.inv), "--rulebook",
                str(TOP / "extensions" / "eda" / "rulebooks" / "failover.yml"), "--vars", str(varsfile), "-v"]
        with open(self.log, "w", encoding="utf-8") as out:
            self.proc = subprocess.Popen(argv, cwd=TOP, env=dict(lab_bench.ENV, ANSIBLE_STDOUT_CALLBACK="default"),  # pylint: disable=consider-using-with
                                         stdout=out, stderr=subprocess.STDOUT)
        RULEBOOKS.add(self)

    def text(self):
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, words, seconds):
        deadline = time.monotonic() + seconds
        while words not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError("ansible-rulebook ended (rc %s) before %r:\n%s" % (self.proc.returncode, words, self.text()[-4000:]))
            if time.monotonic() > deadline:
                raise RuntimeError("no %r from ansible-rulebook in %d s:\n%s" % (words, seconds, self.text()[-4000:]))
            time.sleep(0.2)

    def marks(self, words, since, seconds, last):
        """{key: seconds from ``since`` (monotonic) until its words first appeared} for ``words``
        ({words: key}), until the words ``last`` appear (polled every 0.2 s); an error or None."""
        seen = {}
        deadline = time.monotonic() + seconds
        while True:
            text = self.text()
            now = time.monotonic()
            for phrase, key in words.items():
                if key not in seen and phrase in text:
                    seen[key] = round(now - since, 1)
            if last in text:
                return seen, None
            if self.proc.poll() is not None:
                return seen, "ansible-rulebook ended (rc %s) before %r" % (self.proc.returncode, last)
            if now > deadline:
                return seen, "no %r from ansible-rulebook in %d s" % (last, seconds)
            time.sleep(0.2)

    def stop(self):
        """The rulebook ended (SIGTERM, SIGKILL after 30 s), and whatever it started and left (by pid)."""
        if self.proc.poll() is None:
            kids = descendants(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid, started in kids:
                got = _stat(pid)
                if got and got[1] == started:  # still the process the rulebook started, not a pid used again
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except (ProcessLookupError, PermissionError):
                        pass
        RULEBOOKS.discard(self)


# -- one failure -----------------------------------------------------------------------------------
def under_probe(lab, row, action):
    """``action(row)`` under the bench's own probe session; it returns its windows [(name, start,
    end)], the first the failure's: its figures go into the row, the others under ``windows``."""
    sid = lab_bench.probe_start(lab.probe_port, FLOWS, lab.args.rate, bound=PROBE_BOUND_S)
    windows = []
    try:
        time.sleep(lab_bench.LEAD_S)
        windows = action(row)
        time.sleep(lab_bench.TAIL_S)
    finally:
        result = lab_bench.probe_stop(sid, windows)
    figures = result.get("windows") or {}
    keys = ("sent", "lost", "reordered", "duplicated", "blackout_ms", "max_gap_ms")
    if windows:
        first = figures.get(windows[0][0]) or {}
        row.update({k: first.get(k) for k in keys})
        row["lost_bursts"] = first.get("lost_bursts")
        row["windows"] = {name: {k: (figures.get(name) or {}).get(k) for k in keys} for name, _s, _e in windows[1:]}
    row["probe_achieved_pps"] = (result.get("rate") or {}).get("achieved_pps")
    return row


def warm_link(lab, row):
    port = lab.trunk[lab.host]
    row["trunk"] = port

    def action(row):
        t0, m0 = time.time(), time.monotonic()
        link(port, "down")
        try:
            row["bfd_down_ms"] = watch_bfd(port, False, m0, m0 + lab.args.hold)
            sleep_until(m0 + lab.args.hold)
        finally:
            t_up, m_up = time.time(), time.monotonic()
            link(port, "up")
        row["bfd_back_ms"] = watch_bfd(port, True, m_up, m_up + BFD_BACK_S)
        if row["bfd_back_ms"] is None:
            row["error"] = "the BFD session on %s does not forward %d s after the link came up" % (port, BFD_BACK_S)
        time.sleep(AFTER_BACK_S)
        t_end = time.time()
        return [("failure", t0, t_end), ("cut", t0, t_up), ("back", t_up, t_end)]
    return under_probe(lab, row, action)


def kill(lab, row):
    pids = LAB.kill_all(lab.host)
    row["killed_pids"] = len(pids)
    if not pids:
        raise RuntimeError("no process of %s to kill" % lab.host)


def warm_bfd(lab, row):
    port = lab.trunk[lab.host]

    def action(row):
        t0, m0 = time.time(), time.monotonic()
        kill(lab, row)
        row["bfd_down_ms"] = watch_bfd(port, False, m0, m0 + lab.args.hold)
        sleep_until(m0 + lab.args.hold)
        return [("failure", t0, time.time())]
    return under_probe(lab, row, action)


def cold_rulebook(lab, row):
    rulebook = Rulebook(lab, row["index"])
    try:
        rulebook.wait_for("Waiting for events", RULEBOOK_READY_S)
        time.sleep(2)  # the source's first looks: every host healthy, nothing run
        if "PLAY [" in rulebook.text():
            raise RuntimeError("the rulebook ran a playbook before the kill:\n%s" % rulebook.text()[-3000:])

        def action(row):
            t0, m0 = time.time(), time.monotonic()
            kill(lab, row)
            seen, error = rulebook.marks({"failed now: %s" % lab.host: "detect_s", "PLAY [Verify the chains with traffic]": "restored_s",
                                          "PLAY RECAP": "done_s"}, m0, RULEBOOK_DONE_S, "PLAY RECAP")
            row.update(seen)
            t_end = time.time()
            if error:
                row["error"] = error
            else:
                time.sleep(1)  # the recap's lines written whole
            return [("failure", t0, t_end)]
        under_probe(lab, row, action)
    finally:
        rulebook.stop()
        text = rulebook.text()
        if "The failover, chain by chain" in text:
            part = text[text.index("The failover, chain by chain"):]
            row["failover_table"] = part[:part.index("PLAY [Verify")] if "PLAY [Verify" in part else part[:3000]
        bad = re.findall(r"\S+\s*:\s*ok=\d+.*?(?:failed|unreachable)=[1-9].*", text)
        # a failed task's first line after "fatal: [...]: FAILED! =>" names its assertion
        asserted = re.findall(r"fatal: \[[^\]]+\]: FAILED! =>\s*\n\s*assertion: (\S+)", text)
        verify_only = [" ".join(m.split()) for m in re.findall(r"msg: '(chain [^']*)'", text)]
        if bad and verify_only and len(asserted) == len(re.findall(r"fatal: \[", text)) \
                and all(a == "flowstream_verdicts.ok" for a in asserted):
            # the chains were restored; only the verify's probe lost packets - on 2 cores, beside the
            # bench's own 10 kpps probe session: the row counts, and says so
            row["verify_failed"] = verify_only
        elif bad and not row.get("error"):
            row["error"] = "the rulebook's run failed: %s" % "; ".join(bad)[:2000]
        if row.get("error"):
            row["rulebook_log"] = str(rulebook.log)
    return row


def host_vars(lab, host, out_of_service):
    path = Path(lab.inv) / "host_vars" / ("%s.yml" % host)
    if out_of_service:
        path.parent.mkdir(exist_ok=True)
        path.write_text("# bench/failover.py: the operator took %s out of service\nflowstream_in_service: false\n" % host, encoding="utf-8")
    elif path.exists():
        path.unlink()


def operator(lab, row):
    def action(row):
        t0, m0 = time.time(), time.monotonic()
        kill(lab, row)
        host_vars(lab, lab.host, True)
        run = lab.playbook("playbooks/deploy-chain.yml", "-e", "flowstream_verify_max_rate=%d" % lab.args.verify_max_rate, *lab.layout())
        row["done_s"] = round(time.monotonic() - m0, 1)
        t_end = time.time()
        stats = run.data.get("stats", {})
        unreachable = sorted(h for h, s in stats.items() if s.get("unreachable"))
        failed = sorted(h for h, s in stats.items() if s.get("failures"))
        row.update(deploy_rc=run.rc, deploy_s=round(run.seconds, 1), unreachable=unreachable, changed=run.changed())
        if failed or set(unreachable) - {lab.host} or not stats:
            row["error"] = "deploy-chain with %s out of service (rc %d): %s" % (lab.host, run.rc, run.error())
        return [("failure", t0, t_end)]
    return under_probe(lab, row, action)


MEASURE = {"warm-link": warm_link, "warm-bfd": warm_bfd, "cold-rulebook": cold_rulebook, "operator": operator}


def repair(lab, mode):
    """After a kill (or a warm-link cut that went wrong): the host fenced and emptied if it was not
    (failover.yml while it is dead; nothing to do when it answers), back, its stale copies
    removed, in service again. The layout of the next failure is settle()'s."""
    t0 = time.monotonic()
    host = lab.host
    skip = ["-e", "flowstream_skip_verify=true"]
    print("repair (%s):" % host, flush=True)
    if mode != "operator":
        lab.run("failover, %s dead" % host, "playbooks/failover.yml", *skip, *lab.layout())
    lab.run("lab-up (%s back)" % host, "playbooks/lab-up.yml")
    if mode == "operator":
        lab.run("deploy-chain, %s still out of service" % host, "playbooks/deploy-chain.yml", *skip, *lab.layout())
        host_vars(lab, host, False)
    lab.run("failover (stale copies on %s)" % host, "playbooks/failover.yml", *skip, *lab.layout())
    lab.run("uncordon %s" % host, "playbooks/uncordon-host.yml", "-e", "hosts=" + host)
    lab.dirty = True
    return round(time.monotonic() - t0, 1)


def keep_runs(lab, path, row):
    """The playbook runs of a failure that went wrong, whole, next to the result."""
    log = path.with_name("%s-%s-%d.json" % (path.stem, row["mode"], row["index"]))
    log.write_text(json.dumps([{"argv": r.argv, "rc": r.rc, "seconds": r.seconds, "data": r.data, "stderr": r.stderr[-5000:],
                                "raw_tail": r.raw[-5000:] if not r.data else ""} for r in lab.runs], indent=1), encoding="utf-8")
    return str(log)


def one(lab, mode, index, path):
    """One failure of ``mode``: the layout made, the failure measured; its row (repair() follows a kill)."""
    settled = settle(lab, mode in WARM)
    where = LAB.placement()
    row = {"mode": mode, "index": index, "host": lab.host, "instance": lab.target, "at": time.strftime("%H:%M:%S"),
           "load_1": round(os.getloadavg()[0], 2), "rate": lab.args.rate, "flows": FLOWS, "dport": lab.probe_port,
           "instances_on_host": sorted(i for i, h in where.items() if lab.host in h), "settle": settled}
    lab.runs = []
    try:
        MEASURE[mode](lab, row)
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        row["error"] = str(exc)
    finally:
        for port in list(CUT):
            link(port, "up")
    if row.get("error"):
        if lab.runs:
            row["log"] = keep_runs(lab, path, row)
        if row.get("rulebook_log"):
            kept = path.with_name("%s-%s-%d.log" % (path.stem, mode, index))
            shutil.copy(row["rulebook_log"], kept)
            row["rulebook_log"] = str(kept)
    say(row)
    return row


def say(row):
    text = "%-13s #%-2d %s (%s): sent %s lost %s reord %s dup %s blackout %s ms" % (
        row["mode"], row["index"], row["host"], row["instance"], _c(row.get("sent")), _c(row.get("lost")), _c(row.get("reordered")),
        _c(row.get("duplicated")), _c(row.get("blackout_ms")))
    if row.get("bfd_down_ms") is not None or row.get("bfd_back_ms") is not None:
        text += " | BFD down after %s ms, back after %s ms" % (_c(row.get("bfd_down_ms")), _c(row.get("bfd_back_ms")))
    if row.get("done_s") is not None:
        text += " | detect %s s, restored %s s, done %s s" % (_c(row.get("detect_s")), _c(row.get("restored_s")), _c(row.get("done_s")))
    if row.get("verify_failed"):
        text += " | its verify: %s" % "; ".join(row["verify_failed"])
    print(text, flush=True)
    if row.get("error"):
        print("  FAILED: %s" % row["error"][:3000], flush=True)


# -- figures ---------------------------------------------------------------------------------------
FIGURES = (("blackout_ms", "blackout ms"), ("lost", "lost"), ("reordered", "reord"), ("duplicated", "dup"), ("sent", "sent"),
           ("bfd_down_ms", "BFD down ms"), ("detect_s", "detect s"), ("done_s", "done s"))


def table(rows, modes):
    lines = ["| mode | failures (failed) | " + " | ".join("%s median / p95" % n for _k, n in FIGURES) + " |",
             "|" + "---|" * (2 + len(FIGURES))]
    for mode in modes:
        every = [r for r in rows if r["mode"] == mode]
        good = [r for r in every if not r.get("error")]
        cells = []
        for key, _name in FIGURES:
            values = [r.get(key) for r in good]
            cells.append("-" if all(v is None for v in values) else "%s / %s" % (_f(med(values)), _f(pct(values, 0.95))))
        lines.append("| %s | %d (%d) | %s |" % (mode, len(good), len(every) - len(good), " | ".join(cells)))
    return lines


def ratios(rows, modes):
    lines = ["| mode / warm mode | blackout ms: medians (ratio) | lost: medians (ratio) | blackout ms: p95s (ratio) | lost: p95s (ratio) |",
             "|---|---|---|---|---|"]
    for warm in [m for m in ("warm-bfd", "warm-link") if m in modes]:
        base = [r for r in rows if r["mode"] == warm and not r.get("error")]
        for other in [m for m in ("cold-rulebook", "operator") if m in modes]:
            them = [r for r in rows if r["mode"] == other and not r.get("error")]
            if not base or not them:
                continue
            cells = []
            for how in (med, lambda v: pct(v, 0.95)):
                for key in ("blackout_ms", "lost"):
                    a, b = how([r.get(key) for r in them]), how([r.get(key) for r in base])
                    cells.append("%s / %s (%s)" % (_f(a), _f(b), lab_bench._ratio(a, b)))  # pylint: disable=protected-access
            lines.append("| %s / %s | %s |" % (other, warm, " | ".join(cells)))
    return lines


def report(result, path):
    rows, modes = result["rows"], result["modes"]
    print("\nbench/failover.py, %s, %d failures per mode, %s over %d flows at %d pps to port %s; host %s (%s's first instance %s); "
          "%.0f s in all; commit %s" % (result["started"], result["failures"], CHAIN, FLOWS, result["rate"], result.get("dport"),
                                        result.get("host"), CHAIN, result.get("instance"), result.get("seconds") or 0,
                                        result["commit"][:12]))
    if rows:
        print("\nper mode (window: warm-link the cut and the way back; warm-bfd %.0f s from the kill; cold-rulebook the kill to the "
              "rulebook's PLAY RECAP; operator the kill to deploy-chain's end)" % result["hold_s"])
        print("\n".join(table(rows, modes)))
        print("\ncold and operator vs warm (other / warm)")
        print("\n".join(ratios(rows, modes)))
        rb = [r for r in rows if r["mode"] == "cold-rulebook" and not r.get("error")]
        if rb:
            cells = []
            for key, name in (("detect_s", "'failed now'"), ("restored_s", "verify began"), ("done_s", "PLAY RECAP")):
                values = [r.get(key) for r in rb]
                cells.append("%s %s / %s" % (name, _f(med(values)), _f(pct(values, 0.95))))
            print("cold-rulebook, seconds from the kill (median / p95): %s" % ", ".join(cells))
        flaps = result.get("bfd_flaps")
        if flaps:
            print("BFD %d ms x 3: %d flap(s) on the trunks of the hosts never failed, over %.0f s (%s)" % (
                result.get("bfd_ms") or 100, flaps["unfailed_hosts"], flaps["seconds"],
                ", ".join("%s %s->%s" % (h, v["from"], v["to"]) for h, v in sorted(flaps["trunks"].items()))))
        failed = [r for r in rows if r.get("error")]
        for r in failed:
            print("FAILED %s #%d: %s" % (r["mode"], r["index"], r["error"][:400].replace("\n", " ")))
    if result.get("error"):
        print("\nthe run stopped: %s" % result["error"][:3000])
    print("\nevery row in %s" % path)


# -- the run ---------------------------------------------------------------------------------------
def main():  # pylint: disable=too-many-statements,too-many-branches
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--failures", type=int, default=10, help="failures per mode (default 10)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 failures per mode")
    ap.add_argument("--modes", default=",".join(MODES), help="of %s (default all, interleaved in this order)" % ", ".join(MODES))
    ap.add_argument("--rate", type=int, default=10000, help="the probe's packets per second through web (default 10000)")
    ap.add_argument("--hold", type=float, default=3.0, help="warm-link: seconds the trunk stays cut; warm-bfd: seconds watched after "
                                                            "the kill (default 3)")
    ap.add_argument("--grace", type=float, default=3, help="cold-rulebook: the rulebook's flowstream_failover_grace (default 3)")
    ap.add_argument("--verify-max-rate", type=int, default=5000, help="cold-rulebook, operator: a cap on the verify probes' rate "
                                                                      "(default 5000)")
    ap.add_argument("--bfd-ms", type=int, default=None,
                    help="the trunks' BFD min_tx and min_rx in ms for the whole run (default: the platform's, 100)")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsb lab up at the end")
    args = ap.parse_args()
    if args.quick:
        args.failures = 2
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise SystemExit("unknown mode(s) %s (modes: %s)" % (", ".join(unknown) or "none", ", ".join(MODES)))
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    for tool in ("nsenter", "ovs-vsctl", "ovs-ofctl", "ip", "virsh"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    if "cold-rulebook" in modes and not ((lab_bench.BIN / "ansible-rulebook").exists() and shutil.which("java")):
        raise SystemExit("cold-rulebook needs ansible-rulebook in .venv and a Java 17 runtime (make setup)")
    tmp = tempfile.mkdtemp(prefix="%s-failover-" % PREFIX)
    inv, chains, platform = write_inventory(Path(tmp) / "inv")
    if args.bfd_ms is not None:
        bfd_file(inv, args.bfd_ms)
    lab = FailoverLab(inv, chains, platform, tmp, args)
    commit = lab_bench.sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
    dirty = lab_bench.sh("git", "-C", TOP, "status", "--short", "--", "playbooks", "plugins", "roles", "extensions",
                         check=False).stdout.split("\n")
    result = {"argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit, "uncommitted": [d for d in dirty if d],
              "failures": args.failures, "modes": modes, "rate": args.rate, "flows": FLOWS, "dport": lab.probe_port, "hold_s": args.hold,
              "grace": args.grace, "verify_max_rate": args.verify_max_rate, "bfd_ms": args.bfd_ms or 100, "rows": []}
    out_dir = TOP / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("failover-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    t_start = time.monotonic()
    try:
        t0 = time.monotonic()
        lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-down.yml"), "lab-down (before)")
        lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-up.yml"), "lab-up")
        result["lab_up_s"] = round(time.monotonic() - t0, 1)
        first_layout(lab)
        result.update(host=lab.host, instance=lab.target, home=lab.home)
        flaps_at, flaps_from = time.monotonic(), flap_counts(lab.trunk.values())
        print("the host to fail: %s (runs %s's first instance %s, and %s)" % (
            lab.host, CHAIN, lab.target, ", ".join(sorted(i for i, h in lab.home.items() if h == lab.host and i != lab.target)) or "nothing else"),
            flush=True)
        for index in range(args.failures):
            for mode in modes:
                row = one(lab, mode, index, path)
                result["rows"].append(row)
                path.write_text(json.dumps(result, indent=1), encoding="utf-8")
                if mode != "warm-link" or row.get("error"):
                    row["repair_s"] = repair(lab, mode)
                    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        result["error"] = str(exc)
        raise
    finally:
        for rulebook in list(RULEBOOKS):
            rulebook.stop()
        lab_bench.stop_sessions()
        for port in list(CUT):
            lab_bench.sh("ip", "link", "set", port, "up", check=False)
        result["seconds"] = round(time.monotonic() - t_start, 1)
        if "flaps_from" in locals():
            flaps_to = flap_counts(lab.trunk.values())
            # the failing host's trunk flaps with every failure; the others' should not at all
            result["bfd_flaps"] = {"seconds": round(time.monotonic() - flaps_at, 1),
                                   "trunks": {h: {"from": flaps_from.get(p), "to": flaps_to.get(p)} for h, p in lab.trunk.items()},
                                   "unfailed_hosts": sum((flaps_to.get(p) or 0) - (flaps_from.get(p) or 0)
                                                         for h, p in lab.trunk.items() if h != lab.host)}
        lab_bench.lab_down(inv, tmp, args.keep_lab)
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        report(result, path)


if __name__ == "__main__":
    main()
