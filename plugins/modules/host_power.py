#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_power
short_description: Switch a module host on or off through its management controller (IPMI, Redfish) or Wake-on-LAN
version_added: 0.1.0
description:
  - The power drivers of the platform description (C(power.driver)) that speak to hardware -
    what C(playbooks/power-down.yml) and C(power-up.yml) run, on the controller, for hosts whose
    driver is not C(lab).
  - V(ipmi) - IPMI 2.0 (RMCP+, C(lanplus)) to the host's BMC with C(pyghmi), the library
    C(community.general.ipmi_power) uses. V(off) is a hard power-off (chassis control); the
    platform has emptied the host before.
  - V(redfish) - the DMTF Redfish API of the BMC over HTTPS - C(PowerState) of
    C(/redfish/v1/Systems/<system_id>), and the C(ComputerSystem.Reset) action (C(ForceOff),
    C(On)).
  - V(wol) - Wake-on-LAN, on only - a magic packet (6 x FF, then the MAC 16 times) to the
    broadcast address, UDP port 9. Without a way to see the host's power, a V(wol) host is
    reported V(unknown); power-down switches such a host off with an orderly C(poweroff) over
    SSH.
  - The password is taken from O(password) (the vaulted C(flowstream_power_password) of the
    host), is C(no_log), and never appears in results, diffs or errors.
  - Every error names the host (O(name)), the driver and the address, and comes within
    O(timeout) seconds when the BMC does not answer.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - pyghmi (for V(ipmi))
