#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_trunk
short_description: A module host's trunk to the switch - BFD on either end, and the fence of a failed host
version_added: 0.1.0
description:
  - Manages one end of the trunk between a Flowstream module host and the switch, on the Open
    vSwitch it runs against - the switch's trunk port (run it where the switch's OVSDB is) or
    the host bridge's (run it on the module host).
  - O(bfd) turns Bidirectional Forwarding Detection on (or off) on that end, in ovs-vswitchd
    itself, so a host whose trunk, Open vSwitch or box dies is seen within O(bfd.min_rx) x 3 ms
    (Open vSwitch's detect multiplier is fixed at 3). deploy-chain sets it on both ends of every
    trunk. Keys of the C(bfd) column the module does not manage (e.g. C(bfd_src_ip)) are left alone.
  - O(fence=fenced) - only on the switch's end - keeps a failed host away from the traffic. The
    mark goes into the switch's trunk Port C(external_ids) (C(flowstream-fence), C(-since),
    C(-reason)), the trunk's OpenFlow port is set C(down) (C(ovs-ofctl mod-port)), and a flow
    above every chain flow (cookie C(0xF5FE...), priority 65535) drops whatever arrives on it - so
    nothing the host still runs reaches the chains when it comes back, even when its link comes
    up again (Open vSwitch follows the link, not the earlier port-mod). The planner
    (M(flowstream.platform.chain_plan)) never places on a fenced host. A run with the mark present
    puts back what is missing (e.g. after ovs-vswitchd restarted, the port up and the flow gone).
    O(fence=unfenced) takes the mark, the flow and the port-down away (C(playbooks/uncordon-host.yml)).
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
  - C(ovs-vsctl) and C(ovs-ofctl) (Open vSwitch; tested with 3.1) on the bridge's host
