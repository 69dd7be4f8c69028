#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: failure_info
short_description: Which module hosts have failed - BFD on their trunks and SSH, with hysteresis
version_added: 0.1.0
description:
  - Looks at every module host of O(hosts) through two independent witnesses, from the switch's
    side (run it where the switch's OVSDB is - the controller, in the lab) - the data plane (the
    BFD session on the switch's end of the host's trunk, set by M(flowstream.platform.host_trunk);
    the trunk's link where BFD is off) and the management plane (the host's SSH server greets on
    its management address).
  - A host is V(failed) only when BOTH witnesses found it down in every look for O(grace)
    seconds without a break; until then it is V(suspect), and one good look starts the count
    again (hysteresis - a flapping link never triggers a failover). A host whose trunk has been
    down for the whole grace while it answers over SSH is V(isolated) - its chains are
    black-holed, so C(playbooks/failover.yml) fences and re-places it like a failed one (and,
    since it answers, removes its old copies at once). A host that does not answer SSH while its
    trunk forwards is V(degraded) - traffic flows, no failover. A host whose trunk the platform
    has fenced is V(fenced), whatever it answers.
  - When every host (two or more, fenced ones aside) has its trunk down at once, the switch is at
    fault (e.g. restarted, its BFD sessions coming up again), not the hosts - none is failed or
    isolated then (RV(switch_at_fault)).
  - The module looks again every O(interval) seconds while a host is suspect, up to O(grace);
    when every host is healthy at the first look it returns at once.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.attributes.info_module
requirements:
  - C(ovs-vsctl) and C(ovs-ofctl) (Open vSwitch; tested with 3.1) on the switch
  - The module hosts' SSH ports reachable from the switch (the second witness)
options:
  bridge:
    description: The switch's bridge (its trunk ports are read from its OVSDB).
    type: str
    required: true
  ovsdb:
    description: The switch's OVSDB (C(ovs-vsctl --db)); the local one when left out.
    type: str
  openflow_target:
    description:
      - How C(ovs-ofctl) reaches the switch, to count its chain flows (RV(chain_flows)); the bridge's
        name (the local switch) when left out. The action plugin takes C(flowstream_openflow_target).
    type: str
  private_key:
    description: For an C(ssl:) O(openflow_target) - the controller's private key.
    type: path
  certificate:
    description: For an C(ssl:) O(openflow_target) - the controller's certificate.
    type: path
  ca_cert:
    description: For an C(ssl:) O(openflow_target) - the switch's CA.
    type: path
  hosts:
    description: The module hosts to look at.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The host's name.
        type: str
        required: true
      trunk:
        description: The switch port of its trunk.
        type: str
        required: true
      address:
        description: Its management address (where its SSH server listens).
        type: str
        required: true
  grace:
    description: Seconds both witnesses must find a host down, in every look, before it counts as failed.
    type: float
    default: 3.0
  interval:
    description: Seconds between two looks at a suspect host.
    type: float
    default: 0.5
  ssh_port:
    description: The management SSH port.
    type: int
    default: 22
  ssh_timeout:
    description: Seconds one SSH look may take.
    type: float
    default: 1.0
seealso:
  - module: flowstream.platform.host_trunk
notes:
  - "C(playbooks/failover.yml) runs it, fences what it finds failed and re-places the failed
    hosts' instances; docs/operations.md#failover explains the rules."
"""

EXAMPLES = r"""
- name: Who has failed
  flowstream.platform.failure_info:
    bridge: fsl-sw
    hosts:
      - {name: mh1, trunk: fsl-mh1-tr, address: 198.18.0.11}
      - {name: mh2, trunk: fsl-mh2-tr, address: 198.18.0.12}
    grace: 3
  register: failures
"""

RETURN = r"""
hosts:
  description:
    - Per host - C(status) (V(healthy), V(degraded), V(suspect), V(isolated), V(failed),
      V(fenced), V(powered_off) - fenced by C(playbooks/power-down.yml)), C(dataplane) and C(ssh) at the last look, C(down_for) (seconds both were down
      without a break; for an isolated host, its trunk), C(flaps) (changes seen between looks), C(looks), C(trunk) (the switch's end, as
      M(flowstream.platform.host_trunk) returns it), C(fence) (the mark or null).
  returned: always
  type: dict
  sample:
    mh2: {status: failed, dataplane: false, ssh: false, down_for: 3.02, flaps: 0, looks: 7, fence: null,
          trunk: {port: fsl-mh2-tr, link_state: up, bfd: {enabled: true, state: down, forwarding: false, diagnostic: "Control Detection Time Expired"}}}
failed_hosts:
  description: The hosts found failed (not yet fenced).
  returned: always
  type: list
  elements: str
