#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: chain_plan
short_description: Plan service chains - place instances by load, compile the switch flows
version_added: 0.1.0
description:
  - Runs on the controller (an action plugin; nothing is sent to a host). Validates every chain
    of O(chains) against the catalogue and the platform (switches, uplinks, black boxes), refuses
    chains whose matches overlap, places their instances on module hosts from each host's
    capacity and live load, keeping instances where they are and keeping a chain's consecutive
    steps on one host where that fits, and compiles each chain's switch flows under the chain's
    cookie.
  - Host-local chaining. Where consecutive steps of a chain run on the same module host, the
    plan also holds flows for that host's bridge (same cookie) that take a packet from one
    instance's leg straight to the next instance's leg, so it does not cross the switch in
    between; they decide exactly as the switch flows would (same split matches, same hash slots
    for a parallel step).
  - Reads the platform from the inventory (the C(flowstream.platform.platform) plugin's groups
    and host variables) and each module host's report from its host variable
    C(flowstream_host_report), the registered result of M(flowstream.platform.module_host_info).
  - Fails before any host or switch is touched when a chain is wrong (naming chain, step and
    field) or capacity is short (naming chain, step and the shortfall).
  - This is the planning step of C(playbooks/deploy-chain.yml); the playbook then installs the
    instances with M(flowstream.platform.processing_module) and programs the host bridges and the
    switches with M(flowstream.platform.openflow_flows).
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.attributes.info_module
options:
  chains:
    description:
      - The service chains (the inventory's C(flowstream_chains)). Schema in the collection's
        docs/service-chains.md.
    type: list
    elements: dict
    required: true
  catalogue:
    description: The operator's processing-module types (C(flowstream_catalogue)).
    type: dict
    default: {}
notes:
  - Hosts that did not report (unreachable) are not used for new instances and are listed in
    RV(unreported_hosts).
"""

EXAMPLES = r"""
- name: Plan the chains
  flowstream.platform.chain_plan:
    chains: "{{ flowstream_chains }}"
    catalogue: "{{ flowstream_catalogue | default({}) }}"
  register: flowstream_plan
"""

RETURN = r"""
plan:
  description: What to do.
  returned: success
  type: dict
  contains:
    hosts:
      description:
        - Per module host, the instances to install (with why there) and to remove, and the
          host bridge's flows (C(flows)) under the chains' cookie range (C(cookie), C(cookie_mask)).
      type: dict
    switches:
      description: Per switch, each chain's cookie and flows, and the cookies of chains to remove.
      type: dict
    chains:
      description: Per chain, its path (steps and instances), placement, cookie, switch flow count and
        host flow count per host.
      type: dict
    instances:
      description: Every instance with its host, VLANs and the reason for its place.
      type: dict
    moves:
      description: Instances that change host.
      type: list
unreported_hosts:
  description: Module hosts without a report.
  returned: success
  type: list
  elements: str
"""
