# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of flowstream.platform.chain_plan: plans on the controller (docs in plugins/modules)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.flowstream.platform.plugins.module_utils._deploy import DeployError, build_plan
from ansible_collections.flowstream.platform.plugins.module_utils._hostvars import platform_from_vars


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("chains", "catalogue", "policy", "rolling", "only_moves", "trials", "converge"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        unknown = sorted(set(args) - self._VALID_ARGS)
        if unknown:
            raise AnsibleActionFail("chain_plan: unknown option(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(self._VALID_ARGS))))
        chains = args.get("chains")
        if chains is None:
            raise AnsibleActionFail("chain_plan: chains is required (the inventory's flowstream_chains)")
        hosts, switches, boxes = platform_from_vars(task_vars.get("hostvars", {}), task_vars.get("groups", {}))
        missing = sorted(h for h, v in hosts.items() if v["report"] is None and v["in_service"] and not v["spare"])
        try:
            plan = build_plan(chains, args.get("catalogue") or {}, hosts, switches, boxes, policy=args.get("policy") or {},
                              rolling=boolean(args.get("rolling", False), strict=False),
                              only_moves=boolean(args.get("only_moves", False), strict=False), trials=args.get("trials"),
                              converge=boolean(args.get("converge", True), strict=False))
        except DeployError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        result.update(changed=False, plan=plan, unreported_hosts=missing)
        return result
