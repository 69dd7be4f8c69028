# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 operations on the lab, under probe traffic: migrate-module (kernel, process, VM),
drain-host over two hosts (rolling, marked on the platform, never undone by deploy-chain),
uncordon, bad requests that change nothing, and a migration killed at every step that leaves
traffic flowing and is converged by the next run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import killed_at, module, playbook  # noqa: E402  pylint: disable=wrong-import-position
from awx_jobs import launch  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

# each chain's probes at most 2 kpps: inside what the two-CPU lab carries beside the operations
# (docs/operations.md#known-gaps: 5 kpps through web alone keeps it 96 % busy)
CAP = 2000
RATE_CAP = ["-e", "flowstream_verify_max_rate=%d" % CAP]
HOSTS = ("mh1", "mh2", "mh3")
ALL_HOSTS = HOSTS + ("spare1",)


LAB = LabHosts(ALL_HOSTS)
on_host = LAB.run
placement = LAB.placement


def mark(host):
    out = on_host(host, "ovs-vsctl", "--if-exists", "get", "bridge", "fs-host", "external_ids:flowstream-maintenance", check=False)
    return out.strip().strip('"') or None


def ok(run):
    assert run.rc == 0 and not run.failures(), run.explain()
    return run


def moves_of(run):
    """The rows of the 'Move' task (one per move) of an operation playbook."""
    results = run.task_results("Move").get("localhost", {}).get("results", [])
    return [r["msg"] for r in results]


def probe_clean(seconds=2):
    """Every chain carries the probe's traffic (deploy-chain's verify plays)."""
    run = playbook("playbooks/verify_chains.yml", *RATE_CAP)
    assert run.rc == 0, run.explain()
    return run


def other_host(current, exclude=()):
    return next(h for h in HOSTS if h not in current and h not in exclude)


@pytest.fixture(scope="module")
def deployed(running_lab):
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(ALL_HOSTS)))
    # the chains are proven by the first migration's probe (0 lost, every chain)
    ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    yield
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(ALL_HOSTS)))
    # the chains' flows would take the next test modules' traffic (they steer the switch themselves)
    ok(playbook("playbooks/lab-down.yml"))


# instances with state to carry: web's first monitor (per-flow counters), inspect's quick filter
# (counters and the flows it flagged)
@pytest.mark.parametrize("iid, kind", [("web4b51a", "kernel"), ("ins14a0a", "process")])
def test_migrate_moves_an_instance_make_before_break_and_loses_nothing(deployed, iid, kind):
    where = placement()
    (source,) = where[iid]
    target = other_host([source])
    if kind == "kernel":
        # check mode prints the plan (what moves where, how, why) and changes nothing
        before = _snapshot()
        check = ok(playbook("playbooks/migrate-module.yml", "--check", "-e", "instance=" + iid, "-e", "to=" + target))
        said = check.task_results("What moves where, by which method, and why")["localhost"]["msg"]
        assert [m.split(" | ")[:4] for m in said] == [[iid, source, target, "make_before_break"]], said
        assert _snapshot() == before, check.explain()
    # as AWX runs it: the migrate-module job template, its survey answered (ansible-runner)
    run = ok(launch("migrate-module", instance=iid, to=target, flowstream_verify_max_rate=CAP))
    (row,) = moves_of(run)
    assert (row["instance"], row["from"], row["to"], row["how"], row["kind"]) == (iid, source, target, "make_before_break", kind)
    assert row["probed"] and row["sent"] > 0, row
    assert (row["lost"], row["reordered"], row["duplicated"]) == (0, 0, 0), json.dumps(row)
    assert placement()[iid] == [target]
    # the state came along: the new copy reports the old copy's counters (a monitor's flows, a filter's flagged flows)
    carried = on_host(target, "cat", "/run/flowstream/%s/carried.json" % iid, check=False)
    assert carried.startswith("{"), "no carried state on %s" % target
    again = playbook("playbooks/migrate-module.yml", "-e", "instance=" + iid, "-e", "to=" + target)
    assert again.rc != 0 and "already runs on %s" % target in again.raw, again.explain()
    probe_clean()


