#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: openflow_flows
short_description: Manage an OpenFlow switch's flows and groups under one cookie or cookie range, atomically
version_added: 0.1.0
description:
  - Treats the flows of one B(cookie) on one OpenFlow switch as a resource (want/have
    difference, as ansible.netcommon's resource modules do). The task lists the flows (and
    optionally groups) it wants; the module reads what the switch holds under the cookie,
    computes the difference and applies it as B(one OpenFlow 1.4 bundle) - all of it or none of it.
  - Flows are compared in the canonical form Open vSwitch itself prints, so a flow written two
    ways (C(dl_type=0x0800,nw_proto=6,ip_src=10.0.0.1,tcp_dst=0x50) and C(tcp,nw_src=10.0.0.1,tp_dst=80),
    port names or numbers) is the same flow and causes no change.
  - B(Ownership.) Every flow the task installs carries exactly O(cookie) (unless O(flow_cookies=true)).
    The task owns the flows whose cookie matches O(cookie) under O(cookie_mask). Flows of other cookies are never
    deleted, modified or overwritten; requests that would do so fail before anything is sent.
    Groups carry no cookie in OpenFlow, so a task owns the groups it lists and, for
    V(replaced)/V(absent), the group ids inside O(group_id_range).
  - B(Many owners in one bundle.) With O(flow_cookies=true) the task claims the whole cookie range
    O(cookie)/O(cookie_mask) and each flow may carry its own cookie inside it, for example every
    service chain of a switch, each chain under its own cookie, changed together in one bundle.
  - B(Drift report.) Run with C(--check --diff) to list flows that were added, removed or
    altered by hand under the cookie; a normal run with O(state=replaced) repairs exactly those.
  - See C(docs/openflow.md) in the collection for the cookie convention, a symmetric
    flow-affine load-balancing recipe and the benchmark.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.openflow
attributes:
  check_mode:
    support: full
    details: Reads the switch and computes the difference; sends nothing.
  diff_mode:
    support: full
    details: C(before)/C(after) are the groups and flows of the cookie, one per line, sorted.
  idempotent:
    support: full
requirements:
  - C(ovs-ofctl) (Open vSwitch; bundles need 2.8 or later, tested with 3.1) where the task runs (on the switch,
    or on a controller that reaches its OpenFlow target); C(ovs-appctl) for a local switch (RV(datapath))
