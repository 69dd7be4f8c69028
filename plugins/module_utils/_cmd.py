# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running external commands: one place that executes argv lists and maps failures.

Every tool wrapper in this collection (``ip``, ``ovs-vsctl``, ``nsenter`` ...) takes a
``run`` callable with this module's signature, so unit tests can replace the command's
output and integration tests run the real tool.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile


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
