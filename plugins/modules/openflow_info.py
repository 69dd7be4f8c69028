#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: openflow_info
short_description: Read an OpenFlow switch's flows (with counters), groups and ports
version_added: 0.1.0
description:
  - Reads one OpenFlow switch through C(ovs-ofctl) - the flows of a cookie (or all flows) with their
    packet and byte counters, the group table with group statistics, and the ports with the mapping
    between port names and OpenFlow port numbers.
  - Flows and groups are returned in the same canonical text M(flowstream.platform.openflow_flows)
    compares and reports, so a flow from here can be fed back into that module unchanged.
  - For a B(drift report) (flows added, removed or altered by hand under a cookie), run
    M(flowstream.platform.openflow_flows) with C(--check --diff) instead; this module only reads.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.attributes.info_module
  - flowstream.platform.openflow
requirements:
  - C(ovs-ofctl) (Open vSwitch; tested with 3.1) where the task runs (on the switch, or on a controller that reaches its OpenFlow target)
options:
  cookie:
    description:
      - Return only the flows of this cookie (integer, or a string in decimal or C(0x) hex).
      - Leave it out to return every flow of the switch.
    type: raw
  cookie_mask:
    description:
      - Which bits of O(cookie) must match; all 64 by default. For example C(0xffff000000000000)
        with a cookie of C(0xf500000000000000) returns every flow of the C(0xf500) namespace.
    type: raw
  table:
    description: Return only the flows of this table.
    type: int
  flows:
    description: Whether to read the flows.
    type: bool
    default: true
  groups:
    description: Whether to read the groups and their statistics.
    type: bool
    default: true
  ports:
    description: Whether to read the ports.
    type: bool
    default: true
seealso:
  - module: flowstream.platform.openflow_flows
"""

EXAMPLES = r"""
- name: Counters of chain 1's flows
  flowstream.platform.openflow_info:
    switch: br0
    cookie: "0xf500000000000001"
    groups: false
    ports: false
  register: chain1

- name: Packets that hit each flow
  ansible.builtin.debug:
    msg: "{{ item.n_packets }} packets: {{ item.flow }}"
  loop: "{{ chain1.flows }}"

- name: Port number of a port called web-left, over TCP
  flowstream.platform.openflow_info:
    switch: tcp:127.0.0.1:6653
    flows: false
    groups: false
  register: sw

- name: Use it
  ansible.builtin.debug:
    msg: "web-left is OpenFlow port {{ sw.port_numbers['web-left'] }}"
