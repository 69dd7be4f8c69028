# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processing-module instances on a module host: names, wiring, and the host's own view.

The wiring contract (DESIGN.md section 3): an instance is a bump in the wire with a ``left`` leg
(towards the traffic's source) and a ``right`` leg (towards its destination). Each leg is an
access port of the host bridge with its own VLAN tag, so the host's trunk carries
(instance, leg) as a VLAN tag. Every leg port carries OVSDB ``external_ids`` saying which
instance, kind, type, chain, step and leg it is: that, libvirt metadata and namespace names are
how the host itself knows what runs on it. Nothing is kept on the controller.

Names on the host: instance namespace ``fs-<id>``, leg ports ``fs-<id>-l`` and ``fs-<id>-r``
(Linux limits interface names to 15 characters, hence ids of at most 10).
"""

from __future__ import annotations

import re

from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils._chains import leg_port as port_name
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import IPRoute, link_is_up, stable_mac
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB

ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")
LEGS = ("left", "right")
NS_PREFIX = "fs-"
EXT = "flowstream-"
STATE_DIR = "/var/lib/flowstream"
RUN_DIR = "/run/flowstream"
LOG_DIR = "/var/log/flowstream"
# set in every instance namespace: "default" for the legs made after it, "all" for any there already
QUIET_IPV6 = ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6")


def netns_name(instance):
    return NS_PREFIX + instance


def instance_dir(instance):
    return "%s/instances/%s" % (STATE_DIR, instance)


class Spec:
    """A validated request for one instance."""

    def __init__(self, instance, kind, type_name, params, definition, vlans, host_bridge,
                 chain=None, step=None, running=True, port_type="system"):
        self.id = instance
        self.kind = kind
        self.type = type_name
        self.params = params
        self.definition = definition
        self.vlans = vlans
        self.host_bridge = host_bridge
        self.chain = chain
        self.step = step
        self.running = running
        self.port_type = port_type

    @property
    def resources(self):
        return self.definition.get("resources", {})

    def external_ids(self, leg):
        ids = {EXT + "instance": self.id, EXT + "kind": self.kind, EXT + "type": self.type,
               EXT + "leg": leg, EXT + "cpu": self.resources.get("cpu", 0),
               EXT + "memory": self.resources.get("memory", 0)}
        if self.chain:
            ids[EXT + "chain"] = self.chain
        if self.step is not None:
            ids[EXT + "step"] = self.step
        return {k: str(v) for k, v in ids.items()}


def check_id(instance):
    if not isinstance(instance, str) or not ID_RE.match(instance):
        raise InstanceError(instance, "instance", "an instance id is 1-10 characters, a-z, 0-9 and '-', "
                            "starting with a letter (it names the host's leg ports fs-<id>-l/-r)")


def check_vlans(instance, vlans):
    if not isinstance(vlans, dict) or set(vlans) != set(LEGS):
        raise InstanceError(instance, "vlans", "needs exactly 'left' and 'right' VLAN tags")
    for leg in LEGS:
        tag = vlans[leg]
        if isinstance(tag, bool) or not isinstance(tag, int) or not 2 <= tag <= 4094:
            raise InstanceError(instance, "vlans.%s" % leg, "must be a VLAN id from 2 to 4094, got %r" % (tag,))
    if vlans["left"] == vlans["right"]:
        raise InstanceError(instance, "vlans", "left and right need different VLAN tags (both %d)" % vlans["left"])


class HostView:
    """What runs on this module host, read from the host: OVSDB leg ports of the host bridge
    (external_ids, tags, statistics), instance namespaces, and the VM kind's libvirt view."""

    def __init__(self, host_bridge, run=_run, vm_kind=None):
        self.host_bridge = host_bridge
        self._run = run
        self.ovs = OVSDB(run=run)
        self.ip = IPRoute(run=run)
        self.vm_kind = vm_kind
        self._ports = None

    def ports(self):
        """Every port of the host bridge: {name: {tag, external_ids, statistics, ofport}}."""
        if self._ports is None:
            if not self.ovs.bridge_exists(self.host_bridge):
                raise InstanceError(None, "host_bridge", "the host bridge '%s' does not exist on this host"
                                    % self.host_bridge)
            names = self.ovs.ports(self.host_bridge)
            ports = {row["name"]: row for row in self.ovs.list_table("Port", ["name", "tag", "external_ids"], names)} \
                if names else {}
            ifaces = {row["name"]: row for row in self.ovs.list_table(
                "Interface", ["name", "type", "statistics", "ofport", "external_ids", "error"], names)} if names else {}
            live = self.live_port_stats() if names else {}
            self._ports = {}
            for name in names:
                port = ports.get(name, {})
                iface = ifaces.get(name, {})
                ext = dict(iface.get("external_ids") or {})
                ext.update(port.get("external_ids") or {})
                stats = live.get(str(iface.get("ofport")), iface.get("statistics") or {})
                self._ports[name] = {"tag": port.get("tag"), "external_ids": ext, "statistics": stats,
                                     "ofport": iface.get("ofport"), "error": iface.get("error"),
                                     "type": iface.get("type") or "system"}
        return self._ports

    def live_port_stats(self):
        """{OpenFlow port number: counters} of the host bridge, read now from ovs-vswitchd."""
        try:
            # tests hand in their own command runner: ovs-ofctl goes through it too
            return Ofctl(self.host_bridge, runner=None if self._run is _run else self._ofctl_runner).dump_port_stats()
        except OfctlError:
            return {}

    def _ofctl_runner(self, argv, data=None):
        res = self._run(argv, check=False, data=data)
        return res.rc, res.stdout, res.stderr

    def vlans_in_use(self):
        return {p["tag"]: name for name, p in self.ports().items() if isinstance(p["tag"], int)}

    def namespaces(self):
        return [n for n in self.ip.netns_list() if n.startswith(NS_PREFIX)]

    def instances(self):
        """{instance id: description} for every instance found on the host."""
        found = {}
        for name, port in sorted(self.ports().items()):
            ext = port["external_ids"]
            inst = ext.get(EXT + "instance")
            if not inst:
                continue
            entry = found.setdefault(inst, {
                "kind": ext.get(EXT + "kind"), "type": ext.get(EXT + "type"),
                "chain": ext.get(EXT + "chain"), "step": ext.get(EXT + "step"),
                "resources": {"cpu": _num(ext.get(EXT + "cpu")), "memory": _num(ext.get(EXT + "memory"))},
                "legs": {}})
            stats = port["statistics"]
            entry["legs"][ext.get(EXT + "leg", name)] = {
                "port": name, "vlan": port["tag"], "ofport": port["ofport"], "port_type": port["type"],
                "rx_packets": stats.get("rx_packets", 0), "tx_packets": stats.get("tx_packets", 0),
                "rx_bytes": stats.get("rx_bytes", 0), "tx_bytes": stats.get("tx_bytes", 0),
                "rx_dropped": stats.get("rx_dropped", 0), "tx_dropped": stats.get("tx_dropped", 0)}
        for ns in self.namespaces():
            inst = ns[len(NS_PREFIX):]
            found.setdefault(inst, {"kind": None, "type": None, "chain": None, "step": None,
                                    "resources": {"cpu": 0, "memory": 0}, "legs": {}})
            found[inst]["namespace"] = ns
        if self.vm_kind is not None:
            for inst, info in self.vm_kind.observe_all().items():
                entry = found.setdefault(inst, {"legs": {}})
                for key, value in info.items():
                    if key != "legs" or not entry.get("legs"):
                        entry[key] = value
                # a guest reserves its vCPUs and memory (its legs' labels carry no resources)
                entry["resources"] = {"cpu": info.get("vcpus", 0), "memory": info.get("memory_mib", 0)}
        return found


def _num(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return 0
    return int(value) if value.is_integer() else value


class NamespaceLegs:
    """An instance namespace ``fs-<id>`` holding the two legs ``left`` and ``right``, whose
    peers are access ports of the host bridge. Shared by the kernel, process and click kinds."""

    def __init__(self, spec_id, log, run=_run):
        self.id = spec_id
        self.log = log if log is not None else ActionLog()
        self._run = run
        self.netns = netns_name(spec_id)
        self.ip = IPRoute(run=run)
        self.inner = IPRoute(netns=self.netns, run=run)
        self.ovs = OVSDB(run=run)

    def exists(self):
        return self.netns in self.ip.netns_list()

    def _speaks_ipv6(self):
        """Whether the kernel would speak IPv6 on the namespace's links (not, too, where the
        namespace is not there yet in check mode, or the kernel has no IPv6 at all)."""
        out = self._run(["ip", "netns", "exec", self.netns, "sysctl", "-n"] + list(QUIET_IPV6), check=False)
        return out.rc == 0 and any(v.strip() != "1" for v in out.stdout.splitlines())

    def ensure(self, spec, up=True):
        """Namespace, veth legs, their host-bridge ports with tags and external_ids; legs up
        (forwarding) or down (stopped). Returns True when the legs were (re)created."""
        fresh = False
        if not self.exists():
            self.log.act("created instance namespace %s" % self.netns, self.ip.netns_add, self.netns)
            fresh = True
        if self._speaks_ipv6():
            # the kernel's own IPv6 (router solicitations, MLD reports, DAD) would leave the legs
            # beside the module's frames and spoil every count of what the module sent; the module
            # forwards IPv6 frames untouched, it needs no address of its own
            self.log.act("turned the kernel's IPv6 off in %s" % self.netns, self._run,
                         ["ip", "netns", "exec", self.netns, "sysctl", "-q", "-w"] + ["%s=1" % k for k in QUIET_IPV6])
        made = False
        for leg in LEGS:
            port = port_name(self.id, leg)
            outer = self.ip.link(port)
            inner = None if fresh else self.inner.link(leg)
            if outer is None or inner is None:
                if outer is not None:
                    self.log.act("deleted half a leg %s" % port, self.ip.delete_link, port)
                if inner is not None:
                    self.log.act("deleted half a leg %s in %s" % (leg, self.netns), self.inner.delete_link, leg)
                self.log.act("created leg %s: %s <-> %s:%s" % (leg, port, self.netns, leg), self.ip.add_veth,
                             port, leg, self.netns, stable_mac("fs", self.id, leg, "host"), stable_mac("fs", self.id, leg))
                # TCP across veth and the userspace datapath needs tx checksum offload off (LAB.md)
                self.log.act("turned tx checksum offload off on %s" % port, self._run, ["ethtool", "-K", port, "tx", "off"])
                # the bridge's end of the leg too: no kernel IPv6 of the host's into the module
                self.log.act("turned the kernel's IPv6 off on %s" % port, self._run,
                             ["sysctl", "-q", "-w", "net.ipv6.conf.%s.disable_ipv6=1" % port], check=False)
                self.log.act("turned tx checksum offload off on %s in %s" % (leg, self.netns), self._run,
                             ["ip", "netns", "exec", self.netns, "ethtool", "-K", leg, "tx", "off"])
                made = True
                outer = None
            if outer is None or not link_is_up(outer):
                self.log.act("set %s up" % port, self.ip.set_up, port)
        self.ensure_ports(spec, fresh=made)
        for leg in LEGS:
            inner = None if made else self.inner.link(leg)
            if up and not link_is_up(inner):
                self.log.act("set leg %s up in %s" % (leg, self.netns), self.inner.set_up, leg)
            elif not up and link_is_up(inner):
                self.log.act("set leg %s down in %s (stopped)" % (leg, self.netns), self.inner.set_down, leg)
        lo = None if fresh else self.inner.link("lo")
        if not link_is_up(lo):
            self.log.act("set lo up in %s" % self.netns, self.inner.set_up, "lo")
        return made

    def ensure_ports(self, spec, fresh=False):
        ensure_leg_ports(self.ovs, spec, self.log, fresh=fresh)

    def remove(self, host_bridge):
        for leg in LEGS:
            port = port_name(self.id, leg)
            if self.ovs.port_bridge(port):
                self.log.act("removed port %s from %s" % (port, host_bridge), self.ovs.del_port, port)
            if self.ip.link(port) is not None:
                self.log.act("deleted leg %s" % port, self.ip.delete_link, port)
        if self.exists():
            self.log.act("deleted instance namespace %s" % self.netns, self.ip.netns_delete, self.netns)


def ensure_leg_ports(ovs, spec, log, fresh=False):
    """Each leg an access port of the host bridge with its VLAN tag, port type and external_ids."""
    for leg in LEGS:
        port = port_name(spec.id, leg)
        want_ids = spec.external_ids(leg)
        on = ovs.port_bridge(port)
        if fresh and on:
            log.act("detached stale port %s" % port, ovs.del_port, port)
            on = None
        if on and on != spec.host_bridge:
            log.act("moved %s off bridge %s" % (port, on), ovs.del_port, port)
            on = None
        have_type = ovs.port_type(port) if on else None
        replace = bool(on) and have_type != spec.port_type
        if not on or replace:
            what = "re-created %s as a %s port (was %s)" % (port, spec.port_type, have_type) if replace else \
                "added %s to %s with VLAN %d%s" % (port, spec.host_bridge, spec.vlans[leg],
                                                   "" if spec.port_type == "system" else " (%s)" % spec.port_type)
            log.act(what, ovs.add_port, spec.host_bridge, port, None, spec.vlans[leg], None, spec.port_type, replace)
            log.act("labelled %s (%s)" % (port, ", ".join("%s=%s" % kv for kv in sorted(want_ids.items()))),
                    ovs.set_external_ids, "Port", port, want_ids)
            continue
        row = (ovs.list_table("Port", ["tag", "external_ids"], [port]) or [{}])[0]
        if row.get("tag") != spec.vlans[leg]:
            log.act("set VLAN %d on %s (was %s)" % (spec.vlans[leg], port, row.get("tag")), ovs.vsctl,
                    "set", "port", port, "tag=%d" % spec.vlans[leg])
        have = row.get("external_ids") or {}
        stale = {k: v for k, v in want_ids.items() if have.get(k) != v}
        if stale:
            log.act("labelled %s (%s)" % (port, ", ".join("%s=%s" % kv for kv in sorted(stale.items()))),
                    ovs.set_external_ids, "Port", port, want_ids)
