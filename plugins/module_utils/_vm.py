# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``vm`` kind of processing modules: one libvirt domain per instance (libvirt-python).

An instance ``<id>`` is the persistent QEMU domain ``fs-<id>`` (``<domain type='qemu'>``: TCG,
see LAB.md) with two virtio NICs on the host bridge: ``left`` at PCI slot 3 and ``right`` at
slot 4, each a tap named ``fs-<id>-l`` / ``fs-<id>-r`` plugged by libvirt into Open vSwitch
(``<virtualport type='openvswitch'/>``) as an access port with the leg's VLAN tag. MACs come
from :func:`stable_mac` and the Open vSwitch interface ids from a UUIDv5 of the instance and
leg, so a domain re-created with the same id looks the same to its neighbours.

Everything is found again on the host itself:

* the domain's ``<metadata>`` holds ``<fs:instance>`` (id, kind, type, chain, step, VLANs) in
  the namespace :data:`METADATA_NS`: :meth:`VmKind.observe_all` lists every domain carrying it;
* the leg *Port* records carry ``external_ids`` ``flowstream-instance/kind/type/chain/step/leg``
  like every other kind's legs (set after the domain starts; libvirt re-creates the ports
  when the domain restarts, so :meth:`VmKind.ensure` puts them back when they are missing);
* the serial console is logged next to libvirt's own QEMU log of the domain, in
  ``/var/log/libvirt/qemu/fs-<id>.console.log``: a directory every libvirt host has, so a start
  by libvirt itself or an incoming live migration never fails on a missing directory. Both
  logs go with the instance when it is removed.

Requests are validated completely (instance id, VLANs free on the host bridge and not claimed
by another VM instance, image files present, memory available) before anything changes; a
failure raises :class:`InstanceError` naming the instance and the field.
"""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run, wait_for
from ansible_collections.flowstream.platform.plugins.module_utils._instance import (
    EXT, LEGS, check_id, check_vlans, port_name)
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import stable_mac
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB

try:
    import libvirt
except ImportError as _exc:  # the import sanity test, and hosts that run no VMs
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = _exc
else:
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None

METADATA_NS = "https://flowstream.dev/xmlns/instance/1"
METADATA_PREFIX = "fs"
DEFAULT_URI = "qemu:///system"
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
CONSOLE_DIR = QEMU_LOG_DIR
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"
PCI_SLOT = {"left": 3, "right": 4}
DEFAULT_CMDLINE = "console=ttyS0"
# What a guest costs its host beyond its RAM: QEMU itself and TCG's translation cache. Measured
# here: a 96 MiB guest of the wire image has 190-200 MiB RSS, i.e. ~100 MiB on top of its RAM.
QEMU_OVERHEAD_MIB = 128
# What the host keeps for itself (Open vSwitch, libvirtd, sshd, page cache) after the guest.
HOST_RESERVE_MIB = 256
MEMORY_MARGIN_MIB = QEMU_OVERHEAD_MIB + HOST_RESERVE_MIB
# A floor for obvious mistakes only: the wire image's Debian kernel needs 96 MiB (measured: at
# 80 MiB it panics out of memory, at 64 MiB it never leaves the firmware); other images differ.
MIN_MEMORY_MIB = 32

# libvirt's stable ABI values (libvirt-domain.h), so that parsing and planning need no libvirt
XML_INACTIVE = 2
METADATA_ELEMENT = 2
AFFECT_LIVE = 1
STATE_NAMES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
               6: "crashed", 7: "pmsuspended"}
RUNNING_STATES = (1, 2)
UNDEFINE_FLAGS = 1 | 2 | 4 | 16  # managed save, snapshot metadata, nvram, checkpoint metadata

# fields of an instance's definition: those applied to a running domain without a restart
LIVE_FIELDS = ("type", "chain", "step")
RESTART_FIELDS = ("memory_mib", "vcpus", "host_bridge", "vlans.left", "vlans.right", "image.kernel",
                  "image.initrd", "image.cmdline", "image.disk", "image.format", "mac.left", "mac.right",
                  "interfaceid.left", "interfaceid.right", "port.left", "port.right")


class _NoLibvirtError(Exception):
    """Stands in for libvirt.libvirtError where libvirt-python is missing."""


LibvirtError = libvirt.libvirtError if HAS_LIBVIRT else _NoLibvirtError


# ------------------------------------------------------------------------------------------------
# names
def domain_name(instance):
    return "fs-%s" % instance


def leg_mac(instance, leg):
    return stable_mac("fs", instance, leg)


def interface_id(instance, leg):
    """The Open vSwitch ``iface-id`` of a leg: the same for every incarnation of the instance."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "%s/%s/%s" % (METADATA_NS, instance, leg)))


def console_log(instance):
    return "%s/%s.console.log" % (CONSOLE_DIR, domain_name(instance))


