#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: chain_trial
short_description: The trials that run on a switch's chains - a record kept on the switch itself
version_added: 0.1.0
description:
  - Reads, records or ends the trial of a chain step on the Flowstream switch it runs for. A trial
    runs candidate instances of another processing module beside the step's own and gives them a
    hashed share of the step's flows (docs/service-chains.md, "Trials"). The record lives on the
    platform, in the OVSDB C(external_ids) of the switch's bridge
    (C(flowstream-trial-<chain>.<step>), a JSON object, and C(-since)), not on the controller, so
    every controller - a laptop, AWX - sees it; C(playbooks/gather_hosts.yml) reads it and every
    plan (M(flowstream.platform.chain_plan)) applies it to the chain, so a deploy-chain re-run
    neither drops nor duplicates a trial.
  - The module only keeps the record; C(playbooks/trial.yml) checks a trial against the chains
    and the catalogue first, records it, and applies the change with the traffic probe running.
  - O(state=query) (the default) changes nothing and returns every trial of the bridge.
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
  - C(ovs-vsctl) (Open vSwitch; tested with 3.1) on the switch (the record is kept in its bridge's OVSDB C(external_ids))
options:
  bridge:
    description: The switch's bridge; the records are kept in its C(external_ids).
    type: str
    required: true
  state:
    description: V(present) records (or changes) the trial of O(chain)/O(step), V(absent) ends it, V(query) only reads.
    type: str
    choices: [present, absent, query]
    default: query
  chain:
    description: The chain. Required with V(present) and V(absent).
    type: str
  step:
    description: The step the trial tries out. Required with V(present) and V(absent).
    type: str
  trial:
    description:
      - The trial (with V(present)), as a step's C(trial) in a chain - C(type), C(kind), C(params),
        C(instances) and C(percent) (0 < percent <= 100). Checked against the chain and the
        catalogue by the plan, not here.
    type: dict
seealso:
  - module: flowstream.platform.chain_plan
notes:
  - "Playbook: C(playbooks/trial.yml -e chain=web -e step=mon -e type=monitor -e kind=process -e percent=10);
    C(-e action=rollback) ends it."
"""

EXAMPLES = r"""
- name: The trials running on sw1
  flowstream.platform.chain_trial:
    bridge: fsl-sw
  register: trials

- name: Record a trial of a process monitor on 10 % of web's mon flows
  flowstream.platform.chain_trial:
    bridge: fsl-sw
    state: present
    chain: web
    step: mon
    trial: {type: monitor, kind: process, percent: 10}
"""

RETURN = r"""
trials:
  description: Every trial recorded on the bridge after the run, by C(<chain>/<step>) - C(chain), C(step), C(trial), C(since) (UTC).
  returned: always
  type: dict
  sample: {"web/mon": {chain: web, step: mon, trial: {type: monitor, kind: process, percent: 10}, since: "2026-12-05T04:20:00Z"}}
previous:
  description: The trial of O(chain)/O(step) before the run (null when there was none).
  returned: with state present or absent
  type: dict
"""

import json
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB

PREFIX = "flowstream-trial-"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TRIAL_KEYS = ("type", "kind", "params", "instances", "percent", "vm")


def read(ovs, bridge):
    """{"<chain>/<step>": {chain, step, trial, since}} of the bridge's records."""
    rows = ovs.list_table("Bridge", ["external_ids"], [bridge])
    ext = (rows[0] if rows else {}).get("external_ids") or {}
    out = {}
    for key, value in sorted(ext.items()):
        if not key.startswith(PREFIX) or key.endswith("-since") or "." not in key:
            continue
        chain, step = key[len(PREFIX):].split(".", 1)
        try:
            trial = json.loads(value)
        except ValueError:
            trial = {"unreadable": value}
        out["%s/%s" % (chain, step)] = {"chain": chain, "step": step, "trial": trial, "since": ext.get(key + "-since")}
    return out


def _text(entry):
    return "none\n" if entry is None else json.dumps(entry["trial"], sort_keys=True) + "\n"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent", "query"], default="query"),
            chain=dict(type="str"),
            step=dict(type="str"),
            trial=dict(type="dict"),
        ),
        required_if=[("state", "present", ("chain", "step", "trial")), ("state", "absent", ("chain", "step"))],
        supports_check_mode=True,
    )
    p = module.params
    ovs = OVSDB()
    result = {"changed": False}
    try:
        if not ovs.bridge_exists(p["bridge"]):
            module.fail_json(msg="switch bridge %s does not exist" % p["bridge"])
        have = read(ovs, p["bridge"])
        if p["state"] == "query":
            module.exit_json(trials=have, **result)
        for field in ("chain", "step"):
            if not NAME_RE.match(p[field]):
                module.fail_json(msg="%s: %r is not a %s name (1-32 characters, a-z, 0-9 and '-', starting with a letter)"
                                 % (field, p[field], field))
        name = "%s/%s" % (p["chain"], p["step"])
        key = "%s%s.%s" % (PREFIX, p["chain"], p["step"])
        before = have.get(name)
        result["previous"] = before
        want = None
        if p["state"] == "present":
            unknown = sorted(set(p["trial"]) - set(TRIAL_KEYS))
            if unknown:
                module.fail_json(msg="trial.%s: unknown key (known: %s)" % (unknown[0], ", ".join(TRIAL_KEYS)), **result)
            want = {k: v for k, v in p["trial"].items() if v is not None}
        if (before or {}).get("trial") != want:
            result["changed"] = True
            if not module.check_mode:
                if want is None:
                    ovs.write_mark("Bridge", p["bridge"], key, None)
                else:
                    ovs.write_mark("Bridge", p["bridge"], key, json.dumps(want, sort_keys=True, separators=(",", ":")))
        after = read(ovs, p["bridge"]) if not module.check_mode else dict(have)
        if module.check_mode:
            after.pop(name, None)
            if want is not None:
                after[name] = {"chain": p["chain"], "step": p["step"], "trial": want, "since": "(now)"}
        result["trials"] = after
        if module._diff:
            result["diff"] = {"before_header": "%s trial %s" % (p["bridge"], name), "after_header": "%s trial %s" % (p["bridge"], name),
                              "before": _text(before), "after": _text(after.get(name))}
    except CommandError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