options:
  cookie:
    description:
      - The 64-bit cookie that marks the flows this task owns, as an integer or a string in decimal
        or C(0x) hex. Every flow the task installs carries it, except, with O(flow_cookies=true), a flow
        that sets a cookie of its own.
      - V(0) is refused (it is the cookie of every unmarked flow).
      - 'Convention in flowstream.platform: the top 16 bits name the owner namespace (C(0xf5xx) for
        the platform itself), the low 48 bits the owner, for example one service chain.'
    type: raw
    required: true
  cookie_mask:
    description:
      - Which bits of O(cookie) define ownership. The default (all 64 bits) owns exactly O(cookie).
      - A narrower mask claims a whole cookie range, for example C(0xffff000000000000) for every
        flow of a namespace. With O(state=absent) and no O(flows), that removes the whole range.
        With V(present) or V(replaced) and O(flow_cookies=false) the module fails if the range holds
        flows of another cookie (another task's flows overlap the mask); with O(flow_cookies=true)
        the range is the task's, whatever cookies its flows carry.
      - The mask must cover at least one set bit of O(cookie), and O(cookie) must have no bits
        outside it.
    type: raw
  state:
    description:
      - V(present) adds the listed flows/groups that are missing and corrects listed ones that differ.
        Other flows of the cookie stay.
      - V(replaced) makes the cookie hold exactly the listed flows; flows of the cookie that are not
        listed are deleted. O(flows), O(flows_text) or O(flows_file) must be given (an empty list empties the
        cookie). When O(groups) is given, groups in O(group_id_range) that are not listed are
        deleted too (O(group_id_range) is then required); without O(groups), groups are left alone.
      - V(absent) deletes the listed flows (matched by table, priority and match; actions may be
        left out) and the listed groups. With none of O(flows), O(flows_text), O(flows_file) and O(groups)
        given, it deletes every flow of the cookie and every group in O(group_id_range). An empty
        O(flows) list counts as given and deletes no flow (mind it when the list is templated).
    type: str
    choices: [present, replaced, absent]
    default: present
  flow_cookies:
    description:
      - Let each flow carry its own cookie inside the range O(cookie)/O(cookie_mask), and own that whole
        range. Needs a O(cookie_mask) narrower than the full mask.
      - A dict flow sets C(cookie) (an integer or a decimal or C(0x) hex string); a string flow (or a line of
        O(flows_text)) sets C(cookie=0x...), conventionally first. A flow without a cookie of its own
        carries O(cookie), which is the base of the range (it has no bits outside O(cookie_mask)). Every
        flow's cookie must agree with O(cookie) on every bit of O(cookie_mask); a flow outside the range
        fails the task before anything is sent.
      - The task then owns every flow of the range, whatever its cookie. V(replaced) makes the range hold
        exactly the listed flows, each with its cookie; V(present) adds and corrects listed flows; V(absent)
        deletes listed flows (a flow listed with a cookie only when the switch's flow has that cookie) or,
        with nothing listed, every flow of the range.
      - A flow keeps its identity (table, priority, match). When only its cookie (or its cookie and more)
        changes, it is deleted and added again in the same bundle (OpenFlow's modify keeps a flow's cookie;
        the flow's counters restart under its new owner) and reported in RV(modified).
      - With V(false) (the default) a flow may not set a cookie; every flow carries exactly O(cookie).
    type: bool
    default: false
  flows:
    description:
      - The flows. Each item is either a string in C(ovs-ofctl) flow syntax (see C(man ovs-ofctl),
        "Flow Syntax"), for example C(table=0,priority=100,tcp,nw_dst=198.18.0.10,tp_dst=80,actions=output:2),
        or a dict with the keys below.
      - Do not set C(cookie) in a flow (O(cookie) marks every flow), unless O(flow_cookies=true).
      - C(table) defaults to 0 and C(priority) to 32768, as in C(ovs-ofctl).
      - Ports may be given by name (C(in_port=web-left), C(output:web-right)); the module resolves
        names through the switch's port list. Tables must be given by number.
      - 'A dict item: C(table) (int), C(priority) (int), C(match) (string in ovs-ofctl syntax, or a
        dict of field: value, where a null value writes the bare keyword such as C(ip)), C(actions)
        (string or list of actions), C(idle_timeout), C(hard_timeout), C(importance) (ints), C(flags)
        (list of C(send_flow_rem), C(no_packet_counts), C(no_byte_counts)), and with O(flow_cookies=true)
        C(cookie) (int or hex string).'
      - Two items with the same table, priority and match but different actions are an error
        (OpenFlow keeps one flow per table, priority and match).
    type: list
    elements: raw
  flows_text:
    description:
      - More flows, as text read like an C(ovs-ofctl) flow file - one flow per line, C(#) starts a
        comment, blank lines are skipped (no continuation lines). Combined with O(flows) if both are given.
      - The efficient way to hand over a large table, for example from
        C(lookup('ansible.builtin.file', 'chain-web.flows')) or from a template. Ansible then moves one
        string instead of a list of tens of thousands of items (see the benchmark in C(docs/openflow.md)).
      - Messages name a flow from here as C(flows_text line N).
    type: str
  flows_file:
    description:
      - More flows, from a file B(on the managed node) (the host that runs the module and reaches
        the switch), read like O(flows_text). Combined with O(flows) if both are given; not with
        O(flows_text).
      - For tables that are generated next to the switch (by a template task or another tool);
        Ansible then moves no flows at all, which is the fastest way to hand over tens of
        thousands (see C(docs/openflow.md)).
      - Messages name a flow from here as C(flows_file PATH line N).
    type: path
  groups:
    description:
      - Groups, added before the flows that use them and deleted after the flows that used them,
        in the same bundle, so no flow ever points at a missing group.
      - Each item is a string in C(ovs-ofctl) group syntax, for example
        C(group_id=10,type=fast_failover,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3),
        or a dict with C(group_id), C(type) (V(all), V(select), V(indirect), V(fast_failover)),
        C(selection_method) (for example V(hash); needs O(openflow_version=OpenFlow15)),
        C(selection_method_param), C(fields) (list, for C(selection_method=hash)) and C(buckets), a
        list of strings or dicts with C(actions), C(weight), C(watch_port), C(watch_group), C(bucket_id).
      - With O(state=absent) an item may be just the group id - an integer, a dict with only
        C(group_id), or the string C(group_id=600).
      - Below V(OpenFlow15), the module also reads the switch's groups over OpenFlow 1.5 (when the
        switch speaks it), because an OpenFlow 1.4 reply leaves out C(selection_method)/C(fields). A
        listed group that has them on the switch (set by hand, say) is reported as modified and
        written again, which clears them. To keep or set them, use O(openflow_version=OpenFlow15).
      - A flow that names a group neither listed here nor present on the switch is an error.
    type: list
    elements: raw
  group_id_range:
    description:
      - The group ids this task owns, as C([first, last]). Listed groups must lie inside it.
      - With O(state=replaced) and O(groups) given, groups inside the range that are not listed are
        deleted; with O(state=absent) and nothing listed, every group inside the range is deleted.
      - Groups another owner's flow uses are never deleted (OpenFlow would delete that flow too).
    type: list
    elements: int
  report_limit:
    description:
      - At most this many flows are listed in each of RV(added), RV(removed) and RV(modified)
        (RV(counts) are always complete; RV(truncated) says whether a list was cut). A negative
        number lists every flow. Large tables (tens of thousands of flows) return faster with a
        small limit.
    type: int
    default: 1000
  packet_out:
    description:
      - Packets to send through the switch once the change is committed (OpenFlow packet-out, from
        the controller port), in order, in the same task - for a barrier that must follow the
        change at once, such as the markers a make-before-break move sends into an old copy to
        learn that it has let out everything it held (docs/operations.md). Sent on every run (they
        change no state, C(changed) does not count them); not in check mode.
    type: list
    elements: dict
    suboptions:
      actions:
        description: What the switch does with the packet, e.g. V(output:fs-web4b51a-l).
        type: str
        required: true
      packet:
        description: The whole Ethernet frame, in hexadecimal.
        type: str
        required: true
notes:
  - 'All-or-nothing: the difference is sent as one C(ovs-ofctl bundle) (OpenFlow 1.4 bundle,
    atomic and ordered). If the switch rejects any flow or group (an unknown action, a missing
    group, a table miss), nothing changes and the task fails with the switch''s own error name
    and the flow it rejected.'
  - 'Changed flows: when only the actions differ the flow is modified in place (C(modify_strict),
    counters kept); when timeouts, importance or flags differ it is re-added.'
  - The module reads the whole flow table (not only the cookie's flows) when it adds flows or
    deletes groups, to prove that no other owner's flow is overwritten or loses its group.
  - Between that read and the bundle another controller could still add a conflicting flow;
    OpenFlow has no conditional add on an exact match. Give each owner its own cookie and its own
    priorities or matches.
seealso:
  - module: flowstream.platform.openflow_info
  - name: ovs-ofctl(8), Flow Syntax and Group Syntax
    description: The syntax of flows and groups.
    link: https://www.openvswitch.org/support/dist-docs/ovs-ofctl.8.txt
"""

EXAMPLES = r"""
- name: Steer web traffic through a firewall instance (flows of cookie 0xf500000000000001)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000001"
    state: replaced
    flows:
      - table=0,priority=200,in_port=uplink,tcp,tp_dst=80,actions=output:fw1-left
      - table=0,priority=200,in_port=fw1-right,actions=output:web
      - table: 0
        priority: 100
        match: {ip: null, nw_dst: 198.18.0.10}
        actions: [output:web]

- name: Drift report - what changed by hand under the cookie? (run with --check --diff)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000001"
    state: replaced
    flows: "{{ chain_web_flows }}"
  check_mode: true
  diff: true
  register: drift

- name: Fast failover to a spare, group and flow in one bundle (over TCP to a remote switch)
  flowstream.platform.openflow_flows:
    switch: tcp:192.0.2.10:6653
    openflow_version: OpenFlow15
    cookie: "0xf500000000000002"
    state: replaced
    group_id_range: [200, 299]
    groups:
      - group_id=200,type=fast_failover,bucket=watch_port:3,actions=output:3,bucket=watch_port:4,actions=output:4
    flows:
      - priority=100,ip,nw_dst=198.18.1.0/24,actions=group:200
  delegate_to: localhost

- name: Select group hashing on the 5-tuple (needs OpenFlow 1.5 for selection_method/fields)
  flowstream.platform.openflow_flows:
    switch: ssl:127.0.0.1:6654
    private_key: /etc/flowstream/pki/ctl-privkey.pem
    certificate: /etc/flowstream/pki/ctl-cert.pem
    ca_cert: /etc/flowstream/pki/switchca/cacert.pem
    openflow_version: OpenFlow15
    cookie: "0xf500000000000003"
    group_id_range: [300, 399]
    groups:
      - group_id: 300
        type: select
        selection_method: hash
        fields: [ip_src, ip_dst, tcp_src, tcp_dst]
        buckets:
          - {actions: "output:5"}
          - {actions: "output:6"}
    flows:
      - priority=100,tcp,actions=group:300

- name: A large table from a flow file (one flow per line, as ovs-ofctl add-flows reads it)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000004"
    state: replaced
    flows_text: "{{ lookup('ansible.builtin.template', 'chain-web.flows.j2') }}"
    report_limit: 20

- name: Render a very large table on the switch's host first ...
  ansible.builtin.template:
    src: chain-web.flows.j2
    dest: /var/lib/flowstream/chain-web.flows
    mode: "0600"

- name: ... and let the module read it there (Ansible moves no flows)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000004"
    state: replaced
    flows_file: /var/lib/flowstream/chain-web.flows
    report_limit: 20

- name: Remove everything chain 1 installed (all flows of the cookie, its groups)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000001"
    group_id_range: [100, 199]
    state: absent

- name: Every service chain of the switch in ONE bundle, each flow under its chain's cookie
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf5c0000000000000"        # the range of every chain: 0xf5c0 in the top 16 bits
    cookie_mask: "0xffff000000000000"
    flow_cookies: true
    state: replaced                     # the range holds exactly these flows, chain by chain
    flows:
      - cookie=0xf5c000000000a001,table=0,priority=200,in_port=uplink,tcp,tp_dst=80,actions=output:fw1-left
      - cookie=0xf5c000000000a001,table=0,priority=200,in_port=fw1-right,actions=output:web
      - cookie: "0xf5c000000000b002"
        table: 0
        priority: 200
        match: {in_port: uplink, udp: null, tp_dst: 53}
        actions: [output:dns1-left]

- name: Remove one chain only; the other chains' flows stay (its own cookie, the full mask)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf5c000000000b002"
    state: absent

- name: Remove every flow of the whole 0xf5 namespace (a cookie range)
  flowstream.platform.openflow_flows:
    switch: br0
    cookie: "0xf500000000000000"
    cookie_mask: "0xff00000000000000"
    state: absent
"""

RETURN = r"""
cookie:
  description: The cookie of the task, 16 hex digits.
  returned: success
  type: str
  sample: "0xf500000000000001"
cookie_mask:
  description: The ownership mask of the task.
  returned: success
  type: str
  sample: "0xffffffffffffffff"
counts:
  description: How many flows and groups were (or, in check mode, would be) added, removed, modified or left alone.
  returned: success
  type: dict
  contains:
    flows_added: {description: Flows added., type: int, returned: success}
    flows_removed: {description: Flows deleted., type: int, returned: success}
    flows_modified: {description: "Flows whose actions, timeouts, flags or cookie changed.", type: int, returned: success}
    flows_unchanged: {description: Listed flows already as wanted., type: int, returned: success}
    flows_before: {description: Flows of the cookie before the run., type: int, returned: success}
    flows_after: {description: Flows of the cookie after the run., type: int, returned: success}
    groups_added: {description: Groups added., type: int, returned: success}
    groups_removed: {description: Groups deleted., type: int, returned: success}
    groups_modified: {description: Groups changed., type: int, returned: success}
    groups_unchanged: {description: Listed groups already as wanted., type: int, returned: success}
  sample: {flows_added: 2, flows_removed: 1, flows_modified: 0, flows_unchanged: 40, flows_before: 41,
           flows_after: 42, groups_added: 0, groups_removed: 0, groups_modified: 0, groups_unchanged: 1}
added:
  description:
    - Flows added, canonical C(ovs-ofctl) text, sorted (at most O(report_limit)).
    - With a O(cookie_mask) narrower than the full mask (a cookie range, for example with O(flow_cookies=true))
      each line starts with the flow's C(cookie=0x...).
  returned: success
  type: list
  elements: str
  sample: ["table=0,priority=200,tcp,in_port=1,tp_dst=80,actions=output:2"]
removed:
  description: Flows deleted, canonical text, sorted (at most O(report_limit)).
  returned: success
  type: list
  elements: str
modified:
  description:
    - Flows changed, as C(before)/C(after) canonical text (at most O(report_limit)).
    - With a O(cookie_mask) narrower than the full mask every line starts with the flow's C(cookie=0x...), so
      a flow that moved from one cookie to another shows both.
  returned: success
  type: list
  elements: dict
  sample: [{before: "table=0,priority=200,in_port=3,actions=output:2", after: "table=0,priority=200,in_port=3,actions=output:4"}]
groups_added:
  description: Groups added, canonical text.
  returned: success
  type: list
  elements: str
groups_removed:
  description: Groups deleted, canonical text.
  returned: success
  type: list
  elements: str
groups_modified:
  description: Groups changed, as C(before)/C(after) canonical text.
  returned: success
  type: list
  elements: dict
truncated:
  description: Whether RV(added), RV(removed) or RV(modified) were cut to O(report_limit) entries.
  returned: success
  type: bool
timings:
  description:
    - Seconds spent per phase. C(validate) (checking the arguments), C(read) (C(ovs-ofctl) reads of
      the switch, overlapping with canonicalisation), C(canonicalise) (groups), C(plan) (the
      difference and the ownership checks), C(apply) (the bundle; absent in check mode or when
      nothing changed), C(datapath) (RV(datapath), after the bundle), C(report) (the result's flow
      lists, up to O(report_limit)) and C(total).
  returned: success
  type: dict
  sample: {validate: 0.02, read: 0.31, canonicalise: 0.0, plan: 0.05, apply: 0.48, report: 0.0, total: 0.86}
ports_not_there:
  description:
    - In check mode, the port names the flows use that the switch does not have yet (the ports of
      instances the same run would create before this task), with the placeholder numbers that
      stand for them in RV(added), RV(modified) and the diff. Outside check mode such a name fails
      the task, naming the port.
  returned: in check mode, when a flow names a port the switch does not have
  type: dict
  sample: {fs-web4b51a-l: 65024}
datapath:
  description:
    - What was done to the datapath after the bundle changed the table. V(purged) - the switch is a
      bridge of the Open vSwitch where the task runs (a bridge name or a C(unix:) socket) with a
      userspace (C(netdev)) datapath, whose datapath flows were dropped (C(ovs-appctl
      revalidator/purge)) so that every packet's next one is translated from the new table.
      V(kernel datapath), V(remote switch) - nothing to do, or nothing that can be done from here;
      V(not purged) and why.
    - Why - Open vSwitch 3.1's userspace datapath can keep a datapath flow with the actions of the
      old table after a change (a flow of a C(multipath) hash overlapped by a wider one); measured
      in bench/reorder.py, see docs/reliability.md. Purging costs one upcall per active flow; the
      userspace datapath loses no packet on it.
  returned: when the bundle changed the switch (not in check mode)
  type: str
  sample: purged
packets_out:
  description: How many packets of O(packet_out) were sent.
  returned: when packet_out is given, outside check mode
  type: int
  sample: 2
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    OfctlError,
    connection_argument_spec,
    ofctl_from_params,
)
from ansible_collections.flowstream.platform.plugins.module_utils._openflow import (
    OpenFlowError,
    PortNames,
    Reconciler,
)


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        cookie=dict(type="raw", required=True),
        cookie_mask=dict(type="raw"),
        state=dict(type="str", default="present", choices=["present", "replaced", "absent"]),
        flows=dict(type="list", elements="raw"),
        flows_text=dict(type="str"),
        flows_file=dict(type="path"),
        flow_cookies=dict(type="bool", default=False),
        groups=dict(type="list", elements="raw"),
        group_id_range=dict(type="list", elements="int"),
        report_limit=dict(type="int", default=1000),
        packet_out=dict(type="list", elements="dict", options=dict(actions=dict(type="str", required=True),
                                                                   packet=dict(type="str", required=True))),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("flows_text", "flows_file")])
    p = module.params
    flows_text, source = p["flows_text"], "flows_text"
    if p["flows_file"] is not None:
        source = "flows_file %s" % p["flows_file"]
        try:
            with open(p["flows_file"], encoding="utf-8") as handle:
                flows_text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            module.fail_json(msg="flows_file %s cannot be read on the managed node (host %s, which runs this task and "
                                 "must hold the file): %s" % (p["flows_file"], os.uname()[1], exc))
    try:
        ofctl = ofctl_from_params(p, lambda name: module.get_bin_path(name, opt_dirs=["/usr/bin", "/usr/local/bin", "/usr/sbin"]))
        result = Reconciler(
            ofctl,
            cookie=p["cookie"],
            cookie_mask=p["cookie_mask"],
            state=p["state"],
            flows=p["flows"],
            flows_text=flows_text,
            flows_text_source=source,
            flow_cookies=p["flow_cookies"],
            groups=p["groups"],
            group_id_range=p["group_id_range"],
            report_limit=p["report_limit"],
            diff=module._diff,
            check_mode=module.check_mode,
        ).run()
        if result.get("ports_not_there"):
            module.warn("check mode: ports %s are not on the switch yet (the run would make them before this task); their flows "
                        "are shown with the numbers %s" % (", ".join(result["ports_not_there"]),
                                                           ", ".join(str(n) for n in result["ports_not_there"].values())))
        if p["packet_out"] and not module.check_mode:
            names = PortNames(ofctl.dump_ports())
            for index, item in enumerate(p["packet_out"]):
                if not re.match(r"^([0-9a-fA-F]{2}){14,}$", item["packet"]):
                    module.fail_json(msg="packet_out[%d].packet must be a whole Ethernet frame in hexadecimal (at least 14 bytes), "
                                         "got %r" % (index, item["packet"][:80]), **result)
                ofctl.packet_out(names.resolve(item["actions"], "packet_out[%d].actions" % index), item["packet"])
            result["packets_out"] = len(p["packet_out"])
    except (ValueError, OpenFlowError) as exc:
        module.fail_json(msg=str(exc))
    except OfctlError as exc:
        module.fail_json(msg=exc.msg, rc=exc.rc, stderr=exc.stderr, cmd=" ".join(exc.argv), error_kind=exc.kind)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
