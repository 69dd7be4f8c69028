# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failure detection and cold failover on the lab, under probe traffic: BFD up on both ends of
every trunk after deploy-chain; a failover with nothing failed changes nothing; with the
failover rulebook running (ansible-rulebook for real, its trunk_watch event source), a host that
dies (every process of it killed) is fenced on the switch and its chains restored on the rest and
the spare, verified, without anyone running a playbook, and powered off (its power driver); it
comes back still fenced, its stale copies are removed, uncordon-host refuses until then and
unfences it after; two hosts whose trunks are cut while they answer are isolated and fenced, their
chains held whole when there is no room (a fail-open chain bypassing its steps), restored by a
failover killed half-way and the one after it; a restarted switch gets every chain back; a warm
spare takes a cut trunk's flows with no controller action."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import BIN, TOP, _env, killed_at, module, playbook  # noqa: E402  pylint: disable=wrong-import-position
from awx_jobs import launch  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position

# each chain's probes at most 2 kpps, the probe through web 3 kpps: inside what the two-CPU lab
# carries beside the operations (docs/operations.md#known-gaps)
RATE_CAP = ["-e", "flowstream_verify_max_rate=2000"]
WEB_RATE = 3000
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
    ofport = lines[at].split("(", 1)[0].strip()
    return config, [line for line in drops.splitlines() if "actions=drop" in line and "in_port=%s " % ofport in line], mark


def restored(run):
    """The failover's rows, one per chain it restored."""
    res = run.task_results("Every chain restored, and what the outage cost it").get("localhost", {})
    return res.get("ansible_facts", {}).get("flowstream_failover", [])


def verified(run):
    return bool(run.task_results("The probe's figures, chain by chain").get("localhost"))


def verified_chains(run):
    """The chains the run's verify step proved."""
    verdicts = run.task_results("Verdicts, chain by chain").get("localhost", {}).get("ansible_facts", {}).get("flowstream_verdicts", {})
    return [c["chain"] for c in verdicts.get("chains", []) if c["ok"]]


def whole_again():
    """Whatever an earlier run left on a lab that running_lab has just brought up (repaired):
    trunks up; when a host is not healthy (fenced, failed), stale copies on fenced hosts removed;
    fences and marks gone."""
    for host in ALL_HOSTS:
        subprocess.run(["ip", "link", "set", TRUNK % host, "up"], check=False)
    if any(v["status"] != "healthy" for v in look()["hosts"].values()):
        ok(playbook("playbooks/failover.yml", "-e", "flowstream_skip_verify=true"))
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(ALL_HOSTS)))


@pytest.fixture(scope="module")
def deployed(running_lab):
    whole_again()
    # the chains are proven by the failovers' own verify steps below
    ok(playbook("playbooks/deploy-chain.yml", "-e", "flowstream_skip_verify=true"))
    yield
    for host in ALL_HOSTS:
        subprocess.run(["ip", "link", "set", TRUNK % host, "up"], check=False)
    # failovers left instances on the spare and elsewhere, fences and marks (nothing moves back by
    # itself): the lab goes with all of it, and the next module (test_operations) starts from a
    # lab of its own, its chains placed from nothing
    ok(playbook("playbooks/lab-down.yml"))


def test_bfd_runs_on_both_ends_of_every_trunk_and_nothing_failed_changes_nothing(deployed):
    seen = look()
    assert all(v["status"] == "healthy" for v in seen["hosts"].values()), json.dumps(seen["hosts"])
    for host, verdict in seen["hosts"].items():
        bfd = verdict["trunk"]["bfd"]
        assert (bfd["enabled"], bfd["forwarding"], bfd["min_rx"], bfd["detect_ms"]) == (True, True, 100, 300), (host, bfd)
        rc, report = module(host, "module_host_info", sample_seconds=0.1)
        assert rc == 0 and report["trunk"]["bfd"]["forwarding"] is True and report["trunk"]["port"] == "trunk0", report
    run = ok(launch("failover", flowstream_verify_max_rate=2000))       # the AWX job template (ansible-runner)
    assert run.changed() == 0, run.explain()
    said = run.task_results("What the look found").get("localhost", {})
    assert said.get("msg", "").startswith("nothing failed"), said


