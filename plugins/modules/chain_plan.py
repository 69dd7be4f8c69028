#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: chain_plan
short_description: Plan service chains - place instances by load, compile the switch flows
version_added: 0.1.0
description:
  - Runs on the controller (an action plugin; nothing is sent to a host). Validates every chain
    of O(chains) against the catalogue and the platform (switches, uplinks, black boxes), refuses
    chains whose matches overlap, places their instances on module hosts from each host's
    capacity and live load, keeping instances where they are and keeping a chain's consecutive
    steps on one host where that fits, and compiles each chain's switch flows under the chain's
    cookie.
  - Host-local chaining. Where consecutive steps of a chain run on the same module host, the
    plan also holds flows for that host's bridge (same cookie) that take a packet from one
    instance's leg straight to the next instance's leg, so it does not cross the switch in
    between; they decide exactly as the switch flows would (same split matches, same hash slots
    for a parallel step).
  - Reads the platform from the inventory (the C(flowstream.platform.platform) plugin's groups
    and host variables) and each module host's report from its host variable
    C(flowstream_host_report), the registered result of M(flowstream.platform.module_host_info).
  - Fails before any host or switch is touched when a chain is wrong (naming chain, step and
    field) or capacity is short (naming chain, step and the shortfall).
  - An operation says what it wants beyond the chains in O(policy) - hosts to keep free
    (cordoned), hosts to empty (draining), instances to move to a given host, whether spares
    may be used. Host marks set on the platform by M(flowstream.platform.module_host_maintenance)
    (reported by M(flowstream.platform.module_host_info)) are honoured whatever the policy
    says - a re-run of deploy-chain never puts an instance back on a cordoned or drained host.
  - "The plan is a list of O(rolling) waves, each applied make-before-break by the
    collection's C(playbooks/tasks/apply_wave.yml): instances to remove first, states to export,
    instances to install, flows before a libvirt switchover (C(flows_pre)), flows while old
    copies drain (C(flows_during): the new places, and the old copies' packets taken onward),
    old copies to remove once quiet, and the final flows (C(flows)). Every moved instance says
    from where to where, by which method (V(make_before_break) with its state carried,
    V(libvirt) live migration, V(cold) re-creation), and why."
  - This is the planning step of C(playbooks/deploy-chain.yml), C(playbooks/migrate-module.yml)
    and C(playbooks/drain-host.yml); they then install the instances with
    M(flowstream.platform.processing_module) and program the host bridges and the switches with
    M(flowstream.platform.openflow_flows).
author:
  - Flowstream Platform Maintainers (@flowstream)
extends_documentation_fragment:
  - flowstream.platform.attributes
  - flowstream.platform.attributes.info_module
requirements:
  - None beyond ansible-core (it runs on the controller and reads only its arguments, the hosts' reports and the platform's description)
options:
  chains:
    description:
      - The service chains (the inventory's C(flowstream_chains)). Schema in the collection's
        docs/service-chains.md.
    type: list
    elements: dict
    required: true
  catalogue:
    description: The operator's processing-module types (C(flowstream_catalogue)).
    type: dict
    default: {}
  policy:
    description: What the operation wants beyond the chains. Every host and instance named is checked
      before a plan is returned.
    type: dict
    default: {}
    suboptions:
      cordoned:
        description: Module hosts that take no new instance (what runs there stays).
        type: list
        elements: str
      draining:
        description: Module hosts to empty - nothing new goes there and every instance there moves off.
        type: list
        elements: str
      moves:
        description:
          - Instances that must go to a given host. C(method) is V(live) (default; a VM by libvirt live
            migration, other kinds make-before-break with their state carried) or V(cold)
            (re-created on the target).
          - Refused, naming the instance and host, when the instance does not run, is a black box, is
            being removed, already runs on the target, or the target is cordoned, draining, out of
            service, unreported, a spare (without O(policy.allow_spares)), does not run the kind
            (a VM to a host without libvirt) or is short of capacity (by how much).
        type: list
        elements: dict
      allow_spares:
        description:
          - Spares may take instances (a failover, or a move asked to a spare).
          - The standby of a step whose C(spare) is V(warm) goes to a spare host whatever this says (first
            choice; else a host running none of the step's instances).
        type: bool
        default: false
      restore_by_priority:
        description:
          - A failover - when capacity is short, chains are restored whole, highest C(restore_priority)
            first (ties - the order of O(chains)), and a chain that does not fit is held instead of the
            whole plan failing. Nothing of a held chain is installed, moved or removed (what of it still
            runs stays), and the switch holds its traffic - its C(fail_mode) V(closed) (the default)
            drops it, V(open) sends it from uplink to uplink past the steps. RV(plan.held) names the
            held chains and why. A chain's warm spare is part of the chain (placed right after its
            instances).
          - Without it a shortfall fails the plan, naming the chain and step.
        type: bool
        default: false
      objective:
        description:
          - V(spread) - placement as deploy-chain does it.
          - V(pack) - consolidation for quiet hours - the fewest module hosts that hold every instance
            with O(policy.pack.headroom) left, preferring the hosts that hold the most already (fewest
            moves). The hosts to free are drained (their instances move live, each to the host the
            packing chose), the hosts to power off and the ones kept on empty take nothing new, and
            RV(plan.consolidation) says which hosts go off and why. CPU and memory as the steps
            reserve them, and - on hosts that declare C(capacity.pps) - each instance's packet rate
            as its host's report measured it. Proven the fewest on platforms of up to 6 hosts and
            10 instances (exhaustive search), at most one host above the lower bound on the
            benchmark's workloads beyond that (C(bench/consolidate.py); with packet rates counted
            up to 1.4 times the per-resource lower bound, docs/planner.md).
        type: str
        choices: [spread, pack]
        default: spread
      respread:
        description:
          - With O(policy.objective=spread) - every instance goes where placement would put it on the
            platform as it is, from empty (live moves; instances of chains the request does not
            describe stay). C(playbooks/power-up.yml) undoes a pack with it once the hosts are back.
        type: bool
        default: false
      pack:
        description: Options of O(policy.objective=pack).
        type: dict
        suboptions:
          headroom:
            description: The share of each host's declared CPU and memory the packing leaves unused (0 to 0.9).
            type: float
            default: 0.2
          keep_free:
            description: Hosts kept on and empty (for a failover); declared spares count.
            type: int
            default: 1
          min_freed:
            description: When fewer hosts than this could be powered off, nothing moves (RV(plan.consolidation) says why).
            type: int
            default: 1
          min_interval:
            description: Seconds that must have passed since O(policy.pack.last) at O(policy.pack.now); sooner, nothing moves.
            type: float
            default: 0
          last:
            description: When the last consolidation ran (epoch seconds), or null.
            type: float
          now:
            description: The time now (epoch seconds), for O(policy.pack.min_interval).
            type: float
          freeing:
            description:
              - Module hosts an earlier power-down marked draining or drained to free and did not switch
                off (it was killed half-way). They are freed again - what still runs there moves off, a
                second copy left by an interrupted move is resumed - and count among the hosts to power
                off, so a re-run finishes the job. C(playbooks/power-down.yml) names the hosts whose mark
                it set itself.
            type: list
            elements: str
            default: []
  rolling:
    description: One wave per draining host (in the order of O(policy.draining)), instead of one
      wave for everything; a VM that libvirt moves always has a wave of its own.
    type: bool
    default: false
  only_moves:
    description:
      - For an operation that moves instances and nothing else (migrate-module, drain-host) - fail,
        naming them, when the platform is not as the chains describe (instances to install or
        remove - deploy-chain's work), and leave kept instances as they are (deploy-chain converges
        them).
    type: bool
    default: false
  converge:
    description:
      - Converge the instances the plan keeps where they run - their parameters and type, checked
        on their hosts one by one, as deploy-chain does (true); or leave every kept instance that
        its host reports running, as the kind and type its step names, as it is and make only
        what is missing (false).
      - C(playbooks/failover.yml) plans with false - a failover restores what failed and changes
        nothing else; deploy-chain converges the rest.
    type: bool
    default: true
  trials:
    description:
      - Trials of this request over those recorded on the switches (M(flowstream.platform.chain_trial),
        read by C(playbooks/gather_hosts.yml) into C(flowstream_trials), which every plan applies to
        the chains) - each C({chain, step, trial, promotion}), C(trial) a step's C(trial) (C(type),
        C(kind), C(params), C(instances), C(percent)) or null to end the step's trial, C(promotion)
        a promotion (C(module), C(from); see M(flowstream.platform.chain_trial)) or null to forget
        one; a key left out leaves that record as it is. C(playbooks/trial.yml) plans with it
        before it records the change.
    type: list
    elements: dict
