# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Click instances for real, on the lab: the Click that set-up built runs a chain of four Click
steps on two module hosts (firewall -> quick filter -> monitor -> shaper) carrying the probe's
10 kpps with nothing lost, reordered or duplicated; counters move and are read over the
instances' control sockets; a running instance takes new rules through its handlers and a new
element graph through hotconfig, under traffic, without a restart and without losing a frame;
a configuration Click refuses is refused with Click's own words and the host unchanged."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, module, playbook  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import LabHosts  # noqa: E402  pylint: disable=wrong-import-position
from traffic import exchange, steer_chain, unsteer  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(TOP / "plugins" / "module_utils"))
import _probe  # noqa: E402  pylint: disable=wrong-import-position,import-error

LAB = LabHosts(("mh1", "mh2", "mh3", "spare1"))
STEPS = {  # instance: (host, type, params, (left, right) VLANs)
    "ckf": ("mh2", "firewall", {"rules": ["ip saddr 198.18.1.99 drop", "udp dport 8063 counter drop"]}, (321, 322)),
    "ckc": ("mh3", "classify", {"match": ["udp && dst port 7000"], "action": "count"}, (323, 324)),
    "ckm": ("mh2", "monitor", {}, (325, 326)),
    "cks": ("mh3", "shaper", {"rate": "400mbit", "burst": "256kb"}, (327, 328)),
}
PROBE = {"source_netns": "fsl-source", "sink_netns": "fsl-sink", "src": "198.18.1.1", "dst": "198.18.1.2", "flows": 16,
         "rate": 10000, "duration": 3, "settle": 0.5}


def ok(result):
    rc, res = result
    assert rc == 0 and not res.get("failed"), json.dumps(res, indent=1)[:4000]
    return res


def ok_run(run):
    assert run.rc == 0 and not run.failures(), run.explain()
    return run


def ensure(instance, **changes):
    host, type_name, params, vlans = STEPS[instance]
    args = dict(instance=instance, kind="click", type=type_name, params=params, vlans={"left": vlans[0], "right": vlans[1]})
    args.update(changes)
    return module(host, "processing_module", **args)


def report(instance):
    return ok(module(STEPS[instance][0], "module_host_info", sample_seconds=0.1))["instances"][instance]


def legs(instance):
    """Frames the host bridge gave the instance and took back from it, read now from ovs-vswitchd."""
    host = STEPS[instance][0]
    numbers = {}
    for line in LAB.run(host, "ovs-ofctl", "-O", "OpenFlow14", "show", "fs-host").splitlines():
        if "(fs-%s-" % instance in line:
            numbers[line.strip().split("(")[0]] = line
    assert len(numbers) == 2, numbers
    given = taken = 0
    for block in LAB.run(host, "ovs-ofctl", "-O", "OpenFlow14", "dump-ports", "fs-host").split("port ")[1:]:
        if block.strip().split(":")[0] in numbers:
            taken += int(block.split("rx pkts=")[1].split(",")[0])
            given += int(block.split("tx pkts=")[1].split(",")[0])
    return {"given": given, "taken": taken}


def snapshot(host):
    """What a host has made: instance directories, run directories, namespaces, bridge ports."""
    return [LAB.run(host, *argv) for argv in (("ls", "/var/lib/flowstream/instances", "/run/flowstream"), ("ip", "netns", "list"),
                                              ("ovs-vsctl", "list-ports", "fs-host"))]


def kernel_drops(click):
    """Frames an instance's packet sockets dropped (full while the machine was busy)."""
    return sum(v.get("kernel_drops", 0) for v in click["elements"].values())


def dropped_by(click):
    """Frames an instance dropped: by a rule (the firewall's denied_* counters) or by its sockets."""
    return sum(v.get("count", 0) for n, v in click["elements"].items() if n.startswith("denied_")) + kernel_drops(click)


def child_pid(instance):
    return report(instance)["process"]["child_pid"]


def probe(**changes):
    totals = _probe.run_probe(dict(PROBE, **changes))["totals"]
    return {k: totals[k] for k in ("sent", "received", "lost", "reordered", "duplicated")}


