# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run real ansible / ansible-playbook from the checkout and return their JSON results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labhosts import descendants  # (shared with bench/crash_sweep.py)

TOP = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class AnsibleRun:
    def __init__(self, argv, proc):
        self.argv = argv
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.raw = proc.stdout
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):]) if "{" in proc.stdout else {}
        except ValueError:
            self.data = {}

    @property
    def stats(self):
        return self.data.get("stats", {})

    def changed(self, host=None):
        hosts = [host] if host else list(self.stats)
        return sum(self.stats.get(h, {}).get("changed", 0) for h in hosts)

    def failures(self):
        return {h: s for h, s in self.stats.items() if s.get("failures") or s.get("unreachable")}

    def task_results(self, name, prefix=False):
        """Results of the task(s) called ``name`` (or, with ``prefix``, whose name starts with it:
        the apply step's tasks end with their wave's name), per host."""
        found = {}
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] == name or (prefix and task["task"]["name"].startswith(name)):
                    found.update(task["hosts"])
        return found

    def changed_tasks(self):
        """[task name, host, item, actions] of every result that reported a change."""
        out = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                for host, res in task["hosts"].items():
                    for one in res.get("results") or [res]:
                        if isinstance(one, dict) and one.get("changed"):
                            item = one.get("_ansible_item_label", one.get("item"))
                            out.append([task["task"]["name"], host, str(item)[:120] if item is not None else None,
                                        one.get("actions") or one.get("diff") or one.get("msg")])
        return out

    def explain(self):
        changed = "".join("\n  %s" % json.dumps(c, default=str)[:1500] for c in self.changed_tasks())
        return "%s\nrc=%s\nchanged:%s\nstderr:\n%s\nstdout (tail):\n%s" % (
            " ".join(self.argv), self.rc, changed or " none", self.stderr[-3000:], self.raw[-6000:])


def _env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        "PATH": "%s:%s" % (BIN, env.get("PATH", "")),
    })
    env.update(extra or {})
    return env


# every verify in the tests probes for 3 s at most (the lab's web chain asks for 5): a test's own
# -e comes later and wins
VERIFY_SECONDS = ["-e", "flowstream_verify_max_duration=3"]


# (what ran, seconds) of every playbook and job the tests ran: conftest prints where the time went
SPENT = []


def spent(what, started):
    SPENT.append((what, time.monotonic() - started))


def playbook(path, *args, inventory="inventory/lab", env=None, timeout=900):
    argv = [str(BIN / "ansible-playbook"), "-i", str(TOP / inventory), str(TOP / path)] + VERIFY_SECONDS + list(args)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=TOP, env=_env(env), capture_output=True, text=True, timeout=timeout, check=False)
    spent(Path(path).name, started)
    return AnsibleRun(argv, proc)


def killed_at(path, point, *args, inventory="inventory/lab", timeout=300, inside=0.3):
    """Run playbook ``path`` and kill it (SIGKILL, every Ansible worker too) ``inside`` seconds
    after the banner of the first task whose name starts with ``point`` (0: at the banner, so
    right after the task before it ended on every host); returns its output up to there. Fails
    the test when the run ended before the task (or ``timeout`` passed)."""
    argv = [str(BIN / "ansible-playbook"), "-i", str(TOP / inventory), str(TOP / path)] + VERIFY_SECONDS + list(args)
    proc = subprocess.Popen(argv, cwd=TOP, env=_env({"ANSIBLE_STDOUT_CALLBACK": "default", "PYTHONUNBUFFERED": "1"}),  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("TASK [" + point):
            time.sleep(inside)  # inside the task: its module is running on the hosts
            # Ansible's workers run in sessions of their own: the group kill misses them, and
            # orphaned they would wait on their pipe for ever. Every descendant dies with it.
            family = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in family:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        if time.monotonic() > deadline:
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "not killed at %r:\n%s" % (point, "".join(seen[-40:]))
    time.sleep(3)  # what the hosts were doing when the controller died finishes there
    return "".join(seen)


def adhoc(pattern, module, module_args="", inventory="inventory/lab", env=None, timeout=300, extra=()):
    argv = [str(BIN / "ansible"), "-i", str(TOP / inventory), pattern, "-m", module] + list(extra)
    if module_args:
        argv += ["-a", module_args]
    proc = subprocess.run(argv, cwd=TOP, env=_env(env), capture_output=True, text=True, timeout=timeout, check=False)
    return AnsibleRun(argv, proc)


def module(target_host, plugin, check=False, diff=False, **args):
    """Run the flowstream.platform module ``plugin`` with ``args`` on ``target_host`` over SSH
    (in check mode if ``check``, with its diff if ``diff``); return (rc, result)."""
    run = adhoc(target_host, "flowstream.platform." + plugin, json.dumps(args) if args else "",
                extra=(["--check"] if check else []) + (["--diff"] if diff else []))
    hosts = run.data["plays"][0]["tasks"][0]["hosts"] if run.data.get("plays") else {}
    return run.rc, hosts.get(target_host, {"msg": run.explain()})
