# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """How flowstream.platform's OpenFlow modules reach a switch (through ovs-ofctl)."""

    DOCUMENTATION = r"""
options:
  switch:
    description:
      - The OpenFlow switch to talk to.
      - A bridge name of the Open vSwitch on the managed node (for example V(br0)); C(ovs-ofctl)
        reaches it over its management socket.
      - Or an OpenFlow target, as C(ovs-ofctl) spells it, C(unix:PATH), C(tcp:HOST[:PORT]) or
        C(ssl:HOST[:PORT]) (port 6653 when left out). Open vSwitch listens for such connections
        after, for example, C(ovs-vsctl set-controller br0 ptcp:6653:127.0.0.1) or
        C(pssl:6653:127.0.0.1) together with C(ovs-vsctl set-ssl).
    type: str
    required: true
    aliases: [bridge]
  openflow_version:
    description:
      - The OpenFlow version to speak. The switch must have it enabled (Open vSwitch 3.x enables
        1.0 to 1.5 by default; see the C(protocols) column of its Bridge table).
      - M(flowstream.platform.openflow_flows) needs V(OpenFlow14) or V(OpenFlow15), because it
        applies every change as one OpenFlow 1.4 bundle.
      - Groups that set C(selection_method) or C(fields) need V(OpenFlow15); OpenFlow 1.4 cannot
        carry them (Open vSwitch would silently install the group without them, so the module refuses).
    type: str
    choices: [OpenFlow13, OpenFlow14, OpenFlow15]
    default: OpenFlow14
  timeout:
    description:
      - Seconds each C(ovs-ofctl) call may take before it gives up (its C(--timeout) option).
    type: int
    default: 60
  private_key:
    description:
      - For C(ssl:) targets, the PEM file of the private key this client presents to the switch
        (C(ovs-ofctl --private-key)). The key stays in the file; only its path is a module argument.
      - Required with O(certificate) and O(ca_cert) for C(ssl:) targets; not allowed otherwise.
    type: path
  certificate:
    description:
      - For C(ssl:) targets, the PEM certificate matching O(private_key) (C(ovs-ofctl --certificate)).
    type: path
  ca_cert:
    description:
      - For C(ssl:) targets, the PEM certificate of the CA that signed the switch's certificate
        (C(ovs-ofctl --ca-cert)); the switch is verified against it.
    type: path
  executable:
    description:
      - The C(ovs-ofctl) binary, by name (searched in E(PATH), C(/usr/bin), C(/usr/local/bin),
        C(/usr/sbin)) or by path.
    type: str
    default: ovs-ofctl
requirements:
  - C(ovs-ofctl) on the managed node (tested with Open vSwitch 3.1; needs 2.8 or later for C(--no-names)).
notes:
  - The module runs C(ovs-ofctl) on the managed node. For a remote switch reached over C(tcp:) or
    C(ssl:), that node can be the controller itself (delegate the task to C(localhost)).
"""
