#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_migrate
short_description: Live-migrate a VM processing module to another module host, flipping the switch at the switchover
version_added: 0.1.0
description:
  - Moves a running O(instance) of kind V(vm) (the libvirt domain C(fs-<instance>)) from the module
    host O(source_uri) to the module host O(destination_uri) by libvirt live migration, peer to peer
    (C(migrateToURI3) with C(LIVE), C(PEER2PEER), C(PERSIST_DEST), C(UNDEFINE_SOURCE)). The guest keeps
    running, its memory and state move, the domain is defined on the destination and undefined on the source.
  - On the destination the instance's legs are access ports on O(destination_vlans) of
    O(destination_host_bridge); the destination XML (live and persistent) and the C(<fs:instance>)
    metadata say so. MACs and Open vSwitch interface ids stay.
  - 'The switch is re-plumbed AT the switchover, not after it: before the migration starts, the module plans
    the flows of O(cookie) the switch must hold afterwards (O(flows), O(flows_text); C(state: replaced) as in
    M(flowstream.platform.openflow_flows)) into one OpenFlow bundle, and the inverse bundle that puts back
    the flows held now. It applies the bundle inside the libvirt lifecycle event chosen by O(flip_on).'
  - If the migration fails after the flip, the inverse bundle is applied and the task fails saying so.
  - 'Everything is checked before anything changes: the domain runs on the source and is a flowstream
    instance (C(<fs:instance>) metadata); the destination libvirt answers, is another host and has no
    domain of that name; the destination VLANs are valid and not claimed by another VM instance there;
    the flows are valid for the switch.'
  - Runs on the controller, the host that reaches the switch (like M(flowstream.platform.openflow_flows));
    it reaches both module hosts' libvirt daemons by URI.
  - The leg ports' OVSDB labels (C(flowstream-*) C(external_ids)) on the destination are not set here; a
    M(flowstream.platform.processing_module) task for the instance on the destination host, with the
    destination VLANs, puts them back without restarting the guest.
  - See C(docs/vm-modules.md) in the collection for the measured loss at the switchover and the choice of O(flip_on).
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.openflow
attributes:
  check_mode:
    support: full
    details: Validates everything, reads both hosts and the switch, plans the bundle; migrates nothing and sends nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: When the instance already runs on the destination with O(destination_vlans), only the flows are made right.
