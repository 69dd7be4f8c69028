# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quiet hours without AWX: playbooks/schedule.yml (role flowstream.platform.schedule) writes a
systemd service and timer per job, in the time zone given, that real systemd-analyze accepts
(verify, calendar); a second run changes nothing; a wrong time zone or calendar is refused naming
the job, and nothing is written; state=absent removes exactly the role's units. systemd does not
run this machine, so the timers are not started here (the role says so)."""

from __future__ import annotations

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, playbook  # noqa: E402  pylint: disable=wrong-import-position

UNITS = ["flowstream-power-down.service", "flowstream-power-down.timer", "flowstream-power-up.service", "flowstream-power-up.timer"]


def schedule(unit_dir, *extra):
    return playbook("playbooks/schedule.yml", "-e", "flowstream_schedule_unit_dir=%s" % unit_dir, *extra)


def test_timers_for_power_down_and_up_in_a_time_zone_that_systemd_accepts(tmp_path):
    (tmp_path / "someone-else.timer").write_text("[Timer]\nOnCalendar=daily\n")
    run = schedule(tmp_path, "-e", "flowstream_schedule_timezone=Europe/Berlin",
                   "-e", '{"flowstream_schedule_jobs": [{"name": "power-down", "playbook": "flowstream.platform.power_down", '
                         '"on_calendar": "*-*-* 01:00:00", "extra_vars": {"flowstream_power_down": {"headroom": 0.1}}}, '
                         '{"name": "power-up", "playbook": "flowstream.platform.power_up", "on_calendar": "Mon..Fri 06:00:00"}]}')
    assert run.rc == 0 and not run.failures(), run.explain()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(UNITS + ["someone-else.timer"])
    timer = (tmp_path / "flowstream-power-down.timer").read_text()
    assert "OnCalendar=*-*-* 01:00:00 Europe/Berlin\n" in timer and "Unit=flowstream-power-down.service\n" in timer
    service = (tmp_path / "flowstream-power-down.service").read_text()
    assert ("ExecStart=%s/.venv/bin/ansible-playbook -i %s/inventory/lab flowstream.platform.power_down "
            "-e '{\"flowstream_power_down\": {\"headroom\": 0.1}}'\n" % (TOP, TOP)) in service, service
    assert "OnCalendar=Mon..Fri 06:00:00 Europe/Berlin\n" in (tmp_path / "flowstream-power-up.timer").read_text()
    # what systemd itself makes of them (the role ran the same check)
    verify = subprocess.run(["systemd-analyze", "verify"] + [str(tmp_path / u) for u in UNITS], capture_output=True, text=True,
                            check=False)
    assert verify.returncode == 0, verify.stderr
    when = subprocess.run(["systemd-analyze", "calendar", "*-*-* 01:00:00 Europe/Berlin"], capture_output=True, text=True, check=True)
    assert "Next elapse" in when.stdout
    assert os.path.isdir("/run/systemd/system") or "but systemd does not run this machine: they start where it does" in run.raw

    again = schedule(tmp_path, "-e", "flowstream_schedule_timezone=Europe/Berlin",
                     "-e", '{"flowstream_schedule_jobs": [{"name": "power-down", "playbook": "flowstream.platform.power_down", '
                           '"on_calendar": "*-*-* 01:00:00", "extra_vars": {"flowstream_power_down": {"headroom": 0.1}}}, '
                           '{"name": "power-up", "playbook": "flowstream.platform.power_up", "on_calendar": "Mon..Fri 06:00:00"}]}')
    assert again.rc == 0 and again.changed() == 0, again.explain()
    gone = schedule(tmp_path, "-e", "flowstream_schedule_state=absent")
    assert gone.rc == 0 and not gone.failures(), gone.explain()
    assert [p.name for p in tmp_path.iterdir()] == ["someone-else.timer"]


def test_a_wrong_time_zone_or_calendar_writes_nothing(tmp_path):
    run = schedule(tmp_path, "-e", "flowstream_schedule_timezone=Mars/Olympus")
    assert run.rc != 0, run.explain()
    assert "job power-down: on_calendar: Failed to parse calendar specification '*-*-* 01:00:00 Mars/Olympus'" in run.raw, run.explain()
    assert "Nothing was written" in run.raw
    run = schedule(tmp_path, "-e", '{"flowstream_schedule_jobs": [{"name": "late", "playbook": "x.yml", "on_calendar": "*-*-* 25:00:00"}]}')
    assert run.rc != 0 and "job late: on_calendar: Failed to parse calendar specification '*-*-* 25:00:00 UTC'" in run.raw, run.explain()
    run = schedule(tmp_path, "-e", '{"flowstream_schedule_jobs": [{"name": "bad name", "playbook": "x.yml", "on_calendar": "daily"}]}')
    assert run.rc != 0 and "job 0: name must be letters, digits and -, got bad name" in run.raw, run.explain()
    assert list(tmp_path.iterdir()) == []