# ------------------------------------------------------------------------------------------------
# the wanted domain (pure)
def _text(value):
    return "" if value is None else str(value)


def normalize_spec(spec):
    """The spec with defaults filled in (``image.cmdline``, ``image.format``), as compared."""
    spec = dict(spec)
    image = dict(spec.get("image") or {})
    if image.get("kernel") and image.get("cmdline") is None:
        image["cmdline"] = DEFAULT_CMDLINE
    if image.get("disk"):
        image["format"] = image.get("format") or "raw"
    spec["image"] = image
    return spec


def desired_xml(spec, domain_uuid=None):
    """The libvirt domain XML of a VM instance. Pure: same spec, same bytes.

    ``spec``: ``id``, ``type``, ``chain``, ``step``, ``vlans`` (``left``, ``right``),
    ``host_bridge``, ``memory_mib``, ``vcpus``, ``image`` (``kernel``, ``initrd``, ``cmdline``
    or ``disk`` and optionally ``format``). ``domain_uuid`` keeps a redefined domain's identity.
    """
    spec = normalize_spec(spec)
    inst = spec["id"]
    image = spec["image"]
    meta = [("id", inst), ("kind", "vm"), ("type", spec.get("type")), ("chain", spec.get("chain")),
            ("step", spec.get("step")), ("vlan_left", spec["vlans"]["left"]), ("vlan_right", spec["vlans"]["right"])]
    lines = ["<domain type='qemu'>",
             "  <name>%s</name>" % domain_name(inst)]
    if domain_uuid:
        lines.append("  <uuid>%s</uuid>" % escape(domain_uuid))
    lines += ["  <metadata>",
              "    <%s:instance xmlns:%s=%s>" % (METADATA_PREFIX, METADATA_PREFIX, quoteattr(METADATA_NS))]
    lines += ["      <%s:%s>%s</%s:%s>" % (METADATA_PREFIX, key, escape(_text(value)), METADATA_PREFIX, key)
              for key, value in meta]
    lines += ["    </%s:instance>" % METADATA_PREFIX,
              "  </metadata>",
              "  <memory unit='MiB'>%d</memory>" % int(spec["memory_mib"]),
              "  <currentMemory unit='MiB'>%d</currentMemory>" % int(spec["memory_mib"]),
              "  <vcpu>%d</vcpu>" % int(spec["vcpus"]),
              "  <os>",
              "    <type arch='x86_64' machine='pc'>hvm</type>"]
    if image.get("kernel"):
        lines += ["    <kernel>%s</kernel>" % escape(image["kernel"]),
                  "    <initrd>%s</initrd>" % escape(image["initrd"]),
                  "    <cmdline>%s</cmdline>" % escape(image["cmdline"])]
    else:
        lines.append("    <boot dev='hd'/>")
    lines += ["  </os>",
              "  <features><acpi/><apic/></features>",
              "  <on_poweroff>destroy</on_poweroff>",
              "  <on_reboot>restart</on_reboot>",
              # a guest that panics says so through the pvpanic device below, and libvirt ends it:
              # it shows as stopped (deploy-chain starts it again) instead of its panicked kernel
              # spinning on its vCPU - under TCG a whole host core - while libvirt says running;
              # not restart: a guest that panics as it boots would loop (docs/vm-modules.md)
              "  <on_crash>destroy</on_crash>",
              "  <devices>"]
    if image.get("disk"):
        # one image serves every instance of a type: attached read-only, guests keep state in RAM
        lines += ["    <disk type='file' device='disk'>",
                  "      <driver name='qemu' type=%s/>" % quoteattr(image["format"]),
                  "      <source file=%s/>" % quoteattr(image["disk"]),
                  "      <target dev='vda' bus='virtio'/>",
                  "      <readonly/>",
                  "    </disk>"]
    for leg in LEGS:
        lines += ["    <interface type='bridge'>",
                  "      <mac address='%s'/>" % leg_mac(inst, leg),
                  "      <source bridge=%s/>" % quoteattr(spec["host_bridge"]),
                  "      <virtualport type='openvswitch'>",
                  "        <parameters interfaceid='%s'/>" % interface_id(inst, leg),
                  "      </virtualport>",
                  "      <vlan><tag id='%d'/></vlan>" % int(spec["vlans"][leg]),
                  "      <target dev='%s'/>" % port_name(inst, leg),
                  "      <model type='virtio'/>",
                  "      <address type='pci' domain='0x0000' bus='0x00' slot='0x%02x' function='0x0'/>" % PCI_SLOT[leg],
                  "    </interface>"]
    lines += ["    <serial type='pty'>",
              "      <log file=%s append='off'/>" % quoteattr(console_log(inst)),
              "      <target port='0'/>",
              "    </serial>",
              "    <console type='pty'><target type='serial' port='0'/></console>",
              "    <controller type='usb' model='none'/>",
              "    <memballoon model='none'/>",
              "    <panic model='isa'><address type='isa' iobase='0x505'/></panic>",
              "  </devices>",
              "</domain>"]
    return "\n".join(lines) + "\n"


