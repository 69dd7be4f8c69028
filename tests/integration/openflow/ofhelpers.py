# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures and helpers of the OpenFlow integration tests: bridges, the module runner, checks.

Deliberately not a conftest.py: tests/integration/conftest.py exists, and other suites import
``conftest`` by name, which breaks as soon as a second module of that name is loaded.  The test
modules import the fixtures from here.

Every object made here is an OVS bridge (with internal ports) whose name starts with ``fst-of``;
bridges left behind by an earlier crashed run are deleted at session start, and each test's
bridges are deleted in its finaliser.  Nothing else on the machine is touched (the lab's
``fsl-`` objects in particular).

Every object made here is an OVS bridge (with internal ports) whose name starts with ``fst-of``;
bridges left behind by an earlier crashed run are deleted at session start, and each test's
bridges are deleted in its finaliser.  Nothing else on the machine is touched (the lab's
``fsl-`` objects in particular).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
PREFIX = "fst-of"
PROTOCOLS = "OpenFlow13,OpenFlow14,OpenFlow15"

sys.path.insert(0, str(TOP / "collections"))


def sh(*argv, check=True, data=None):
    proc = subprocess.run(argv, capture_output=True, text=True, input=data, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr))
    return proc.stdout


def ovs_available():
    if os.geteuid() != 0 or not shutil.which("ovs-vsctl"):
        return False
    return subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True, check=False).returncode == 0


def delete_bridge(name):
    assert name.startswith(PREFIX)
    sh("ovs-vsctl", "--if-exists", "del-br", name)


class Bridge:
    def __init__(self, name, ports):
        self.name = name
        self.ports = ports  # {port name: ofport}

    def flows(self, *args, version="OpenFlow14"):
        """The whole table (or a filter), canonical lines without statistics, sorted."""
        out = sh("ovs-ofctl", "-O", version, "--no-names", "--no-stats", "dump-flows", self.name, *args)
        return sorted(line.strip() for line in out.splitlines() if not line.startswith(("OFPST", "NXST")))

    def groups(self, version="OpenFlow15"):
        out = sh("ovs-ofctl", "-O", version, "--no-names", "dump-groups", self.name)
        return sorted(line.strip() for line in out.splitlines() if line.startswith(" group_id="))

    def state(self):
        return self.flows(), self.groups()

    def ofctl(self, *args, version="OpenFlow14", data=None):
        return sh("ovs-ofctl", "-O", version, *args, data=data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_target(target, extra=(), timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--timeout=2"] + list(extra) + ["show", target],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError("%s never answered: %s" % (target, proc.stderr))
        time.sleep(0.2)


# -- running the modules for real -----------------------------------------------------------------

def _env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        # An inventory of just "localhost," - independent of the lab inventory's plugin.
        "ANSIBLE_INVENTORY_ENABLED": "host_list",
        "PATH": "%s:%s" % (BIN, env.get("PATH", "")),
    })
    return env


def module(name, args, check=False, diff=False, timeout=300):
    """Run flowstream.platform.<name> on localhost through ansible; return the host's result."""
    argv = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-m", "flowstream.platform." + name, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    proc = subprocess.run(argv, cwd=TOP, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{"):])
        result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no result from %s\nrc=%s\nstderr=%s\nstdout=%s"
                             % (" ".join(argv[:9]), proc.returncode, proc.stderr[-3000:], proc.stdout[-3000:]))
    result["_rc"] = proc.returncode
    return result


def ok(result):
    assert not result.get("failed"), result.get("msg", result)
    return result


def failed(result, *fragments):
    assert result.get("failed"), "expected a failure, got: %s" % result
    for fragment in fragments:
        assert fragment in result["msg"], "%r not in %r" % (fragment, result["msg"])
    return result


# -- fixtures (imported by the test modules) ---------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def ovs_session():
    if not ovs_available():
        pytest.skip("needs root and a running Open vSwitch (scripts/setup.sh starts it)")
    for name in sh("ovs-vsctl", "list-br").split():
        if name.startswith(PREFIX):
            delete_bridge(name)
    yield
    left = [b for b in sh("ovs-vsctl", "list-br").split() if b.startswith(PREFIX)]
    assert not left, "bridges left behind: %s" % left


@pytest.fixture
def make_bridge():
    made = []

    def make(suffix="", ports=3, protocols=PROTOCOLS):
        name = (PREFIX + suffix)[:15]
        delete_bridge(name)
        cmd = ["ovs-vsctl", "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
               "protocols=%s" % protocols]
        pmap = {}
        for i in range(1, ports + 1):
            port = "%s-p%d" % (name[:11], i)
            cmd += ["--", "add-port", name, port, "--", "set", "interface", port, "type=internal",
                    "ofport_request=%d" % i]
            pmap[port] = i
        made.append(name)
        sh(*cmd)
        return Bridge(name, pmap)

    yield make
    for name in made:
        delete_bridge(name)


@pytest.fixture
def bridge(make_bridge):  # pylint: disable=redefined-outer-name
    return make_bridge("a")
