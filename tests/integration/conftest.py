# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the integration tests: the running lab."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_cli import SPENT, playbook  # noqa: E402  pylint: disable=wrong-import-position


def pytest_terminal_summary(terminalreporter):
    """Where the integration tests' time went: module by module (setup, calls and teardown), and
    playbook by playbook (and AWX job by job)."""
    modules = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) and getattr(report, "nodeid", None):
                name = report.nodeid.split("::")[0]
                modules[name] = modules.get(name, 0.0) + report.duration
    if modules:
        terminalreporter.section("time in test modules: %.0f s" % sum(modules.values()))
        for name, seconds in sorted(modules.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line("%8.1f s  %s" % (seconds, name))
    if not SPENT:
        return
    runs = {}
    for what, seconds in SPENT:
        count, total, longest = runs.get(what, (0, 0.0, 0.0))
        runs[what] = (count + 1, total + seconds, max(longest, seconds))
    terminalreporter.section("time in playbooks: %d runs, %.0f s" % (len(SPENT), sum(seconds for _what, seconds in SPENT)))
    for what, (count, total, longest) in sorted(runs.items(), key=lambda kv: -kv[1][1]):
        terminalreporter.write_line("%8.1f s %4d runs  longest %6.1f s  %s" % (total, count, longest, what))


@pytest.fixture(scope="session")
def _lab_down_at_the_end():
    """Whatever the suites did, the session leaves no lab running."""
    yield
    down = playbook("playbooks/lab-down.yml")
    assert down.rc == 0, down.explain()


@pytest.fixture(scope="module")
def running_lab(_lab_down_at_the_end):
    """The lab, up for this test module: lab-up is idempotent and repairs what is missing, so a
    module finds it up whatever an earlier module (or an earlier run) did, e.g. the lab
    lifecycle test, which ends with lab-down."""
    up = playbook("playbooks/lab-up.yml")
    assert up.rc == 0 and not up.failures(), up.explain()
    yield
