# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vm kind without libvirt or Open vSwitch: the domain XML it wants, what it reads back
from libvirt's XML, its validation (nothing changes on a bad request), and its plans against a
fake libvirt connection and a fake OVSDB that behave like the real ones do."""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils import _vm
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, Result
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import stable_mac
from ansible_collections.flowstream.platform.plugins.module_utils._vm import (
    METADATA_NS, VmKind, desired_xml, interface_id, mem_available_mib, parse_domain_xml, wanted_shape)

NS = {"fs": METADATA_NS}


# ------------------------------------------------------------------------------------------------
# fakes
class FakeOVS:
    """ovs-vsctl against an in-memory OVSDB: bridges, ports (tag, external_ids), interfaces
    (external_ids, statistics). Records every argv; ``mutations`` lists the writing ones."""

    WRITES = ("set", "remove", "del-port", "add-port", "add-br", "del-br")

    def __init__(self, bridges=("fs-host",)):
        self.bridges = {b: ["trunk0"] if b == "fs-host" else [] for b in bridges}
        self.ports = {"trunk0": {"tag": None, "external_ids": {}}}
        self.ifaces = {"trunk0": {"external_ids": {}, "statistics": {}}}
        self.calls = []

    @property
    def mutations(self):
        return [c for c in self.calls if any(w in c for w in self.WRITES)]

    def plug(self, bridge, name, tag, iface_ids=None):
        self.bridges[bridge].append(name)
        self.ports[name] = {"tag": tag, "external_ids": {}}
        self.ifaces[name] = {"external_ids": dict(iface_ids or {}), "statistics": {}}

    def unplug(self, name):
        for ports in self.bridges.values():
            if name in ports:
                ports.remove(name)
        self.ports.pop(name, None)
        self.ifaces.pop(name, None)

    def __call__(self, argv, check=True, **_kwargs):
        assert argv[0] == "ovs-vsctl" and argv[1].startswith("--timeout=")
        self.calls.append(list(argv))
        rc, out = self._answer(list(argv[2:]))
        if check and rc != 0:
            raise CommandError(argv, rc, "", "ovs-vsctl: no such row")
        return Result(list(argv), rc, out, "")

    @staticmethod
    def _datum(value):
        if isinstance(value, dict):
            return ["map", [[k, v] for k, v in sorted(value.items())]]
        if value is None:
            return ["set", []]
        return value

    def _answer(self, args):
        if args[0] == "br-exists":
            return (0 if args[1] in self.bridges else 2), ""
        if args[0] == "list-ports":
            return 0, "".join(p + "\n" for p in sorted(self.bridges[args[1]]))
        if args[0] == "port-to-br":
            for bridge, ports in self.bridges.items():
                if args[1] in ports:
                    return 0, bridge + "\n"
            return 1, ""
        if args[:2] == ["--format=json", "--data=json"]:
            columns = args[2].split("=", 1)[1].split(",")
            table, records = args[4], args[5:]
            rows = self.ports if table == "Port" else self.ifaces
            if any(r not in rows for r in records):
                return 1, ""
            data = [[name if c == "name" else self._datum(rows[name].get(c)) for c in columns]
                    for name in (records or sorted(rows))]
            return 0, json.dumps({"headings": columns, "data": data})
        if args[0] == "set" and args[1] == "Port":
            for pair in args[3:]:
                key, value = pair.split(":", 1)[1].split("=", 1)
                self.ports[args[2]]["external_ids"][key] = shlex.split(value)[0]
            return 0, ""
        if args[0] == "remove" and args[1] == "Port":
            for key in args[4:]:
                self.ports[args[2]]["external_ids"].pop(key, None)
            return 0, ""
        if args[:2] == ["--if-exists", "del-port"]:
            self.unplug(args[-1])
            return 0, ""
        raise AssertionError("unexpected ovs-vsctl %s" % args)


class FakeDomain:
    """A libvirt domain as libvirt-python shows it; create/destroy plug/unplug its legs the way
    libvirt does (ports with the VLAN tag, Interface external_ids attached-mac/iface-id)."""

    def __init__(self, conn, xml, uuid="0b9e5c2a-0000-4000-8000-000000000001"):
        self.conn = conn
        self.xml = xml
        self.uuid = uuid
        self.live = None
        self.paused = False
        self.persistent = True
        self.auto = False
        self.fail_create = None
        self.metadata_calls = []

    def name(self):
        return ET.fromstring(self.xml).findtext("name")

    def UUIDString(self):  # noqa: N802 (libvirt's name)
        return self.uuid

    def XMLDesc(self, flags=0):  # noqa: N802
        return self.xml if (flags & _vm.XML_INACTIVE or self.live is None) else self.live

    def state(self):
        if self.live is None:
            return [5, 0]
        return [3 if self.paused else 1, 0]

    def isActive(self):  # noqa: N802
        return self.live is not None

    def isPersistent(self):  # noqa: N802
        return self.persistent

    def autostart(self):
        return self.auto

    def setAutostart(self, flag):  # noqa: N802
        self.conn.calls.append(("setAutostart", self.name(), flag))
        self.auto = bool(flag)

    def create(self):
        self.conn.calls.append(("create", self.name()))
        if self.fail_create:
            raise _vm.LibvirtError(self.fail_create)
        self.live = self.xml
        root = ET.fromstring(self.xml)
        for iface in root.findall("devices/interface"):
            tag = iface.find("vlan/tag")
            self.conn.ovs.plug(iface.find("source").get("bridge"), iface.find("target").get("dev"),
                               int(tag.get("id")) if tag is not None else None,
                               {"attached-mac": iface.find("mac").get("address"),
                                "iface-id": iface.find("virtualport/parameters").get("interfaceid")})

    def destroy(self):
        self.conn.calls.append(("destroy", self.name()))
        for iface in ET.fromstring(self.live).findall("devices/interface"):
            self.conn.ovs.unplug(iface.find("target").get("dev"))
        self.live = None
        self.paused = False

    def resume(self):
        self.conn.calls.append(("resume", self.name()))
        self.paused = False

    def undefineFlags(self, flags):  # noqa: N802
        self.conn.calls.append(("undefine", self.name(), flags))
        self.persistent = False
        if self.live is None:
            self.conn.domains.remove(self)

    def setMetadata(self, kind, xml, key, uri, flags):  # noqa: N802
        self.conn.calls.append(("setMetadata", self.name(), flags))
        self.metadata_calls.append((kind, xml, key, uri, flags))
        # what libvirt does: the element goes into the namespace under the prefix
        root = ET.fromstring(self.live)
        meta = root.find("metadata")
        meta.remove(meta.find("{%s}instance" % uri))
        elem = ET.fromstring(xml)
        new = ET.SubElement(meta, "{%s}instance" % uri)
        for child in elem:
            ET.SubElement(new, "{%s}%s" % (uri, child.tag)).text = child.text
        self.live = ET.tostring(root, encoding="unicode")


class FakeConn:
    def __init__(self, ovs):
        self.ovs = ovs
        self.domains = []
        self.calls = []

    def listAllDomains(self, flags=0):  # noqa: N802
        assert flags == 0
        return list(self.domains)

    def defineXML(self, xml):  # noqa: N802
        self.calls.append(("defineXML", ET.fromstring(xml).findtext("name")))
        ET.fromstring(xml)  # libvirt rejects what is not XML
        name = ET.fromstring(xml).findtext("name")
        for dom in self.domains:
            if dom.name() == name:
                dom.xml = xml
                dom.persistent = True
                return dom
        uuid = "0b9e5c2a-0000-4000-8000-%012d" % (len(self.domains) + 1)
        if "<uuid>" not in xml:  # libvirt gives a new domain its uuid
            xml = xml.replace("</name>", "</name>\n  <uuid>%s</uuid>" % uuid, 1)
        dom = FakeDomain(self, xml, uuid=uuid)
        self.domains.append(dom)
        return dom

    @property
    def writes(self):
        return [c for c in self.calls if c[0] != "listAllDomains"]


@pytest.fixture
def image(tmp_path):
    kernel = tmp_path / "vmlinuz"
    initrd = tmp_path / "initrd.img"
    kernel.write_bytes(b"MZ kernel")
    initrd.write_bytes(b"\x1f\x8b initrd")
    return {"kernel": str(kernel), "initrd": str(initrd), "cmdline": "console=ttyS0 quiet"}


@pytest.fixture
def meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24683520 kB\nMemFree:        20000000 kB\nMemAvailable:    4194304 kB\n")
    return path


@pytest.fixture
def host(tmp_path, meminfo):
    """(VmKind, FakeConn, FakeOVS) with the console and QEMU log directories under tmp_path."""
    ovs = FakeOVS()
    conn = FakeConn(ovs)
    (tmp_path / "console").mkdir()
    (tmp_path / "qemu").mkdir()
    kind = VmKind(run=ovs, conn=conn, meminfo=str(meminfo), console_dir=str(tmp_path / "console"),
                  qemu_log_dir=str(tmp_path / "qemu"))
    kind.start_wait = 0.5
    return kind, conn, ovs


def make_spec(image, **over):
    spec = {"id": "fw1", "type": "wire", "chain": "web", "step": "2", "vlans": {"left": 101, "right": 102},
            "host_bridge": "fs-host", "memory_mib": 96, "vcpus": 1, "image": dict(image), "running": True}
    spec.update(over)
    return spec


def unchanged(conn, ovs):
    """Nothing was written to libvirt or OVSDB."""
    return conn.writes == [] and ovs.mutations == []


# ------------------------------------------------------------------------------------------------
# desired_xml (pure)
def test_desired_xml_domain_legs_and_metadata(image):
    spec = make_spec(image)
    text = desired_xml(spec)
    root = ET.fromstring(text)
    assert root.get("type") == "qemu"  # TCG: KVM guests hang on these machines
    assert root.findtext("name") == "fs-fw1"
    assert root.find("uuid") is None
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "96"
    assert root.findtext("vcpu") == "1"
    assert root.findtext("os/kernel") == image["kernel"]
    assert root.findtext("os/initrd") == image["initrd"]
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"
    legs = root.findall("devices/interface")
    assert [i.find("target").get("dev") for i in legs] == ["fs-fw1-l", "fs-fw1-r"]
    for iface, leg, tag, slot in zip(legs, ("left", "right"), ("101", "102"), ("0x03", "0x04")):
        assert iface.get("type") == "bridge"
        assert iface.find("source").get("bridge") == "fs-host"
        assert iface.find("virtualport").get("type") == "openvswitch"
        assert iface.find("virtualport/parameters").get("interfaceid") == interface_id("fw1", leg)
        assert iface.find("vlan/tag").get("id") == tag
        assert iface.find("vlan").get("trunk") is None  # an access port
        assert iface.find("mac").get("address") == stable_mac("fs", "fw1", leg)
        assert iface.find("model").get("type") == "virtio"
        assert iface.find("address").get("slot") == slot  # the guest finds left before right
    meta = root.find("metadata/fs:instance", NS)
    assert {child.tag.split("}")[1]: child.text for child in meta} == {
        "id": "fw1", "kind": "vm", "type": "wire", "chain": "web", "step": "2", "vlan_left": "101", "vlan_right": "102"}
    assert 'xmlns:fs="https://flowstream.dev/xmlns/instance/1"' in text  # declared on the element itself
    assert root.find("devices/serial/log").get("file") == "/var/log/libvirt/qemu/fs-fw1.console.log"
    assert root.find("devices/disk") is None
    # a guest that panics tells QEMU (ISA pvpanic, port 0x505) and libvirt ends it: no vCPU left
    # spinning in a panicked kernel, no crash loop either
    assert root.find("devices/panic").get("model") == "isa"
    assert root.find("devices/panic/address").get("iobase") == "0x505"
    assert root.findtext("on_crash") == "destroy" and root.findtext("on_reboot") == "restart"


def test_desired_xml_is_deterministic_and_keeps_a_uuid(image):
    spec = make_spec(image)
    assert desired_xml(spec) == desired_xml(dict(spec))
    assert ET.fromstring(desired_xml(spec, domain_uuid="1234")).findtext("uuid") == "1234"
    assert stable_mac("fs", "fw1", "left") != stable_mac("fs", "fw1", "right")
    assert interface_id("fw1", "left") == interface_id("fw1", "left") != interface_id("fw2", "left")


def test_desired_xml_quotes_what_it_is_given(image):
    spec = make_spec(dict(image, cmdline="console=ttyS0 fs.note=\"a<b&c\""), chain="we'b<&>\"")
    root = ET.fromstring(desired_xml(spec))
    assert root.find("metadata/fs:instance/fs:chain", NS).text == "we'b<&>\""
    assert root.findtext("os/cmdline") == "console=ttyS0 fs.note=\"a<b&c\""


def test_desired_xml_defaults_cmdline_and_omits_missing_chain(image):
    spec = make_spec({"kernel": image["kernel"], "initrd": image["initrd"]}, chain=None, step=None)
    root = ET.fromstring(desired_xml(spec))
    assert root.findtext("os/cmdline") == "console=ttyS0"
    assert root.find("metadata/fs:instance/fs:chain", NS).text is None


def test_desired_xml_disk_image_is_shared_read_only(tmp_path):
    disk = tmp_path / "ids.qcow2"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 60)
    root = ET.fromstring(desired_xml(make_spec({"disk": str(disk), "format": "qcow2"})))
    assert root.find("os/kernel") is None and root.find("os/boot").get("dev") == "hd"
    d = root.find("devices/disk")
    assert d.find("source").get("file") == str(disk)
    assert d.find("driver").get("type") == "qcow2"
    assert d.find("target").get("bus") == "virtio"
    assert d.find("readonly") is not None


def test_wanted_shape_round_trips_through_the_xml(image, tmp_path):
    """What ensure compares: the shape of a spec equals the shape read back from its XML."""
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 512)
    for spec in (make_spec(image), make_spec(image, chain=None, step=None),
                 make_spec({"disk": str(disk), "format": "raw"}, vcpus=2, memory_mib=256)):
        inst, _info, shape = parse_domain_xml(desired_xml(spec))
        assert inst == spec["id"]
        assert shape == wanted_shape(spec)


# ------------------------------------------------------------------------------------------------
# parse_domain_xml: libvirt's own rendering of a defined domain (virsh dumpxml --inactive, 9.0)
LIBVIRT_XML = """<domain type='qemu'>
  <name>fs-w1</name>
  <uuid>450146d3-58fc-404c-b24b-6b077651a936</uuid>
  <metadata>
    <fs:instance xmlns:fs="https://flowstream.dev/xmlns/instance/1">
      <fs:id>w1</fs:id>
      <fs:kind>vm</fs:kind>
      <fs:type>wire</fs:type>
      <fs:chain>c1</fs:chain>
      <fs:step>1</fs:step>
      <fs:vlan_left>101</fs:vlan_left>
      <fs:vlan_right>102</fs:vlan_right>
    </fs:instance>
  </metadata>
  <memory unit='KiB'>98304</memory>
  <currentMemory unit='KiB'>98304</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/lib/flowstream-lab/images/wire/vmlinuz</kernel>
    <initrd>/var/lib/flowstream-lab/images/wire/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <mac address='02:19:6d:50:43:8c'/>
      <source bridge='fs-host'/>
      <vlan>
        <tag id='101'/>
      </vlan>
      <virtualport type='openvswitch'>
        <parameters interfaceid='12a29ef2-e0b3-4bf5-9a87-0055d71c49b4'/>
      </virtualport>
      <target dev='fs-w1-l'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <interface type='bridge'>
      <mac address='02:21:A3:C0:28:F9'/>
      <source bridge='fs-host'/>
      <vlan>
        <tag id='102'/>
      </vlan>
      <virtualport type='openvswitch'>
        <parameters interfaceid='d0a0acd3-f4df-4560-ade0-2d8ca9466374'/>
      </virtualport>
      <target dev='fs-w1-r'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
  </devices>
