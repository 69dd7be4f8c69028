# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ip / ovs-vsctl wrappers and the lab's pure parts: exact argv, canned output."""

from __future__ import annotations

import json

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, Result, run
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import IPRoute, link_is_up, stable_mac
from ansible_collections.flowstream.platform.plugins.module_utils._lab import LabHost, LabError, LabNetwork
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB, quote_value


class FakeRun:
    """Records argv; answers from a table of argv -> (rc, stdout, stderr)."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, argv, check=True, **_kwargs):
        self.calls.append(list(argv))
        rc, out, err = self.answers.get(tuple(argv), (0, "", ""))
        if check and rc != 0:
            raise CommandError(argv, rc, out, err)
        return Result(list(argv), rc, out, err)


# -- _cmd -----------------------------------------------------------------------------------
def test_run_maps_failure_to_command_error_with_the_tools_words():
    with pytest.raises(CommandError) as err:
        run(["sh", "-c", "echo 'RTNETLINK answers: File exists' >&2; exit 2"])
    assert err.value.rc == 2
    assert err.value.words == "RTNETLINK answers: File exists"
    assert str(err.value).startswith("'sh -c ") and "(rc=2): RTNETLINK answers: File exists" in str(err.value)


def test_run_missing_binary():
    with pytest.raises(CommandError) as err:
        run(["/nonexistent/flowstream-tool"])
    assert err.value.rc == 127


# -- _iproute -------------------------------------------------------------------------------
LINK_JSON = json.dumps([{"ifindex": 7, "ifname": "fsl-mh1-m", "flags": ["BROADCAST", "UP", "LOWER_UP"],
                         "master": "fsl-mgmt", "link_index": 2, "linkinfo": {"info_kind": "veth"}}])
ADDR_JSON = json.dumps([{"ifname": "mgmt0", "addr_info": [
    {"family": "inet", "local": "198.18.0.11", "prefixlen": 24, "scope": "global"},
    {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]}])


def test_iproute_argv_root_and_netns():
    fake = FakeRun({("ip", "-j", "-d", "link", "show", "dev", "fsl-mh1-m"): (0, LINK_JSON, "")})
    link = IPRoute(run=fake).link("fsl-mh1-m")
    assert link["master"] == "fsl-mgmt" and link_is_up(link)
    IPRoute(netns="fsl-mh1", run=fake).set_up("mgmt0")
    assert fake.calls[-1] == ["ip", "-n", "fsl-mh1", "link", "set", "dev", "mgmt0", "up"]
    IPRoute(netns="fsl-mh1", run=fake).set_master("a", "br0")  # "a" alone would read as "address"
    assert fake.calls[-1] == ["ip", "-n", "fsl-mh1", "link", "set", "dev", "a", "master", "br0"]


def test_iproute_missing_link_is_none():
    fake = FakeRun({("ip", "-j", "-d", "link", "show", "dev", "nope"): (1, "", 'Device "nope" does not exist.')})
    assert IPRoute(run=fake).link("nope") is None


def test_iproute_addresses_only_global():
    fake = FakeRun({("ip", "-j", "-d", "-n", "fsl-mh1", "-f", "inet", "addr", "show", "dev", "mgmt0"): (0, ADDR_JSON, "")})
    assert IPRoute(netns="fsl-mh1", run=fake).addresses("mgmt0") == ["198.18.0.11/24"]


def test_iproute_add_veth_with_peer_in_netns_and_stable_macs():
    fake = FakeRun()
    IPRoute(run=fake).add_veth("fsl-mh1-tr", "trunk0", "fsl-mh1", "02:00:00:00:00:01", "02:00:00:00:00:02")
    assert fake.calls == [["ip", "link", "add", "fsl-mh1-tr", "address", "02:00:00:00:00:01", "type", "veth",
                           "peer", "name", "trunk0", "address", "02:00:00:00:00:02", "netns", "fsl-mh1"]]


def test_stable_mac_is_stable_local_unicast_and_distinct():
    mac = stable_mac("fsl-mh1-m")
    assert mac == stable_mac("fsl-mh1-m")
    assert mac != stable_mac("fsl-mh2-m")
    first = int(mac.split(":", maxsplit=1)[0], 16)
    assert first & 0x02 and not first & 0x01  # locally administered, unicast


# -- _ovsdb -----------------------------------------------------------------------------------
def test_ovsdb_add_bridge_is_one_transaction_with_datapath():
    fake = FakeRun()
    OVSDB(run=fake).add_bridge("fsl-sw", "netdev", {"protocols": "OpenFlow13,OpenFlow14", "fail_mode": "secure"})
    assert fake.calls == [["ovs-vsctl", "--timeout=10", "--may-exist", "add-br", "fsl-sw", "--", "set", "bridge",
                           "fsl-sw", "datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13,OpenFlow14"]]


def test_ovsdb_add_port_inside_host_with_external_ids():
    fake = FakeRun()
    wrap = ["nsenter", "--net=/run/netns/fsl-mh1"]
    OVSDB(wrap=wrap, run=fake).add_port("fs-host", "trunk0", {"flowstream-role": "trunk", "note": "a b"}, tag=7)
    assert fake.calls == [wrap + ["ovs-vsctl", "--timeout=10", "--may-exist", "add-port", "fs-host", "trunk0", "tag=7",
                                  "--", "set", "interface", "trunk0", 'external_ids:flowstream-role=trunk',
                                  'external_ids:note="a b"']]


def test_ovsdb_add_port_afxdp_sets_type_and_generic_mode_in_the_same_transaction():
    fake = FakeRun()
    OVSDB(run=fake).add_port("fs-host", "fs-fw1-l", tag=101, port_type="afxdp-nonpmd")
    assert fake.calls == [["ovs-vsctl", "--timeout=10", "--may-exist", "add-port", "fs-host", "fs-fw1-l", "tag=101",
                           "--", "set", "interface", "fs-fw1-l", "options:xdp-mode=generic", "type=afxdp-nonpmd"]]


def test_ovsdb_add_port_replace_re_creates_the_port_in_one_transaction():
    fake = FakeRun()
    OVSDB(run=fake).add_port("fs-host", "trunk0", {"flowstream-role": "trunk"}, port_type="system", replace=True)
    assert fake.calls == [["ovs-vsctl", "--timeout=10", "--", "--if-exists", "del-port", "trunk0", "--", "add-port",
                           "fs-host", "trunk0", "--", "set", "interface", "trunk0", "external_ids:flowstream-role=trunk"]]


def test_ovsdb_add_port_refuses_an_unknown_port_type_before_running_anything():
    fake = FakeRun()
    with pytest.raises(ValueError, match="'dpdk' is not one of system, afxdp-nonpmd"):
        OVSDB(run=fake).add_port("fs-host", "p", port_type="dpdk")
    assert fake.calls == []


def test_ovsdb_port_bridge_absent_port():
    fake = FakeRun({("ovs-vsctl", "--timeout=10", "port-to-br", "x"): (1, "", "ovs-vsctl: no port named x")})
    assert OVSDB(run=fake).port_bridge("x") is None


@pytest.mark.parametrize("value, quoted", [("trunk", "trunk"), ("mh1", "mh1"), ("a b", '"a b"'), ('q"', '"q\\""')])
def test_quote_value(value, quoted):
    assert quote_value(value) == quoted


# -- the lab's pure parts -----------------------------------------------------------------------
def host(tmp_path, **extra):
    params = dict(name="mh1", namespace="fsl-mh1", state_dir=str(tmp_path), hostname=None,
                  management={"bridge": "fsl-mgmt", "port": "fsl-mh1-m", "interface": "mgmt0",
                              "address": "198.18.0.11/24"},
                  uplink={"switch_bridge": "fsl-sw", "port": "fsl-mh1-tr", "interface": "trunk0",
                          "address": None, "external_ids": {}, "checksum_offload": False},
                  services=["ovs", "libvirt", "sshd"], host_bridge="fs-host", authorized_keys="ssh-ed25519 AAAA x\n",
                  ssh_port=22, hosts={"mh2": "198.18.0.12"})
    params.update(extra)
    return LabHost(params, run=FakeRun(), run_daemon=FakeRun())


def test_lab_host_enters_all_three_namespaces(tmp_path):
    assert host(tmp_path).enter_argv() == [
        "nsenter", "--mount=%s/ns/mh1.mnt" % tmp_path, "--uts=%s/ns/mh1.uts" % tmp_path, "--net=/run/netns/fsl-mh1"]


def test_lab_host_mount_script_binds_every_private_directory(tmp_path):
    script = host(tmp_path)._mount_script()
    for target in ("/etc/openvswitch", "/run/libvirt", "/var/lib/flowstream", "/run/netns", "/etc/hosts"):
        assert " %s\n" % target in script
    assert script.index("umount -l /sys") < script.index("mount -t sysfs")


def test_lab_host_rejects_unknown_service_and_sshd_without_management(tmp_path):
    with pytest.raises(LabError, match="unknown service 'telnetd'"):
        host(tmp_path, services=["telnetd"])._validate()
    with pytest.raises(LabError, match="sshd needs a management link"):
        host(tmp_path, management=None)._validate()


def test_lab_host_rejects_long_interface_names(tmp_path):
    bad = host(tmp_path)
    bad.uplink = dict(bad.uplink, port="fsl-a-very-long-port")
    with pytest.raises(LabError, match="longer than 15 characters"):
        bad._validate()


def test_the_host_key_is_pinned_as_the_one_line_of_its_address_others_kept(tmp_path):
    path = tmp_path / "ssh" / "known_hosts"
    first = host(tmp_path)
    first.pin_host_key(str(path), "ssh-ed25519 AAAAold")
    assert path.read_text() == "198.18.0.11 ssh-ed25519 AAAAold\n" and first.actions
    path.write_text("198.18.0.12 ssh-ed25519 BBBB\n198.18.0.11 ssh-ed25519 AAAAold\n")
    same = host(tmp_path)
    same.pin_host_key(str(path), "ssh-ed25519 AAAAold")
    assert same.actions == []                                   # nothing to change: nothing written
    renewed = host(tmp_path)
    renewed.pin_host_key(str(path), "ssh-ed25519 AAAAnew")      # the host re-made with a new key
    assert path.read_text() == "198.18.0.12 ssh-ed25519 BBBB\n198.18.0.11 ssh-ed25519 AAAAnew\n"
    checking = host(tmp_path, ssh_port=2222)
    checking.check_mode = True
    checking.pin_host_key(str(path), "ssh-ed25519 CCCC")
    assert checking.actions == ["pinned the host key of [198.18.0.11]:2222 in %s" % path]
    assert "2222" not in path.read_text()                       # check mode writes nothing


def test_a_black_box_has_its_two_sides_and_nothing_else(tmp_path):
    box = {"switch_bridge": "fsl-sw", "left": "fsl-bb1-l", "right": "fsl-bb1-r", "external_ids": {"flowstream-role": "blackbox"}}
    alone = host(tmp_path, name="bb1", namespace="fsl-bb1", management=None, uplink=None, services=[], box=box)
    alone._validate()
    assert [(l["port"], l["interface"], l["external_ids"]["flowstream-box-side"]) for l in alone.box_links()] == [
        ("fsl-bb1-l", "left", "left"), ("fsl-bb1-r", "right", "right")]
    assert all(l["external_ids"]["flowstream-role"] == "blackbox" for l in alone.box_links())
    with pytest.raises(LabError, match="a black box has its two switch ports and nothing else"):
        host(tmp_path, box=box)._validate()
    with pytest.raises(LabError, match="box.right 'fsl-a-very-long-port' is longer than 15"):
        host(tmp_path, management=None, uplink=None, services=[], box=dict(box, right="fsl-a-very-long-port"))._validate()


def test_lab_host_config_files(tmp_path):
    h = host(tmp_path)
    h._ensure_dirs = lambda: None
    for sub in ("ssh", "etc/libvirt", "pids", "etc"):
        (tmp_path / "hosts" / "mh1" / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "hosts" / "mh1" / "etc/libvirt/libvirt.conf").write_text("")
    changed = h._ensure_config()
    assert changed == {"sshd", "libvirtd"}
    sshd = (tmp_path / "hosts/mh1/ssh/sshd_config").read_text()
    assert "ListenAddress 198.18.0.11\n" in sshd and "PasswordAuthentication no\n" in sshd
    hosts = (tmp_path / "hosts/mh1/etc/hosts").read_text()
    assert "198.18.0.11\tmh1\n" in hosts and "198.18.0.12\tmh2\n" in hosts
    qemu = (tmp_path / "hosts/mh1/etc/libvirt/qemu.conf").read_text()
    assert 'migration_address = "198.18.0.11"' in qemu and "cgroup_controllers = [ ]" in qemu
    # unchanged on a second pass: nothing to restart
    h.actions = []
    assert h._ensure_config() == set()
    assert [a for a in h.actions if a.startswith("wrote")] == []


def test_lab_network_validates_prefix_before_anything(tmp_path):
    fake = FakeRun()
    lab = LabNetwork(dict(prefix="flowstream-lab", state_dir=str(tmp_path), management=None, switches=[]), run=fake)
    with pytest.raises(LabError, match="1-6 letters"):
        lab.present()
    assert fake.calls == []
    lab = LabNetwork(dict(prefix="fsl", state_dir=str(tmp_path), management=None,
                          switches=[{"bridge": "br0"}]), run=fake)
    with pytest.raises(LabError, match="bridge 'br0' must start with the lab prefix 'fsl-'"):
        lab.present()
    assert fake.calls == []


def test_the_socket_buffer_is_raised_while_a_lab_is_up_and_the_last_lab_down_puts_it_back(tmp_path, monkeypatch):
    from ansible_collections.flowstream.platform.plugins.module_utils import _lab
    sysctl = tmp_path / "rmem_default"
    sysctl.write_text("212992\n")
    monkeypatch.setattr(_lab, "RMEM_DEFAULT", str(sysctl))

    def lab(name, want=4194304):
        state = tmp_path / "labs" / name
        (state / "ssh").mkdir(parents=True, exist_ok=True)
        (state / "ssh" / "id_ed25519").write_text("")
        return LabNetwork(dict(prefix=name, state_dir=str(state), management=None, switches=[], socket_buffer=want), run=FakeRun())
    first, second = lab("fsl"), lab("fsb")
    first._ensure_socket_buffer()
    assert sysctl.read_text() == "4194304\n" and first.actions[0].startswith("raised net.core.rmem_default from 212992 to 4194304")
    second._ensure_socket_buffer()             # already high enough: nothing to do, nothing to put back
    assert second.actions == [] and not (tmp_path / "labs" / "fsb" / _lab.RMEM_RECORD).exists()
    first._restore_socket_buffer()             # another lab is up: it keeps the value, and the duty
    assert sysctl.read_text() == "4194304\n" and (tmp_path / "labs" / "fsb" / _lab.RMEM_RECORD).read_text() == "212992\n"
    (tmp_path / "labs" / "fsl" / "ssh" / "id_ed25519").unlink()   # the first lab is gone
    second._restore_socket_buffer()
    assert sysctl.read_text() == "212992\n" and second.actions[-1] == "put net.core.rmem_default back to 212992"
    check = LabNetwork(dict(prefix="fsc", state_dir=str(tmp_path / "labs" / "fsc"), management=None, switches=[],
                            socket_buffer=4194304), check_mode=True, run=FakeRun())
    check._ensure_socket_buffer()              # check mode says so and changes nothing
    assert check.actions and sysctl.read_text() == "212992\n"
    with pytest.raises(LabError, match="socket_buffer -1 must be 0"):
        lab("fsd", want=-1).present()
