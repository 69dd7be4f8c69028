#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: module_host_info
short_description: The module host's report - load, memory, processing-module instances, VLANs, capacity left
version_added: 0.1.0
description:
  - The control module's report of a Flowstream module host, read from the host itself - CPU
    load and utilisation, memory, every processing-module instance (kind, type, chain, step,
    state, legs with live packet and byte counters, per-flow counters of monitors), the VLAN
    tags in use and free on the host bridge, and the capacity left.
  - This is what placement reads.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.quiesce
  - flowstream.platform.attributes.info_module
requirements:
  - C(ovs-vsctl) and C(ovs-ofctl) (Open vSwitch; tested with 3.1), C(ip) (iproute2), C(nft) and C(tc) on the module host
  - libvirt-python on the module host when it runs VM instances; the C(click) userlevel driver when it runs Click instances
options:
  host_bridge:
    description: The host bridge (Open vSwitch) on the module host.
    type: str
    default: fs-host
  capacity:
    description:
      - The host's capacity from the platform description (C(flowstream_capacity)), C(cpu) in
        cores, C(memory) in MiB and optionally C(pps) (packets per second); with it the report
        says what is left after the instances' reservations (memory also bounded by what the host
        has available now) and, for C(pps), after the packet rates measured now.
    type: dict
  sample_seconds:
    description:
      - How long to sample CPU utilisation. Each instance's packet rate (C(pps) in RV(instances))
        is measured over the same time (its legs' counters read before and after); V(0) measures
        neither.
    type: float
    default: 0.5
  flows:
    description: Include per-flow counters of monitor instances.
    type: bool
    default: false
  export_state:
    description:
      - Instances whose state to return in RV(exported_state) - what a copy on another host
        must carry (a make-before-break move reads it before it starts the new copy). A built-in
        process program is asked to write its counters at once, so the state is that of now.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Load and instances of every module host
  flowstream.platform.module_host_info:
    host_bridge: "{{ flowstream_host_bridge }}"
    capacity: "{{ flowstream_capacity }}"
  register: host_info

- name: Per-flow counters of the monitors on mh1
  flowstream.platform.module_host_info:
    flows: true
  delegate_to: mh1
"""

RETURN = r"""
cpu:
  description: CPU count, utilisation (0 to 1) over O(sample_seconds), load averages.
  returned: always
  type: dict
  sample: {count: 2, utilization: 0.12, load_1: 0.4, load_5: 0.3, load_15: 0.2, sample_seconds: 0.5}
memory:
  description: Memory in MiB.
  returned: always
  type: dict
  sample: {total_mib: 24000, available_mib: 21000, used_mib: 3000}
instances:
  description:
    - Every instance on the host, by id. C(pps) is the packets per second the host bridge sent
      into its legs (both directions) over O(sample_seconds) - what the planner counts against a
      host's declared C(pps) capacity when it places, moves or packs the instance. The legs'
      counters are ovs-vswitchd's, read live (C(tx_dropped) - what the bridge could not hand to the
      instance, e.g. a VM whose guest stopped reading).
  returned: always
  type: dict
  sample:
    fw1:
      kind: kernel
      type: firewall
      chain: web
      step: "0"
      state: running
      pps: 2400
      resources: {cpu: 0.1, memory: 16}
      legs:
        left: {port: fs-fw1-l, vlan: 101, port_type: system, rx_packets: 10, tx_packets: 10, rx_bytes: 980, tx_bytes: 980,
               rx_dropped: 0, tx_dropped: 0}
        right: {port: fs-fw1-r, vlan: 102, port_type: system, rx_packets: 10, tx_packets: 10, rx_bytes: 980, tx_bytes: 980,
                rx_dropped: 0, tx_dropped: 0}
vlans:
  description: VLAN tags of the host bridge in use (tag to port) and free (as ranges).
  returned: always
  type: dict
  sample: {in_use: {"101": fs-fw1-l, "102": fs-fw1-r}, free: ["2-100", "103-4094"], free_count: 4091}
capacity:
  description: Total, reserved by instances, and left (when O(capacity) is given).
  returned: when capacity is given
  type: dict
  sample: {total: {cpu: 4, memory: 8192, pps: 500000}, reserved: {cpu: 0.2, memory: 32, pps: 2400},
           left: {cpu: 3.8, memory: 8160, pps: 497600}}
quiesced:
  description: Per instance of O(export_state) with O(quiesce) - C(quiet), C(waited_ms), C(packets_since).
  returned: when quiesce and export_state are given
  type: dict
exported_state:
  description: Per instance of O(export_state), its state (null when it has none to carry).
  returned: when export_state is given
  type: dict
  sample: {web4b51a: {flows: [{src: 198.18.1.1, dst: 198.18.1.2, proto: 17, sport: 40000, dport: 8000, packets: 12, bytes: 1104}]}}
maintenance:
  description:
    - The host's maintenance mark (set by M(flowstream.platform.module_host_maintenance), kept in the
      host bridge's OVSDB C(external_ids)) - V(cordoned) (no new instance), V(draining) (instances
      being moved off), V(drained) (empty) - with when and why it was set; null when the host is in
      service. The planner honours it.
  returned: always
  type: dict
  sample: {state: drained, since: "2026-12-04T06:10:00Z", reason: "kernel upgrade"}
trunk:
  description:
    - The host's end of its trunk to the switch (the host bridge's port marked
      C(external_ids:flowstream-role=trunk)) - C(port), C(link_state) and C(bfd) (C(enabled),
      C(min_tx), C(min_rx), C(detect_ms), C(state), C(forwarding), C(remote_state),
      C(diagnostic), C(flap_count)); M(flowstream.platform.host_trunk) sets BFD up. Null when the
      host bridge has no trunk port.
  returned: always
  type: dict
  sample: {port: trunk0, link_state: up, bfd: {enabled: true, min_tx: 100, min_rx: 100, detect_ms: 300, state: up,
           forwarding: true, remote_state: up, diagnostic: null, flap_count: 1}}
host_bridge:
  description: The host bridge reported on.
  returned: always
  type: str
  sample: fs-host
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._host_info import report
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kinds import QUIESCE_OPTION, wait_quiet
from ansible_collections.flowstream.platform.plugins.module_utils._processing import ProcessingModules, vm_kind


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host_bridge=dict(type="str", default="fs-host"),
            capacity=dict(type="dict"),
            sample_seconds=dict(type="float", default=0.5),
            flows=dict(type="bool", default=False),
            export_state=dict(type="list", elements="str", default=[]),
            quiesce=QUIESCE_OPTION,
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = report(p["host_bridge"], p["capacity"], p["sample_seconds"], p["flows"], vm_kind=vm_kind())
        if p["export_state"] and p["quiesce"]:
            result["quiesced"] = {i: wait_quiet(p["host_bridge"], i, quiet_ms=p["quiesce"]["quiet_ms"], timeout=p["quiesce"]["timeout"])
                                  for i in p["export_state"]}
        if p["export_state"]:
            engine = ProcessingModules(p["host_bridge"], check_mode=True, with_vms=False)
            result["exported_state"] = {i: engine.export(i) for i in p["export_state"]}
    except (InstanceError, CommandError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