def wanted_shape(spec):
    """The fields of a spec that the domain definition carries, flat (``vlans.left`` ...)."""
    spec = normalize_spec(spec)
    inst = spec["id"]
    image = spec["image"]
    shape = {"type": _text(spec.get("type")).strip() or None, "chain": _text(spec.get("chain")).strip() or None,
             "step": _text(spec.get("step")).strip() or None,
             "memory_mib": int(spec["memory_mib"]), "vcpus": int(spec["vcpus"]),
             "host_bridge": spec["host_bridge"],
             "image.kernel": image.get("kernel"), "image.initrd": image.get("initrd"),
             "image.cmdline": image.get("cmdline") if image.get("kernel") else None,
             "image.disk": image.get("disk"), "image.format": image.get("format") if image.get("disk") else None}
    for leg in LEGS:
        shape["vlans.%s" % leg] = int(spec["vlans"][leg])
        shape["mac.%s" % leg] = leg_mac(inst, leg)
        shape["interfaceid.%s" % leg] = interface_id(inst, leg)
        shape["port.%s" % leg] = port_name(inst, leg)
    return shape


# ------------------------------------------------------------------------------------------------
# reading a domain (pure)
def _memory_mib(elem):
    if elem is None or not (elem.text or "").strip():
        return None
    value = int(elem.text.strip())
    unit = (elem.get("unit") or "KiB").lower()
    factor = {"b": 1.0 / 1048576, "bytes": 1.0 / 1048576, "k": 1.0 / 1024, "kib": 1.0 / 1024, "m": 1, "mib": 1,
              "g": 1024, "gib": 1024}.get(unit)
    if factor is None:
        return None
    return int(round(value * factor))


def parse_domain_xml(text):
    """A flowstream VM instance from a domain's XML, or None when the domain carries no
    ``<fs:instance>`` metadata (not ours). Returns ``(instance_id, info, shape)``."""
    root = ET.fromstring(text)
    meta = root.find("metadata/{%s}instance" % METADATA_NS)
    if meta is None:
        return None

    def field(name):
        elem = meta.find("{%s}%s" % (METADATA_NS, name))
        value = (elem.text or "").strip() if elem is not None else ""
        return value or None

    inst = field("id")
    if not inst:
        return None
    shape = {"type": field("type"), "chain": field("chain"), "step": field("step"),
             "memory_mib": _memory_mib(root.find("memory")),
             "vcpus": int(root.findtext("vcpu", "0").strip() or 0),
             "image.kernel": root.findtext("os/kernel"), "image.initrd": root.findtext("os/initrd"),
             "image.cmdline": root.findtext("os/cmdline"), "image.disk": None, "image.format": None,
             "host_bridge": None}
    if shape["image.kernel"] is not None and shape["image.cmdline"] is None:
        shape["image.cmdline"] = ""
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") == "disk" and disk.find("source") is not None:
            shape["image.disk"] = disk.find("source").get("file")
            driver = disk.find("driver")
            shape["image.format"] = driver.get("type") if driver is not None else None
            break
    legs = {}
    bridges = set()
    for iface in root.findall("devices/interface"):
        target = iface.find("target")
        dev = target.get("dev") if target is not None else None
        leg = {port_name(inst, leg_): leg_ for leg_ in LEGS}.get(dev)
        if leg is None:
            continue
        tag = iface.find("vlan/tag")
        source = iface.find("source")
        mac = iface.find("mac")
        params = iface.find("virtualport/parameters")
        vlan = int(tag.get("id")) if tag is not None else None
        legs[leg] = {"port": dev, "vlan": vlan}
        shape["vlans.%s" % leg] = vlan
        shape["mac.%s" % leg] = mac.get("address").lower() if mac is not None else None
        shape["interfaceid.%s" % leg] = params.get("interfaceid") if params is not None else None
        shape["port.%s" % leg] = dev
        if source is not None:
            bridges.add(source.get("bridge"))
    for leg in LEGS:
        for key in ("vlans", "mac", "interfaceid", "port"):
            shape.setdefault("%s.%s" % (key, leg), None)
    if len(bridges) == 1:
        shape["host_bridge"] = bridges.pop()
    elif bridges:
        shape["host_bridge"] = ",".join(sorted(b or "" for b in bridges))
    info = {"kind": "vm", "type": shape["type"], "chain": shape["chain"],
            "step": shape["step"],
            "state": "stopped", "legs": legs, "memory_mib": shape["memory_mib"], "vcpus": shape["vcpus"],
            "domain": root.findtext("name"), "uuid": root.findtext("uuid"),
            "vlans": {leg: shape["vlans.%s" % leg] for leg in LEGS}, "host_bridge": shape["host_bridge"]}
    return inst, info, shape


