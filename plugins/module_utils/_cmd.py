# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running external commands: one place that executes argv lists and maps failures, starts
detached programs, waits for things with a bound, and ends processes by pid.

Every tool wrapper in this collection (``ip``, ``ovs-vsctl``, ``nsenter`` ...) takes a
``run`` callable with this module's signature, so unit tests can replace the command's
output and integration tests run the real tool.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time


class CommandError(Exception):
    """A command failed. Carries the argv and the tool's own words."""

    def __init__(self, argv, rc, stdout="", stderr=""):
        self.argv = list(argv)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(str(self))

    @property
    def words(self):
        """The tool's own message: stderr, else stdout, stripped."""
        return (self.stderr or self.stdout or "").strip()

    def __str__(self):
        return "'%s' failed (rc=%s): %s" % (
            " ".join(shlex.quote(a) for a in self.argv), self.rc, self.words or "no output")


class Result:
    __slots__ = ("argv", "rc", "stdout", "stderr")

    def __init__(self, argv, rc, stdout, stderr):
        self.argv = argv
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def run(argv, check=True, data=None, env=None, timeout=60, ok_rcs=(0,)):
    """Run ``argv`` (a list, never a shell string) and return a :class:`Result`.

    ``check`` raises :class:`CommandError` unless the exit code is in ``ok_rcs``.
    ``data`` is written to the command's standard input.
    """
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            [str(a) for a in argv], input=data, capture_output=True, text=True,
            env=full_env, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise CommandError(argv, 127, "", "command not found: %s" % exc.filename) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(argv, -1, "", "timed out after %ss" % timeout) from exc
    result = Result(list(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode not in ok_rcs:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr)
    return result


def wait_for(predicate, timeout, interval=0.05, clock=time.monotonic, pause=time.sleep):
    """Call ``predicate`` until it returns something true, which is returned, or ``timeout``
    seconds have passed (None). It is asked at least once, and once more at the deadline."""
    deadline = clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if clock() >= deadline:
            return None
        pause(interval)


def spawn(argv, log_path):
    """Start ``argv`` detached (a session of its own, no stdin), its output appended to
    ``log_path``; returns the Popen (the caller keeps the pid)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # pylint: disable=consider-using-with
                                start_new_session=True, close_fds=True)


def alive(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().split(") ")[-1][:1] != "Z"
    except (OSError, ValueError):
        return False


def end_processes(pids, grace=5.0):
    """SIGTERM the given pids, wait up to ``grace`` seconds, then SIGKILL the rest; returns the
    pids still there after that (normally none)."""
    living = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            living.append(pid)
        except ProcessLookupError:
            pass
    wait_for(lambda: not [p for p in living if alive(p)], grace)
    living = [p for p in living if alive(p)]
    for pid in living:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not [p for p in living if alive(p)], 2.0)
    return [p for p in living if alive(p)]


def run_daemon(argv, check=True, env=None, timeout=60):
    """Run a command that daemonises itself (``sshd``, ``libvirtd -d``, ``ovs-ctl start``).

    Output goes to a temporary file rather than a pipe: a daemon that keeps an inherited
    pipe open would otherwise make the caller wait forever.
    """
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    with tempfile.TemporaryFile(mode="w+") as out:
        try:
            proc = subprocess.run(
                [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=full_env, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise CommandError(argv, 127, "", "command not found: %s" % exc.filename) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(argv, -1, "", "timed out after %ss" % timeout) from exc
        out.seek(0)
        text = out.read()
    result = Result(list(argv), proc.returncode, text, "")
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, "", text)
    return result