</domain>
"""


def test_parse_domain_xml_as_libvirt_renders_it():
    inst, info, shape = parse_domain_xml(LIBVIRT_XML)
    assert inst == "w1"
    assert info == {
        "kind": "vm", "type": "wire", "chain": "c1", "step": "1", "state": "stopped",
        "legs": {"left": {"port": "fs-w1-l", "vlan": 101}, "right": {"port": "fs-w1-r", "vlan": 102}},
        "memory_mib": 96, "vcpus": 1, "domain": "fs-w1", "uuid": "450146d3-58fc-404c-b24b-6b077651a936",
        "vlans": {"left": 101, "right": 102}, "host_bridge": "fs-host"}
    assert shape["mac.right"] == "02:21:a3:c0:28:f9"  # compared lower-case
    assert shape["image.cmdline"] == "console=ttyS0 quiet" and shape["image.disk"] is None


def test_parse_domain_xml_ignores_domains_that_are_not_ours():
    assert parse_domain_xml("<domain type='kvm'><name>web</name><memory>1024</memory></domain>") is None
    other = LIBVIRT_XML.replace("https://flowstream.dev/xmlns/instance/1", "https://example.org/other")
    assert parse_domain_xml(other) is None


def test_mem_available():
    assert mem_available_mib("MemTotal: 100 kB\nMemAvailable:    4194304 kB\n") == 4096
    with pytest.raises(ValueError):
        mem_available_mib("MemTotal: 100 kB\n")


# ------------------------------------------------------------------------------------------------
# validation: a clear error naming the instance and the field, and nothing changed
def test_missing_image_is_refused_before_anything_changes(host, image):
    kind, conn, ovs = host
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(dict(image, kernel="/nonexistent/vmlinuz")))
    assert (err.value.instance, err.value.field) == ("fw1", "image.kernel")
    assert "/nonexistent/vmlinuz does not exist" in str(err.value)
    assert unchanged(conn, ovs)


@pytest.mark.parametrize("image_over, field", [
    ({"initrd": None}, "image.initrd"),
    ({"initrd": "relative/initrd.img"}, "image.initrd"),
    ({"kernel": None, "initrd": None, "cmdline": None}, "image"),
    ({"disk": "/nonexistent/disk.qcow2"}, "image"),  # both kernel and disk
])
def test_bad_image_fields(host, image, image_over, field):
    kind, conn, ovs = host
    img = dict(image, **image_over)
    img = {k: v for k, v in img.items() if v is not None}
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(img))
    assert err.value.field == field
    assert unchanged(conn, ovs)


def test_missing_disk_image(host):
    kind, conn, ovs = host
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec({"disk": "/nonexistent/ids.qcow2"}))
    assert (err.value.instance, err.value.field) == ("fw1", "image.disk")
    assert unchanged(conn, ovs)


@pytest.mark.parametrize("over, field", [
    ({"id": "Fw1"}, "instance"), ({"id": "a-very-long-id"}, "instance"), ({"id": "1fw"}, "instance"),
    ({"vlans": {"left": 1, "right": 102}}, "vlans.left"),
    ({"vlans": {"left": 101}}, "vlans"), ({"vlans": {"left": 101, "right": 101}}, "vlans"),
    ({"vlans": {"left": 0, "right": 102}}, "vlans.left"), ({"vlans": {"left": 101, "right": 4095}}, "vlans.right"),
    ({"vlans": {"left": True, "right": 102}}, "vlans.left"),
    ({"memory_mib": 8}, "memory"), ({"memory_mib": "96"}, "memory"), ({"vcpus": 0}, "vcpus"),
    ({"host_bridge": ""}, "host_bridge"), ({"host_bridge": "br-missing"}, "host_bridge"),
])
def test_bad_request_fields(host, image, over, field):
    kind, conn, ovs = host
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image, **over))
    assert err.value.field == field, str(err.value)
    assert unchanged(conn, ovs)


def test_vlan_already_tagged_on_the_host_bridge(host, image):
    kind, conn, ovs = host
    ovs.plug("fs-host", "fs-ids2-l", 101)
    ovs.ports["fs-ids2-l"]["external_ids"] = {"flowstream-instance": "ids2", "flowstream-kind": "kernel"}
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert (err.value.instance, err.value.field) == ("fw1", "vlans.left")
    assert "VLAN 101 is already the tag of port fs-ids2-l on fs-host (instance ids2)" in str(err.value)
    assert unchanged(conn, ovs)


def test_vlan_of_a_stopped_vm_instance_is_taken_too(host, image):
    """A stopped VM has no ports, but its VLANs come back with it: its metadata reserves them."""
    kind, conn, ovs = host
    conn.defineXML(desired_xml(make_spec(image, id="mon1", vlans={"left": 201, "right": 102})))
    conn.calls.clear()
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert err.value.field == "vlans.right"
    assert "VLAN 102 belongs to VM instance mon1 (domain fs-mon1, stopped)" in str(err.value)
    assert unchanged(conn, ovs)


def test_host_out_of_memory(host, image, meminfo):
    kind, conn, ovs = host
    meminfo.write_text("MemTotal: 1048576 kB\nMemAvailable:  409600 kB\n")  # 400 MiB
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert (err.value.instance, err.value.field) == ("fw1", "memory")
    assert "400 MiB available" in str(err.value) and "needs 480" in str(err.value)
    assert unchanged(conn, ovs)
    meminfo.write_text("MemTotal: 1048576 kB\nMemAvailable:  491520 kB\n")  # 480 MiB: just enough
    assert kind.ensure(make_spec(image))


def test_a_domain_flowstream_did_not_define_is_left_alone(host, image):
    kind, conn, ovs = host
    conn.defineXML("<domain type='qemu'><name>fs-fw1</name><memory>1024</memory></domain>")
    conn.calls.clear()
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert err.value.field == "instance" and "did not define" in str(err.value)
    with pytest.raises(InstanceError):
        kind.remove("fw1")
    assert unchanged(conn, ovs)


def test_leg_port_of_another_kind_is_refused(host, image):
    kind, conn, ovs = host
    ovs.plug("fs-host", "fs-fw1-l", 101)
    ovs.ports["fs-fw1-l"]["external_ids"] = {"flowstream-instance": "fw1", "flowstream-kind": "kernel"}
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert err.value.field == "instance" and "belongs to a kernel instance" in str(err.value)
    assert unchanged(conn, ovs)
    assert kind.remove("fw1") == []  # not a VM leg: remove leaves it to its own kind
    assert "fs-fw1-l" in ovs.ports


# ------------------------------------------------------------------------------------------------
# converging
LABELS_LEFT = ("labelled fs-fw1-l (flowstream-chain=web, flowstream-instance=fw1, flowstream-kind=vm, "
               "flowstream-leg=left, flowstream-step=2, flowstream-type=wire)")


def test_ensure_defines_starts_labels_then_changes_nothing(host, image):
    kind, conn, ovs = host
    actions = kind.ensure(make_spec(image))
    assert actions == ["defined domain fs-fw1 (96 MiB, 1 vCPU, VLANs 101/102 on fs-host)", "started domain fs-fw1",
                       LABELS_LEFT, LABELS_LEFT.replace("fs-fw1-l", "fs-fw1-r").replace("=left", "=right")]
    assert [c[0] for c in conn.calls] == ["defineXML", "setAutostart", "create"]
    assert ovs.ports["fs-fw1-l"] == {"tag": 101, "external_ids": {
        "flowstream-instance": "fw1", "flowstream-kind": "vm", "flowstream-type": "wire",
        "flowstream-chain": "web", "flowstream-step": "2", "flowstream-leg": "left"}}
    assert ["ovs-vsctl", "--timeout=10", "set", "Port", "fs-fw1-r", "external_ids:flowstream-chain=web",
            "external_ids:flowstream-instance=fw1", "external_ids:flowstream-kind=vm",
            "external_ids:flowstream-leg=right", "external_ids:flowstream-step=2",
            "external_ids:flowstream-type=wire"] in ovs.calls
    conn.calls.clear()
    ovs.calls.clear()
    assert kind.ensure(make_spec(image)) == []
    assert unchanged(conn, ovs)
    assert kind.observe_all() == {"fw1": {
        "kind": "vm", "type": "wire", "chain": "web", "step": "2", "state": "running", "domain_state": "running",
        "legs": {"left": {"port": "fs-fw1-l", "vlan": 101}, "right": {"port": "fs-fw1-r", "vlan": 102}},
        "memory_mib": 96, "vcpus": 1, "domain": "fs-fw1", "uuid": conn.domains[0].uuid, "persistent": True,
        "vlans": {"left": 101, "right": 102}, "host_bridge": "fs-host"}}


def test_check_mode_reports_and_changes_nothing(host, image):
    kind, conn, ovs = host
    actions = kind.ensure(make_spec(image), check_mode=True)
    assert actions[:2] == ["defined domain fs-fw1 (96 MiB, 1 vCPU, VLANs 101/102 on fs-host)", "started domain fs-fw1"]
    assert len(actions) == 4
    assert unchanged(conn, ovs)
    kind.ensure(make_spec(image))
    spec = make_spec(image, memory_mib=128)
    assert kind.ensure(spec, check_mode=True) == ["redefined domain fs-fw1: memory_mib 96 -> 128",
                                                  "restarted domain fs-fw1 to apply memory_mib",
                                                  LABELS_LEFT, LABELS_LEFT.replace("fs-fw1-l", "fs-fw1-r").replace("=left", "=right")]
    assert ET.fromstring(conn.domains[0].xml).findtext("memory") == "96"  # nothing redefined
    assert conn.domains[0].live == conn.domains[0].xml


def test_hardware_change_redefines_and_restarts(host, image):
    kind, conn, ovs = host
    kind.ensure(make_spec(image))
    conn.calls.clear()
    actions = kind.ensure(make_spec(image, memory_mib=128, vlans={"left": 101, "right": 103}))
    assert actions[:2] == ["redefined domain fs-fw1: memory_mib 96 -> 128, vlans.right 102 -> 103",
                           "restarted domain fs-fw1 to apply memory_mib, vlans.right"]
    assert [c[0] for c in conn.calls] == ["defineXML", "destroy", "create"]
    assert ovs.ports["fs-fw1-r"]["tag"] == 103 and ovs.ports["fs-fw1-r"]["external_ids"]["flowstream-leg"] == "right"
    assert ET.fromstring(conn.domains[0].xml).findtext("uuid") == conn.domains[0].uuid  # same domain, redefined
    assert kind.ensure(make_spec(image, memory_mib=128, vlans={"left": 101, "right": 103})) == []


def test_metadata_change_is_applied_live_without_a_restart(host, image):
    kind, conn, ovs = host
    kind.ensure(make_spec(image))
    conn.calls.clear()
    actions = kind.ensure(make_spec(image, chain=None, step="3"))
    assert actions == ["redefined domain fs-fw1: chain web -> (none), step 2 -> 3",
                       "updated the instance metadata of running domain fs-fw1",
                       "labelled fs-fw1-l (flowstream-step=3)", "removed labels flowstream-chain from fs-fw1-l",
                       "labelled fs-fw1-r (flowstream-step=3)", "removed labels flowstream-chain from fs-fw1-r"]
    assert [c[0] for c in conn.calls] == ["defineXML", "setMetadata"]
    kind_, xml, key, uri, flags = conn.domains[0].metadata_calls[0]
    assert (kind_, key, uri, flags) == (_vm.METADATA_ELEMENT, "fs", METADATA_NS, _vm.AFFECT_LIVE)
    assert xml.startswith("<instance><id>fw1</id>") and "xmlns" not in xml  # libvirt adds the namespace
    assert "flowstream-chain" not in ovs.ports["fs-fw1-l"]["external_ids"]
    assert kind.ensure(make_spec(image, chain=None, step="3")) == []


def test_stop_start_and_resume(host, image):
    kind, conn, ovs = host
    kind.ensure(make_spec(image))
    assert kind.ensure(make_spec(image, running=False)) == [
        "stopped domain fs-fw1 (destroyed: the guest keeps no state)", "disabled autostart of fs-fw1"]
    assert "fs-fw1-l" not in ovs.ports  # libvirt unplugged the legs
    assert kind.observe_all()["fw1"]["state"] == "stopped"
    assert kind.ensure(make_spec(image, running=False)) == []
    actions = kind.ensure(make_spec(image))
    assert actions[:2] == ["started domain fs-fw1", "enabled autostart of fs-fw1"]
    assert ovs.ports["fs-fw1-l"]["external_ids"]["flowstream-instance"] == "fw1"  # labelled again
    conn.domains[0].paused = True
    assert kind.observe_all()["fw1"]["state"] == "stopped"
    assert kind.ensure(make_spec(image)) == ["resumed domain fs-fw1"]


def test_labels_lost_when_libvirt_replugged_the_legs_are_put_back(host, image):
    """libvirt re-creates the ports when it restarts a domain itself (autostart, migration)."""
    kind, conn, ovs = host
    kind.ensure(make_spec(image))
    ovs.ports["fs-fw1-l"]["external_ids"] = {}
    assert kind.ensure(make_spec(image)) == [LABELS_LEFT]
    assert kind.ensure(make_spec(image)) == []


def test_failed_start_leaves_the_host_as_before(host, image, tmp_path):
    kind, conn, ovs = host
    (tmp_path / "qemu" / "fs-fw1.log").write_text("qemu-system-x86_64: -kernel: could not load kernel\n")
    real_define = conn.defineXML

    def define_failing(xml):
        dom = real_define(xml)
        dom.fail_create = "internal error: process exited while connecting to monitor"
        return dom

    conn.defineXML = define_failing
    with pytest.raises(InstanceError) as err:
        kind.ensure(make_spec(image))
    assert (err.value.instance, err.value.field) == ("fw1", "domain")
    assert "process exited while connecting to monitor" in str(err.value)
    assert "could not load kernel" in str(err.value)  # the QEMU log's last words
    assert conn.domains == []  # the new definition was rolled back
    assert [c[0] for c in conn.calls] == ["defineXML", "setAutostart", "create", "undefine"]


def test_remove_destroys_undefines_and_leaves_no_files(host, image, tmp_path):
    kind, conn, ovs = host
    kind.ensure(make_spec(image))
    console = tmp_path / "console"
    for name in ("fs-fw1.console.log", "fs-fw1.console.log.0", "fs-fw10.console.log"):
        (console / name).write_text("flowstream-wire: ready\n")
    (tmp_path / "qemu" / "fs-fw1.log").write_text("qemu\n")
    conn.calls.clear()
    assert kind.remove("fw1", check_mode=True) == [
        "destroyed domain fs-fw1", "undefined domain fs-fw1",
        "removed %s/fs-fw1.console.log" % console, "removed %s/fs-fw1.console.log.0" % console,
        "removed %s/qemu/fs-fw1.log" % tmp_path]
    assert conn.writes == [] and (console / "fs-fw1.console.log").exists()
    actions = kind.remove("fw1")
    assert actions[:2] == ["destroyed domain fs-fw1", "undefined domain fs-fw1"] and len(actions) == 5
    assert conn.domains == [] and "fs-fw1-l" not in ovs.ports and "fs-fw1-r" not in ovs.ports
    assert sorted(p.name for p in console.iterdir()) == ["fs-fw10.console.log"]  # another instance's
    assert kind.remove("fw1") == []


def test_remove_takes_leftover_leg_ports_of_a_dead_domain(host, image):
    kind, conn, ovs = host
    ovs.plug("fs-host", "fs-fw1-l", 101, {"attached-mac": stable_mac("fs", "fw1", "left")})
    ovs.plug("fs-host", "fs-fw1-r", 102, {"attached-mac": "52:54:00:00:00:01"})  # nobody we know
    assert kind.remove("fw1") == ["removed leftover port fs-fw1-l from fs-host"]
    assert "fs-fw1-l" not in ovs.ports and "fs-fw1-r" in ovs.ports


def test_leg_counters_from_interface_statistics(host, image):
    kind, conn, ovs = host
    with pytest.raises(InstanceError) as err:
        kind.leg_counters("fw1")
    assert err.value.field == "instance"
    kind.ensure(make_spec(image))
    ovs.ifaces["fs-fw1-l"]["statistics"] = {"rx_packets": 5, "tx_packets": 6, "rx_bytes": 490, "tx_bytes": 588,
                                            "rx_dropped": 0, "collisions": 0}
    counters = kind.leg_counters("fw1")
    assert counters == {"left": {"rx_packets": 5, "tx_packets": 6, "rx_bytes": 490, "tx_bytes": 588},
                        "right": {"rx_packets": 0, "tx_packets": 0, "rx_bytes": 0, "tx_bytes": 0}}
    assert ovs.calls[-1] == ["ovs-vsctl", "--timeout=10", "--format=json", "--data=json", "--columns=name,statistics",
                             "list", "Interface", "fs-fw1-l", "fs-fw1-r"]
