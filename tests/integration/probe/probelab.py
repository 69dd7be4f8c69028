# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic probe's own lab (prefix ``fsp``) and the switch flows its tests set.

Other suites tear the default ``fsl`` lab down at any time, so the probe's tests and its
benchmark (bench/probe_vs_iperf3.py) bring up a lab of their own: one switch ``fsp-sw``, two
module hosts, management 198.18.32.0/24, source 198.18.33.1 and sink 198.18.33.2, state in
/var/lib/flowstream-lab-fsp. Every switch flow set here carries ``COOKIE``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, adhoc  # noqa: E402  pylint: disable=wrong-import-position
import private_lab  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "fsp"
STATE = "/var/lib/flowstream-lab-fsp"
SWITCH = "fsp-sw"
UPLINK_SRC = "fsp-up-src"
UPLINK_SINK = "fsp-up-sink"
TRUNKS = {"mh1": "fsp-mh1-tr", "mh2": "fsp-mh2-tr"}
SOURCE_NS, SOURCE_IP = "fsp-source", "198.18.33.1"
SINK_NS, SINK_IP = "fsp-sink", "198.18.33.2"
COOKIE = "0xf5b0000000000001"
PROBE = TOP / "plugins" / "module_utils" / "_probe.py"
COMMAND = TOP / "scripts" / "flowstream-probe"


def sh(*argv, check=True, data=None, timeout=120):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=data, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s%s" % (" ".join(map(str, argv)), proc.returncode, proc.stderr, proc.stdout))
    return proc


def write_inventory(directory):
    return private_lab.write_inventory(directory, PREFIX, 32, hosts=("mh1", "mh2"), kinds=("process", "kernel"))


def lab_down(inv):
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1" % COOKIE, check=False)
    private_lab.lab_down(inv)


def lab_up(inv):
    """Down first (whatever an earlier run left), then up; returns the seconds lab-up took."""
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1" % COOKIE, check=False)
    return private_lab.lab_up(inv)


def on_host(inv, host, plugin, check=False, **args):
    """A flowstream.platform module on a module host of this lab, over SSH: (rc, result)."""
    run = adhoc(host, "flowstream.platform." + plugin, json.dumps(args) if args else "", inventory=str(inv),
                extra=["--check"] if check else [])
    hosts = run.data["plays"][0]["tasks"][0]["hosts"] if run.data.get("plays") else {}
    return run.rc, hosts.get(host, {"msg": run.explain()})


def on_controller(inv, plugin, check=False, **args):
    """A flowstream.platform module on the controller (localhost): (rc, result)."""
    return on_host(inv, "localhost", plugin, check=check, **args)


# --- switch flows ------------------------------------------------------------------------------

def add_flows(lines):
    text = "".join("cookie=%s,%s\n" % (COOKIE, line) for line in lines)
    sh("ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", SWITCH, "-", data=text)


def del_flows(match=""):
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1%s" % (COOKIE, "," + match if match else ""))


def direct():
    """Source <-> sink through the switch alone."""
    return ["priority=100,in_port=%s,actions=output:%s" % (UPLINK_SRC, UPLINK_SINK),
            "priority=100,in_port=%s,actions=output:%s" % (UPLINK_SINK, UPLINK_SRC)]


def via(trunk, left, right, match="", priority=100):
    """Traffic from the source (matching ``match``) through an instance's legs to the sink; the
    reverse direction through the same legs back."""
    pre = "priority=%d,%s" % (priority, match + "," if match else "")
    return [pre + "in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (UPLINK_SRC, 4096 + left, trunk),
            "priority=%d,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (priority, trunk, right, UPLINK_SINK),
            "priority=%d,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (priority - 1, UPLINK_SINK, 4096 + right, trunk),
            "priority=%d,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (priority, trunk, left, UPLINK_SRC)]


def port_rx(port):
    """Packets the switch has received on ``port`` (its live port statistics)."""
    out = sh("ovs-ofctl", "-O", "OpenFlow14", "dump-ports", SWITCH, port).stdout
    for line in out.splitlines():
        if "rx pkts=" in line:
            return int(line.split("rx pkts=")[1].split(",")[0])
    raise AssertionError(out)
