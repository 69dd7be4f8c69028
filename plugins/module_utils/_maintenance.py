# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module host's maintenance mark, kept on the host itself: the OVSDB ``external_ids`` of its
host bridge (``flowstream-maintenance``, ``-since``, ``-reason``).

``cordoned`` - no new instance is placed on the host; what runs there stays.
``draining`` - cordoned, and its instances are being moved off (drain-host is at work).
``drained`` - cordoned and empty: every instance has left.
No mark - the host is in service.

Every controller (a laptop, AWX, a rulebook) reads the same mark from the host's report
(module_host_info's ``maintenance``), and the planner honours it: deploy-chain never puts an
instance back on a cordoned or drained host.
"""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import read_mark

KEY = "flowstream-maintenance"
MARKS = ("cordoned", "draining", "drained")


def read(ovs, bridge):
    """{state, since, reason} of the host bridge's mark, or None when there is none."""
    rows = ovs.list_table("Bridge", ["name", "external_ids"], [bridge])
    return read_mark((rows[0].get("external_ids") or {}) if rows else {}, KEY, MARKS)


def write(ovs, bridge, state, reason=None):
    """Set the mark (``state`` one of MARKS) or clear it (``state`` None), in one transaction."""
    ovs.write_mark("Bridge", bridge, KEY, state, reason)
