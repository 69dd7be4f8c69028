# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-variable contract, both halves in one place.

The inventory plugin (flowstream.platform.platform) WRITES these variables for every host of
the platform description (:func:`switch_vars`, :func:`module_host_vars`, :func:`blackbox_vars`);
the planner, the playbooks and the action plugins READ them back (:func:`platform_from_vars`).
A variable is added, renamed or dropped here, and both sides follow.
"""

from __future__ import annotations

GROUP_SWITCHES = "flowstream_switches"
GROUP_MODULE_HOSTS = "flowstream_module_hosts"
GROUP_SPARES = "flowstream_spares"
GROUP_BLACKBOXES = "flowstream_blackboxes"
#: module hosts fenced after a failure that do not answer (gather_hosts.yml fills it at run time):
#: every play on module hosts leaves them out
GROUP_FAILED = "flowstream_failed"
DEFAULT_HOST_BRIDGE = "fs-host"


# -- writing (the inventory plugin) ---------------------------------------------------------------
def switch_vars(platform, switch):
    out = {
        "flowstream_platform": platform,
        "flowstream_role": "switch",
        "ansible_connection": "local",
        "flowstream_openflow_target": switch.openflow_target,
        "flowstream_bridge": switch.bridge,
        "flowstream_openflow_versions": list(switch.openflow_versions),
        "flowstream_uplinks": dict(switch.uplinks),
    }
    if switch.ssl is not None:
        out["flowstream_ssl"] = switch.ssl.as_dict()
    if switch.management_address is not None:
        out["flowstream_management_address"] = switch.management_address
    return out


def module_host_vars(platform, management_network, host):
    return {
        "flowstream_platform": platform,
        "flowstream_role": host.role,
        "ansible_host": host.management_address,
        "flowstream_management_address": host.management_address,
        "flowstream_management_network": management_network,
        "flowstream_switch": host.switch,
        "flowstream_trunk": host.trunk,
        "flowstream_host_bridge": host.host_bridge,
        "flowstream_port_type": host.port_type,
        "flowstream_leg_port_type": host.leg_port_type or host.port_type,
        "flowstream_capacity": host.capacity.as_dict(),
        "flowstream_kinds": list(host.kinds),
        "flowstream_power": dict(host.power),
        "flowstream_spare": host.spare,
        "flowstream_libvirt_uri": host.libvirt_uri,
    }


def blackbox_vars(platform, box):
    out = {
        "flowstream_platform": platform,
        "flowstream_role": "blackbox",
        "ansible_connection": "local",
        "flowstream_switch": box.switch,
        "flowstream_ports": box.ports,
        "flowstream_health": {"type": box.health},
    }
    if box.description is not None:
        out["flowstream_description"] = box.description
    if box.capacity is not None:
        out["flowstream_capacity"] = box.capacity
    return out


# -- reading (the planner's side) -------------------------------------------------------------------
def switch_module_hosts(hostvars, groups, switch):
    """[{name, trunk, address}] of the module hosts (spares included) whose trunk is plugged into
    ``switch``: what failure_info looks at."""
    out = []
    for name in groups.get(GROUP_MODULE_HOSTS, []):
        hv = hostvars[name]
        if hv.get("flowstream_switch") in (None, switch) and hv.get("flowstream_trunk") is not None:
            out.append({"name": name, "trunk": str(hv["flowstream_trunk"]),
                        "address": hv.get("flowstream_management_address") or hv.get("ansible_host") or name})
    return out


def platform_from_vars(hostvars, groups):
    """The platform as the inventory plugin describes it: (hosts, switches, blackboxes).

    A module host's ``report`` is its ``flowstream_host_report`` (module_host_info's registered
    result; None when it failed or was unreachable); ``in_service`` is False when the platform
    description says so (``flowstream_in_service: false``)."""
    hosts, switches, boxes = {}, {}, {}
    looks = {}  # failure_info's verdicts per module host, from the switches' looks (gather_hosts.yml)
    for name in groups.get(GROUP_SWITCHES, []):
        seen = hostvars[name].get("flowstream_failures")
        if isinstance(seen, dict) and not (seen.get("failed") is True or seen.get("skipped")):
            looks.update(seen.get("hosts") or {})
    for name in groups.get(GROUP_MODULE_HOSTS, []):
        hv = hostvars[name]
        report = hv.get("flowstream_host_report")
        if isinstance(report, dict) and (report.get("failed") or report.get("unreachable") or report.get("skipped")):
            report = None
        hosts[name] = {"capacity": dict(hv.get("flowstream_capacity") or {}), "kinds": list(hv.get("flowstream_kinds") or []),
                       "spare": bool(hv.get("flowstream_spare")), "in_service": hv.get("flowstream_in_service", True) is not False,
                       "trunk": hv.get("flowstream_trunk"), "switch": hv.get("flowstream_switch"),
                       "host_bridge": hv.get("flowstream_host_bridge", DEFAULT_HOST_BRIDGE),
                       "libvirt_uri": hv.get("flowstream_libvirt_uri"), "report": report,
                       "fence": (looks.get(name) or {}).get("fence")}
    for name in groups.get(GROUP_SWITCHES, []):
        hv = hostvars[name]
        switches[name] = {"uplinks": dict(hv.get("flowstream_uplinks") or {}), "openflow_target": hv.get("flowstream_openflow_target"),
                          "bridge": hv.get("flowstream_bridge"), "ssl": dict(hv.get("flowstream_ssl") or {}),
                          # the trials recorded on the switch (chain_trial, read by gather_hosts.yml)
                          "trials": dict((hv.get("flowstream_trials") or {}).get("trials") or {})}
    for name in groups.get(GROUP_BLACKBOXES, []):
        hv = hostvars[name]
        boxes[name] = {"switch": hv.get("flowstream_switch"), "ports": dict(hv.get("flowstream_ports") or {})}
    return hosts, switches, boxes
