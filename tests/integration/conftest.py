# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures of the integration tests: the running lab."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ansible_cli import playbook  # noqa: E402  pylint: disable=wrong-import-position


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
