# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of flowstream.platform.failure_info (docs in plugins/modules): with O(hosts),
O(bridge) and O(openflow_target) left out, the switch it runs for looks at its own module hosts,
as the inventory describes them (their trunks and management addresses), and at its own flows."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.flowstream.platform.plugins.module_utils._hostvars import switch_module_hosts


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        if args.get("hosts") is None:
            args["hosts"] = switch_module_hosts(task_vars.get("hostvars", {}), task_vars.get("groups", {}),
                                                task_vars.get("inventory_hostname"))
        if args.get("bridge") is None and task_vars.get("flowstream_bridge"):
            args["bridge"] = task_vars["flowstream_bridge"]
        if args.get("openflow_target") is None and task_vars.get("flowstream_openflow_target"):
            args["openflow_target"] = task_vars["flowstream_openflow_target"]
            for key in ("private_key", "certificate", "ca_cert"):
                if args.get(key) is None and (task_vars.get("flowstream_ssl") or {}).get(key):
                    args[key] = task_vars["flowstream_ssl"][key]
        result.update(self._execute_module(module_name="flowstream.platform.failure_info", module_args=args, task_vars=task_vars))
        return result
