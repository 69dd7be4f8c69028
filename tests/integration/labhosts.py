# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What runs where on a lab, read on its module hosts themselves (their mount and network
namespaces): used by the operations tests and bench/migrate.py."""

from __future__ import annotations

import os
import signal
import subprocess


def crash_lines(console):
    """The first lines of a kernel BUG, oops or panic in a guest's ``console`` log, or None."""
    lines = console.splitlines()
    for index, line in enumerate(lines):
        if any(word in line for word in ("BUG", "Oops", "Kernel panic", "general protection fault", "corruption")):
            return " | ".join(item.strip() for item in lines[index:index + 4])
    return None


class LabHosts:
    """The module hosts of the lab with prefix ``prefix`` and state directory ``state``."""

    def __init__(self, hosts, prefix="fsl", state="/var/lib/flowstream-lab"):
        self.hosts, self.prefix, self.state = tuple(hosts), prefix, state

    def enter(self, host):
        """The command prefix that runs a command inside ``host`` (its mount and network namespaces)."""
        return ["nsenter", "--mount=%s/ns/%s.mnt" % (self.state, host), "--net=/run/netns/%s-%s" % (self.prefix, host)]

    def run(self, host, *argv, check=True):
        """``argv`` run inside ``host`` (its mount and network namespaces); its stdout."""
        return subprocess.run(self.enter(host) + list(argv), capture_output=True, text=True, check=check, timeout=300).stdout

    def placement(self, skip=()):
        """{instance: [hosts]}: leg ports on each host bridge, namespaces, libvirt domains (of every
        host but those in ``skip``, e.g. one that is dead)."""
        where = {}
        for host in self.hosts:
            if host in skip:
                continue
            found = set()
            for port in self.run(host, "ovs-vsctl", "list-ports", "fs-host").split():
                if port.startswith("fs-") and port[-2:] in ("-l", "-r"):
                    found.add(port[3:-2])
            found.update(n[3:] for n in self.run(host, "ip", "netns", "list").split() if n.startswith("fs-"))
            found.update(d[3:] for d in self.run(host, "virsh", "-q", "list", "--all", "--name", check=False).split()
                         if d.startswith("fs-"))
            for iid in found:
                where.setdefault(iid, []).append(host)
        return where

    def guest_crash(self, host, iid):
        """The first lines of a kernel BUG, oops or panic in the console log of VM instance ``iid``
        on ``host``, or libvirt's line that it ended the guest as crashed, or None (also for an
        instance that is no VM). The lab's TCG guests (QEMU 7.2) sometimes come out of a live
        migration with corrupted memory - with plain virsh too (docs/vm-modules.md) - which is not
        a fault of the move. The console log starts afresh whenever the guest starts (also when a
        deploy-chain starts one libvirt ended after its panic); libvirt's own log of the domain
        keeps that it was ended (``shutting down, reason=crashed``)."""
        logs = "%s/hosts/%s/log/libvirt/qemu/fs-%s" % (self.state, host, iid)
        try:
            with open(logs + ".console.log", encoding="utf-8", errors="replace") as handle:
                said = crash_lines(handle.read())
        except OSError:
            said = None
        if said:
            return said
        try:
            with open(logs + ".log", encoding="utf-8", errors="replace") as handle:
                ended = [line.strip() for line in handle if "shutting down, reason=crashed" in line]
        except OSError:
            return None
        return "libvirt: %s (the guest panicked; its console log was started afresh since)" % ended[-1] if ended else None

    def kill_all(self, host):
        """The host dies: SIGKILL to every process in its network or mount namespace (sshd, its
        Open vSwitch, libvirtd, instances, guests) - as the power going off would. Returns the
        pids ended."""
        net = os.stat("/run/netns/%s-%s" % (self.prefix, host)).st_ino
        mnt = os.stat("%s/ns/%s.mnt" % (self.state, host)).st_ino
        ended = []
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            if pid == os.getpid():
                continue
            try:
                inside = os.stat("/proc/%d/ns/net" % pid).st_ino == net or os.stat("/proc/%d/ns/mnt" % pid).st_ino == mnt
                if inside:
                    os.kill(pid, signal.SIGKILL)
                    ended.append(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return ended


def descendants(pid):
    """Every process below ``pid`` (children's children too), read from /proc."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            with open("/proc/%d/task/%d/children" % (parent, parent), encoding="ascii") as handle:
                kids = [int(k) for k in handle.read().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out