class Rulebook:
    """extensions/eda/rulebooks/failover.yml under ansible-rulebook, its output in a file."""

    def __init__(self, tmp_path):
        self.log = tmp_path / "rulebook.log"
        varsfile = tmp_path / "vars.yml"
        varsfile.write_text("flowstream_inventory: %s\nflowstream_failover_grace: 2\nflowstream_verify_max_rate: 5000\n"
                            % (TOP / "inventory" / "lab"))
        argv = [str(BIN / "ansible-rulebook"), "-i", str(TOP / "inventory" / "lab"), "--rulebook",
                str(TOP / "extensions" / "eda" / "rulebooks" / "failover.yml"), "--vars", str(varsfile), "-v"]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=TOP, env=_env({"ANSIBLE_STDOUT_CALLBACK": "default"}), stdout=out,
                                         stderr=subprocess.STDOUT)

    def text(self):
        return self.log.read_text(errors="replace")

    def wait_for(self, words, seconds):
        deadline = time.monotonic() + seconds
        while words not in self.text():
            assert self.proc.poll() is None, "ansible-rulebook ended (rc %s):\n%s" % (self.proc.returncode, self.text()[-6000:])
            assert time.monotonic() < deadline, "no %r in %d s:\n%s" % (words, seconds, self.text()[-6000:])
            time.sleep(0.5)
        return time.monotonic()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_a_dead_host_is_failed_over_by_the_rulebook_and_stays_out_until_uncordoned(deployed, tmp_path):
    where = LAB.placement()
    (dead,) = where["ins14a0a"]  # a process instance: its supervisor dies with the host
    lost = sorted(i for i, hosts in where.items() if dead in hosts)
    rulebook = Rulebook(tmp_path)
    try:
        rulebook.wait_for("Waiting for events", 120)
        time.sleep(2)  # the source's first looks: every host healthy, nothing said, nothing run
        assert "-> suspect" not in rulebook.text() and "PLAY [" not in rulebook.text(), rulebook.text()[-3000:]
        killed = time.monotonic()
        assert LAB.kill_all(dead)
        # the event source's verdict, the rule, the playbook: nobody runs anything by hand
        done = rulebook.wait_for("PLAY [Verify the chains with traffic]", 300)
        rulebook.wait_for("The probe's figures, chain by chain", 120)
        ended = rulebook.wait_for("PLAY RECAP", 60)
    finally:
        rulebook.stop()
    text = rulebook.text()
    assert "failed now: %s" % dead in text, text[-6000:]
    assert "%s powered off" % dead in text, text[-6000:]      # power fencing, the lab's driver, after the restore
    assert not re.search(r"(failed|unreachable)=[1-9]", text), text[-8000:]
    print("\nrulebook: failure -> chains restored %.1f s, -> verified %.1f s" % (done - killed, ended - killed))
    assert done - killed < 120, text[-6000:]
    table = text[text.index("The failover, chain by chain"):text.index("PLAY [Verify the chains with traffic]")]
    assert all(i in table for i in lost), table
    after = LAB.placement(skip=(dead,))
    assert all(len(after.get(i, [])) == 1 for i in lost), (after, lost)
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


def probe_web(seconds, during=None, rate=WEB_RATE):
    """The probe through the web chain's ports (32 flows) for ``seconds``, ``during(t)`` called
    meanwhile; returns the totals."""
    probe = subprocess.Popen([sys.executable, str(TOP / "plugins" / "module_utils" / "_probe.py"), "run", "--source-netns", "fsl-source",
                              "--sink-netns", "fsl-sink", "--src", "198.18.1.1", "--dst", "198.18.1.2", "--flows", "32",
                              "--dport", "8000", "--vary", "dport", "--sport", "40000", "--rate", str(rate), "--duration", str(seconds),
                              "--json"], stdout=subprocess.PIPE, text=True)
    try:
        if during is not None:
            during()
    finally:
        out, _err = probe.communicate(timeout=60 + seconds)
    return json.loads(out)["totals"]


def lab_chains(tmp_path, name, change):
    """The lab's chains, ``change(chains)`` applied, as an extra-vars file for -e @file."""
    chains = yaml.safe_load((TOP / "inventory" / "lab" / "group_vars" / "all" / "chains.yml").read_text())["flowstream_chains"]
    change(chains)
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"flowstream_chains": chains}))
    return path


