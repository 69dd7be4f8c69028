#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: processing_module
short_description: A processing-module instance (firewall, monitor, shaper, inspection...) on a module host
version_added: 0.1.0
description:
  - Installs, starts, stops or removes one instance of a Flowstream I(processing module) on the
    module host it runs on (over SSH, like any module).
  - "An instance is a bump in the wire with a C(left) leg (towards the traffic's source) and a
    C(right) leg (towards its destination). Each leg is an access port of the host bridge with
    its own VLAN tag, so the host's trunk to the switch carries (instance, leg) as a VLAN tag.
    The leg ports carry OVSDB C(external_ids) (C(flowstream-instance), C(-kind), C(-type),
    C(-chain), C(-step), C(-leg)): the host itself knows what runs on it."
  - "Kinds: V(kernel) - a network namespace C(fs-<id>) with a Linux bridge joining the legs,
    an nftables ruleset (bridge family; checked with C(nft -c), applied in one C(nft -f)
    transaction) and tc token buckets; V(process) - a program in the instance namespace moving
    packets between the legs, supervised (restarted when it dies) without needing systemd;
    V(click) - a Click configuration run by the userlevel C(click) binary (with a ControlSocket
    in C(/run/flowstream/<id>/click.sock); checked by Click itself before anything changes); V(vm) - a libvirt
    domain (QEMU) with two virtio NICs on the host bridge."
  - The type comes from the catalogue (built-in types V(wire), V(firewall), V(shaper),
    V(monitor), V(inspect), V(classify), plus the operator's own in O(catalogue)); each type states which
    kinds can run it.
  - The whole request is validated first (type, kind, the host's kinds, parameters, VLAN tags
    against the tags already used on the host bridge, nftables rules, images, memory); a bad
    request fails naming the instance and the field, and changes nothing.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.quiesce
attributes:
  check_mode:
    support: full
  diff_mode:
    support: partial
    details:
      - The diff shows the instance's configuration as the host reports it (kind, type, chain and step,
        legs and VLANs, VM size); in check mode the C(after) side adds C(pending_actions), what
        the run would do. Parameter values (firewall rules, rates) appear as the actions that apply
        them, with a digest of the new ruleset, not line by line.
  idempotent:
    support: full
requirements:
  - C(ovs-vsctl) and C(ovs-ofctl) (Open vSwitch; tested with 3.1), C(ip) (iproute2), C(nft) (nftables) and C(tc) on the module host, run as root
  - Kind V(vm) - libvirt-python and a running C(libvirtd) with QEMU on the module host
  - Kind V(click) - the Click modular router's userlevel driver (C(click), built by the collection's C(scripts/click.sh) or
    the role C(flowstream.platform.click))
