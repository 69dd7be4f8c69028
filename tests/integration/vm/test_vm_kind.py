# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vm kind for real: a TCG guest of the wire image on a lab module host, traffic through it.

The test brings up a lab of its own (prefix ``fsv``, one module host, its own addresses and
state directory) so that it never meets another lab on the machine, builds the guest image with
the lab role's task file, drives ``_vm.VmKind`` INSIDE the module host (its own mount, UTS and
network namespaces: its libvirtd, its Open vSwitch, its files), steers the source's traffic
through the instance's legs with flows it sets on the switch, and proves with packets that they
cross the guest left->right and back. It ends with the lab down.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import TOP, playbook  # noqa: E402  pylint: disable=wrong-import-position
import private_lab  # noqa: E402  pylint: disable=wrong-import-position

PREFIX = "fsv"
STATE = "/var/lib/flowstream-lab-fsv"
HOST = "mh1"
NETNS = "fsv-mh1"
SWITCH = "fsv-sw"
TRUNK = "fsv-mh1-tr"
UPLINK_SRC = "fsv-up-src"
UPLINK_SINK = "fsv-up-sink"
SOURCE_NS, SOURCE_IP = "fsv-source", "198.18.65.1"
SINK_NS, SINK_IP = "fsv-sink", "198.18.65.2"
COOKIE = "0xf5f0000000000001"
IMAGE = STATE + "/images/wire"
INSTANCE = "w1"
VLANS = {"left": 101, "right": 102}

GUEST_IMAGE_PLAY = """\
- name: The lab role's guest image task file, as up.yml includes it
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Build the wire image
      ansible.builtin.include_role:
        name: flowstream.platform.lab
        tasks_from: guest_image.yml
"""

# Runs inside the module host: one VmKind call, the result (or the InstanceError) as JSON.
DRIVER = textwrap.dedent("""\
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.flowstream.platform.plugins.module_utils._vm import VmKind
    from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
    req = json.load(sys.stdin)
    try:
        out = {"ok": True, "result": getattr(VmKind(), req["op"])(*req["args"], **req["kwargs"])}
    except InstanceError as exc:
        out = {"ok": False, "instance": exc.instance, "field": exc.field, "msg": str(exc)}
    print(json.dumps(out))
""")

# UDP at a fixed rate (sender) and a counter (receiver), for the forwarding-rate figure.
UDP = textwrap.dedent("""\
    import socket, sys, time
    if sys.argv[1] == "recv":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[2], 9000))
        s.settimeout(5.0)
        n = 0
        try:
            while True:
                s.recv(2048)
                n += 1
                s.settimeout(1.0)
        except socket.timeout:
            pass
        print(n)
    else:
        dst, rate, secs = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        total = int(rate * secs)
        t0 = time.monotonic()
        for i in range(total):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            s.sendto(b"flowstream-vm-test", (dst, 9000))
        print(total)
""")


def _missing_prerequisites():
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("qemu-system-x86_64", "libvirtd", "virtlogd", "ovs-vsctl", "busybox", "cpio", "nsenter"):
        if not shutil.which(tool):
            return "needs %s (scripts/setup.sh installs it)" % tool
    try:
        import libvirt  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return "needs libvirt-python in the test's interpreter"
    return None


pytestmark = pytest.mark.skipif(_missing_prerequisites() is not None, reason=str(_missing_prerequisites()))


def sh(*argv, check=True, data=None, timeout=120):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, input=data, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s%s" % (" ".join(map(str, argv)), proc.returncode, proc.stderr, proc.stdout))
    return proc


def in_host(*argv):
    """argv run inside the module host: its mount, UTS and network namespaces."""
    return ["nsenter", "--mount=%s/ns/%s.mnt" % (STATE, HOST), "--uts=%s/ns/%s.uts" % (STATE, HOST),
            "--net=/run/netns/%s" % NETNS] + list(argv)


def vm(op, *args, **kwargs):
    """One VmKind call on the module host."""
    proc = sh(*in_host(sys.executable, "-c", DRIVER, str(TOP / "collections")),
              data=json.dumps({"op": op, "args": list(args), "kwargs": kwargs}))
    return json.loads(proc.stdout)


