# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A chain change killed (SIGKILL) inside every task of the apply step in turn: does traffic keep
flowing after each kill, and does the next run converge? On a lab of the bench's own.

    .venv/bin/python bench/crash_sweep.py [--changes migrate,append,remove] [--points N] [--rate PPS]
                                          [--all-tasks] [--stop-by HH:MM] [--keep-lab]

Run as root from the checkout, with no other lab carrying traffic. It brings up bench/migrate.py's
lab (prefix ``fsb``: management 198.18.90.0/24, source 198.18.91.1, sink 198.18.91.2, state in
/var/lib/flowstream-lab-fsb), deploys the example chains of inventory/lab (rewritten for those
addresses) and sweeps the changes of ``--changes`` (default ``migrate,append``), in this order:

- ``migrate``: ``playbooks/migrate-module.yml -e instance=<id> -e to=<host> -e verify=false``,
  web's last kernel instance (the shaper, found in the module hosts' own reports) from the host
  the first deploy put it on to the first other module host; the way back is the same playbook
  towards its first host;
- ``append``: ``playbooks/deploy-chain.yml -e flowstream_skip_verify=true -e @<file>``, the file
  the inventory's chains with a step ``{name: tail, type: wire, kind: kernel}`` appended to web;
  the way back is deploy-chain without the file (the step removed);
- ``remove``: that way back as the change (deploy-chain without the file, from the chains with
  the step), and deploy-chain with the file the way back.

The kill points are found, not written down: the change is run once un-killed with
``ANSIBLE_STDOUT_CALLBACK=default``, and the ``TASK [...]`` banners printed after ``PLAY [Apply
the plan, wave by wave (make-before-break)]`` (playbooks/tasks/apply_wave.yml and
program_flows.yml) are the points, each its whole printed name (the wave's name in it; a name
printed twice is two points, its first and second banner). Left out, and listed in the JSON with
the reason: tasks that are only ``set_fact``/``debug`` bookkeeping on the controller, the
``include_tasks`` banners (the included tasks are points of their own), and tasks every host
skipped in that run (nothing to interrupt: the kill would land in the next task) - all three
kept with ``--all-tasks``. Then the change is undone.

For each point: the state before the change made (the way back run, the instance at its first
host / the step absent) and web checked to forward (a short clean probe); the bench's own probe
session started through web (scripts/flowstream-probe start, as bench/failover.py: 32 flows at
``--rate``, 5000 pps, source ports varied, to the destination port one above web's
``verify.base_port``); the change run with ansible-playbook in a session of its own, its output
read line by line, and 0.3 s after the banner of the point the process group AND every
descendant killed with SIGKILL (Ansible's workers run in sessions of their own; as
tests/integration/ansible_cli.py ``killed_at``). ``killed`` says whether the run died inside that
task (no later banner printed); a point whose banner never came is ``not reached``. Five seconds
after the kill the session is stopped with the windows ``after`` = [kill + 3 s, kill + 5 s] (the
row's figures: traffic must flow on the old path or the new one once the hosts finished what the
controller left running; a blackout there is the longest silence of one flow overlapping the
window, also when it began earlier) and ``kill`` = [kill, kill + 3 s]; the session's totals are
kept too. Then the change is run again un-killed (it must succeed; seconds, changed; not under
the probe: the session has ended) - for ``migrate`` only when the instance does not already run
on the target alone (the playbook refuses a move to where an instance runs, as
tests/integration/operations/test_operations.py knows) - and convergence checked: every instance on exactly one module host
(tests/integration/labhosts.py, leg ports, namespaces, domains), ``migrate``: the instance on the
target only, ``append``/``remove``: web's ``tail`` step run by one instance / by none (the hosts'
reports); then deploy-chain (verify skipped, the extra vars of the state reached) must report
``changed=0``: no orphan instance, flow or domain left.

