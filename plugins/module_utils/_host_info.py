# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module host's report: load, memory, instances with live counters, VLANs, capacity left.

Everything is read from the host itself (/proc, OVSDB, namespaces, supervisor status, nftables
sets, libvirt); this is what placement reads.
"""

from __future__ import annotations

import os
import time

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run
from ansible_collections.flowstream.platform.plugins.module_utils._instance import LEGS, HostView
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import IPRoute, link_is_up
from ansible_collections.flowstream.platform.plugins.module_utils import _kinds
from ansible_collections.flowstream.platform.plugins.module_utils._actions import ActionLog
from ansible_collections.flowstream.platform.plugins.module_utils import _maintenance, _trunk

VLAN_MIN, VLAN_MAX = 2, 4094


def cpu_times():
    with open("/proc/stat", encoding="utf-8") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def cpu_report(interval):
    total0, idle0 = cpu_times()
    time.sleep(interval)
    total1, idle1 = cpu_times()
    busy = 1.0 - (idle1 - idle0) / float(max(total1 - total0, 1))
    load = os.getloadavg()
    return {"count": os.cpu_count(), "utilization": round(max(busy, 0.0), 3),
            "load_1": load[0], "load_5": load[1], "load_15": load[2], "sample_seconds": interval}


def memory_report():
    info = {}
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) // 1024
    return {"total_mib": info["MemTotal"], "available_mib": info.get("MemAvailable", info["MemFree"]),
            "used_mib": info["MemTotal"] - info.get("MemAvailable", info["MemFree"])}


def ranges(numbers):
    """[2, 3, 4, 7] -> ['2-4', '7']"""
    spans = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return [str(a) if a == b else "%d-%d" % (a, b) for a, b in spans]


def instance_state(instance, info, run=_run):
    kind = info.get("kind")
    if kind == "vm":
        return info.get("state", "unknown")
    if kind == "process" or kind == "click":
        status = _kinds.kind(kind, ActionLog(), run=run).status(instance)
        info["process"] = {k: status.get(k) for k in ("supervisor_pid", "child_pid", "restarts")}
        return "running" if status["running"] else "stopped"
    if kind == "kernel":
        inner = IPRoute(netns=info.get("namespace") or "fs-" + instance, run=run)
        return "running" if all(link_is_up(inner.link(leg)) for leg in LEGS) else "stopped"
    return "incomplete"  # a namespace or port without the rest: left by a failure


def _trunk_report(ovs, host_bridge):
    """The host end of the trunk: its port, link and BFD session (None when the host bridge has
    no port marked as the trunk)."""
    port = _trunk.host_trunk_port(ovs, host_bridge)
    if port is None:
        return None
    info = _trunk.read(ovs, port)
    return None if info is None else {k: info[k] for k in ("port", "link_state", "bfd")}


def packet_rates(instances, counters, seconds):
    """Each instance's packet rate (``pps``): the packets the host bridge sent into its legs
    (both directions) between the counters its legs carry and ``counters`` (the bridge's port
    counters, by OpenFlow port number, read ``seconds`` later). Sets ``pps`` on every instance
    whose legs were both read twice; returns their sum."""
    total = 0
    for info in instances.values():
        legs = info.get("legs") or {}
        sent, seen = 0, 0
        for leg in legs.values():
            now = counters.get(str(leg.get("ofport")))
            if now is None or leg.get("tx_packets") is None:
                continue
            sent += max(int(now.get("tx_packets", 0)) - int(leg["tx_packets"]), 0)
            seen += 1
        if legs and seen == len(legs) and seconds > 0:
            info["pps"] = int(round(sent / seconds))
            total += info["pps"]
    return total


def report(host_bridge, capacity=None, interval=0.5, flows=False, run=_run, vm_kind=None):
    view = HostView(host_bridge, run=run, vm_kind=vm_kind)
    first_read = time.monotonic()
    instances = view.instances()
    used = {"cpu": 0.0, "memory": 0.0}
    for name, info in instances.items():
        info["state"] = instance_state(name, info, run)
        for res in used:
            used[res] += float((info.get("resources") or {}).get(res) or 0)
        if flows and info.get("type") == "monitor":
            if info.get("kind") == "kernel":
                info["flows"] = _kinds.kind("kernel", ActionLog(), run=run).flows(name)
            elif info.get("kind") == "process":
                stats = _kinds.kind("process", ActionLog(), run=run).flows(name) or {}
                info["flows"] = stats.get("flows", [])
        if info.get("kind") == "click" and info["state"] == "running":
            info["click"] = _kinds.kind("click", ActionLog(), run=run).report(name)
        if info.get("kind") in ("process",) and info.get("type") == "inspect":
            stats = _kinds.kind("process", ActionLog(), run=run).flows(name) or {}
            info["inspection"] = stats.get("totals", {})
    in_use = view.vlans_in_use()
    free = [v for v in range(VLAN_MIN, VLAN_MAX + 1) if v not in in_use]
    cpu = cpu_report(interval)
    if interval > 0 and instances:
        # the legs' counters again, after the CPU sample: every instance's packet rate over it
        used["pps"] = float(packet_rates(instances, view.live_port_stats(), time.monotonic() - first_read))
    out = {
        "cpu": cpu,
        "memory": memory_report(),
        "instances": instances,
        "vlans": {"in_use": {str(k): v for k, v in sorted(in_use.items())}, "free": ranges(free), "free_count": len(free)},
        "host_bridge": host_bridge,
        "maintenance": _maintenance.read(view.ovs, host_bridge),
        "trunk": _trunk_report(view.ovs, host_bridge),
    }
    if capacity:
        cap = {k: float(v) for k, v in capacity.items() if k in ("cpu", "memory", "pps")}
        left = {k: round(cap[k] - used.get(k, 0.0), 3) for k in ("cpu", "memory", "pps") if k in cap}
        if "memory" in left:
            left["memory"] = min(left["memory"], float(out["memory"]["available_mib"]))
        # a packet rate only against a declared one (what was measured is in each instance's pps)
        reserved = {k: round(v, 3) for k, v in used.items() if k != "pps" or "pps" in cap}
        out["capacity"] = {"total": cap, "reserved": reserved, "left": left}
    return out