options:
  bridge:
    description: The bridge the trunk port is on - the switch's bridge, or the host bridge.
    type: str
    required: true
  port:
    description:
      - The trunk port. On a host bridge it may be left out - the port whose Interface carries
        C(external_ids:flowstream-role=trunk) is the trunk.
    type: str
  ports:
    description:
      - Several trunk ports of the bridge at once, for O(bfd) only (the switch's end of every trunk
        in one run and one OVSDB transaction, as deploy-chain does); not with O(port) or O(fence).
    type: list
    elements: str
  ovsdb:
    description: The OVSDB to talk to (C(ovs-vsctl --db)), e.g. C(tcp:192.0.2.1:6640); the local one when left out.
    type: str
  openflow_target:
    description:
      - How C(ovs-ofctl) reaches the bridge for O(fence) (the port's OpenFlow state); the bridge's
        name (the local switch) when left out.
    type: str
  bfd:
    description: BFD on this end. Left out, BFD is not touched.
    type: dict
    suboptions:
      enabled:
        description: BFD on (V(true)) or off.
        type: bool
        default: true
      min_tx:
        description: Fastest rate, in ms, at which this end sends BFD control packets.
        type: int
        default: 100
      min_rx:
        description: Fastest rate, in ms, at which this end wants to receive them; the remote declares the session down after 3 x this without one.
        type: int
        default: 100
      decay_min_rx:
        description: When no traffic but BFD crosses the link for this many ms, slow down to it (0, the default, never).
        type: int
        default: 0
  fence:
    description:
      - Fence the host behind this trunk (V(fenced)), fence it as powered off by the platform
        (V(powered_off) - C(playbooks/power-down.yml); the same drop flow and port down, and
        M(flowstream.platform.failure_info) reports it V(powered_off), not failed), or take the
        fence away (V(unfenced)). Left out, the fence is not touched.
    type: str
    choices: [fenced, powered_off, unfenced]
  reason:
    description: Why the host is fenced (kept with the mark).
    type: str
seealso:
  - module: flowstream.platform.failure_info
  - module: flowstream.platform.module_host_info
notes:
  - BFD packets are consumed by ovs-vswitchd on each end before the flow table, so they need no
    flow; both ends must run BFD for a session to come up (deploy-chain sets both).
"""

EXAMPLES = r"""
- name: BFD on the host bridge's end of the trunk (the port marked flowstream-role=trunk)
  flowstream.platform.host_trunk:
    bridge: fs-host
    bfd: {min_tx: 100, min_rx: 100}

- name: And on the switch's end
  flowstream.platform.host_trunk:
    bridge: fsl-sw
    port: fsl-mh1-tr
    bfd: {min_tx: 100, min_rx: 100}
  delegate_to: "{{ groups['flowstream_switches'][0] }}"

- name: Fence mh2 (failed)
  flowstream.platform.host_trunk:
    bridge: fsl-sw
    port: fsl-mh2-tr
    fence: fenced
    reason: BFD down and no SSH for 3 s
"""

RETURN = r"""
trunks:
  description: With O(ports) - per port, as RV(trunk).
  returned: when ports is given
  type: dict
trunk:
  description:
    - The trunk end after the run - C(port), C(ofport), C(link_state), C(admin_state), C(bfd)
      (C(enabled), C(min_tx), C(min_rx), C(detect_ms), C(state), C(forwarding), C(remote_state),
      C(diagnostic), C(flap_count)), C(fence) (null or C(state), C(since), C(reason)).
  returned: unless ports is given
  type: dict
  sample:
    port: fsl-mh1-tr
    ofport: 3
    link_state: up
    admin_state: up
    bfd: {enabled: true, min_tx: 100, min_rx: 100, detect_ms: 300, state: up, forwarding: true, remote_state: up,
          diagnostic: null, flap_count: 1}
    fence: null
actions:
  description: What was changed (or would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["bfd on fsl-mh1-tr: enable=true, min_rx=100, min_tx=100"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils import _trunk
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB


def _text(info):
    if info is None:
        return "(no such port)\n"
    bfd = info["bfd_config"]
    lines = ["bfd: %s" % (", ".join("%s=%s" % kv for kv in sorted(bfd.items())) or "(none)")]
    fence = info["fence"]
    lines.append("fence: %s" % ("fenced since %s%s" % (fence["since"], " (%s)" % fence["reason"] if fence.get("reason") else "")
                                if fence else "none"))
    return "\n".join(lines) + "\n"


def _bfd_on_many(module, ovs, bridge, ports, want):
    """BFD on several ports of ``bridge`` in one OVSDB transaction; exits the module."""
    on_bridge = set(ovs.ports(bridge))
    stray = [pt for pt in ports if pt not in on_bridge]
    if stray:
        module.fail_json(msg="%s: not a port of %s" % (", ".join(stray), bridge))
    before = _trunk.read_all(ovs, ports)
    changes = {pt: _trunk.bfd_changes(before[pt]["bfd_config"], want) for pt in ports}
    changes = {pt: c for pt, c in changes.items() if c[0] or c[1]}
    actions = ["bfd on %s: %s" % (pt, ", ".join(["%s=%s" % kv for kv in sorted(c[0].items())] + ["no %s" % k for k in c[1]]))
               for pt, c in sorted(changes.items())]
    if changes and not module.check_mode:
        _trunk.set_bfd(ovs, changes)
    after = _trunk.read_all(ovs, ports) if changes and not module.check_mode else before
    result = {"changed": bool(changes), "actions": actions,
              "trunks": {pt: {k: v for k, v in after[pt].items() if k != "bfd_config"} for pt in ports}}
    if module._diff:
        def text(infos):
            return "".join("%s %s" % (pt, _text(infos[pt])) for pt in ports)
        predicted = {pt: dict(before[pt], bfd_config=dict({k: v for k, v in before[pt]["bfd_config"].items()
                                                           if k not in _trunk.BFD_KEYS}, **want)) for pt in ports}
        result["diff"] = {"before_header": "%s trunks" % bridge, "after_header": "%s trunks" % bridge,
                          "before": text(before), "after": text(predicted if module.check_mode else after)}
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bridge=dict(type="str", required=True),
            port=dict(type="str"),
            ports=dict(type="list", elements="str"),
            ovsdb=dict(type="str"),
            openflow_target=dict(type="str"),
            bfd=dict(type="dict", options=dict(
                enabled=dict(type="bool", default=True),
                min_tx=dict(type="int", default=100),
                min_rx=dict(type="int", default=100),
                decay_min_rx=dict(type="int", default=0),
            )),
            fence=dict(type="str", choices=["fenced", "powered_off", "unfenced"]),
            reason=dict(type="str"),
        ),
        supports_check_mode=True,
        mutually_exclusive=[("port", "ports"), ("ports", "fence")],
    )
    p = module.params
    ovs = OVSDB(db=p["ovsdb"])
    actions = []
    try:
        want_bfd = None
        if p["bfd"] is not None:
            try:
                want_bfd = _trunk.bfd_want(p["bfd"]["enabled"], p["bfd"]["min_tx"], p["bfd"]["min_rx"], p["bfd"]["decay_min_rx"])
            except ValueError as exc:
                module.fail_json(msg="%s: %s" % (p["bridge"], exc))
        if not ovs.bridge_exists(p["bridge"]):
            module.fail_json(msg="bridge %s does not exist in %s" % (p["bridge"], p["ovsdb"] or "the local OVSDB"))
        if p["ports"] is not None:
            if want_bfd is None:
                module.fail_json(msg="ports is for bfd: give bfd (or use port for one trunk)")
            _bfd_on_many(module, ovs, p["bridge"], p["ports"], want_bfd)
        port = p["port"] or _trunk.host_trunk_port(ovs, p["bridge"])
        if port is None:
            module.fail_json(msg="%s has no port marked external_ids:flowstream-role=trunk: name the trunk with port" % p["bridge"])
        if ovs.port_bridge(port) != p["bridge"]:
            module.fail_json(msg="%s is not a port of %s (it is on %s)" % (port, p["bridge"], ovs.port_bridge(port) or "no bridge"))
        before = _trunk.read(ovs, port)
        ofctl = None
        port_down = None
        drop_flow = None
        if p["fence"] is not None:
            ofctl = Ofctl(p["openflow_target"] or p["bridge"], version="OpenFlow13", timeout=10)
            desc = [d for d in ofctl.dump_ports() if d.name == port]
            port_down = bool(desc) and "PORT_DOWN" in desc[0].config
            if not isinstance(before["ofport"], int) or before["ofport"] < 1:
                module.fail_json(msg="%s has no OpenFlow port number (ofport %r, link %s): is it plugged in?"
                                 % (port, before["ofport"], before.get("link_state")))
            drop_flow = bool(ofctl.dump_flows(cookie=_trunk.fence_cookie(before["ofport"]), cookie_mask=(1 << 64) - 1))
        steps = []
        if want_bfd is not None:
            to_set, to_remove = _trunk.bfd_changes(before["bfd_config"], want_bfd)
            if to_set or to_remove:
                actions.append("bfd on %s: %s" % (port, ", ".join(["%s=%s" % kv for kv in sorted(to_set.items())]
                                                                  + ["no %s" % k for k in to_remove])))
                steps.append(lambda: _trunk.set_bfd(ovs, {port: (to_set, to_remove)}))
        if p["fence"] in _trunk.FENCE_STATES:
            mark = before["fence"]
            if mark is None or mark["state"] != p["fence"] or (p["reason"] is not None and p["reason"] != mark.get("reason")):
                what = "fence" if p["fence"] == "fenced" else "powered-off"
                actions.append("%s mark on %s%s" % (what, port, " (%s)" % p["reason"] if p["reason"] else ""))
                steps.append(lambda: _trunk.write_fence(ovs, port, p["fence"], p["reason"] or (mark or {}).get("reason")))
            if not drop_flow:
                actions.append("drop flow for everything from %s" % port)
                steps.append(lambda: ofctl.bundle(["flow add " + _trunk.fence_flow(before["ofport"])]))
            if not port_down:
                actions.append("OpenFlow port %s down" % port)
                steps.append(lambda: ofctl.mod_port(port, "down"))
        elif p["fence"] == "unfenced" and before["fence"] is not None:
            actions.append("fence mark off %s" % port)
            steps.append(lambda: _trunk.write_fence(ovs, port, None))
            if drop_flow:
                actions.append("drop flow from %s removed" % port)
                steps.append(lambda: ofctl.bundle(["flow delete cookie=0x%x/-1" % _trunk.fence_cookie(before["ofport"])]))
            if port_down:
                actions.append("OpenFlow port %s up" % port)
                steps.append(lambda: ofctl.mod_port(port, "up"))
        if not module.check_mode:
            for step in steps:
                step()
        after = _trunk.read(ovs, port) if steps and not module.check_mode else before
        result = {"changed": bool(steps), "actions": actions, "trunk": {k: v for k, v in after.items() if k != "bfd_config"}}
        if module._diff:
            predicted = dict(before, bfd_config=dict({k: v for k, v in before["bfd_config"].items() if k not in _trunk.BFD_KEYS},
                                                     **want_bfd) if want_bfd is not None else before["bfd_config"])
            if p["fence"] in _trunk.FENCE_STATES and steps:
                predicted["fence"] = {"state": p["fence"], "since": (before["fence"] or {}).get("since") or "(now)",
                                      "reason": p["reason"] or (before["fence"] or {}).get("reason")}
            elif p["fence"] == "unfenced":
                predicted["fence"] = None
            result["diff"] = {"before_header": "%s %s" % (p["bridge"], port), "after_header": "%s %s" % (p["bridge"], port),
                              "before": _text(before), "after": _text(after if not module.check_mode else predicted)}
    except (CommandError, OfctlError) as exc:
        module.fail_json(msg=str(exc), actions=actions)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
