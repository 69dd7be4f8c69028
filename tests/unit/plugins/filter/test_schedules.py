# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX schedule rules of the quiet hours (filter daily_rrule)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.flowstream.platform.plugins.filter.schedules import daily_rrule


def test_a_daily_rule_in_a_named_time_zone():
    assert daily_rrule("01:00", timezone="Europe/Berlin") == "DTSTART;TZID=Europe/Berlin:20260101T010000 RRULE:FREQ=DAILY;INTERVAL=1"
    assert daily_rrule("23:59", start="2027-03-28") == "DTSTART;TZID=UTC:20270328T235900 RRULE:FREQ=DAILY;INTERVAL=1"


@pytest.mark.parametrize("args, said", [
    (("1:00",), "the time '1:00' is not HH:MM"),
    (("24:00",), "the time '24:00' is not HH:MM"),
    (("06:60",), "the time '06:60' is not HH:MM"),
    (("06:00", "Mars/Olympus"), "the time zone 'Mars/Olympus' is not an IANA time zone"),
    (("06:00", "UTC", "2026-02-30"), "the start '2026-02-30' is not a date YYYY-MM-DD"),
])
def test_wrong_times_zones_and_days_are_named(args, said):
    with pytest.raises(AnsibleFilterError, match=said.replace("(", r"\(")):
        daily_rrule(*args)
