# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-machine lab, for real: namespaces, OVS, sshd, libvirtd; reached over SSH.

One ordered scenario (the lab is one shared machine-wide object): lab-down from whatever an
earlier run left, lab-up from nothing, every host over SSH with its own hostname, libvirt and
files, lab-up again with changed=0, a crash repaired by lab-up, traffic through the switch,
lab-down leaving no object with the prefix, lab-down again with nothing there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, adhoc, playbook  # noqa: E402
import private_lab  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "fsl-"
STATE_DIR = "/var/lib/flowstream-lab"
HOSTS = {"mh1": "198.18.0.11", "mh2": "198.18.0.12", "mh3": "198.18.0.13", "spare1": "198.18.0.21"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def ours(path):
    """A path inside this lab's state directory (not another lab's, e.g. flowstream-lab-fsv)."""
    return path == STATE_DIR or path.startswith(STATE_DIR + "/") or ("=" + STATE_DIR + "/") in path


def lab_objects():
    """Every object on this machine that carries the lab prefix."""
    found = []
    found += ["netns " + n.split()[0] for n in sh("ip", "netns", "list").splitlines() if n.startswith(PREFIX)]
    found += ["link " + link["ifname"] for link in json.loads(sh("ip", "-j", "link", "show") or "[]")
              if link["ifname"].startswith(PREFIX)]
    found += ["ovs bridge " + b for b in sh("ovs-vsctl", "list-br").split() if b.startswith(PREFIX)]
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        found += ["mount " + line.split()[4] for line in handle if ours(line.split()[4])]
    if os.path.exists(STATE_DIR):
        found.append("dir " + STATE_DIR)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open("/proc/%s/cmdline" % entry, "rb").read().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(ours(word) for word in cmd.split()):
                found.append("process %s: %s" % (entry, cmd[:80]))
    return found


def assert_ok(run):
    assert run.rc == 0 and not run.failures(), run.explain()


@pytest.fixture(scope="module")
def lab():
    """Start from nothing whatever an earlier run left behind; end with nothing."""
    down = playbook("playbooks/lab-down.yml")
    assert_ok(down)
    assert lab_objects() == []
    yield
    playbook("playbooks/lab-down.yml")


@pytest.mark.parametrize("old, new, words", [
    ("trunk: fsl-mh2-tr}", "trunc: fsl-mh2-tr}", ["module_hosts[1]", "mh2", "trunc"]),
    ("management_address: 198.18.0.13,", "management_address: 198.18.9.13,", ["mh3", "management_address"]),
    ("capacity: {cpu: 3, memory: 1024}", "capacity: {cpu: 3, memory: 1G}", ["capacity.memory"]),
])
def test_bad_description_builds_nothing(lab, tmp_path, old, new, words):
    """A bad platform description stops lab-up before any object exists."""
    inv = tmp_path / "lab"
    shutil.copytree(os.path.join(TOP, "inventory", "lab"), inv)
    desc = inv / "platform.flowstream.yml"
    text = desc.read_text()
    assert old in text
    desc.write_text(text.replace(old, new))
    run = playbook("playbooks/lab-up.yml", inventory=str(inv))
    assert run.rc != 0
    message = run.stderr + run.raw
    assert "platform.flowstream.yml" in message, run.explain()
    for word in words:
        assert word in message, run.explain()
    assert lab_objects() == []


MOUNT_POINTS = ("/etc/flowstream", "/var/lib/flowstream", "/run/flowstream", "/var/log/flowstream",
                "/etc/libvirt", "/var/cache/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt")


def existing_mount_points():
    return sorted(p for p in MOUNT_POINTS if os.path.exists(p))


def rmem_default():
    with open("/proc/sys/net/core/rmem_default", encoding="utf-8") as handle:
        return int(handle.read())


def test_lab_lifecycle(lab):
    points_before = existing_mount_points()
    rmem_before = rmem_default()
    # --- lab-up from nothing -----------------------------------------------------------
    t0 = time.monotonic()
    up = playbook("playbooks/lab-up.yml")
    up_seconds = time.monotonic() - t0
    assert_ok(up)
    assert up.changed("localhost") > 0
    print("lab-up from nothing: %.1f s" % up_seconds)
    # the userspace datapath's packet sockets get room for a stall of their polling thread
    assert rmem_default() >= 4194304, rmem_default()

    # --- every module host and the spare answer over real SSH ----------------------------
    ping = adhoc("flowstream_module_hosts", "ansible.builtin.ping")
    assert_ok(ping)
    assert sorted(ping.stats) == sorted(HOSTS)

    # --- each host sees only its own hostname, libvirt and files ---------------------------
    marker = adhoc("flowstream_module_hosts", "ansible.builtin.shell",
                   "touch /var/lib/flowstream/marker-$(hostname) && ls /var/lib/flowstream")
    assert_ok(marker)
    whoami = adhoc("flowstream_module_hosts", "ansible.builtin.shell",
                   "hostname; virsh -c qemu:///system capabilities | sed -n 's:.*<uuid>\\(.*\\)</uuid>.*:\\1:p' | head -1;"
                   " ls /var/lib/flowstream; ovs-vsctl list-br; ip -br link show dev mgmt0 | cut -d' ' -f1")
    assert_ok(whoami)
    results = whoami.task_results("ansible.builtin.shell") or whoami.data["plays"][0]["tasks"][0]["hosts"]
    uuids = set()
    for host, res in results.items():
        lines = res["stdout_lines"]
        hostname, libvirt_uuid, files, bridges = lines[0], lines[1], lines[2].split(), lines[3].split()
        assert hostname == host
        with open(os.path.join(STATE_DIR, "hosts", host, "host_uuid"), encoding="utf-8") as handle:
            assert libvirt_uuid == handle.read().strip(), "%s talks to another host's libvirtd" % host
        uuids.add(libvirt_uuid)
        assert files == ["marker-%s" % host], "%s sees other hosts' files: %s" % (host, files)
        assert bridges == ["fs-host"]
    assert len(uuids) == len(HOSTS)

    # --- idempotence -----------------------------------------------------------------------
    again = playbook("playbooks/lab-up.yml")
    assert_ok(again)
    assert again.changed() == 0, again.explain()

    # --- check mode on a complete lab predicts nothing -------------------------------------
    check = playbook("playbooks/lab-up.yml", "--check")
    assert_ok(check)
    assert check.changed() == 0, check.explain()

    # --- traffic through the switch, source to sink (flows set by the test) ----------------
    flows = ("cookie=0x5e5700000000a001,priority=10,in_port=fsl-up-src,actions=output:fsl-up-sink\n"
             "cookie=0x5e5700000000a001,priority=10,in_port=fsl-up-sink,actions=output:fsl-up-src\n")
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", "fsl-sw", "-"],
                   input=flows, text=True, check=True)
    out = sh("ip", "netns", "exec", "fsl-source", "busybox", "ping", "-c", "5", "-i", "0.2", "-W", "1",
             "198.18.1.2", check=False)
    assert " 0% packet loss" in out, out
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "del-flows", "fsl-sw", "cookie=0x5e5700000000a001/-1"],
                   check=True)

    # --- a crash: a dead sshd on mh2, mh3's namespace gone, the sink's uplink deleted -------
    os.kill(int(open(os.path.join(STATE_DIR, "hosts/mh2/pids/sshd.pid")).read()), signal.SIGKILL)
    for pid in sh("ip", "netns", "pids", "fsl-mh3").split():
        os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.5)
    sh("ip", "netns", "del", "fsl-mh3")
    sh("ip", "link", "del", "fsl-up-sink")
    repair = playbook("playbooks/lab-up.yml")
    assert_ok(repair)
    assert repair.changed("localhost") > 0
    ping = adhoc("flowstream_module_hosts", "ansible.builtin.ping")
    assert_ok(ping)
    assert playbook("playbooks/lab-up.yml").changed() == 0

    # --- lab-down leaves nothing with the prefix --------------------------------------------
    t0 = time.monotonic()
    down = playbook("playbooks/lab-down.yml")
    down_seconds = time.monotonic() - t0
    assert_ok(down)
    print("lab-down: %.1f s" % down_seconds)
    assert lab_objects() == []
    # the directories lab-up had to create as mount points are gone again, the others stay
    assert existing_mount_points() == points_before
    assert rmem_default() == rmem_before       # the machine's socket buffer as lab-up found it

    # --- and succeeds when nothing is there --------------------------------------------------
    empty = playbook("playbooks/lab-down.yml")
    assert_ok(empty)
    assert empty.changed() == 0, empty.explain()


def test_two_labs_side_by_side_leave_no_mount_point(lab, tmp_path):
    """A second lab mounts over the directories the first created; whichever goes down last
    removes them, and only then."""
    points_before = existing_mount_points()
    assert_ok(playbook("playbooks/lab-up.yml"))
    other = private_lab.write_inventory(tmp_path / "fsw", "fsw", 96, hosts=("mh1",))
    try:
        private_lab.lab_up(other)
        assert_ok(playbook("playbooks/lab-down.yml"))
        # still mounted in the other lab's hosts: kept
        assert set(existing_mount_points()) >= set(points_before) | {"/var/lib/flowstream", "/run/flowstream"}
    finally:
        private_lab.lab_down(other)
    assert existing_mount_points() == points_before
    assert lab_objects() == []
