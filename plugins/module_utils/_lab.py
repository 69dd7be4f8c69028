# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-machine lab: module hosts as network namespaces that behave like real hosts.

A lab module host is

* a network namespace ``<prefix>-<name>`` with a management veth onto a Linux bridge in the
  root namespace and a trunk veth onto the switch (an OVS bridge of the system OVS);
* a mount namespace and a UTS namespace, both kept alive by bind mounts onto files under
  ``<state_dir>/ns`` (no holder process), in which the host has its own hostname, its own
  ``/sys`` (showing its own links), its own ``/etc/hosts`` and private copies of every
  directory where Open vSwitch, libvirt and this collection keep host state;
* its own Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) holding the host
  bridge, its own libvirtd listening on its management address (so VMs live-migrate
  between lab hosts over the management network), and its own sshd (Ansible reaches the
  host over real SSH).

Everything is found again from the machine itself (namespaces, mounts, pid files checked
against the namespace each process lives in), so a second run changes nothing and a run
after a crash repairs exactly what is missing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import uuid

from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import (
    CommandError, end_processes, run as _run, run_daemon as _run_daemon, wait_for)
from ansible_collections.flowstream.platform.plugins.module_utils._files import holds, write_atomic, write_if_changed
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import (
    IPRoute, link_is_up, netns_path, stable_mac)
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB, quote_value

# (path under the host's state directory, mount point inside the host)
PRIVATE_DIRS = (
    ("etc/openvswitch", "/etc/openvswitch"),
    ("run/openvswitch", "/run/openvswitch"),
    ("log/openvswitch", "/var/log/openvswitch"),
    ("etc/libvirt", "/etc/libvirt"),
    ("run/libvirt", "/run/libvirt"),
    ("lib/libvirt", "/var/lib/libvirt"),
    ("cache/libvirt", "/var/cache/libvirt"),
    ("log/libvirt", "/var/log/libvirt"),
    ("run/netns", "/run/netns"),
    # where flowstream.platform keeps host state (processing-module instances)
    ("etc/flowstream", "/etc/flowstream"),
    ("lib/flowstream", "/var/lib/flowstream"),
    ("run/flowstream", "/run/flowstream"),
    ("log/flowstream", "/var/log/flowstream"),
)
PRIVATE_FILES = (
    ("etc/hosts", "/etc/hosts"),
    ("etc/hostname", "/etc/hostname"),
)
SERVICES = ("ovs", "libvirt", "sshd")
BOX_BRIDGE = "box0"     # the bridge inside a black box's namespace that joins its two sides
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
CREATED_PATHS_FILE = "created-paths"
# The lab's switches and hosts use Open vSwitch's userspace datapath: it reads each port through a
# packet socket that one thread polls, and the default receive buffer (208 KiB: about 90 frames
# of a veth) overflowed whenever that thread was held up for a few milliseconds on the loaded
# machine (measured: 576-1684 frames dropped per move at 10 kpps, at the switch's trunk sockets
# and at a new copy's leg on its host). lab-up raises the machine's default while a lab is up;
# the value it found is kept in the state directory, and the last lab down puts it back.
RMEM_DEFAULT = "/proc/sys/net/core/rmem_default"
RMEM_RECORD = "rmem_default.before"


class LabError(Exception):
    pass


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def ns_inode(path):
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def mountpoints():
    """Mount points of the calling process's mount namespace."""
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            points.add(fields[4].encode().decode("unicode_escape"))
    return points


def mounted_anywhere():
    """Mount points of every mount namespace on the machine (read via each process)."""
    points = set()
    seen = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        ino = ns_inode("/proc/%s/ns/mnt" % entry)
        if ino is None or ino in seen:
            continue
        seen.add(ino)
        try:
            with open("/proc/%s/mountinfo" % entry, encoding="utf-8") as handle:
                for line in handle:
                    points.add(line.split()[4].encode().decode("unicode_escape"))
        except OSError:
            continue
    return points


