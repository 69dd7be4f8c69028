# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Launch the collection's AWX job templates (role flowstream.platform.awx, its
``flowstream_awx_job_templates``) the way AWX does: through ansible-runner, in a private data
directory, with the template's extra vars, its survey's defaults and the launch's answers (checked
against the survey as AWX checks them). The project is a copy of this checkout synced as AWX syncs
one (``sync_project``): the collection comes from what its ``collections/requirements.yml``
installs, not from the checkout's set-up. The figures come from runner's job events, as AWX reads
them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import ansible_runner
import yaml

from ansible_cli import BIN, TOP, AnsibleRun, spent

SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "integer": int, "float": (int, float),
                "multiplechoice": str, "multiselect": list}


def sync_project(root):
    """What an AWX project sync does with this repository, into ``root``: the project (the files git
    tracks, or would: the working tree without what .gitignore leaves out) in ``root/project``,
    then ``ansible-galaxy collection install -r collections/requirements.yml`` run in it into
    ``root/requirements_collections`` (AWX's playbooks/project_update.yml). Returns the two
    directories and the install's process."""
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    project, collections = root / "project", root / "requirements_collections"
    listed = subprocess.run(["git", "-C", str(TOP), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = TOP / name
        if source.is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)
    proc = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r", "collections/requirements.yml",
                           "--collections-path", str(collections)], cwd=str(project), capture_output=True, text=True,
                          check=False, env=awx_env(collections))
    return project, collections, proc


def awx_env(collections, **extra):
    """The environment of an AWX job or update: the project's collections first, no configuration
    file named (Ansible reads the project's ansible.cfg from the directory it runs in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH="%s:/usr/sbin:/usr/bin:/sbin:/bin" % BIN, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    env.update(extra)
    return env


_PROJECT = {}


def project():
    """This session's AWX project (synced once per test process); (project, collections)."""
    if not _PROJECT:
        for left in (TOP / ".tmp" / "awx").glob("project-*"):     # earlier test runs' (their process ended)
            if not Path("/proc", left.name.split("-", 1)[1]).exists():
                shutil.rmtree(left, ignore_errors=True)
        project_dir, collections, proc = sync_project(TOP / ".tmp" / "awx" / ("project-%d" % os.getpid()))
        if proc.returncode != 0:
            raise RuntimeError("the AWX project sync failed:\n%s%s" % (proc.stdout, proc.stderr))
        _PROJECT.update(project=project_dir, collections=collections)
    return _PROJECT["project"], _PROJECT["collections"]


def _catalogue_loader():
    class Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        pass
    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    return Loader


def job_templates():
    """The role's job templates, as the role reads them (name, playbook, extra_vars, survey)."""
    with open(TOP / "roles/awx/defaults/main.yml", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_catalogue_loader())["flowstream_awx_job_templates"]  # noqa: S506 - a SafeLoader


def job_template(name):
    (found,) = [jt for jt in job_templates() if jt["name"] == name]
    return found


def launch_vars(name, answers):
    """The extra vars of a launch of ``name``: the template's, then each survey question's default,
    then the answers. An answer to a survey question must fit it (type, choices, min/max), a
    required question must be answered or have a default - or AWX refuses the launch (ValueError)."""
    jt = job_template(name)
    extra = json.loads(json.dumps(jt.get("extra_vars") or {}))
    for question in jt.get("survey", []):
        var = question["variable"]
        value = answers[var] if var in answers else question.get("default")
        if value is None or value == "" and var not in answers:
            if question.get("required", True):
                raise ValueError("%s: survey question %s needs an answer" % (name, var))
            continue
        if not isinstance(value, SURVEY_TYPES[question["type"]]) or isinstance(value, bool):
            raise ValueError("%s: %s=%r is not of survey type %s" % (name, var, value, question["type"]))
        if question.get("choices") and value not in question["choices"]:
            raise ValueError("%s: %s=%r is not one of %s" % (name, var, value, question["choices"]))
        size = len(value) if isinstance(value, str) else value
        if question.get("min") is not None and size < question["min"] or question.get("max") is not None and size > question["max"]:
            raise ValueError("%s: %s=%r is out of [%s, %s]" % (name, var, value, question.get("min"), question.get("max")))
        extra[var] = value
    asked = {q["variable"] for q in jt.get("survey", [])}
    extra.update({k: v for k, v in answers.items() if k not in asked})      # ask_variables_on_launch
    return extra


