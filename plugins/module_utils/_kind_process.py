# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processing modules as supervised processes (and Click configurations, which run the same way).

An instance is a network namespace ``fs-<id>`` holding the legs ``left`` and ``right`` and a
program that moves packets between them (e.g. with AF_PACKET). The program runs under
``fs-supervise`` (see _supervisor.py): restarted when it dies, its pid, restart count and argv in
``/run/flowstream/<id>/status.json``, its output in ``/var/log/flowstream/<id>.log``. The
supervisor enters only the instance's network namespace (``nsenter --net``) and stays in the
host's mount namespace, so everything it starts is found from the host.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import sys
import time

from ansible_collections.flowstream.platform.plugins.module_utils import _hold, _packet_programs, _supervisor
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import end_processes, run as _run, run_daemon, wait_for
from ansible_collections.flowstream.platform.plugins.module_utils._files import holds, write_atomic
from ansible_collections.flowstream.platform.plugins.module_utils._instance import (
    LOG_DIR, RUN_DIR, STATE_DIR, NamespaceLegs, instance_dir, netns_name)
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import netns_path

BIN_DIR = STATE_DIR + "/bin"
PROGRAMS = {"fs-packet.py": _packet_programs, "fs-supervise.py": _supervisor, "fs_hold.py": _hold}
BUILTIN_MODES = ("wire", "monitor", "inspect")


def run_dir(instance):
    return "%s/%s" % (RUN_DIR, instance)


def log_file(instance):
    return "%s/%s.log" % (LOG_DIR, instance)


def stats_file(instance):
    return "%s/stats.json" % run_dir(instance)


def _pid_alive(pid, needle):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            zombie = handle.read().split(") ")[-1][:1] == "Z"
    except (OSError, ValueError):
        return False
    return not zombie and needle in cmdline