options:
  instance:
    description:
      - The instance id, unique on the host. 1 to 10 characters, V(a-z), V(0-9) and V(-),
        starting with a letter (it names the leg ports C(fs-<id>-l) and C(fs-<id>-r)).
      - One of O(instance) and O(instances) is required. With O(instance), O(kind), O(type) and
        O(vlans) are required unless O(state=absent).
    type: str
  instances:
    description:
      - Several instances in one run - what the operations engine does on a host in each step of
        a change (one module run per host instead of one per instance).
      - To make them (O(state) V(present), V(started) or V(stopped)) - each element is a dict
        of one instance's own options - C(instance) (required), C(kind), C(type) and C(vlans)
        (required), C(params), C(chain), C(step), C(vm), C(carried_state), C(hold), as the
        module's options of those names say. The other options (O(state), O(host_bridge),
        O(port_type), O(host_kinds), O(catalogue), O(click_binary)) serve every instance. Every
        element is validated first - as one instance would be, and against each other (an id or
        a VLAN tag named twice) - so a bad one fails naming it (RV(field) C(instances[N].vlans.left))
        before anything is made; then each is converged in turn. RV(converged) says what each became.
      - To remove them (O(state=absent)) - their ids; each removed in turn, once quiet when
        O(quiesce) is given. One that is not on the host is left as it is. RV(removed) says what each was.
      - Mutually exclusive with O(instance) and with the options of one instance (O(kind), O(type), O(vlans) ...).
    type: list
    elements: raw
  state:
    description:
      - V(present) or V(started) - installed and forwarding; V(stopped) - installed, not
        forwarding (legs down, program or VM stopped); V(absent) - removed with everything it
        created on the host.
    type: str
    choices: [present, started, stopped, absent]
    default: present
  kind:
    description: How the instance runs. Not needed for O(state=absent).
    type: str
    choices: [kernel, process, click, vm]
  type:
    description: The catalogue type. Required unless O(state=absent).
    type: str
  params:
    description:
      - The type's parameters, for example O(params) C({rules, policy}) for V(firewall),
        C({rate, burst, latency}) for V(shaper), C({patterns, action, dscp}) for V(inspect).
    type: dict
    default: {}
  vlans:
    description:
      - The VLAN tag of each leg on the host bridge (2 to 4094), unique on the host. Required
        unless O(state=absent).
    type: dict
    suboptions:
      left:
        description: Tag of the left leg.
        type: int
        required: true
      right:
        description: Tag of the right leg.
        type: int
        required: true
  chain:
    description: The service chain the instance serves (recorded in external_ids).
    type: str
  step:
    description: The chain step the instance serves (recorded in external_ids).
    type: str
  host_bridge:
    description: The host bridge (Open vSwitch) on the module host.
    type: str
    default: fs-host
  port_type:
    description:
      - The Open vSwitch interface type of the legs' ports on the host bridge (the inventory's
        C(flowstream_port_type)), for the V(kernel), V(process) and V(click) kinds.
      - V(system) is Open vSwitch's AF_PACKET socket. V(afxdp-nonpmd) is an AF_XDP socket
        polled by the main C(ovs-vswitchd) thread, with C(options:xdp-mode=generic); on the lab a
        chain through three kernel instances on one host lost far less past its loss-free rate
        (docs/benchmarks.md), and each port costs about 70 MiB of C(ovs-vswitchd) memory.
      - A leg of another type is re-created with this one (a short interruption of its
        traffic), never changed in place. A V(vm) instance's legs are made by libvirt and stay
        V(system).
    type: str
    choices: [system, afxdp-nonpmd]
    default: system
  host_kinds:
    description:
      - The kinds this host can run (the inventory's C(flowstream_kinds)); a request for
        another kind fails. Not checked when omitted.
    type: list
    elements: str
  catalogue:
    description:
      - The operator's own types, added to the built-in ones (the inventory's
        C(flowstream_catalogue)). See the collection's docs/processing-modules.md.
    type: dict
    default: {}
  vm:
    description:
      - For O(kind=vm) - the guest, overriding the type's C(vm) section.
    type: dict
    suboptions:
      image:
        description: C({kernel, initrd, cmdline}) paths on the host, or C({disk}).
        type: dict
      memory:
        description: Guest memory in MiB.
        type: int
      vcpus:
        description: Virtual CPUs.
        type: int
  click_binary:
    description:
      - Path of the userlevel Click binary. Default - C(click) on the PATH, else
        C(/opt/flowstream/click/bin/click), where the project's set-up builds it.
    type: path
  carried_state:
    description:
      - State carried over from a copy of this instance on another host (a make-before-break
        move), as that copy's O(export_state) returned it - a monitor's per-flow counters, an
        inspecting filter's flagged connections. Kept beside the instance (C(/run/flowstream/<id>/carried.json))
        and counted with what the instance counts itself; a process reads flagged connections
        from it before its first packet and whenever it changes. Only a different state is a change.
    type: dict
  hold:
    description:
      - For the new copy of a moving instance (what the operations engine asks) - when the copy is
        made by this run, it holds what it would send, per direction, until the marker of the move
        (this O(hold.token)) comes through the old copy, then lets it all out in order - the
        order barrier of a make-before-break move (the collection's docs/operations.md). A
        direction whose marker does not come is released O(hold.timeout) seconds after its first
        held frame. Kernel instances hold in their legs' queues, built-in process types in the
        program; Click and an operator's own process types do not hold. RV(hold) reports it.
    type: dict
    suboptions:
      token:
        description: The move's token (the markers carry it).
        type: str
        required: true
      timeout:
        description: Seconds after a direction's first held frame to let it go without its marker.
        type: float
        default: 10.0
  export_state:
    description:
      - With O(state=absent) - return the instance's state (RV(exported_state)) as it was right
        before removal, for its new copy's O(carried_state).
    type: bool
    default: false
notes:
  - Click is not packaged for Debian 12 or PyPI; the project's set-up builds it from the pinned
    source (the collection's C(scripts/click.sh)). Without a C(click) binary on the host, a
    V(click) instance fails saying so and how to provide it; nothing is started.
  - A running V(click) instance takes a new configuration without a restart when it can - its
    elements' C(config) handlers when only their arguments changed, else the driver's
    C(hotconfig) (a new router swapped in, queues carried over) - and restarts only when Click
    refuses both. RV(reconfigured) says which.
  - A running V(process) or V(click) instance whose new command (or configuration) does not stay
    up is not left stopped - its old command runs again (for Click, with its old configuration
    file put back), and the task fails saying the change was rolled back. The parameters were
    checked first, here and on the controller; this covers what only the program can judge (a
    value an operator's catalogue type allows that its program refuses).
"""

EXAMPLES = r"""
- name: A firewall on mh1, kernel elements
  flowstream.platform.processing_module:
    instance: fw1
    kind: kernel
    type: firewall
    params:
      rules:
        - ip saddr 198.18.1.0/28 udp dport 53 drop
        - tcp dport 23 drop
      policy: accept
    vlans: {left: 101, right: 102}
    chain: web
    step: "0"

- name: The same firewall as a Click configuration (new rules on a later run change it live)
  flowstream.platform.processing_module:
    instance: fw2
    kind: click
    type: firewall
    params:
      rules:                                      # the kernel kind's rules, as IPFilter patterns
        - ip saddr 198.18.1.0/28 udp dport 53 drop
        - tcp dport 23 drop
        - deny src host 198.18.1.99               # or IPFilter's own form
    vlans: {left: 105, right: 106}
  register: fw2

- name: A per-flow monitor as a supervised process
  flowstream.platform.processing_module:
    instance: mon1
    kind: process
    type: monitor
    vlans: {left: 103, right: 104}

- name: Stop it (installed, not forwarding)
  flowstream.platform.processing_module:
    instance: mon1
    kind: process
    type: monitor
    vlans: {left: 103, right: 104}
    state: stopped

- name: Remove it
  flowstream.platform.processing_module:
    instance: mon1
    state: absent

- name: Two instances of a chain on this host, in one run (each checked before either is made)
  flowstream.platform.processing_module:
    instances:
      - {instance: fw3, kind: kernel, type: firewall, vlans: {left: 111, right: 112}, chain: web, step: fw,
         params: {rules: ["tcp dport 23 drop"], policy: accept}}
      - {instance: mon3, kind: process, type: monitor, vlans: {left: 113, right: 114}, chain: web, step: mon}
  register: made                                  # made.converged: what each became

- name: Remove two old copies once their legs are quiet, in one run
  flowstream.platform.processing_module:
    instances: [fw1, fw2]
    state: absent
    quiesce: {quiet_ms: 200, timeout: 10}
"""

RETURN = r"""
instance:
  description:
    - The instance as the host reports it after the change (null when absent), with its C(state)
      (V(running), V(stopped); for a VM the domain's state) as M(flowstream.platform.module_host_info)
      reports it.
  returned: always
  type: dict
  sample:
    kind: kernel
    type: firewall
    chain: web
    step: "0"
    legs:
      left: {port: fs-fw1-l, vlan: 101, port_type: system, rx_packets: 0, tx_packets: 0, rx_bytes: 0, tx_bytes: 0}
      right: {port: fs-fw1-r, vlan: 102, port_type: system, rx_packets: 0, tx_packets: 0, rx_bytes: 0, tx_bytes: 0}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: str
  sample: ["created instance namespace fs-fw1", "applied the nftables ruleset of fw1 (firewall, sha256:614ef2217361778d)"]
exported_state:
  description: With O(export_state), the state read right before the removal (null for a stateless
    instance, and for a VM, whose state is its guest's memory).
  returned: when export_state is true
  type: dict
  sample: {flows: [{src: 198.18.1.1, dst: 198.18.1.2, proto: 17, sport: 40000, dport: 8000, packets: 1200, bytes: 110400}]}
hold:
  description:
    - The hold of a new copy of a moving instance, once there is one - per direction (V(fwd), V(rev))
      C(released_by) (V(marker) - in order, V(timeout), null while holding), C(held) (frames),
      C(held_ms); for a kernel instance, how its release was paced - C(paced_ms), C(rate) (the last
      pace, bytes/s) and C(left) (frames still queued when pacing ended); C(final) once both
      directions are released.
  returned: when the instance has held for a move
  type: dict
  sample: {token: 3f2a9c1e0b4d, final: true, directions: {fwd: {released_by: marker, held: 812, held_ms: 640.2, paced_ms: 74.4,
                                                                rate: 598849, left: 0},
           rev: {released_by: marker, held: 0, held_ms: 0.0}}}
quiesce:
  description: With O(quiesce) - C(quiet) (true when the legs went still), C(waited_ms), C(packets_since)
    (packets the legs passed while waiting).
  returned: when quiesce is given and the instance was there
  type: dict
  sample: {quiet: true, waited_ms: 240, packets_since: 3}
removed:
  description: With O(instances) - per instance named, in order, C(instance), C(was) (its kind and
    type when it was there, else null) and, with O(quiesce), C(quiesce) as RV(quiesce) says.
  returned: when instances is given
  type: list
  elements: dict
  sample: [{instance: web4b51a, was: {kind: kernel, type: monitor}, quiesce: {quiet: true, waited_ms: 212, packets_since: 0}}]
converged:
  description:
    - With O(instances) to make them - per instance, in order, C(instance), C(changed), C(actions)
      (what was done to it, or in check mode would be), C(state) (V(running), V(stopped), null in
      check mode for one not made yet) and, as for one instance, C(hold) and C(reconfigured). On
      a failure midway, the instances converged before it.
  returned: when instances is given with state present, started or stopped
  type: list
  elements: dict
  sample: [{instance: web4b51a, changed: true, actions: ["created instance namespace fs-web4b51a"], state: running}]
reconfigured:
  description:
    - How a running V(click) instance took its new configuration - C(how) V(handlers) (its
      elements' config handlers, C(elements) lists them), V(hotconfig) (a new router swapped in;
      C(why) not the handlers) or V(restart) (C(why)).
  returned: when a running click instance's configuration changed
  type: dict
  sample: {how: handlers, elements: [fw_fwd, fw_rev]}
field:
  description: On failure, the field of the request at fault.
  returned: failed
  type: str
  sample: vlans.left
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError
from ansible_collections.flowstream.platform.plugins.module_utils._host_info import instance_state
from ansible_collections.flowstream.platform.plugins.module_utils._instance import check_id
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kinds import QUIESCE_OPTION
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import PORT_TYPES
from ansible_collections.flowstream.platform.plugins.module_utils._processing import ProcessingModules


def configuration(instance):
    """The instance without its live counters: what a diff compares."""
    if not instance:
        return {}
    out = {k: v for k, v in instance.items() if k != "legs"}
    out["legs"] = {leg: {k: v for k, v in info.items() if k in ("port", "vlan", "port_type")}
                   for leg, info in (instance.get("legs") or {}).items()}
    return out


def applied(module, engine, p, **more):
    """``engine.apply(p)``, or the module fails naming the instance (and the field), with the
    actions done so far (and ``more``)."""
    try:
        return engine.apply(p)
    except InstanceError as exc:
        module.fail_json(msg=str(exc), field=exc.field, actions=engine.log.actions, **more)
    except CommandError as exc:
        module.fail_json(msg="instance %s: %s" % (p["instance"], exc), actions=engine.log.actions, **more)
    return None  # not reached: fail_json exits


def instance_options():
    """The options of one instance: the module's own for O(instance), and each element's of
    O(instances) when they are made (the other options serve every instance of a run)."""
    return dict(
        kind=dict(type="str", choices=["kernel", "process", "click", "vm"]),
        type=dict(type="str"),
        params=dict(type="dict", default={}),
        vlans=dict(type="dict", options=dict(left=dict(type="int", required=True),
                                             right=dict(type="int", required=True))),
        chain=dict(type="str"),
        step=dict(type="str"),
        vm=dict(type="dict", options=dict(image=dict(type="dict"), memory=dict(type="int"), vcpus=dict(type="int"))),
        carried_state=dict(type="dict"),
        hold=dict(type="dict", options=dict(token=dict(type="str", required=True, no_log=False),
                                            timeout=dict(type="float", default=10.0))),
    )


REQUIRED_TO_RUN = ("kind", "type", "vlans")


def element_options():
    """One element of O(instances) when they are made: an instance's options, its id and
    REQUIRED_TO_RUN required."""
    options = dict(instance=dict(type="str", required=True), **instance_options())
    for name in REQUIRED_TO_RUN:
        options[name] = dict(options[name], required=True)
    return options


def requests_of(module, p):
    """Each element of O(instances) checked against element_options(): the requests of the
    run (the run's shared options with the element's own), or the module fails naming it."""
    validator = ArgumentSpecValidator(element_options())
    requests = []
    for index, entry in enumerate(p["instances"]):
        if not isinstance(entry, dict):
            module.fail_json(msg="instances[%d]: to make instances, each is a dict of its options (instance, kind, type, "
                                 "vlans ...), not %r; ids alone are for state absent" % (index, entry),
                             field="instances[%d]" % index)
        checked = validator.validate(entry)
        if checked.error_messages:
            module.fail_json(msg="instances[%d] (%s): %s" % (index, entry.get("instance"), "; ".join(checked.error_messages)),
                             field="instances[%d]" % index)
        requests.append(dict(p, **checked.validated_parameters))
    return requests


def converge_many(module, p):
    """O(instances) with state present, started or stopped: each made or converged in one run,
    every one validated before anything changes; exits the module."""
    requests = requests_of(module, p)
    try:
        engine = ProcessingModules(p["host_bridge"], check_mode=module.check_mode, click_binary=p["click_binary"],
                                   with_vms=any(r["kind"] == "vm" for r in requests))
    except (InstanceError, CommandError) as exc:
        module.fail_json(msg=str(exc), field=getattr(exc, "field", None), actions=[])
    done = []
    try:
        outcomes = engine.apply_many(requests, done)
    except (InstanceError, CommandError) as exc:
        module.fail_json(msg=str(exc) if isinstance(exc, InstanceError) else "instance %s: %s" % (getattr(exc, "instance", None), exc),
                         field=getattr(exc, "field", None), actions=engine.log.actions,
                         converged=[{"instance": r["instance"], "changed": bool(actions), "actions": actions}
                                    for r, _before, _extra, actions in done])
    converged, diff = [], {"before": {}, "after": {}}
    for request, (before, after, extra, actions) in zip(requests, outcomes):
        iid = request["instance"]
        entry = {"instance": iid, "changed": bool(actions), "actions": actions,
                 "state": instance_state(iid, after) if after else None}
        entry.update({k: extra[k] for k in ("hold", "reconfigured") if k in extra})
        converged.append(entry)
        if actions or module.check_mode:
            diff["before"][iid] = configuration(before)
            diff["after"][iid] = (dict(configuration(before), pending_actions=actions) if module.check_mode
                                  else configuration(after))
    result = {"changed": engine.log.changed, "actions": engine.log.actions, "instance": None, "converged": converged}
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


def remove_many(module, p):
    """O(instances) with state absent: each removed (once quiet), in one run; exits the module."""
    for index, iid in enumerate(p["instances"]):
        try:
            if not isinstance(iid, str):
                raise InstanceError(None, None, "to remove instances, name each by its id, not %r" % (iid,))
            check_id(iid)     # every id first: a bad one fails before anything is removed
        except InstanceError as exc:
            module.fail_json(msg="instances[%d]: %s" % (index, exc), field="instances")
    engine = ProcessingModules(p["host_bridge"], check_mode=module.check_mode, click_binary=p["click_binary"])
    removed, diff = [], {"before": {}, "after": {}}
    for iid in p["instances"]:
        before, _after, extra = applied(module, engine, dict(p, instance=iid, export_state=False), removed=removed)
        entry = {"instance": iid, "was": {"kind": before.get("kind"), "type": before.get("type")} if before else None}
        if "quiesce" in extra:
            entry["quiesce"] = extra["quiesce"]
        removed.append(entry)
        if before:
            diff["before"][iid] = configuration(before)
    result = {"changed": engine.log.changed, "actions": engine.log.actions, "instance": None, "removed": removed}
    if module._diff:
        result["diff"] = dict(diff, after={"pending_actions": engine.log.actions} if module.check_mode else {})
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            instance=dict(type="str"),
            instances=dict(type="list", elements="raw"),
            state=dict(type="str", choices=["present", "started", "stopped", "absent"], default="present"),
            host_bridge=dict(type="str", default="fs-host"),
            port_type=dict(type="str", choices=list(PORT_TYPES), default="system"),
            host_kinds=dict(type="list", elements="str"),
            catalogue=dict(type="dict", default={}),
            click_binary=dict(type="path"),
            quiesce=QUIESCE_OPTION,
            export_state=dict(type="bool", default=False),
            **instance_options()
        ),
        required_one_of=[("instance", "instances")],
        mutually_exclusive=[("instance", "instances")] + [("instances", name) for name in instance_options() if name != "params"],
        supports_check_mode=True,
    )
    p = module.params
    if p["instances"] is not None:
        if p["state"] == "absent":
            remove_many(module, p)
        converge_many(module, p)
    missing = [name for name in REQUIRED_TO_RUN if p["state"] != "absent" and p[name] is None]
    if missing:
        module.fail_json(msg="state is %s but all of the following are missing: %s" % (p["state"], ", ".join(missing)),
                         field=missing[0])
    try:
        engine = ProcessingModules(p["host_bridge"], check_mode=module.check_mode, click_binary=p["click_binary"],
                                   with_vms=p["kind"] == "vm" or p["state"] == "absent")
    except (InstanceError, CommandError) as exc:
        module.fail_json(msg=str(exc) if isinstance(exc, InstanceError) else "instance %s: %s" % (p["instance"], exc),
                         field=getattr(exc, "field", None), actions=[])
    before, after, extra = applied(module, engine, p)
    reported = None
    if after:
        reported = dict(after)   # with its state (running, stopped) as module_host_info reports it
        reported["state"] = instance_state(p["instance"], reported)
    result = {"changed": engine.log.changed, "actions": engine.log.actions, "instance": reported}
    if p["export_state"]:
        result["exported_state"] = extra.get("exported_state")
    if "quiesce" in extra:
        result["quiesce"] = extra["quiesce"]
    if "hold" in extra:
        result["hold"] = extra["hold"]
    if "reconfigured" in extra:
        result["reconfigured"] = extra["reconfigured"]
    if module._diff:
        result["diff"] = {"before": configuration(before), "after": (dict(configuration(before), pending_actions=engine.log.actions)
                                                                     if module.check_mode else configuration(after))}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
