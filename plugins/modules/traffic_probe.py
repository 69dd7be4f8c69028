#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic_probe
short_description: Measure loss, reordering, duplicates and blackouts with real traffic
version_added: 0.1.0
description:
  - The platform's proof instrument. Sends sequence-numbered UDP datagrams over many 5-tuples
    (O(flows)) at a set total rate (O(rate)) from the source to the sink and reports, per flow
    and in total, packets sent, received, lost, reordered and duplicated, the longest gap
    between arrivals (the blackout an operation caused, in ms) and one-way latency.
  - Every flow's 5-tuple is in the result, so a verify step can compare it with the per-flow
    counters of monitor instances (M(flowstream.platform.module_host_info) with C(flows=true))
    to show which instance each flow crossed.
  - Runs on the machine that holds both ends (the controller in the one-machine lab). The
    receiver is started first in the sink's network namespace, then the sender in the
    source's (C(ip netns exec)); both are the program C(plugins/module_utils/_probe.py), run
    by the module's own Python. The sender's per-flow counts reach the module over its
    standard output, never over the path under test, so loss at the end of a run is counted
    too. Method and limits are in the collection's C(docs/probe.md).
  - The task fails when a figure exceeds one of O(max_lost), O(max_reordered),
    O(max_duplicated), O(max_gap_ms); the figures are in the result either way.
  - The rate is honest - RV(probe.rate.achieved_pps) is what the sender achieved, and the
    result says so in RV(probe.notes) when it is more than 2% off the asked rate, and when a gap
    may be the sender's own pause (RV(probe.rate.max_send_gap_ms)) rather than the path's.
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
attributes:
  check_mode:
    support: partial
    details:
      - In check mode nothing is sent. The settings are checked and the namespaces and
        addresses looked up; the result has no figures (no RV(probe)).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The probe sends traffic but changes no state; it always reports C(changed=false).
