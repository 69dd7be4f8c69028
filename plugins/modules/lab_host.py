#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_host
short_description: A module host (or a traffic endpoint) of the one-machine Flowstream lab
version_added: 0.1.0
description:
  - Builds one host of the one-machine lab as a set of Linux namespaces that behaves like a
    real module host, or removes it.
  - "The host gets: a network namespace; a management veth onto the lab's management bridge;
    an uplink veth onto the switch (for a module host, its trunk); and, when O(services) is not
    empty, a mount namespace and a UTS namespace kept alive by bind mounts under
    O(state_dir)/ns, in which it has its own hostname, its own C(/sys), C(/etc/hosts) and
    C(/etc/hostname), and private copies of C(/etc/openvswitch), C(/run/openvswitch),
    C(/var/log/openvswitch), C(/etc/libvirt), C(/run/libvirt), C(/var/lib/libvirt),
    C(/var/cache/libvirt), C(/var/log/libvirt), C(/run/netns) and the directories where this
    collection keeps host state (C(/etc/flowstream), C(/var/lib/flowstream),
    C(/run/flowstream), C(/var/log/flowstream)). A session on one host never sees another
    host's files there."
  - "Services run inside the host: C(ovs) (its own ovsdb-server and ovs-vswitchd with the
    userspace datapath, holding O(host_bridge)), C(libvirt) (virtlogd and libvirtd listening
    on the management address over TCP, QEMU with TCG, so VM processing modules can be live
    migrated between lab hosts), C(sshd) (key login on the management address)."
  - Everything is found again from the machine (namespaces, mounts, pid files checked against
    the namespace of the process), so a second run reports no change and a run after a crash
    repairs what is missing. O(state=absent) ends every process in the host's namespaces by
    pid, unmounts, deletes its links, its switch port and its namespace, and removes its
    state.
  - Runs on the lab machine itself, as root. Requires C(iproute2), C(util-linux), C(ethtool),
    Open vSwitch, libvirt and OpenSSH server from the set-up step.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - Linux network namespaces, C(ip) (iproute2), Open vSwitch, C(sshd) (OpenSSH server) and C(libvirtd) on the machine that holds the lab, run as root
options:
  name:
    description: The host's name (its inventory hostname); also its default hostname.
    type: str
    required: true
  namespace:
    description: Name of the host's network namespace, normally C(<lab prefix>-<name>).
    type: str
    required: true
  state_dir:
    description:
      - The lab state directory (see M(flowstream.platform.lab_network)); the host keeps its
        configuration, keys, pid files and private directories under C(hosts/<name>) there.
    type: path
    required: true
  state:
    description:
      - Whether the host should exist (V(present), V(absent)), or exist switched off
        (V(stopped) - the lab's power driver - every process in its namespaces ended by pid,
        its links down on the machine's side, its namespaces, files and Open vSwitch database
        kept; V(present) powers it on again).
    type: str
    choices: [present, stopped, absent]
    default: present
  hostname:
    description: Hostname inside the host. Defaults to O(name).
    type: str
  management:
    description: The management link onto the lab's management Linux bridge.
    type: dict
    suboptions:
      bridge:
        description: The Linux bridge in the root namespace.
        type: str
        required: true
      port:
        description: Name of the veth end in the root namespace (at most 15 characters).
        type: str
        required: true
      interface:
        description: Name of the veth end inside the host.
        type: str
        default: mgmt0
      address:
        description: The host's management address in CIDR form.
        type: str
        required: true
  uplink:
    description:
      - The link onto the switch. For a module host, its trunk; for a traffic endpoint, its
        access link with an address.
    type: dict
    suboptions:
      switch_bridge:
        description: The switch's OVS bridge (system Open vSwitch, root namespace).
        type: str
        required: true
      port:
        description: Name of the veth end on the switch (the switch port name).
        type: str
        required: true
      interface:
        description: Name of the veth end inside the host.
        type: str
        default: trunk0
      address:
        description: Address of the host end in CIDR form (traffic endpoints); none for trunks.
        type: str
      external_ids:
        description: C(external_ids) to set on the switch port's interface record.
        type: dict
        default: {}
      checksum_offload:
        description:
          - Set to V(false) to turn transmit checksum offload off on both ends (TCP across
            veth and the userspace datapath hangs otherwise).
        type: bool
        default: false
  box:
    description:
      - Stand in a black box (a described C(blackboxes) entry) - two veths from the switch into
        the namespace, named O(box.left) and O(box.right) on the switch and C(left) and C(right)
        inside, joined by a Linux bridge (C(box0)), so what enters one side leaves by the other,
        as an inline appliance does. Excludes O(uplink) and O(services).
    type: dict
    suboptions:
      switch_bridge:
        description: The switch's OVS bridge (system Open vSwitch, root namespace).
        type: str
        required: true
      left:
        description: The switch port of the box's left side (the description's C(ports.left)).
        type: str
        required: true
      right:
        description: The switch port of the box's right side (the description's C(ports.right)).
        type: str
        required: true
      external_ids:
        description: C(external_ids) to set on both switch ports' interface records (each also gets C(flowstream-box-side)).
        type: dict
        default: {}
  services:
    description:
      - Services to run inside the host. Any service implies the private mount and UTS
        namespaces. An empty list makes a plain namespace (traffic source or sink).
    type: list
    elements: str
    choices: [ovs, libvirt, sshd]
    default: []
  host_bridge:
    description:
      - Name of the host bridge on the host's own Open vSwitch; the uplink interface is added
        to it as the trunk. Needs the C(ovs) service.
    type: str
  port_type:
    description:
      - Open vSwitch interface type of the trunk on O(host_bridge) (the inventory's
        C(flowstream_port_type)). V(afxdp-nonpmd) adds it as an AF_XDP port in generic XDP mode;
        a trunk of another type is re-created (never changed in place).
    type: str
    choices: [system, afxdp-nonpmd]
    default: system
  authorized_keys:
    description: Content of the authorized_keys file for root on this host.
    type: str
  ssh_port:
    description: Port sshd listens on (on the management address).
    type: int
    default: 22
  known_hosts:
    description:
      - A known_hosts file in which to pin this host's SSH host key (state V(present), with the
        C(sshd) service). The one line for the host's management address (C([address]:port) off
        port 22) holds its key, in its place; other lines are kept. Written atomically, only
        when it changes. lab-up points it at C(<state_dir>/ssh/known_hosts), which the lab's
        strict host key checking reads.
    type: path
  hosts:
    description: Extra C(/etc/hosts) entries inside the host, name to address.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Module host mh1 with its own OVS, libvirtd and sshd
  flowstream.platform.lab_host:
    name: mh1
    namespace: fsl-mh1
    state_dir: /var/lib/flowstream-lab
    management: {bridge: fsl-mgmt, port: fsl-mh1-m, address: 198.18.0.11/24}
    uplink: {switch_bridge: fsl-sw, port: fsl-mh1-tr, external_ids: {flowstream-host: mh1}}
    services: [ovs, libvirt, sshd]
    host_bridge: fs-host
    authorized_keys: "{{ lookup('file', '/var/lib/flowstream-lab/ssh/id_ed25519.pub') }}"