Prints one table per change (point | killed | lost after kill | reordered | blackout ms | re-run ok
| converged | changed after) and a summary line, and writes everything as JSON to
bench/results/crash-sweep-<time>.json. ``--points N`` sweeps the first N points of each change (a
smoke run); ``--stop-by HH:MM`` (UTC) starts no point that would not end before then (the rows
left say so). The lab is taken down at the end (also on failure) unless ``--keep-lab``. Not part
of ``make test``.
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
import threading
import time
from pathlib import Path

import yaml

import migrate as lab_bench  # bench/migrate.py: its lab, playbook runner, probe sessions, figures

sys.path.insert(0, str(lab_bench.TOP / "tests" / "integration"))
from labhosts import LabHosts, descendants  # noqa: E402  pylint: disable=wrong-import-position

TOP = lab_bench.TOP
PREFIX = lab_bench.PREFIX
HOSTS = lab_bench.HOSTS
LAB = LabHosts(HOSTS, prefix=PREFIX, state=lab_bench.STATE)
CHAIN = "web"
CHAINS = ("web", "inspect", "guest")
FLOWS = 32
CHANGES = ("migrate", "append", "remove")
TAIL_STEP = {"name": "tail", "type": "wire", "kind": "kernel"}
APPLY_PLAY = "PLAY [Apply the plan, wave by wave (make-before-break)]"
TASK_FILES = ("playbooks/tasks/apply_wave.yml", "playbooks/tasks/program_flows.yml")
BOOKKEEPING = ("ansible.builtin.set_fact", "set_fact", "ansible.builtin.debug", "debug")
INCLUDES = ("ansible.builtin.include_tasks", "include_tasks", "ansible.builtin.import_tasks", "import_tasks")
KILL_DELAY_S = 0.3      # after the point's banner: its module is running on the hosts
SETTLE_S = 3.0          # after the kill: what the hosts were doing finishes there
WINDOW_S = 2.0          # the window judged: [kill + SETTLE_S, kill + SETTLE_S + WINDOW_S]
TAIL_S = 0.5            # the probe runs this long after that window
KILL_TIMEOUT_S = 600    # a run that neither reaches its point nor ends is killed after this
PROBE_BOUND_S = 900     # the probe session ends by itself after this (a bench killed half-way)
DOWN_RESERVE_S = 150    # --stop-by: the lab-down and the report after the last point
KEYWORDS = ("name", "when", "loop", "loop_control", "vars", "register", "delegate_to", "delegate_facts", "run_once", "tags",
            "changed_when", "failed_when", "no_log", "ignore_errors", "environment", "become", "until", "retries", "delay", "notify")
STATUS = re.compile(r"^(ok|changed|skipping|fatal|failed|included|unreachable): ")
_c = lab_bench._c  # pylint: disable=protected-access


# -- the lab ---------------------------------------------------------------------------------------
def tail_file(inv, path):
    """The inventory's chains with web's step ``tail`` appended, as an extra-vars file."""
    data = yaml.safe_load((Path(inv) / "group_vars" / "all" / "chains.yml").read_text(encoding="utf-8"))
    chains = data["flowstream_chains"]
    next(c for c in chains if c["name"] == CHAIN)["steps"].append(dict(TAIL_STEP))
    Path(path).write_text(yaml.safe_dump({"flowstream_chains": chains}, sort_keys=False), encoding="utf-8")
    return path


def bench_dport(chain):
    """One above the chain's verify.base_port (the platform's own probes listen on base_port)."""
    return int(chain["verify"]["base_port"]) + 1


def web_instances(inv):
    """{instance: report} of web's instances, from every module host's own report (host added)."""
    out = {}
    for host, rep in lab_bench.host_reports(inv).items():
        for iid, inst in ((rep or {}).get("instances") or {}).items():
            if inst.get("chain") == CHAIN:
                out[iid] = dict(inst, host=host)
    return out


def doubles(where):
    """Instances on more than one module host (an orphan copy an interrupted run left)."""
    return {i: h for i, h in where.items() if len(h) != 1}


