# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lifecycle for processing-module instances of every kind on a module host.

``ProcessingModules.apply(params)`` validates the whole request (catalogue, kind, the host's
kinds, VLAN tags against what the host already uses, the kind's own checks such as ``nft -c``
or the image and memory of a VM) before changing anything, then lets the kind converge.
"""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue, _kinds
from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, run as _run
from ansible_collections.flowstream.platform.plugins.module_utils._instance import (
    LEGS, HostView, Spec, check_id, check_vlans, port_name)
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError

HOST_KINDS = _kinds.HOST_KINDS


def vm_kind(run=_run, required=False):
    """The VM kind (its libvirt view) when libvirt-python is importable on this host, else None."""
    vms = _kinds.kind("vm", ActionLog(), run=run, required=required)
    return vms if vms.vms is not None else None


class ProcessingModules:
    def __init__(self, host_bridge, check_mode=False, run=_run, click_binary=None, with_vms=True):
        self.log = ActionLog(check_mode)
        self._run = run
        self.host_bridge = host_bridge
        self.click_binary = click_binary
        self.vms = vm_kind(run) if with_vms else None
        self.view = HostView(host_bridge, run=run, vm_kind=self.vms)

    def kind(self, name):
        """The kind ``name`` from the one registry (_kinds), bound to this run's action log."""
        if name == "vm" and self.vms is not None:
            self.vms.log = self.log
            return self.vms
        return _kinds.kind(name, self.log, run=self._run, binary=self.click_binary)

    def spec(self, p):
        """Validate the request; return a Spec. Nothing on the host changes here."""
        instance = p["instance"]
        check_id(instance)
        catalogue = _catalogue.merged(p.get("catalogue"))
        params = _catalogue.resolve(catalogue, instance, p["type"], p["kind"], p.get("params"), p.get("host_kinds"))
        check_vlans(instance, p.get("vlans"))
        definition = catalogue[p["type"]]
        if p["kind"] == "vm" and p.get("vm"):
            # options the task leaves out arrive as None: they keep the type's (or the default) value
            given = {k: v for k, v in p["vm"].items() if v is not None}
            definition = dict(definition, vm=dict(definition.get("vm") or {}, **given))
        return Spec(instance, p["kind"], p["type"], params, definition, dict(p["vlans"]), self.host_bridge,
                    chain=p.get("chain"), step=p.get("step"), running=p["state"] != "stopped",
                    port_type=p.get("port_type") or "system")

    def check_host(self, spec, existing):
        """The request against what the host already runs."""
        if existing and existing.get("kind") and existing["kind"] != spec.kind:
            raise InstanceError(spec.id, "kind", "the host already runs %s as kind %s; remove it first (state: absent)"
                                % (spec.id, existing["kind"]))
        in_use = self.view.vlans_in_use()
        for leg in LEGS:
            tag = spec.vlans[leg]
            owner = in_use.get(tag)
            if owner and owner not in (port_name(spec.id, "left"), port_name(spec.id, "right")):
                raise InstanceError(spec.id, "vlans.%s" % leg, "VLAN %d is already the tag of port %s on %s"
                                    % (tag, owner, self.host_bridge))

    def apply(self, p):
        """Converge one instance; returns (before, after, extra) - the host's views of it before and
        after, and what the run learned on the way: ``quiesce`` (how long the legs took to go
        quiet) and ``exported_state`` (the state read just before a removal, for the new copy)."""
        instances = self.view.instances()
        instance = p["instance"]
        before = instances.get(instance)
        extra = {}
        if p["state"] == "absent":
            check_id(instance)
            if before:
                kind = "vm" if before.get("domain") else (before.get("kind") or p.get("kind") or "kernel")
                engine = self.kind(kind)
                quiesce = p.get("quiesce")
                if quiesce and before.get("legs") and not self.log.check_mode:
                    extra["quiesce"] = _kinds.wait_quiet(self.host_bridge, instance, quiet_ms=quiesce.get("quiet_ms", 200),
                                                         timeout=quiesce.get("timeout", 10))
                if p.get("export_state"):
                    extra["exported_state"] = engine.export_state(instance, before.get("type"))
                engine.remove(instance, self.host_bridge)
            return before, None, extra
        spec, engine = self.prepare(p, before)
        extra.update(self.converge(p, spec, engine, before))
        self.view = HostView(self.host_bridge, run=self._run, vm_kind=self.vms)
        return before, self.view.instances().get(instance), extra

    def prepare(self, p, before):
        """Validate one instance's request, also against what the host runs (``before``: the
        host's view of it): (spec, kind). Nothing on the host changes here."""
        spec = self.spec(p)
        self.check_host(spec, before)
        engine = self.kind(spec.kind)
        engine.validate(spec)
        return spec, engine

    def converge(self, p, spec, engine, before):
        """Make one validated instance what ``spec`` says; returns what the run learned
        (``reconfigured``, ``hold``)."""
        extra = {}
        if p.get("carried_state") is not None:
            # before the program starts, so a new copy marks a carried flow from its first packet
            engine.import_state(spec.id, p["carried_state"])
        hold = p.get("hold") if before is None else None  # only a copy made now holds (nothing reaches it yet)
        if hold and hasattr(engine, "hold_before_start"):
            engine.hold_before_start(spec, hold)
        engine.ensure(spec)
        if hold and hasattr(engine, "hold_after_ensure"):
            engine.hold_after_ensure(spec, hold)
        if getattr(engine, "reconfigured", None):
            extra["reconfigured"] = engine.reconfigured
        status = _kinds.hold_status(spec.id)
        if status is not None:
            extra["hold"] = status
        return extra

    def apply_many(self, requests, done):
        """Converge several instances (state present, started or stopped) in one run. Every
        request is validated first - each as :meth:`apply` would, and against each other (an id
        or a VLAN tag named twice) - so a bad one fails before anything changes. Then each is
        converged in turn; ``done`` gets (request, before, extra, actions) for each as it ends,
        so a failure midway still says what was done. Returns [(before, after, extra, actions)]."""
        instances = self.view.instances()
        ids, tags, prepared = {}, {}, []
        for index, p in enumerate(requests):
            iid = p["instance"]
            if iid in ids:
                raise InstanceError(iid, "instances[%d].instance" % index, "%s is named twice (also as instances[%d])"
                                    % (iid, ids[iid]))
            ids[iid] = index
            before = instances.get(iid)
            try:
                spec, engine = self.prepare(p, before)
            except InstanceError as exc:
                raise InstanceError(iid, "instances[%d].%s" % (index, exc.field) if exc.field else "instances[%d]" % index,
                                    exc.message) from None
            except CommandError as exc:
                exc.instance = iid
                raise
            for leg in LEGS:
                tag = spec.vlans[leg]
                if tag in tags:
                    raise InstanceError(iid, "instances[%d].vlans.%s" % (index, leg), "VLAN %d is also the tag of %s"
                                        % (tag, tags[tag]))
                tags[tag] = port_name(iid, leg)
            prepared.append((p, spec, engine, before))
        for p, spec, engine, before in prepared:
            start = len(self.log.actions)
            try:
                extra = self.converge(p, spec, engine, before)
            except CommandError as exc:
                exc.instance = spec.id   # the module's error names the instance it was making
                raise
            done.append((p, before, extra, self.log.actions[start:]))
        self.view = HostView(self.host_bridge, run=self._run, vm_kind=self.vms)
        after = self.view.instances()
        return [(before, after.get(p["instance"]), extra, actions) for p, before, extra, actions in done]

    def export(self, instance):
        """The state of ``instance`` that a copy elsewhere must carry (None: nothing)."""
        info = self.view.instances().get(instance)
        if not info:
            raise InstanceError(instance, "instance", "%s does not run on this host" % instance)
        kind = "vm" if info.get("domain") else (info.get("kind") or "kernel")
        return self.kind(kind).export_state(instance, info.get("type"))