notes:
  - Hosts that did not report (unreachable) are not used for new instances and are listed in
    RV(unreported_hosts).
"""

EXAMPLES = r"""
- name: Plan the chains
  flowstream.platform.chain_plan:
    chains: "{{ flowstream_chains }}"
    catalogue: "{{ flowstream_catalogue | default({}) }}"
  register: flowstream_plan
"""

RETURN = r"""
plan:
  description: What to do.
  returned: success
  type: dict
  contains:
    waves:
      description:
        - The change in the order it is applied. Each wave has C(name), C(moves), C(vm_move) (a VM
          moved by libvirt, or null), C(transition) (whether flows change between C(flows_during) and
          C(flows)), C(hosts) (per module host C(remove_first), C(export), C(install), C(remove),
          C(flows_pre), C(flows_during), C(flows)) and C(switches) (per switch C(flows_pre),
          C(flows_during), C(flows), the warm spares' fast-failover groups each stage's flows use
          C(groups_pre), C(groups_during), C(groups), their C(group_id_range), C(chains), C(absent)).
        - Per host and per switch, C(unchanged) names the stages whose bundle would leave that
          bridge's table as its stage before left it (the apply step skips them); a bridge's first
          stage, and its first stage after an instance was made or removed on it, always runs.
      type: list
      elements: dict
    hosts:
      description:
        - Per module host, every wave's instances to install (with why there) and to remove, and the
          host bridge's final flows (C(flows)) under the chains' cookie range (C(cookie), C(cookie_mask)).
      type: dict
    switches:
      description: Per switch, each chain's cookie and flows, and the cookies of chains to remove.
      type: dict
    chains:
      description: Per chain, its path (steps and instances), placement, cookie, switch flow count and
        host flow count per host.
      type: dict
    instances:
      description: Every instance with its host, VLANs and the reason for its place.
      type: dict
    moves:
      description: Instances that change host - C(instance), C(chain), C(step), C(kind), C(from), C(to),
        C(method) (V(live) or V(cold)), C(how) (V(make_before_break), V(libvirt), V(cold)), C(carry)
        (state carried), C(from_vlans), C(to_vlans), C(reason).
      type: list
    policy:
      description: The policy as applied - cordoned and draining hosts (the operation's and the
        platform's marks together), moves, allow_spares, objective.
      type: dict
    held:
      description:
        - With O(policy.restore_by_priority), the chains the capacity could not hold (empty otherwise)
          - per chain its C(restore_priority), C(fail_mode), the C(step) that did not fit and C(reason)
          (the shortfall, per host), C(details) (the figures), C(running) (its instances still running,
          and where) and C(missing) (its instances that run nowhere).
      type: dict
      sample: {guest: {restore_priority: 100, fail_mode: closed, step: fw, reason: "capacity short: needs 1 instance of 2.00 CPU ...",
               running: {gst0a1b2: [mh1]}, missing: [gst1c3d4]}}
    consolidation:
      description:
        - With O(policy.objective=pack), what the packing decided (null otherwise) - C(worth_it) and
          C(why); C(before) and C(after) (hosts holding instances); C(freed), C(power_off) (every
          host left empty that is not kept on), C(standby) (kept on empty for O(policy.pack.keep_free)),
          C(spares); C(lower_bound) and C(exact) (whether the count is proven the fewest); C(fixed)
          (hosts that stay on because they run instances of chains the request does not describe,
          and why); C(moves) (C(instance), C(from), C(to)); C(headroom), C(keep_free), C(min_freed).
      type: dict
      sample: {worth_it: true, why: "1 host(s) hold every instance with 20 % headroom (lower bound 1, the fewest possible)
               instead of 3: mh3 powered off; mh2 kept on, empty (keep_free)", before: [mh1, mh2, mh3], after: [mh1],
               freed: [mh2, mh3], power_off: [mh3], standby: [mh2], spares: [], lower_bound: 1, exact: true, fixed: {},
               moves: [{instance: web4b51a, from: mh2, to: mh1}], headroom: 0.2, keep_free: 1, min_freed: 1}
unreported_hosts:
  description: Module hosts without a report.
  returned: success
  type: list
  elements: str
"""