fenced_hosts:
  description: The hosts fenced on the switch after a failure.
  returned: always
  type: list
  elements: str
powered_off_hosts:
  description: The hosts the platform powered off (C(playbooks/power-down.yml)), fenced on the switch.
  returned: always
  type: list
  elements: str
isolated_hosts:
  description: Hosts whose trunk has been down for the whole grace while they answer over SSH.
  returned: always
  type: list
  elements: str
degraded_hosts:
  description: Hosts that do not answer over SSH while their trunk forwards.
  returned: always
  type: list
  elements: str
suspect_hosts:
  description: Hosts down at the last look, but not for the whole grace.
  returned: always
  type: list
  elements: str
chain_flows:
  description:
    - How many flows the switch holds in the chains' cookie space (C(0xF5C0...)). 0 on a switch
      that should carry chains means it lost its flow table (ovs-vswitchd restarted, a switch
      rebooted); C(playbooks/failover.yml) then pushes every chain again.
  returned: always
  type: int
switch_at_fault:
  description:
    - True when every host that is not fenced (two or more) had its trunk down at once - the
      switch restarting, not the hosts failing. No host is failed or isolated then (they are
      V(suspect), with C(why)) - a failover never fences a whole platform.
  returned: always
  type: bool
seconds:
  description: How long the module looked.
  returned: always
  type: float
"""

import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils import _failure, _trunk
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._deploy import CHAINS_COOKIE, CHAINS_MASK
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            ovsdb=dict(type="str"),
            hosts=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                trunk=dict(type="str", required=True),
                address=dict(type="str", required=True),
            )),
            grace=dict(type="float", default=3.0),
            interval=dict(type="float", default=0.5),
            ssh_port=dict(type="int", default=22),
            ssh_timeout=dict(type="float", default=1.0),
            openflow_target=dict(type="str"),
            private_key=dict(type="path"),
            certificate=dict(type="path"),
            ca_cert=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["grace"] < 0 or p["interval"] <= 0:
        module.fail_json(msg="grace must be >= 0 and interval > 0 seconds, got grace=%s interval=%s" % (p["grace"], p["interval"]))
    names = [h["name"] for h in p["hosts"]]
    if len(set(names)) != len(names):
        module.fail_json(msg="hosts: %s named more than once" % ", ".join(sorted({n for n in names if names.count(n) > 1})))
    ovs = OVSDB(db=p["ovsdb"])
    try:
        if not ovs.bridge_exists(p["bridge"]):
            module.fail_json(msg="switch bridge %s does not exist in %s" % (p["bridge"], p["ovsdb"] or "the local OVSDB"))
        ports = [h["trunk"] for h in p["hosts"]]
        history = {h["name"]: [] for h in p["hosts"]}
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(p["hosts"])))) as pool:
            while True:
                now = time.monotonic()
                ssh = dict(zip(names, pool.map(lambda h: _failure.ssh_answers(h["address"], p["ssh_port"], p["ssh_timeout"]),
                                               p["hosts"])))
                trunks = _trunk.read_all(ovs, ports)
                for h in p["hosts"]:
                    history[h["name"]].append((now, _failure.dataplane_up(trunks[h["trunk"]]), ssh[h["name"]]))
                fenced = {h["name"]: (trunks[h["trunk"]] or {}).get("fence") for h in p["hosts"]}
                verdicts = _failure.assess(history, p["grace"], fenced)
                switch_down = _failure.switch_at_fault(verdicts)
                if not any(v["status"] == "suspect" for v in verdicts.values()) or time.monotonic() - start > p["grace"] + p["interval"]:
                    break
                time.sleep(p["interval"])
        ofctl = Ofctl(p["openflow_target"] or p["bridge"], timeout=10, private_key=p["private_key"], certificate=p["certificate"],
                      ca_cert=p["ca_cert"])
        chain_flows = len(ofctl.dump_flows(cookie=CHAINS_COOKIE, cookie_mask=CHAINS_MASK))
    except (CommandError, OfctlError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    for h in p["hosts"]:
        trunk = trunks[h["trunk"]]
        verdicts[h["name"]]["trunk"] = None if trunk is None else {k: v for k, v in trunk.items() if k not in ("bfd_config", "fence")}
        verdicts[h["name"]]["fence"] = fenced[h["name"]]
    result = {"changed": False, "hosts": verdicts, "seconds": round(time.monotonic() - start, 3), "switch_at_fault": switch_down,
              "chain_flows": chain_flows}
    # (never a key named "failed": Ansible reads it as the task's own failure)
    for status in ("failed", "isolated", "fenced", "powered_off", "degraded", "suspect"):
        result[status + "_hosts"] = sorted(n for n, v in verdicts.items() if v["status"] == status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
