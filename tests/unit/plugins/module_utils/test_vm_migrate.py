# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_migrate without libvirt or a switch: the destination XML, the prepared bundle and its
inverse (against test_openflow's in-memory switch), the checks that fail before anything
changes, and the switchover - which lifecycle event flips the switch, once, and what happens when
the migration fails after the flip - against fake libvirt connections whose migration fires the
events real libvirt fires, in its order."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _vm
from ansible_collections.flowstream.platform.plugins.module_utils import _vm_migrate as vmm
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import OfctlError, Port
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import OpenFlowError

from test_openflow import FakeSwitch  # pylint: disable=import-error  # the in-memory switch of the Reconciler's tests

NS = {"fs": _vm.METADATA_NS}
COOKIE = 0xF5E0000000000001
SRC_URI = "qemu+tcp://198.18.70.11/system"
DST_URI = "qemu+tcp://198.18.70.12/system"
DST_VLANS = {"left": 201, "right": 202}


def spec(**over):
    out = {"id": "w1", "type": "wire", "chain": "web", "step": "1", "vlans": {"left": 101, "right": 102},
           "host_bridge": "fs-host", "memory_mib": 96, "vcpus": 1,
           "image": {"kernel": "/img/vmlinuz", "initrd": "/img/initrd.img"}}
    out.update(over)
    return out


# ------------------------------------------------------------------------------------------------
# the destination XML
def test_retarget_moves_the_legs_and_the_metadata_and_nothing_else():
    before = _vm.desired_xml(spec(), domain_uuid="5c1e0000-0000-4000-8000-000000000001")
    after = _vm.retarget_domain_xml(before, DST_VLANS, "fs-other")
    inst, info, shape = _vm.parse_domain_xml(after)
    assert inst == "w1" and info["vlans"] == DST_VLANS and info["host_bridge"] == "fs-other"
    want = _vm.wanted_shape(spec(vlans=DST_VLANS, host_bridge="fs-other"))
    assert {k: shape[k] for k in want} == want          # MACs, interface ids, taps, image, memory: the same
    root = ET.fromstring(after)
    meta = root.find("metadata/fs:instance", NS)
    assert (meta.findtext("fs:vlan_left", namespaces=NS), meta.findtext("fs:vlan_right", namespaces=NS)) == ("201", "202")
    assert root.findtext("uuid") == "5c1e0000-0000-4000-8000-000000000001"
    for iface in root.findall("devices/interface"):
        assert len(iface.findall("vlan/tag")) == 1 and iface.find("vlan").get("trunk") is None
    # libvirt reads the metadata by its namespace; the prefix stays fs
    assert 'xmlns:fs="%s"' % _vm.METADATA_NS in after and "<fs:instance>" in after


def test_retarget_keeps_the_bridge_when_none_is_given_and_adds_a_missing_vlan():
    text = _vm.desired_xml(spec()).replace("<vlan><tag id='102'/></vlan>", "")
    after = _vm.retarget_domain_xml(text, DST_VLANS)
    info = _vm.parse_domain_xml(after)[1]
    assert info["vlans"] == DST_VLANS and info["host_bridge"] == "fs-host"


def test_retarget_as_libvirt_renders_a_running_domain():
    live = ("<domain type='qemu' id='3'><name>fs-w1</name><metadata><fs:instance xmlns:fs='%s'><fs:id>w1</fs:id>"
            "<fs:kind>vm</fs:kind><fs:vlan_left>101</fs:vlan_left><fs:vlan_right>102</fs:vlan_right></fs:instance>"
            "</metadata><devices><interface type='bridge'><mac address='02:19:6d:50:43:8c'/><source bridge='fs-host'/>"
            "<vlan>\n<tag id='101'/>\n</vlan><virtualport type='openvswitch'><parameters interfaceid='x'/></virtualport>"
            "<target dev='fs-w1-l'/><alias name='net0'/></interface><interface type='bridge'><source bridge='fs-host'/>"
            "<vlan><tag id='102'/></vlan><target dev='fs-w1-r'/></interface></devices></domain>") % _vm.METADATA_NS
    after = ET.fromstring(_vm.retarget_domain_xml(live, DST_VLANS))
    assert [i.find("vlan/tag").get("id") for i in after.findall("devices/interface")] == ["201", "202"]
    assert after.find("devices/interface/alias").get("name") == "net0"


@pytest.mark.parametrize("text,words", [
    ("<domain><name>fs-w1</name><devices/></domain>", "no <fs:instance> metadata"),
    ("<domain><name>fs-w1</name><metadata><fs:instance xmlns:fs='%s'><fs:id>w1</fs:id></fs:instance></metadata>"
     "<devices><interface type='bridge'><target dev='fs-w1-l'/></interface></devices></domain>" % _vm.METADATA_NS,
     "has no right leg (an interface with target dev fs-w1-r)"),
])
def test_retarget_refuses_what_is_not_a_whole_instance(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        _vm.retarget_domain_xml(text, DST_VLANS)


# ------------------------------------------------------------------------------------------------
# the prepared bundle and its inverse
def via(trunk, left, right):
    return ["priority=100,in_port=1,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%d" % (4096 + left, trunk),
            "priority=100,in_port=%d,dl_vlan=%d,actions=pop_vlan,output:2" % (trunk, right),
            "priority=99,in_port=2,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%d" % (4096 + right, trunk),
            "priority=100,in_port=%d,dl_vlan=%d,actions=pop_vlan,output:1" % (trunk, left)]


def switch_with(flows, others=()):
    return FakeSwitch(flows=[(COOKIE, f) for f in flows] + [(0xAB, f) for f in others])


def test_prepared_flip_changes_nothing_until_applied_then_restore_puts_back_what_was():
    sw = switch_with(via(3, 101, 102), others=["priority=5,in_port=9,actions=drop"])
    before = sw.texts()
    flip = vmm.SwitchFlip(sw, cookie=COOKIE, flows=via(4, 201, 202), prespawn=False)
    report = flip.prepare()
    assert sw.bundles == [] and sw.texts() == before
    assert report["counts"]["flows_modified"] == 2 and report["counts"]["flows_added"] == 2
    assert report["counts"]["flows_removed"] == 2 and report["changed"]
    flip.arm(60)                    # nothing to start without a real ovs-ofctl
    flip.apply()
    assert len(sw.bundles) == 1     # ONE bundle: all of it or nothing
    assert sw.texts(COOKIE) == sorted("table=0," + f for f in via(4, 201, 202)) and sw.texts(0xAB) == ["table=0,priority=5,in_port=9,actions=drop"]
    flip.restore()
    assert sw.texts() == before
    flip.disarm()


def test_nothing_to_flip_when_the_flows_are_in_place():
    sw = switch_with(via(4, 201, 202))
    flip = vmm.SwitchFlip(sw, cookie=COOKIE, flows=via(4, 201, 202), prespawn=False)
    flip.prepare()
    assert flip.lines == [] and flip.inverse == []
    flip.apply()
    flip.restore()
    assert sw.bundles == []


def test_a_port_the_switch_does_not_have_fails_while_preparing():
    """Never a placeholder port number in a bundle prepared for a real flip (the Reconciler's
    check mode would put one in for a port the same run creates first)."""
    sw = FakeSwitch(flows=[(COOKIE, f) for f in via(3, 101, 102)], ports=[Port("3", "fsm-mh1-tr"), Port("4", "fsm-mh2-tr")])
    flip = vmm.SwitchFlip(sw, cookie=COOKIE, flows=["priority=100,in_port=fsm-nope,actions=output:fsm-mh2-tr"], prespawn=False)
    with pytest.raises(OpenFlowError, match="names port 'fsm-nope', which the switch does not have"):
        flip.prepare()
    flip = vmm.SwitchFlip(sw, cookie=COOKIE, flows=["priority=100,in_port=fsm-mh1-tr,actions=output:fsm-mh2-tr"], prespawn=False)
    flip.prepare()
    assert flip.lines and all("fsm-" not in line for line in flip.lines) and sw.bundles == []


def test_bad_flows_fail_while_preparing():
    sw = switch_with(via(3, 101, 102))
    with pytest.raises(OpenFlowError):
        vmm.SwitchFlip(sw, cookie=COOKIE, flows=["priority=1,BAD,actions=drop"], prespawn=False).prepare()
    with pytest.raises(OpenFlowError, match="sets a cookie"):
        vmm.SwitchFlip(sw, cookie=COOKIE, flows=["cookie=0x5,priority=1,actions=drop"], prespawn=False).prepare()
    assert sw.bundles == []


_FLOW = st.tuples(st.integers(0, 1), st.sampled_from([10, 20]), st.sampled_from(["in_port=1", "in_port=2", "ip"]),
                  st.sampled_from(["output:3", "output:4", "drop"]), st.sampled_from(["", ",idle_timeout=30"]),
                  st.sampled_from([0, 1, 2]))


def _texts(items):
    seen = {}
    for table, prio, match, actions, extra, cookie in items:
        seen[(table, prio, match)] = ("table=%d,priority=%d,%s%s,actions=%s" % (table, prio, match, extra, actions), cookie)
    return list(seen.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(_FLOW, max_size=6), st.lists(_FLOW, max_size=6))
def test_the_inverse_bundle_undoes_any_flip(have, want):
    """Whatever the cookie range held and whatever it should hold: apply, then the inverse, and
    the switch holds exactly what it held (flows added, removed, modified, re-added for other
    timeouts, moved between cookies of the range)."""
    base = 0xF5E0000000000000
    sw = FakeSwitch(flows=[(base + c, t) for t, c in _texts(have)])
    before = sorted((f.cookie, f.text()) for f in sw.flows.values())
    flows = ["cookie=0x%x,%s" % (base + c, t) if c else t for t, c in _texts(want)]
    flip = vmm.SwitchFlip(sw, cookie=base, cookie_mask="0xffffffffffffff00", flow_cookies=True, flows=flows,
                          prespawn=False)
    flip.prepare()
    flip.apply()
    after = sorted((f.cookie, f.text()) for f in sw.flows.values())
    assert after == sorted((base + c, _canon(t)) for t, c in _texts(want))
    flip.restore()
    assert sorted((f.cookie, f.text()) for f in sw.flows.values()) == before


def _canon(text):
    """The fake switch's text of a flow as written here (test_openflow.fake_parse, FlowEntry.text)."""
    head, _sep, actions = text.partition(",actions=")
    parts = dict(p.split("=", 1) if "=" in p else (p, None) for p in head.split(","))
    out = "table=%s,priority=%s,%s" % (parts.pop("table"), parts.pop("priority"),
                                       ",".join(k if v is None else "%s=%s" % (k, v) for k, v in parts.items() if k != "idle_timeout"))
    if "idle_timeout" in parts:
        out += ",idle_timeout=%s" % parts["idle_timeout"]
    return "%s,actions=%s" % (out, actions)


# ------------------------------------------------------------------------------------------------
# fake libvirt
class FakeDom:
    def __init__(self, world, conn, xml, state=1, autostart=1):
        self.world, self.conn, self.xml, self._state, self._autostart = world, conn, xml, state, autostart
        self.downtime_set = None
        self.migrated = None
        self.aborted = False

    def name(self):
        return ET.fromstring(self.xml).findtext("name")

    def XMLDesc(self, flags=0):  # noqa: N802 (libvirt's names)
        return self.xml

    def state(self):
        return [self._state, 1]

    def autostart(self):
        return self._autostart

    def setAutostart(self, value):  # noqa: N802
        self._autostart = value

    def migrateSetMaxDowntime(self, ms, flags):  # noqa: N802
        self.downtime_set = (ms, flags)

    def abortJob(self):  # noqa: N802
        self.aborted = True

    def jobStats(self, flags):  # noqa: N802
        assert flags == vmm.JOB_STATS_COMPLETED
        return {"downtime": 42, "downtime_net": 40, "time_elapsed": 700, "memory_iteration": 3, "type": 3}

    def migrateToURI3(self, uri, params, flags):  # noqa: N802
        """Fires the events of world["script"] (side, event, detail) in order; raises where the
        script says "fail"; otherwise the domain ends on the destination, as libvirt leaves it."""
        self.migrated = (uri, params, flags)
        for step in self.world["script"]:
            if step == "fail":
                self._state = 1
                raise _vm.LibvirtError("operation failed: job 'migration out' failed: the destination hung up")
            side, event, detail = step
            self.world[side].fire(self.name(), event, detail)
        src, dst = self.world["source"], self.world["destination"]
        src.domains.remove(self)
        dst.domains.append(FakeDom(self.world, dst, params[vmm.PARAM_PERSIST_XML], autostart=0))


class FakeConn:
    def __init__(self, uri, host_uuid):
        self.uri, self.host_uuid = uri, host_uuid
        self.domains = []
        self.callbacks = {}
        self.closed = False

    def listAllDomains(self, flags):  # noqa: N802
        return list(self.domains)

    def getCapabilities(self):  # noqa: N802
        return "<capabilities><host><uuid>%s</uuid></host></capabilities>" % self.host_uuid

    def domainEventRegisterAny(self, dom, event_id, cb, opaque):  # noqa: N802
        assert dom is None and event_id == vmm.EVENT_ID_LIFECYCLE
        self.callbacks[len(self.callbacks) + 1] = (cb, opaque)
        return len(self.callbacks)

    def domainEventDeregisterAny(self, cb_id):  # noqa: N802
        del self.callbacks[cb_id]

    def fire(self, name, event, detail):
        dom = type("Dom", (), {"name": lambda _self: name})()
        for cb, opaque in list(self.callbacks.values()):
            cb(self, dom, event, detail, opaque)

    def close(self):
        self.closed = True


class FakeFlip:
    """A SwitchFlip stand-in that records what happens to the switch."""

    target = "unix:/var/run/openvswitch/fake.mgmt"

    def __init__(self, lines=3, fail_apply=0, fail_prepare=None, fail_restore=False):
        self.lines = ["flow add x"] * lines
        self.inverse = ["flow delete_strict x"] * lines
        self.fail_apply, self.fail_prepare, self.fail_restore = fail_apply, fail_prepare, fail_restore
        self.log = []
        self.prespawned = False

    def prepare(self):
        if self.fail_prepare is not None:
            raise self.fail_prepare
        self.log.append("prepare")
        return {"changed": bool(self.lines), "cookie": "0x%016x" % COOKIE, "counts": {"flows_added": len(self.lines)},
                "added": [], "removed": [], "modified": [], "truncated": False}

    def arm(self, budget):
        self.log.append("arm")
        self.prespawned = True

    def apply(self):
        if self.fail_apply:
            self.fail_apply -= 1
            self.log.append("apply failed")
            raise OfctlError("cannot reach the switch", kind="connect")
        self.log.append("apply")
        return CLOCK.now()

    def disarm(self):
        self.log.append("disarm")

    def restore(self):
        if self.fail_restore:
            raise OfctlError("the switch is gone", kind="connect")
        self.log.append("restore")


class Clock:
    def __init__(self):
        self.t = 1_700_000_000_000_000_000

    def now(self):
        self.t += 1_500_000    # 1.5 ms per reading
        return self.t


CLOCK = Clock()
STARTED = ("destination", 2, 1)
SUSPENDED = ("source", 3, 1)
DEFINED = ("destination", 0, 0)
RESUMED = ("destination", 4, 1)
STOPPED = ("source", 5, 3)
LIBVIRT_ORDER = [STARTED, SUSPENDED, DEFINED, RESUMED, STOPPED]   # as the lab's libvirt 9.0 fires them


@pytest.fixture
def world():
    w = {"source": FakeConn(SRC_URI, "uuid-mh1"), "destination": FakeConn(DST_URI, "uuid-mh2"), "script": list(LIBVIRT_ORDER),
         "loop": 0}
    w["source"].domains.append(FakeDom(w, w["source"], _vm.desired_xml(spec(), domain_uuid="u-w1")))
    return w


def migrator(world, flip=None, **over):
    kw = dict(flip=flip or FakeFlip(), open_conn=lambda uri: _open(world, uri), event_loop=lambda: _loop(world),
              clock=CLOCK.now, event_grace=0.1)
    kw.update(over)
    args = {k: kw.pop(k) for k in ("instance", "source_uri", "destination_uri", "destination_vlans") if k in kw}
    return vmm.Migrator(args.get("instance", "w1"), args.get("source_uri", SRC_URI), args.get("destination_uri", DST_URI),
                        args.get("destination_vlans", dict(DST_VLANS)), **kw)


def _open(world, uri):
    for side in ("source", "destination"):
        if world[side].uri == uri:
            return world[side]
    raise _vm.LibvirtError("unable to connect to server at '%s:16509': Connection refused" % uri.split("/")[2])


def _loop(world):
    world["loop"] += 1


def where(world):
    return {side: [d.name() for d in world[side].domains] for side in ("source", "destination")}


# ------------------------------------------------------------------------------------------------
# validation: nothing changes
@pytest.mark.parametrize("over,words", [
    ({"instance": "W_1"}, "instance W_1: instance an instance id is 1-10 characters"),
    ({"destination_vlans": {"left": 201, "right": 201}}, "destination_vlans left and right need different VLAN tags"),
    ({"destination_vlans": {"left": 1, "right": 202}}, "destination_vlans.left must be a VLAN id from 2 to 4094"),
    ({"destination_vlans": {"left": 201}}, "destination_vlans needs exactly 'left' and 'right'"),
    ({"flip_on": "later"}, "flip_on must be one of source_suspended, destination_resumed"),
    ({"max_downtime_ms": 0}, "max_downtime_ms must be a positive integer"),
    ({"destination_host_bridge": "fs host"}, "destination_host_bridge 'fs host' is not a bridge name"),
    ({"destination_uri": SRC_URI}, "source_uri and destination_uri are both %s" % SRC_URI),
    ({"destination_uri": "mh2"}, "destination_uri 'mh2' is not a libvirt URI"),
])
def test_bad_requests_fail_before_anything(world, over, words):
    flip = FakeFlip()
    with pytest.raises(vmm.MigrationError, match=re.escape(words)) as err:
        migrator(world, flip=flip, **over).run()
    assert str(err.value).startswith("instance ")
    assert flip.log == [] and where(world) == {"source": ["fs-w1"], "destination": []}


def test_a_destination_without_libvirt_is_named(world):
    flip = FakeFlip()
    with pytest.raises(vmm.MigrationError) as err:
        migrator(world, flip=flip, destination_uri="qemu+tcp://198.18.70.1/system").run()
    assert str(err.value).startswith("instance w1: the destination qemu+tcp://198.18.70.1/system does not answer: "
                                     "unable to connect to server at '198.18.70.1:16509': Connection refused")
    assert "A VM cannot go to a host without libvirt" in str(err.value)
    assert flip.log == [] and where(world)["source"] == ["fs-w1"]


def _replace_source_domain(world, xml=None, state=1):
    world["source"].domains = [FakeDom(world, world["source"], xml or _vm.desired_xml(spec()), state=state)]


@pytest.mark.parametrize("setup,words", [
    (lambda w: _replace_source_domain(w, xml="<domain><name>fs-w1</name></domain>"),
     "the domain fs-w1 on %s was not defined by flowstream" % SRC_URI),
    (lambda w: _replace_source_domain(w, state=5), "the domain fs-w1 on %s is shutoff; a live migration moves a running guest" % SRC_URI),
    (lambda w: w["source"].domains.clear(), "no running domain fs-w1 on the source %s" % SRC_URI),
    (lambda w: w["destination"].domains.append(FakeDom(w, w["destination"], _vm.desired_xml(spec()), state=5)),
     "the destination %s already has a domain fs-w1" % DST_URI),
    (lambda w: w["destination"].domains.append(FakeDom(w, w["destination"], _vm.desired_xml(spec(id="w2", vlans={"left": 7, "right": 202})))),
     "destination_vlans.right 202 is claimed on %s by VM instance w2 (domain fs-w2)" % DST_URI),
    (lambda w: setattr(w["destination"], "host_uuid", "uuid-mh1"), "are the same libvirt host (host uuid uuid-mh1)"),
])
def test_what_the_hosts_hold_is_checked_before_anything(world, setup, words):
    setup(world)
    before = where(world)
    flip = FakeFlip()
    with pytest.raises(vmm.MigrationError, match=re.escape(words)):
        migrator(world, flip=flip).run()
    assert flip.log == [] and where(world) == before
    assert world["source"].closed and world["destination"].closed


def test_flows_the_switch_would_refuse_fail_before_the_migration(world):
    flip = FakeFlip(fail_prepare=OpenFlowError("flows[0] names port 'nope', which the switch does not have"))
    with pytest.raises(vmm.MigrationError, match="instance w1: the flows for the switchover are wrong .nothing was changed.: "
                                                 "flows.0. names port 'nope'"):
        migrator(world, flip=flip).run()
    assert where(world)["destination"] == [] and world["source"].domains[0].migrated is None


def test_check_mode_validates_and_plans_only(world):
    flip = FakeFlip()
    res = migrator(world, flip=flip).run(check_mode=True)
    assert res["changed"] and res["migrated"] is False and flip.log == ["prepare"]
    assert res["actions"][0].startswith("would live-migrate fs-w1 from %s to %s (VLANs 101/102 -> 201/202 on fs-host" % (SRC_URI, DST_URI))
    assert world["loop"] == 0 and world["source"].domains[0].migrated is None and where(world)["destination"] == []


# ------------------------------------------------------------------------------------------------
# the switchover
def test_flip_in_the_source_suspend_event(world):
    flip = FakeFlip()
    res = migrator(world, flip=flip).run()
    assert flip.log == ["prepare", "arm", "apply", "disarm"]
    assert res["flip"]["event"] == "source suspended/migrated" and res["flip"]["on"] == "source_suspended"
    suspended = [e for e in res["events"] if e["event"] == "suspended/migrated"][0]
    assert res["flip"]["event_ns"] == suspended["ns"] and res["flip"]["delay_ms"] == 1.5
    assert [(e["host"], e["event"]) for e in res["events"]] == [
        ("destination", "started/migrated"), ("source", "suspended/migrated"), ("destination", "defined/added"),
        ("destination", "resumed/migrated"), ("source", "stopped/migrated")]
    assert res["started_ns"] < res["flip"]["event_ns"] < res["flip"]["applied_ns"] < res["ended_ns"]
    assert res["downtime_ms"] == 42 and res["libvirt_job"]["downtime_net"] == 40 and res["warnings"] == []
    assert res["changed"] and res["migrated"] and world["loop"] == 1
    assert where(world) == {"source": [], "destination": ["fs-w1"]}


def test_the_migration_as_asked_of_libvirt(world):
    dom = world["source"].domains[0]
    migrator(world, max_downtime_ms=80).run()
    uri, params, flags = dom.migrated
    assert uri == DST_URI and flags == 1 | 2 | 8 | 16 == vmm.MIGRATE_FLAGS
    assert dom.downtime_set == (80, 0)
    for key in (vmm.PARAM_DEST_XML, vmm.PARAM_PERSIST_XML):
        info = _vm.parse_domain_xml(params[key])[1]
        assert info["vlans"] == DST_VLANS and info["host_bridge"] == "fs-host"
    moved = world["destination"].domains[0]
    assert moved.autostart() == 1                      # as it was on the source
    assert not world["source"].callbacks and not world["destination"].callbacks   # deregistered


def test_flip_in_the_destination_resume_event(world):
    flip = FakeFlip()
    res = migrator(world, flip=flip, flip_on="destination_resumed").run()
    assert res["flip"]["event"] == "destination resumed/migrated"
    resumed = [e for e in res["events"] if e["event"] == "resumed/migrated"][0]
    assert res["flip"]["event_ns"] == resumed["ns"] and flip.log.count("apply") == 1


def test_events_of_other_domains_and_a_second_trigger_flip_nothing_more(world):
    flip = FakeFlip()
    sw = vmm.Switchover("fs-w1", "source_suspended", flip, clock=CLOCK.now)
    sw.on_event("source", "fs-other", 3, 1)
    assert flip.log == [] and sw.events == []
    sw.on_event("destination", "fs-w1", 3, 1)        # the destination never pauses for the migration
    sw.on_event("source", "fs-w1", 3, 0)              # paused by someone, not for the migration
    assert flip.log == []
    sw.on_event("source", "fs-w1", 3, 1)
    sw.on_event("source", "fs-w1", 3, 1)
    assert flip.log == ["apply"] and sw.flipped and len(sw.events) == 4


def test_callback_never_raises_into_libvirt():
    sw = vmm.Switchover("fs-w1", "source_suspended", FakeFlip(), clock=CLOCK.now)

    def gone(_self):
        raise RuntimeError("gone")

    broken = type("Dom", (), {"name": gone})()
    sw.callback("source")(None, broken, 3, 1, None)
    assert isinstance(sw.error, RuntimeError) and not sw.flipped


def test_failure_after_the_flip_restores_the_switch(world):
    world["script"] = [STARTED, SUSPENDED, "fail"]
    flip = FakeFlip()
    with pytest.raises(vmm.MigrationError) as err:
        migrator(world, flip=flip).run()
    msg = str(err.value)
    assert msg.startswith("instance w1: live migration from %s to %s failed: operation failed: job 'migration out' "
                          "failed: the destination hung up; the switch had been flipped at source suspended/migrated and "
                          "is restored (the inverse bundle, 3 lines); it still runs on %s" % (SRC_URI, DST_URI, SRC_URI)), msg
    assert flip.log == ["prepare", "arm", "apply", "disarm", "restore", "disarm"]
    assert err.value.details == {"flipped": True}
    assert where(world) == {"source": ["fs-w1"], "destination": []}


def test_failure_before_the_flip_leaves_the_switch_alone(world):
    world["script"] = [STARTED, "fail"]
    flip = FakeFlip()
    with pytest.raises(vmm.MigrationError, match=re.escape("the switch was not changed; it still runs on %s" % SRC_URI)):
        migrator(world, flip=flip).run()
    assert "apply" not in flip.log and "restore" not in flip.log


def test_a_failed_restore_says_where_the_flows_lead(world):
    world["script"] = [STARTED, SUSPENDED, "fail"]
    with pytest.raises(vmm.MigrationError, match=re.escape("could NOT be restored (the switch is gone): its flows lead to %s" % DST_URI)):
        migrator(world, flip=FakeFlip(fail_restore=True)).run()


def test_no_event_flips_when_the_migration_returns_with_a_warning(world):
    world["script"] = [STARTED, DEFINED, STOPPED]
    flip = FakeFlip()
    res = migrator(world, flip=flip).run()
    assert res["flip"]["event"] == "migration returned" and flip.log.count("apply") == 1
    assert res["warnings"] == ["the switch was flipped after the migration returned (no source_suspended event within "
                               "0.1 s of the migration's end)"]


def test_a_flip_that_fails_in_the_event_is_tried_again_after(world):
    flip = FakeFlip(fail_apply=1)
    res = migrator(world, flip=flip).run()
    assert flip.log == ["prepare", "arm", "apply failed", "apply", "disarm"]
    assert res["flip"]["event"] == "migration returned"
    assert res["warnings"] == ["the switch was flipped after the migration returned (the flip at source suspended/migrated "
                               "failed: cannot reach the switch)"]


def test_the_switch_refusing_twice_fails_saying_the_guest_moved(world):
    with pytest.raises(vmm.MigrationError, match=re.escape("the guest runs on %s now, but the switch %s refused the new flows"
                                                           % (DST_URI, FakeFlip.target))):
        migrator(world, flip=FakeFlip(fail_apply=2)).run()
    assert where(world)["destination"] == ["fs-w1"]


def test_a_second_run_finds_it_moved(world):
    migrator(world).run()
    flip = FakeFlip(lines=0)
    res = migrator(world, flip=flip).run()
    assert not res["changed"] and res["migrated"] is False and "apply" not in flip.log
    assert res["actions"] == ["fs-w1 runs on %s already" % DST_URI]
    flip = FakeFlip(lines=2)                          # moved, but the flows were changed by hand since
    res = migrator(world, flip=flip).run()
    assert res["changed"] and flip.log == ["prepare", "apply"]
    with pytest.raises(vmm.MigrationError, match=re.escape("runs on the destination %s already, but on VLANs 201/202" % DST_URI)):
        migrator(world, destination_vlans={"left": 301, "right": 302}).run()


def test_event_names():
    assert vmm.event_name(3, 1) == "suspended/migrated" and vmm.event_name(4, 1) == "resumed/migrated"
    assert vmm.event_name(42, 7) == "42/7"
    assert copy.deepcopy(vmm.FLIP_EVENTS)["source_suspended"] == ("source", 3, 1)
