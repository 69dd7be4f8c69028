# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins: which instance of each step every probe flow crossed, and each chain of one
grouped probe run judged on its own (docs in probe_crossing.yml and chain_verdicts.yml)."""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils._probe import (
    chain_verdicts, crossing_report, group_result, instances_by_step)


def probe_crossing(probe, after, before=None, chain=None, min_packets=1):
    """``probe``: traffic_probe's ``probe`` result; ``after``/``before``: lists of module_host_info
    results (with flows) read after/before the run; ``chain``: whose monitor steps to check (and,
    when the run has a group of that name, whose flows)."""
    probe = group_result(probe, chain) or probe
    after_steps = instances_by_step(after, chain)
    before_steps = instances_by_step(before, chain) if before is not None else None
    return crossing_report(probe, after_steps, before_steps, min_packets)


class FilterModule:
    def filters(self):
        return {"probe_crossing": probe_crossing, "chain_verdicts": chain_verdicts}