@pytest.fixture(scope="module")
def click_chain(running_lab):
    for instance, (host, *_rest) in STEPS.items():
        ok(module(host, "processing_module", instance=instance, state="absent"))
    for instance in STEPS:
        ok(ensure(instance))
    steer_chain([("fsl-%s-tr" % STEPS[i][0], STEPS[i][3][0], STEPS[i][3][1]) for i in STEPS])
    yield
    unsteer()
    for instance, (host, *_rest) in STEPS.items():
        ok(module(host, "processing_module", instance=instance, state="absent"))


def test_a_chain_of_click_steps_carries_10kpps_with_nothing_lost_and_counters_move(click_chain):
    before = {i: report(i)["click"] for i in STEPS}
    figures = probe()
    print("probe through four Click steps, 16 flows at 10 kpps for 3 s: %s" % figures)
    assert figures["sent"] == 30000 and figures["lost"] == 0 and figures["reordered"] == 0 and figures["duplicated"] == 0, figures
    after = {i: report(i)["click"] for i in STEPS}
    for instance in STEPS:
        assert after[instance]["packets_in"] - before[instance]["packets_in"] >= 30000, (instance, before[instance], after[instance])
        assert after[instance]["packets_out"] - before[instance]["packets_out"] >= 30000, (instance, after[instance])
    assert after["ckf"]["elements"]["denied_fwd"]["count"] == before["ckf"]["elements"]["denied_fwd"]["count"]
    assert after["ckc"]["elements"]["hits_fwd"]["count"] == before["ckc"]["elements"]["hits_fwd"]["count"]
    # the closed port is closed, and the firewall counts what it dropped; the quick filter counts its match
    assert exchange([(40101, 8063), (40102, 7000)], 200, rate=2000) == {8063: 0, 7000: 200}
    ckf, ckc = report("ckf")["click"], report("ckc")["click"]
    assert ckf["elements"]["denied_fwd"]["count"] - after["ckf"]["elements"]["denied_fwd"]["count"] == 200, ckf
    assert ckc["elements"]["hits_fwd"]["count"] - after["ckc"]["elements"]["hits_fwd"]["count"] == 200, ckc
    # the kernel sends nothing of its own out of the legs (IPv6 off in the instance's namespace):
    # what leaves a leg is what Click sent, which the next test counts frame by frame
    for instance, (host, *_rest) in STEPS.items():
        assert LAB.run(host, "ip", "netns", "exec", "fs-" + instance, "sysctl", "-n", "net.ipv6.conf.left.disable_ipv6",
                       "net.ipv6.conf.right.disable_ipv6").split() == ["1", "1"], instance
    # a second run of every step changes nothing
    for instance in STEPS:
        assert ok(ensure(instance))["changed"] is False


def test_running_instances_take_new_configurations_under_traffic_without_a_restart_and_every_frame_accounted(click_chain):
    pids = {i: child_pid(i) for i in ("ckf", "ckc")}
    boundary = {i: legs(i) for i in ("ckf", "ckc")}
    counters_before = {i: report(i)["click"] for i in ("ckf", "ckc")}
    counted = report("ckc")["click"]["packets_in"]
    results = {}

    def change():
        time.sleep(1.5)
        results["ckf"] = ok(ensure("ckf", params={"rules": ["ip saddr 198.18.1.98 drop", "udp dport 8062 drop"]}))
        results["ckc"] = ok(ensure("ckc", params={"match": ["udp && dst port 7000"], "action": "mark", "dscp": 8}))
    changer = threading.Thread(target=change)
    changer.start()
    figures = probe(duration=6)
    changer.join()
    print("probe at 10 kpps while ckf took new rules and ckc a new element graph: %s; %s, %s"
          % (figures, results["ckf"]["reconfigured"], results["ckc"]["reconfigured"]))
    assert results["ckf"]["reconfigured"] == {"how": "handlers", "elements": ["fw_fwd", "fw_rev"]}
    assert results["ckc"]["reconfigured"]["how"] == "hotconfig"
    assert {i: child_pid(i) for i in pids} == pids  # no restart
    # every frame the host bridge gave each instance came back out of it once, or was dropped by
    # a rule or by its packet socket (full while the 2-core machine was busy elsewhere), across
    # the change (upstream Click's hotconfig lost, besides, what had reached the old router's
    # sockets while the new configuration was parsed: ~140 frames at 10 kpps here, counted
    # nowhere; the patch set-up applies keeps them)
    for instance in ("ckf", "ckc"):
        now, seen = legs(instance), report(instance)["click"]
        lost_inside = (now["given"] - boundary[instance]["given"]) - (now["taken"] - boundary[instance]["taken"])
        explained = dropped_by(seen) - dropped_by(counters_before[instance])
        print("%s: given %d, taken back %d, dropped by rule or socket %d" % (
            instance, now["given"] - boundary[instance]["given"], now["taken"] - boundary[instance]["taken"], explained))
        # the two reads of the legs are not one instant: a frame or two may be inside the instance
        # at either read (the upstream hotconfig lost ~140 here)
        assert abs(lost_inside - explained) <= 3, (instance, boundary[instance], now, counters_before[instance], seen)
        # and the instance's own counts say the same across the swap: the new router counted on
        # from what the old one had counted up to the swap (the patch again), not from zero. Not
        # to the frame: on the lab a swap with no traffic at all adds 1 to both counts (unexplained
        # so far; a restarted-from-zero router would be ~30000 short)
        read_in = seen["packets_in"] - counters_before[instance]["packets_in"]
        socket_drops = kernel_drops(seen) - kernel_drops(counters_before[instance])
        sent_out = seen["packets_out"] - counters_before[instance]["packets_out"]
        assert abs(read_in + socket_drops - (now["given"] - boundary[instance]["given"])) <= 5, (instance, read_in, socket_drops)
        assert abs(sent_out - (now["taken"] - boundary[instance]["taken"])) <= 5, (instance, sent_out)
    assert figures["reordered"] == 0 and figures["duplicated"] == 0, figures
    assert report("ckc")["click"]["packets_in"] - counted >= figures["received"]  # every frame received passed ckc
    assert exchange([(40101, 8062), (40102, 8063)], 100, rate=2000) == {8062: 0, 8063: 100}