def test_migrate_a_vm_live_moves_the_switch_with_it(deployed):
    where = placement()
    vm = sorted(i for i in where if i.startswith("gue"))[0]
    (source,) = where[vm]
    target = other_host([source])
    run = ok(playbook("playbooks/migrate-module.yml", "-e", "instance=" + vm, "-e", "to=" + target, *RATE_CAP))
    (row,) = moves_of(run)
    assert (row["instance"], row["from"], row["to"], row["how"]) == (vm, source, target, "libvirt"), json.dumps(row)
    assert row["probed"] and row["sent"] > 0 and row["blackout_ms"] is not None and row["downtime_ms"] is not None, row
    assert row["reordered"] == 0, row
    assert placement()[vm] == [target]
    crashed = LAB.guest_crash(target, vm)
    if crashed:
        # the guest (not the move) broke: start it afresh so the later tests find the chain working
        on_host(target, "virsh", "destroy", "fs-" + vm, check=False)
        ok(playbook("playbooks/deploy-chain.yml", *RATE_CAP))
        pytest.xfail("the lab's TCG guest crashed right after its live migration (docs/vm-modules.md): %s" % crashed)
    again = playbook("playbooks/deploy-chain.yml", *RATE_CAP)     # its verify: the guest's chain carries traffic
    crashed = LAB.guest_crash(target, vm)
    if crashed and (again.rc != 0 or again.changed()):    # (changed: it started the guest libvirt ended)
        on_host(target, "virsh", "destroy", "fs-" + vm, check=False)
        ok(playbook("playbooks/deploy-chain.yml", *RATE_CAP))
        pytest.xfail("the lab's TCG guest crashed after its live migration (docs/vm-modules.md): %s" % crashed)
    assert again.rc == 0 and not again.failures(), "%s\nthe guest's console on %s:\n%s" % (
        again.explain(), target, on_host(target, "tail", "-20", "/var/log/libvirt/qemu/fs-%s.console.log" % vm, check=False))
    assert again.changed() == 0, again.explain()


def switch_trials(prefix="flowstream-trial-"):
    out = subprocess.run(["ovs-vsctl", "get", "bridge", "fsl-sw", "external_ids"], capture_output=True, text=True, check=True).stdout
    return sorted(k.split("=")[0] for k in out.strip("{}\n").split(", ") if k.startswith(prefix) and "since" not in k)


def probe_totals(run, chain):
    return run.task_results("The probe's totals, chain by chain")["localhost"]["msg"][chain]["totals"]


