#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: blackbox_info
short_description: Health of a black-box middlebox on the switch's ports
version_added: 0.1.0
description:
  - A black box is a third-party appliance (a vendor IDS, a DDoS scrubber) wired to two ports of
    the Flowstream switch - C(left) towards the traffic's source, C(right) towards its
    destination. The platform has no lifecycle for it beyond knowing it (the platform
    description's C(blackboxes)), steering traffic through it, and checking its health.
  - This module checks that health over OpenFlow - both ports exist on the switch, are not
    administratively down, and have link - and reports their live counters.
  - An unhealthy box is reported (RV(blackbox.healthy) is false, RV(blackbox.problems) says
    why), not failed, so a play can decide to steer around it; use O(fail_unhealthy) to fail.
  - Runs on the controller (the switch's inventory host has C(ansible_connection=local)).
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.attributes.info_module
  - flowstream.platform.openflow
requirements:
  - C(ovs-ofctl) (Open vSwitch; tested with 3.1) where the task runs (on the switch, or on a controller that reaches its OpenFlow target)
options:
  name:
    description: The black box's name (its inventory hostname), for messages.
    type: str
    required: true
  ports:
    description: The switch ports the box is wired to, by name or OpenFlow port number.
    type: dict
    required: true
    suboptions:
      left:
        description: The port towards the traffic's source.
        type: raw
        required: true
      right:
        description: The port towards the traffic's destination.
        type: raw
        required: true
  fail_unhealthy:
    description: Fail the task when the box is not healthy.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Health of every black box on its switch
  flowstream.platform.blackbox_info:
    name: "{{ inventory_hostname }}"
    switch: "{{ hostvars[flowstream_switch].flowstream_openflow_target }}"
    ports: "{{ flowstream_ports }}"
  delegate_to: localhost
  register: box
"""

RETURN = r"""
blackbox:
  description: The box's health and its ports.
  returned: always
  type: dict
  contains:
    name:
      description: The box's name.
      type: str
    healthy:
      description: Both ports exist, are administratively up and have link.
      type: bool
    problems:
      description: Why the box is not healthy (empty when it is).
      type: list
      elements: str
    ports:
      description: C(left) and C(right) - the switch port (number, name, config, state, link_up) and its live counters.
      type: dict
  sample:
    name: ids1
    healthy: true
    problems: []
    ports:
      left: {number: "7", name: fsl-bb1-l, config: [], state: [LIVE], link_up: true, rx_packets: 10, tx_packets: 10}
      right: {number: "8", name: fsl-bb1-r, config: [], state: [LIVE], link_up: true, rx_packets: 10, tx_packets: 10}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    OfctlError, connection_argument_spec, ofctl_from_params)


def health(name, ports, descs, stats):
    """The box's report from the switch's port descriptions and statistics."""
    by_name = {p.name: p for p in descs}
    by_number = {str(p.number): p for p in descs}
    report = {"name": name, "healthy": True, "problems": [], "ports": {}}
    for leg in ("left", "right"):
        want = str(ports[leg])
        port = by_number.get(want) if want.isdigit() else by_name.get(want)
        if port is None:
            report["problems"].append("%s port %s does not exist on the switch" % (leg, want))
            report["ports"][leg] = {"name": want, "present": False, "link_up": False}
            continue
        entry = port.as_dict()
        entry["present"] = True
        entry["link_up"] = "LINK_DOWN" not in port.state
        entry.update(stats.get(str(port.number), {}))
        if "PORT_DOWN" in port.config:
            report["problems"].append("%s port %s is administratively down" % (leg, port.name))
        if not entry["link_up"]:
            report["problems"].append("%s port %s has no link" % (leg, port.name))
        report["ports"][leg] = entry
    report["healthy"] = not report["problems"]
    return report


def main():
    spec = connection_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        ports=dict(type="dict", required=True, options=dict(left=dict(type="raw", required=True),
                                                            right=dict(type="raw", required=True))),
        fail_unhealthy=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    try:
        ofctl = ofctl_from_params(p, find_binary=module.get_bin_path)
        report = health(p["name"], p["ports"], ofctl.dump_ports(), ofctl.dump_port_stats())
    except (OfctlError, ValueError) as exc:
        module.fail_json(msg="black box %s: %s" % (p["name"], exc))
    if p["fail_unhealthy"] and not report["healthy"]:
        module.fail_json(msg="black box %s is not healthy: %s" % (p["name"], "; ".join(report["problems"])),
                         blackbox=report)
    module.exit_json(changed=False, blackbox=report)


if __name__ == "__main__":
    main()