class JobRun(AnsibleRun):
    """One job: its status, rc, stdout and events; AnsibleRun's helpers (changed, failures) read
    the stats and task results of its events."""

    def __init__(self, name, extra, runner):  # pylint: disable=super-init-not-called
        self.argv = ["ansible-runner", "run", "(job template %s)" % name, json.dumps(extra)]
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.raw = "\n".join(e.get("stdout", "") for e in self.events if e.get("stdout"))
        self.stderr = ""
        self.data = {}      # (no json callback output: the figures come from the events)

    @property
    def stats(self):
        found = [e["event_data"] for e in self.events if e.get("event") == "playbook_on_stats"]
        if not found:
            return {}
        data = found[-1]
        hosts = set().union(*(data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped", "processed")))
        return {h: {"ok": (data.get("ok") or {}).get(h, 0), "changed": (data.get("changed") or {}).get(h, 0),
                    "failures": (data.get("failures") or {}).get(h, 0), "unreachable": (data.get("dark") or {}).get(h, 0),
                    "skipped": (data.get("skipped") or {}).get(h, 0)} for h in hosts}

    def task_results(self, name, prefix=False):
        """The results of the task(s) called ``name`` (or whose name starts with it), per host,
        from the job's runner_on_* events."""
        found = {}
        for event in self.events:
            if event.get("event") not in ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"):
                continue
            data = event["event_data"]
            task = data.get("task", "")
            if task == name or (prefix and task.startswith(name)):
                found[data["host"]] = data.get("res", {})
        return found

    def explain(self):
        """The run, the tail of its output, then (last, where a cut output still shows it) what
        the tasks of EVIDENCE returned: a failure after a VM's move says how the move went."""
        seen = []
        for name in EVIDENCE:
            for host, res in sorted(self.task_results(name, prefix=True).items()):
                kept = {k: res[k] for k in EVIDENCE_KEYS if res.get(k) is not None}
                if kept and not res.get("skipped"):
                    seen.append("%s [%s]: %s" % (name.rstrip(" ("), host, json.dumps(kept, default=str)[:2000]))
        return "%s\nstatus=%s rc=%s\nstdout (tail):\n%s\n%s" % (
            " ".join(self.argv), self.status, self.rc, self.raw[-8000:], "\n".join(seen))


# what JobRun.explain shows of a job's task results, and which of their keys
EVIDENCE = ("The VM moves live, and the switch with it at the switchover (", "The moved VM's legs on its new host (",
            "How long the chains took to carry traffic")
EVIDENCE_KEYS = ("msg", "migration_ms", "downtime_ms", "flip", "events", "warnings", "actions", "converged")


def launch(name, inventory="inventory/lab", timeout=1500, **answers):
    """Run job template ``name`` as AWX would (ansible-runner, its playbook in the synced project,
    the lab inventory) with the survey ``answers`` (any other extra var too: the templates ask for
    variables on launch). The inventory is the description itself, read by the inventory plugin at
    the job's start (AWX reads it in an inventory update just before, update_on_launch)."""
    # as ansible_cli.VERIFY_SECONDS: a verify probes for 3 s at most unless the test says otherwise
    extra = launch_vars(name, dict({"flowstream_verify_max_duration": 3}, **answers))
    project_dir, collections = project()
    work = TOP / ".tmp" / "runner"
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="fsl-%s-" % name, dir=work))
    started = time.monotonic()
    runner = ansible_runner.run(
        private_data_dir=str(data_dir), project_dir=str(project_dir), playbook=job_template(name)["playbook"],
        inventory=str(project_dir / inventory), extravars=extra, ident=name, quiet=True, timeout=timeout,
        # runner starts from this process's environment: the Makefile's ANSIBLE_CONFIG (the
        # checkout's) is replaced by the project's, which the job would read from its directory
        envvars={k: v for k, v in awx_env(collections, ANSIBLE_CONFIG=str(project_dir / "ansible.cfg")).items()
                 if k.startswith("ANSIBLE_") or k == "PATH"})
    spent("job " + name, started)
    job = JobRun(name, extra, runner)
    # FSL_KEEP=1 keeps a passed job's runner directory too (its job events and stdout, for a look afterwards)
    if job.rc == 0 and not os.environ.get("FSL_KEEP"):
        shutil.rmtree(data_dir, ignore_errors=True)
    return job