def read_pid(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_comm(pid):
    try:
        with open("/proc/%d/comm" % pid, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def pids_in_namespaces(net_inode=None, mnt_inode=None):
    """Every process whose network or mount namespace is one of ours."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        if net_inode is not None and ns_inode("/proc/%d/ns/net" % pid) == net_inode:
            found.append(pid)
        elif mnt_inode is not None and ns_inode("/proc/%d/ns/mnt" % pid) == mnt_inode:
            found.append(pid)
    return sorted(found)


def record_created_path(state_dir, path):
    """Remember a directory lab-up created outside its state dir, so lab-down removes it."""
    listing = os.path.join(state_dir, CREATED_PATHS_FILE)
    known = set()
    if os.path.exists(listing):
        with open(listing, encoding="utf-8") as handle:
            known = set(handle.read().split())
    if path not in known:
        with open(listing, "a", encoding="utf-8") as handle:
            handle.write(path + "\n")


def other_labs(state_dir):
    """The state directories of the labs beside this one (in the same parent directory)."""
    parent = os.path.dirname(os.path.abspath(state_dir))
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    return [os.path.join(parent, e) for e in entries if os.path.join(parent, e) != os.path.abspath(state_dir)
            and os.path.exists(os.path.join(parent, e, "ssh", "id_ed25519"))]


def created_by_other_labs(state_dir):
    """Mount points that labs beside this one (state directories in the same parent) created."""
    paths = set()
    for other in other_labs(state_dir):
        try:
            with open(os.path.join(other, CREATED_PATHS_FILE), encoding="utf-8") as handle:
                paths.update(handle.read().split())
        except OSError:
            continue
    return paths


def read_int(path):
    with open(path, encoding="utf-8") as handle:
        return int(handle.read().split()[0])


def write_text(path, text):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def ensure_private_mount(path):
    """Make ``path`` a bind mount of itself with private propagation, the precondition for
    keeping namespaces alive by bind-mounting them onto files below it (as ``ip netns``
    does for /run/netns)."""
    if path in mountpoints():
        return False
    os.makedirs(path, mode=0o700, exist_ok=True)
    _run(["mount", "--bind", path, path])
    _run(["mount", "--make-private", path])
    return True


# ------------------------------------------------------------------------------------------
# the host
# ------------------------------------------------------------------------------------------
class LabHost(ActionLog):
    """One lab host (a module host, a spare, or a traffic endpoint) in the lab."""

    def __init__(self, params, check_mode=False, run=_run, run_daemon=_run_daemon):
        super().__init__(check_mode)
        self.p = params
        self._run = run
        self._run_daemon = run_daemon
        self.name = params["name"]
        self.netns = params["namespace"]
        self.state_dir = params["state_dir"]
        self.hdir = os.path.join(self.state_dir, "hosts", self.name)
        self.ns_dir = os.path.join(self.state_dir, "ns")
        self.mnt_file = os.path.join(self.ns_dir, "%s.mnt" % self.name)
        self.uts_file = os.path.join(self.ns_dir, "%s.uts" % self.name)
        self.services = list(params.get("services") or [])
        self.private = bool(self.services)
        self.mgmt = params.get("management") or None
        self.uplink = params.get("uplink") or None
        self.box = params.get("box") or None
        self.root_ip = IPRoute(run=run)
        self.ns_ip = IPRoute(netns=self.netns, run=run)
        self.switch_db = OVSDB(run=run)
        self.host_db = OVSDB(wrap=self.enter_argv(), run=run)

    # -- plumbing -----------------------------------------------------------------------
    def enter_argv(self):
        """argv prefix that runs a command inside this host (all its namespaces)."""
        argv = ["nsenter", "--net=%s" % netns_path(self.netns)]
        if self.private:
            argv = ["nsenter", "--mount=%s" % self.mnt_file, "--uts=%s" % self.uts_file,
                    "--net=%s" % netns_path(self.netns)]
        return argv

    def path(self, *parts):
        return os.path.join(self.hdir, *parts)

    def netns_exists(self):
        return os.path.exists(netns_path(self.netns)) and ns_inode(netns_path(self.netns)) is not None \
            and self.netns in self.root_ip.netns_list()

    def mount_ns_alive(self):
        points = mountpoints()
        return self.mnt_file in points and self.uts_file in points

    def pidfile(self, service):
        return {
            "sshd": self.path("pids", "sshd.pid"),
            "libvirtd": self.path("pids", "libvirtd.pid"),
            "virtlogd": self.path("pids", "virtlogd.pid"),
            "ovsdb-server": self.path("run", "openvswitch", "ovsdb-server.pid"),
            "ovs-vswitchd": self.path("run", "openvswitch", "ovs-vswitchd.pid"),
        }[service]

    def daemon_pid(self, service):
        """The pid of ``service`` if it runs inside this host's network namespace."""
        pid = read_pid(self.pidfile(service))
        if pid is None:
            return None
        want = ns_inode(netns_path(self.netns))
        if want is None or ns_inode("/proc/%d/ns/net" % pid) != want:
            return None
        comm = process_comm(pid) or ""
        if not comm.startswith(service[:15]):
            return None
        return pid

    # -- observation (for diff) -----------------------------------------------------------
    def observe(self):
        state = {"namespace": self.netns, "netns": self.netns_exists()}
        if self.mgmt:
            state["management"] = self._observe_link(self.mgmt)
        if self.uplink:
            state["uplink"] = self._observe_link(self.uplink)
            state["uplink"]["switch_port_on"] = self.switch_db.port_bridge(self.uplink["port"])
        if self.box:
            state["box"] = {link["interface"]: dict(self._observe_link(link), switch_port_on=self.switch_db.port_bridge(link["port"]))
                            for link in self.box_links()}
            bridge = self.ns_ip.link(BOX_BRIDGE) if self.netns_exists() else None
            state["box"]["bridge"] = BOX_BRIDGE if bridge else None
        if self.private:
            state["mount_namespace"] = self.mount_ns_alive()
            state["daemons"] = {}
            for service in self._daemons():
                state["daemons"][service] = "running" if self.daemon_pid(service) else "stopped"
        return state

    def box_links(self):
        """The black box's two links ({port, interface, external_ids}), left then right: the switch
        ports the description names, and interfaces of the same side's name in the namespace."""
        if not self.box:
            return []
        return [{"port": self.box[side], "interface": side,
                 "external_ids": dict(self.box.get("external_ids") or {}, **{"flowstream-box-side": side})}
                for side in ("left", "right")]

    def _observe_link(self, spec):
        root = self.root_ip.link(spec["port"])
        inner = self.ns_ip.link(spec["interface"]) if self.netns_exists() else None
        return {
            "root_end": spec["port"] if root else None,
            "host_end": spec["interface"] if inner else None,
            "addresses": self.ns_ip.addresses(spec["interface"]) if inner else [],
        }

    def _daemons(self):
        names = []
        if "ovs" in self.services:
            names += ["ovsdb-server", "ovs-vswitchd"]
        if "libvirt" in self.services:
            names += ["virtlogd", "libvirtd"]
        if "sshd" in self.services:
            names.append("sshd")
        return names

    # -- present ----------------------------------------------------------------------------
    def present(self):
        self._validate()
        self._ensure_dirs()
        recreated_netns = self._ensure_netns()
        if self.mgmt:
            self._ensure_link(self.mgmt, attach=("linux", self.mgmt["bridge"]))
        if self.uplink:
            self._ensure_link(self.uplink, attach=("ovs", self.uplink["switch_bridge"]))
        if self.box:
            self._ensure_box()
        self._ensure_lo()
        if not self.private:
            return self._result()
        config_changed = self._ensure_config()
        self._ensure_mount_namespace(force=recreated_netns)
        self._ensure_daemons(config_changed)
        if self.p.get("host_bridge") and "ovs" in self.services:
            self._ensure_host_bridge()
        return self._result()

    def _ensure_box(self):
        """Both sides of the black box, joined by a Linux bridge inside: what comes in on one side
        goes out of the other (STP off, so it forwards at once)."""
        for link in self.box_links():
            self._ensure_link(link, attach=("ovs", self.box["switch_bridge"]))
        bridge = self.ns_ip.link(BOX_BRIDGE) if self.netns_exists() else None
        if bridge is None:
            self.act("created bridge %s in %s" % (BOX_BRIDGE, self.netns), self.ns_ip.add_bridge, BOX_BRIDGE)
        for link in self.box_links():
            inner = self.ns_ip.link(link["interface"]) if self.netns_exists() else None
            if bridge is None or (inner or {}).get("master") != BOX_BRIDGE:
                self.act("joined %s to %s in %s" % (link["interface"], BOX_BRIDGE, self.netns),
                         self.ns_ip.set_master, link["interface"], BOX_BRIDGE)
        if bridge is None or not link_is_up(bridge):
            self.act("set %s up in %s" % (BOX_BRIDGE, self.netns), self.ns_ip.set_up, BOX_BRIDGE)

    def _validate(self):
        if self.box and (self.uplink or self.services):
            raise LabError("host %s: box: a black box has its two switch ports and nothing else (no uplink, no services)"
                           % self.name)
        for service in self.services:
            if service not in SERVICES:
                raise LabError("host %s: services: unknown service '%s' (known: %s)"
                               % (self.name, service, ", ".join(SERVICES)))
        if "sshd" in self.services and not self.mgmt:
            raise LabError("host %s: services: sshd needs a management link to listen on" % self.name)
        if "libvirt" in self.services and not self.mgmt:
            raise LabError("host %s: services: libvirt listens on the management address; "
                           "management is missing" % self.name)
        links = [(self.mgmt, "management.port"), (self.uplink, "uplink.port")] + [(b, "box." + b["interface"]) for b in self.box_links()]
        for spec, label in links:
            if spec and len(spec["port"]) > 15:
                raise LabError("host %s: %s '%s' is longer than 15 characters (a Linux "
                               "interface name limit)" % (self.name, label, spec["port"]))

    def _ensure_dirs(self):
        if self.check_mode:
            return
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.hdir, mode=0o700, exist_ok=True)
        if self.private:
            for sub, _target in PRIVATE_DIRS:
                os.makedirs(self.path(sub), exist_ok=True)
            # log/libvirt/qemu: Debian's package ships it; QEMU cannot start (nor a migration
            # arrive) without it
            for sub in ("pids", "ssh", "etc", "log/libvirt/qemu"):
                os.makedirs(self.path(sub), exist_ok=True)
            if ensure_private_mount(self.ns_dir):
                self.actions.append("made %s a private mount" % self.ns_dir)

    def _ensure_netns(self):
        if self.netns_exists():
            return False
        # a namespace file left without its namespace (or the reverse) is cleaned first
        if os.path.exists(netns_path(self.netns)):
            self.act("removed stale netns file %s" % self.netns, self.root_ip.netns_delete, self.netns)
        self.act("created network namespace %s" % self.netns, self.root_ip.netns_add, self.netns)
        return True

    def _ensure_lo(self):
        if self.check_mode and not self.netns_exists():
            return
        if not link_is_up(self.ns_ip.link("lo")):
            self.act("set lo up in %s" % self.netns, self.ns_ip.set_up, "lo")

    def _ensure_link(self, spec, attach):
        port, iface = spec["port"], spec["interface"]
        root = self.root_ip.link(port)
        inner = self.ns_ip.link(iface) if self.netns_exists() else None
        fresh = False
        if root is None or inner is None or not self._peers(root, inner):
            if root is not None:
                self.act("deleted broken link %s" % port, self.root_ip.delete_link, port)
            if inner is not None:
                self.act("deleted broken link %s in %s" % (iface, self.netns), self.ns_ip.delete_link, iface)
            self.act("created veth %s <-> %s:%s" % (port, self.netns, iface),
                     self.root_ip.add_veth, port, iface, self.netns,
                     stable_mac(port), stable_mac(self.netns, iface))
            fresh = True
            root = inner = None
        kind, bridge = attach
        if kind == "linux":
            if fresh or root.get("master") != bridge:
                self.act("attached %s to bridge %s" % (port, bridge), self.root_ip.set_master, port, bridge)
        else:
            on = self.switch_db.port_bridge(port)
            if fresh and on:
                # a re-created veth: re-add the port so the userspace datapath reopens it
                self.act("detached stale port %s from %s" % (port, on), self.switch_db.del_port, port)
                on = None
            if on != bridge:
                if on:
                    self.act("moved port %s off %s" % (port, on), self.switch_db.del_port, port)
                ids = dict(spec.get("external_ids") or {})
                self.act("attached %s to switch %s" % (port, bridge), self.switch_db.add_port, bridge, port, ids)
        if fresh or not link_is_up(root):
            self.act("set %s up" % port, self.root_ip.set_up, port)
        if fresh or not link_is_up(inner):
            self.act("set %s up in %s" % (iface, self.netns), self.ns_ip.set_up, iface)
        want = [spec["address"]] if spec.get("address") else []
        have = [] if fresh else self.ns_ip.addresses(iface)
        for cidr in want:
            if cidr not in have:
                self.act("added %s to %s in %s" % (cidr, iface, self.netns), self.ns_ip.add_address, iface, cidr)
        for cidr in have:
            if cidr not in want:
                self.act("removed %s from %s in %s" % (cidr, iface, self.netns), self.ns_ip.del_address, iface, cidr)
        if spec.get("checksum_offload") is False:
            # LAB.md: TCP across veth + userspace OVS hangs unless tx checksum offload is off
            self._ensure_tx_off(self.root_ip, port, fresh)
            self._ensure_tx_off(self.ns_ip, iface, fresh, inside=True)

    def _ensure_tx_off(self, ipr, dev, fresh, inside=False):
        prefix = ["ip", "netns", "exec", self.netns] if inside else []
        if not fresh:
            out = self._run(prefix + ["ethtool", "-k", dev], check=False).stdout
            if "tx-checksumming: off" in out:
                return
        where = " in %s" % self.netns if inside else ""
        self.act("turned tx checksum offload off on %s%s" % (dev, where),
                 self._run, prefix + ["ethtool", "-K", dev, "tx", "off"])

    @staticmethod
    def _peers(root, inner):
        """True when the two veth ends are each other's peer."""
        return root.get("link_index") is None or (
            root.get("link_index") == inner.get("ifindex") and inner.get("link_index") == root.get("ifindex"))

    # configuration files ----------------------------------------------------------------
    def _mgmt_ip(self):
        return self.mgmt["address"].split("/")[0]

    def _ensure_config(self):
        """Write the host's configuration; return the set of services whose config changed."""
        changed = set()
        if self.check_mode and not os.path.isdir(self.hdir):
            self.actions.append("would write the configuration of host %s" % self.name)
            return changed
        hostname = self.p.get("hostname") or self.name
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if self.mgmt:
            hosts.append("%s\t%s" % (self._mgmt_ip(), hostname))
        for other, addr in sorted((self.p.get("hosts") or {}).items()):
            if other != hostname:
                hosts.append("%s\t%s" % (addr, other))
        self._write("etc/hosts", "\n".join(hosts) + "\n", "/etc/hosts of %s" % self.name)
        self._write("etc/hostname", hostname + "\n", "/etc/hostname of %s" % self.name)
        if "sshd" in self.services and self._ensure_sshd_config():
            changed.add("sshd")
        if "libvirt" in self.services and self._ensure_libvirt_config():
            changed.add("libvirtd")
        return changed

    def _write(self, rel, content, label, mode=0o644):
        path = self.path(rel)
        if self.check_mode:
            same = holds(path, content)
            if not same:
                self.actions.append("would write %s" % label)
            return not same
        if write_if_changed(path, content, mode):
            self.actions.append("wrote %s" % label)
            return True
        return False

    def _ensure_sshd_config(self):
        key = self.path("ssh", "ssh_host_ed25519_key")
        if not os.path.exists(key):
            self.act("generated the SSH host key of %s" % self.name, self._run,
                     ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@%s" % self.name, "-f", key])
        changed = self._write("ssh/authorized_keys", self.p.get("authorized_keys") or "",
                              "authorized_keys of %s" % self.name, 0o600)
        config = "\n".join([
            "# sshd of lab host %s (written by flowstream.platform.lab_host)" % self.name,
            "ListenAddress %s" % self._mgmt_ip(),
            "Port %d" % int(self.p.get("ssh_port") or 22),
            "HostKey %s" % key,
            "PidFile %s" % self.pidfile("sshd"),
            "AuthorizedKeysFile %s" % self.path("ssh", "authorized_keys"),
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # keys live under the lab state dir; do not insist on home-directory modes
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
        ]) + "\n"
        return self._write("ssh/sshd_config", config, "sshd_config of %s" % self.name) or changed

    def _ensure_libvirt_config(self):
        etc = self.path("etc", "libvirt")
        if not os.path.exists(os.path.join(etc, "libvirt.conf")):
            self.act("copied /etc/libvirt for %s" % self.name, self._copy_etc_libvirt, etc)
        uuid_file = self.path("host_uuid")
        if not os.path.exists(uuid_file) and not self.check_mode:
            write_if_changed(uuid_file, str(uuid.uuid4()) + "\n", 0o600)
        host_uuid = open(uuid_file, encoding="utf-8").read().strip() if os.path.exists(uuid_file) else "pending"
        addr = self._mgmt_ip()
        libvirtd = "\n".join([
            "# libvirtd of lab host %s (written by flowstream.platform.lab_host)" % self.name,
            "listen_tls = 0",
            "listen_tcp = 1",
            'listen_addr = "%s"' % addr,
            'auth_tcp = "none"',
            'auth_unix_rw = "none"',
            'host_uuid = "%s"' % host_uuid,
            "log_outputs = \"3:file:/var/log/libvirt/libvirtd.log\"",
        ]) + "\n"
        qemu = "\n".join([
            "# QEMU driver of lab host %s (written by flowstream.platform.lab_host)" % self.name,
            'user = "root"',
            'group = "root"',
            "dynamic_ownership = 0",
            "remember_owner = 0",
            'security_driver = "none"',
            "cgroup_controllers = [ ]",
            "namespaces = [ ]",
            'migration_address = "%s"' % addr,
            'migration_host = "%s"' % addr,
            "migration_port_min = 49152",
            "migration_port_max = 49215",
        ]) + "\n"
        changed = self._write("etc/libvirt/libvirtd.conf", libvirtd, "libvirtd.conf of %s" % self.name)
        changed = self._write("etc/libvirt/qemu.conf", qemu, "qemu.conf of %s" % self.name) or changed
        if not os.path.exists(self.path("empty-kvm")) and not self.check_mode:
            open(self.path("empty-kvm"), "w", encoding="utf-8").close()
        return changed

    @staticmethod
    def _copy_etc_libvirt(dest):
        shutil.copytree("/etc/libvirt", dest, dirs_exist_ok=True, symlinks=True)
        # the private libvirtd must not start the system's default NAT network
        autostart = os.path.join(dest, "qemu", "networks", "autostart")
        if os.path.isdir(autostart):
            for entry in os.listdir(autostart):
                os.unlink(os.path.join(autostart, entry))

    # mount namespace ----------------------------------------------------------------------
    def _mount_script(self):
        lines = ["set -e", "hostname %s" % shlex.quote(self.p.get("hostname") or self.name),
                 # a /sys that shows this host's own links (what `ip netns exec` does)
                 "umount -l /sys", "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys"]
        for sub, target in PRIVATE_DIRS:
            lines.append("mount --bind %s %s" % (shlex.quote(self.path(sub)), target))
        for sub, target in PRIVATE_FILES:
            lines.append("mount --bind %s %s" % (shlex.quote(self.path(sub)), target))
        if os.path.exists("/dev/kvm") and "libvirt" in self.services:
            # KVM guests hang on these machines (LAB.md); an empty READ-ONLY file makes libvirt
            # settle on TCG once instead of re-probing QEMU on every domain start (24 s -> 0.3 s)
            lines.append("mount --bind %s /dev/kvm" % shlex.quote(self.path("empty-kvm")))
            lines.append("mount -o remount,bind,ro /dev/kvm")
        return "\n".join(lines) + "\n"

    def _mount_targets(self):
        return [target for _sub, target in PRIVATE_DIRS + PRIVATE_FILES]

    def _ensure_mount_namespace(self, force=False):
        recorded = self.path("netns.inode")
        current = ns_inode(netns_path(self.netns))
        stale = False
        if self.mount_ns_alive():
            try:
                with open(recorded, encoding="utf-8") as handle:
                    stale = int(handle.read()) != current
            except (OSError, ValueError):
                stale = True
            if not stale and not force:
                missing = self._missing_mounts()
                if not missing:
                    return
                self.actions.append("mount namespace of %s lacks %s" % (self.name, ", ".join(missing)))
            # a mount namespace from an earlier, different incarnation of the host: rebuild
            self.act("ended the processes of the old mount namespace of %s" % self.name,
                     self._end_mount_ns_processes)
            self.act("unmounted the old namespaces of %s" % self.name, self._unmount_ns_files)
        for target in self._mount_targets():
            if target in [t for _s, t in PRIVATE_FILES]:
                continue
            if not os.path.exists(target):
                self.act("created mount point %s" % target, self._make_mount_point, target)
            elif not self.check_mode and target in created_by_other_labs(self.state_dir):
                # another lab made it; whichever lab goes down last removes it
                record_created_path(self.state_dir, target)
        self.act("created the mount and UTS namespaces of %s" % self.name, self._create_mount_ns)
        if not self.check_mode:
            write_if_changed(recorded, "%s\n" % ns_inode(netns_path(self.netns)))

    def _make_mount_point(self, target):
        os.makedirs(target, exist_ok=True)
        record_created_path(self.state_dir, target)

    def _missing_mounts(self):
        res = self._run(self.enter_argv() + ["findmnt", "-rn", "-o", "TARGET"], check=False)
        have = set(res.stdout.split())
        return [t for t in self._mount_targets() if t not in have]

    def _create_mount_ns(self):
        for path in (self.mnt_file, self.uts_file):
            if not os.path.exists(path):
                open(path, "w", encoding="utf-8").close()
        self._run(["unshare", "--mount=%s" % self.mnt_file, "--uts=%s" % self.uts_file,
                   "--propagation", "private", "nsenter", "--net=%s" % netns_path(self.netns),
                   "sh", "-c", self._mount_script()])

    def _end_mount_ns_processes(self):
        end_processes(pids_in_namespaces(mnt_inode=ns_inode(self.mnt_file)))

    def _unmount_ns_files(self):
        points = mountpoints()
        for path in (self.mnt_file, self.uts_file):
            if path in points:
                self._run(["umount", path])
            if os.path.exists(path):
                os.unlink(path)

    # daemons ------------------------------------------------------------------------------
    def _ensure_daemons(self, config_changed):
        if "ovs" in self.services:
            if not (self.daemon_pid("ovsdb-server") and self.daemon_pid("ovs-vswitchd")
                    and self.host_db.reachable()):
                self.act("started Open vSwitch on %s" % self.name, self._start_ovs)
        if "libvirt" in self.services:
            if not self.daemon_pid("virtlogd"):
                self.act("started virtlogd on %s" % self.name, self._start_simple, "virtlogd",
                         ["virtlogd", "-d", "--pid-file=%s" % self.pidfile("virtlogd")])
            pid = self.daemon_pid("libvirtd")
            if pid and "libvirtd" in config_changed:
                self.act("stopped libvirtd on %s for its new configuration" % self.name, end_processes, [pid])
                pid = None
            if not pid:
                self.act("started libvirtd on %s" % self.name, self._start_libvirtd)
        if "sshd" in self.services:
            pid = self.daemon_pid("sshd")
            if pid and "sshd" in config_changed:
                self.act("stopped sshd on %s for its new configuration" % self.name, end_processes, [pid])
                pid = None
            if not pid:
                self.act("started sshd on %s" % self.name, self._start_sshd)

    def _start_ovs(self):
        db = self.path("etc", "openvswitch", "conf.db")
        if os.path.exists(db) and not self.daemon_pid("ovsdb-server"):
            # a database left by a crash is kept (bridges survive); ovs-ctl upgrades it if needed
            pass
        self._run_daemon(self.enter_argv() + [OVS_CTL, "start", "--system-id=random", "--no-mlockall"])
        self._wait(self.host_db.reachable, 15, "Open vSwitch of %s" % self.name)

    def _start_simple(self, service, argv):
        pidfile = self.pidfile(service)
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self._run_daemon(self.enter_argv() + argv)
        self._wait(lambda: self.daemon_pid(service), 10, "%s of %s" % (service, self.name))

    def _start_libvirtd(self):
        sock = self.path("run", "libvirt", "libvirt-sock")
        self._start_simple("libvirtd", ["libvirtd", "-d", "-l", "--pid-file=%s" % self.pidfile("libvirtd")])
        self._wait(lambda: os.path.exists(sock), 15, "libvirtd socket of %s" % self.name)

    def _start_sshd(self):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        self._start_simple("sshd", ["/usr/sbin/sshd", "-f", self.path("ssh", "sshd_config")])

    @staticmethod
    def _wait(predicate, timeout, what):
        if not wait_for(predicate, timeout):
            raise LabError("%s did not come up within %ss" % (what, timeout))

    def _ensure_host_bridge(self):
        bridge = self.p["host_bridge"]
        if self.check_mode and not self.host_db.reachable():
            self.actions.append("would create host bridge %s on %s" % (bridge, self.name))
            return
        if not self.host_db.bridge_exists(bridge):
            self.act("created host bridge %s on %s" % (bridge, self.name), self.host_db.add_bridge,
                     bridge, "netdev", {"protocols": "OpenFlow13,OpenFlow14,OpenFlow15"})
        elif self.host_db.get("Bridge", bridge, "datapath_type") != "netdev":
            self.act("set datapath_type=netdev on %s of %s" % (bridge, self.name), self.host_db.vsctl,
                     "set", "bridge", bridge, "datapath_type=netdev")
        if self.uplink:
            trunk = self.uplink["interface"]
            on = self.host_db.port_bridge(trunk) if self.host_db.bridge_exists(bridge) else None
            want_type = self.p.get("port_type") or "system"
            have_type = self.host_db.port_type(trunk) if on == bridge else None
            if on != bridge:
                self.act("added trunk %s to host bridge %s on %s%s" % (
                    trunk, bridge, self.name, "" if want_type == "system" else " (%s)" % want_type),
                    self.host_db.add_port, bridge, trunk, {"flowstream-role": "trunk"}, None, None, want_type)
            elif have_type != want_type:
                self.act("re-created trunk %s on %s as a %s port (was %s)" % (trunk, self.name, want_type, have_type),
                         self.host_db.add_port, bridge, trunk, {"flowstream-role": "trunk"}, None, None, want_type, True)

    def _result(self):
        return {"namespace": self.netns}

    # -- stopped (the lab's power driver: off) ------------------------------------------------
    def stopped(self):
        """The host as a machine switched off: every process in its namespaces ended by pid
        (Open vSwitch, libvirtd, sshd, whatever runs there), its links down on the machine's
        side (the switch sees the trunk lose its link, the management network the host); its
        namespaces, files and Open vSwitch database stay, as a disk does. ``present`` powers
        it on again: links up, services started from what they kept."""
        if not self.netns_exists():
            raise LabError("host %s does not exist (lab-up makes it): nothing to power off" % self.name)
        net_ino = ns_inode(netns_path(self.netns))
        mnt_ino = ns_inode(self.mnt_file) if self.mnt_file in mountpoints() else None
        pids = pids_in_namespaces(net_inode=net_ino, mnt_inode=mnt_ino)
        if pids:
            self.act("ended %d processes of %s (%s)" % (
                len(pids), self.name, ", ".join(sorted({process_comm(p) or "?" for p in pids}))),
                self._end_all, pids)
        for spec in [self.uplink, self.mgmt] + self.box_links():
            if spec and self.root_ip.link(spec["port"]) is not None and link_is_up(self.root_ip.link(spec["port"])):
                self.act("set %s down" % spec["port"], self.root_ip.set_down, spec["port"])
        return self._result()

    # -- absent ---------------------------------------------------------------------------
    def absent(self):
        net_ino = ns_inode(netns_path(self.netns))
        mnt_ino = ns_inode(self.mnt_file) if self.mnt_file in mountpoints() else None
        pids = pids_in_namespaces(net_inode=net_ino, mnt_inode=mnt_ino) if (net_ino or mnt_ino) else []
        if pids:
            self.act("ended %d processes of %s (%s)" % (
                len(pids), self.name, ", ".join(sorted({process_comm(p) or "?" for p in pids}))),
                self._end_all, pids)
        if any(p in mountpoints() for p in (self.mnt_file, self.uts_file)) or \
                any(os.path.exists(p) for p in (self.mnt_file, self.uts_file)):
            self.act("unmounted the mount and UTS namespaces of %s" % self.name, self._unmount_ns_files)
        for spec in [self.mgmt, self.uplink] + self.box_links():
            if not spec:
                continue
            if spec is not self.mgmt and self.switch_db.port_bridge(spec["port"]):
                self.act("removed port %s from the switch" % spec["port"], self.switch_db.del_port, spec["port"])
            if self.root_ip.link(spec["port"]) is not None:
                self.act("deleted link %s" % spec["port"], self.root_ip.delete_link, spec["port"])
        if os.path.exists(netns_path(self.netns)) or self.netns in self.root_ip.netns_list():
            self.act("deleted network namespace %s" % self.netns, self.root_ip.netns_delete, self.netns)
        if os.path.isdir(self.hdir):
            self.act("removed %s" % self.hdir, shutil.rmtree, self.hdir)
        return self._result()

    @staticmethod
    def _end_all(pids):
        left = end_processes(pids)
        if left:
            raise LabError("processes %s did not end" % ", ".join(map(str, left)))

    def pin_host_key(self, path, key):
        """Make ``path`` (a known_hosts file) hold ``key`` as the one line for this host's
        management address, the other lines kept; an action only when the file changes."""
        address = self.p["management"]["address"].split("/")[0]
        name = address if self.p.get("ssh_port", 22) == 22 else "[%s]:%d" % (address, self.p["ssh_port"])
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            lines = []
        line = "%s %s" % (name, key)
        mine = [i for i, old in enumerate(lines) if old.split(" ", 1)[0] == name]
        wanted = [old for i, old in enumerate(lines) if i not in mine[1:]]      # in its place, once
        if mine:
            wanted[mine[0]] = line
        else:
            wanted.append(line)
        if wanted != lines:
            self.act("pinned the host key of %s in %s" % (name, path), self._pin, path, "\n".join(wanted) + "\n")

    @staticmethod
    def _pin(path, content):
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        write_atomic(path, content, 0o644)

    def host_public_key(self):
        path = self.path("ssh", "ssh_host_ed25519_key.pub")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return " ".join(handle.read().split()[:2])
        return None


# ------------------------------------------------------------------------------------------
# the lab network (root-namespace side) and the sweep
# ------------------------------------------------------------------------------------------
class LabNetwork(ActionLog):
    """The management bridge, the state directory, the controller's SSH key; on absent, a
    sweep of every object carrying the lab prefix."""

    def __init__(self, params, check_mode=False, run=_run):
        super().__init__(check_mode)
        self.p = params
        self._run = run
        self.prefix = params["prefix"]
        self.state_dir = params["state_dir"]
        self.ns_dir = os.path.join(self.state_dir, "ns")
        self.key = os.path.join(self.state_dir, "ssh", "id_ed25519")
        self.mgmt = params.get("management") or None
        self.ip = IPRoute(run=run)
        self.ovs = OVSDB(run=run)

    def observe(self):
        """What of the lab exists now (root-namespace view), for diffs."""
        prefix = self.prefix + "-"
        state = {
            "state_dir": os.path.isdir(self.state_dir),
            "controller_key": os.path.exists(self.key),
            "namespaces": [n for n in self.ip.netns_list() if n.startswith(prefix)],
            "links": sorted(n.split("@")[0] for n in self.ip.links() if n.startswith(prefix)),
            "switch_bridges": sorted(b for b in self.ovs.bridges() if b.startswith(prefix))
            if self.ovs.reachable() else [],
            "rmem_default": read_int(RMEM_DEFAULT),
        }
        if self.mgmt:
            link = self.ip.link(self.mgmt["bridge"])
            state["management_bridge"] = {
                "present": link is not None,
                "up": link_is_up(link),
                "addresses": self.ip.addresses(self.mgmt["bridge"]) if link else [],
            }
        return state

    def _validate(self):
        prefix = self.prefix
        if not prefix or not all(c.isalnum() or c == "-" for c in prefix) or len(prefix) > 6:
            raise LabError("prefix '%s' must be 1-6 letters, digits or '-' (it starts every "
                           "interface name, which Linux limits to 15 characters)" % prefix)
        if self.mgmt and not self.mgmt["bridge"].startswith(prefix + "-"):
            raise LabError("management.bridge '%s' must start with the lab prefix '%s-'"
                           % (self.mgmt["bridge"], prefix))
        if not 0 <= (self.p.get("socket_buffer") or 0) <= 1 << 30:
            raise LabError("socket_buffer %s must be 0 (leave the machine's value) or a size in bytes up to 1 GiB"
                           % self.p.get("socket_buffer"))
        for switch in self.p.get("switches") or []:
            if not switch["bridge"].startswith(prefix + "-"):
                raise LabError("switches: bridge '%s' must start with the lab prefix '%s-'"
                               % (switch["bridge"], prefix))

    def present(self):
        self._validate()
        if not os.path.isdir(self.state_dir):
            self.act("created state directory %s" % self.state_dir, os.makedirs, self.state_dir, 0o700)
        if not self.check_mode:
            os.makedirs(os.path.join(self.state_dir, "ssh"), mode=0o700, exist_ok=True)
            if ensure_private_mount(self.ns_dir):
                self.actions.append("made %s a private mount" % self.ns_dir)
        elif self.ns_dir not in mountpoints():
            self.actions.append("would make %s a private mount" % self.ns_dir)
        if not os.path.exists(self.key):
            self.act("generated the controller's SSH key %s" % self.key, self._run,
                     ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flowstream-lab-controller",
                      "-f", self.key])
        if self.mgmt:
            bridge, address = self.mgmt["bridge"], self.mgmt["address"]
            link = self.ip.link(bridge)
            if link is None:
                self.act("created management bridge %s" % bridge, self.ip.add_bridge, bridge)
            elif (link.get("linkinfo") or {}).get("info_kind") != "bridge":
                raise LabError("management.bridge: %s exists and is not a Linux bridge" % bridge)
            have = self.ip.addresses(bridge) if link else []
            if address not in have:
                self.act("added %s to %s" % (address, bridge), self.ip.add_address, bridge, address)
            if not link_is_up(link):
                self.act("set %s up" % bridge, self.ip.set_up, bridge)
        self._ensure_socket_buffer()
        for switch in self.p.get("switches") or []:
            self._ensure_switch(switch)
        return self.result()

    def _ensure_socket_buffer(self):
        """net.core.rmem_default at least ``socket_buffer`` while the lab is up (RMEM_DEFAULT);
        before the switches and hosts make their ports, whose sockets take it when made."""
        want = self.p.get("socket_buffer") or 0
        have = read_int(RMEM_DEFAULT)
        if not want or have >= want:
            return
        record = os.path.join(self.state_dir, RMEM_RECORD)

        def raise_it():
            if not os.path.exists(record):
                write_text(record, "%d\n" % have)
            write_text(RMEM_DEFAULT, "%d\n" % want)
        self.act("raised net.core.rmem_default from %d to %d while the lab is up (the userspace datapath reads every "
                 "port through a socket of that size; %s keeps the value to put back)" % (have, want, record), raise_it)

    def _restore_socket_buffer(self):
        """The value of net.core.rmem_default this lab found, put back - or handed on to a lab
        that is still up, whose lab-down puts it back."""
        record = os.path.join(self.state_dir, RMEM_RECORD)
        if not os.path.exists(record):
            return
        before = read_int(record)
        others = [d for d in other_labs(self.state_dir) if not os.path.exists(os.path.join(d, RMEM_RECORD))]
        if others:
            self.act("left net.core.rmem_default raised for the lab at %s (its lab-down puts back %d)" % (others[0], before),
                     shutil.copy, record, os.path.join(others[0], RMEM_RECORD))
        elif read_int(RMEM_DEFAULT) != before:
            self.act("put net.core.rmem_default back to %d" % before, write_text, RMEM_DEFAULT, "%d\n" % before)

    def _ensure_switch(self, switch):
        """The switch: an OVS bridge created in ONE transaction with the userspace datapath
        (a plain add-br would first try, and fail, to open a kernel datapath here)."""
        bridge = switch["bridge"]
        want = {
            "datapath_type": switch.get("datapath_type") or "netdev",
            "protocols": ",".join(switch.get("protocols") or []),
            "fail_mode": switch.get("fail_mode") or "secure",
        }
        ids = dict(switch.get("external_ids") or {})
        if not self.ovs.reachable():
            raise LabError("switch %s: Open vSwitch is not running (run the set-up step)" % bridge)
        if not self.ovs.bridge_exists(bridge):
            settings = {k: v for k, v in want.items() if k != "datapath_type" and v}
            settings.update(("external_ids:%s" % k, quote_value(v)) for k, v in ids.items())
            self.act("created switch bridge %s (%s)" % (bridge, ", ".join(
                "%s=%s" % kv for kv in sorted(want.items()))),
                self.ovs.add_bridge, bridge, want["datapath_type"], settings)
            return
        have = {
            "datapath_type": (self.ovs.get("Bridge", bridge, "datapath_type") or "").strip('"'),
            "protocols": ",".join(p.strip(' "') for p in (self.ovs.get("Bridge", bridge, "protocols") or "[]")
                                  .strip("[]").split(",") if p.strip()),
            "fail_mode": (self.ovs.get("Bridge", bridge, "fail_mode") or "").strip('"[]'),
        }
        for key, value in sorted(want.items()):
            if value and have[key] != value:
                self.act("set %s=%s on switch bridge %s (was %s)" % (key, value, bridge, have[key] or "unset"),
                         self.ovs.vsctl, "set", "bridge", bridge, "%s=%s" % (key, value))
        for key, value in sorted(ids.items()):
            if (self.ovs.get("Bridge", bridge, "external_ids", key) or "").strip('"') != str(value):
                self.act("set external_ids:%s on switch bridge %s" % (key, bridge), self.ovs.vsctl,
                         "set", "bridge", bridge, "external_ids:%s=%s" % (key, quote_value(value)))

    def result(self):
        pub = self.key + ".pub"
        public_key = None
        if os.path.exists(pub):
            with open(pub, encoding="utf-8") as handle:
                public_key = handle.read().strip()
        return {"state_dir": self.state_dir, "private_key": self.key, "public_key": public_key}

    def absent(self):
        """Remove every object carrying the prefix: namespaces (ending the processes in them),
        namespace mounts, links, OVS bridges of the system switch, the state directory and the
        mount points lab-up created."""
        self._validate()
        prefix = self.prefix + "-"
        points = mountpoints()
        ns_files = []
        if os.path.isdir(self.ns_dir):
            ns_files = sorted(os.path.join(self.ns_dir, f) for f in os.listdir(self.ns_dir))
        mnt_inodes = {ns_inode(f) for f in ns_files if f in points and f.endswith(".mnt")}
        netnses = [n for n in self.ip.netns_list() if n.startswith(prefix)]
        net_inodes = {ns_inode(netns_path(n)) for n in netnses}
        pids = []
        if net_inodes or mnt_inodes:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and int(entry) != os.getpid():
                    pid = int(entry)
                    if ns_inode("/proc/%d/ns/net" % pid) in net_inodes or \
                            ns_inode("/proc/%d/ns/mnt" % pid) in mnt_inodes:
                        pids.append(pid)
        if pids:
            self.act("ended %d processes in lab namespaces" % len(pids), end_processes, pids)
        for path in ns_files:
            if path in points:
                self.act("unmounted %s" % path, self._run, ["umount", path])
        for name in netnses:
            self.act("deleted network namespace %s" % name, self.ip.netns_delete, name)
        if self.ovs.reachable():
            for bridge in self.ovs.bridges():
                if bridge.startswith(prefix):
                    self.act("deleted OVS bridge %s" % bridge, self.ovs.del_bridge, bridge)
        for name in sorted(self.ip.links()):
            base = name.split("@")[0]
            if base.startswith(prefix):
                self.act("deleted link %s" % base, self._delete_link_quietly, base)
        if self.ns_dir in points:
            self.act("unmounted %s" % self.ns_dir, self._run, ["umount", self.ns_dir])
        created = os.path.join(self.state_dir, CREATED_PATHS_FILE)
        if os.path.exists(created):
            with open(created, encoding="utf-8") as handle:
                in_use = mounted_anywhere()
                for path in reversed(handle.read().split()):
                    if path in in_use:
                        # rmdir would detach it from another mount namespace (another lab)
                        self.actions.append("kept mount point %s: still mounted elsewhere" % path)
                    elif os.path.isdir(path) and not os.listdir(path):
                        self.act("removed mount point %s" % path, os.rmdir, path)
        self._restore_socket_buffer()
        if os.path.isdir(self.state_dir):
            self.act("removed state directory %s" % self.state_dir, shutil.rmtree, self.state_dir)
        return {"state_dir": self.state_dir}

    def _delete_link_quietly(self, name):
        try:
            self.ip.delete_link(name)
        except CommandError as exc:
            # the peer of a veth disappears with its twin: not an error
            if "Cannot find device" not in exc.words:
                raise
