# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins of the schedules (docs in the .yml file of each filter)."""

from __future__ import annotations

import datetime
import re

from ansible.errors import AnsibleFilterError

try:
    import zoneinfo
except ImportError:  # Python < 3.9
    zoneinfo = None


def daily_rrule(at, timezone="UTC", start="2026-01-01"):
    """The AWX schedule rule (RFC 5545) of a job run every day at ``at`` (HH:MM) in ``timezone``,
    from the day ``start``: ``DTSTART;TZID=<zone>:<day>T<hh><mm>00 RRULE:FREQ=DAILY;INTERVAL=1``."""
    match = re.fullmatch(r"([01][0-9]|2[0-3]):([0-5][0-9])", str(at))
    if not match:
        raise AnsibleFilterError("daily_rrule: the time %r is not HH:MM (00:00-23:59), e.g. 01:00" % (at,))
    try:
        day = datetime.date.fromisoformat(str(start))
    except ValueError:
        raise AnsibleFilterError("daily_rrule: the start %r is not a date YYYY-MM-DD" % (start,)) from None
    if zoneinfo is not None:
        try:
            zoneinfo.ZoneInfo(str(timezone))
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise AnsibleFilterError("daily_rrule: the time zone %r is not an IANA time zone (e.g. Europe/Berlin, UTC)"
                                     % (timezone,)) from None
    return "DTSTART;TZID=%s:%sT%s%s00 RRULE:FREQ=DAILY;INTERVAL=1" % (timezone, day.strftime("%Y%m%d"), match.group(1), match.group(2))


class FilterModule:
    def filters(self):
        return {"daily_rrule": daily_rrule}