options:
  name:
    description: The module host (its inventory name), for messages.
    type: str
    required: true
  driver:
    description: The power driver (C(power.driver) of the platform description).
    type: str
    choices: [ipmi, redfish, wol]
    required: true
  state:
    description: V(on), V(off), or V(status) (only read).
    type: str
    choices: ['on', 'off', status]
    default: status
  address:
    description: The BMC's address (V(ipmi), V(redfish)).
    type: str
  port:
    description: The BMC's port (V(ipmi) default 623, V(redfish) default 443).
    type: int
  username:
    description: The BMC user.
    type: str
  password:
    description: The BMC password (the host's vaulted C(flowstream_power_password)).
    type: str
  interface:
    description: V(ipmi) - C(lanplus) (IPMI 2.0); C(lan) (IPMI 1.5, no encryption) is refused.
    type: str
    choices: [lan, lanplus]
    default: lanplus
  cipher_suite:
    description:
      - V(ipmi) - the RMCP+ cipher suite, as C(ipmitool -C) names it - V(17) (HMAC-SHA256, AES-128;
        pyghmi's first choice) or V(3) (HMAC-SHA1, AES-128), for BMCs that answer a SHA-256 offer
        with SHA-1 (VirtualBMC does; pyghmi 1.6 then fails to log in).
    type: int
    choices: [3, 17]
    default: 17
  system_id:
    description: V(redfish) - the system's id under C(/redfish/v1/Systems/); the first system when left out.
    type: str
  validate_certs:
    description: V(redfish) - check the BMC's TLS certificate.
    type: bool
    default: true
  scheme:
    description: V(redfish) - C(https), or C(http) for an emulator.
    type: str
    choices: [https, http]
    default: https
  mac:
    description: V(wol) - the host's MAC address.
    type: str
  broadcast:
    description: V(wol) - where the magic packet goes.
    type: str
    default: 255.255.255.255
  timeout:
    description: Seconds for the BMC to answer, and for the host to reach the power state asked.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Power a host off through its BMC
  flowstream.platform.host_power:
    name: mh5
    driver: ipmi
    address: 10.20.1.15
    username: flowstream
    password: "{{ flowstream_power_password }}"
    state: "off"
  delegate_to: localhost
"""

RETURN = r"""
power:
  description: The host's power before and after (V(on), V(off), V(unknown)), and the seconds the change took.
  returned: always
  type: dict
  sample: {before: "on", after: "off", seconds: 4.2}
"""

import json
import socket
import struct
import time
import urllib.error

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url

try:
    from pyghmi.ipmi import command as ipmi_command
    from pyghmi.ipmi.private import session as ipmi_session
    from pyghmi import exceptions as ipmi_exceptions
    HAS_PYGHMI = True
except ImportError:  # pragma: no cover - the set-up installs it
    HAS_PYGHMI = False


class PowerError(Exception):
    pass


def _why(exc):
    text = str(exc)
    return text if text not in ("", "None") else "no answer (%s)" % type(exc).__name__


def _sha1_first(open_request):
    """pyghmi's RMCP+ open-session request, offering cipher suite 3 (SHA-1) from the start."""
    def request(self):
        if self.attemptedhash == 256:
            self.attemptedhash = 1
        return open_request(self)
    return request


class Ipmi(object):
    def __init__(self, p):
        if p["interface"] != "lanplus":
            raise PowerError("interface lan (IPMI 1.5, no encryption) is not supported: use lanplus")
        if p["cipher_suite"] == 3:
            ipmi_session.Session._open_rmcpplus_request = _sha1_first(ipmi_session.Session._open_rmcpplus_request)
        self.where = "%s:%d" % (p["address"], p["port"] or 623)
        try:
            self.cmd = ipmi_command.Command(bmc=p["address"], userid=p["username"] or "", password=p["password"] or "",
                                            port=p["port"] or 623, keepalive=False)
        except (ipmi_exceptions.IpmiException, socket.error) as exc:
            raise PowerError("the BMC at %s did not answer: %s" % (self.where, _why(exc))) from None
        except struct.error as exc:
            raise PowerError("the BMC at %s answered the RMCP+ login with another hash than offered (%s): a BMC that answers "
                             "SHA-256 with SHA-1 needs cipher_suite 3" % (self.where, exc)) from None

    def state(self):
        try:
            return self.cmd.get_power()["powerstate"]
        except ipmi_exceptions.IpmiException as exc:
            raise PowerError("the BMC at %s: %s" % (self.where, _why(exc))) from None

    def set(self, want, timeout):
        try:
            self.cmd.set_power(want, wait=timeout)
        except ipmi_exceptions.IpmiException as exc:
            raise PowerError("the BMC at %s: %s" % (self.where, _why(exc))) from None


class Redfish(object):
    def __init__(self, p):
        port = p["port"] or (443 if p["scheme"] == "https" else 80)
        self.base = "%s://%s:%d" % (p["scheme"], p["address"], port)
        self.timeout = p["timeout"]
        self.username, self.password = p["username"], p["password"]
        self.validate_certs = p["validate_certs"]
        self.system = "/redfish/v1/Systems/%s" % p["system_id"] if p["system_id"] else self._first_system()

    def _call(self, path, body=None):
        method = "GET" if body is None else "POST"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = open_url(self.base + path, data=None if body is None else json.dumps(body), method=method, headers=headers,
                            url_username=self.username, url_password=self.password, force_basic_auth=bool(self.username),
                            validate_certs=self.validate_certs, timeout=self.timeout)
            text = resp.read().decode() or "{}"
        except urllib.error.HTTPError as exc:
            raise PowerError("the BMC at %s: %s %s answered HTTP %d" % (self.base, method, path, exc.code)) from None
        except (urllib.error.URLError, socket.timeout, OSError) as exc:
            raise PowerError("the BMC at %s did not answer: %s" % (self.base, getattr(exc, "reason", exc))) from None
        try:
            return json.loads(text)
        except ValueError:
            raise PowerError("the BMC at %s: %s is not JSON" % (self.base, path)) from None

    def _first_system(self):
        members = self._call("/redfish/v1/Systems").get("Members") or []
        if not members:
            raise PowerError("the BMC at %s lists no system under /redfish/v1/Systems" % self.base)
        return members[0]["@odata.id"].rstrip("/")

    def state(self):
        value = (self._call(self.system).get("PowerState") or "").lower()
        return value if value in ("on", "off") else "unknown"

    def set(self, want, timeout):
        self._call(self.system + "/Actions/ComputerSystem.Reset", {"ResetType": "On" if want == "on" else "ForceOff"})
        deadline = time.monotonic() + timeout
        while self.state() != want:
            if time.monotonic() > deadline:
                raise PowerError("the host was not %s %d s after the BMC at %s was asked" % (want, timeout, self.base))
            time.sleep(0.5)


def magic_packet(mac):
    digits = mac.replace(":", "").replace("-", "").lower()
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise PowerError("mac %r is not a MAC address such as 52:54:00:12:34:56" % mac)
    return b"\xff" * 6 + bytes.fromhex(digits) * 16


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            driver=dict(type="str", required=True, choices=["ipmi", "redfish", "wol"]),
            state=dict(type="str", choices=["on", "off", "status"], default="status"),
            address=dict(type="str"),
            port=dict(type="int"),
            username=dict(type="str"),
            password=dict(type="str", no_log=True),
            interface=dict(type="str", choices=["lan", "lanplus"], default="lanplus"),
            cipher_suite=dict(type="int", choices=[3, 17], default=17),
            system_id=dict(type="str"),
            validate_certs=dict(type="bool", default=True),
            scheme=dict(type="str", choices=["https", "http"], default="https"),
            mac=dict(type="str"),
            broadcast=dict(type="str", default="255.255.255.255"),
            timeout=dict(type="int", default=30),
        ),
        required_if=[("driver", "ipmi", ("address",)), ("driver", "redfish", ("address",)), ("driver", "wol", ("mac",))],
        supports_check_mode=True,
    )
    p = module.params
    where = "host %s: power driver %s" % (p["name"], p["driver"])
    started = time.monotonic()
    try:
        if p["driver"] == "wol":
            packet = magic_packet(p["mac"])
            if p["state"] == "off":
                raise PowerError("Wake-on-LAN switches a host on only (power-down switches a wol host off over SSH)")
            result = {"changed": p["state"] == "on", "power": {"before": "unknown", "after": "unknown"}}
            if p["state"] == "on" and not module.check_mode:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.sendto(packet, (p["broadcast"], 9))
            module.exit_json(**result)
        if p["driver"] == "ipmi" and not HAS_PYGHMI:
            module.fail_json(msg=missing_required_lib("pyghmi"))
        bmc = Ipmi(p) if p["driver"] == "ipmi" else Redfish(p)
        before = bmc.state()
        after = before
        changed = p["state"] in ("on", "off") and before != p["state"]
        if changed and not module.check_mode:
            bmc.set(p["state"], p["timeout"])
            after = bmc.state()
        elif changed:
            after = p["state"]
    except PowerError as exc:
        module.fail_json(msg="%s: %s" % (where, exc))
    result = {"changed": changed, "power": {"before": before, "after": after, "seconds": round(time.monotonic() - started, 2)}}
    if module._diff:
        result["diff"] = {"before": "power: %s\n" % before, "after": "power: %s\n" % after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
