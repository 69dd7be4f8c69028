# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_power's Wake-on-LAN packet (the BMC drivers run against real BMC emulators in
tests/integration/power)."""

from __future__ import annotations

import pytest

from ansible_collections.flowstream.platform.plugins.modules import host_power


def test_the_magic_packet_is_six_ff_then_the_mac_sixteen_times():
    packet = host_power.magic_packet("52:54:00:AB:cd:EF")
    assert len(packet) == 102 and packet[:6] == b"\xff" * 6
    assert packet[6:] == bytes.fromhex("525400abcdef") * 16
    assert host_power.magic_packet("52-54-00-ab-cd-ef") == packet


@pytest.mark.parametrize("mac", ["52:54:00:ab:cd", "52:54:00:ab:cd:eg", ""])
def test_a_bad_mac_is_refused(mac):
    with pytest.raises(host_power.PowerError, match="is not a MAC address"):
        host_power.magic_packet(mac)
