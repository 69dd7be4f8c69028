#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_network
short_description: The root-namespace side of the one-machine Flowstream lab
version_added: 0.1.0
description:
  - Creates the lab's state directory (outside any git checkout), the controller's SSH key
    pair used to reach lab module hosts, the private mount under which lab hosts keep their
    mount and UTS namespaces alive, the management Linux bridge with the controller's
    address on it, and the lab's switches (Open vSwitch bridges of the system Open vSwitch,
    userspace datapath, OpenFlow 1.3 to 1.5, fail mode secure).
  - "With O(state=absent), sweeps every object whose name starts with O(prefix)-: network
    namespaces (ending the processes that run inside them, by pid), namespace mounts, links,
    Open vSwitch bridges of the system switch, the state directory, and the mount points the
    lab created. Objects without the prefix are never touched. Succeeds when nothing is there."
  - Used by the C(lab) role (C(playbooks/lab-up.yml), C(playbooks/lab-down.yml)); lab hosts
    themselves are managed by M(flowstream.platform.lab_host).
  - Runs on the lab machine itself, as root.
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
  - Linux network namespaces, C(ip) (iproute2) and Open vSwitch on the machine that holds the lab, run as root
options:
  prefix:
    description:
      - The lab prefix. Every object the lab creates is named C(<prefix>-...).
      - 1 to 6 letters, digits or dashes (Linux limits interface names to 15 characters).
    type: str
    required: true
  state_dir:
    description:
      - Directory for the lab's keys, configuration, pid files and namespace mounts.
    type: path
    required: true
  management:
    description:
      - The management network on the controller side.
    type: dict
    suboptions:
      bridge:
        description: Name of the Linux bridge joining the lab hosts' management links.
        type: str
        required: true
      address:
        description: The controller's address on the management bridge, in CIDR form.
        type: str
        required: true
  switches:
    description:
      - The lab's switches, each an Open vSwitch bridge of the system Open vSwitch.
    type: list
    elements: dict
    default: []
    suboptions:
      bridge:
        description: Bridge name; must start with O(prefix)-.
        type: str
        required: true
      protocols:
        description: OpenFlow versions the switch speaks.
        type: list
        elements: str
        default: [OpenFlow13, OpenFlow14, OpenFlow15]
      fail_mode:
        description:
          - V(secure) forwards nothing that no flow allows, also without a controller.
        type: str
        choices: [secure, standalone]
        default: secure
      datapath_type:
        description: OVS datapath; V(netdev) is the userspace datapath the lab needs.
        type: str
        default: netdev
      external_ids:
        description: C(external_ids) of the bridge record.
        type: dict
        default: {}
  socket_buffer:
    description:
      - While the lab is up, the machine's default socket receive buffer (C(net.core.rmem_default),
        bytes) is at least this. The lab's switches and hosts run Open vSwitch's userspace
        datapath, which reads every port through a packet socket polled by one thread; the
        kernel's default (208 KiB, about 90 frames of a veth) overflowed when that thread was held
        up for milliseconds on a loaded machine, and moves under 10 kpps lost hundreds of frames.
      - The value found is kept in O(state_dir); O(state=absent) puts it back, or leaves it to
        another lab that is still up (its lab-down puts it back). Sockets take the value when they
        are made, so a lab that was up before needs a lab-down and lab-up.
      - V(0) leaves the machine's value alone.
    type: int
    default: 4194304
  state:
    description:
      - V(present) creates what is missing; V(absent) sweeps everything with the prefix.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Management network of the lab
  flowstream.platform.lab_network:
    prefix: fsl
    state_dir: /var/lib/flowstream-lab
    management:
      bridge: fsl-mgmt
      address: 198.18.0.1/24
    switches:
      - bridge: fsl-sw
        protocols: [OpenFlow13, OpenFlow14, OpenFlow15]

- name: Remove every object of the lab, and nothing else
  flowstream.platform.lab_network:
    prefix: fsl
    state_dir: /var/lib/flowstream-lab
    state: absent
"""

RETURN = r"""
state_dir:
  description: The lab state directory.
  returned: always
  type: str
  sample: /var/lib/flowstream-lab
private_key:
  description: Path of the controller's SSH private key for lab hosts.
  returned: when state is present
  type: str
  sample: /var/lib/flowstream-lab/ssh/id_ed25519
public_key:
  description: The controller's SSH public key (null in check mode before it exists).
  returned: when state is present
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... flowstream-lab-controller
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["created management bridge fsl-mgmt", "added 198.18.0.1/24 to fsl-mgmt"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._lab import LabError, LabNetwork


def main():
    module = AnsibleModule(
        argument_spec=dict(
            prefix=dict(type="str", required=True),
            state_dir=dict(type="path", required=True),
            management=dict(type="dict", options=dict(
                bridge=dict(type="str", required=True),
                address=dict(type="str", required=True),
            )),
            switches=dict(type="list", elements="dict", default=[], options=dict(
                bridge=dict(type="str", required=True),
                protocols=dict(type="list", elements="str", default=["OpenFlow13", "OpenFlow14", "OpenFlow15"]),
                fail_mode=dict(type="str", choices=["secure", "standalone"], default="secure"),
                datapath_type=dict(type="str", default="netdev"),
                external_ids=dict(type="dict", default={}),
            )),
            socket_buffer=dict(type="int", default=4194304),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    lab = LabNetwork(module.params, check_mode=module.check_mode)
    before = lab.observe() if module._diff else None
    try:
        result = lab.present() if module.params["state"] == "present" else lab.absent()
    except (LabError, CommandError, OSError) as exc:
        module.fail_json(msg="lab network (prefix %s): %s" % (module.params["prefix"], exc),
                         actions=lab.actions)
    result.update(changed=bool(lab.actions), actions=lab.actions)
    if module._diff:
        after = dict(before, pending_actions=lab.actions) if module.check_mode else lab.observe()
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