class SweepLab(lab_bench.Lab):
    """bench/migrate.py's Lab with the changes the sweep kills and their ways back."""

    def __init__(self, inv, chains, platform, tmp, args):
        super().__init__(inv, chains, platform)
        self.tmp, self.args = Path(tmp), args
        self.tail = tail_file(inv, self.tmp / ("%s-tail.yml" % PREFIX))
        self.probe_port = bench_dport(self.chains[CHAIN])
        self.iid = None       # migrate: the instance moved
        self.home = None      # ... the host the first deploy put it on
        self.target = None    # ... the host it moves to

    def run(self, what, path, *args):
        run = lab_bench.must(self.playbook(path, *args), what)
        print("  %-60s %6.1f s  changed=%d" % (what, run.seconds, run.changed()), flush=True)
        return run

    # each change: (playbook, args) of the change and of its way back, the deploy-chain extra vars
    # of the state after it, and the check of that state
    def change_argv(self, change):
        if change == "migrate":
            return ("playbooks/migrate-module.yml", ["-e", "instance=" + self.iid, "-e", "to=" + self.target, "-e", "verify=false"])
        skip = ["-e", "flowstream_skip_verify=true"]
        return ("playbooks/deploy-chain.yml", skip + (["-e", "@%s" % self.tail] if change == "append" else []))

    def after_vars(self, change):
        return ["-e", "@%s" % self.tail] if change == "append" else []

    def before_vars(self, change):
        return ["-e", "@%s" % self.tail] if change == "remove" else []

    def make_before(self, change):
        """The state before the change: the instance at home alone / web without or with its tail."""
        if change == "migrate":
            where = LAB.placement()
            if where.get(self.iid) != [self.home]:
                if len(where.get(self.iid) or []) != 1:
                    self.run("deploy-chain, one copy of each instance", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
                    where = LAB.placement()
                if where.get(self.iid) != [self.home]:
                    self.run("%s back to %s (from %s)" % (self.iid, self.home, ",".join(where.get(self.iid) or ["nowhere"])),
                             "playbooks/migrate-module.yml", "-e", "instance=" + self.iid, "-e", "to=" + self.home, "-e", "verify=false")
            where = LAB.placement()
            if where.get(self.iid) != [self.home] or doubles(where):
                raise RuntimeError("before the change: %s on %s, doubles %s" % (self.iid, where.get(self.iid), doubles(where)))
        else:
            self.run("deploy-chain, web %s its tail" % ("with" if change == "remove" else "without"), "playbooks/deploy-chain.yml",
                     "-e", "flowstream_skip_verify=true", *self.before_vars(change))
            where = LAB.placement()
            if doubles(where):
                raise RuntimeError("before the change: instances on several hosts: %s" % doubles(where))

    def converged(self, change):
        """(converged, what was found) of the state the change should have reached."""
        where = LAB.placement()
        found = {"doubles": doubles(where)}
        if change == "migrate":
            found["where"] = where.get(self.iid)
            return found["where"] == [self.target] and not found["doubles"], found
        tails = {i: r["host"] for i, r in web_instances(self.inv).items() if str(r.get("step")) == TAIL_STEP["name"]}
        found["tail_instances"] = tails
        want = 1 if change == "append" else 0
        return len(tails) == want and not found["doubles"], found


# -- the runs killed -------------------------------------------------------------------------------
def kill_family(proc):
    """SIGKILL to the run's process group and to every descendant (by pid: Ansible's workers run
    in sessions of their own, the group kill misses them)."""
    family = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(family)


def banner(line):
    """The task name of a ``TASK [...]`` banner line, else None."""
    if not line.startswith("TASK [") or "]" not in line:
        return None
    return line[len("TASK ["):line.rindex("]")]


def launch(lab, path, args, point=None):
    """ansible-playbook ``path`` with the default callback, in a session of its own; killed 0.3 s
    after the ``point`` (name, occurrence) banner. {rc, lines, seconds, killed_at (epoch), ...}."""
    argv = [str(lab_bench.BIN / "ansible-playbook"), "-i", str(lab.inv), str(TOP / path)] + list(args)
    env = dict(lab_bench.ENV, ANSIBLE_STDOUT_CALLBACK="default", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=TOP, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                            text=True, start_new_session=True)
    out = {"argv": argv, "killed_at": None, "point_seen": False, "timed_out": False}
    lines, seen = [], 0
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            name = banner(line)
            if point is not None and name == point[0]:
                seen += 1
                if seen == point[1]:
                    out["point_seen"] = True
                    out["after_banner_s"] = round(time.monotonic() - t0, 1)
                    time.sleep(KILL_DELAY_S)
                    out["killed_at"] = time.time()
                    out["family"] = kill_family(proc)
                    break
            if time.monotonic() > deadline:
                out["timed_out"] = True
                kill_family(proc)
                break
        # what it printed up to its death: the pipe's rest (read aside: a process that kept the
        # pipe open would block the read)
        rest = []
        reader = threading.Thread(target=lambda: rest.extend(proc.stdout), daemon=True)
        reader.start()
        reader.join(10)
        lines += [ln.rstrip("\n") for ln in list(rest)]
    finally:
        if proc.poll() is None and (out["killed_at"] or out["timed_out"]):
            kill_family(proc)
        proc.wait()
    out.update(rc=proc.returncode, lines=lines, seconds=round(time.monotonic() - t0, 1))
    return out


def apply_tasks(lines):
    """[(name, occurrence, statuses)] of the banners printed in the apply play (in order)."""
    tasks, inside, count = [], False, {}
    for line in lines:
        if line.startswith("PLAY ["):
            inside = line.startswith(APPLY_PLAY)
            continue
        if line.startswith("PLAY RECAP"):
            inside = False
        if not inside:
            continue
        name = banner(line)
        if name is not None:
            count[name] = count.get(name, 0) + 1
            tasks.append([name, count[name], set()])
        elif tasks:
            found = STATUS.match(line)
            if found:
                tasks[-1][2].add(found.group(1))
    return tasks


def task_modules():
    """{task name up to its first " (": module} of the apply step's task files."""
    out = {}
    for rel in TASK_FILES:
        for task in yaml.safe_load((TOP / rel).read_text(encoding="utf-8")) or []:
            name = str(task.get("name") or "")
            module = next((k for k in task if k not in KEYWORDS), None)
            out[name.split(" (", 1)[0]] = module
    return out


def kill_points(lines, all_tasks=False):
    """The points (name, occurrence) of an un-killed run's apply play, and those left out, why."""
    modules = task_modules()
    points, left_out = [], []
    for name, occurrence, statuses in apply_tasks(lines):
        module = modules.get(name.split(" (", 1)[0])
        why = None
        if module in BOOKKEEPING:
            why = "bookkeeping (%s)" % module
        elif module in INCLUDES or statuses == {"included"}:
            why = "include_tasks (its tasks are points of their own)"
        elif statuses == {"skipping"}:
            why = "skipped on every host in this change"
        if why and not all_tasks:
            left_out.append({"point": name, "occurrence": occurrence, "why": why})
        else:
            points.append({"point": name, "occurrence": occurrence, "module": module, "statuses": sorted(statuses),
                           "note": why})
    return points, left_out


# -- one kill --------------------------------------------------------------------------------------
KEYS = ("sent", "lost", "reordered", "duplicated", "blackout_ms", "max_gap_ms")


def one(lab, change, point):
    """The change killed inside ``point``: the row."""
    row = {"change": change, "point": point["point"], "occurrence": point["occurrence"], "at": time.strftime("%H:%M:%S"),
           "load_1": round(os.getloadavg()[0], 2)}
    t0 = time.monotonic()
    lab.runs = []
    try:
        lab.make_before(change)
        row["ready_s"] = round(lab_bench.wait_forwarding(lab.dport(CHAIN)), 1)
        path, args = lab.change_argv(change)
        sid = lab_bench.probe_start(lab.probe_port, FLOWS, lab.args.rate, bound=PROBE_BOUND_S)
        windows, run = [], None
        try:
            time.sleep(lab_bench.LEAD_S)
            run = launch(lab, path, args, (point["point"], point["occurrence"]))
            killed_at = run["killed_at"]
            if killed_at:
                time.sleep(max(0.0, killed_at + SETTLE_S + WINDOW_S + TAIL_S - time.time()))
                windows = [("after", killed_at + SETTLE_S, killed_at + SETTLE_S + WINDOW_S), ("kill", killed_at, killed_at + SETTLE_S)]
            else:
                time.sleep(TAIL_S)
        finally:
            result = lab_bench.probe_stop(sid, windows)
        if run is None:
            raise RuntimeError("the %s run did not start" % change)
        died_in = [banner(ln) for ln in run["lines"] if banner(ln)]
        row.update(run_rc=run["rc"], reached=run["point_seen"], after_banner_s=run.get("after_banner_s"),
                   died_in=died_in[-1] if died_in else None, recap="PLAY RECAP" in "\n".join(run["lines"]))
        # killed inside the task: the run died by the signal with no later banner printed
        row["killed"] = bool(run["point_seen"] and run["rc"] == -signal.SIGKILL and row["died_in"] == point["point"]
                             and sum(1 for n in died_in if n == point["point"]) == point["occurrence"])
        if not run["point_seen"]:
            row["note"] = "not reached (rc %s%s)" % (run["rc"], ", timed out" if run["timed_out"] else "")
            row["output_tail"] = "\n".join(run["lines"][-40:])
        elif not row["killed"]:
            row["output_tail"] = "\n".join(run["lines"][-20:])
        figures = result.get("windows") or {}
        after = figures.get("after") or {}
        row.update({k: after.get(k) for k in KEYS})
        row["kill_window"] = {k: (figures.get("kill") or {}).get(k) for k in KEYS}
        row["session"] = {k: (result.get("totals") or {}).get(k) for k in KEYS + ("loss_percent",)}
        row["probe_achieved_pps"] = (result.get("rate") or {}).get("achieved_pps")
        if change == "migrate":
            row["where_after_kill"] = LAB.placement().get(lab.iid)
        # the next run, un-killed
        if change == "migrate" and row["where_after_kill"] == [lab.target]:
            row.update(rerun_needed=False, rerun_ok=True, rerun_s=None, rerun_changed=None)
        else:
            rerun = lab.playbook(path, *args)
            row.update(rerun_needed=True, rerun_ok=not rerun.failed(), rerun_s=round(rerun.seconds, 1), rerun_changed=rerun.changed())
            if rerun.failed():
                row["rerun_error"] = rerun.error()[:3000]
        row["converged"], row["found"] = lab.converged(change)
        deploy = lab.playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true", *lab.after_vars(change))
        row["changed_after"] = deploy.changed() if not deploy.failed() else None
        if deploy.failed():
            row["deploy_error"] = deploy.error()[:3000]
        elif deploy.changed():
            row["changed_after_tasks"] = [[t["task"]["name"], h] for t in deploy.tasks() for h, r in t["hosts"].items()
                                          if r.get("changed")][:40]
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        row["error"] = str(exc)[:4000]
    row["secs"] = round(time.monotonic() - t0, 1)
    say(row)
    return row


def say(row):
    text = "%-7s %-72s killed %-5s | after the kill: sent %s lost %s reord %s dup %s blackout %s ms | re-run %s (%s s) | converged %s | " \
           "changed after %s" % (row["change"], _point(row), row.get("killed"), _c(row.get("sent")), _c(row.get("lost")),
                                 _c(row.get("reordered")), _c(row.get("duplicated")), _c(row.get("blackout_ms")), _rerun(row),
                                 _c(row.get("rerun_s")), row.get("converged"), _c(row.get("changed_after")))
    print(text, flush=True)
    if row.get("note"):
        print("  NOTE: %s" % row["note"], flush=True)
    for key in ("rerun_error", "deploy_error", "error"):
        if row.get(key):
            print("  %s: %s" % (key, row[key][:2000]), flush=True)


def _point(row):
    return row["point"] + ("" if row.get("occurrence", 1) == 1 else " #%d" % row["occurrence"])


def _rerun(row):
    if row.get("rerun_ok") is None:
        return "-"
    if not row.get("rerun_needed", True):
        return "not needed"
    return "ok" if row["rerun_ok"] else "FAILED"


# -- the sweep -------------------------------------------------------------------------------------
def discover(lab, change, result):
    """The change run once un-killed: its kill points; then undone."""
    lab.make_before(change)
    lab_bench.wait_forwarding(lab.dport(CHAIN))
    path, args = lab.change_argv(change)
    # the un-killed change under the bench's probe too: what the change itself costs web
    sid = lab_bench.probe_start(lab.probe_port, FLOWS, lab.args.rate, bound=PROBE_BOUND_S)
    windows = []
    try:
        time.sleep(lab_bench.LEAD_S)
        t0 = time.time()
        run = launch(lab, path, args)
        windows = [("change", t0, time.time())]
        time.sleep(lab_bench.TAIL_S)
    finally:
        figures = (lab_bench.probe_stop(sid, windows).get("windows") or {}).get("change") or {}
    if run["rc"] != 0:
        raise RuntimeError("the un-killed %s run failed (rc %s):\n%s" % (change, run["rc"], "\n".join(run["lines"][-60:])))
    points, left_out = kill_points(run["lines"], lab.args.all_tasks)
    traffic = {k: figures.get(k) for k in KEYS}
    result["discovery"][change] = {"seconds": run["seconds"], "points": points, "left_out": left_out, "traffic": traffic,
                                   "apply_banners": [[n, o] for n, o, _s in apply_tasks(run["lines"])]}
    print("%s, un-killed: %.1f s (web: sent %s lost %s reord %s dup %s blackout %s ms); %d kill points, %d banners left out" % (
        change, run["seconds"], _c(traffic["sent"]), _c(traffic["lost"]), _c(traffic["reordered"]), _c(traffic["duplicated"]),
        _c(traffic["blackout_ms"]), len(points), len(left_out)), flush=True)
    for p in points:
        print("  point: %s%s" % (p["point"], "" if p["occurrence"] == 1 else " #%d" % p["occurrence"]), flush=True)
    for p in left_out:
        print("  left out: %s (%s)" % (p["point"], p["why"]), flush=True)
    if not points:
        raise RuntimeError("no kill point found after %r in the %s run" % (APPLY_PLAY, change))
    return points


def pick_migrate(lab):
    """web's last kernel instance (the shaper), its host, the first other module host."""
    web = web_instances(lab.inv)
    kernel = sorted(i for i, r in web.items() if r.get("kind") == "kernel")
    if not kernel:
        raise RuntimeError("no kernel instance of web in the hosts' reports: %s" % web)
    lab.iid = kernel[-1]
    where = LAB.placement().get(lab.iid) or []
    if len(where) != 1:
        raise RuntimeError("%s runs on %s" % (lab.iid, where))
    lab.home = where[0]
    lab.target = next(h for h in HOSTS if h != lab.home)
    step = web[lab.iid].get("step")
    print("migrate: %s (web/%s) between %s and %s" % (lab.iid, step, lab.home, lab.target), flush=True)
    return {"instance": lab.iid, "step": step, "from": lab.home, "to": lab.target}


def stop_by(text):
    """--stop-by HH:MM (UTC, today; tomorrow when past) as epoch seconds."""
    if not text:
        return None
    hour, minute = (int(x) for x in text.split(":"))
    now = time.time()
    day = now - now % 86400
    at = day + hour * 3600 + minute * 60
    return at if at > now else at + 86400


def table(rows, change):
    lines = ["| point | killed | lost after kill | reordered | dup | blackout ms | re-run ok (s) | converged | changed after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in [r for r in rows if r["change"] == change]:
        if r.get("skipped"):
            lines.append("| %s | %s | - | - | - | - | - | - | - |" % (_point(r), r["skipped"]))
            continue
        killed = "yes" if r.get("killed") else ("not reached" if r.get("reached") is False else "no (died in %s)" % r.get("died_in"))
        if r.get("error"):
            killed += " ERROR"
        rerun = _rerun(r) + ("" if r.get("rerun_s") is None else " (%s)" % _c(r["rerun_s"]))
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            _point(r), killed, _c(r.get("lost")), _c(r.get("reordered")), _c(r.get("duplicated")), _c(r.get("blackout_ms")), rerun,
            "yes" if r.get("converged") else ("no" if r.get("converged") is False else "-"), _c(r.get("changed_after"))))
    return lines


