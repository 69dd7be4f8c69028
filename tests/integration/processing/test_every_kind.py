# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One module host runs an instance of every kind at once (kernel, process, Click, VM under TCG);
traffic crosses all four in series, both ways; module_host_info reports them with live
counters; a Click binary that is not there fails plainly; a black box on switch ports is
health-checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import module  # noqa: E402  pylint: disable=wrong-import-position
from traffic import exchange, first_reply, ping, steer_chain, unsteer  # noqa: E402  pylint: disable=wrong-import-position

STATE = "/var/lib/flowstream-lab"
WIRE_IMAGE = {"kernel": STATE + "/images/wire/vmlinuz", "initrd": STATE + "/images/wire/initrd.img", "cmdline": "console=ttyS0"}
KINDS = {
    "ek": dict(kind="kernel", type="wire", vlans={"left": 301, "right": 302}),
    "ep": dict(kind="process", type="monitor", vlans={"left": 303, "right": 304}),
    "ec": dict(kind="click", type="wire", vlans={"left": 307, "right": 308}),
    "ev": dict(kind="vm", type="wire", vlans={"left": 305, "right": 306}, vm={"image": WIRE_IMAGE, "memory": 96, "vcpus": 1}),
}


def ok(result):
    rc, res = result
    assert rc == 0 and not res.get("failed"), json.dumps(res, indent=1)[:4000]
    return res


@pytest.fixture(scope="module")
def every_kind(running_lab):
    for inst, args in KINDS.items():
        ok(module("mh3", "processing_module", instance=inst, state="absent"))
        ok(module("mh3", "processing_module", instance=inst, chain="all", step=inst, **args))
    yield
    unsteer()
    for inst in KINDS:
        ok(module("mh3", "processing_module", instance=inst, state="absent"))


def test_every_kind_at_once_in_series_with_live_counters(every_kind):
    hops = [("fsl-mh3-tr", KINDS[i]["vlans"]["left"], KINDS[i]["vlans"]["right"]) for i in ("ek", "ep", "ec", "ev")]
    steer_chain(hops)
    first_reply(within=60)  # the guest boots under TCG (about 7 s to forwarding)
    assert ping(5) == 5
    assert exchange([(40101, 8001), (40102, 8002)], 300, rate=1000) == {8001: 300, 8002: 300}
    rc, info = module("mh3", "module_host_info", flows=True, capacity={"cpu": 1, "memory": 1024})
    assert rc == 0
    instances = info["instances"]
    assert {i: instances[i]["kind"] for i in KINDS} == {"ek": "kernel", "ep": "process", "ec": "click", "ev": "vm"}
    assert instances["ec"]["click"]["packets_in"] >= 610 and instances["ec"]["click"]["packets_out"] >= 610, instances["ec"]
    for inst in KINDS:
        legs = instances[inst]["legs"]
        assert instances[inst]["state"] == "running", (inst, instances[inst])
        # live counters: both legs carried the 600 datagrams one way and the echo replies back
        assert legs["left"]["tx_packets"] >= 600 and legs["right"]["rx_packets"] >= 600, (inst, legs)
        assert legs["right"]["tx_packets"] >= 5 and legs["left"]["rx_packets"] >= 5, (inst, legs)
    time.sleep(1.2)
    rc, info = module("mh3", "module_host_info", flows=True, capacity={"cpu": 1, "memory": 1024})
    counted = {f["dport"]: f["packets"] for f in info["instances"]["ep"]["flows"] if f["proto"] == 17}
    assert counted == {8001: 300, 8002: 300}
    # reservations: the guest's 96 MiB and 1 vCPU, the kernel and Click wires' 16 MiB, the monitor's 32 MiB
    assert info["capacity"]["reserved"] == {"cpu": 1.2, "memory": 160.0}, info["capacity"]
    # a re-run of every instance changes nothing
    for inst, args in KINDS.items():
        assert ok(module("mh3", "processing_module", instance=inst, chain="all", step=inst, **args))["changed"] is False


def test_click_without_its_binary_fails_plainly_and_starts_nothing(running_lab):
    rc, res = module("mh2", "processing_module", instance="ck1", kind="click", type="wire", vlans={"left": 311, "right": 312},
                     click_binary="/opt/flowstream/no-click/bin/click")
    assert rc != 0 and res["field"] == "kind"
    assert "click binary" in res["msg"] and "not packaged for Debian 12" in res["msg"] and "ck1" in res["msg"]
    rc, info = module("mh2", "module_host_info")
    assert "ck1" not in info["instances"]


@pytest.fixture
def appliance(running_lab):
    """The lab's black box bb1, which lab-up stands in: a namespace bridging two switch ports."""
    ports = ("fsl-bb1-l", "fsl-bb1-r")
    for port in ports:
        on = subprocess.run(["ovs-vsctl", "port-to-br", port], capture_output=True, text=True, check=False).stdout.strip()
        assert on == "fsl-sw", "lab-up did not stand the black box bb1 in (%s is on %r)" % (port, on)
    yield ports
    unsteer()
    for port in ports:      # the test takes one side down
        subprocess.run(["ip", "link", "set", port, "up"], check=True)


def test_blackbox_is_health_checked_and_carries_traffic(appliance):
    left, right = appliance
    args = dict(name="bb1", switch="fsl-sw", ports={"left": left, "right": right})
    rc, res = module("sw1", "blackbox_info", **args)
    assert rc == 0 and res["blackbox"]["healthy"], res
    # steer source -> box -> sink through the switch ports (no VLANs: the box is an access device)
    flows = ("priority=100,in_port=fsl-up-src,actions=output:%s\npriority=100,in_port=%s,actions=output:fsl-up-sink\n"
             "priority=100,in_port=fsl-up-sink,actions=output:%s\npriority=100,in_port=%s,actions=output:fsl-up-src\n"
             % (left, right, right, left))
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", "fsl-sw", "-"], text=True, check=True,
                   input="".join("cookie=0x5e57000000000bb1," + f + "\n" for f in flows.strip().splitlines()))
    first_reply(within=10)  # the box's bridge floods the first ARP; on a loaded machine that can take a second
    assert ping(3) == 3
    rc, res = module("sw1", "blackbox_info", **args)
    assert res["blackbox"]["ports"]["left"]["tx_packets"] >= 3
    # the box loses link on one side: reported unhealthy, and failed on request
    subprocess.run(["ip", "link", "set", right, "down"], check=True)
    rc, res = module("sw1", "blackbox_info", **args)
    assert rc == 0 and not res["blackbox"]["healthy"] and "has no link" in " ".join(res["blackbox"]["problems"])
    rc, res = module("sw1", "blackbox_info", fail_unhealthy=True, **args)
    assert rc != 0 and "bb1 is not healthy" in res["msg"]
    missing = dict(args)
    missing["ports"] = {"left": left, "right": "fsl-nope"}
    rc, res = module("sw1", "blackbox_info", **missing)
    assert "does not exist on the switch" in " ".join(res["blackbox"]["problems"])