def test_a_trial_takes_a_slice_of_a_steps_flows_and_rolls_back_under_probe_traffic(deployed, tmp_path):
    """trial.yml: bad requests change nothing; a process monitor tried on 50 % of web's mon
    flows (whole flows: verify finds every probe flow on exactly one of the step's instances,
    some on the candidate) under the probe, nothing lost, recorded on the switch so deploy-chain
    keeps it; rollback gives its flows back under the probe (its cost reported and small)."""
    trial = ["-e", "chain=web", "-e", "step=mon"]
    start = trial + ["-e", "type=monitor", "-e", "kind=process"]
    for leftover in switch_trials():       # an earlier run's, killed before its rollback
        chain, step = leftover[len("flowstream-trial-"):].split(".", 1)
        ok(playbook("playbooks/trial.yml", "-e", "chain=" + chain, "-e", "step=" + step, "-e", "action=rollback", "-e", "verify=false"))
    for argv, said in ((["-e", "chain=wbe", "-e", "step=mon"], "chain wbe: the inventory has no such chain"),
                       (["-e", "chain=web", "-e", "step=mn"], "chain web: step mn: no such step (steps: fw, mon, shape)"),
                       (start + ["-e", "percent=0"], "chain 'web': step 'mon': trial.percent: must be a number in (0, 100]"),
                       (trial + ["-e", "type=monitr", "-e", "kind=process", "-e", "percent=10"], "trial.type"),
                       (trial + ["-e", "action=rollback"], "chain web: step mon: no trial runs there")):
        run = playbook("playbooks/trial.yml", *argv)
        assert run.rc != 0 and said in run.raw, run.explain()
    before = placement()
    assert switch_trials() == [] and not any(i.startswith("web4b53") for i in before)

    # as AWX runs it: the trial job template, its survey answered (ansible-runner)
    run = ok(launch("trial", chain="web", step="mon", type="monitor", kind="process", percent=50.0, flowstream_verify_max_rate=CAP))
    assert switch_trials() == ["flowstream-trial-web.mon"]
    totals = probe_totals(run, "web")
    # nothing lost; a start has no order barrier (docs/operations.md#known-gaps): the flows that
    # go to the candidate may see a few packets overtaken under load (15 of ~200,000 once)
    assert totals["sent"] > 0 and (totals["lost"], totals["duplicated"]) == (0, 0), totals
    assert totals["reordered"] <= totals["sent"] // 1000, totals
    table = "\n".join(run.task_results("The probe's figures, chain by chain")["localhost"]["msg"])
    assert "web4b53a  trial mon " in table, table        # 32 flows: about half on the candidate, each on one instance
    assert placement()["web4b53a"] and {k: v for k, v in placement().items() if k != "web4b53a"} == before
    ok(playbook("playbooks/show-platform.yml", "-e", "flowstream_picture_dir=%s" % tmp_path))
    dot = (tmp_path / "platform.dot").read_text()              # the picture: the candidate beside mon's own, its share
    assert re.search(r'-> "web4b53a" \[color="[^"]+", style=dotted, label="trial 50.0 %"\]', dot), dot
    refused = playbook("playbooks/trial.yml", *trial, "-e", "type=firewall", "-e", "kind=kernel", "-e", "percent=10")
    assert refused.rc != 0 and "only its percent can change - roll it back first" in refused.raw, refused.explain()
    again = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert again.changed() == 0, again.explain()             # the recorded trial is part of every plan

    back = ok(playbook("playbooks/trial.yml", *trial, "-e", "action=rollback", *RATE_CAP))
    totals = probe_totals(back, "web")
    # what it cost is reported and small (docs/operations.md#known-gaps: 0 lost at 5 kpps on a
    # quiet machine, a few dozen under load), and the chain is whole after (verify)
    assert totals["sent"] > 0 and totals["duplicated"] == 0, totals
    assert totals["lost"] + totals["reordered"] <= totals["sent"] // 100, totals
    assert switch_trials() == [] and placement() == before


def test_a_trial_promoted_becomes_the_steps_module_under_probe_traffic(deployed):
    """trial.yml -e action=promote: the candidate's module (a process monitor) becomes web's mon
    for every flow - the candidates take every flow, the step's own instances are re-made as
    process monitors while they carry nothing, the trial ends - under the probe, its cost
    reported and small; recorded on the switch, so deploy-chain keeps it and a second promote
    changes nothing. Forgetting the record puts the description's kernel monitors back."""
    trial = ["-e", "chain=web", "-e", "step=mon"]
    for leftover in switch_trials("flowstream-promoted-"):     # an earlier run's, killed before its forget
        chain, step = leftover[len("flowstream-promoted-"):].split(".", 1)
        ok(playbook("playbooks/trial.yml", "-e", "chain=" + chain, "-e", "step=" + step, "-e", "action=forget", "-e", "verify=false"))
    refused = playbook("playbooks/trial.yml", *trial, "-e", "action=promote")
    assert refused.rc != 0 and "no trial runs there and none was promoted (nothing to promote)" in refused.raw, refused.explain()
    mons = sorted(i for i in placement() if i.startswith("web4b51"))
    assert len(mons) == 2 and all(kind_of(i, placement()[i][0]) == "kernel" for i in mons)
    ok(playbook("playbooks/trial.yml", *trial, "-e", "type=monitor", "-e", "kind=process", "-e", "percent=10", "-e", "verify=false"))

    run = ok(playbook("playbooks/trial.yml", *trial, "-e", "action=promote", *RATE_CAP))
    totals = probe_totals(run, "web")
    print("promote under the probe: %s" % totals)
    assert totals["sent"] > 0 and totals["duplicated"] == 0, totals
    assert totals["lost"] + totals["reordered"] <= totals["sent"] // 100, totals
    after = placement()
    assert sorted(i for i in after if i.startswith("web4b51")) == mons and not any(i.startswith("web4b53") for i in after), after
    assert all(kind_of(i, after[i][0]) == "process" for i in mons)
    assert switch_trials() == [] and switch_trials("flowstream-promoted-") == ["flowstream-promoted-web.mon"]
    again = ok(playbook("playbooks/trial.yml", *trial, "-e", "action=promote", "-e", "verify=false"))
    assert again.changed() == 0, again.explain()
    deploy = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert deploy.changed() == 0 and placement() == after, deploy.explain()   # the recorded promotion is part of every plan

    ok(playbook("playbooks/trial.yml", *trial, "-e", "action=forget", "-e", "verify=false"))
    assert switch_trials("flowstream-promoted-") == [] and all(kind_of(i, placement()[i][0]) == "kernel" for i in mons)