def host_state():
    """What a VM instance could leave on the host: domains, ports with tags and labels, log files."""
    domains = sh(*in_host("virsh", "-c", "qemu:///system", "list", "--all", "--name")).stdout.split()
    ports = sh(*in_host("ovs-vsctl", "--format=json", "--data=json", "--columns=name,tag,external_ids",
                        "list", "Port")).stdout
    files = sh(*in_host("sh", "-c", "ls -A /var/log/libvirt/qemu /etc/libvirt/qemu /etc/libvirt/qemu/autostart /run/libvirt/qemu 2>/dev/null || true")).stdout
    return {"domains": sorted(domains), "ports": sorted(json.loads(ports)["data"]), "files": files}


def spec(**over):
    out = {"id": INSTANCE, "type": "wire", "chain": "vmtest", "step": "1", "vlans": dict(VLANS),
           "host_bridge": "fs-host", "memory_mib": 96, "vcpus": 1,
           "image": {"kernel": IMAGE + "/vmlinuz", "initrd": IMAGE + "/initrd.img", "cmdline": "console=ttyS0 quiet"},
           "running": True}
    out.update(over)
    return out


def panic_guest():
    """Panic the guest's kernel: ``echo c > /proc/sysrq-trigger`` typed into the shell the wire
    image keeps on its serial console (``virsh console`` needs a terminal: a pseudo-terminal)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        argv = in_host("virsh", "-c", "qemu:///system", "console", "--force", "fs-w1")
        os.execvp(argv[0], argv)
    try:
        time.sleep(2)
        os.write(fd, b"\r\necho c > /proc/sysrq-trigger\r\n")
        typed = time.monotonic()
        time.sleep(1)
        return typed
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def steer(left, right):
    """Source -> push VLAN(left) -> the host's trunk; VLAN(right) back from the trunk -> pop -> sink;
    and the reverse direction through right -> left. Every flow carries the test's cookie."""
    flows = "".join(line + "\n" for line in (
        "cookie=%s,priority=100,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (COOKIE, UPLINK_SRC, 4096 + left, TRUNK),
        "cookie=%s,priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (COOKIE, TRUNK, right, UPLINK_SINK),
        "cookie=%s,priority=100,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (COOKIE, UPLINK_SINK, 4096 + right, TRUNK),
        "cookie=%s,priority=100,in_port=%s,dl_vlan=%d,actions=pop_vlan,output:%s" % (COOKIE, TRUNK, left, UPLINK_SRC)))
    sh("ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", SWITCH, "-", data=flows)


def ping(netns, address, count=1, interval=0.2, wait=1):
    return sh("ip", "netns", "exec", netns, "busybox", "ping", "-q", "-c", count, "-i", interval, "-W", wait, address,
              check=False, timeout=count * interval + wait + 10)


