# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure detection and cold failover on the lab, under probe traffic: BFD up on both ends of
every trunk after deploy-chain; a failover with nothing failed changes nothing; a host that dies
(every process of it killed) is fenced on the switch and its chains restored on the rest and the
spare, verified; it comes back still fenced, its stale copies are removed, uncordon-host refuses
until then and unfences it after; a host whose trunk is cut while it answers is isolated, fenced
and emptied in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_runner import module, playbook  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

RATE_CAP = ["-e", "flowstream_verify_max_rate=5000"]
HOSTS = ("mh1", "mh2", "mh3")
ALL_HOSTS = HOSTS + ("spare1",)
TRUNK = "fsl-%s-tr"
LAB = LabHosts(ALL_HOSTS)


def ok(run):
    assert run.rc == 0 and not run.failures(), run.explain()
    return run


def look():
    """failure_info's verdicts (one look from the switch)."""
    rc, res = module("sw1", "failure_info", grace=0)
    assert rc == 0, res
    return res


def healthy_again(host, seconds=10):
    """The host's BFD session comes up again within a few seconds of its trunk coming up."""
    deadline = time.monotonic() + seconds
    while True:
        status = look()["hosts"][host]["status"]
        if status == "healthy" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def switch_port(host):
    """(OpenFlow config flags, the fence's drop flows, the fence mark) of the host's trunk on the switch."""
    show = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "show", "fsl-sw"], capture_output=True, text=True, check=True).stdout
    lines = show.splitlines()
    at = next(i for i, line in enumerate(lines) if "(%s)" % (TRUNK % host) in line)
    config = lines[at + 1].split(":", 1)[1].strip()
    drops = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "fsl-sw", "cookie=0xf5fe000000000000/0xffff000000000000"],
                           capture_output=True, text=True, check=True).stdout
    mark = subprocess.run(["ovs-vsctl", "--if-exists", "get", "port", TRUNK % host, "external_ids:flowstream-fence"],
                          capture_output=True, text=True, check=True).stdout.strip().strip('"') or None
    return config, [line for line in drops.splitlines() if "actions=drop" in line], mark


def restored(run):
    """The failover's rows, one per chain it restored."""
    res = run.task_results("Every chain restored, and what the outage cost it").get("localhost", {})
    return res.get("ansible_facts", {}).get("flowstream_failover", [])


def verified(run):
    return bool(run.task_results("The probe's figures, chain by chain").get("localhost"))


@pytest.fixture(scope="module")
def deployed(running_lab):
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(ALL_HOSTS)))
    ok(playbook("playbooks/deploy-chain.yml", *RATE_CAP))
    yield
    # whatever a test left: trunks up, hosts repaired, fences and marks gone
    for host in ALL_HOSTS:
        subprocess.run(["ip", "link", "set", TRUNK % host, "up"], check=False)
    ok(playbook("playbooks/lab-up.yml"))
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(ALL_HOSTS)))


def test_bfd_runs_on_both_ends_of_every_trunk_and_nothing_failed_changes_nothing(deployed):
    seen = look()
    assert all(v["status"] == "healthy" for v in seen["hosts"].values()), json.dumps(seen["hosts"])
    for host, verdict in seen["hosts"].items():
        bfd = verdict["trunk"]["bfd"]
        assert (bfd["enabled"], bfd["forwarding"], bfd["min_rx"], bfd["detect_ms"]) == (True, True, 100, 300), (host, bfd)
        rc, report = module(host, "module_host_info", sample_seconds=0.1)
        assert rc == 0 and report["trunk"]["bfd"]["forwarding"] is True and report["trunk"]["port"] == "trunk0", report
    run = ok(playbook("playbooks/failover.yml", *RATE_CAP))
    assert run.changed() == 0, run.explain()
    said = run.task_results("What the look found").get("localhost", {})
    assert said.get("msg", "").startswith("nothing failed"), said


def test_a_dead_host_is_fenced_its_chains_restored_and_it_stays_out_until_uncordoned(deployed):
    where = LAB.placement()
    (dead,) = where["ins14a0a"]  # a process instance: its supervisor dies with the host
    lost = sorted(i for i, hosts in where.items() if dead in hosts)
    assert LAB.kill_all(dead)
    run = ok(playbook("playbooks/failover.yml", "-e", "grace=2", *RATE_CAP))
    rows = restored(run)
    assert rows and all(r["probed"] and r["failed_hosts"] == [dead] for r in rows), json.dumps(rows)
    assert all(r["restored_s"] is not None and 0 < r["restored_s"] < 60 for r in rows), json.dumps(rows)
    placed = {i: h for r in rows for i, h in r["placed"].items()}
    assert sorted(placed) == lost and dead not in placed.values(), (placed, lost)
    assert verified(run), run.explain()
    config, drops, mark = switch_port(dead)
    assert "PORT_DOWN" in config and len(drops) == 1 and mark == "fenced", (config, drops, mark)
    assert look()["hosts"][dead]["status"] == "fenced"
    again = ok(playbook("playbooks/failover.yml", "-e", "flowstream_skip_verify=true"))
    assert again.changed() == 0, again.explain()

    # the host comes back with its old copies: still fenced, and uncordon refuses while they are there
    ok(playbook("playbooks/lab-up.yml"))
    assert look()["hosts"][dead]["status"] == "fenced"
    stale = LAB.placement()
    assert any(dead in hosts for hosts in stale.values()), stale
    refused = playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + dead)
    assert refused.rc != 0 and "is fenced after a failure and still runs" in refused.raw, refused.explain()
    assert switch_port(dead)[2] == "fenced"
    # the next failover run removes them, and only them
    clean = ok(playbook("playbooks/failover.yml", "-e", "flowstream_skip_verify=true"))
    assert clean.changed(dead) > 0, clean.explain()
    after = LAB.placement()
    assert not any(dead in hosts for hosts in after.values()), after
    assert all(len(hosts) == 1 for hosts in after.values()), after
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + dead))
    config, drops, mark = switch_port(dead)
    assert "PORT_DOWN" not in config and drops == [] and mark is None, (config, drops, mark)
    assert healthy_again(dead) == "healthy"


def test_a_host_whose_trunk_is_cut_is_isolated_fenced_and_emptied_in_one_run(deployed):
    where = LAB.placement()
    cut = next(h for h in HOSTS if any(h in hosts for hosts in where.values()))
    moved = sorted(i for i, hosts in where.items() if cut in hosts)
    subprocess.run(["ip", "link", "set", TRUNK % cut, "down"], check=True)
    try:
        run = ok(playbook("playbooks/failover.yml", "-e", "grace=1", *RATE_CAP))
    finally:
        subprocess.run(["ip", "link", "set", TRUNK % cut, "up"], check=True)
    rows = restored(run)
    assert sorted(i for r in rows for i in r["placed"]) == moved, json.dumps(rows)
    assert verified(run), run.explain()
    after = LAB.placement()
    assert not any(cut in hosts for hosts in after.values()) and all(len(h) == 1 for h in after.values()), after
    # the link is up again, and the host still carries nothing: the fence holds until uncordoned
    config, drops, mark = switch_port(cut)
    assert mark == "fenced" and len(drops) == 1 and look()["hosts"][cut]["status"] == "fenced", (config, drops)
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + cut))
    assert switch_port(cut)[2] is None and healthy_again(cut) == "healthy"