def test_scale_step_adds_and_removes_an_instance_and_says_which_share_of_the_flows_moved(deployed):
    """scale-step.yml: bad requests change nothing; web's mon 2 -> 3 under the probe (the plan
    says the share of the step's flows that change instance, near the ideal 1/3), recorded on
    the switch so deploy-chain keeps it; 3 -> 2, back to the description, removes the record."""
    step = ["-e", "chain=web", "-e", "step=mon"]
    if switch_trials("flowstream-scaled-"):                     # an earlier run's: back to the description's 2
        ok(playbook("playbooks/scale-step.yml", *step, "-e", "instances=2", "-e", "verify=false"))
    before = placement()
    for argv, said in ((step + ["-e", "instances=0"], "scale-step needs -e chain=<chain> -e step=<step> -e instances=<1 or more>"),
                       (["-e", "chain=web", "-e", "step=mn", "-e", "instances=2"], "chain web: step mn: no such step"),
                       (step + ["-e", "instances=200"], "chain 'web': step 'mon': capacity short: needs 200 instances")):
        run = playbook("playbooks/scale-step.yml", *argv)
        assert run.rc != 0 and said in run.raw, run.explain()
    assert placement() == before and switch_trials("flowstream-scaled-") == []

    up = ok(playbook("playbooks/scale-step.yml", *step, "-e", "instances=3", *RATE_CAP))
    said = up.task_results("The change, and what it installs and removes")
    moved = up.task_results("What the scaling did to the step's flows")
    print("scale-step 2 -> 3: %s" % moved["localhost"]["msg"])
    rebalanced = moved["localhost"]["msg"]["rebalanced"]
    assert rebalanced["before"] == ["web4b51a", "web4b51b"] and rebalanced["after"] == ["web4b51a", "web4b51b", "web4b51c"], said
    assert abs(rebalanced["share_moved"] - 1 / 3.0) < 0.1 and rebalanced["ideal"] == 0.3333
    totals = probe_totals(up, "web")
    assert totals["sent"] > 0 and totals["duplicated"] == 0, totals
    assert totals["lost"] + totals["reordered"] <= totals["sent"] // 100, totals
    assert set(placement()) == set(before) | {"web4b51c"}
    assert switch_trials("flowstream-scaled-") == ["flowstream-scaled-web.mon"]
    deploy = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert deploy.changed() == 0, deploy.explain()              # the recorded count is part of every plan

    down = ok(playbook("playbooks/scale-step.yml", *step, "-e", "instances=2", *RATE_CAP))
    totals = probe_totals(down, "web")
    print("scale-step 3 -> 2: %s" % down.task_results("What the scaling did to the step's flows")["localhost"]["msg"])
    assert totals["sent"] > 0 and totals["duplicated"] == 0 and totals["lost"] + totals["reordered"] <= totals["sent"] // 100, totals
    assert placement() == before and switch_trials("flowstream-scaled-") == []


