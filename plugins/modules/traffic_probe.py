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
  - B(Groups) - O(groups) sends several groups of flows in one run (one per service chain, say),
    each at its own rate, from one sender to one receiver; the result has each group's totals in
    RV(probe.groups) besides the overall RV(probe.totals).
  - B(Sessions) (day-2 operations) - O(state=started) starts the probe in the background and
    returns at once with RV(session); the operation runs (a live migration, a drain); then
    O(state=stopped) with that O(session) stops it and returns the same RV(probe) figures as a
    run, checked against the same limits. A started session ends by itself after O(duration)
    seconds (default 600), so an abandoned one does not run for ever.
  - B(Windows) - O(windows) judges parts of the run exactly, from every packet's send time and
    every arrival - for each window the packets sent in it, those of them lost, reordered and
    duplicated, and the longest gap of a single flow overlapping it (RV(probe.windows)). An
    operation records when each move started and ended and gives those windows when it stops
    the session.
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
      - O(state=started) starts nothing and returns the RV(plan); O(state=stopped) stops
        nothing, removes nothing, and says what it would stop (RV(session) - the session's ends,
        their pids and whether they still run) - a session that does not exist, or whose ends
        died, fails as it would outside check mode.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - The probe sends traffic but changes no state of the platform; it always reports
        C(changed=false), also when it starts or stops a session (the session's processes and
        directory are the probe's own).
      - O(state=run) can be repeated at will; O(state=started) starts a new session each time;
        O(state=stopped) fails for a session that was stopped already.
requirements:
  - Linux network namespaces and C(ip) (iproute2) where the probe's endpoints are, run as root
options:
  state:
    description:
      - V(run) - send for O(duration) seconds (or O(count) packets) and report; the task takes
        that long.
      - V(started) - start a background session (receiver, then sender, both detached in a
        session of their own, reporting into files of the session directory under
        O(session_root)) and return at once with RV(session). The sender sends until the
        session is stopped, or at most O(duration) seconds; the receiver ends O(settle) seconds
        after the sender, when told, and always by O(timeout). O(count) is not for sessions.
      - V(stopped) - stop the session O(session) - tell the sender to stop, wait O(settle), stop
        the receiver, join their reports exactly like V(run) (the same RV(probe), the same
        limits O(max_lost) ..., which override those given at start), judge O(windows), and
        remove the session directory. Only that session's processes are ended, by the pids
        recorded at start, each checked in C(/proc) to still be that session's probe process.
        A session that does not exist (never started, or stopped already), or whose processes
        died without their reports, fails naming the session and what was found (the last
        lines of the dead end's stderr). O(source), O(sink) and the traffic options are not
        needed here; the session keeps what it was started with.
    type: str
    choices: [run, started, stopped]
    default: run
  session:
    description:
      - The session to stop with O(state=stopped) - its id, or the whole RV(session) dict that
        O(state=started) returned.
    type: raw
  session_root:
    description: Where session directories are made (C(<session_root>/<session id>/)).
    type: path
    default: /run/flowstream-probe
  groups:
    description:
      - Several groups of flows in one run, instead of O(flows), O(rate), O(destination_port),
        O(source_port), O(vary) and O(dscp) (mutually exclusive with each of them). One sender
        drives all groups - each group's packets at its own rate, round-robin over its flows,
        the groups interleaved by their schedules - and one receiver listens on every group's
        ports.
      - Flow ids are global - the first group's flows are 0 to n-1, the next group's follow.
      - Names must be unique, and no two groups may share both source and destination ports
        (the error names both groups and the ports); the rates may add up to at most 1000000
        packets per second.
      - Without O(groups) the probe has one group, V(default).
    type: list
    elements: dict
    suboptions:
      name:
        description: The group's name (the key of RV(probe.groups)).
        type: str
        required: true
      flows:
        description: Number of flows of the group.
        type: int
        default: 16
      rate:
        description: Packets per second of the group, over its flows.
        type: float
        default: 1000
      destination_port:
        description: The group's first destination port.
        type: int
        default: 9000
      source_port:
        description: The group's first source port.
        type: int
        default: 40000
      vary:
        description: What makes the group's 5-tuples distinct, as O(vary).
        type: str
        choices: [sport, dport, both]
        default: sport
      dscp:
        description: DSCP values the packets of each of the group's flows cycle through, as O(dscp).
        type: list
        elements: int
  windows:
    description:
      - Parts of the run to judge on their own (O(state=run) and O(state=stopped); given with
        O(state=started) they are kept for the stop, and a window given at the stop replaces one
        of the same name). See RV(probe.windows).
      - The figures are exact, not estimated - the sender keeps every packet's send time and the
        receiver every arrival (8 and 9 bytes per packet; 10 kpps for 10 minutes is about 50 MB
        at each end), in files of the session (or a temporary) directory.
    type: list
    elements: dict
    suboptions:
      name:
        description: The window's name (the key of RV(probe.windows)).
        type: str
        required: true
      start:
        description:
          - When the window starts, CLOCK_REALTIME - epoch seconds (a float, such as
            C(1764139200.25), or Ansible's C(now().timestamp())) or epoch nanoseconds (an
            integer, such as C(date +%s%N) prints). Told apart by magnitude - a value from
            10^12 up is nanoseconds, below it seconds. Numeric strings are accepted.
        type: raw
        required: true
      end:
        description: When the window ends, as O(windows[].start); not before it.
        type: raw
        required: true
  source:
    description: Where the traffic comes from. Required with O(state=run) and O(state=started).
    type: dict
    suboptions:
      netns:
        description: Network namespace of the sender; omit for the root namespace.
        type: str
      address:
        description: Source address; default the one the kernel chooses towards the sink.
        type: str
  sink:
    description: Where the traffic goes. Required with O(state=run) and O(state=started).
    type: dict
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
    description:
      - Seconds of sending (ignored when O(count) is given); default 3.
      - With O(state=started), the session's safety bound - the sender stops by itself after
        this many seconds if the session is not stopped before; default 600.
    type: float
  stop_with_playbook:
    description:
      - With O(state=started) - the session also ends when the playbook run that started it is
        gone (an operation killed half way leaves no traffic running and no port taken until the
        O(duration) bound). The module looks for its C(ansible-playbook) (or C(ansible-runner))
        process among its ancestors; on a host where it runs over SSH there is none, and only
        O(duration) bounds the session.
    type: bool
    default: true
  count:
    description:
      - Total packets to send instead of a duration. With O(groups), shared in proportion to the
        groups' rates (so they end together). Not with O(state=started).
    type: int
  size:
    description: UDP payload bytes per datagram (the IP packet is 28 bytes more), 32 to 8972; the first 32 are the probe's header.
    type: int
    default: 64
  settle:
    description:
      - Seconds the receiver keeps counting after the sender is done at most, for packets still
        in flight or queued (a shaper's queue). Packets arriving later count as lost.
      - The receiver stops sooner once every packet the sender sent has arrived (50 ms later, or
        twice the longest one-way latency seen, for duplicates still on their way), so a run that
        lost nothing does not wait the whole settle time (the receiver's C(stopped_by) is then
        V(all arrived)).
    type: float
    default: 0.5
  warmup:
    description:
      - Send one uncounted packet per flow 0.1 s before the run (it resolves ARP and sets up the
        switch's flow caches, so the first counted packets are not delayed by that).
    type: bool
    default: true
  until_carried:
    description:
      - Before the measured run (O(state=run) only), short uncounted probes at a low rate until
        every group receives with nothing lost, at most O(until_carried.tries) - a processing
        module just started may not forward yet (a VM boots for seconds under TCG). The measured
        run follows either way; RV(until_carried) says how many probes it took, and which groups
        were still losing at the last one. One task instead of a retried warm-up task and the
        probe - the start-up of the probe and the per-task cost of Ansible are paid once.
    type: dict
    suboptions:
      tries:
        description: At most this many short probes.
        type: int
        default: 30
      duration:
        description: Seconds each short probe sends.
        type: float
        default: 0.5
      rate:
        description: Packets per second of each group (of the one group without O(groups)) in a short probe.
        type: float
        default: 200
      measure:
        description:
          - V(false) - the short probes only, no measured run. The result has RV(until_carried)
            and no RV(probe), and the task does not fail when they ran out (the measured run,
            a task of its own, says what is lost). verify_chains.yml sends them this way while
            the module hosts read their counters, in one play.
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
    description:
      - Bound in seconds on the whole run; default the run's length + O(settle) + 30. A started
        session's receiver ends by this many seconds after the start whatever happens.
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

- name: Two chains in one run, each with its own flows and rate
  flowstream.platform.traffic_probe:
    source: {netns: fsl-source, address: 198.18.1.1}
    sink: {netns: fsl-sink, address: 198.18.1.2}
    groups:
      - {name: web, flows: 32, rate: 8000, destination_port: 9000}
      - {name: guest, flows: 8, rate: 1000, destination_port: 9100}
    duration: 5
    max_lost: 0
  delegate_to: localhost
  register: chains
# chains.probe.groups.web.totals.lost, chains.probe.groups.guest.totals.max_gap_ms, ...

# Day-2: keep the probe running while instances move, then judge each move on its own
- name: Start the probe in the background (it ends by itself after 10 minutes at most)
  flowstream.platform.traffic_probe:
    state: started
    source: {netns: fsl-source, address: 198.18.1.1}
    sink: {netns: fsl-sink, address: 198.18.1.2}
    groups:
      - {name: web, flows: 32, rate: 4000, destination_port: 9000}
      - {name: guest, flows: 8, rate: 1000, destination_port: 9100}
    duration: 600
  delegate_to: localhost
  register: probe_session

- name: Note when the move starts
  ansible.builtin.set_fact:
    move_start: "{{ now().timestamp() }}"

- name: Move the instance (whatever the operation is)
  ansible.builtin.debug:
    msg: live migration of web-1-a from mh1 to mh2 here

- name: Note when the move ended
  ansible.builtin.set_fact:
    move_end: "{{ now().timestamp() }}"

- name: Stop the probe - the whole session must lose nothing outside the move
  flowstream.platform.traffic_probe:
    state: stopped
    session: "{{ probe_session.session }}"
    windows:
      - {name: before, start: "{{ probe_session.session.started_ns }}", end: "{{ move_start }}"}
      - {name: move, start: "{{ move_start }}", end: "{{ move_end }}"}
  delegate_to: localhost
  register: judged

- name: The move may black out its flows for at most 200 ms, and nothing before it
  ansible.builtin.assert:
    that:
      - judged.probe.windows.move.blackout_ms < 200
      - judged.probe.windows.before.lost == 0
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
until_carried:
  description:
    - With O(until_carried), the short probes before the measured run.
  returned: when O(until_carried) was given and the probe ran (the only figures with O(until_carried.measure=false))
  type: dict
  contains:
    attempts:
      description: Short probes sent (the last one is the first that every group carried, unless RV(until_carried.carried) is false).
      type: int
    carried:
      description: Whether every group received with nothing lost at the last short probe.
      type: bool
    losing:
      description: The groups that lost a packet or received none at the last short probe.
      type: list
      elements: str
    seconds:
      description: How long the short probes took in all.
      type: float
  sample: {attempts: 1, carried: true, losing: [], seconds: 0.9}
plan:
  description:
    - In check mode (O(state=run) or O(state=started)), the settings that would be used
      (with C(groups), C(windows) and C(state)) and the addresses found in each namespace.
  returned: in check mode, except with O(state=stopped)
  type: dict
session:
  description:
    - With O(state=started) - the session that was started; give it (or its C(id)) as
      O(session) to stop it. In check mode with O(state=stopped) - the session that would be
      stopped, with the state of its ends (C(sender) and C(receiver) - C(pid), C(state)
      V(running), V(done) (ended with its report) or V(gone), and what was C(found)).
    - With O(state=stopped) - the same as RV(probe.session).
  returned: with O(state=started) and O(state=stopped)
  type: dict
  contains:
    id:
      description: The session id (the UTC start time and six random hex digits).
      type: str
      sample: 20261126-052400-3fa9c1
    dir:
      description: The session directory - the ends' reports, stderr and records, and C(session.json).
      type: str
      sample: /run/flowstream-probe/20261126-052400-3fa9c1
    started_ns:
      description: CLOCK_REALTIME (ns) just before the sender was started - usable as a window edge.
      type: int
    pids:
      description: C(sender) and C(receiver) - the pids of the session's two ends.
      type: dict
    settings:
      description: The settings the session runs with (as RV(probe.settings), with C(run_id), C(timeout), C(priority)).
      type: dict
    swept:
      description:
        - With O(state=started) - the ids of sessions left behind by playbook runs that were killed (their owner is
          gone, neither end runs), whose directories were removed before this session started. Sessions without an
          owner (started with O(stop_with_playbook=false)) are never removed.
      type: list
      elements: str
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
          description: Flow id (0 to O(flows)-1; with O(groups), global - the first group's flows first).
          type: int
        group:
          description: The name of the flow's group (V(default) without O(groups)).
          type: str
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
    groups:
      description:
        - Per group (one, V(default), without O(groups)) - C(totals), the same figures as
          RV(probe.totals) over the group's flows (its longest gap over its own arrivals, so a
          group that stopped while others kept flowing shows it), C(flows), the group's flow ids,
          and C(rate) - the group's C(asked_pps), C(achieved_pps), C(interval_ms) (between two
          packets of one of its flows) and C(dscp).
      type: dict
      sample: {web: {totals: {sent: 40000, received: 40000, lost: 0}, flows: [0, 1, 2], rate: {asked_pps: 8000.0, achieved_pps: 7998.1}}}
    windows:
      description:
        - Per window of O(windows) - the figures of the packets whose send time lies in
          [start, end] - C(sent); C(lost), those of them that never arrived; C(reordered) and
          C(duplicated), their arrivals flagged so; C(received), their arrivals (duplicates
          included); C(max_gap_ms), the longest interval between consecutive arrivals of one
          flow that overlaps the window (the whole interval, also when it straddles an edge;
          before a flow's first arrival the interval starts at its first send time, after its
          last arrival it ends at its last send time) and C(max_gap_flow), whose; C(blackout_ms),
          the longest such gap less its flow's normal spacing (its group's flows / rate), never
          negative; C(lost_bursts), when the lost packets were sent - bursts of losses less than
          10 ms apart, the 5 largest in time order, each C(after_ms) (from the window's start),
          C(ms) and C(lost); C(start_ns) and C(end_ns); and C(groups), the same figures per group.
        - The gap is per flow on purpose - a moved instance stops the flows that cross it while
          the others keep flowing, which the total gap would hide. C(max_gap_ms) and
          C(blackout_ms) are null when no arrival interval of any flow overlaps the window (a
          window outside the run; RV(probe.notes) says so).
      returned: when O(windows) were given
      type: dict
      sample: {move: {start_ns: 1764139200250000000, end_ns: 1764139202750000000, sent: 10000, received: 9702, lost: 298,
                      reordered: 0, duplicated: 0, max_gap_ms: 151.2, max_gap_flow: 3, blackout_ms: 147.2,
                      lost_bursts: [{after_ms: 1210.4, ms: 146.9, lost: 298}],
                      groups: {web: {sent: 8000, received: 7702, lost: 298, reordered: 0, duplicated: 0, max_gap_ms: 151.2,
                                     max_gap_flow: 3, blackout_ms: 147.2, lost_bursts: [{after_ms: 1210.4, ms: 146.9, lost: 298}]}}}}
    session:
      description:
        - With O(state=stopped) - C(id), C(dir), C(started_ns), C(stopped_ns) (CLOCK_REALTIME),
          C(sender_stopped_by) (V(signal 15) or V(stop-file) when stopped, V(duration) when it had
          reached its bound) and C(receiver_stopped_by).
      returned: with O(state=stopped)
      type: dict
    rate:
      description: What the sender did (over all groups).
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
      description:
        - The settings the probe ran with (the source address as used), with C(groups) (the one
          group V(default) without O(groups); with O(groups), C(flows) and C(rate) are the totals
          and the single-group ports are null) and, when given, C(windows) (C(start_ns), C(end_ns)).
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
      - {flow: 0, group: default, src: 198.18.1.1, dst: 198.18.1.2, proto: udp, sport: 40000, dport: 9000, sent: 15000, received: 15000,
         unique: 15000, lost: 0, loss_percent: 0.0, reordered: 0, max_reorder_extent: 0, duplicated: 0, max_gap_ms: 9.1,
         latency_ms: {min: 0.017, avg: 0.15, max: 8.8}}
    rate: {asked_pps: 10000.0, achieved_pps: 10000.0, duration_s: 3.0, interval_ms: 0.2, max_send_gap_ms: 0.67, max_lag_ms: 0.63,
           window_pps: {min: 10000.0, max: 10000.0, windows: 29}, send_errors: {}, warmup_sent: 2, scheduling: normal}
    groups:
      default: {flows: [0, 1], rate: {asked_pps: 10000.0, achieved_pps: 10000.0, interval_ms: 0.2, dscp: []},
                totals: {sent: 30000, received: 30000, unique: 30000, lost: 0, loss_percent: 0.0, reordered: 0,
                         max_reorder_extent: 0, duplicated: 0, max_gap_ms: 8.8, latency_ms: {min: 0.017, avg: 0.14, p50: 0.063,
                                                                                            p99: 2.2, max: 8.8}}}
    receiver: {foreign: 0, other_runs: 0, warmup_received: 2, socket_drops: 0, timestamps: kernel, ports: [9000], stopped_by: stop}
    notes: []
"""

import inspect
import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.flowstream.platform.plugins.module_utils import _probe


SINGLE_GROUP_OPTIONS = ("flows", "rate", "destination_port", "source_port", "vary", "dscp")


def _config(p):
    grouped = p["groups"] is not None
    return {
        "source_netns": (p["source"] or {}).get("netns"), "src": (p["source"] or {}).get("address"),
        "sink_netns": (p["sink"] or {}).get("netns"), "dst": (p["sink"] or {}).get("address"),
        "flows": None if grouped else p["flows"], "sport": None if grouped else p["source_port"],
        "dport": None if grouped else p["destination_port"], "vary": None if grouped else p["vary"],
        "rate": None if grouped else p["rate"], "dscp": None if grouped else p["dscp"], "groups": p["groups"],
        "windows": p["windows"],
        "duration": p["duration"], "count": p["count"], "size": p["size"], "settle": p["settle"],
        "warmup": p["warmup"], "priority": p["priority"], "timeout": p["timeout"],
    }


def _limits(p):
    return {"lost": p["max_lost"], "reordered": p["max_reordered"], "duplicated": p["max_duplicated"],
            "max_gap_ms": p["max_gap_ms"]}


def summary_line(result):
    t, rate = result["totals"], result.get("rate") or {}
    return ("%d flows at %s pps (asked %s): sent %d, received %d, lost %d, reordered %d, duplicated %d, longest gap %s ms"
            % (result["flow_count"], rate.get("achieved_pps"), rate.get("asked_pps"), t["sent"], t["received"], t["lost"],
               t["reordered"], t["duplicated"], t["max_gap_ms"]))


def _finish(module, result, limits, **extra):
    """exit_json or, with a limit exceeded, fail_json - the figures in the result either way."""
    exceeded = _probe.check_limits(result, limits)
    for note in result["notes"]:
        module.warn("traffic probe: %s" % note)
    line = summary_line(result)
    if result.get("session"):
        line += " (session %s)" % result["session"]["id"]
    if exceeded:
        module.fail_json(msg="traffic probe: %s (%s)" % ("; ".join(exceeded), line), probe=result, exceeded=exceeded, **extra)
    module.exit_json(changed=False, msg=line, probe=result, exceeded=[], **extra)


def _stop(module, p):
    root = p["session_root"]
    try:
        if module.check_mode:
            status = _probe.session_status(p["session"], root)
            gone = [role for role in ("sender", "receiver") if status[role]["state"] == "gone"]
            if gone:
                module.fail_json(msg="traffic probe: " + "; ".join(
                    "session %s: the %s (%s) ended without its report (killed, or it failed)" % (status["id"], role, status[role]["found"])
                    for role in gone), session=status)
            module.exit_json(changed=False, session=status, msg="check mode: would stop session %s (sender %s, receiver %s), "
                             "join their reports and remove %s" % (status["id"], status["sender"]["found"],
                                                                   status["receiver"]["found"], status["dir"]))
        result, kept = _probe.stop_session(p["session"], root, windows=p["windows"])
    except (ValueError, _probe.ProbeError) as exc:
        module.fail_json(msg="traffic probe: %s" % exc)
    limits = dict(kept)
    limits.update({k: v for k, v in _limits(p).items() if v is not None})
    _finish(module, result, limits, session=result["session"])


def main():
    end = dict(netns=dict(type="str"), address=dict(type="str"))
    sink = dict(netns=dict(type="str"), address=dict(type="str", required=True))
    group = dict(name=dict(type="str", required=True), flows=dict(type="int", default=16), rate=dict(type="float", default=1000.0),
                 destination_port=dict(type="int", default=9000), source_port=dict(type="int", default=40000),
                 vary=dict(type="str", default="sport", choices=["sport", "dport", "both"]), dscp=dict(type="list", elements="int"))
    window = dict(name=dict(type="str", required=True), start=dict(type="raw", required=True), end=dict(type="raw", required=True))
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="run", choices=["run", "started", "stopped"]),
            stop_with_playbook=dict(type="bool", default=True),
            session=dict(type="raw"),
            session_root=dict(type="path", default=_probe.SESSION_ROOT),
            groups=dict(type="list", elements="dict", options=group),
            windows=dict(type="list", elements="dict", options=window),
            source=dict(type="dict", options=end),
            sink=dict(type="dict", options=sink),
            flows=dict(type="int", default=16),
            source_port=dict(type="int", default=40000),
            destination_port=dict(type="int", default=9000),
            vary=dict(type="str", default="sport", choices=["sport", "dport", "both"]),
            rate=dict(type="float", default=1000.0),
            duration=dict(type="float"),
            count=dict(type="int"),
            size=dict(type="int", default=64),
            settle=dict(type="float", default=0.5),
            warmup=dict(type="bool", default=True),
            dscp=dict(type="list", elements="int"),
            until_carried=dict(type="dict", options=dict(tries=dict(type="int", default=30), duration=dict(type="float", default=0.5),
                                                         rate=dict(type="float", default=200.0), measure=dict(type="bool", default=True))),
            priority=dict(type="int", default=0),
            timeout=dict(type="float"),
            max_lost=dict(type="int"),
            max_reordered=dict(type="int"),
            max_duplicated=dict(type="int"),
            max_gap_ms=dict(type="float"),
        ),
        mutually_exclusive=[("groups", option) for option in SINGLE_GROUP_OPTIONS],
        required_if=[("state", "run", ("source", "sink")), ("state", "started", ("source", "sink")),
                     ("state", "stopped", ("session",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["until_carried"] and p["state"] != "run":
        module.fail_json(msg="traffic probe: until_carried is for state=run (the short probes come before a measured run), "
                             "not state=%s" % p["state"])
    if p["state"] == "stopped":
        _stop(module, p)
    started = p["state"] == "started"
    try:
        cfg = _probe.defaults(_config(p), session=started)
        found = _probe.preflight(cfg, run=module_run(module))
    except (ValueError, _probe.ProbeError) as exc:
        module.fail_json(msg="traffic probe: %s" % exc)
    if module.check_mode:
        plan = {k: cfg[k] for k in ("source_netns", "src", "sink_netns", "dst", "flows", "sport", "dport", "vary", "rate",
                                    "duration", "count", "size", "settle")}
        plan.update({"state": p["state"], "groups": cfg["groups"], "windows": cfg["windows"], "addresses": found})
        if started:
            plan["session_root"] = p["session_root"]
            module.exit_json(changed=False, plan=plan, msg="check mode: nothing started; would start a probe session under %s "
                             "(receiver in %s, then sender in %s), sending until it is stopped, at most %s s" % (
                                 p["session_root"], cfg["sink_netns"] or "the root namespace",
                                 cfg["source_netns"] or "the root namespace", cfg["duration"]))
        module.exit_json(changed=False, plan=plan, msg="check mode: nothing sent")

    program = os.path.join(module.tmpdir, "flowstream-probe.py")
    with open(program, "w", encoding="utf-8") as handle:
        handle.write(inspect.getsource(_probe))
    if started:
        if p["stop_with_playbook"]:
            cfg["watch_pid"] = _probe.owner_pid()
        try:
            session = _probe.start_session(cfg, program=program, python=sys.executable, root=p["session_root"], limits=_limits(p))
        except (ValueError, OSError, _probe.ProbeError) as exc:
            module.fail_json(msg="traffic probe: cannot start a session: %s" % exc)
        module.exit_json(changed=False, session=session,
                         msg="probe session %s started: %d flows at %s pps in total, until state=stopped (at most %s s)" % (
                             session["id"], cfg["flows"], cfg["rate"], cfg["duration"]))
    extra = {}
    try:
        if p["until_carried"]:
            ready = p["until_carried"]
            extra["until_carried"] = _probe.until_carried(
                cfg, ready["tries"], duration=ready["duration"], rate=ready["rate"],
                runner=lambda short: _probe.run_probe(short, program=program, python=sys.executable))
            if not ready["measure"]:
                got = extra["until_carried"]
                module.exit_json(changed=False, until_carried=got, msg=(
                    "every group carried traffic at short probe %d (%s s)" % (got["attempts"], got["seconds"]) if got["carried"] else
                    "after %d short probes still losing traffic: %s" % (got["attempts"], ", ".join(got["losing"]))))
        result = _probe.run_probe(cfg, program=program, python=sys.executable)
    except _probe.ProbeError as exc:
        module.fail_json(msg="traffic probe: %s" % exc, **extra)
    _finish(module, result, _limits(p), **extra)


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
