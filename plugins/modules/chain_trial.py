#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: chain_trial
short_description: The trials, promotions and scalings of a switch's chain steps - records kept on the switch itself
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
  - A trial that did well is promoted (C(trial.yml -e action=promote)), and the candidate's module
    becomes the step's module for all its flows. That, too, is a record on the switch
    (C(flowstream-promoted-<chain>.<step>), O(record=promotion)) - the module promoted and the
    module the description gave the step then (C(from)). Every plan gives the step the promoted
    module for as long as the description still gives it the C(from) module; once the description
    says something else, the description wins and the plan warns that the record can go.
  - A step scaled by C(playbooks/scale-step.yml) has a record the same way
    (C(flowstream-scaled-<chain>.<step>), O(record=scale)) - its instances, and the description's
    then.
  - O(state=query) (the default) changes nothing and returns every trial and promotion of the bridge.
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
    description: V(present) records (or changes) the O(record) of O(chain)/O(step), V(absent) removes it, V(query) only reads.
    type: str
    choices: [present, absent, query]
    default: query
  record:
    description: Which record of O(chain)/O(step) O(state) acts on - its V(trial), its V(promotion) or its V(scale).
    type: str
    choices: [trial, promotion, scale]
    default: trial
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
  promotion:
    description:
      - The promotion (with O(record=promotion) and V(present)) - C(module), the module the step
        runs from now on (C(type), C(kind), C(params), C(vm)), and C(from), the step's module in
        the description when it was promoted (the same keys, as the description writes them).
    type: dict
  scale:
    description:
      - The scaling (with O(record=scale) and V(present)) - C(instances), the step's instances from
        now on, and C(from), the step's C(instances) in the description when it was scaled (1 when
        it gives none). Written by C(playbooks/scale-step.yml).
    type: dict
seealso:
  - module: flowstream.platform.chain_plan
notes:
  - "Playbook: C(playbooks/trial.yml -e chain=web -e step=mon -e type=monitor -e kind=process -e percent=10);
    C(-e action=rollback) ends it, C(-e action=promote) promotes it, C(-e action=forget) removes a promotion's record
    once the description says it."
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

- name: Record that web's mon runs the process monitor now (trial.yml -e action=promote does this)
  flowstream.platform.chain_trial:
    bridge: fsl-sw
    state: present
    record: promotion
    chain: web
    step: mon
    promotion:
      module: {type: monitor, kind: process}
      from: {type: monitor, kind: kernel}
"""

RETURN = r"""
trials:
  description:
    - Every trial and promotion recorded on the bridge after the run, by C(<chain>/<step>) - C(chain), C(step), C(trial),
      C(since) (UTC), C(promotion), C(promotion_since), C(scale) and C(scale_since); each record is null where the step has none.
  returned: always
  type: dict
  sample: {"web/mon": {chain: web, step: mon, trial: {type: monitor, kind: process, percent: 10}, since: "2026-12-05T04:20:00Z",
                       promotion: null, promotion_since: null, scale: null, scale_since: null}}
previous:
  description: The O(record) of O(chain)/O(step) before the run (null when there was none).
  returned: with state present or absent
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._chains import NAME_RE
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB

PREFIXES = {"trial": "flowstream-trial-", "promotion": "flowstream-promoted-", "scale": "flowstream-scaled-"}
SINCE = {"trial": "since", "promotion": "promotion_since", "scale": "scale_since"}
EMPTY = {"trial": None, "since": None, "promotion": None, "promotion_since": None, "scale": None, "scale_since": None}
TRIAL_KEYS = ("type", "kind", "params", "instances", "percent", "vm")
MODULE_KEYS = ("type", "kind", "params", "vm")