- name: Traffic source on a switch uplink
  flowstream.platform.lab_host:
    name: source
    namespace: fsl-src
    state_dir: /var/lib/flowstream-lab
    uplink: {switch_bridge: fsl-sw, port: fsl-up-src, interface: eth0, address: 198.18.1.1/24}

- name: A black box stood in between switch ports fsl-bb1-l and fsl-bb1-r
  flowstream.platform.lab_host:
    name: bb1
    namespace: fsl-bb1
    state_dir: /var/lib/flowstream-lab
    box: {switch_bridge: fsl-sw, left: fsl-bb1-l, right: fsl-bb1-r}

- name: Remove mh1 entirely
  flowstream.platform.lab_host:
    name: mh1
    namespace: fsl-mh1
    state_dir: /var/lib/flowstream-lab
    management: {bridge: fsl-mgmt, port: fsl-mh1-m, address: 198.18.0.11/24}
    uplink: {switch_bridge: fsl-sw, port: fsl-mh1-tr}
    services: [ovs, libvirt, sshd]
    state: absent
"""

RETURN = r"""
namespace:
  description: The host's network namespace.
  returned: always
  type: str
  sample: fsl-mh1
host_public_key:
  description: The host's SSH host key (C(type base64)), for a known_hosts entry.
  returned: when state is present and the host runs sshd
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB...
pids:
  description: Pids of the host's daemons.
  returned: when state is present and services are set
  type: dict
  sample: {sshd: 4242, libvirtd: 4240, virtlogd: 4238, ovsdb-server: 4230, ovs-vswitchd: 4233}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["created network namespace fsl-mh1", "started sshd on mh1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._lab import LabError, LabHost
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import PORT_TYPES


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            namespace=dict(type="str", required=True),
            state_dir=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "stopped", "absent"], default="present"),
            hostname=dict(type="str"),
            management=dict(type="dict", options=dict(
                bridge=dict(type="str", required=True),
                port=dict(type="str", required=True),
                interface=dict(type="str", default="mgmt0"),
                address=dict(type="str", required=True),
            )),
            uplink=dict(type="dict", options=dict(
                switch_bridge=dict(type="str", required=True),
                port=dict(type="str", required=True),
                interface=dict(type="str", default="trunk0"),
                address=dict(type="str"),
                external_ids=dict(type="dict", default={}),
                checksum_offload=dict(type="bool", default=False),
            )),
            box=dict(type="dict", options=dict(
                switch_bridge=dict(type="str", required=True),
                left=dict(type="str", required=True),
                right=dict(type="str", required=True),
                external_ids=dict(type="dict", default={}),
            )),
            services=dict(type="list", elements="str", choices=["ovs", "libvirt", "sshd"], default=[]),
            host_bridge=dict(type="str"),
            port_type=dict(type="str", choices=list(PORT_TYPES), default="system"),
            authorized_keys=dict(type="str", no_log=False),
            ssh_port=dict(type="int", default=22),
            hosts=dict(type="dict", default={}),
            known_hosts=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    host = LabHost(module.params, check_mode=module.check_mode)
    before = host.observe() if module._diff else None
    try:
        result = {"present": host.present, "stopped": host.stopped, "absent": host.absent}[module.params["state"]]()
    except (LabError, CommandError, OSError) as exc:
        module.fail_json(msg="lab host %s: %s" % (module.params["name"], exc), actions=host.actions)
    if module.params["state"] == "present" and host.services:
        result["host_public_key"] = host.host_public_key()
        if module.params["known_hosts"] and result["host_public_key"] and module.params["management"]:
            try:
                host.pin_host_key(module.params["known_hosts"], result["host_public_key"])
            except OSError as exc:
                module.fail_json(msg="lab host %s: known_hosts %s: %s" % (module.params["name"], module.params["known_hosts"], exc),
                                 actions=host.actions)
        result["pids"] = {name: host.daemon_pid(name) for name in host._daemons()}
    result.update(changed=bool(host.actions), actions=host.actions)
    if module._diff:
        after = dict(before, pending_actions=host.actions) if module.check_mode else host.observe()
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
