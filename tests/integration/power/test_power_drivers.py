# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ipmi power driver (module host_power) against a real BMC: VirtualBMC (OpenStack's IPMI
server, from PyPI) fronting a small libvirt domain on a lab host's libvirtd - status, on, on
again (no change), off, check mode; a wrong password and a BMC that does not answer are clear
errors naming host, driver and address within seconds, and the password never appears in what
Ansible prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ansible_cli import BIN, adhoc  # noqa: E402  pylint: disable=wrong-import-position

URI = "qemu+tcp://198.18.0.21/system"      # spare1's libvirtd in the lab
BOX = "fsl-bmcbox"
PORT = 16230
SECRET = "fs-S3cret-bmc-7f"
DOMAIN = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>16</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_reboot>destroy</on_reboot>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>""" % BOX


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True   # it answered (401 without credentials)
    except OSError:
        return False


def virsh(*argv, check=True):
    return subprocess.run(["virsh", "-c", URI] + list(argv), capture_output=True, text=True, check=check).stdout.strip()


def power(check=False, **args):
    """host_power on the controller; (rc, result, everything Ansible printed)."""
    base = {"name": "bmcbox", "driver": "ipmi", "address": "127.0.0.1", "port": PORT, "username": "admin", "password": SECRET,
            "timeout": 20}
    if base["driver"] == "ipmi" and args.get("driver", "ipmi") == "ipmi":
        base["cipher_suite"] = 3      # VirtualBMC (pyghmi's server) answers a SHA-256 offer with SHA-1
    base.update(args)
    run = adhoc("localhost", "flowstream.platform.host_power", json.dumps(base), extra=["--check"] if check else [])
    hosts = run.data["plays"][0]["tasks"][0]["hosts"] if run.data.get("plays") else {}
    return run.rc, hosts.get("localhost", {"msg": run.explain()}), run.raw + run.stderr


@pytest.fixture(scope="module")
def bmc(running_lab, tmp_path_factory):
    """VirtualBMC (its own daemon, config and ports) in front of a domain on spare1's libvirtd."""
    tmp = tmp_path_factory.mktemp("vbmc")
    virsh("destroy", BOX, check=False)
    virsh("undefine", BOX, check=False)
    (tmp / "box.xml").write_text(DOMAIN)
    virsh("define", str(tmp / "box.xml"))
    (tmp / "bmcs").mkdir()
    conf = tmp / "virtualbmc.conf"
    conf.write_text("[default]\nconfig_dir = %s\npid_file = %s\nserver_port = 50951\n[log]\nlogfile = %s\n"
                    % (tmp / "bmcs", tmp / "vbmcd.pid", tmp / "vbmcd.log"))
    env = dict(os.environ, VIRTUALBMC_CONFIG=str(conf))
    daemon = subprocess.Popen([str(BIN / "vbmcd"), "--foreground"], env=env, stdout=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([str(BIN / "vbmc"), "list"], env=env, capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, "vbmcd did not come up"
            time.sleep(0.5)
        subprocess.run([str(BIN / "vbmc"), "add", BOX, "--port", str(PORT), "--address", "127.0.0.1", "--username", "admin",
                        "--password", SECRET, "--libvirt-uri", URI], env=env, check=True, capture_output=True)
        subprocess.run([str(BIN / "vbmc"), "start", BOX], env=env, check=True, capture_output=True)
        yield
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=20)
        virsh("destroy", BOX, check=False)
        virsh("undefine", BOX, check=False)


def test_ipmi_switches_a_host_through_a_real_bmc(bmc):
    rc, res, _out = power(state="status")
    assert rc == 0 and res["power"]["before"] == "off" and not res["changed"], res
    rc, res, _out = power(state="on", check=True)
    assert rc == 0 and res["changed"] and res["power"]["after"] == "on", res
    assert virsh("domstate", BOX) == "shut off"          # check mode changed nothing
    rc, res, out = power(state="on")
    assert rc == 0 and res["changed"] and (res["power"]["before"], res["power"]["after"]) == ("off", "on"), res
    assert virsh("domstate", BOX) == "running"
    assert SECRET not in out
    rc, res, _out = power(state="on")
    assert rc == 0 and not res["changed"], res
    rc, res, _out = power(state="off")
    assert rc == 0 and res["changed"] and res["power"]["after"] == "off", res
    assert virsh("domstate", BOX) == "shut off"


def test_a_wrong_password_or_a_silent_bmc_is_a_clear_error_without_the_secret(bmc):
    started = time.monotonic()
    rc, res, out = power(state="status", password=SECRET + "x")
    assert rc != 0 and "host bmcbox: power driver ipmi: the BMC at 127.0.0.1:%d" % PORT in res["msg"], res
    assert SECRET not in out
    rc, res, out = power(state="off", port=PORT + 69)
    assert rc != 0 and "host bmcbox: power driver ipmi: the BMC at 127.0.0.1:%d" % (PORT + 69) in res["msg"], res
    assert time.monotonic() - started < 60
    rc, res, _out = power(state="on", interface="lan")
    assert rc != 0 and "interface lan (IPMI 1.5, no encryption) is not supported: use lanplus" in res["msg"], res


@pytest.fixture(scope="module")
def redfish(bmc, tmp_path_factory):  # pylint: disable=redefined-outer-name,unused-argument
    """sushy-tools' Redfish emulator (its own process, HTTP basic auth) in front of the same domain."""
    import bcrypt  # pylint: disable=import-outside-toplevel
    tmp = tmp_path_factory.mktemp("sushy")
    (tmp / "htpasswd").write_text("admin:%s\n" % bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt()).decode())
    uuid = virsh("domuuid", BOX)
    (tmp / "sushy.conf").write_text("SUSHY_EMULATOR_AUTH_FILE = %r\nSUSHY_EMULATOR_ALLOWED_INSTANCES = [%r]\n" % (str(tmp / "htpasswd"), uuid))
    proc = subprocess.Popen([str(BIN / "sushy-emulator"), "--interface", "127.0.0.1", "--port", str(REDFISH_PORT),  # pylint: disable=consider-using-with
                             "--libvirt-uri", URI, "--config", str(tmp / "sushy.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not answers("http://127.0.0.1:%d/redfish/v1/" % REDFISH_PORT):
            assert time.monotonic() < deadline and proc.poll() is None, "sushy-emulator did not come up"
            time.sleep(0.5)
        yield uuid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


REDFISH_PORT = 18231


def test_redfish_switches_a_host_through_a_real_redfish_service(redfish):
    args = {"driver": "redfish", "port": REDFISH_PORT, "scheme": "http"}
    rc, res, _out = power(state="status", **args)          # the first system, found by the module
    assert rc == 0 and res["power"]["before"] == "off", res
    rc, res, out = power(state="on", system_id=redfish, **args)
    assert rc == 0 and res["changed"] and res["power"]["after"] == "on", res
    assert virsh("domstate", BOX) == "running" and SECRET not in out
    rc, res, _out = power(state="on", system_id=redfish, **args)
    assert rc == 0 and not res["changed"], res
    rc, res, _out = power(state="off", system_id=redfish, **args)
    assert rc == 0 and res["changed"] and virsh("domstate", BOX) == "shut off", res
    rc, res, out = power(state="status", password=SECRET + "x", **args)
    assert rc != 0 and "host bmcbox: power driver redfish: the BMC at http://127.0.0.1:%d: GET /redfish/v1/Systems answered HTTP 401" \
        % REDFISH_PORT in res["msg"], res
    assert SECRET not in out