def test_drain_two_hosts_rolling_then_deploy_chain_keeps_them_empty(deployed):
    """The two hosts without the guest VM (a VM's live move is the test above; everything else
    fits on the third host): drained one after the other, under probe traffic. The guest chain's
    Click meter moves with the rest when it is on one of them."""
    where = placement()
    vm_hosts = {h for i, hosts in where.items() for h in hosts if kind_of(i, h) == "vm"}
    drained = [h for h in HOSTS if h not in vm_hosts][:2]
    before = _snapshot()
    check = ok(playbook("playbooks/drain-host.yml", "--check", "-e", "hosts=" + ",".join(drained)))
    assert _snapshot() == before, check.explain()       # check mode: the plan, and nothing changed
    run = ok(launch("drain-host", hosts=",".join(drained), flowstream_verify_max_rate=CAP))      # the AWX job template
    rows = moves_of(run)
    assert rows, run.explain()
    assert [r["wave"] for r in rows] == sorted((r["wave"] for r in rows), key=lambda w: [d in w for d in drained].index(True)), rows
    for row in rows:
        assert row["from"] in drained and row["to"] not in drained and row["probed"], row
        if row["how"] == "make_before_break":
            # a wave that moves several adjacent steps of one chain at once reorders a few packets
            # (no barrier where the new host's bridge starts chaining locally) and lost packets in
            # 1 of 8 operations at 10 kpps once the lab's socket buffers were raised
            # (docs/operations.md#known-gaps): what it cost is reported, and it stays small - a
            # single move must lose nothing (the tests above)
            assert row["sent"] > 0 and row["duplicated"] == 0, json.dumps(row)
            assert row["lost"] + row["reordered"] <= row["sent"] // 100, "\n".join(json.dumps(r) for r in rows)
        else:
            assert row["blackout_ms"] is not None, row
    after = placement()
    assert not any(h in drained for hosts in after.values() for h in hosts), after
    assert [mark(h) for h in drained] == ["drained", "drained"]
    again = ok(playbook("playbooks/drain-host.yml", "-e", "hosts=" + ",".join(drained), *RATE_CAP))
    assert again.changed() == 0, again.explain()
    deploy = ok(playbook("playbooks/deploy-chain.yml", *RATE_CAP))
    assert deploy.changed() == 0, deploy.explain()
    assert placement() == after
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(drained)))
    assert [mark(h) for h in drained] == [None, None]
    back = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert back.changed() == 0 and placement() == after, "nothing moves back by itself"


def kind_of(iid, host):
    return on_host(host, "ovs-vsctl", "get", "Port", "fs-%s-l" % iid, "external_ids:flowstream-kind").strip().strip('"')


def _snapshot():
    switch = subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--no-stats", "dump-flows", "fsl-sw"], capture_output=True, text=True,
                            check=True).stdout
    return sorted(line.strip() for line in switch.splitlines() if "cookie=" in line), placement(), [mark(h) for h in ALL_HOSTS]


CHECKED = [
    ("verify_chains.yml",),
    ("failover.yml",),
    ("trial.yml", "-e", "chain=web", "-e", "step=mon", "-e", "type=monitor", "-e", "kind=process", "-e", "percent=10"),
    ("scale-step.yml", "-e", "chain=web", "-e", "step=mon", "-e", "instances=3"),
    ("power-up.yml",),
    ("uncordon-host.yml", "-e", "hosts=mh1,mh2"),
    ("trunks.yml",),
    ("lab-down.yml",),
]


def test_check_mode_of_every_operation_changes_nothing_on_a_drifted_platform(deployed):
    """--check --diff of the playbooks the other tests run for real (drain-host, migrate-module,
    power-down, deploy-chain and lab-up have theirs beside those runs), on a platform that drifted:
    one of web's switch flows deleted by hand. Every run exits 0 and leaves the switch, the
    instances and the marks as they were - the drift included, which deploy-chain then repairs."""
    web = next(line for line in _snapshot()[0] if "tp_dst=0x1f40/0xffc0" in line)
    cookie = web.split("cookie=")[1].split(",")[0]
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "del-flows", "fsl-sw", "cookie=%s/-1" % cookie], check=True)
    drifted = _snapshot()
    try:
        assert web not in drifted[0]
        for name, *argv in CHECKED:
            run = playbook("playbooks/" + name, "--check", "--diff", *argv, *RATE_CAP)
            assert run.rc == 0 and not run.failures(), run.explain()
            assert _snapshot() == drifted, "%s --check changed the platform\n%s" % (name, run.explain())
    finally:
        repair = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert repair.changed() > 0 and web in _snapshot()[0], repair.explain()


