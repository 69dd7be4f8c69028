# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins of the operations (docs in the .yml file of each filter)."""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils._operations import (
    affected_chains, failover_report, failover_table, hold_results, instance_requests, move_figures, moves_table, probe_groups, wave_windows)


class FilterModule:
    def filters(self):
        return {"probe_groups": probe_groups, "move_figures": move_figures, "moves_table": moves_table,
                "affected_chains": affected_chains, "wave_windows": wave_windows, "hold_results": hold_results,
                "instance_requests": instance_requests,
                "failover_report": failover_report, "failover_table": failover_table}