options:
  instance:
    description: The instance id; its domain is C(fs-<instance>).
    type: str
    required: true
  source_uri:
    description:
      - The libvirt URI of the module host the instance runs on, for example C(qemu+tcp://198.18.0.11/system)
        (the lab's hosts listen on TCP at their management address) or C(qemu+ssh://root@mh1/system).
      - The controller opens it, and the source's libvirtd opens O(destination_uri) itself (peer to peer),
        so the destination URI must also work from the source host.
    type: str
    required: true
  destination_uri:
    description: The libvirt URI of the module host to move the instance to.
    type: str
    required: true
  destination_vlans:
    description: The VLAN tags of the legs on the destination host (2-4094, different).
    type: dict
    required: true
    suboptions:
      left:
        description: VLAN of the left leg (towards the traffic's source).
        type: int
        required: true
      right:
        description: VLAN of the right leg (towards the traffic's destination).
        type: int
        required: true
  destination_host_bridge:
    description:
      - The Open vSwitch bridge of the destination host the legs plug into. Default is the bridge the
        legs are on at the source (C(fs-host) in the lab).
    type: str
  max_downtime_ms:
    description:
      - The longest pause of the guest QEMU may plan for the final copy (C(virDomainMigrateSetMaxDowntime)).
        libvirt's measured downtime (RV(downtime_ms)) includes its own steps around it and is usually longer.
    type: int
    default: 100
  flip_on:
    description:
      - The libvirt lifecycle event in which the switch flips.
      - V(source_suspended) - the source pauses the guest for the last copy (C(SUSPENDED)/C(MIGRATED)). Packets
        sent to the destination from then on wait in its tap until the guest resumes there.
      - V(destination_resumed) - the guest resumes on the destination (C(RESUMED)/C(MIGRATED)). Packets sent
        during the pause still go to the paused source and are lost.
      - Measured on the lab (docs/vm-modules.md), V(source_suspended) loses fewer packets.
      - If the event does not come, the switch flips when the migration returns, with a warning.
    type: str
    choices: [source_suspended, destination_resumed]
    default: source_suspended
  migration_timeout:
    description: Seconds the migration may take; then it is aborted (the guest stays on the source) and the task fails.
    type: int
    default: 300
  connect_timeout:
    description: Seconds to wait for a TCP or TLS libvirt URI's host to accept a connection.
    type: int
    default: 10
  cookie:
    description:
      - The cookie of the flows the switchover changes, as in M(flowstream.platform.openflow_flows)
        (integer or decimal/C(0x) hex string; not V(0)).
    type: raw
    required: true
  cookie_mask:
    description: Which bits of O(cookie) define ownership, as in M(flowstream.platform.openflow_flows).
    type: raw
  flow_cookies:
    description: Each flow may carry its own cookie inside O(cookie)/O(cookie_mask), as in M(flowstream.platform.openflow_flows).
    type: bool
    default: false
  flows:
    description:
      - The flows the cookie must hold from the switchover on (C(state=replaced)). Flows of the cookie not
        listed are deleted at the flip. Items as in M(flowstream.platform.openflow_flows) (ovs-ofctl strings or dicts).
      - Port names are resolved to numbers before the migration starts.
    type: list
    elements: raw
  flows_text:
    description: More such flows, one per line as an C(ovs-ofctl) flow file (C(#) comments).
    type: str
  report_limit:
    description: At most this many flows are listed in each of C(added), C(removed), C(modified) of RV(switch).
    type: int
    default: 100
requirements:
  - libvirt-python on the controller
  - C(ovs-ofctl) on the controller (Open vSwitch 2.8 or later)
notes:
  - Groups are left alone; flows may use groups the switch has.
  - The flows are planned against the switch as it is when the task starts; another controller changing
    the same cookie during the migration makes the bundle fail or undo that change.
  - The destination host's Open vSwitch is not reached; a VLAN already tagged on a port of another kind there
    is not detected (libvirt then plugs a second port into that VLAN). M(flowstream.platform.chain_plan) picks free VLANs.
seealso:
  - module: flowstream.platform.openflow_flows
  - module: flowstream.platform.processing_module
  - name: virDomainMigrateToURI3
    description: libvirt's migration API.
    link: https://libvirt.org/html/libvirt-libvirt-domain.html#virDomainMigrateToURI3
"""

EXAMPLES = r"""
- name: Move the VM instance gue1 from mh1 to mh2, the chain's flows flipped as the source pauses
  flowstream.platform.vm_migrate:
    instance: gue1
    source_uri: qemu+tcp://198.18.0.11/system
    destination_uri: qemu+tcp://198.18.0.12/system
    destination_vlans: {left: 201, right: 202}
    switch: unix:/var/run/openvswitch/fsl-sw.mgmt
    cookie: "0xf5c000000000a001"
    flows:
      - priority=100,in_port=fsl-up-src,actions=push_vlan:0x8100,set_field:4297->vlan_vid,output:fsl-mh2-tr
      - priority=100,in_port=fsl-mh2-tr,dl_vlan=202,actions=pop_vlan,output:fsl-up-sink
      - priority=99,in_port=fsl-up-sink,actions=push_vlan:0x8100,set_field:4298->vlan_vid,output:fsl-mh2-tr
      - priority=100,in_port=fsl-mh2-tr,dl_vlan=201,actions=pop_vlan,output:fsl-up-src
  register: moved

- name: Put the leg labels back on the destination (no restart of the guest)
  flowstream.platform.processing_module:
    instance: gue1
    kind: vm
    type: wire
    vlans: {left: 201, right: 202}
    vm: {image: "{{ flowstream_vm_images.wire }}", memory: 96, vcpus: 1}
  delegate_to: mh2

- name: What would move (check mode validates both hosts and the switch, changes nothing)
  flowstream.platform.vm_migrate:
    instance: gue1
    source_uri: qemu+tcp://198.18.0.12/system
    destination_uri: qemu+tcp://198.18.0.13/system
    destination_vlans: {left: 301, right: 302}
    switch: unix:/var/run/openvswitch/fsl-sw.mgmt
    cookie: "0xf5c000000000a001"
    flows_text: "{{ lookup('ansible.builtin.template', 'gue1-on-mh3.flows.j2') }}"
  check_mode: true
"""

RETURN = r"""
instance:
  description: The instance id.
  returned: always
  type: str
  sample: gue1
domain:
  description: The libvirt domain.
  returned: success
  type: str
  sample: fs-gue1
source:
  description: The source libvirt URI.
  returned: success
  type: str
destination:
  description: The destination libvirt URI.
  returned: success
  type: str
migrated:
  description: Whether a migration took place (false when the instance ran on the destination already, and in check mode).
  returned: success
  type: bool
before:
  description: The legs' C(vlans) and C(host_bridge) on the source.
  returned: when the instance was on the source
  type: dict
  sample: {vlans: {left: 101, right: 102}, host_bridge: fs-host}
after:
  description: The legs' C(vlans) and C(host_bridge) on the destination.
  returned: when the instance was on the source
  type: dict
duration_ms:
  description: Milliseconds from RV(started_ns) to RV(ended_ns) (validation, planning, migration, flip).
  returned: success
  type: float
migration_ms:
  description: Milliseconds the libvirt migration call took (it returns after the source is cleaned up, well after the switchover).
  returned: when migrated
  type: float
downtime_ms:
  description: The guest's downtime as libvirt measured it (completed job statistics), from the source's pause to the destination's resume.
  returned: when migrated
  type: int
  sample: 161
max_downtime_ms:
  description: The maximum downtime asked of QEMU.
  returned: when the instance was on the source
  type: int
libvirt_job:
  description: The completed migration job's statistics (C(time_elapsed), C(downtime), C(downtime_net), C(data_total), C(memory_iteration), ... ms and bytes).
  returned: when migrated
  type: dict
flip:
  description: When and how the switch flipped.
  returned: when migrated
  type: dict
  contains:
    "on": {description: The O(flip_on) asked., type: str, returned: always}
    event:
      description: The event it flipped in (C(source suspended/migrated), C(destination resumed/migrated)) or C(migration returned).
      type: str
      returned: always
    event_ns: {description: CLOCK_REALTIME ns when the event reached the module., type: int, returned: always}
    applied_ns: {description: CLOCK_REALTIME ns when the switch had confirmed the bundle., type: int, returned: always}
    delay_ms: {description: Milliseconds from the event to the confirmed bundle., type: float, returned: always}
    bundle_lines: {description: Lines of the bundle., type: int, returned: always}
    prespawned: {description: Whether the bundle went to an C(ovs-ofctl) started before the migration., type: bool, returned: always}
    datapath:
      description:
        - What was done to the switch's datapath after the bundle (after RV(flip.applied_ns)), as
          openflow_flows' RV(flowstream.platform.openflow_flows#module:datapath) says - V(purged) for a local
          userspace datapath; null when the bundle was empty.
      type: str
      returned: always
  sample: {"on": source_suspended, event: source suspended/migrated, event_ns: 1767000000501498019,
           applied_ns: 1767000000504012345, delay_ms: 2.514, bundle_lines: 6, prespawned: true, datapath: purged}
events:
  description: The lifecycle events of the domain on both hosts during the migration, in order (C(host), C(event), C(ns)).
  returned: when migrated
  type: list
  elements: dict
  sample: [{host: destination, event: started/migrated, ns: 1767000000381274951},
           {host: source, event: suspended/migrated, ns: 1767000000501498019}]
switch:
  description: The flow change, as M(flowstream.platform.openflow_flows) reports it (C(cookie), C(counts), C(added), C(removed), C(modified), C(truncated)).
  returned: success
  type: dict
started_ns:
  description: CLOCK_REALTIME ns when the module started its work.
  returned: success
  type: int
ended_ns:
  description: CLOCK_REALTIME ns when it was done.
  returned: success
  type: int
actions:
  description: What was done (or would be done, in check mode).
  returned: success
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    OfctlError,
    connection_argument_spec,
    ofctl_from_params,
)
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import OpenFlowError
from ansible_collections.flowstream.platform.plugins.module_utils._vm import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR
from ansible_collections.flowstream.platform.plugins.module_utils._vm_migrate import (
    DEFAULT_FLIP_ON,
    DEFAULT_MAX_DOWNTIME_MS,
    FLIP_EVENTS,
    MigrationError,
    Migrator,
    SwitchFlip,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        instance=dict(type="str", required=True),
        source_uri=dict(type="str", required=True),
        destination_uri=dict(type="str", required=True),
        destination_vlans=dict(type="dict", required=True, options=dict(left=dict(type="int", required=True),
                                                                        right=dict(type="int", required=True))),
        destination_host_bridge=dict(type="str"),
        max_downtime_ms=dict(type="int", default=DEFAULT_MAX_DOWNTIME_MS),
        flip_on=dict(type="str", default=DEFAULT_FLIP_ON, choices=sorted(FLIP_EVENTS)),
        migration_timeout=dict(type="int", default=300),
        connect_timeout=dict(type="int", default=10),
        cookie=dict(type="raw", required=True),
        cookie_mask=dict(type="raw"),
        flow_cookies=dict(type="bool", default=False),
        flows=dict(type="list", elements="raw"),
        flows_text=dict(type="str"),
        report_limit=dict(type="int", default=100),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[("flows", "flows_text")])
    p = module.params
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=str(LIBVIRT_IMPORT_ERROR), instance=p["instance"])
    try:
        ofctl = ofctl_from_params(p, lambda name: module.get_bin_path(name, opt_dirs=["/usr/bin", "/usr/local/bin", "/usr/sbin"]))
        flip = SwitchFlip(ofctl, cookie=p["cookie"], cookie_mask=p["cookie_mask"], flows=p["flows"], flows_text=p["flows_text"],
                          flow_cookies=p["flow_cookies"], report_limit=p["report_limit"])
        result = Migrator(p["instance"], p["source_uri"], p["destination_uri"], p["destination_vlans"], flip,
                          destination_host_bridge=p["destination_host_bridge"], max_downtime_ms=p["max_downtime_ms"],
                          flip_on=p["flip_on"], migration_timeout=p["migration_timeout"],
                          connect_timeout=p["connect_timeout"]).run(check_mode=module.check_mode)
    except MigrationError as exc:
        module.fail_json(msg=str(exc), instance=p["instance"], **exc.details)
    except (ValueError, OpenFlowError) as exc:
        module.fail_json(msg="instance %s: %s" % (p["instance"], exc), instance=p["instance"])
    except OfctlError as exc:
        module.fail_json(msg="instance %s: the switch %s: %s (nothing was changed)" % (p["instance"], p["switch"], exc.msg),
                         instance=p["instance"], rc=exc.rc, stderr=exc.stderr, cmd=" ".join(exc.argv))
    except Exception as exc:  # pylint: disable=broad-except
        # a failure nobody foresaw still names the instance and the hosts, not just a traceback
        module.fail_json(msg="instance %s: moving from %s to %s failed unexpectedly: %s: %s" % (
            p["instance"], p["source_uri"], p["destination_uri"], exc.__class__.__name__, exc),
            instance=p["instance"], exception=traceback.format_exc())
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