def read(ovs, bridge):
    """{"<chain>/<step>": {chain, step, trial, since, promotion, promotion_since, scale, scale_since}} of the bridge's records."""
    rows = ovs.list_table("Bridge", ["external_ids"], [bridge])
    ext = (rows[0] if rows else {}).get("external_ids") or {}
    out = {}
    for key, value in sorted(ext.items()):
        record = next((r for r, prefix in PREFIXES.items() if key.startswith(prefix)), None)
        if record is None or key.endswith("-since") or "." not in key:
            continue
        chain, step = key[len(PREFIXES[record]):].split(".", 1)
        try:
            data = json.loads(value)
        except ValueError:
            data = {"unreadable": value}
        entry = out.setdefault("%s/%s" % (chain, step), dict(EMPTY, chain=chain, step=step))
        entry[record], entry[SINCE[record]] = data, ext.get(key + "-since")
    return out


def _text(data):
    return "none\n" if data is None else json.dumps(data, sort_keys=True) + "\n"


def _wanted(module, record, given):
    """The record to keep, checked: a trial's keys, a promotion's module and from, a scaling's instances and from."""
    if record == "scale":
        if sorted(given) != ["from", "instances"] or not all(isinstance(given[k], int) and given[k] >= 1 for k in given):
            module.fail_json(msg="scale: give instances and from, each a whole number of instances >= 1 (got %s)" % json.dumps(given, sort_keys=True))
        return {"instances": given["instances"], "from": given["from"]}
    if record == "trial":
        unknown = sorted(set(given) - set(TRIAL_KEYS))
        if unknown:
            module.fail_json(msg="trial.%s: unknown key (known: %s)" % (unknown[0], ", ".join(TRIAL_KEYS)))
        return {k: v for k, v in given.items() if v is not None}
    if sorted(given) != ["from", "module"] or not all(isinstance(given[k], dict) for k in given):
        module.fail_json(msg="promotion: give module and from, each a mapping of %s (got %s)"
                         % (", ".join(MODULE_KEYS), ", ".join(sorted(given)) or "nothing"))
    for part in ("module", "from"):
        unknown = sorted(set(given[part]) - set(MODULE_KEYS))
        if unknown:
            module.fail_json(msg="promotion.%s.%s: unknown key (known: %s)" % (part, unknown[0], ", ".join(MODULE_KEYS)))
        if not given[part].get("type"):
            module.fail_json(msg="promotion.%s.type: required (the catalogue type the step runs)" % part)
    return {part: {k: v for k, v in given[part].items() if v is not None} for part in ("module", "from")}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent", "query"], default="query"),
            chain=dict(type="str"),
            step=dict(type="str"),
            record=dict(type="str", choices=["trial", "promotion", "scale"], default="trial"),
            trial=dict(type="dict"),
            promotion=dict(type="dict"),
            scale=dict(type="dict"),
        ),
        required_if=[("state", "present", ("chain", "step")), ("state", "absent", ("chain", "step"))],
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
            if not NAME_RE.match(p[field]):  # _chains': \Z, not $ ("web\n" is no name)
                module.fail_json(msg="%s: %r is not a %s name (1-32 characters, a-z, 0-9 and '-', starting with a letter)"
                                 % (field, p[field], field))
        record = p["record"]
        name = "%s/%s" % (p["chain"], p["step"])
        key = "%s%s.%s" % (PREFIXES[record], p["chain"], p["step"])
        before = (have.get(name) or {}).get(record)
        result["previous"] = before
        want = None
        if p["state"] == "present":
            if p[record] is None:
                module.fail_json(msg="state=present with record=%s needs %s" % (record, record), **result)
            want = _wanted(module, record, p[record])
        if before != want:
            result["changed"] = True
            if not module.check_mode:
                ovs.write_mark("Bridge", p["bridge"], key, None if want is None else json.dumps(want, sort_keys=True, separators=(",", ":")))
        if module.check_mode:
            after = {n: dict(e) for n, e in have.items()}
            entry = after.setdefault(name, dict(EMPTY, chain=p["chain"], step=p["step"]))
            entry[record], entry[SINCE[record]] = want, None if want is None else (entry[SINCE[record]] if want == before else "(now)")
            if all(entry[r] is None for r in PREFIXES):
                after.pop(name)
        else:
            after = read(ovs, p["bridge"])
        result["trials"] = after
        if module._diff:
            header = "%s %s %s" % (p["bridge"], record, name)
            result["diff"] = {"before_header": header, "after_header": header, "before": _text(before), "after": _text(want)}
    except CommandError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