def summary(rows, change):
    done = [r for r in rows if r["change"] == change and not r.get("skipped")]
    if not done:
        return "%s: no point swept" % change
    killed = sum(1 for r in done if r.get("killed"))
    lossy = [r for r in done if r.get("lost")]
    dark = [r for r in done if (r.get("blackout_ms") or 0) >= 100]
    return ("%s: %d kill points swept, killed inside the task in %d; after the kill lost %d packets in %d rows, reordered %d, "
            "duplicated %d, blackout >= 100 ms in %d rows; re-run ok %d/%d; converged %d/%d; changed=0 after %d/%d; errors %d" % (
                change, len(done), killed, sum(r.get("lost") or 0 for r in done), len(lossy), sum(r.get("reordered") or 0 for r in done),
                sum(r.get("duplicated") or 0 for r in done), len(dark), sum(1 for r in done if r.get("rerun_ok")), len(done),
                sum(1 for r in done if r.get("converged")), len(done), sum(1 for r in done if r.get("changed_after") == 0), len(done),
                sum(1 for r in done if r.get("error"))))


def report(result, path):
    rows = result["rows"]
    print("\nbench/crash_sweep.py, %s, changes %s, web at %d pps over %d flows to port %s; %.0f s in all; commit %s" % (
        result["started"], ",".join(result["changes"]), result["rate"], FLOWS, result.get("dport"), result.get("seconds") or 0,
        result["commit"][:12]))
    if result.get("migrate"):
        print("migrate: %(instance)s (web/%(step)s) %(from)s -> %(to)s" % result["migrate"])
    for change in result["changes"]:
        if not any(r["change"] == change for r in rows):
            continue
        print("\n%s (figures after the kill: the window [kill + %.0f s, kill + %.0f s])" % (change, SETTLE_S, SETTLE_S + WINDOW_S))
        print("\n".join(table(rows, change)))
        print(summary(rows, change))
        found = result["discovery"].get(change) or {}
        if found.get("traffic"):
            t = found["traffic"]
            print("%s un-killed (the discovery run, %s s): sent %s lost %s reord %s dup %s blackout %s ms; left out: %s" % (
                change, _c(found.get("seconds")), _c(t.get("sent")), _c(t.get("lost")), _c(t.get("reordered")),
                _c(t.get("duplicated")), _c(t.get("blackout_ms")),
                "; ".join("%s (%s)" % (p["point"], p["why"]) for p in found.get("left_out") or []) or "none"))
    for change, found in result["discovery"].items():
        if found.get("error"):
            print("\n%s: %s" % (change, found["error"][:3000]))
    if result.get("error"):
        print("\nthe run stopped: %s" % result["error"][:3000])
    print("\nevery row in %s" % path)


