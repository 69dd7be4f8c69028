# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A process supervisor for hosts without systemd (the lab's module hosts, containers).

Standalone program: the process kind installs its source as
``/var/lib/flowstream/bin/fs-supervise.py`` and starts, inside the instance namespace,

    fs-supervise.py --name ID --dir /run/flowstream/ID --log /var/log/flowstream/ID.log -- ARGV...

It detaches (double fork, new session), records its pid in ``DIR/supervisor.pid``, runs ARGV,
writes the child's pid and the restart count to ``DIR/status.json``, and restarts the child when
it exits (backoff from 0.2 s doubling to 5 s; reset after 30 s of healthy running). SIGTERM ends
the child (SIGTERM, then SIGKILL after 3 s) and the supervisor, removing its pid files. The
child's output goes to the log file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time


class Supervisor:
    def __init__(self, args):
        self.args = args
        self.child = None
        self.stopping = False
        self.restarts = 0
        self.started = None

    def status(self, state):
        data = {"name": self.args.name, "supervisor_pid": os.getpid(), "state": state,
                "child_pid": self.child.pid if self.child else None, "restarts": self.restarts,
                "argv": self.args.argv, "since": self.started}
        tmp = os.path.join(self.args.dir, "status.json.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, os.path.join(self.args.dir, "status.json"))

    def on_term(self, *_args):
        self.stopping = True

    def end_child(self):
        if self.child and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(3)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()

    def run(self):
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        backoff = 0.2
        with open(self.args.log, "ab", buffering=0) as log:
            while not self.stopping:
                self.started = time.time()
                log.write(("fs-supervise: starting %s\n" % " ".join(self.args.argv)).encode())
                try:
                    self.child = subprocess.Popen(self.args.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                except OSError as exc:
                    log.write(("fs-supervise: cannot start: %s\n" % exc).encode())
                    self.child = None
                self.status("running" if self.child else "failing")
                while self.child and self.child.poll() is None and not self.stopping:
                    time.sleep(0.1)
                if self.stopping:
                    break
                code = self.child.returncode if self.child else None
                log.write(("fs-supervise: child exited with %s; restarting\n" % code).encode())
                if time.time() - self.started > 30:
                    backoff = 0.2
                self.restarts += 1
                self.status("restarting")
                deadline = time.monotonic() + backoff
                while time.monotonic() < deadline and not self.stopping:
                    time.sleep(0.05)
                backoff = min(backoff * 2, 5.0)
            self.end_child()
            log.write(b"fs-supervise: stopped\n")
        self.status("stopped")
        for name in ("supervisor.pid",):
            try:
                os.unlink(os.path.join(self.args.dir, name))
            except OSError:
                pass
        return 0


def daemonize():
    if os.fork() > 0:
        os._exit(0)  # pylint: disable=protected-access
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # pylint: disable=protected-access
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.chdir("/")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fs-supervise")
    parser.add_argument("--name", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.argv and args.argv[0] == "--":
        args.argv = args.argv[1:]
    if not args.argv:
        parser.error("nothing to supervise: give the command after --")
    os.makedirs(args.dir, exist_ok=True)
    os.makedirs(os.path.dirname(args.log), exist_ok=True)
    if not args.foreground:
        daemonize()
    with open(os.path.join(args.dir, "supervisor.pid"), "w", encoding="utf-8") as handle:
        handle.write("%d\n" % os.getpid())
    return Supervisor(args).run()


if __name__ == "__main__":
    raise SystemExit(main())
