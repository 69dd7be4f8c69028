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
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_runner import TOP, adhoc, playbook  # noqa: E402  pylint: disable=wrong-import-position

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

PLATFORM = """\
# The traffic probe's integration lab: one switch, two module hosts, no spare (prefix fsp).
plugin: flowstream.platform.platform
platform:
  name: fsp
  management_network: 198.18.32.0/24
switches:
  - name: sw1
    bridge: fsp-sw
    openflow_target: unix:/var/run/openvswitch/fsp-sw.mgmt
    openflow_versions: [OpenFlow13, OpenFlow14, OpenFlow15]
    uplinks: {source: fsp-up-src, sink: fsp-up-sink}
module_host_defaults:
  switch: sw1
  host_bridge: fs-host
  capacity: {cpu: 1, memory: 1024}
  kinds: [process, kernel]
  power: {driver: lab}
module_hosts:
  - {name: mh1, management_address: 198.18.32.11, trunk: fsp-mh1-tr}
  - {name: mh2, management_address: 198.18.32.12, trunk: fsp-mh2-tr}
spares: []
blackboxes: []
"""
GROUP_VARS_ALL = """\
ansible_python_interpreter: "{{ ansible_playbook_python }}"
flowstream_lab_prefix: fsp
flowstream_lab_state_dir: /var/lib/flowstream-lab-fsp
flowstream_lab_management_address: 198.18.32.1/24
flowstream_lab_endpoints:
  - {name: source, switch: sw1, uplink: source, address: 198.18.33.1/24}
  - {name: sink, switch: sw1, uplink: sink, address: 198.18.33.2/24}
"""


def sh(*argv, check=True, data=None, timeout=120):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=data, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s%s" % (" ".join(map(str, argv)), proc.returncode, proc.stderr, proc.stdout))
    return proc


def write_inventory(directory):
    inv = Path(directory)
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "platform.flowstream.yml").write_text(PLATFORM)
    (inv / "group_vars" / "all.yml").write_text(GROUP_VARS_ALL)
    shutil.copy(TOP / "inventory" / "lab" / "group_vars" / "flowstream_module_hosts.yml", inv / "group_vars")
    return inv


def lab_down(inv):
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1" % COOKIE, check=False)
    down = playbook("playbooks/lab-down.yml", inventory=str(inv))
    assert down.rc == 0, down.explain()


def lab_up(inv):
    """Down first (whatever an earlier run left), then up; returns the seconds lab-up took."""
    lab_down(inv)
    t0 = time.monotonic()
    up = playbook("playbooks/lab-up.yml", inventory=str(inv))
    assert up.rc == 0 and not up.failures(), up.explain()
    return time.monotonic() - t0


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
