# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kinds of processing modules behind ONE interface, and the one registry of them.

Every kind the engine drives (kernel, process, click, vm) answers the same calls, with a
validated :class:`_instance.Spec` and an :class:`_actions.ActionLog` that records (and in check
mode only announces) what is done:

=====================  ==========================================================================
``validate(spec)``     the kind's own checks, before anything changes (nft -c, the program, image, memory)
``ensure(spec)``       create / start / reconfigure until the instance is as specified
``remove(instance)``   the instance and everything it made on the host
``health(instance)``   ``running``, ``stopped`` (or the VM domain's state)
``export_state(id)``   what a copy elsewhere must carry (None: nothing - stateless, or a VM, whose
                       state libvirt's live migration carries)
``import_state(id, state)``  carry it into this copy; True when that changed something
``flows(id)``          per-flow counters (monitors), carried ones included
=====================  ==========================================================================

The legs are the same for every kind (``_instance``: ports ``fs-<id>-l``/``-r`` of the host
bridge, labelled in OVSDB), and so is waiting for them to go quiet (:func:`wait_quiet`), which a
make-before-break move does before it removes an old copy.

State that is carried (a monitor's per-flow counters, an inspecting filter's flagged flows) lives
in the copy's ``carried.json`` (``/run/flowstream/<id>/``) and is reported together with what the
copy counts itself, so a monitor that moved reports the flow's whole history.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from ansible_collections.flowstream.platform.plugins.module_utils import _vm
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import alive, end_processes, run as _run, spawn, wait_for
from ansible_collections.flowstream.platform.plugins.module_utils._files import holds, write_atomic
from ansible_collections.flowstream.platform.plugins.module_utils._instance import LEGS, RUN_DIR, netns_name, port_name
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import netns_path
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kind_click import ClickKind
from ansible_collections.flowstream.platform.plugins.module_utils._kind_kernel import KernelKind
from ansible_collections.flowstream.platform.plugins.module_utils._kind_process import BIN_DIR, BUILTIN_MODES, ProcessKind
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError

HOST_KINDS = ("kernel", "process", "click", "vm")


# -- carried state (shared by the kinds that carry any) -------------------------------------------
def carried_path(instance):
    return "%s/%s/carried.json" % (RUN_DIR, instance)


def read_carried(instance):
    try:
        with open(carried_path(instance), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def write_carried(instance, state, log):
    """Write the carried state of ``instance`` (atomically, only when it differs); True when changed."""
    text = json.dumps(state or {}, sort_keys=True) + "\n"
    path = carried_path(instance)
    if holds(path, text):
        return False
    log.act("carried the state of %s over (%d flows%s)" % (
        instance, len((state or {}).get("flows") or []),
        ", %d flagged" % len(state["flagged"]) if (state or {}).get("flagged") else ""),
        _write_dir_and_file, path, text)
    return True


def _write_dir_and_file(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, text, 0o644)


def flow_key(flow):
    return (str(flow.get("src")), str(flow.get("dst")), str(flow.get("proto")), int(flow.get("sport") or 0), int(flow.get("dport") or 0))


def merge_flows(*lists):
    """Per-flow counters of several sources added up (by 5-tuple), sorted."""
    out = {}
    for flows in lists:
        for flow in flows or []:
            key = flow_key(flow)
            entry = out.get(key)
            if entry is None:
                out[key] = dict(flow, packets=int(flow.get("packets", 0)), bytes=int(flow.get("bytes", 0)))
            else:
                entry["packets"] += int(flow.get("packets", 0))
                entry["bytes"] += int(flow.get("bytes", 0))
    return [out[k] for k in sorted(out)]


# -- the order barrier of a move (_hold) ------------------------------------------------------------
def hold_status(instance):
    """The hold of a new copy (hold-status.json: per direction how it was released, how many
    frames it held, for how long), or None."""
    try:
        with open("%s/%s/hold-status.json" % (RUN_DIR, instance), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# -- waiting for legs to go quiet --------------------------------------------------------------------
def leg_counters(host_bridge, instance, runner=None):
    """{leg: rx_packets + tx_packets} of the instance's legs, read now from ovs-vswitchd (OVSDB's
    statistics lag by seconds)."""
    try:
        ofctl = Ofctl(host_bridge, runner=runner)
        ports = {p.name: p.number for p in ofctl.dump_ports()}
        stats = ofctl.dump_port_stats()
    except OfctlError:
        return {}
    out = {}
    for leg in LEGS:
        number = ports.get(port_name(instance, leg))
        counters = stats.get(str(number)) if number is not None else None
        if counters is not None:
            out[leg] = int(counters.get("rx_packets", 0)) + int(counters.get("tx_packets", 0))
    return out


# the argument spec of the modules' ``quiesce`` option (doc fragment flowstream.platform.quiesce)
QUIESCE_OPTION = dict(type="dict", options=dict(quiet_ms=dict(type="int", default=200), timeout=dict(type="float", default=10)))


def wait_quiet(host_bridge, instance, quiet_ms=200, timeout=10.0, sleep=None, runner=None, clock=time.monotonic, pause=time.sleep):
    """Wait until the instance's legs have passed no packet for ``quiet_ms`` (bounded by
    ``timeout`` seconds). Returns {quiet, waited_ms, packets_since (after the first look)}."""
    sleep = sleep if sleep is not None else max(0.02, quiet_ms / 4000.0)
    start = clock()
    first = last = leg_counters(host_bridge, instance, runner)
    still_since = clock()
    while True:
        now = clock()
        if now - still_since >= quiet_ms / 1000.0:
            return {"quiet": True, "waited_ms": round((now - start) * 1000), "packets_since": sum(last.values()) - sum(first.values())}
        if now - start >= timeout:
            return {"quiet": False, "waited_ms": round((now - start) * 1000), "packets_since": sum(last.values()) - sum(first.values())}
        pause(sleep)
        seen = leg_counters(host_bridge, instance, runner)
        if seen != last:
            last, still_since = seen, clock()


# -- the kinds, behind one interface -------------------------------------------------------------------
class KernelInstances(KernelKind):
    """Linux kernel forwarding elements (see _kind_kernel)."""

    def hold_after_ensure(self, spec, hold):
        """A fresh copy of a moving instance holds its output in its legs' queues until the old
        copy's markers come (_hold: a plugged token bucket and an agent that opens it)."""
        run_dir = "%s/%s" % (RUN_DIR, spec.id)
        release = ""
        if spec.type == "shaper":
            release = "rate %s burst %s latency %s" % (spec.params["rate"], spec.params["burst"], spec.params["latency"])
        argv = ["nsenter", "--net=%s" % netns_path(netns_name(spec.id)), sys.executable, BIN_DIR + "/fs_hold.py", "agent",
                "--instance", spec.id, "--token", str(hold["token"]), "--timeout", str(hold.get("timeout", 2.0)),
                "--run-dir", run_dir, "--release", release]
        self.log.act("%s holds its output until the markers of the move come (token %s)" % (spec.id, hold["token"]),
                     self._start_agent, spec.id, run_dir, argv)

    def _start_agent(self, instance, run_dir, argv):
        ProcessKind(self.log, run=self._run).install_programs()
        os.makedirs(run_dir, exist_ok=True)
        status = os.path.join(run_dir, "hold-status.json")
        if os.path.exists(status):
            os.unlink(status)
        proc = spawn(argv, os.path.join(run_dir, "hold.log"))
        with open(os.path.join(run_dir, "hold-agent.pid"), "w", encoding="ascii") as handle:
            handle.write("%d\n" % proc.pid)
        if wait_for(lambda: os.path.exists(status) or proc.poll() is not None, 10, interval=0.02) and os.path.exists(status):
            return
        tail = ""
        try:
            with open(os.path.join(run_dir, "hold.log"), encoding="utf-8", errors="replace") as handle:
                tail = " | ".join(handle.read().splitlines()[-3:])
        except OSError:
            pass
        raise InstanceError(instance, "hold", "the hold of the new copy did not come up: %s" % (tail or "no word from its agent"))

    def holding(self, instance):
        try:
            with open("%s/%s/hold-agent.pid" % (RUN_DIR, instance), encoding="ascii") as handle:
                return alive(int(handle.read().strip()))
        except (OSError, ValueError):
            return False

    def _ensure_shaping(self, spec, ns, fresh=False):
        if self.holding(spec.id):
            return  # holding for a move (its result says so under "hold"): its queues are the agent's until released
        super()._ensure_shaping(spec, ns, fresh=fresh)

    def health(self, instance):
        return "running" if self.observe(instance)["running"] else "stopped"

    def export_state(self, instance, spec_type=None):
        # bridge-family nftables has no connection tracking on these kernels: only a monitor's
        # per-flow counters are state; a firewall or shaper here is stateless
        if spec_type not in (None, "monitor"):
            return None
        own = self.flows(instance)
        carried = read_carried(instance).get("flows")
        if not own and not carried and spec_type is None:
            return None
        return {"flows": merge_flows(own, carried)}

    def import_state(self, instance, state):
        return write_carried(instance, {"flows": (state or {}).get("flows") or []}, self.log)

    def flows(self, instance):
        return merge_flows(super().flows(instance), read_carried(instance).get("flows"))

    def remove(self, instance, host_bridge=None):
        try:
            with open("%s/%s/hold-agent.pid" % (RUN_DIR, instance), encoding="ascii") as handle:
                pid = int(handle.read().strip())
        except (OSError, ValueError):
            pid = None
        if pid and self.holding(instance):
            self.log.act("stopped the hold agent of %s" % instance, end_processes, [pid])
        super().remove(instance, host_bridge)
        run_dir = "%s/%s" % (RUN_DIR, instance)
        if os.path.isdir(run_dir):
            self.log.act("removed %s" % run_dir, shutil.rmtree, run_dir)


class ProcessInstances(ProcessKind):
    """Supervised programs (see _kind_process)."""

    def hold_before_start(self, spec, hold):
        """A fresh copy of a moving instance starts holding its output until the old copy's
        markers come: the built-in program reads hold.json at start (_hold.Gate)."""
        if spec.type not in BUILTIN_MODES or spec.definition.get("process") or self.status(spec.id)["running"]:
            return
        text = json.dumps({"instance": spec.id, "token": str(hold["token"]), "timeout": float(hold.get("timeout", 2.0))})
        self.log.act("%s starts holding its output until the markers of the move come (token %s)" % (spec.id, hold["token"]),
                     _write_dir_and_file, "%s/%s/hold.json" % (RUN_DIR, spec.id), text + "\n")

    def health(self, instance):
        return "running" if self.status(instance)["running"] else "stopped"

    def export_state(self, instance, spec_type=None):
        stats = self.fresh_stats(instance) or {}
        carried = read_carried(instance)
        flows = merge_flows(stats.get("flows"), carried.get("flows"))
        flagged = sorted({json.dumps(f) for f in (stats.get("flagged") or []) + (carried.get("flagged") or [])})
        if not flows and not flagged:
            return None if spec_type is None else {"flows": [], "flagged": []}
        return {"flows": flows, "flagged": [json.loads(f) for f in flagged]}

    def import_state(self, instance, state):
        state = state or {}
        return write_carried(instance, {"flows": state.get("flows") or [], "flagged": state.get("flagged") or []}, self.log)

    def flows(self, instance):
        stats = super().flows(instance)
        carried = read_carried(instance)
        if stats is None and not carried:
            return None
        stats = dict(stats or {})
        stats["flows"] = merge_flows(stats.get("flows"), carried.get("flows"))
        return stats


CLICK_TOTALS = ("packets_in", "packets_out", "dropped")


class ClickInstances(ClickKind, ProcessInstances):
    """Click configurations run by the userlevel click binary (a process). A monitor's counters
    are its state: a copy elsewhere carries them and reports the whole history."""

    def hold_before_start(self, spec, hold):
        """A Click configuration has no hold (its moves keep no order barrier; docs/operations.md)."""

    def report(self, instance):
        """The counters read over the control socket (None when it does not answer), with what
        earlier copies counted added to the totals (``carried``)."""
        now = self.counters(instance)
        carried = read_carried(instance).get("counters") or {}
        if now is None:
            return None
        for key in CLICK_TOTALS:
            now[key] += int(carried.get(key, 0))
        if carried:
            now["carried"] = {key: int(carried.get(key, 0)) for key in CLICK_TOTALS}
        return now

    def export_state(self, instance, spec_type=None):
        if spec_type not in (None, "monitor"):
            return None
        seen = self.report(instance) or {key: int((read_carried(instance).get("counters") or {}).get(key, 0)) for key in CLICK_TOTALS}
        return {"counters": {key: seen[key] for key in CLICK_TOTALS}}

    def import_state(self, instance, state):
        return write_carried(instance, {"counters": (state or {}).get("counters") or {}}, self.log)

    def flows(self, instance):
        return None  # Click counts per direction, not per flow


class VmInstances:
    """libvirt domains (see _vm): the same interface over _vm.VmKind."""

    name = "vm"

    def __init__(self, log, run=_run, required=True, **_ignored):
        if not _vm.HAS_LIBVIRT:
            if required:
                raise InstanceError(None, "kind", "kind vm needs libvirt-python on the module host (pip install "
                                    "libvirt-python, or Debian's python3-libvirt)")
            self.vms = None
        else:
            self.vms = _vm.VmKind(run=run)
        self.log = log

    @staticmethod
    def vm_spec(spec):
        vm = spec.definition.get("vm") or {}
        return {"id": spec.id, "type": spec.type, "chain": spec.chain, "step": spec.step, "vlans": spec.vlans,
                "host_bridge": spec.host_bridge, "running": spec.running, "memory_mib": int(vm.get("memory", 96)),
                "vcpus": int(vm.get("vcpus", 1)), "image": vm.get("image") or {}}

    def validate(self, spec):
        """The domain's own checks run inside ensure, before anything changes (image, memory, VLANs)."""

    def ensure(self, spec):
        try:
            self.log.actions.extend(self.vms.ensure(self.vm_spec(spec), check_mode=self.log.check_mode))
        except InstanceError as exc:
            # the VM kind names fields of its own spec; for the operator they are the vm option's
            if exc.field and exc.field.split(".")[0] in ("image", "memory", "vcpus"):
                raise InstanceError(exc.instance, "vm." + exc.field, exc.message) from exc
            raise

    def remove(self, instance, host_bridge=None):
        self.log.actions.extend(self.vms.remove(instance, check_mode=self.log.check_mode))

    def observe_all(self):
        return self.vms.observe_all() if self.vms else {}

    def health(self, instance):
        return (self.observe_all().get(instance) or {}).get("state", "unknown")

    def export_state(self, instance, spec_type=None):
        return None  # the guest's memory is its state; libvirt's live migration carries it

    def import_state(self, instance, state):
        return False

    def flows(self, instance):
        return None


REGISTRY = {"kernel": KernelInstances, "process": ProcessInstances, "click": ClickInstances, "vm": VmInstances}


def kind(name, log, run=_run, **options):
    """The kind ``name`` (one of HOST_KINDS) bound to ``log``; ``options``: ``binary`` (click),
    ``required`` (vm: fail without libvirt-python)."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise InstanceError(None, "kind", "kind %s does not run on a module host (kinds: %s)" % (name, ", ".join(HOST_KINDS)))
    if name == "click":
        return cls(log, run=run, binary=options.get("binary"))
    if name == "vm":
        return cls(log, run=run, required=options.get("required", True))
    return cls(log, run=run)


def _remove_carried(instance, log):
    path = carried_path(instance)
    if os.path.exists(path):
        log.act("removed %s" % path, os.unlink, path)
    folder = os.path.dirname(path)
    if os.path.isdir(folder) and not os.listdir(folder):
        log.act("removed %s" % folder, os.rmdir, folder)


__all__ = ["HOST_KINDS", "REGISTRY", "kind", "wait_quiet", "leg_counters", "merge_flows", "read_carried"]
