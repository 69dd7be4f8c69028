# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugin: which instance of each step every probe flow crossed (docs in probe_crossing.yml)."""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils._probe import crossing_report


def _instances_by_step(reports, chain):
    """{step: {instance: per-flow counters}} of ``chain``'s monitors, from module_host_info results."""
    out = {}
    for report in reports or []:
        for inst, info in ((report or {}).get("instances") or {}).items():
            if info.get("chain") == chain and info.get("flows") is not None:
                out.setdefault(info.get("step"), {})[inst] = info.get("flows") or []
    return out


def probe_crossing(probe, after, before=None, chain=None, min_packets=1):
    """``probe``: traffic_probe's ``probe`` result; ``after``/``before``: lists of module_host_info
    results (with flows) read after/before the run; ``chain``: whose monitor steps to check."""
    after_steps = _instances_by_step(after, chain)
    before_steps = _instances_by_step(before, chain) if before is not None else None
    return crossing_report(probe, after_steps, before_steps, min_packets)


class FilterModule:
    def filters(self):
        return {"probe_crossing": probe_crossing}