options:
  source:
    description: Where the traffic comes from.
    type: dict
    required: true
    suboptions:
      netns:
        description: Network namespace of the sender; omit for the root namespace.
        type: str
      address:
        description: Source address; default the one the kernel chooses towards the sink.
        type: str
  sink:
    description: Where the traffic goes.
    type: dict
    required: true
    suboptions:
      netns:
        description: Network namespace of the receiver; omit for the root namespace.
        type: str
      address:
        description: The sink's address - the datagrams' destination, on which the receiver listens.
        type: str
        required: true
  flows:
    description: Number of flows (distinct 5-tuples), each with its own sequence numbers.
    type: int
    default: 16
  source_port:
    description: The first source port.
    type: int
    default: 40000
  destination_port:
    description: The first destination port.
    type: int
    default: 9000
  vary:
    description:
      - What makes the flows' 5-tuples distinct. V(sport) - source ports O(source_port),
        O(source_port)+1, ... to O(destination_port); V(dport) - one source port, consecutive
        destination ports (the receiver listens on each); V(both) - both count up together.
    type: str
    choices: [sport, dport, both]
    default: sport
  rate:
    description:
      - Total packets per second over all flows; each flow gets O(rate)/O(flows). Packets go
        round-robin over the flows. Python holds 10-20 kpps on two busy cores (measured, see
        docs/probe.md); higher rates are reported as achieved.
    type: float
    default: 1000
  duration:
    description: Seconds of sending (ignored when O(count) is given).
    type: float
    default: 3
  count:
    description: Total packets to send instead of a duration.
    type: int
  size:
    description: UDP payload bytes per datagram (the IP packet is 28 bytes more), 32 to 8972; the first 32 are the probe's header.
    type: int
    default: 64
  settle:
    description:
      - Seconds the receiver keeps counting after the sender is done, for packets still in
        flight or queued (a shaper's queue). Packets arriving later count as lost.
    type: float
    default: 0.5
  warmup:
    description:
      - Send one uncounted packet per flow 0.1 s before the run (it resolves ARP and sets up the
        switch's flow caches, so the first counted packets are not delayed by that).
    type: bool
    default: true
  dscp:
    description:
      - DSCP values the packets of every flow cycle through (packet n of a flow gets
        O(dscp)[n mod len]). A test aid - the switch can send the packets of one flow along
        different paths by DSCP - and a way to probe DSCP-based treatment. Default unmarked.
    type: list
    elements: int
  priority:
    description:
      - SCHED_FIFO priority (1-99) of the sender and the receiver; V(0) leaves them under
        normal scheduling. RV(probe.rate.scheduling) says which was used (without the right to
        use SCHED_FIFO the probe runs under normal scheduling).
      - Measured on two busy cores - SCHED_FIFO mostly shortens the sender's own pauses from
        4-12 ms to under 1 ms (a finer blackout figure), but at 20 kpps the probe then takes the
        CPU from the switch's forwarding thread and causes loss itself. Use it where cores are to spare.
    type: int
    default: 0
  timeout:
    description: Bound in seconds on the whole run; default the run's length + O(settle) + 30.
    type: float
  max_lost:
    description: Fail when more packets than this are lost in total.
    type: int
  max_reordered:
    description: Fail when more packets than this arrive reordered in total.
    type: int
  max_duplicated:
    description: Fail when more duplicate packets than this arrive in total.
    type: int
  max_gap_ms:
    description: Fail when the longest gap between arrivals (or before the first, or after the last) is longer (ms).
    type: float
notes:
  - Traffic goes only where you point it. In the lab, both ends are namespaces the lab made
    (C(fsl-source) 198.18.1.1, C(fsl-sink) 198.18.1.2).
  - Latency is receive time (kernel timestamp) minus send time, both CLOCK_REALTIME; it is
    meaningful because both ends run on one machine.
seealso:
  - module: flowstream.platform.module_host_info
"""

EXAMPLES = r"""
- name: 10 kpps over 64 flows for 5 s through the chain 'web'; fail on any loss or reordering
  flowstream.platform.traffic_probe:
    source: {netns: fsl-source, address: 198.18.1.1}
    sink: {netns: fsl-sink, address: 198.18.1.2}
    flows: 64
    rate: 10000
    duration: 5
    max_lost: 0
    max_reordered: 0
  delegate_to: localhost
  register: probe

- name: Show the figures
  ansible.builtin.debug:
    msg: "{{ probe.probe.totals }}"

- name: During a migration - how long was traffic gone?
  flowstream.platform.traffic_probe:
    source: {netns: fsl-source}
    sink: {netns: fsl-sink, address: 198.18.1.2}
    rate: 5000
    duration: 20
    max_gap_ms: 500
  async: 60
  poll: 0
  register: during_move
"""

RETURN = r"""
msg:
  description: One line of totals.
  returned: always
  type: str
  sample: "64 flows at 10000.0 pps (asked 10000.0): sent 30000, received 30000, lost 0, reordered 0, duplicated 0, longest gap 8.8 ms"
exceeded:
  description: The limits the figures exceeded (the task fails when this is not empty).
  returned: when the probe ran
  type: list
  elements: str
  sample: ["lost 2950 > 0"]
plan:
  description: In check mode, the settings that would be used and the addresses found in each namespace.
  returned: in check mode
  type: dict
probe:
  description: The figures.
  returned: when the probe ran (also when the task fails on a limit)
  type: dict
  contains:
    run_id:
      description: Random run id carried in every datagram; datagrams of other runs are not counted.
      type: int
    src:
      description: Source address.
      type: str
    dst:
      description: Sink address.
      type: str
    proto:
      description: Always C(udp).
      type: str
    size:
      description: UDP payload bytes per datagram.
      type: int
    flow_count:
      description: Number of flows.
      type: int
    elapsed_s:
      description: Wall time of the whole probe (start of the receiver to its report).
      type: float
    totals:
      description: Totals over all flows.
      type: dict
      contains:
        sent:
          description: Datagrams the sender handed to the kernel successfully (send errors are not counted).
          type: int
        received:
          description: Datagrams of this run that arrived, duplicates included.
          type: int
        unique:
          description: Distinct sequence numbers that arrived.
          type: int
        lost:
          description: C(sent - unique), summed over the flows.
          type: int
        loss_percent:
          description: RV(probe.totals.lost) as a percentage of RV(probe.totals.sent).
          type: float
        reordered:
          description: First arrivals of a sequence number lower than the highest already seen in its flow.
          type: int
        max_reorder_extent:
          description: The largest distance (in sequence numbers) by which a reordered packet was late.
          type: int
        duplicated:
          description: Arrivals of a sequence number that had already arrived.
          type: int
        max_gap_ms:
          description:
            - The longest interval between two consecutive arrivals of any flow (kernel receive
              timestamps), or between the sender's first packet and the first packet that arrived,
              or between the last packet that arrived and the sender's last packet (send
              timestamps) - the blackout. With nothing lost it is the jitter of the path and the
              machine; compare with RV(probe.rate.interval_ms) / RV(probe.flow_count).
          type: float
        latency_ms:
          description: One-way latency C(min), C(avg), C(p50), C(p99), C(max) in ms.
          type: dict
    flows:
      description: One entry per flow.
      type: list
      elements: dict
      contains:
        flow:
          description: Flow id (0 to O(flows)-1).
          type: int
        src:
          description: Source address.
          type: str
        dst:
          description: Destination address.
          type: str
        proto:
          description: C(udp).
          type: str
        sport:
          description: Source port.
          type: int
        dport:
          description: Destination port.
          type: int
        sent:
          description: Datagrams sent on the flow.
          type: int
        received:
          description: Datagrams of the flow that arrived (duplicates included).
          type: int
        unique:
          description: Distinct sequence numbers of the flow that arrived.
          type: int
        lost:
          description: C(sent - unique).
          type: int
        loss_percent:
          description: Lost as a percentage of sent.
          type: float
        reordered:
          description: Reordered arrivals in the flow.
          type: int
        max_reorder_extent:
          description: Largest reordering distance in the flow.
          type: int
        duplicated:
          description: Duplicate arrivals in the flow.
          type: int
        max_gap_ms:
          description: The longest gap in the flow (its packets are O(flows) times sparser than the total).
          type: float
        latency_ms:
          description: C(min), C(avg), C(max) one-way latency of the flow in ms.
          type: dict
        wrong_tuple:
          description: Datagrams of the flow that arrived on another 5-tuple than they were sent on (only when there are any).
          type: int
    rate:
      description: What the sender did.
      type: dict
      contains:
        asked_pps:
          description: O(rate).
          type: float
        achieved_pps:
          description: Packets sent per second between the first and the last packet.
          type: float
        duration_s:
          description: Seconds between the first and the last packet sent.
          type: float
        interval_ms:
          description: The interval between two packets of one flow at the asked rate.
          type: float
        max_send_gap_ms:
          description: The sender's own longest pause between two packets (a gap this long in the figures may be the sender's).
          type: float
        max_lag_ms:
          description: How far the sender fell behind its schedule at worst (it then catches up in bursts of at most 32 packets).
          type: float
        window_pps:
          description:
            - The lowest and highest rate (C(min), C(max), pps) over the run's full 100-ms windows,
              and how many windows (C(windows)) - how steadily the rate was held.
          type: dict
        send_errors:
          description: Failed sends by errno name (not counted as sent).
          type: dict
        warmup_sent:
          description: Uncounted warm-up datagrams sent.
          type: int
        scheduling:
          description: C(fifo) or C(normal) - how the sender was scheduled.
          type: str
    receiver:
      description:
        - What the receiver saw besides the run's datagrams - C(foreign) (not probe datagrams),
          C(other_runs), C(warmup_received), C(socket_drops) (datagrams its own sockets dropped -
          when not 0 the loss includes the probe's own), C(timestamps) (C(kernel) or C(user)),
          C(ports), C(stopped_by), C(invalid), C(samples_dropped), C(scheduling).
      type: dict
    notes:
      description: Caveats about these figures (rate not reached, sender pauses, receiver drops).
      type: list
      elements: str
    settings:
      description: The settings the probe ran with (the source address as used).
      type: dict
  sample:
    run_id: 3735928559
    src: 198.18.1.1
    dst: 198.18.1.2
    proto: udp
    size: 64
    flow_count: 2
    elapsed_s: 3.9
    totals: {sent: 30000, received: 30000, unique: 30000, lost: 0, loss_percent: 0.0, reordered: 0, max_reorder_extent: 0,
             duplicated: 0, max_gap_ms: 8.8, latency_ms: {min: 0.017, avg: 0.14, p50: 0.063, p99: 2.2, max: 8.8}}
    flows:
      - {flow: 0, src: 198.18.1.1, dst: 198.18.1.2, proto: udp, sport: 40000, dport: 9000, sent: 15000, received: 15000,
         unique: 15000, lost: 0, loss_percent: 0.0, reordered: 0, max_reorder_extent: 0, duplicated: 0, max_gap_ms: 9.1,
         latency_ms: {min: 0.017, avg: 0.15, max: 8.8}}
    rate: {asked_pps: 10000.0, achieved_pps: 10000.0, duration_s: 3.0, interval_ms: 0.2, max_send_gap_ms: 0.67, max_lag_ms: 0.63,
           window_pps: {min: 10000.0, max: 10000.0, windows: 29}, send_errors: {}, warmup_sent: 2, scheduling: normal}
    receiver: {foreign: 0, other_runs: 0, warmup_received: 2, socket_drops: 0, timestamps: kernel, ports: [9000], stopped_by: stop}
    notes: []
"""

import inspect
import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils import _probe


def _config(p):
    return {
        "source_netns": p["source"].get("netns"), "src": p["source"].get("address"),
        "sink_netns": p["sink"].get("netns"), "dst": p["sink"]["address"],
        "flows": p["flows"], "sport": p["source_port"], "dport": p["destination_port"], "vary": p["vary"],
        "rate": p["rate"], "duration": p["duration"], "count": p["count"], "size": p["size"], "settle": p["settle"],
        "warmup": p["warmup"], "dscp": p["dscp"], "priority": p["priority"], "timeout": p["timeout"],
    }


def summary_line(result):
    t, rate = result["totals"], result.get("rate") or {}
    return ("%d flows at %s pps (asked %s): sent %d, received %d, lost %d, reordered %d, duplicated %d, longest gap %s ms"
            % (result["flow_count"], rate.get("achieved_pps"), rate.get("asked_pps"), t["sent"], t["received"], t["lost"],
               t["reordered"], t["duplicated"], t["max_gap_ms"]))


def main():
    end = dict(netns=dict(type="str"), address=dict(type="str"))
    sink = dict(netns=dict(type="str"), address=dict(type="str", required=True))
    module = AnsibleModule(
        argument_spec=dict(
            source=dict(type="dict", required=True, options=end),
            sink=dict(type="dict", required=True, options=sink),
            flows=dict(type="int", default=16),
            source_port=dict(type="int", default=40000),
            destination_port=dict(type="int", default=9000),
            vary=dict(type="str", default="sport", choices=["sport", "dport", "both"]),
            rate=dict(type="float", default=1000.0),
            duration=dict(type="float", default=3.0),
            count=dict(type="int"),
            size=dict(type="int", default=64),
            settle=dict(type="float", default=0.5),
            warmup=dict(type="bool", default=True),
            dscp=dict(type="list", elements="int"),
            priority=dict(type="int", default=0),
            timeout=dict(type="float"),
            max_lost=dict(type="int"),
            max_reordered=dict(type="int"),
            max_duplicated=dict(type="int"),
            max_gap_ms=dict(type="float"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        cfg = _probe.defaults(_config(p))
        found = _probe.preflight(cfg, run=module_run(module))
    except (ValueError, _probe.ProbeError) as exc:
        module.fail_json(msg="traffic probe: %s" % exc)
    if module.check_mode:
        plan = {k: cfg[k] for k in ("source_netns", "src", "sink_netns", "dst", "flows", "sport", "dport", "vary", "rate",
                                    "duration", "count", "size", "settle")}
        plan["addresses"] = found
        module.exit_json(changed=False, plan=plan, msg="check mode: nothing sent")

    program = os.path.join(module.tmpdir, "flowstream-probe.py")
    with open(program, "w", encoding="utf-8") as handle:
        handle.write(inspect.getsource(_probe))
    try:
        result = _probe.run_probe(cfg, program=program, python=sys.executable)
    except _probe.ProbeError as exc:
        module.fail_json(msg="traffic probe: %s" % exc)
    limits = {"lost": p["max_lost"], "reordered": p["max_reordered"], "duplicated": p["max_duplicated"],
              "max_gap_ms": p["max_gap_ms"]}
    exceeded = _probe.check_limits(result, limits)
    for note in result["notes"]:
        module.warn("traffic probe: %s" % note)
    if exceeded:
        module.fail_json(msg="traffic probe: %s (%s)" % ("; ".join(exceeded), summary_line(result)),
                         probe=result, exceeded=exceeded)
    module.exit_json(changed=False, msg=summary_line(result), probe=result, exceeded=[])


def module_run(module):
    """subprocess.run's interface over AnsibleModule.run_command (for the preflight's ip calls)."""
    def run(argv, capture_output=True, text=True, check=False):  # pylint: disable=unused-argument
        rc, out, err = module.run_command(argv, check_rc=False)
        return _Completed(rc, out, err)
    return run


class _Completed:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


if __name__ == "__main__":
    main()
