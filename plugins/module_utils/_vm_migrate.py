# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live migration of a VM instance, with the switch re-plumbed at the switchover.

The controller (the switch's inventory host) talks to both module hosts' libvirt daemons and to
the switch:

1. **Validate** everything before anything changes: the domain ``fs-<id>`` runs on the source
   and carries flowstream's ``<fs:instance>`` metadata; the destination's libvirt answers, is
   another host and has no domain of that name; the destination VLANs are valid and claimed by
   no other VM instance on the destination's bridge.
2. **Prepare the switch**: the flows the cookie must hold from the switchover on, planned by
   :class:`_openflow.Reconciler` (``state=replaced``, check mode) into the bundle that makes
   it so, and the inverse bundle that puts back what the switch holds now. An ``ovs-ofctl
   --bundle add-flows`` process is started beforehand and waits for the bundle on its stdin
   (measured: 2.6 ms from write to the switch's reply instead of 6.5 ms for a fresh process).
3. **Migrate** peer-to-peer (``migrateToURI3``, live, persistent on the destination, undefined on
   the source) with the destination XML retargeted to the destination VLANs and bridge
   (:func:`_vm.retarget_domain_xml`) and ``max_downtime_ms`` set.
4. **Flip** the switch inside libvirt's lifecycle event of the switchover (the default event
   loop runs in a thread): when the source pauses for the last copy (``SUSPENDED``/``MIGRATED``)
   or when the destination resumes (``RESUMED``/``MIGRATED``), the prepared bundle is written.
   If the migration fails after the flip, the inverse bundle is applied.

Times are CLOCK_REALTIME nanoseconds (``time.time_ns``), the clock the traffic probe stamps its
packets with, so a probe's gap can be laid next to the events.

Private module_utils: no Ansible imports.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from ansible_collections.flowstream.platform.plugins.module_utils._instance import check_id, check_vlans
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError, map_error
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import OpenFlowError, Reconciler
from ansible_collections.flowstream.platform.plugins.module_utils._vm import (
    RUNNING_STATES, STATE_NAMES, XML_INACTIVE, LibvirtError, domain_name, parse_domain_xml, retarget_domain_xml)

try:
    import libvirt
except ImportError:  # the import sanity test; the module says what is missing
    libvirt = None

# libvirt's stable ABI values (libvirt-domain.h), so that the logic and its tests need no libvirt
MIGRATE_LIVE = 1
MIGRATE_PEER2PEER = 2
MIGRATE_PERSIST_DEST = 8
MIGRATE_UNDEFINE_SOURCE = 16
MIGRATE_FLAGS = MIGRATE_LIVE | MIGRATE_PEER2PEER | MIGRATE_PERSIST_DEST | MIGRATE_UNDEFINE_SOURCE
PARAM_DEST_XML = "destination_xml"
PARAM_PERSIST_XML = "persistent_xml"
XML_SECURE = 1
XML_MIGRATABLE = 8
EVENT_ID_LIFECYCLE = 0
JOB_STATS_COMPLETED = 1
EVENTS = {0: "defined", 1: "undefined", 2: "started", 3: "suspended", 4: "resumed", 5: "stopped", 6: "shutdown",
          7: "pmsuspended", 8: "crashed"}
DETAILS = {
    0: {0: "added", 1: "updated", 2: "renamed", 3: "from_snapshot"},
    1: {0: "removed", 1: "renamed"},
    2: {0: "booted", 1: "migrated", 2: "restored", 3: "from_snapshot", 4: "wakeup"},
    3: {0: "paused", 1: "migrated", 2: "ioerror", 3: "watchdog", 4: "restored", 5: "from_snapshot", 6: "api_error",
        7: "postcopy", 8: "postcopy_failed"},
    4: {0: "unpaused", 1: "migrated", 2: "from_snapshot", 3: "postcopy", 4: "postcopy_failed"},
    5: {0: "shutdown", 1: "destroyed", 2: "crashed", 3: "migrated", 4: "saved", 5: "failed", 6: "from_snapshot"},
}
SUSPENDED, RESUMED, DETAIL_MIGRATED = 3, 4, 1
# The event the switch flips in: (which connection, event, detail)
FLIP_EVENTS = {
    "source_suspended": ("source", SUSPENDED, DETAIL_MIGRATED),
    "destination_resumed": ("destination", RESUMED, DETAIL_MIGRATED),
}
# Measured on the lab (docs/vm-modules.md, bench/vm_migrate.py): flipping when the source pauses
# loses the fewest packets; packets sent to the destination wait in its tap until the guest
# resumes there, while with the flip at the resume they reach the paused source and are lost.
DEFAULT_FLIP_ON = "source_suspended"
DEFAULT_MAX_DOWNTIME_MS = 100
LIBVIRT_PORTS = {"tcp": 16509, "tls": 16514}
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
HOST_WORDS = ("A VM cannot go to a host without libvirt: give the libvirt URI of a module host that runs VM "
              "modules (its flowstream_kinds include vm; in the lab qemu+tcp://<management address>/system)")


class MigrationError(Exception):
    """A migration that cannot be done or did not succeed; the message names the instance, the
    host (libvirt URI) or switch, and what would be right."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self):
        return self.msg


def _words(exc):
    return str(exc).strip() or exc.__class__.__name__


def _ms(ns):
    return None if ns is None else round(ns / 1e6, 3)


def event_name(event, detail):
    """``suspended/migrated`` for libvirt's lifecycle event and detail numbers."""
    return "%s/%s" % (EVENTS.get(event, str(event)), DETAILS.get(event, {}).get(detail, str(detail)))


# ------------------------------------------------------------------------------------------------
# the switch: a prepared bundle and its inverse
class _PlanOnly(Reconciler):
    """The Reconciler's plan and the bundle lines it renders, kept and never sent.

    It runs as a real (not check-mode) Reconciler whose apply step only keeps the lines: in check
    mode the Reconciler lets a flow name a port the switch does not have yet (a placeholder
    number, for a port the same playbook would create first), which a bundle prepared for a
    real flip must never carry."""

    plan = None
    lines = None

    def _render(self, plan):
        lines = super()._render(plan)
        self.plan, self.lines = plan, lines
        return lines

    def _apply(self, lines, plan):
        """Nothing is sent: the lines wait for the switchover."""


def inverse_lines(plan):
    """Bundle lines that undo a rendered plan (flows only): the switch holds again what it held
    when the plan was made. Flows the plan adds go, flows it changes get their old actions (or,
    when their cookie, timeouts or flags changed, are deleted and added back as they were), and
    flows it deletes are added back with their cookies."""
    out = ["flow delete_strict %s" % w.match_spec() for w in plan["flow_add"]]
    readd = plan["flow_readd"] + plan["flow_recookie"]
    out += ["flow delete_strict %s" % w.match_spec() for _h, w in readd]
    out += ["flow modify_strict %s,actions=%s" % (h.match_spec(), h.actions) for h, _w in plan["flow_modify"]]
    out += ["flow add cookie=0x%x,%s" % (h.cookie, h.text()) for h, _w in readd]
    out += ["flow add cookie=0x%x,%s" % (h.cookie, h.text()) for h in plan["flow_del"]]
    return out


class SwitchFlip:
    """The switch change of a migration, prepared before and applied in one bundle at the flip.

    ``ofctl`` is an :class:`_ofctl.Ofctl` (or anything with its read and bundle methods); the
    flows are given as to ``openflow_flows`` with ``state: replaced``. ``prespawn`` starts the
    ``ovs-ofctl`` process of the flip ahead of time (needs a real Ofctl)."""

    def __init__(self, ofctl, cookie, cookie_mask=None, flows=None, flows_text=None, flow_cookies=False,
                 report_limit=100, prespawn=True):
        self.ofctl = ofctl
        self.kwargs = dict(cookie=cookie, cookie_mask=cookie_mask, state="replaced", flows=flows, flows_text=flows_text,
                           flow_cookies=flow_cookies, report_limit=report_limit, check_mode=False)
        self.prespawn = prespawn and isinstance(ofctl, Ofctl)
        self.report = None
        self.lines = []
        self.inverse = []
        self._proc = None
        self.datapath = None
        self.prespawned = False

    @property
    def target(self):
        return getattr(self.ofctl, "target", "the switch")

    def prepare(self):
        """Read the switch and plan; returns the Reconciler's report (counts, added, removed, ...).
        Raises OpenFlowError/OfctlError before anything is sent."""
        planner = _PlanOnly(self.ofctl, **self.kwargs)
        self.report = planner.run()
        self.lines = list(planner.lines or [])
        self.inverse = inverse_lines(planner.plan) if self.lines else []
        return self.report

    def _argv(self, budget_s):
        o = self.ofctl
        flip = Ofctl(o.target, version=o.version, timeout=int(budget_s), private_key=o.private_key,
                     certificate=o.certificate, ca_cert=o.ca_cert, executable=o.executable)
        return flip.argv("add-flows", "-", bundle=True)

    def arm(self, budget_s):
        """Start the flip's ovs-ofctl, waiting for the bundle on stdin (it reads all of its input
        before it connects to the switch). ``budget_s``: how long it may wait (its --timeout)."""
        if not self.lines or not self.prespawn:
            return
        try:
            self._proc = subprocess.Popen(self._argv(budget_s), stdin=subprocess.PIPE,  # pylint: disable=consider-using-with
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env={"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
            self.prespawned = True
        except OSError:
            self._proc = None   # apply() runs ovs-ofctl then, as openflow_flows does

    def apply(self):
        """Apply the prepared bundle now; returns the CLOCK_REALTIME ns at which the switch had
        confirmed it. Raises OfctlError (nothing changed: the bundle is all or nothing)."""
        body = [line[5:] for line in self.lines]
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            out, err = proc.communicate("\n".join(body) + "\n", timeout=60)
            if proc.returncode != 0:
                raise map_error(proc.args, proc.returncode, err + out, self.target)
        elif body:
            self.ofctl.bundle_flows(body)
        confirmed = time.time_ns()
        # (after the confirmed time: a local userspace datapath's flows from the old table go -
        # _ofctl.refresh_datapath)
        self.datapath = self.ofctl.refresh_datapath() if body else None
        return confirmed

    def disarm(self):
        """End a flip process that was not used (by its own pid)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()

    def restore(self):
        """Apply the inverse bundle: the flows the switch held when the change was prepared."""
        if self.inverse:
            self.ofctl.bundle_flows([line[5:] for line in self.inverse])
            self.datapath = self.ofctl.refresh_datapath()


# ------------------------------------------------------------------------------------------------
# the switchover: lifecycle events -> the flip
class Switchover:
    """Receives the lifecycle events of both hosts (libvirt's event thread) and flips the switch
    in the chosen one, once. Thread-safe; ``flip_now`` is also the fallback after the migration."""

    def __init__(self, domain, flip_on, flip, clock=time.time_ns):
        if flip_on not in FLIP_EVENTS:
            raise ValueError("flip_on must be one of %s, not %r" % (", ".join(FLIP_EVENTS), flip_on))
        self.domain = domain
        self.flip_on = flip_on
        self.flip = flip
        self.clock = clock
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.events = []
        self.flipped = False
        self.trigger = None
        self.event_ns = None
        self.applied_ns = None
        self.error = None
        self.failed_trigger = None

    def on_event(self, side, name, event, detail):
        """A lifecycle event of domain ``name`` seen on ``side`` (source or destination)."""
        now = self.clock()
        if name != self.domain:
            return
        self.events.append({"host": side, "event": event_name(event, detail), "ns": now})
        if (side, event, detail) == FLIP_EVENTS[self.flip_on]:
            self.flip_now("%s %s" % (side, event_name(event, detail)), now)

    def callback(self, side):
        """A libvirt lifecycle callback ``(conn, dom, event, detail, opaque)`` for one side; it
        never raises into libvirt."""
        def handler(_conn, dom, event, detail, _opaque):
            try:
                self.on_event(side, dom.name(), event, detail)
            except Exception as exc:  # pylint: disable=broad-except
                self.error = self.error or exc
        return handler

    def flip_now(self, trigger, event_ns):
        """Apply the prepared bundle unless it is applied already; True when it is."""
        with self.lock:
            if self.flipped:
                return True
            try:
                self.applied_ns = self.flip.apply()
            except (OfctlError, OSError, subprocess.SubprocessError) as exc:
                self.error, self.failed_trigger = exc, trigger
                return False
            finally:
                self.done.set()
            self.flipped, self.trigger, self.event_ns, self.error = True, trigger, event_ns, None
            return True

    def report(self):
        return {"on": self.flip_on, "event": self.trigger, "event_ns": self.event_ns, "applied_ns": self.applied_ns,
                "delay_ms": _ms(self.applied_ns - self.event_ns) if self.flipped else None,
                "bundle_lines": len(self.flip.lines), "prespawned": bool(getattr(self.flip, "prespawned", False)),
                "datapath": getattr(self.flip, "datapath", None)}


# ------------------------------------------------------------------------------------------------
# libvirt
_LOOP = {"started": False}


def start_event_loop():
    """libvirt's default event loop in a daemon thread (once per process). Must run before the
    connections whose events are wanted are opened."""
    if _LOOP["started"]:
        return
    libvirt.virEventRegisterDefaultImpl()

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()
    _LOOP["started"] = True


def _quiet(_ctx, _err):
    """libvirt prints every error to stderr by default; they are raised as exceptions instead."""


def open_libvirt(uri, connect_timeout=10.0):
    """An open libvirt connection; a TCP/TLS URI's port is tried first with ``connect_timeout``
    (libvirt itself waits out the kernel's connect timeout for an address nobody answers)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2]
    if transport in LIBVIRT_PORTS and parts.hostname:
        try:
            sock = socket.create_connection((parts.hostname, parts.port or LIBVIRT_PORTS[transport]),
                                            timeout=connect_timeout)
        except OSError as exc:
            raise LibvirtError("unable to connect to server at '%s:%d': %s" % (
                parts.hostname, parts.port or LIBVIRT_PORTS[transport], exc.strerror or exc)) from exc
        sock.close()
    libvirt.registerErrorHandler(_quiet, None)
    return libvirt.open(uri)


def _host_uuid(conn):
    try:
        return ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
    except (LibvirtError, ET.ParseError):
        return None


def _find(conn, name):
    for dom in conn.listAllDomains(0):
        if dom.name() == name:
            return dom
    return None


# ------------------------------------------------------------------------------------------------
class Migrator:
    """One live migration of a VM instance with the switch flipped at the switchover.

    ``open_conn(uri)`` opens a libvirt connection and ``event_loop()`` starts libvirt's event
    loop (tests pass fakes); ``flip`` is a :class:`SwitchFlip`."""

    def __init__(self, instance, source_uri, destination_uri, destination_vlans, flip, destination_host_bridge=None,
                 max_downtime_ms=DEFAULT_MAX_DOWNTIME_MS, flip_on=DEFAULT_FLIP_ON, migration_timeout=300,
                 connect_timeout=10.0, open_conn=None, event_loop=None, clock=time.time_ns, event_grace=2.0):
        self.instance = instance
        self.source_uri = source_uri
        self.destination_uri = destination_uri
        self.vlans = destination_vlans
        self.bridge = destination_host_bridge
        self.flip = flip
        self.max_downtime_ms = max_downtime_ms
        self.flip_on = flip_on
        self.migration_timeout = migration_timeout
        self.connect_timeout = connect_timeout
        self._open = open_conn or (lambda uri: open_libvirt(uri, self.connect_timeout))
        self._event_loop = event_loop or start_event_loop
        self.clock = clock
        self.event_grace = event_grace
        self.name = None
        self.warnings = []

    def _fail(self, msg, **details):
        return MigrationError("instance %s: %s" % (self.instance, msg), **details)

    # -- validation --------------------------------------------------------------------------
    def _check_request(self):
        try:
            check_id(self.instance)
            check_vlans(self.instance, self.vlans)
        except InstanceError as exc:
            field = {"vlans": "destination_vlans", "vlans.left": "destination_vlans.left",
                     "vlans.right": "destination_vlans.right"}.get(exc.field, exc.field)
            raise MigrationError("instance %s: %s %s" % (self.instance, field, exc.message)) from exc
        if self.flip_on not in FLIP_EVENTS:
            raise self._fail("flip_on must be one of %s, not %r" % (", ".join(FLIP_EVENTS), self.flip_on))
        for key in ("max_downtime_ms", "migration_timeout"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self._fail("%s must be a positive integer, not %r" % (key, value))
        if self.bridge is not None and not BRIDGE_RE.match(str(self.bridge)):
            raise self._fail("destination_host_bridge %r is not a bridge name (1-15 letters, digits, '_.:-'); name "
                             "the Open vSwitch bridge of the destination host, fs-host in the lab" % (self.bridge,))
        for key in ("source_uri", "destination_uri"):
            if not getattr(self, key) or "://" not in getattr(self, key):
                raise self._fail("%s %r is not a libvirt URI (for example qemu+tcp://198.18.0.12/system)"
                                 % (key, getattr(self, key)))
        if self.source_uri == self.destination_uri:
            raise self._fail("source_uri and destination_uri are both %s; a live migration needs another host"
                             % self.source_uri)

    def _connect(self, uri, role):
        try:
            return self._open(uri)
        except LibvirtError as exc:
            if role == "destination":
                raise self._fail("the destination %s does not answer: %s. %s" % (uri, _words(exc), HOST_WORDS)) from exc
            raise self._fail("the source %s does not answer: %s (give the libvirt URI of the module host the "
                             "instance runs on)" % (uri, _words(exc))) from exc

    def _dest_conflicts(self, dst, bridge):
        """VLANs of the destination claimed by another VM instance on the same bridge there."""
        for dom in dst.listAllDomains(0):
            parsed = parse_domain_xml(dom.XMLDesc(XML_INACTIVE))
            if parsed is None or parsed[0] == self.instance:
                continue
            other, info, _shape = parsed
            if info.get("host_bridge") not in (None, bridge):
                continue
            for leg in ("left", "right"):
                if self.vlans[leg] in (info.get("vlans") or {}).values():
                    raise self._fail("destination_vlans.%s %d is claimed on %s by VM instance %s (domain %s); choose "
                                     "VLANs free on the destination host" % (
                                         leg, self.vlans[leg], self.destination_uri, other, info.get("domain")))

    # -- the whole operation -------------------------------------------------------------------
    def run(self, check_mode=False):
        started_ns = self.clock()
        self._check_request()
        self.name = domain_name(self.instance)
        if not check_mode:
            self._event_loop()
        conns = []
        try:
            conns.append(self._connect(self.source_uri, "source"))
            conns.append(self._connect(self.destination_uri, "destination"))
            return self._run(conns[0], conns[1], started_ns, check_mode)
        finally:
            for conn in conns:
                try:
                    conn.close()
                except LibvirtError:
                    pass

    def _run(self, src, dst, started_ns, check_mode):  # pylint: disable=too-many-locals
        name = self.name
        dom = _find(src, name)
        if dom is None:
            return self._already_there(dst, started_ns, check_mode)
        parsed = parse_domain_xml(dom.XMLDesc(XML_INACTIVE))
        if parsed is None:
            raise self._fail("the domain %s on %s was not defined by flowstream (it has no <fs:instance> metadata); "
                             "vm_migrate moves flowstream VM instances only" % (name, self.source_uri))
        _inst, info, _shape = parsed
        state = dom.state()[0]
        if state not in RUNNING_STATES:
            raise self._fail("the domain %s on %s is %s; a live migration moves a running guest (start it with "
                             "processing_module state=started first)" % (name, self.source_uri, STATE_NAMES.get(state, state)))
        bridge = self.bridge or info.get("host_bridge")
        src_uuid, dst_uuid = _host_uuid(src), _host_uuid(dst)
        if src_uuid and src_uuid == dst_uuid:
            raise self._fail("%s and %s are the same libvirt host (host uuid %s); migrate to another module host"
                             % (self.source_uri, self.destination_uri, src_uuid))
        if _find(dst, name) is not None:
            raise self._fail("the destination %s already has a domain %s (and the source %s runs one): remove the "
                             "destination's (processing_module state=absent on that host) before migrating"
                             % (self.destination_uri, name, self.source_uri))
        self._dest_conflicts(dst, bridge)
        live_xml = dom.XMLDesc(XML_SECURE | XML_MIGRATABLE)
        persistent_xml = dom.XMLDesc(XML_SECURE | XML_MIGRATABLE | XML_INACTIVE)
        try:
            params = {PARAM_DEST_XML: retarget_domain_xml(live_xml, self.vlans, bridge),
                      PARAM_PERSIST_XML: retarget_domain_xml(persistent_xml, self.vlans, bridge)}
        except (ValueError, ET.ParseError) as exc:
            raise self._fail("cannot write the destination XML of %s: %s" % (name, exc)) from exc
        report = self._prepare_switch()
        before = {"vlans": info.get("vlans"), "host_bridge": info.get("host_bridge")}
        after = {"vlans": dict(self.vlans), "host_bridge": bridge}
        result = {"changed": True, "migrated": False, "instance": self.instance, "domain": name, "source": self.source_uri,
                  "destination": self.destination_uri, "before": before, "after": after,
                  "max_downtime_ms": self.max_downtime_ms, "switch": self._switch_report(report)}
        if check_mode:
            result["actions"] = ["would live-migrate %s from %s to %s (VLANs %d/%d -> %d/%d on %s, max downtime %d ms)" % (
                name, self.source_uri, self.destination_uri, before["vlans"]["left"], before["vlans"]["right"],
                self.vlans["left"], self.vlans["right"], bridge, self.max_downtime_ms),
                "would flip the switch %s in one bundle of %d lines at %s" % (
                    self.flip.target, len(self.flip.lines), self.flip_on)]
            result.update(started_ns=started_ns, ended_ns=self.clock())
            result["duration_ms"] = _ms(result["ended_ns"] - started_ns)
            return result
        result.update(self._migrate(src, dst, dom, params))
        result["started_ns"] = started_ns
        result["ended_ns"] = self.clock()
        result["duration_ms"] = _ms(result["ended_ns"] - started_ns)
        result["actions"] = ["live-migrated %s from %s to %s (VLANs %d/%d -> %d/%d on %s)" % (
            name, self.source_uri, self.destination_uri, before["vlans"]["left"], before["vlans"]["right"],
            self.vlans["left"], self.vlans["right"], bridge),
            "flipped the switch %s (%d bundle lines) at %s, %.1f ms after the event" % (
                self.flip.target, len(self.flip.lines), result["flip"]["event"], result["flip"]["delay_ms"] or 0.0)]
        result["warnings"] = list(self.warnings)
        return result

    def _prepare_switch(self):
        try:
            return self.flip.prepare()
        except OpenFlowError as exc:
            raise self._fail("the flows for the switchover are wrong (nothing was changed): %s" % exc) from exc
        except OfctlError as exc:
            raise self._fail("cannot prepare the switch %s (nothing was changed): %s" % (self.flip.target, exc.msg)) from exc

    @staticmethod
    def _switch_report(report):
        return {key: report.get(key) for key in ("cookie", "cookie_mask", "counts", "added", "removed", "modified",
                                                 "truncated")}

    def _already_there(self, dst, started_ns, check_mode):
        """Not on the source: done already when it runs on the destination as asked; the flows
        are then made right (a re-run after a migration changes nothing)."""
        ddom = _find(dst, self.name)
        parsed = parse_domain_xml(ddom.XMLDesc(0)) if ddom is not None else None
        if parsed is None or ddom.state()[0] not in RUNNING_STATES:
            raise self._fail("no running domain %s on the source %s%s; give the source_uri of the host it runs on" % (
                self.name, self.source_uri, "" if ddom is None else " (the destination %s has one, %s)" % (
                    self.destination_uri, "not flowstream's" if parsed is None else STATE_NAMES.get(ddom.state()[0]))))
        info = parsed[1]
        if info.get("vlans") != dict(self.vlans) or (self.bridge and info.get("host_bridge") != self.bridge):
            raise self._fail("it runs on the destination %s already, but on VLANs %s/%s of %s, not %d/%d%s; move it "
                             "with processing_module on that host" % (
                                 self.destination_uri, info["vlans"]["left"], info["vlans"]["right"], info.get("host_bridge"),
                                 self.vlans["left"], self.vlans["right"], " of %s" % self.bridge if self.bridge else ""))
        report = self._prepare_switch()
        changed = bool(self.flip.lines)
        if changed and not check_mode:
            try:
                self.flip.apply()
            except OfctlError as exc:
                raise self._fail("runs on %s already; the switch %s refused its flows: %s" % (
                    self.destination_uri, self.flip.target, exc.msg)) from exc
        ended = self.clock()
        actions = ["%s runs on %s already" % (self.name, self.destination_uri)]
        if changed:
            verb = "would flip" if check_mode else "flipped"
            actions.append("%s the switch %s (%d bundle lines)" % (verb, self.flip.target, len(self.flip.lines)))
        return {"changed": changed, "instance": self.instance, "domain": self.name, "source": self.source_uri,
                "destination": self.destination_uri, "migrated": False, "switch": self._switch_report(report),
                "actions": actions, "started_ns": started_ns, "ended_ns": ended, "duration_ms": _ms(ended - started_ns),
                "warnings": list(self.warnings)}

    def _migrate(self, src, dst, dom, params):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
        switch = Switchover(self.name, self.flip_on, self.flip, clock=self.clock)
        ids = []
        try:
            for conn, side in ((src, "source"), (dst, "destination")):
                ids.append((conn, conn.domainEventRegisterAny(None, EVENT_ID_LIFECYCLE, switch.callback(side), None)))
            autostart = dom.autostart()
            try:
                dom.migrateSetMaxDowntime(self.max_downtime_ms, 0)
            except LibvirtError as exc:
                raise self._fail("libvirt on %s refused max_downtime_ms %d: %s (nothing was changed)" % (
                    self.source_uri, self.max_downtime_ms, _words(exc))) from exc
            self.flip.arm(self.migration_timeout + 60)
            aborted = []

            def abort():
                aborted.append(self.clock())
                try:
                    dom.abortJob()
                except LibvirtError:
                    pass

            timer = threading.Timer(self.migration_timeout, abort)
            timer.daemon = True
            failure = None
            migrate_ns = self.clock()
            timer.start()
            try:
                dom.migrateToURI3(self.destination_uri, params, MIGRATE_FLAGS)
            except LibvirtError as exc:
                failure = exc
            finally:
                timer.cancel()
            returned_ns = self.clock()
            if failure is not None:
                self._failed(switch, src, failure, aborted)
            if not switch.done.wait(self.event_grace) or not switch.flipped:
                why = ("the flip at %s failed: %s" % (switch.failed_trigger, _words(switch.error)) if switch.error
                       else "no %s event within %.1f s of the migration's end" % (self.flip_on, self.event_grace))
                if switch.flip_now("migration returned", self.clock()):
                    self.warnings.append("the switch was flipped after the migration returned (%s)" % why)
                else:
                    raise self._fail(
                        "the guest runs on %s now, but the switch %s refused the new flows (%s): the flows still lead "
                        "to the source. Apply them with openflow_flows (state: replaced)" % (
                            self.destination_uri, self.flip.target, _words(switch.error)))
        finally:
            self.flip.disarm()
            for conn, cb_id in ids:
                try:
                    conn.domainEventDeregisterAny(cb_id)
                except LibvirtError:
                    pass
        ddom = _find(dst, self.name)
        job = self._job_stats(ddom)
        if ddom is not None and autostart:
            try:
                ddom.setAutostart(1)
            except LibvirtError as exc:
                self.warnings.append("could not turn autostart on for %s on %s: %s"
                                     % (self.name, self.destination_uri, _words(exc)))
        return {"migrated": True, "migration_ms": _ms(returned_ns - migrate_ns), "downtime_ms": job.get("downtime"),
                "libvirt_job": job, "flip": switch.report(), "events": switch.events}

    def _failed(self, switch, src, failure, aborted):
        """The migration failed: put the switch back if it was flipped; raise what happened."""
        self.flip.disarm()
        with switch.lock:   # a flip under way in the event thread finishes first
            flipped = switch.flipped
        undo = "the switch was not changed"
        if flipped:
            try:
                self.flip.restore()
                undo = ("the switch had been flipped at %s and is restored (the inverse bundle, %d lines)"
                        % (switch.trigger, len(self.flip.inverse)))
            except OfctlError as exc:
                undo = ("the switch had been flipped at %s and could NOT be restored (%s): its flows lead to %s. Put "
                        "back the source's flows with openflow_flows" % (switch.trigger, exc.msg, self.destination_uri))
        dom = _find(src, self.name)
        where = ("it still runs on %s" % self.source_uri if dom is not None and dom.state()[0] in RUNNING_STATES
                 else "it is %s on %s" % ("gone" if dom is None else STATE_NAMES.get(dom.state()[0]), self.source_uri))
        cause = ("migration_timeout (%d s) ran out and the migration was aborted" % self.migration_timeout if aborted
                 else _words(failure))
        raise self._fail("live migration from %s to %s failed: %s; %s; %s" % (
            self.source_uri, self.destination_uri, cause, undo, where), flipped=flipped)

    @staticmethod
    def _job_stats(ddom):
        """The completed migration job as libvirt measured it (the destination keeps it)."""
        if ddom is None:
            return {}
        try:
            stats = ddom.jobStats(JOB_STATS_COMPLETED)
        except LibvirtError:
            return {}
        keys = ("time_elapsed", "time_elapsed_net", "downtime", "downtime_net", "setup_time", "data_total",
                "memory_iteration", "memory_dirty_rate", "memory_bps")
        return {key: stats[key] for key in keys if key in stats}