def udp_rate(rate, seconds):
    """Packets sent and received, source -> sink, at ``rate`` per second."""
    recv = subprocess.Popen(["ip", "netns", "exec", SINK_NS, sys.executable, "-c", UDP, "recv", SINK_IP],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        sent = int(sh("ip", "netns", "exec", SOURCE_NS, sys.executable, "-c", UDP, "send", SINK_IP, rate, seconds).stdout)
        received = int(recv.communicate(timeout=30)[0])
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    return sent, received


def counters_after(before, at_least, timeout=15.0):
    """Leg counters once every one grew by ``at_least`` packets (OVS refreshes them every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        now = vm("leg_counters", INSTANCE)["result"]
        grown = {leg: {k: now[leg][k] - before[leg][k] for k in now[leg]} for leg in now}
        if all(grown[leg][k] >= at_least for leg in grown for k in ("rx_packets", "tx_packets")) \
                or time.monotonic() > deadline:
            return now, grown
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The test's own lab: down first (whatever an earlier run left), up, and down at the end."""
    inv = private_lab.write_inventory(tmp_path_factory.mktemp("fsv-inventory"), "fsv", 64, hosts=("mh1",),
                                      kinds=("vm", "process", "kernel", "click"))
    took = private_lab.lab_up(inv)
    print("\nlab-up (fsv, one module host): %.1f s" % took)
    try:
        yield inv
    finally:
        sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", SWITCH, "cookie=%s/-1" % COOKIE, check=False)
        private_lab.lab_down(inv)
        assert not os.path.exists(STATE)


def test_guest_image_task_file_builds_once(lab, tmp_path):
    play = tmp_path / "guest-image.yml"
    play.write_text(GUEST_IMAGE_PLAY)
    # lab-up has built the image already (the lab role includes this task file): start again
    # from no image to see it built once, then left alone
    shutil.rmtree(IMAGE)
    t0 = time.monotonic()
    first = playbook(str(play), inventory=str(lab))
    built = time.monotonic() - t0
    assert first.rc == 0 and first.changed("localhost") == 1, first.explain()
    second = playbook(str(play), inventory=str(lab))
    assert second.rc == 0 and second.changed("localhost") == 0, second.explain()
    print("guest image: built in %.1f s (kernel package from the cache when present)" % built)
    for name in ("vmlinuz", "initrd.img", "build-info"):
        assert os.path.getsize(os.path.join(IMAGE, name)) > 0
    info = open(os.path.join(IMAGE, "build-info"), encoding="utf-8").read()
    assert "modules=virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net" in info
    assert "llc stp bridge pvpanic pvpanic_mmio" in info     # the panic device's driver (_vm.py's <panic>)
    # the image is visible inside the module host (the state directory is not private to it)
    sh(*in_host("test", "-r", IMAGE + "/initrd.img"))


def test_bad_requests_leave_the_host_as_before(lab):
    before = host_state()
    res = vm("ensure", spec(image={"kernel": IMAGE + "/missing-vmlinuz", "initrd": IMAGE + "/initrd.img"}))
    assert not res["ok"] and (res["instance"], res["field"]) == (INSTANCE, "image.kernel"), res
    assert "missing-vmlinuz does not exist" in res["msg"]
    res = vm("ensure", spec(memory_mib=64 * 1024 * 1024))
    assert not res["ok"] and (res["instance"], res["field"]) == (INSTANCE, "memory"), res
    res = vm("ensure", spec(host_bridge="fs-nobridge"))
    assert not res["ok"] and res["field"] == "host_bridge", res
    assert host_state() == before


def test_vm_instance_forwards_both_ways(lab):  # pylint: disable=too-many-locals,too-many-statements
    steer(VLANS["left"], VLANS["right"])
    assert ping(SOURCE_NS, SINK_IP, wait=1).returncode != 0  # nothing on the legs' VLANs yet

    # --- install: defines and boots a real TCG guest, labels its legs ---------------------------
    t0 = time.monotonic()
    res = vm("ensure", spec())
    assert res["ok"], res
    actions = res["result"]
    assert actions[0].startswith("defined domain fs-w1") and "started domain fs-w1" in actions
    assert any(a.startswith("labelled fs-w1-l") for a in actions)
    ensure_s = time.monotonic() - t0
    while ping(SOURCE_NS, SINK_IP, wait=1).returncode != 0:
        assert time.monotonic() - t0 < 90, "the guest did not forward within 90 s"
    forwarding_s = time.monotonic() - t0
    console = sh(*in_host("cat", "/var/log/libvirt/qemu/fs-w1.console.log")).stdout
    ready = re.search(r"flowstream-wire: ready: bridging left (\S+) and right (\S+) \(t=([0-9.]+)s\)", console)
    assert ready, console
    print("ensure: %.2f s; boot to forwarding (first ping through the guest): %.1f s; guest's own clock at ready: %s s"
          % (ensure_s, forwarding_s, ready.group(3)))

    # --- the host knows it from itself: libvirt metadata and the leg ports' external_ids --------
    seen = vm("observe_all")["result"][INSTANCE]
    assert seen["state"] == "running" and seen["kind"] == "vm" and seen["chain"] == "vmtest"
    assert seen["legs"] == {"left": {"port": "fs-w1-l", "vlan": 101}, "right": {"port": "fs-w1-r", "vlan": 102}}
    assert (seen["memory_mib"], seen["vcpus"], seen["domain"]) == (96, 1, "fs-w1")
    for leg, port in (("left", "fs-w1-l"), ("right", "fs-w1-r")):
        tag = sh(*in_host("ovs-vsctl", "get", "Port", port, "tag")).stdout.strip()
        ext = sh(*in_host("ovs-vsctl", "get", "Port", port, "external_ids")).stdout
        assert tag == str(VLANS[leg])
        for pair in ("flowstream-instance=w1", "flowstream-kind=vm", "flowstream-type=wire",
                     "flowstream-chain=vmtest", 'flowstream-step="1"', "flowstream-leg=%s" % leg):
            assert pair in ext, ext
    # the guest's NICs carry the instance's stable MACs
    assert ready.group(1) == sh(*in_host("ovs-vsctl", "get", "Interface", "fs-w1-l", "external_ids:attached-mac")).stdout.strip().strip('"')

    # --- packets cross left -> right and back, started from either side ------------------------
    before = vm("leg_counters", INSTANCE)["result"]
    count = 20
    fwd = ping(SOURCE_NS, SINK_IP, count=count, interval=0.05)
    assert fwd.returncode == 0 and "%d packets received" % count in fwd.stdout, fwd.stdout
    rev = ping(SINK_NS, SOURCE_IP, count=count, interval=0.05)
    assert rev.returncode == 0 and "%d packets received" % count in rev.stdout, rev.stdout
    after, grown = counters_after(before, 2 * count)
    # every leg saw the source's requests and the sink's replies and vice versa: 2 * count each way
    for leg in ("left", "right"):
        for key in ("rx_packets", "tx_packets"):
            assert grown[leg][key] >= 2 * count, (leg, key, before, after)
    print("leg counters grew by %s" % json.dumps(grown, sort_keys=True))

    # --- forwarding rate at a low rate, and what one guest costs -------------------------------
    sent, received = udp_rate(1000, 2)
    print("UDP through the guest at 1000 pps for 2 s: %d sent, %d received" % (sent, received))
    assert received >= 0.95 * sent
    sent5, received5 = udp_rate(5000, 2)
    print("UDP through the guest at 5000 pps for 2 s: %d sent, %d received (%.1f%% loss)"
          % (sent5, received5, 100.0 * (sent5 - received5) / sent5))
    pid = int(open("%s/hosts/%s/run/libvirt/qemu/fs-w1.pid" % (STATE, HOST), encoding="ascii").read())
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", open("/proc/%d/status" % pid, encoding="ascii").read()).group(1))
    print("QEMU RSS of the 96 MiB guest: %d MiB" % (rss_kib // 1024))
    assert rss_kib // 1024 < 96 + 384  # the memory check's margin covers what a guest really costs

    # --- idempotence, and a VLAN that is taken -------------------------------------------------
    again = vm("ensure", spec())
    assert again == {"ok": True, "result": []}
    state = host_state()
    res = vm("ensure", spec(id="w2", vlans={"left": 201, "right": 102}))
    assert not res["ok"] and (res["instance"], res["field"]) == ("w2", "vlans.right"), res
    assert "VLAN 102 is already the tag of port fs-w1-r" in res["msg"]
    assert host_state() == state

    # --- a guest that panics: QEMU hears it (pvpanic), libvirt ends it, ensure starts it again --
    typed = panic_guest()
    deadline = typed + 30
    while sh(*in_host("virsh", "-c", "qemu:///system", "domstate", "--reason", "fs-w1")).stdout.strip() != "shut off (crashed)":
        assert time.monotonic() < deadline, "libvirt did not end the panicked guest within 30 s: %s" % sh(
            *in_host("virsh", "-c", "qemu:///system", "domstate", "--reason", "fs-w1")).stdout
        time.sleep(0.2)
    print("panicked guest ended by libvirt: shut off (crashed) %.1f s after the command was typed" % (time.monotonic() - typed))
    assert "Kernel panic - not syncing: sysrq triggered crash" in sh(*in_host("cat", "/var/log/libvirt/qemu/fs-w1.console.log")).stdout
    # what the tests' labhosts.guest_crash reads once a restart started the console log afresh
    assert "shutting down, reason=crashed" in sh(*in_host("cat", "/var/log/libvirt/qemu/fs-w1.log")).stdout
    assert vm("observe_all")["result"][INSTANCE]["state"] == "stopped"
    again = vm("ensure", spec())
    assert again["ok"] and "started domain fs-w1" in again["result"], again
    t0 = time.monotonic()
    while ping(SOURCE_NS, SINK_IP, wait=1).returncode != 0:
        assert time.monotonic() - t0 < 90, "the restarted guest did not forward within 90 s"

    # --- absent: nothing of the instance stays, and traffic no longer crosses -----------------
    gone = vm("remove", INSTANCE)
    assert gone["ok"] and gone["result"][:2] == ["destroyed domain fs-w1", "undefined domain fs-w1"], gone
    assert "removed /var/log/libvirt/qemu/fs-w1.console.log" in gone["result"]
    final = host_state()
    assert final["domains"] == []
    assert not [p for p in final["ports"] if p[0].startswith("fs-w1")]
    assert "fs-w1" not in final["files"], final["files"]
    assert vm("observe_all")["result"] == {}
    assert vm("remove", INSTANCE) == {"ok": True, "result": []}
    assert ping(SOURCE_NS, SINK_IP, count=3, interval=0.2).returncode != 0