def test_bad_requests_fail_before_anything_changes(deployed):
    where = placement()
    iid = sorted(i for i in where if i.startswith("web"))[0]
    (source,) = where[iid]
    target = other_host([source])
    before = _snapshot()
    cases = [
        (["instance=nosuch", "to=" + target], ["instance nosuch runs on no module host"]),
        (["instance=" + iid, "to=mh9"], ["to 'mh9' is not a module host"]),
        (["instance=" + iid, "to=" + source], ["already runs on %s" % source]),
        (["instance=" + iid], ["migrate-module needs -e instance=<instance id> -e to=<module host>"]),
    ]
    for extra, words in cases:
        argv = [a for e in extra for a in ("-e", e)]
        run = playbook("playbooks/migrate-module.yml", *argv)
        assert run.rc != 0, run.explain()
        for word in words:
            assert word in run.raw, run.explain()
    assert _snapshot() == before
    rc, result = module(target, "module_host_maintenance", state="cordoned", reason="test")
    assert rc == 0 and result["maintenance"]["state"] == "cordoned", result
    rc, again = module(target, "module_host_maintenance", state="cordoned", reason="test")
    assert rc == 0 and again["changed"] is False, again
    before = _snapshot()
    run = playbook("playbooks/migrate-module.yml", "-e", "instance=" + iid, "-e", "to=" + target)
    assert run.rc != 0 and "is marked cordoned on the platform" in run.raw, run.explain()
    drain = playbook("playbooks/drain-host.yml", "-e", "hosts=mh7")
    assert drain.rc != 0 and "mh7 is not a module host" in drain.raw, drain.explain()
    assert _snapshot() == before
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + target))
    assert mark(target) is None


# inside the switch's bundle: the run dies with the new copy made and the switch perhaps moved, and
# the next run resumes the move (never back to the old copy, the barrier's markers sent again).
# Kills inside the install and inside the old copy's removal converge the same way (one run each,
# 2026-12-05; docs/operations.md); the sweep over every task is a benchmark's, not a test's.
KILL_POINTS = [
    "The switch's chain flows, one atomic bundle (flows_during, ",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_migration_killed_at_any_step_leaves_traffic_flowing_and_the_next_run_converges(deployed, point):
    where = placement()
    # web's last kernel instance (the shaper): its new copy holds until the markers come (a Click
    # step keeps no order barrier)
    iid = sorted(i for i in where if i.startswith("web") and kind_of(i, where[i][0]) == "kernel")[-1]
    (source,) = where[iid]
    target = other_host([source])
    killed_at("playbooks/migrate-module.yml", point, "-e", "instance=" + iid, "-e", "to=" + target, "-e", "verify=false")
    probe_clean()                   # traffic flows on the old path or the new one
    rerun = ok(playbook("playbooks/migrate-module.yml", "-e", "instance=" + iid, "-e", "to=" + target, *RATE_CAP)) \
        if placement().get(iid) != [target] else None
    assert placement()[iid] == [target], "not converged: %s" % placement()[iid]
    if rerun is not None:
        # what the resumed move cost is reported, and small: the known gap of docs/operations.md
        # (a burst of 8 or 159 lost in 1 run of 7, while host bridges took their final flows)
        for row in moves_of(rerun):
            assert row["probed"] and row["lost"] is not None and row["order"] == "marker", json.dumps(row)
            assert row["lost"] + row["reordered"] <= row["sent"] // 100, json.dumps(row)
            assert row["held_ms"] < 1000, "the resumed move's new copy held the chain's traffic: %s" % json.dumps(row)
    deploy = ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    assert deploy.changed() == 0, "an orphan instance, flow or domain was left: %s" % deploy.explain()
