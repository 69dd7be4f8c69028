# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_migrate for real: a wire guest moves from mh1 to mh2 while the probe's traffic crosses it.

The test brings up a lab of its own (prefix ``fsm``: two module hosts with libvirt, management
198.18.70.0/24, source 198.18.71.1 and sink 198.18.71.2, state in /var/lib/flowstream-lab-fsm),
installs the wire guest on mh1 with ``processing_module`` over SSH, steers the source's traffic
through it with switch flows of its own cookie, and runs ``flowstream.platform.vm_migrate`` on
the controller (through Ansible, as a task would) while the traffic probe sends. It checks that
bad requests and a destination without libvirtd change nothing, that the guest ends on mh2 and
no longer on mh1, that the switch flipped in the source's suspend event and the traffic crosses
mh2 afterwards, and that ``processing_module`` on mh2 converges the migrated domain without a
restart. It ends with the lab down.

bench/vm_migrate.py uses the helpers here (the same lab) for its measurements.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, adhoc  # noqa: E402  pylint: disable=wrong-import-position
from labhosts import crash_lines  # noqa: E402  pylint: disable=wrong-import-position
import private_lab  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(TOP / "plugins" / "module_utils"))
import _probe  # noqa: E402  pylint: disable=wrong-import-position,import-error

PREFIX = "fsm"
OCTET = 70
STATE = "/var/lib/flowstream-lab-fsm"
SWITCH = "fsm-sw"
TARGET = "unix:/var/run/openvswitch/fsm-sw.mgmt"
UPLINK_SRC = "fsm-up-src"
UPLINK_SINK = "fsm-up-sink"
HOSTS = {"mh1": {"uri": "qemu+tcp://198.18.70.11/system", "trunk": "fsm-mh1-tr", "vlans": {"left": 101, "right": 102}},
         "mh2": {"uri": "qemu+tcp://198.18.70.12/system", "trunk": "fsm-mh2-tr", "vlans": {"left": 201, "right": 202}}}
NO_LIBVIRT_URI = "qemu+tcp://198.18.70.1/system"   # the controller's own address: no libvirtd listens there
SOURCE_NS, SOURCE_IP = "fsm-source", "198.18.71.1"
SINK_NS, SINK_IP = "fsm-sink", "198.18.71.2"
COOKIE = "0xf5e0000000000001"
IMAGE = STATE + "/images/wire"
INSTANCE = "w1"
DOMAIN = "fs-w1"


def missing_prerequisites():
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("qemu-system-x86_64", "libvirtd", "virtlogd", "virsh", "ovs-vsctl", "ovs-ofctl", "busybox", "nsenter"):
        if not shutil.which(tool):
            return "needs %s (scripts/setup.sh installs it)" % tool
    try:
        import libvirt  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return "needs libvirt-python in the test's interpreter"
    return None


def sh(*argv, check=True, data=None, timeout=120):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=data, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s%s" % (" ".join(map(str, argv)), proc.returncode, proc.stderr, proc.stdout))
    return proc


# --- the lab ------------------------------------------------------------------------------------

def write_inventory(directory):
    return private_lab.write_inventory(directory, PREFIX, OCTET, hosts=("mh1", "mh2"), kinds=("vm", "process", "kernel"))


def del_flows():
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1" % COOKIE, check=False)


def lab_up(inv):
    del_flows()
    return private_lab.lab_up(inv)


def lab_down(inv):
    del_flows()
    private_lab.lab_down(inv)


def on_host(inv, host, plugin, check=False, **args):
    """A flowstream.platform module on ``host`` of this lab (``localhost``: the controller): (rc, result)."""
    run = adhoc(host, "flowstream.platform." + plugin, json.dumps(args), inventory=str(inv),
                extra=["--check"] if check else [])
    hosts = run.data["plays"][0]["tasks"][0]["hosts"] if run.data.get("plays") else {}
    return run.rc, hosts.get(host, {"msg": run.explain()})


