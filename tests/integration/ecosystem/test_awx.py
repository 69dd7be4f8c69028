# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX configuration as code (playbooks/awx-setup.yml, role flowstream.platform.awx), checked
without an AWX server: every object the role writes goes through the real awx.awx module, whose
own argument spec accepts it before the module fails to reach a controller that does not answer
(127.0.0.1, a closed port) - a wrong option, type or choice would fail there instead; the BMC
password never shows in the output; a wrong time or time zone is refused before any awx.awx task
runs. Every job template's playbook exists, reads the variables its survey asks, and runs under
ansible-runner in the lab tests (operations/, awx_jobs.launch)."""

from __future__ import annotations

import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, adhoc, playbook  # noqa: E402  pylint: disable=wrong-import-position
from awx_jobs import job_templates, launch_vars  # noqa: E402  pylint: disable=wrong-import-position

SECRET = "fsl-S3cret-bmc-7Qx"
UNANSWERED = "tests/integration/ecosystem/awx_unanswered.yml"
# what the role writes: project, inventory, its source, the credential type, the credential, the
# job templates, the workflow, two schedules
EXPECTED = {"awx.awx.project": 1, "awx.awx.inventory": 1, "awx.awx.inventory_source": 1, "awx.awx.credential_type": 1,
            "awx.awx.credential": 1, "awx.awx.job_template": 10, "awx.awx.workflow_job_template": 1, "awx.awx.schedule": 2}
NOT_ANSWERING = re.compile(r"error when trying to connect to https://127\.0\.0\.1:\d+/api/v2/.*Connection refused")


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]      # nothing listens there once the socket is closed


def against_nothing(*extra):
    return playbook(UNANSWERED, "-e", "flowstream_awx_controller_host=https://127.0.0.1:%d" % closed_port(), *extra)


def awx_calls(run):
    """(module, result) of every awx.awx call of the run (each loop item is a call)."""
    calls = []
    for play in run.data.get("plays", []):
        for task in play["tasks"]:
            for res in task["hosts"].values():
                if str(res.get("action", "")).startswith("awx.awx.") and not res.get("skipped"):
                    for one in res.get("results") or [res]:
                        if not one.get("skipped"):
                            calls.append((res["action"], one))
    return calls


def test_every_object_passes_the_awx_modules_own_argument_specs():
    run = against_nothing("-e", "flowstream_awx_power_password=" + SECRET, "-e", "flowstream_awx_timezone=Europe/Berlin",
                          "-e", "flowstream_awx_machine_credential=Lab SSH")
    assert run.data.get("plays"), run.explain()
    calls = awx_calls(run)
    counted = {}
    for module, res in calls:
        counted[module] = counted.get(module, 0) + 1
        assert res.get("failed"), (module, res)
        if module == "awx.awx.credential":       # no_log: its result is censored
            assert "censored" in str(res), res
        else:
            assert NOT_ANSWERING.search(res.get("msg", "")), (module, res.get("msg"))
    assert counted == EXPECTED, counted
    # the checks before them passed, and nothing else failed
    for play in run.data["plays"]:
        for task in play["tasks"]:
            res = task["hosts"]["localhost"]
            if not str(res.get("action", "")).startswith("awx.awx."):
                assert not res.get("failed"), (task["task"]["name"], res)
    assert SECRET not in run.raw and SECRET not in run.stderr


def test_a_wrong_type_is_caught_by_the_modules_argument_specs():
    """The check above can fail: a value the awx.awx modules' specs refuse is reported as such."""
    run = against_nothing("-e", '{"flowstream_awx_job_templates": [{"name": "x", "playbook": "playbooks/verify_chains.yml", '
                                '"extra_vars": "not a dict"}]}')
    (res,) = [one for module, one in awx_calls(run) if module == "awx.awx.job_template"]
    assert not NOT_ANSWERING.search(res.get("msg", "")) and "extra_vars" in res.get("msg", ""), res


def test_wrong_times_and_time_zones_are_refused_before_anything_is_written():
    for extra, said in ((("-e", "flowstream_awx_timezone=Europe/Nowhere"), "'Europe/Nowhere' is not an IANA time zone"),
                        (("-e", "flowstream_awx_power_down_at=25:00"), "flowstream_awx_power_down_at = 25:00: a time of day as HH:MM"),
                        (("-e", "flowstream_awx_schedules_from=2026-13-01"), "'2026-13-01' is not a date YYYY-MM-DD")):
        run = playbook("playbooks/awx-setup.yml", "-e", "flowstream_awx_controller_host=https://127.0.0.1:%d" % closed_port(), *extra)
        assert run.rc != 0 and said in run.raw and "Nothing was changed in AWX" in run.raw, run.explain()
        assert not awx_calls(run), run.explain()


def test_the_schedules_are_daily_rules_in_the_named_time_zone():
    run = adhoc("localhost", "ansible.builtin.debug",
                "msg={{ '01:00' | flowstream.platform.daily_rrule(timezone='Europe/Berlin') }}", inventory="inventory/example")
    assert run.rc == 0, run.explain()
    (res,) = run.data["plays"][0]["tasks"][0]["hosts"].values()
    assert res["msg"] == "DTSTART;TZID=Europe/Berlin:20260101T010000 RRULE:FREQ=DAILY;INTERVAL=1"


def test_every_job_template_names_a_playbook_that_reads_its_survey():
    names = [jt["name"] for jt in job_templates()]
    assert names == ["deploy-chain", "verify", "migrate-module", "drain-host", "uncordon-host", "failover", "trial", "scale-step", "power-down",
                     "power-up"]
    for jt in job_templates():
        path = TOP / jt["playbook"]
        assert path.is_file(), jt
        text = "".join(p.read_text() for p in (TOP / "playbooks").rglob("*.yml"))
        for question in jt.get("survey", []):
            assert re.search(r"\b%s\b" % re.escape(question["variable"]), text), (jt["name"], question["variable"])
        launch_vars(jt["name"], {"instance": "x", "to": "mh1", "hosts": "mh1", "chain": "web", "step": "mon", "instances": 3}
                    if jt["name"] != "power-up" else {})
    try:
        launch_vars("migrate-module", {"instance": "x", "to": "mh1", "method": "teleport"})
    except ValueError as err:
        assert "method='teleport' is not one of ['live', 'cold']" in str(err)
    else:
        raise AssertionError("a survey answer outside its choices was taken")