class ProcessKind:
    name = "process"

    def __init__(self, log, run=_run, python=None):
        self.log = log
        self._run = run
        self.python = python or sys.executable

    # -- what to run --------------------------------------------------------------------
    def argv(self, spec):
        if spec.type in BUILTIN_MODES and not spec.definition.get("process"):
            argv = [self.python, BIN_DIR + "/fs-packet.py", spec.type, "left", "right", "--stats", stats_file(spec.id)]
            if spec.type == "inspect":
                for pattern in spec.params["patterns"]:
                    argv += ["--pattern", pattern]
                argv += ["--action", spec.params["action"], "--dscp", str(spec.params["dscp"])]
            return argv
        command = spec.definition["process"]["command"]
        values = {"left": "left", "right": "right", "instance": spec.id, "dir": instance_dir(spec.id),
                  "python": self.python, "bin": BIN_DIR}
        values.update({k: v for k, v in spec.params.items() if isinstance(v, (str, int, float))})
        try:
            return [str(part).format(**values) for part in command]
        except (KeyError, IndexError) as exc:
            raise InstanceError(spec.id, "process.command", "unknown placeholder %s (known: %s)"
                                % (exc, ", ".join(sorted(values)))) from exc

    def validate(self, spec):
        argv = self.argv(spec)
        if spec.type in BUILTIN_MODES and not spec.definition.get("process"):
            return
        if not (os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK)) and not shutil.which(argv[0]):
            raise InstanceError(spec.id, "process.command", "'%s' is not an executable on this host" % argv[0])

    # -- observe ------------------------------------------------------------------------
    def status(self, instance):
        """The supervisor's view: running or not, pids, restarts, argv."""
        path = os.path.join(run_dir(instance), "status.json")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {"running": False}
        sup = data.get("supervisor_pid")
        # a supervisor that wrote "stopped" is on its way out (it exits right after), not running
        alive = bool(sup) and data.get("state") != "stopped" and _pid_alive(sup, "--name %s " % instance)
        child = data.get("child_pid")
        return {"running": alive, "supervisor_pid": sup if alive else None,
                "child_pid": child if alive and child and _pid_alive(child, "") else None,
                "restarts": data.get("restarts", 0), "argv": data.get("argv"), "state": data.get("state")}

    def flows(self, instance):
        try:
            with open(stats_file(instance), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def fresh_stats(self, instance, timeout=1.5):
        """The program's counters as of now: a built-in program (stats version 2) is asked to
        write them at once (SIGUSR1) and the new file is read; otherwise the last file (at most a
        second old)."""
        stats = self.flows(instance)
        child = self.status(instance).get("child_pid")
        if not stats or stats.get("version", 1) < 2 or not child:
            return stats
        path = stats_file(instance)
        try:
            before = os.stat(path).st_mtime_ns
            os.kill(child, signal.SIGUSR1)
        except OSError:
            return stats

        def rewritten():
            try:
                return os.stat(path).st_mtime_ns != before
            except OSError:
                return True
        if wait_for(rewritten, timeout, interval=0.02):
            return self.flows(instance) or stats
        return stats

    # -- ensure -------------------------------------------------------------------------
    def install_programs(self):
        if not os.path.isdir(BIN_DIR):
            self.log.act("created %s" % BIN_DIR, os.makedirs, BIN_DIR, 0o755, True)
        for name, module in sorted(PROGRAMS.items()):
            source = inspect.getsource(module)
            path = os.path.join(BIN_DIR, name)
            if not holds(path, source):
                self.log.act("installed %s" % path, write_atomic, path, source, 0o755)

    def ensure(self, spec, argv=None, previous=None):
        """The instance as ``spec`` says. A running program whose command changes is stopped and
        started with the new one; when that does not stay up, the old one is started again
        (``previous``: {argv, restore} of a program a subclass stopped itself, ``restore`` putting
        back the files its old command reads) and the error says it was rolled back - a bad
        parameter never leaves a running instance stopped."""
        self.validate(spec)
        self.install_programs()
        NamespaceLegs(spec.id, self.log, run=self._run).ensure(spec, up=spec.running)
        argv = argv or self.argv(spec)
        state = self.status(spec.id)
        if state["running"] and (not spec.running or state.get("argv") != argv):
            why = "stopped" if not spec.running else "its command changed"
            if spec.running and state.get("argv"):
                previous = {"argv": state["argv"]}
            self.log.act("stopped the supervised program of %s (%s)" % (spec.id, why), self.stop, spec.id)
            state = {"running": False}
        if spec.running and not state["running"]:
            shown = " ".join(argv[1:3] if argv[0] == self.python else argv[:2])
            try:
                self.log.act("started %s under fs-supervise in %s" % (shown, netns_name(spec.id)), self.start, spec.id, argv)
            except InstanceError as exc:
                if not previous:
                    raise
                self._roll_back(spec.id, previous, exc)

    def _roll_back(self, instance, previous, exc):
        """The new command did not stay up: the old one runs again; raises what went wrong."""
        try:
            if previous.get("restore"):
                self.log.act("put back the running configuration of %s" % instance, previous["restore"])
            self.log.act("started %s again with its running configuration" % instance, self.start, instance, previous["argv"])
        except (InstanceError, OSError) as again:
            raise InstanceError(instance, exc.field, "%s; starting it again with its running configuration failed too: %s"
                                % (exc.message, getattr(again, "message", again))) from exc
        raise InstanceError(instance, exc.field, "%s - rolled back: it runs with its running configuration again, "
                            "nothing of the new one is in place" % exc.message) from exc

    def start(self, instance, argv):
        os.makedirs(run_dir(instance), exist_ok=True)
        os.makedirs(LOG_DIR, exist_ok=True)
        os.makedirs(instance_dir(instance), exist_ok=True)
        status = os.path.join(run_dir(instance), "status.json")
        if os.path.exists(status):
            os.unlink(status)
        run_daemon(["nsenter", "--net=%s" % netns_path(netns_name(instance)), self.python, BIN_DIR + "/fs-supervise.py",
                    "--name", instance, "--dir", run_dir(instance), "--log", log_file(instance), "--"] + argv, timeout=30)
        if wait_for(lambda: self.status(instance)["running"] and self.status(instance).get("child_pid"), 10):
            time.sleep(0.3)  # a program that dies at once is a failed start, not a running one
            state = self.status(instance)
            if state.get("child_pid") and state.get("restarts", 0) == 0:
                return
        tail = _tail(log_file(instance))
        self.stop(instance)
        raise InstanceError(instance, "process", "the program did not stay up; its log says: %s" % (tail or "nothing"))

    def stop(self, instance):
        state = self.status(instance)
        pid = state.get("supervisor_pid")
        if pid:
            end_processes([pid], grace=6)

    def remove(self, instance, host_bridge):
        if self.status(instance)["running"]:
            self.log.act("stopped the supervised program of %s" % instance, self.stop, instance)
        NamespaceLegs(instance, self.log, run=self._run).remove(host_bridge)
        for path in (run_dir(instance), instance_dir(instance)):
            if os.path.isdir(path):
                self.log.act("removed %s" % path, shutil.rmtree, path)
        if os.path.exists(log_file(instance)):
            self.log.act("removed %s" % log_file(instance), os.unlink, log_file(instance))


def _tail(path, lines=5):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return " | ".join(line.strip() for line in handle.read().splitlines()[-lines:])
    except OSError:
        return ""