def guest(inv, host, check=False):
    """processing_module for the wire guest on ``host`` with that host's VLANs: (rc, result)."""
    return on_host(inv, host, "processing_module", check=check, instance=INSTANCE, kind="vm", type="wire",
                   vlans=HOSTS[host]["vlans"], chain="migrate", step="0",
                   vm={"image": {"kernel": IMAGE + "/vmlinuz", "initrd": IMAGE + "/initrd.img", "cmdline": "console=ttyS0"},
                       "memory": 96, "vcpus": 1})


def via(host):
    """The flows that steer the source's traffic through the guest on ``host`` and back: source ->
    push VLAN(left) -> the host's trunk; VLAN(right) from the trunk -> pop -> sink; the reverse
    direction through right -> left (DESIGN.md §3)."""
    trunk, vlans = HOSTS[host]["trunk"], HOSTS[host]["vlans"]
    return ["priority=100,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (UPLINK_SRC, 4096 + vlans["left"], trunk),
            "priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (trunk, vlans["right"], UPLINK_SINK),
            "priority=99,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (UPLINK_SINK, 4096 + vlans["right"], trunk),
            "priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (trunk, vlans["left"], UPLINK_SRC)]


def set_flows(host):
    """The test's cookie holds exactly the flows through ``host`` (one bundle)."""
    text = "".join("cookie=%s,%s\n" % (COOKIE, line) for line in via(host))
    sh("ovs-ofctl", "-O", "OpenFlow14", "--bundle", "replace-flows", SWITCH, "-", data=text)


def flows_now():
    out = sh("ovs-ofctl", "-O", "OpenFlow14", "--names", "--no-stats", "dump-flows", SWITCH, "cookie=%s/-1" % COOKIE).stdout
    return sorted(line.strip() for line in out.splitlines() if "actions=" in line)


def domains(host):
    """{name: state} of the domains libvirt of ``host`` has."""
    out = sh("virsh", "-c", HOSTS[host]["uri"], "list", "--all").stdout
    return {parts[1]: " ".join(parts[2:]) for parts in (line.split() for line in out.splitlines()[2:]) if len(parts) >= 3}


def in_host(host, *argv):
    """argv inside a module host: its mount, UTS and network namespaces (its own Open vSwitch)."""
    return ["nsenter", "--mount=%s/ns/%s.mnt" % (STATE, host), "--uts=%s/ns/%s.uts" % (STATE, host),
            "--net=/run/netns/%s-%s" % (PREFIX, host)] + list(argv)


def console(host):
    """The guest's serial console log on ``host`` (libvirt starts it afresh when the guest arrives
    by migration): where a guest that crashed after the move says why (docs/vm-modules.md)."""
    try:
        with open("%s/hosts/%s/log/libvirt/qemu/%s.console.log" % (STATE, host, DOMAIN), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        return "(no console log: %s)" % exc


def ping(count=1, interval=0.2, wait=1):
    return sh("ip", "netns", "exec", SOURCE_NS, "busybox", "ping", "-q", "-c", count, "-i", interval, "-W", wait, SINK_IP,
              check=False, timeout=count * interval + wait + 10)


def wait_forwarding(limit=90):
    t0 = time.monotonic()
    while ping().returncode != 0:
        assert time.monotonic() - t0 < limit, "no traffic through the guest within %d s" % limit
    return time.monotonic() - t0


def migrate_args(src, dst, **over):
    args = {"instance": INSTANCE, "source_uri": HOSTS[src]["uri"], "destination_uri": HOSTS[dst]["uri"],
            "destination_vlans": HOSTS[dst]["vlans"], "switch": TARGET, "cookie": COOKIE, "flows": via(dst)}
    args.update(over)
    return args


class Probe(threading.Thread):
    """The traffic probe source -> sink in the background (run_probe, both ends)."""

    def __init__(self, rate, seconds, flows=16):
        super().__init__(daemon=True)
        self.cfg = {"source_netns": SOURCE_NS, "sink_netns": SINK_NS, "src": SOURCE_IP, "dst": SINK_IP, "flows": flows,
                    "rate": rate, "duration": seconds, "settle": 0.5}
        self.result = None
        self.error = None
        self.start_ns = None

    def run(self):
        self.start_ns = time.time_ns()
        try:
            self.result = _probe.run_probe(self.cfg)
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc

    def figures(self):
        self.join()
        if self.error is not None:
            raise self.error
        t = self.result["totals"]
        return {"sent": t["sent"], "received": t["received"], "lost": t["lost"], "reordered": t["reordered"],
                "duplicated": t["duplicated"], "blackout_ms": max(f["max_gap_ms"] or 0 for f in self.result["flows"]),
                "max_gap_ms": t["max_gap_ms"], "notes": self.result["notes"]}


# --- the tests ----------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(missing_prerequisites() is not None, reason=str(missing_prerequisites()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab with the wire guest running on mh1 and the traffic steered through it."""
    inv = write_inventory(tmp_path_factory.mktemp("fsm-inventory"))
    took = lab_up(inv)
    print("\nlab-up (fsm, two module hosts with libvirt): %.1f s" % took)
    try:
        set_flows("mh1")
        rc, res = guest(inv, "mh1")
        assert rc == 0 and res.get("changed"), json.dumps(res, indent=1)[:4000]
        print("guest on mh1 forwards after %.1f s" % wait_forwarding())
        yield inv
    finally:
        lab_down(inv)
        assert not os.path.exists(STATE)


def test_a_host_without_libvirt_bad_flows_and_check_mode_change_nothing(lab):
    """(The other bad requests are unit-tested, tests/unit/plugins/module_utils/test_vm_migrate.py.)"""
    before = (domains("mh1"), domains("mh2"), flows_now())
    assert before[0] == {DOMAIN: "running"} and before[1] == {}
    rc, res = on_host(lab, "localhost", "vm_migrate", **migrate_args("mh1", "mh2", destination_uri=NO_LIBVIRT_URI))
    assert rc != 0 and res.get("failed"), res
    print("no libvirtd there: %s" % res["msg"])
    assert res["msg"].startswith("instance w1: the destination %s does not answer" % NO_LIBVIRT_URI), res["msg"]
    assert "A VM cannot go to a host without libvirt" in res["msg"] and "Traceback" not in res["msg"]
    rc, res = on_host(lab, "localhost", "vm_migrate", **migrate_args("mh1", "mh2", flows=["priority=100,in_port=fsm-nope,actions=drop"]))
    assert rc != 0 and "names port 'fsm-nope', which the switch does not have" in res["msg"], res
    rc, res = on_host(lab, "localhost", "vm_migrate", check=True, **migrate_args("mh1", "mh2"))
    assert rc == 0 and res["changed"] and res["migrated"] is False, res
    assert res["switch"]["counts"]["flows_added"] == 2 and res["switch"]["counts"]["flows_removed"] == 2, res["switch"]
    assert (domains("mh1"), domains("mh2"), flows_now()) == before
    assert ping().returncode == 0


def test_live_migration_flips_the_switch_at_the_switchover(lab):
    assert len(flows_now()) == 4 and all("fsm-mh1-tr" in line for line in flows_now())
    seconds = 14.0                    # Ansible's start, and a migration of 2-8 s on a busy machine, fit in
    probe = Probe(1000, seconds)
    probe.start()
    time.sleep(0.5)
    rc, res = on_host(lab, "localhost", "vm_migrate", **migrate_args("mh1", "mh2"))
    figures = probe.figures()
    assert rc == 0 and res["changed"] and res["migrated"], json.dumps(res, indent=1)[:6000]
    print("vm_migrate mh1 -> mh2: %.0f ms in all, libvirt's migration call %.0f ms, downtime %s ms (libvirt), flip at %s "
          "%.1f ms after the event (%d bundle lines, ovs-ofctl started beforehand: %s)" % (
              res["duration_ms"], res["migration_ms"], res["downtime_ms"], res["flip"]["event"], res["flip"]["delay_ms"],
              res["flip"]["bundle_lines"], res["flip"]["prespawned"]))
    print("events: %s" % ", ".join("%s %s +%.1f ms" % (e["host"], e["event"], (e["ns"] - res["started_ns"]) / 1e6)
                                   for e in res["events"]))
    print("probe, 16 flows at 1000 pps during the move: sent %(sent)d received %(received)d lost %(lost)d reordered "
          "%(reordered)d duplicated %(duplicated)d, longest gap of a flow (blackout) %(blackout_ms)s ms" % figures)
    assert res["flip"]["event"] == "source suspended/migrated" and res["flip"]["prespawned"]
    assert isinstance(res["downtime_ms"], int) and res["downtime_ms"] > 0
    assert probe.start_ns + 0.3e9 < res["flip"]["applied_ns"] < probe.start_ns + (seconds - 0.5) * 1e9, \
        "the switchover fell outside the probe's run: the figures say nothing about it"
    assert res["started_ns"] < res["flip"]["event_ns"] <= res["flip"]["applied_ns"] < res["ended_ns"]
    assert [e["event"] for e in res["events"] if e["host"] == "source"][:1] == ["suspended/migrated"]
    assert "resumed/migrated" in [e["event"] for e in res["events"] if e["host"] == "destination"]
    # where the guest runs now, and the switch leads there
    assert domains("mh2") == {DOMAIN: "running"} and domains("mh1") == {}
    assert all("fsm-mh2-tr" in line for line in flows_now()) and len(flows_now()) == 4
    for leg, port in (("left", "fs-w1-l"), ("right", "fs-w1-r")):   # libvirt plugged the legs on mh2's VLANs
        assert sh(*in_host("mh2", "ovs-vsctl", "get", "Port", port, "tag")).stdout.strip() == str(HOSTS["mh2"]["vlans"][leg])
    # A guest the lab's QEMU (7.2, TCG) did not carry over intact panics right after it resumes
    # (docs/vm-modules.md: about 1 move in 10-50, with plain virsh migrate too). That is QEMU's, not
    # this module's: the checks of the module go on, the traffic checks are left out, and the test
    # ends as an expected failure that prints the guest's own words.
    crashed = crash_lines(console("mh2"))
    if not crashed:
        # the move cost a short blackout, not the traffic: nothing duplicated, most packets arrived
        assert figures["sent"] > 10000 and figures["duplicated"] == 0
        assert figures["lost"] < 0.2 * figures["sent"] and figures["blackout_ms"] < 2000, figures
        after = ping(count=10, interval=0.05)
        assert after.returncode == 0 and "10 packets received" in after.stdout, \
            "no traffic through the guest after the move: %s\nthe guest's console on mh2 since it arrived:\n%s" % (
                after.stdout, console("mh2")[-3000:])

    # the destination's processing_module converges the migrated domain: labels, no restart
    rc, res = guest(lab, "mh2")
    assert rc == 0, res
    print("processing_module on mh2 after the move: %s" % res.get("actions"))
    assert not [a for a in res["actions"] if "restarted" in a or "started domain" in a or "redefined" in a], res["actions"]
    assert any(a.startswith("labelled fs-w1-l") for a in res["actions"]), res["actions"]
    rc, res = guest(lab, "mh2")
    assert rc == 0 and not res["changed"], res
    # a second vm_migrate finds it done: nothing to move, nothing to flip
    rc, res = on_host(lab, "localhost", "vm_migrate", **migrate_args("mh1", "mh2"))
    assert rc == 0 and not res["changed"] and not res["migrated"], res
    if crashed:
        pytest.xfail("the guest crashed right after the live migration (QEMU 7.2/TCG, a known issue of the lab, "
                     "docs/vm-modules.md): %s" % crashed)
    assert ping().returncode == 0