def test_a_configuration_click_refuses_changes_nothing(click_chain):
    config = LAB.run("mh2", "cat", "/var/lib/flowstream/instances/ckf/config.click")
    pid = child_pid("ckf")
    rc, res = ensure("ckf", params={"rules": ["deny srcx 198.18.1.1"]})
    assert rc != 0 and res["field"] == "params.rules[0]"
    assert "instance ckf" in res["msg"] and "Click refuses the configuration: ckf.click:" in res["msg"], res["msg"]
    assert "While configuring 'fw_fwd :: IPFilter'" in res["msg"] and "srcx" in res["msg"]
    assert LAB.run("mh2", "cat", "/var/lib/flowstream/instances/ckf/config.click") == config and child_pid("ckf") == pid
    # a new instance with an operator's configuration that Click refuses: nothing is made
    before = snapshot("mh2")
    own = {"kinds": ["click"], "click": {"config": "in :: FromDevice(left);\nin -> Queue -> Bogus -> ToDevice(right);\n"}}
    rc, res = module("mh2", "processing_module", instance="ckbad", kind="click", type="bogus", catalogue={"bogus": own},
                     vlans={"left": 329, "right": 330})
    assert rc != 0 and res["field"] == "click.config" and "ckbad.click:2: undeclared element 'Bogus'" in res["msg"], res
    assert snapshot("mh2") == before and "ckbad" not in before
    assert "ckbad" not in ok(module("mh2", "module_host_info"))["instances"]
    assert probe(duration=1)["lost"] == 0


def test_the_click_role_copies_the_controllers_build_to_a_module_host_once(running_lab, tmp_path):
    prefix = "/opt/flowstream-ckrole/click"
    play = tmp_path / "click.yml"
    play.write_text("- hosts: mh1\n  gather_facts: false\n  roles:\n    - role: flowstream.platform.click\n"
                    "      vars: {flowstream_click_prefix: %s}\n" % prefix)
    LAB.run("mh1", "rm", "-rf", os.path.dirname(prefix))
    try:
        first = ok_run(playbook(str(play)))
        assert first.changed() > 0
        assert LAB.run("mh1", prefix + "/bin/click", "-e", "InfiniteSource(LIMIT 4, STOP true) -> c :: Counter -> Discard;",
                       "-h", "c.count").split() == ["4"]
        with open("/opt/flowstream/click/.flowstream-click", encoding="utf-8") as handle:
            assert LAB.run("mh1", "cat", prefix + "/.flowstream-click") == handle.read()
        assert ok_run(playbook(str(play))).changed() == 0
    finally:
        LAB.run("mh1", "rm", "-rf", os.path.dirname(prefix))
