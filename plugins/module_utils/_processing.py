# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lifecycle for processing-module instances of every kind on a module host.

``ProcessingModules.apply(params)`` validates the whole request (catalogue, kind, the host's
kinds, VLAN tags against what the host already uses, the kind's own checks such as ``nft -c``
or the image and memory of a VM) before changing anything, then lets the kind converge.
"""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue, _vm
from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run
from ansible_collections.flowstream.platform.plugins.module_utils._instance import (
    LEGS, HostView, Spec, check_id, check_vlans, port_name)
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kind_click import ClickKind
from ansible_collections.flowstream.platform.plugins.module_utils._kind_kernel import KernelKind
from ansible_collections.flowstream.platform.plugins.module_utils._kind_process import ProcessKind

HOST_KINDS = ("kernel", "process", "click", "vm")


def vm_kind(run=_run, required=False):
    """The VM kind, when libvirt-python is importable on this host."""
    if not _vm.HAS_LIBVIRT:
        if required:
            raise InstanceError(None, "kind", "kind vm needs libvirt-python on the module host (pip install "
                                "libvirt-python, or Debian's python3-libvirt)")
        return None
    return _vm.VmKind(run=run)


class ProcessingModules:
    def __init__(self, host_bridge, check_mode=False, run=_run, click_binary=None, with_vms=True):
        self.log = ActionLog(check_mode)
        self._run = run
        self.host_bridge = host_bridge
        self.click_binary = click_binary
        self.vms = vm_kind(run) if with_vms else None
        self.view = HostView(host_bridge, run=run, vm_kind=self.vms)

    def kind(self, name):
        if name == "kernel":
            return KernelKind(self.log, run=self._run)
        if name == "process":
            return ProcessKind(self.log, run=self._run)
        if name == "click":
            return ClickKind(self.log, run=self._run, binary=self.click_binary)
        if name == "vm":
            return self.vms or vm_kind(self._run, required=True)
        raise InstanceError(None, "kind", "kind %s does not run on a module host" % name)

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
        """Converge one instance; returns (before, after) views of it."""
        instances = self.view.instances()
        instance = p["instance"]
        before = instances.get(instance)
        if p["state"] == "absent":
            check_id(instance)
            if before:
                kind = before.get("kind") or p.get("kind") or "kernel"
                if kind == "vm" or before.get("domain"):
                    self.log.actions.extend(self.kind("vm").remove(instance, check_mode=self.log.check_mode))
                else:
                    self.kind(kind).remove(instance, self.host_bridge)
            return before, None
        spec = self.spec(p)
        self.check_host(spec, before)
        kind = self.kind(spec.kind)
        if spec.kind == "vm":
            vm_spec = {"id": spec.id, "type": spec.type, "chain": spec.chain, "step": spec.step, "vlans": spec.vlans,
                       "host_bridge": spec.host_bridge, "running": spec.running,
                       "memory_mib": int((spec.definition.get("vm") or {}).get("memory", 96)),
                       "vcpus": int((spec.definition.get("vm") or {}).get("vcpus", 1)),
                       "image": (spec.definition.get("vm") or {}).get("image") or {}}
            try:
                self.log.actions.extend(kind.ensure(vm_spec, check_mode=self.log.check_mode))
            except InstanceError as exc:
                # the VM kind names fields of its own spec; here they are processing_module's vm option
                if exc.field and exc.field.split(".")[0] in ("image", "memory", "vcpus"):
                    raise InstanceError(exc.instance, "vm." + exc.field, exc.message) from exc
                raise
        else:
            kind.validate(spec)
            kind.ensure(spec)
        self.view = HostView(self.host_bridge, run=self._run, vm_kind=self.vms)
        return before, self.view.instances().get(instance)