"""

RETURN = r"""
flows:
  description: The flows, sorted by table, descending priority and match.
  returned: when O(flows=true)
  type: list
  elements: dict
  contains:
    flow: {description: Canonical C(ovs-ofctl) text of the flow (without cookie)., type: str, returned: always}
    cookie: {description: The flow's cookie., type: str, returned: always, sample: "0xf500000000000001"}
    table: {description: Table number., type: int, returned: always}
    priority: {description: Priority., type: int, returned: always}
    match: {description: Canonical match (empty for match-all)., type: str, returned: always}
    actions: {description: Canonical actions., type: str, returned: always}
    idle_timeout: {description: Idle timeout in seconds (0 = none)., type: int, returned: always}
    hard_timeout: {description: Hard timeout in seconds (0 = none)., type: int, returned: always}
    importance: {description: Eviction importance., type: int, returned: always}
    flags: {description: "Flow flags (send_flow_rem, no_packet_counts, no_byte_counts).", type: list, elements: str, returned: always}
    n_packets: {description: Packets that matched the flow., type: int, returned: always}
    n_bytes: {description: Bytes that matched the flow., type: int, returned: always}
    duration: {description: Seconds since the flow was installed., type: float, returned: always}
  sample:
    - {flow: "table=0,priority=100,tcp,in_port=1,tp_dst=80,actions=output:2", cookie: "0xf500000000000001",
       table: 0, priority: 100, match: "tcp,in_port=1,tp_dst=80", actions: "output:2", idle_timeout: 0,
       hard_timeout: 0, importance: 0, flags: [], n_packets: 1200, n_bytes: 96000, duration: 35.2}
groups:
  description: The groups, sorted by id, with their statistics.
  returned: when O(groups=true)
  type: list
  elements: dict
  contains:
    group_id: {description: Group id., type: int, returned: always}
    type: {description: "Group type as Open vSwitch prints it (all, select, indirect, ff)", type: str, returned: always}
    group: {description: Canonical C(ovs-ofctl) text of the group., type: str, returned: always}
    openflow15_only:
      description:
        - The group's C(selection_method)/C(fields) when O(openflow_version) is older than V(OpenFlow15).
          An OpenFlow 1.4 reply leaves them out of RV(groups[].group), so the module reads them with a
          second request over OpenFlow 1.5 and warns. Only for such groups.
      type: str
      returned: when the group has them and O(openflow_version) is older than V(OpenFlow15)
      sample: selection_method=hash,fields(ip_src,nw_proto)
    ref_count: {description: Flows that use the group., type: int, returned: when the switch reports statistics}
    packet_count: {description: Packets through the group., type: int, returned: when the switch reports statistics}
    byte_count: {description: Bytes through the group., type: int, returned: when the switch reports statistics}
    duration: {description: Seconds since the group was created., type: float, returned: when the switch reports statistics}
    buckets: {description: Per-bucket packet_count and byte_count., type: list, elements: dict, returned: when the switch reports statistics}
ports:
  description: The switch's OpenFlow ports.
  returned: when O(ports=true)
  type: list
  elements: dict
  contains:
    number: {description: OpenFlow port number as a string (C(LOCAL) for the bridge's own port)., type: str, returned: always}
    name: {description: Port name., type: str, returned: always}
    mac: {description: Port MAC address., type: str, returned: always}
    config: {description: Port config flags (for example PORT_DOWN)., type: list, elements: str, returned: always}
    state: {description: "Port state flags (for example LINK_DOWN, LIVE).", type: list, elements: str, returned: always}
port_numbers:
  description: Port name to OpenFlow port number.
  returned: when O(ports=true)
  type: dict
  sample: {web-left: "3", br0: LOCAL}
port_names:
  description: OpenFlow port number to port name.
  returned: when O(ports=true)
  type: dict
  sample: {"3": web-left, LOCAL: br0}
timings:
  description: Seconds spent reading the switch.
  returned: always
  type: dict
  sample: {total: 0.05}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    OfctlError,
    connection_argument_spec,
    ofctl_from_params,
)
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import (
    OpenFlowError,
    gather,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        cookie=dict(type="raw"),
        cookie_mask=dict(type="raw"),
        table=dict(type="int"),
        flows=dict(type="bool", default=True),
        groups=dict(type="bool", default=True),
        ports=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_by={"cookie_mask": "cookie"})
    p = module.params
    try:
        ofctl = ofctl_from_params(p, lambda name: module.get_bin_path(name, opt_dirs=["/usr/bin", "/usr/local/bin", "/usr/sbin"]))
        result = gather(ofctl, cookie=p["cookie"], cookie_mask=p["cookie_mask"], flows=p["flows"],
                        groups=p["groups"], ports=p["ports"], table=p["table"])
    except (ValueError, OpenFlowError) as exc:
        module.fail_json(msg=str(exc))
    except OfctlError as exc:
        module.fail_json(msg=exc.msg, rc=exc.rc, stderr=exc.stderr, cmd=" ".join(exc.argv), error_kind=exc.kind)
    for g in result.get("groups", []):
        if g.get("openflow15_only"):
            module.warn("group %d also has %s, which %s cannot show or set (its 'group' text leaves it out, and "
                        "openflow_flows at this version would clear it); use openflow_version: OpenFlow15 to read or "
                        "manage this group" % (g["group_id"], g["openflow15_only"], p["openflow_version"]))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