def main():  # pylint: disable=too-many-statements,too-many-branches,too-many-locals
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--changes", default="migrate,append", help="of %s (default migrate,append, in this order)" % ", ".join(CHANGES))
    ap.add_argument("--points", type=int, default=None, help="sweep the first N kill points of each change (a smoke run)")
    ap.add_argument("--rate", type=int, default=5000, help="the probe's packets per second through web (default 5000)")
    ap.add_argument("--all-tasks", action="store_true", help="also kill inside bookkeeping, include and all-skipped tasks")
    ap.add_argument("--stop-by", default=None, help="HH:MM (UTC): start no kill point that would not end before then")
    ap.add_argument("--keep-lab", action="store_true", help="leave the fsb lab up at the end")
    args = ap.parse_args()
    changes = [c for c in args.changes.split(",") if c]
    unknown = [c for c in changes if c not in CHANGES]
    if unknown or not changes:
        raise SystemExit("unknown change(s) %s (changes: %s)" % (", ".join(unknown) or "none", ", ".join(CHANGES)))
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    for tool in ("nsenter", "ovs-vsctl", "ovs-ofctl", "ip", "virsh"):
        if not shutil.which(tool):
            raise SystemExit("needs %s (scripts/setup.sh installs it)" % tool)
    deadline = stop_by(args.stop_by)
    tmp = tempfile.mkdtemp(prefix="%s-crash-" % PREFIX)
    inv, chains, platform = lab_bench.write_inventory(Path(tmp) / "inv")
    lab = SweepLab(inv, chains, platform, tmp, args)
    commit = lab_bench.sh("git", "-C", TOP, "rev-parse", "HEAD", check=False).stdout.strip()
    dirty = lab_bench.sh("git", "-C", TOP, "status", "--short", "--", "playbooks", "plugins", "roles", check=False).stdout.split("\n")
    result = {"argv": sys.argv, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit, "uncommitted": [d for d in dirty if d],
              "changes": changes, "rate": args.rate, "flows": FLOWS, "dport": lab.probe_port, "points_limit": args.points,
              "all_tasks": args.all_tasks, "kill_delay_s": KILL_DELAY_S, "window": [SETTLE_S, SETTLE_S + WINDOW_S], "tail_step": TAIL_STEP,
              "discovery": {}, "rows": []}
    out_dir = TOP / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("crash-sweep-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    t_start = time.monotonic()
    longest = 120.0   # a point's seconds, the longest so far (--stop-by)
    try:
        t0 = time.monotonic()
        lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-down.yml"), "lab-down (before)")
        lab_bench.must(lab_bench.playbook(inv, "playbooks/lab-up.yml"), "lab-up")
        result["lab_up_s"] = round(time.monotonic() - t0, 1)
        lab.run("deploy-chain, the first", "playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true")
        for chain in CHAINS:
            print("chain %s forwards after %.1f s" % (chain, lab_bench.wait_forwarding(lab.dport(chain))), flush=True)
        if "migrate" in changes:
            result["migrate"] = pick_migrate(lab)
        for change in changes:
            print("\n== %s" % change, flush=True)
            if deadline and time.time() + 2 * longest + DOWN_RESERVE_S > deadline:
                result["discovery"][change] = {"error": "not run (--stop-by %s)" % args.stop_by}
                print("%s: not run (--stop-by %s)" % (change, args.stop_by), flush=True)
                continue
            try:
                points = discover(lab, change, result)
            except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
                result["discovery"][change] = dict(result["discovery"].get(change) or {}, error=str(exc)[:4000])
                print("%s: its kill points not found: %s" % (change, str(exc)[:3000]), flush=True)
                continue
            if args.points is not None:
                points = points[:args.points]
            path.write_text(json.dumps(result, indent=1), encoding="utf-8")
            for point in points:
                if deadline and time.time() + longest + DOWN_RESERVE_S > deadline:
                    result["rows"].append({"change": change, "point": point["point"], "occurrence": point["occurrence"],
                                           "skipped": "not run (--stop-by %s)" % args.stop_by})
                    print("%-7s %s: not run (--stop-by %s)" % (change, point["point"], args.stop_by), flush=True)
                    continue
                row = one(lab, change, point)
                longest = max(longest, row["secs"] + 30)
                result["rows"].append(row)
                path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        result["error"] = str(exc)
        raise
    finally:
        lab_bench.stop_sessions()
        result["seconds"] = round(time.monotonic() - t_start, 1)
        lab_bench.lab_down(inv, tmp, args.keep_lab)
        result["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        report(result, path)


if __name__ == "__main__":
    main()