def test_two_hosts_cut_at_once_capacity_short_then_a_failover_killed_half_way(deployed, tmp_path):
    """Two hosts' trunks are cut at once (each host answers: isolated). The first failover finds
    no room (every host's capacity squeezed to nothing): each chain that lost an instance is held
    whole - web, fail_mode open, goes from uplink to uplink past its steps, the others are
    dropped - and named, and nothing moves. The next failover, with room, is killed inside the
    switch's bundle; the one after it finishes the restore: both hosts emptied, every instance
    once, the fences held until uncordoned."""
    where = LAB.placement()
    first = next(h for h in HOSTS if any(h in hosts for i, hosts in where.items() if i.startswith("web4b5")))
    second = max((h for h in HOSTS if h != first), key=lambda h: sum(h in hosts for hosts in where.values()))
    cut = (first, second)
    moved = sorted(i for i, hosts in where.items() if set(cut) & set(hosts))
    # an instance id starts with 3 letters of its chain's name (docs/service-chains.md)
    held = sorted({c for c in ("web", "inspect", "guest") for i in moved if i.startswith(c[:3])})

    def priorities(chains):
        for chain in chains:
            chain["restore_priority"] = {"web": 900, "inspect": 500}.get(chain["name"], 100)
        next(c for c in chains if c["name"] == "web")["fail_mode"] = "open"
    described = ["-e", "@%s" % lab_chains(tmp_path, "priorities.yml", priorities)]
    no_room = ["-e", '{"flowstream_capacity": {"cpu": 0.01, "memory": 1}}']
    for host in cut:
        subprocess.run(["ip", "link", "set", TRUNK % host, "down"], check=True)
    try:
        short = ok(playbook("playbooks/failover.yml", *described, "-e", "grace=1", *no_room, *RATE_CAP))
        said = short.task_results("The chains the hosts left cannot hold (not restored; restored whole or not at all)")["localhost"]
        assert sorted(r["item"]["key"] for r in said["results"]) == held, json.dumps(said)[:3000]
        table = short.task_results("The failover, chain by chain")["localhost"]["msg"]
        for chain in held:
            assert any(line.startswith("%-8s NOT RESTORED" % chain) and "capacity short" in line for line in table), table
        assert not set(verified_chains(short)) & set(held), short.explain()    # a held chain is not verified
        assert LAB.placement() == where      # nothing of a held chain moved, nothing was removed
        # web is held open: its traffic goes past its steps, nothing lost
        bypass = probe_web(3, rate=2000)
        assert bypass["sent"] >= 5000 and bypass["lost"] == 0, bypass
        # room again (the squeeze gone): a failover killed inside the switch's bundle, then the
        # one that finishes (every chain is verified by the next test's failover)
        killed_at("playbooks/failover.yml", "The switch's chain flows, one atomic bundle (", *described, "-e", "verify=false")
        run = ok(playbook("playbooks/failover.yml", *described, "-e", "flowstream_skip_verify=true", *RATE_CAP))
    finally:
        for host in cut:
            subprocess.run(["ip", "link", "set", TRUNK % host, "up"], check=True)
    rows = restored(run)
    assert not any(r["held"] for r in rows), json.dumps(rows)
    after = LAB.placement()
    assert sorted(set(after) & set(moved)) == moved, after
    assert not any(set(cut) & set(hosts) for hosts in after.values()) and all(len(h) == 1 for h in after.values()), after
    # the links are up again, and the hosts still carry nothing: the fence holds until uncordoned
    for host in cut:
        config, drops, mark = switch_port(host)
        assert mark == "fenced" and len(drops) == 1 and look()["hosts"][host]["status"] == "fenced", (host, config, drops)
    ok(playbook("playbooks/uncordon-host.yml", "-e", "hosts=" + ",".join(cut)))
    assert all(switch_port(h)[2] is None and healthy_again(h) == "healthy" for h in cut)


