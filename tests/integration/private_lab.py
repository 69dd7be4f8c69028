# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A lab of a suite's own, next to the default one (prefix fsl): the same platform shape with
its own prefix, state directory and addresses, so suites that bring labs up and down do not tear
each other's down."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

from ansible_cli import TOP, playbook


def write_inventory(directory, prefix, octet, hosts=("mh1",), kinds=("process", "kernel")):
    """Inventory of a lab with ``prefix``: management 198.18.<octet>.0/24, traffic endpoints
    198.18.<octet+1>.1 and .2, state directory /var/lib/flowstream-lab-<prefix>."""
    inv = Path(directory)
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    platform = {
        "plugin": "flowstream.platform.platform",
        "platform": {"name": prefix, "management_network": "198.18.%d.0/24" % octet},
        "switches": [{"name": "sw1", "bridge": "%s-sw" % prefix, "openflow_target": "unix:/var/run/openvswitch/%s-sw.mgmt" % prefix,
                      "openflow_versions": ["OpenFlow13", "OpenFlow14", "OpenFlow15"],
                      "uplinks": {"source": "%s-up-src" % prefix, "sink": "%s-up-sink" % prefix}}],
        "module_host_defaults": {"switch": "sw1", "host_bridge": "fs-host", "capacity": {"cpu": 1, "memory": 1024},
                                 "kinds": list(kinds), "power": {"driver": "lab"},
                                 "libvirt_uri": "qemu+tcp://{address}/system"},
        "module_hosts": [{"name": h, "management_address": "198.18.%d.%d" % (octet, 11 + i), "trunk": "%s-%s-tr" % (prefix, h)}
                         for i, h in enumerate(hosts)],
        "spares": [],
        "blackboxes": [],
    }
    group_vars = {
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "flowstream_lab_prefix": prefix,
        "flowstream_lab_state_dir": "/var/lib/flowstream-lab-%s" % prefix,
        "flowstream_lab_management_address": "198.18.%d.1/24" % octet,
        "flowstream_lab_endpoints": [
            {"name": "source", "switch": "sw1", "uplink": "source", "address": "198.18.%d.1/24" % (octet + 1)},
            {"name": "sink", "switch": "sw1", "uplink": "sink", "address": "198.18.%d.2/24" % (octet + 1)},
        ],
    }
    (inv / "platform.flowstream.yml").write_text("# A test lab of its own (prefix %s).\n" % prefix + yaml.safe_dump(platform, sort_keys=False))
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    shutil.copy(TOP / "inventory" / "lab" / "group_vars" / "flowstream_module_hosts.yml", inv / "group_vars")
    return inv


def lab_down(inv):
    down = playbook("playbooks/lab-down.yml", inventory=str(inv))
    assert down.rc == 0, down.explain()


def lab_up(inv):
    """Down first (whatever an earlier run left), then up; returns the seconds lab-up took."""
    lab_down(inv)
    t0 = time.monotonic()
    up = playbook("playbooks/lab-up.yml", inventory=str(inv))
    assert up.rc == 0 and not up.failures(), up.explain()
    return time.monotonic() - t0