def retarget_domain_xml(text, vlans, host_bridge=None):
    """A VM instance's domain XML for another host: both legs on the VLAN tags ``vlans``
    (``{left, right}``) and, when given, on the host bridge ``host_bridge``; the ``<fs:instance>``
    metadata says the same. MACs, interface ids, tap names and everything else stay, so the
    guest sees no change (what a live migration's destination XML may differ in). Pure.

    Raises ValueError when the XML is not a flowstream VM instance with both legs."""
    root = ET.fromstring(text)
    meta = root.find("metadata/{%s}instance" % METADATA_NS)
    inst = (meta.findtext("{%s}id" % METADATA_NS) or "").strip() if meta is not None else ""
    if not inst:
        raise ValueError("the domain %s has no <fs:instance> metadata: not a flowstream VM instance"
                         % (root.findtext("name") or "(unnamed)"))
    found = set()
    for iface in root.findall("devices/interface"):
        target = iface.find("target")
        leg = {port_name(inst, leg_): leg_ for leg_ in LEGS}.get(target.get("dev") if target is not None else None)
        if leg is None:
            continue
        found.add(leg)
        vlan = iface.find("vlan")
        if vlan is None:
            vlan = ET.SubElement(iface, "vlan")
        for tag in vlan.findall("tag"):
            vlan.remove(tag)
        vlan.attrib.pop("trunk", None)
        ET.SubElement(vlan, "tag", {"id": str(int(vlans[leg]))})
        if host_bridge:
            source = iface.find("source")
            if source is None:
                source = ET.SubElement(iface, "source")
            source.set("bridge", host_bridge)
    missing = [leg for leg in LEGS if leg not in found]
    if missing:
        raise ValueError("the domain %s has no %s leg (an interface with target dev %s)" % (
            root.findtext("name"), " or ".join(missing), " / ".join(port_name(inst, leg) for leg in missing)))
    for leg in LEGS:
        elem = meta.find("{%s}vlan_%s" % (METADATA_NS, leg))
        if elem is None:
            elem = ET.SubElement(meta, "{%s}vlan_%s" % (METADATA_NS, leg))
        elem.text = str(int(vlans[leg]))
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    return ET.tostring(root, encoding="unicode")


def diff_shapes(have, want, fields):
    """``[(field, have, want)]`` for the fields that differ."""
    return [(f, have.get(f), want.get(f)) for f in fields if have.get(f) != want.get(f)]


def describe_changes(changes):
    return ", ".join("%s %s -> %s" % (f, "(none)" if a is None else a, "(none)" if b is None else b)
                     for f, a, b in changes)