def test_a_switch_that_restarted_gets_every_chain_back(deployed):
    """ovs-vswitchd of the switch restarted: its ports and trunks come back from OVSDB, its flow
    table does not. Every trunk's BFD starts again from down - the switch's fault, not the hosts'."""
    with open("/var/run/openvswitch/ovs-vswitchd.pid") as f:
        pid = int(f.read())
    subprocess.run(["ovs-appctl", "-t", "ovs-vswitchd", "exit"], check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid):  # ovs-ctl start says "already running" until it has gone
        assert time.monotonic() < deadline, "ovs-vswitchd %d did not exit" % pid
        time.sleep(0.05)
    subprocess.run(["/usr/share/openvswitch/scripts/ovs-ctl", "--no-ovsdb-server", "start", "--system-id=random"],
                   check=True, capture_output=True)
    # the lab's own flows (ARP and the like between source and sink, cookie 0xf5a0...) are the
    # lab's to put back, as an operator's own flows are the operator's: lab-up does; the chains'
    # flows are the platform's
    ok(playbook("playbooks/lab-up.yml"))
    assert look()["chain_flows"] == 0
    # check mode on the drifted platform: exits 0, says what it would put back, changes nothing
    check = ok(playbook("playbooks/deploy-chain.yml", "--check", "--diff"))
    assert check.changed("sw1") > 0 and look()["chain_flows"] == 0, check.explain()
    run = ok(playbook("playbooks/failover.yml", "-e", "grace=3", *RATE_CAP))
    said = run.task_results("What the look found").get("localhost", {}).get("msg", "")
    assert "no chain flow on switch sw1" in said and "failed now" not in said, said
    lost = run.task_results("What the switches had lost").get("localhost", {}).get("results", [])
    assert [r["msg"].split(":")[0] for r in lost] == ["sw1"] and "no chain flow before" in lost[0]["msg"], lost
    assert verified(run), run.explain()
    after = look()
    assert after["chain_flows"] > 0 and after["fenced_hosts"] == [], json.dumps(after)
    assert all(healthy_again(h) == "healthy" for h in ALL_HOSTS)


def test_a_warm_spare_carries_a_cut_trunks_flows_with_no_controller_action(deployed, tmp_path):
    """Every step of the web chain asks for a warm spare (spare: warm): deploy-chain places one
    standby per step on the spare and sends each instance's flows through an OpenFlow
    fast-failover group. The trunk of the web chain's host is cut under the probe with nobody
    running anything: the switch moves the flows to the standbys by itself, and back when the
    link returns. (The figures over ten cuts, and a host killed - BFD's 300 ms - are
    bench/failover.py's.)"""
    def warm(chains):
        for step in next(c for c in chains if c["name"] == "web")["steps"]:
            step["spare"] = "warm"
    spares = lab_chains(tmp_path, "spares.yml", warm)
    ok(playbook("playbooks/deploy-chain.yml", "-e", "@%s" % spares, *RATE_CAP))   # verify folds a standby into its step
    again = ok(playbook("playbooks/deploy-chain.yml", "-e", "@%s" % spares, "-e", "flowstream_skip_verify=true"))
    assert again.changed() == 0, again.explain()
    where = LAB.placement()
    # the web chain's ids (web4b5<step><n>): steps 0-2 its own, 3-5 their standbys, apart from them on the spare
    primaries = {i: h for i, (h,) in where.items() if i.startswith("web4b5") and i[6] in "012"}
    standbys = {i: h for i, (h,) in where.items() if i.startswith("web4b5") and i[6] in "345"}
    assert len(primaries) == 4 and sorted(standbys) == ["web4b53a", "web4b54a", "web4b55a"], where
    # each standby apart from its step's instances (on the spare, unless the earlier failovers
    # left that step's instances there - nothing moves back by itself)
    for standby, host in standbys.items():
        step = str(int(standby[6]) - 3)
        assert host not in {h for i, h in primaries.items() if i[6] == step}, (standby, where)
    groups = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", "fsl-sw"], capture_output=True, text=True,
                            check=True).stdout
    assert groups.count("type=ff") == 2 * len(primaries), groups   # one per instance and leg

    cut = primaries["web4b50a"]

    def cut_for_a_while():
        try:
            time.sleep(2.5)
            subprocess.run(["ip", "link", "set", TRUNK % cut, "down"], check=True)
            time.sleep(2.5)
        finally:
            subprocess.run(["ip", "link", "set", TRUNK % cut, "up"], check=True)
    totals = probe_web(7, during=cut_for_a_while)
    print("\nwarm spare, %s's trunk cut for 2.5 s and back: %s" % (cut, {k: totals[k] for k in (
        "sent", "lost", "reordered", "duplicated", "max_gap_ms")}))
    # the cut hosts some instance of every flow: without the standbys, half of the run would be lost
    assert totals["sent"] >= 6 * WEB_RATE and totals["lost"] <= totals["sent"] // 100, totals
    assert totals["duplicated"] == 0, totals
