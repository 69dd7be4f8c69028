#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: module_host_maintenance
short_description: Cordon, drain or uncordon a module host - a mark kept on the host itself
version_added: 0.1.0
description:
  - Sets the maintenance mark of the Flowstream module host it runs on (over SSH, like any
    module), modelled on C(kubernetes.core.k8s_drain). The mark lives on the platform, in the
    OVSDB C(external_ids) of the host bridge (C(flowstream-maintenance), C(-since), C(-reason)),
    not in a file on the controller, so every controller sees it;
    M(flowstream.platform.module_host_info) reports it and the planner
    (M(flowstream.platform.chain_plan)) honours it - a later deploy-chain never puts an instance
    back on a cordoned or drained host.
  - V(cordoned) - no new instance is placed here; what runs here stays.
  - V(draining) - cordoned, and every instance here is to move off (what
    C(playbooks/drain-host.yml) sets before it moves them).
  - V(drained) - cordoned and empty. The module moves nothing itself (moving an instance needs
    the switch and the other hosts; C(playbooks/drain-host.yml) does it); it sets V(drained) once
    the host runs no instance - at once, or after waiting for the instances to leave with
    O(wait) - and fails naming the instances still there otherwise.
  - V(uncordoned) - no mark, the host is in service again. Nothing moves back by itself; new
    instances may be placed here again.
  - C(flowstream_in_service=false) in the platform description stays the static way to keep a host
    out of service.
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
  - C(ovs-vsctl) (Open vSwitch; tested with 3.1) on the module host (the mark is kept in its host bridge's OVSDB C(external_ids))
options:
  state:
    description: The mark the host should carry.
    type: str
    choices: [cordoned, draining, drained, uncordoned]
    required: true
  reason:
    description: Why (kept with the mark, shown by module_host_info). Changing only the reason of a mark is a change.
    type: str
  host_bridge:
    description: The host bridge (Open vSwitch) on the module host; the mark is kept in its C(external_ids).
    type: str
    default: fs-host
  wait:
    description:
      - With O(state=drained), wait for the host's instances to leave (up to O(wait_timeout)) instead of failing at once.
      - In check mode nothing waits; the host is reported as it would be marked, with a warning naming the instances still there.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
  wait_sleep:
    description: Seconds between two looks with O(wait).
    type: int
    default: 2
seealso:
  - module: flowstream.platform.module_host_info
  - module: flowstream.platform.chain_plan
notes:
  - "Playbooks: C(playbooks/drain-host.yml -e hosts=mh1,mh2) marks the hosts draining, moves their
    instances off host by host with the traffic probe running, and marks them drained;
    C(playbooks/uncordon-host.yml -e hosts=mh1) takes the mark away."
"""

EXAMPLES = r"""
- name: Keep new instances off mh2 from now on
  flowstream.platform.module_host_maintenance:
    state: cordoned
    reason: disk replacement on Thursday
  delegate_to: mh2

- name: Mark mh1 drained once drain-host has moved everything off it
  flowstream.platform.module_host_maintenance:
    state: drained
    wait: true
    wait_timeout: 60
  delegate_to: mh1

- name: Back in service
  flowstream.platform.module_host_maintenance:
    state: uncordoned
  delegate_to: mh1
"""

RETURN = r"""
maintenance:
  description: The mark after the run (null when uncordoned) - C(state), C(since) (UTC), C(reason).
  returned: always
  type: dict
  sample: {state: drained, since: "2026-12-04T06:10:00Z", reason: kernel upgrade}
previous:
  description: The mark before the run (null when there was none).
  returned: always
  type: dict
instances:
  description: The instances the host runs (ids), at the end of the run.
  returned: always
  type: list
  elements: str
waited:
  description: Seconds spent waiting for the instances to leave (O(wait)).
  returned: when state is drained
  type: float
"""

import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils import _maintenance
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, wait_for
from ansible_collections.flowstream.platform.plugins.module_utils._instance import HostView
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._processing import vm_kind


def _text(mark):
    if not mark:
        return "in service (no mark)\n"
    return "%s since %s%s\n" % (mark["state"], mark["since"], " (%s)" % mark["reason"] if mark.get("reason") else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["cordoned", "draining", "drained", "uncordoned"], required=True),
            reason=dict(type="str"),
            host_bridge=dict(type="str", default="fs-host"),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=120),
            wait_sleep=dict(type="int", default=2),
        ),
        supports_check_mode=True,
    )
    p = module.params
    bridge = p["host_bridge"]
    want = None if p["state"] == "uncordoned" else p["state"]
    result = {"changed": False}
    try:
        vms = vm_kind()

        def instances():
            return sorted(HostView(bridge, vm_kind=vms).instances())

        view = HostView(bridge, vm_kind=vms)
        have = _maintenance.read(view.ovs, bridge)
        result["previous"] = have
        running = sorted(view.instances())
        if want == "drained" and running:
            waited = 0.0
            if p["wait"] and not module.check_mode:
                start = time.monotonic()
                wait_for(lambda: not instances(), p["wait_timeout"], interval=max(0.2, p["wait_sleep"]))
                running = instances()
                waited = round(time.monotonic() - start, 1)
            result["waited"] = waited
            if running and module.check_mode and p["wait"]:
                # a prediction: the run would wait for the instances that the tasks before this one move off
                module.warn("check mode: %s still runs %s; a real run waits up to %d s for them to leave before it marks the host "
                            "drained" % (socket.gethostname(), ", ".join(running), p["wait_timeout"]))
            elif running:
                waited_text = "; waited %.0f s" % waited if p["wait"] else ""
                module.fail_json(msg="%s still runs %s: a host is drained once its instances have moved off (playbooks/drain-host.yml "
                                 "moves them)%s" % (socket.gethostname(), ", ".join(running), waited_text), instances=running, **result)
        elif want == "drained":
            result["waited"] = 0.0
        same = (have is None and want is None) or (have is not None and want == have["state"]
                                                   and (p["reason"] is None or p["reason"] == have.get("reason")))
        if not same:
            result["changed"] = True
            if not module.check_mode:
                _maintenance.write(view.ovs, bridge, want, p["reason"] if p["reason"] is not None else (have or {}).get("reason"))
        after = _maintenance.read(view.ovs, bridge) if not module.check_mode else \
            (None if want is None else {"state": want, "since": "(now)" if not same else have["since"],
                                        "reason": p["reason"] if p["reason"] is not None else (have or {}).get("reason")})
        result.update(maintenance=after, instances=running)
        if module._diff:
            result["diff"] = {"before_header": "%s maintenance" % bridge, "after_header": "%s maintenance" % bridge,
                              "before": _text(have), "after": _text(after)}
    except (InstanceError, CommandError) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