def mem_available_mib(text):
    """MemAvailable from /proc/meminfo text, in MiB."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            return int(parts[1]) // 1024
    raise ValueError("no MemAvailable line in /proc/meminfo")


def disk_format(path):
    """``qcow2`` when the file starts with QCOW's magic, else ``raw``."""
    with open(path, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


# ------------------------------------------------------------------------------------------------
class VmKind:
    """VM instances on this module host, through libvirt (``uri``) and its Open vSwitch.

    ``run`` runs ``ovs-vsctl`` (tests replace it); ``conn`` is an open libvirt connection to
    use instead of opening ``uri`` (tests pass a fake). The libvirt connection is opened on
    first use, so constructing a ``VmKind`` on a host without libvirtd costs nothing.
    """

    memory_margin_mib = MEMORY_MARGIN_MIB
    start_wait = 10.0

    def __init__(self, run=_run, uri=DEFAULT_URI, conn=None, meminfo="/proc/meminfo", console_dir=CONSOLE_DIR,
                 qemu_log_dir=QEMU_LOG_DIR):
        if conn is None and not HAS_LIBVIRT:
            raise InstanceError(None, "kind", "kind vm needs libvirt-python on the module host: %s"
                                % LIBVIRT_IMPORT_ERROR)
        self._run = run
        self.uri = uri
        self._conn = conn
        self.meminfo = meminfo
        self.console_dir = console_dir
        self.qemu_log_dir = qemu_log_dir
        self.ovs = OVSDB(run=run)

    # -- libvirt ---------------------------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            libvirt.registerErrorHandler(_quiet_libvirt, None)
            try:
                self._conn = libvirt.open(self.uri)
            except LibvirtError as exc:
                raise InstanceError(None, "kind", "cannot reach libvirt at %s: %s" % (self.uri, _words(exc))) from exc
        return self._conn

    def _libvirt_absent(self):
        """True when this host runs no system libvirtd at all (so it can run no VMs)."""
        return self._conn is None and self.uri == DEFAULT_URI and not os.path.exists(SYSTEM_SOCKET)

    def _domains(self):
        """{instance id: (domain, info, shape)} for every domain with flowstream metadata."""
        found = {}
        for dom in self.conn.listAllDomains(0):
            parsed = parse_domain_xml(dom.XMLDesc(XML_INACTIVE))
            if parsed is None:
                continue
            inst, info, shape = parsed
            state = dom.state()[0]
            info["state"] = "running" if state in RUNNING_STATES else "stopped"
            info["domain_state"] = STATE_NAMES.get(state, str(state))
            info["persistent"] = bool(dom.isPersistent())
            found[inst] = (dom, info, shape)
        return found

    def _find_domain(self, name):
        for dom in self.conn.listAllDomains(0):
            if dom.name() == name:
                return dom
        return None

    # -- reading ---------------------------------------------------------------------------------
    def observe_all(self):
        """Every VM instance on this host, from libvirt: ``{id: {kind, type, chain, step, state,
        legs: {left: {port, vlan}, right: {...}}, memory_mib, vcpus, domain, ...}}``."""
        if self._libvirt_absent():
            return {}
        return {inst: info for inst, (_dom, info, _shape) in self._domains().items()}

    def leg_counters(self, instance_id):
        """Packet and byte counters of both legs as Open vSwitch reports them for the leg ports
        (``rx`` = from the guest into the host bridge, ``tx`` = from the bridge to the guest).
        OVS refreshes Interface statistics every 5 s (``other_config:stats-update-interval``)."""
        names = [port_name(instance_id, leg) for leg in LEGS]
        rows = {row.get("name"): row for row in self.ovs.list_table("Interface", ["name", "statistics"], names)}
        missing = [n for n in names if n not in rows]
        if missing:
            raise InstanceError(instance_id, "instance", "no leg port %s on this host (is the instance running?)"
                                % ", ".join(missing))
        out = {}
        for leg, name in zip(LEGS, names):
            stats = rows[name].get("statistics") or {}
            out[leg] = {k: int(stats.get(k, 0)) for k in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")}
        return out

    # -- validation ------------------------------------------------------------------------------
    def _check_spec(self, spec):
        inst = spec.get("id")
        check_id(inst)
        check_vlans(inst, spec.get("vlans"))
        for key, low in (("memory_mib", MIN_MEMORY_MIB), ("vcpus", 1)):
            value = spec.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InstanceError(inst, "memory" if key == "memory_mib" else key,
                                    "must be an integer of at least %d, got %r" % (low, value))
        if not spec.get("host_bridge"):
            raise InstanceError(inst, "host_bridge", "names no bridge")
        image = spec.get("image") or {}
        if not isinstance(image, dict):
            raise InstanceError(inst, "image", "must be a mapping: {kernel, initrd, cmdline} or {disk}")
        if image.get("disk") and image.get("kernel"):
            raise InstanceError(inst, "image", "give either kernel + initrd or disk, not both")
        if image.get("kernel"):
            wanted = ("kernel", "initrd")
            if not image.get("initrd"):
                raise InstanceError(inst, "image.initrd", "a kernel image needs an initrd (initramfs)")
        elif image.get("disk"):
            wanted = ("disk",)
            if image.get("format") not in (None, "raw", "qcow2"):
                raise InstanceError(inst, "image.format", "must be raw or qcow2, got %r" % (image.get("format"),))
        else:
            raise InstanceError(inst, "image", "needs kernel + initrd (and optionally cmdline) or a disk image path")
        for key in wanted:
            path = image[key]
            if not isinstance(path, str) or not os.path.isabs(path):
                raise InstanceError(inst, "image.%s" % key, "must be an absolute path on the module host, got %r" % (path,))
            if not os.path.isfile(path):
                raise InstanceError(inst, "image.%s" % key, "%s does not exist on this host%s" % (
                    path, " (build it with scripts/build-guest-image.sh)" if key in ("kernel", "initrd") else ""))
            if not os.access(path, os.R_OK):
                raise InstanceError(inst, "image.%s" % key, "%s is not readable" % path)
        spec = dict(spec, image=dict(image))
        if image.get("disk") and not image.get("format"):
            spec["image"]["format"] = disk_format(image["disk"])
        return normalize_spec(spec)

    def _host_ports(self, spec):
        bridge = spec["host_bridge"]
        if not self.ovs.bridge_exists(bridge):
            raise InstanceError(spec["id"], "host_bridge", "the host bridge '%s' does not exist on this host" % bridge)
        names = self.ovs.ports(bridge)
        return {row["name"]: row for row in self.ovs.list_table("Port", ["name", "tag", "external_ids"], names)} \
            if names else {}

    def _check_host(self, spec, ports, domains):
        """The request against what the host already runs (OVSDB ports, other VM instances)."""
        inst = spec["id"]
        own = {port_name(inst, leg) for leg in LEGS}
        for name in sorted(own):
            ext = (ports.get(name) or {}).get("external_ids") or {}
            if name in ports and ext.get(EXT + "kind") not in (None, "vm"):
                raise InstanceError(inst, "instance", "port %s on %s belongs to a %s instance; remove that first or choose "
                                    "another id" % (name, spec["host_bridge"], ext.get(EXT + "kind")))
        for leg in LEGS:
            tag = spec["vlans"][leg]
            for name, row in sorted(ports.items()):
                if name not in own and row.get("tag") == tag:
                    owner = (row.get("external_ids") or {}).get(EXT + "instance")
                    raise InstanceError(inst, "vlans.%s" % leg, "VLAN %d is already the tag of port %s on %s%s" % (
                        tag, name, spec["host_bridge"], " (instance %s)" % owner if owner else ""))
            for other, (_dom, info, _shape) in sorted(domains.items()):
                if other != inst and tag in (info.get("vlans") or {}).values() \
                        and info.get("host_bridge") in (None, spec["host_bridge"]):
                    raise InstanceError(inst, "vlans.%s" % leg, "VLAN %d belongs to VM instance %s (domain %s, %s)" % (
                        tag, other, info.get("domain"), info.get("state")))

    def _check_memory(self, spec, freed_mib=0):
        try:
            with open(self.meminfo, encoding="ascii") as handle:
                available = mem_available_mib(handle.read())
        except (OSError, ValueError) as exc:
            raise InstanceError(spec["id"], "memory", "cannot read MemAvailable from %s: %s" % (self.meminfo, exc)) from exc
        need = spec["memory_mib"] + self.memory_margin_mib
        if available + freed_mib < need:
            raise InstanceError(spec["id"], "memory", "the host has %d MiB available%s; %d MiB of guest memory needs %d "
                                "(guest + %d MiB for QEMU and the host itself)" % (
                                    available, " (+%d MiB the old domain frees)" % freed_mib if freed_mib else "",
                                    spec["memory_mib"], need, self.memory_margin_mib))

    # -- converging ------------------------------------------------------------------------------
    def ensure(self, spec, check_mode=False):
        """Converge one VM instance; returns the actions taken (none when all was in place)."""
        spec = self._check_spec(spec)
        inst = spec["id"]
        name = domain_name(inst)
        running = bool(spec.get("running", True))
        domains = self._domains()
        ports = self._host_ports(spec)
        dom = self._find_domain(name)
        if dom is not None and inst not in domains:
            raise InstanceError(inst, "instance", "a libvirt domain %s exists that flowstream did not define (it has no "
                                "<fs:instance> metadata); remove or rename it, or choose another id" % name)
        self._check_host(spec, ports, domains)
        plan, actions = self._plan(spec, dom, domains.get(inst))
        if plan["start"] or plan["restart"]:
            info = domains[inst][1] if inst in domains else None
            freed = ((info or {}).get("memory_mib") or 0) if plan["restart"] else 0
            self._check_memory(spec, freed_mib=freed)
        fresh = plan["start"] or plan["restart"]
        if check_mode:
            return actions + (self._label_actions(spec, {} if fresh else ports) if running else [])
        self._apply(spec, dom, plan)
        if running:
            if fresh:
                ports = self._host_ports(spec)
            labels = self._label_actions(spec, ports)
            if labels:
                self._label_ports(spec, ports)
            actions += labels
        return actions

    def _plan(self, spec, dom, found):
        """What to do to reach ``spec`` from the domain as it is: (plan, action strings)."""
        name = domain_name(spec["id"])
        running = bool(spec.get("running", True))
        want = wanted_shape(spec)
        plan = {"define": None, "live_meta": False, "restart": False, "start": False, "resume": False,
                "stop": False, "autostart": None}
        actions = []
        if dom is None:
            plan["define"] = "new"
            actions.append("defined domain %s (%d MiB, %d vCPU, VLANs %d/%d on %s)" % (
                name, spec["memory_mib"], spec["vcpus"], spec["vlans"]["left"], spec["vlans"]["right"],
                spec["host_bridge"]))
            state = "shutoff"
        else:
            _dom, info, have = found
            state = info["domain_state"]
            changes = diff_shapes(have, want, LIVE_FIELDS + RESTART_FIELDS)
            if changes:
                plan["define"] = "redefine"
                actions.append("redefined domain %s: %s" % (name, describe_changes(changes)))
            elif not info["persistent"]:
                plan["define"] = "redefine"
                actions.append("made domain %s persistent" % name)
            if state in ("running", "blocked", "paused") and running:
                live = parse_domain_xml(dom.XMLDesc(0))
                live_shape = live[2] if live else {}
                hard = diff_shapes(live_shape, want, RESTART_FIELDS)
                if hard:
                    plan["restart"] = True
                    actions.append("restarted domain %s to apply %s" % (name, ", ".join(f for f, _a, _b in hard)))
                elif diff_shapes(live_shape, want, LIVE_FIELDS):
                    plan["live_meta"] = True
                    actions.append("updated the instance metadata of running domain %s" % name)
        active = state in ("running", "blocked", "paused", "shutdown", "pmsuspended")
        if running and not active:
            plan["start"] = True
            actions.append("started domain %s" % name)
        elif running and state == "paused" and not plan["restart"]:
            plan["resume"] = True
            actions.append("resumed domain %s" % name)
        elif not running and active:
            plan["stop"] = True
            actions.append("stopped domain %s (destroyed: the guest keeps no state)" % name)
        if dom is None or bool(dom.autostart()) != running:
            plan["autostart"] = running
            if dom is not None:
                actions.append("%s autostart of %s" % ("enabled" if running else "disabled", name))
        return plan, actions

    def _apply(self, spec, dom, plan):
        inst = spec["id"]
        name = domain_name(inst)
        old_xml = dom.XMLDesc(XML_INACTIVE) if dom is not None else None
        try:
            if plan["define"]:
                dom = self.conn.defineXML(desired_xml(spec, domain_uuid=dom.UUIDString() if dom is not None else None))
            if plan["live_meta"]:
                dom.setMetadata(METADATA_ELEMENT, _metadata_element(spec), METADATA_PREFIX, METADATA_NS, AFFECT_LIVE)
            if plan["autostart"] is not None:
                dom.setAutostart(1 if plan["autostart"] else 0)
            if plan["stop"] or plan["restart"]:
                dom.destroy()
            if plan["start"] or plan["restart"]:
                # Debian's libvirt-daemon-system ships this directory; a host (or lab host) whose
                # /var/log/libvirt is fresh lacks it until the first domain, and QEMU cannot open
                # the console log without it
                os.makedirs(self.console_dir, exist_ok=True)
                dom.create()
                self._wait_for_ports(spec)
            if plan["resume"]:
                dom.resume()
        except (LibvirtError, InstanceError) as exc:
            self._roll_back(dom, old_xml, plan)
            if isinstance(exc, InstanceError):
                raise
            raise InstanceError(inst, "domain", "libvirt refused %s: %s%s" % (
                name, _words(exc), self._qemu_log_tail(inst))) from exc

    def _roll_back(self, dom, old_xml, plan):
        """Put the host back as it was after a failed apply (best effort, errors ignored)."""
        try:
            if dom is not None and (plan["start"] or plan["restart"]) and dom.isActive():
                dom.destroy()
            if plan["define"] == "new" and dom is not None:
                dom.undefineFlags(UNDEFINE_FLAGS)
            elif plan["define"] == "redefine" and old_xml:
                self.conn.defineXML(old_xml)
        except LibvirtError:
            pass

    def _qemu_log_tail(self, instance):
        path = os.path.join(self.qemu_log_dir, "%s.log" % domain_name(instance))
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                tail = [line.strip() for line in handle.read().splitlines()[-3:] if line.strip()]
        except OSError:
            return ""
        return " (QEMU log %s: %s)" % (path, " | ".join(tail)) if tail else ""

    def _wait_for_ports(self, spec):
        names = [port_name(spec["id"], leg) for leg in LEGS]
        if not wait_for(lambda: all(self.ovs.port_bridge(n) == spec["host_bridge"] for n in names), self.start_wait, interval=0.1):
            raise InstanceError(spec["id"], "host_bridge", "the domain started but its leg ports %s did not appear "
                                "on %s within %.0f s" % (", ".join(names), spec["host_bridge"], self.start_wait))

    # -- leg port labels (external_ids) ----------------------------------------------------------
    @staticmethod
    def external_ids(spec, leg):
        ids = {EXT + "instance": spec["id"], EXT + "kind": "vm", EXT + "type": _text(spec.get("type")),
               EXT + "leg": leg}
        if spec.get("chain") is not None:
            ids[EXT + "chain"] = _text(spec.get("chain"))
        if spec.get("step") is not None:
            ids[EXT + "step"] = _text(spec.get("step"))
        return ids

    def _label_actions(self, spec, ports):
        out = []
        for leg in LEGS:
            name = port_name(spec["id"], leg)
            have = (ports.get(name) or {}).get("external_ids") or {}
            want = self.external_ids(spec, leg)
            stale = {k: v for k, v in want.items() if have.get(k) != v}
            extra = sorted(k for k in have if k.startswith(EXT) and k not in want)
            if stale:
                out.append("labelled %s (%s)" % (name, ", ".join("%s=%s" % kv for kv in sorted(stale.items()))))
            if extra:
                out.append("removed labels %s from %s" % (", ".join(extra), name))
        return out

    def _label_ports(self, spec, ports):
        for leg in LEGS:
            name = port_name(spec["id"], leg)
            want = self.external_ids(spec, leg)
            have = (ports.get(name) or {}).get("external_ids") or {}
            extra = sorted(k for k in have if k.startswith(EXT) and k not in want)
            if extra:
                self.ovs.vsctl("remove", "Port", name, "external_ids", *extra)
            self.ovs.set_external_ids("Port", name, want)

    # -- removal ---------------------------------------------------------------------------------
    def remove(self, instance_id, check_mode=False):
        """Destroy and undefine the instance's domain; no leg port, console log or QEMU log
        of it stays behind. Returns the actions (none when nothing was there)."""
        check_id(instance_id)
        name = domain_name(instance_id)
        actions = []
        dom = None
        if not self._libvirt_absent():
            dom = self._find_domain(name)
            if dom is not None and parse_domain_xml(dom.XMLDesc(XML_INACTIVE)) is None:
                raise InstanceError(instance_id, "instance", "the libvirt domain %s was not defined by flowstream (no "
                                    "<fs:instance> metadata); leaving it alone" % name)
        libvirt_unplugs = False
        if dom is not None:
            if dom.isActive():
                # libvirt takes the taps of a destroyed domain off the bridge itself
                libvirt_unplugs = True
                actions.append("destroyed domain %s" % name)
                if not check_mode:
                    _libvirt_call(instance_id, "destroy", dom.destroy)
            if dom.isPersistent():
                actions.append("undefined domain %s" % name)
                if not check_mode:
                    _libvirt_call(instance_id, "undefine", dom.undefineFlags, UNDEFINE_FLAGS)
        for leg in LEGS:
            port = port_name(instance_id, leg)
            if libvirt_unplugs and check_mode:
                continue
            bridge = self.ovs.port_bridge(port)
            if bridge is None:
                continue
            if not self._vm_leg_port(instance_id, leg):
                continue  # not a leg of this VM instance (another kind's, or nobody's we know)
            actions.append("removed leftover port %s from %s" % (port, bridge))
            if not check_mode:
                self.ovs.del_port(port)
        for path in self._instance_files(instance_id):
            actions.append("removed %s" % path)
            if not check_mode:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return actions

    def _vm_leg_port(self, instance_id, leg):
        """True when the port ``fs-<id>-<l|r>`` is this VM instance's leg: labelled by us, or
        plugged by libvirt for the leg's MAC (a domain that died before it was labelled)."""
        port = port_name(instance_id, leg)
        rows = self.ovs.list_table("Port", ["name", "external_ids"], [port])
        ext = (rows[0].get("external_ids") or {}) if rows else {}
        if ext.get(EXT + "kind") == "vm" and ext.get(EXT + "instance") == instance_id:
            return True
        if ext.get(EXT + "kind"):
            return False
        rows = self.ovs.list_table("Interface", ["name", "external_ids"], [port])
        iface = (rows[0].get("external_ids") or {}) if rows else {}
        return (iface.get("attached-mac") or "").lower() == leg_mac(instance_id, leg)

    def _instance_files(self, instance_id):
        """Log files of the instance: the console log (and virtlogd's rotations of it), and
        libvirt's QEMU log of the domain."""
        found = []
        for directory, stem in ((self.console_dir, "%s.console.log" % domain_name(instance_id)),
                                (self.qemu_log_dir, "%s.log" % domain_name(instance_id))):
            try:
                entries = sorted(os.listdir(directory))
            except OSError:
                continue
            for entry in entries:
                path = os.path.join(directory, entry)
                if (entry == stem or re.match(r"^%s\.[0-9]+(\.gz)?$" % re.escape(stem), entry)) and path not in found:
                    found.append(path)
        return found


# ------------------------------------------------------------------------------------------------
def _metadata_element(spec):
    """The ``<instance>`` element for virDomainSetMetadata, which wants it without a namespace
    (it puts the element into ``uri`` under the prefix ``key`` itself)."""
    parsed = ET.fromstring(desired_xml(spec)).find("metadata/{%s}instance" % METADATA_NS)
    children = "".join("<%s>%s</%s>" % (child.tag.split("}")[1], escape(child.text or ""), child.tag.split("}")[1])
                       for child in parsed)
    return "<instance>%s</instance>" % children


def _quiet_libvirt(_ctx, _err):
    """libvirt prints every error to stderr by default; they are raised as exceptions instead."""


def _words(exc):
    return str(exc).strip() or exc.__class__.__name__


def _libvirt_call(instance, what, func, *args):
    try:
        return func(*args)
    except LibvirtError as exc:
        raise InstanceError(instance, "domain", "libvirt could not %s %s: %s" % (what, domain_name(instance), _words(exc))) from exc
