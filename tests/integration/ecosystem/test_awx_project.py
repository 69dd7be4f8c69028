# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""This repository as an AWX project, the way AWX uses one: a project sync installs what
``collections/requirements.yml`` names (this collection, from the checkout), every job template's
playbook then resolves ``flowstream.platform`` from there alone, and an inventory update of a
platform description that does not parse fails with the description's error - under the
project's ansible.cfg (the command line, and AWX running in the project) and under Ansible's
defaults with the environment the role's inventory source gives it. The jobs themselves run on
the lab through ansible-runner from this same synced project (awx_jobs.launch, in the operations
tests)."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import BIN, TOP  # noqa: E402  pylint: disable=wrong-import-position
from awx_jobs import awx_env, job_templates, sync_project  # noqa: E402  pylint: disable=wrong-import-position


def run(argv, cwd, env):
    return subprocess.run(argv, cwd=str(cwd), env=env, capture_output=True, text=True, check=False, timeout=300)


def inventory_source_env():
    """The environment the role's inventory source gives AWX's ansible-inventory (source_vars)."""
    with open(TOP / "roles/awx/tasks/main.yml", encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle.read().replace("!unsafe", ""))
    found = []

    def walk(items):
        for task in items:
            walk(task.get("block", []))
            if "awx.awx.inventory_source" in task:
                found.append(task["awx.awx.inventory_source"])
    walk(tasks)
    (source,) = found
    return {k: str(v) for k, v in source["source_vars"].items()}


def broken_description(where):
    with open(TOP / "inventory/lab/platform.flowstream.yml", encoding="utf-8") as handle:
        text = handle.read()
    assert "capacity: {cpu: 3," in text
    where.mkdir(parents=True, exist_ok=True)
    path = where / "platform.flowstream.yml"
    path.write_text(text.replace("capacity: {cpu: 3,", "capacity: {cpu: three,"))
    return path


def test_a_project_sync_installs_this_collection_from_the_checkout_and_the_playbooks_resolve_it(tmp_path):
    project, collections, proc = sync_project(tmp_path / "awx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = collections / "ansible_collections" / "flowstream" / "platform"
    with open(TOP / "galaxy.yml", encoding="utf-8") as handle:
        version = yaml.safe_load(handle)["version"]
    with open(installed / "MANIFEST.json", encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["collection_info"]["version"] == version
    # the checkout's plugins, byte for byte; nothing of a checkout's set-up (venv, lab state, link)
    for name in ("plugins/modules/chain_plan.py", "plugins/inventory/platform.py", "playbooks/deploy_chain.yml"):
        assert (installed / name).read_bytes() == (TOP / name).read_bytes(), name
    assert not [p for p in (".venv", ".tmp", "collections/ansible_collections") if (project / p).exists() or (installed / p).exists()]

    # every job template's playbook resolves flowstream.platform from the synced collections alone
    env = awx_env(collections)
    for jt in job_templates():
        checked = run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/lab", jt["playbook"]], project, env)
        assert checked.returncode == 0, (jt["name"], checked.stdout[-2000:], checked.stderr[-2000:])
    # ... and does not without them (what a project whose requirements miss the collection gets)
    empty = tmp_path / "empty"
    empty.mkdir()
    unresolved = run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/lab", "playbooks/deploy_chain.yml"],
                     project, awx_env(empty))
    assert unresolved.returncode != 0 and "flowstream.platform" in unresolved.stdout + unresolved.stderr, unresolved.stderr[-2000:]


def test_an_inventory_update_of_a_broken_description_fails_with_its_error(tmp_path):
    project, collections, proc = sync_project(tmp_path / "awx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inventory = [str(BIN / "ansible-inventory"), "--list", "-i"]
    error = "module_host_defaults: capacity.cpu must be a number of CPU cores, got 'three'"

    # the lab's description, as AWX's update reads it in the project
    good = run(inventory + ["inventory/lab"], project, awx_env(collections))
    assert good.returncode == 0, good.stderr[-2000:]
    assert {"mh1", "mh2", "mh3", "spare1", "sw1"} <= set(yaml.safe_load(good.stdout)["_meta"]["hostvars"])

    # a broken one, in the project: its ansible.cfg (read from the directory) makes it fatal
    broken = broken_description(project / "inventory" / "broken")
    in_project = run(inventory + ["inventory/broken"], project, awx_env(collections))
    assert in_project.returncode != 0 and str(broken) in in_project.stderr and error in in_project.stderr, in_project.stderr[-3000:]

    # under Ansible's defaults (no ansible.cfg where it runs) the same description gives an empty
    # inventory and rc=0 - which is why the role's inventory source sets the environment below,
    # and with it the update fails with the error
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    defaults = run(inventory + [str(broken)], elsewhere, awx_env(collections))
    assert defaults.returncode == 0 and error in defaults.stderr, defaults.stderr[-2000:]
    source_env = inventory_source_env()
    assert source_env == {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
    update = run(inventory + [str(broken)], elsewhere, awx_env(collections, **source_env))
    assert update.returncode != 0 and error in update.stderr, update.stderr[-3000:]
