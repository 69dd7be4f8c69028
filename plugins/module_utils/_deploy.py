# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy-chain's controller side: chains + the platform + the hosts' reports -> what to do.

Everything is validated (chains, overlaps, capacity) before a plan is returned: a bad request
fails here, before any host or switch is touched. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.flowstream.platform.plugins.module_utils import _planner
from ansible_collections.flowstream.platform.plugins.module_utils._chains import ChainError, companion_of, match_text, validate
from ansible_collections.flowstream.platform.plugins.module_utils._compiler import (GROUP_ID_RANGE, SLOTS, check_overlaps, compile_chain,
                                                                                    compile_held)
from ansible_collections.flowstream.platform.plugins.module_utils._flow_hash import moved_slots, slot_owners

CHAINS_COOKIE = 0xF5C0000000000000
CHAINS_MASK = 0xFFFF000000000000


class DeployError(Exception):
    """Names the chain, step and field (ChainError, PlanError) or the platform piece at fault."""


# Pseudo host of a VM that libvirt is moving: no bridge holds its ports while its flows are
# compiled for the switch, so no host flow names it (host-local chaining waits for it to land).
IN_FLIGHT = "(in flight)"
# kinds whose instances carry state to their new copy in a live move (a VM carries its own)
CARRY_KINDS = ("kernel", "process", "click")
# The order barrier of a make-before-break move (docs/operations.md#reordering): a marker frame of
# this EtherType (IEEE 802 local experimental), sent into the old copy once nothing else will
# enter it, comes out behind everything it still held and is relayed to the new copy, which has
# held its output until then.
MARKER_ETHERTYPE = 0x88B5
MARKER_SOURCE_MAC = "02f54d4b0001"
# a new copy lets a direction go without its marker this long after its first held packet (the
# marker may come one Ansible task after the switch moved: the old copy's host bridge sends it)
HOLD_TIMEOUT = 10.0
DIRECTIONS = (("fwd", "left", "right"), ("rev", "right", "left"))  # (direction, leg it enters, leg it leaves)


def marker_token(move):
    """A token naming one move (the same on every run of the same move)."""
    text = "%s %s %s %s %s" % (move["instance"], move["from"], move["to"], sorted((move["from_vlans"] or {}).items()),
                               sorted(move["to_vlans"].items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def marker_frame(instance, direction, token):
    """The marker, as the hexadecimal Ethernet frame packet-out sends (broadcast, padded to 60 bytes)."""
    payload = ("FSMARK1 %s %s %s" % (instance, direction, token)).encode()
    frame = bytes.fromhex("ff" * 6 + MARKER_SOURCE_MAC + "%04x" % MARKER_ETHERTYPE) + payload
    return (frame + b"\0" * max(0, 60 - len(frame))).hex()


def _marker_relays(move, chain, old_trunk, new_trunk):
    """Switch flows (during the change) taking a move's markers from the old copy to the new one."""
    old, new = move["from_vlans"], move["to_vlans"]
    out = []
    for _direction, enters, leaves in DIRECTIONS:
        out.append({"cookie": _cookie(chain["cookie"]), "table": 0, "priority": chain["priority"] + 3,
                    "match": "in_port=%s,dl_vlan=%d,dl_type=0x%04x" % (old_trunk, old[leaves], MARKER_ETHERTYPE),
                    "actions": "set_field:%d->vlan_vid,output:%s" % (0x1000 | new[enters], new_trunk)})
    return out


def _cookie(value):
    return "0x%016x" % value


MODULE_KEYS = ("type", "kind", "params", "vm")   # what a step runs; what a promotion replaces
_ENDS = {"trial": "playbooks/trial.yml -e chain=%(chain)s -e step=%(step)s -e action=rollback",
         "promotion": "playbooks/trial.yml -e chain=%(chain)s -e step=%(step)s -e action=forget",
         "scale": "playbooks/scale-step.yml -e chain=%(chain)s -e step=%(step)s -e instances=<the description's>"}


def module_of(step):
    """The processing module a step of the description runs: its type, kind, params and vm, as written."""
    return {k: step[k] for k in MODULE_KEYS if k in step}


def with_trials(chains, switches, trials=None):
    """The chains with the trials, promotions and scalings recorded on their switches
    (``switches[s]["trials"]``, chain_trial) on their steps, then ``trials`` - [{chain, step,
    trial, promotion, scale}] of this request (trial.yml: a trial to start, ``trial: null`` to
    end one; a ``promotion`` to record, ``promotion: null`` to forget one; scale-step.yml: a
    ``scale``; a key left out leaves that record as it is) - over them.

    A promotion ({module, from}) gives the step ``module``, a scaling ({instances, from}) gives it
    ``instances``, for as long as the description still gives the step ``from``; once it says
    something else, the description wins (with a warning: the record can go). A step whose
    description declares a trial of its own keeps it; a record that names no step of the chains
    any more is left out, with a warning. Returns (chains, warnings); the input is not changed."""
    chains = [dict(c, steps=[dict(s) if isinstance(s, dict) else s for s in c.get("steps") or []]) if isinstance(c, dict) else c
              for c in chains or []]
    by_name = {c.get("name"): c for c in chains if isinstance(c, dict)}
    wanted = {"trial": {}, "promotion": {}, "scale": {}}
    warnings = []
    for switch, spec in sorted((switches or {}).items()):
        for rec in (spec.get("trials") or {}).values():
            for what in wanted:
                if rec.get(what) is not None:
                    since = rec.get("since" if what == "trial" else what + "_since")
                    wanted[what][(rec.get("chain"), rec.get("step"))] = (rec[what], "recorded on %s since %s" % (switch, since))
    for req in trials or []:
        for what in wanted:
            if what in req:
                wanted[what][(req.get("chain"), req.get("step"))] = (req[what], "this request")

    def step_of(chain, step, what, where):
        found = by_name.get(chain)
        target = next((s for s in (found or {}).get("steps") or [] if isinstance(s, dict) and s.get("name") == step), None)
        if target is None:
            warnings.append("the %s of %s/%s (%s) names no step of the chains: %s ends it"
                            % (what, chain, step, where, _ENDS[what] % {"chain": chain, "step": step}))
        return target

    for what in ("promotion", "scale"):
        for (chain, step), (record, where) in sorted(wanted[what].items()):
            target = step_of(chain, step, what, where) if record is not None else None
            if target is None:
                continue
            now, was, then = ((module_of(target), record.get("from"), record.get("module") or {}) if what == "promotion" else
                              ({"instances": target.get("instances", 1)}, {"instances": record.get("from")},
                               {"instances": record.get("instances")}))
            if now != was:
                warnings.append("%s/%s: the description gives the step %s, not %s as when it was %s %s (%s): the description "
                                "wins; %s removes the record"
                                % (chain, step, json.dumps(now, sort_keys=True), json.dumps(was, sort_keys=True),
                                   "promoted to" if what == "promotion" else "scaled to", json.dumps(then, sort_keys=True), where,
                                   _ENDS[what] % {"chain": chain, "step": step}))
                continue
            for key in was:
                target.pop(key, None)
            target.update(then)
    for (chain, step), (trial, where) in sorted(wanted["trial"].items()):
        target = step_of(chain, step, "trial", where)
        if target is None:
            continue
        if "trial" in target and where != "this request":
            continue  # the description's own trial
        if trial is None:
            target.pop("trial", None)
        else:
            target["trial"] = trial
    return chains, warnings


def build_plan(chains, catalogue, hosts, switches, blackboxes, policy=None, rolling=False, only_moves=False, trials=None,
               converge=True):
    """The whole operation, planned and compiled, validated before anything is touched.

    ``hosts``: {name: {capacity, kinds, spare, in_service, trunk, switch, host_bridge, report}};
    ``switches``: {name: {uplinks, openflow_target, openflow_version, ssl}};
    ``blackboxes``: {name: {switch, ports}}; ``policy``: _planner.check_policy's input
    (cordoned, draining, moves, allow_spares, objective); ``rolling``: one wave per draining
    host (in the order the policy names them), else one wave for everything; ``only_moves``: an
    operation (migrate, drain) that moves instances and nothing else - it fails, naming them,
    when the platform is not as the chains describe (instances to install or remove:
    deploy-chain's work), and converges no kept instance; ``converge`` false (a failover): an
    instance the plan keeps where it runs, running as the kind and type its step names, is left
    as it is (not checked again, instance by instance, over SSH) - only what is missing is made.

    The change is applied wave by wave (playbooks/tasks/apply_wave.yml); every wave is
    make-before-break and crash-safe:

    1. ``remove_first`` (an id replaced on the same host: the id names its ports) and
       ``export`` (the state of the instances a live move takes along, read on their old host);
    2. ``install``: new instances, and the new copies of moving ones (with that state);
    3. ``flows_pre`` (a wave that moves instances): host bridges stop sending moving instances
       anything on their own (their neighbours there send up the trunk, the switch still sends
       them down), and the switch learns a VM's new tags as arrivals;
    4. ``flows_during``: the switch sends to the new places, while packets still inside old
       copies (``draining``) are taken onward from them - on the switch first, then on the
       host bridges; for a VM this switch bundle is applied at libvirt's switchover event;
    5. ``remove`` with ``quiesce``: old copies are removed once their legs are quiet (their
       state read last and carried to the new copy);
    6. ``flows``: the final flows, without the old copies' arrivals.

    Killed at any point, the switch and every bridge send every packet to an instance that
    exists (old or new); the next run plans from what it finds (a second copy, an orphan) and
    converges. Returns {"waves": [...], "hosts", "switches", "chains", "instances", "moves",
    "capacity", "policy", "warnings"}; the top-level ``hosts``/``switches`` hold the end state
    (the final flows and every wave's lists together)."""
    uplinks = {s: {"uplinks": v.get("uplinks") or {}} for s, v in switches.items()}
    try:
        # the description as written first: a malformed one is named before anything reads it
        validate(chains, catalogue, uplinks, blackboxes)
    except ChainError as exc:
        raise DeployError(str(exc)) from exc
    chains, trial_warnings = with_trials(chains, switches, trials)
    try:
        valid = validate(chains, catalogue, uplinks, blackboxes)
        check_overlaps(valid)
        if isinstance(policy, dict):
            _check_blackbox_moves(policy.get("moves") or [], blackboxes)
        plan = _planner.plan(valid, hosts, policy=policy)
    except (ChainError, _planner.PlanError) as exc:
        raise DeployError(str(exc)) from exc
    held = plan.get("held") or {}
    # a chain a failover could not restore: nothing of it installed, moved or removed; the switch
    # holds its traffic (compile_held)
    valid = [dict(c, held=held[c["name"]]) if c["name"] in held else c for c in valid]
    steps = {(c["name"], s["name"]): (c, s) for c in valid if c["state"] == "present" and not c.get("held") for s in c["steps"]}
    new = plan["instances"]
    moves = _moves(new, steps, hosts)
    if only_moves:
        _check_only_moves(new, plan.get("remove", {}), moves)
    waves = _waves(moves, plan, policy, rolling)
    removed = plan.get("remove", {})
    old = _running(hosts, valid)
    leave = set() if converge or only_moves else _running_as_planned(new, steps, hosts)
    done = set()
    out_waves = []
    try:
        for index, wave in enumerate(waves):
            before = set(done)
            done.update(wave["moves"])
            out_waves.append(_wave(index, wave, valid, steps, new, removed, moves, old, before, done, hosts, switches, blackboxes,
                                   converge=not only_moves, leave=leave))
    except ChainError as exc:
        raise DeployError("the plan does not compile (the hosts' reports disagree with it?): %s" % exc) from exc
    _mark_unchanged(out_waves)
    final = out_waves[-1]
    out_hosts = {h: {"install": [], "remove_first": [], "remove": [], "export": [], "cookie": _cookie(CHAINS_COOKIE),
                     "cookie_mask": _cookie(CHAINS_MASK), "flows": final["hosts"][h]["flows"]} for h in hosts}
    for wave in out_waves:
        for h, lists in wave["hosts"].items():
            for key in ("install", "remove_first", "remove", "export"):
                out_hosts[h][key].extend(lists[key])
    out_switches = {s: dict(final["switches"][s], flows_pre=None, flows_during=final["switches"][s]["flows"],
                            groups_pre=None, groups_during=final["switches"][s]["groups"]) for s in switches}
    return {"waves": out_waves, "hosts": out_hosts, "switches": out_switches, "chains": final["chains"],
            "instances": new, "moves": [moves[i] for i in sorted(moves)], "capacity": plan.get("hosts", {}),
            "policy": plan.get("policy", {}), "warnings": plan.get("warnings", []) + trial_warnings,
            "trials": {"%s/%s" % (c["name"], s["name"]): dict(s["trial"]) for c in valid if c["state"] == "present"
                       for s in c["steps"] if s.get("trial")},
            "consolidation": plan.get("consolidation"), "rebalanced": rebalanced(old, new, valid), "held": held}


STAGES = (("flows_pre", "groups_pre", "markers_pre"), ("flows_during", "groups_during", "markers"), ("flows", "groups", None))


def _mark_unchanged(waves):
    """Name, per bridge and wave, the flow stages (``unchanged``) whose bundle would leave the
    bridge's table as the stage before it on that bridge left it - the apply step skips them
    (one module run on one host less; a drain of two hosts ran 27 of 36 host-bridge bundles
    that changed nothing). Never skipped: a bridge's first stage of the plan (it converges what
    the bridge holds now, whatever that is), the first stage after an instance was made, removed
    or moved by libvirt on that host (an OpenFlow port re-made under its name gets another
    number), a switch stage that sends markers, and the final stage of a wave without a
    transition (it does not run at all: its flows are the stage before it)."""
    last = {}
    dirty = set()
    for wave in waves:
        vm = wave.get("vm_move") or {}
        for host, lists in wave["hosts"].items():
            key = ("host", host)
            if lists["remove_first"] or lists["install"] or host in (vm.get("from"), vm.get("to")):
                dirty.add(key)
            lists["unchanged"] = _unchanged(key, [(stage, lists[stage], None, None) for stage, _g, _m in STAGES],
                                            wave["transition"], last, dirty)
            if lists["remove"]:
                dirty.add(key)
        for switch, lists in wave["switches"].items():
            lists["unchanged"] = _unchanged(("switch", switch),
                                            [(stage, lists[stage], lists[groups], lists[markers] if markers else None)
                                             for stage, groups, markers in STAGES],
                                            wave["transition"], last, dirty)
    return waves


def _unchanged(key, stages, transition, last, dirty):
    """The stages of one bridge in one wave that ``_mark_unchanged`` skips; ``last`` (the table
    each bridge holds after its last stage that runs) and ``dirty`` carry over from wave to wave."""
    out = []
    for stage, flows, groups, markers in stages:
        if flows is None or (stage == "flows" and not transition):
            continue  # the stage does not run
        now = (flows, groups)
        if key not in dirty and not markers and last.get(key) == now:
            out.append(stage)
        else:
            last[key] = now
            dirty.discard(key)
    return out


def rebalanced(old, new, valid):
    """{"<chain>/<step>": what changing the step's instances does to its flows} for every
    present, parallel-capable step whose set of instances the plan changes (scaling N -> M): the
    instances before and after, and the share of the step's hash slots - so of its flows - that
    change instance against the ideal |M-N|/max(N,M) (every other flow keeps its instance; the
    candidates of a trial are a step of their own and not counted)."""
    out = {}
    for chain in valid:
        if chain["state"] != "present" or chain.get("held"):
            continue
        for step in chain["steps"]:
            if step["kind"] == "blackbox" or companion_of(step):
                continue
            names = (step["name"], str(step["index"]))
            before = sorted(i for i, where in old.items()
                            if any(w["chain"] == chain["name"] and w["step"] in names for w in where.values()))
            after = sorted(i for i, e in new.items() if e["chain"] == chain["name"] and e["step"] == step["name"])
            if not before or not after or before == after:
                continue
            seed = "%s/%s" % (chain["name"], step["name"])
            moved = len(moved_slots(slot_owners(before, SLOTS, seed), slot_owners(after, SLOTS, seed)))
            out[seed] = {"before": before, "after": after, "slots_moved": moved, "slots": SLOTS,
                         "share_moved": round(moved / float(SLOTS), 4),
                         "ideal": round(abs(len(after) - len(before)) / float(max(len(after), len(before))), 4)}
    return out


def _check_only_moves(new, removed, moves):
    """An operation moves instances; what else the chains ask for is deploy-chain's to do."""
    pending = ["install %s on %s (%s)" % (iid, e["host"], e.get("reason", "")) for iid, e in sorted(new.items())
               if e.get("new") and iid not in moves]
    pending += ["remove %s from %s (%s)" % (iid, e["host"], e.get("reason", "")) for iid, e in sorted(removed.items()) if iid not in moves]
    if pending:
        raise DeployError("the platform is not as the chains describe - run deploy-chain first; it would %s%s"
                          % ("; ".join(pending[:5]), " (and %d more)" % (len(pending) - 5) if len(pending) > 5 else ""))


def _check_blackbox_moves(moves, blackboxes):
    for index, move in enumerate(moves):
        if isinstance(move, dict) and move.get("instance") in blackboxes:
            ports = ", ".join(sorted(str(p) for p in (blackboxes[move["instance"]].get("ports") or {}).values()))
            raise _planner.PlanError(None, None, "policy.moves[%d]: %s is a black box (an appliance on switch ports %s): only what "
                                     "runs on a module host can move" % (index, move["instance"], ports))


def _moves(new, steps, hosts):
    """{instance: the move} for every instance the plan moves, with how it moves."""
    out = {}
    for iid, where in sorted(new.items()):
        if where.get("action") != "migrate":
            continue
        kind = where["kind"]
        method = where.get("method") or "live"
        how = "cold" if method == "cold" else ("libvirt" if kind == "vm" else "make_before_break")
        out[iid] = {"instance": iid, "chain": where["chain"], "step": where["step"], "kind": kind, "type": where["type"],
                    "from": where["moved_from"], "to": where["host"], "method": method, "how": how,
                    "carry": how == "make_before_break" and kind in CARRY_KINDS,
                    "from_vlans": where.get("previous_vlans"), "to_vlans": where["vlans"],
                    # the order barrier (markers through the old copy): not from a fenced host,
                    # whose trunk passes nothing - its copy carried no traffic since the failure
                    "barrier": how != "libvirt" and bool(where.get("previous_vlans")) and not hosts[where["moved_from"]].get("fence"),
                    "to_host_bridge": hosts[where["host"]].get("host_bridge", "fs-host"),
                    "reason": where.get("reason", "")}
    return out


def _waves(moves, plan, policy, rolling):
    """[{name, moves, changes}]: which moves go together. Everything that is not a move (new
    instances, removals) goes with the first wave; a VM that libvirt moves has a wave of its own."""
    vm = [i for i in sorted(moves) if moves[i]["how"] == "libvirt"]
    rest = [i for i in sorted(moves) if moves[i]["how"] != "libvirt"]
    waves = []
    if rolling:
        order = list((policy or {}).get("draining") or [])
        if isinstance(order, str):
            order = [n.strip() for n in order.split(",") if n.strip()]
        order += sorted({moves[i]["from"] for i in moves} - set(order))
        for host in order:
            group = [i for i in rest if moves[i]["from"] == host]
            if group:
                waves.append({"name": "drain %s" % host, "moves": group})
            waves.extend({"name": "move %s (live, libvirt)" % i, "moves": [i]} for i in vm if moves[i]["from"] == host)
    else:
        waves.append({"name": "changes", "moves": rest})
        waves.extend({"name": "move %s (live, libvirt)" % i, "moves": [i]} for i in vm)
    if not waves or (not waves[0]["moves"] and len(waves) > 1):
        waves = [w for w in waves if w["moves"]] or [{"name": "changes", "moves": []}]
    waves[0]["changes"] = True
    return waves


def _running(hosts, valid):
    """{instance id: where it runs now} for the instances of the described chains, from the
    hosts' reports: the old copies, compiled as arrivals while they drain."""
    names = {c["name"]: c for c in valid if not c.get("held")}
    out = {}
    for host in sorted(hosts):
        spec = hosts[host]
        for iid, info in sorted(((spec.get("report") or {}).get("instances") or {}).items()):
            chain = names.get(info.get("chain"))
            legs = info.get("legs") or {}
            vlans = {leg: (legs.get(leg) or {}).get("vlan") for leg in ("left", "right")}
            if chain is None or not all(isinstance(v, int) for v in vlans.values()):
                continue
            slot = _planner.decode_instance(chain, iid)
            out.setdefault(iid, {})[host] = {"chain": chain["name"], "step": info.get("step"), "n": slot[1] if slot else 0,
                                             "index": slot[0] if slot else None, "host": host, "trunk": spec.get("trunk"),
                                             "vlans": vlans}
    return out


def _running_as_planned(new, steps, hosts):
    """The instances the plan keeps on the host that runs them now, running there as the kind and
    type of their step, on the VLAN tags the plan gives them (the hosts' reports say so)."""
    out = set()
    for iid, entry in new.items():
        found = steps.get((entry["chain"], entry["step"]))
        info = (((hosts.get(entry["host"]) or {}).get("report") or {}).get("instances") or {}).get(iid)
        if not found or not info or info.get("state") != "running":
            continue
        legs = info.get("legs") or {}
        tags = all((legs.get(leg) or {}).get("vlan") == (entry.get("vlans") or {}).get(leg) for leg in ("left", "right"))
        if tags and (info.get("kind"), info.get("type")) == (found[1]["kind"], found[1]["type"]):
            out.add(iid)
    return out


def _wave(index, wave, valid, steps, new, removed, moves, old, before, done, hosts, switches, blackboxes, converge=True, leave=frozenset()):
    """One wave: per host what to remove first, export, install, remove; per switch and host the
    flows before the switchover (VM), during the change and after it."""
    ids = set(wave["moves"])
    first = bool(wave.get("changes"))
    converge = converge and first

    def placement(finished, in_flight=()):
        where = {}
        for iid, entry in new.items():
            move = moves.get(iid)
            if move is not None and iid not in finished:
                here = dict(old.get(iid, {}).get(move["from"]) or {}, step=entry["step"], n=entry["n"])
                if not here.get("trunk"):
                    continue
                where[iid] = here
            else:
                where[iid] = entry
            if iid in in_flight:
                where[iid] = dict(where[iid], host=IN_FLIGHT)
        return where

    draining = {}
    for iid in sorted(ids):
        move = moves[iid]
        copy = old.get(iid, {}).get(move["from"])
        if copy:
            draining[iid] = dict(copy, step=new[iid]["step"], n=new[iid]["n"])
    if first:
        for iid, gone in sorted(removed.items()):
            if iid in moves:
                continue
            for host in gone.get("hosts") or [gone["host"]]:
                copy = old.get(iid, {}).get(host)
                # (a trial's candidate whose trial ends, a warm spare no longer asked for, drains as an
                # old copy of the step it stood in for)
                if not copy or new.get(iid, {}).get("host") == host:
                    continue
                if (copy["chain"], copy["step"]) in steps or (copy["chain"], str(copy["step"]).split("~", maxsplit=1)[0]) in steps \
                        and "~" in str(copy["step"]):
                    draining.setdefault(iid + "@" + host, copy)
                elif copy.get("index") is not None and any(chain == copy["chain"] for chain, _s in steps):
                    # a step the chain no longer has: what is still inside its copies goes on to
                    # the steps that were its neighbours (compile_chain), until the change is done
                    draining.setdefault(iid + "@" + host, dict(copy, removed_step=True))
    vm = next((moves[i] for i in sorted(ids) if moves[i]["how"] == "libvirt"), None)
    after = placement(done)
    compiled_during = _compile(valid, after, draining if vm is None else {vm["instance"]: dict(draining.get(vm["instance"], {}), host=IN_FLIGHT)},
                               switches, blackboxes, hosts)
    compiled_final = _compile(valid, after, {}, switches, blackboxes, hosts)
    compiled_pre = None
    resumed = set()
    moving = {iid for iid in ids if moves[iid]["from_vlans"]}
    if moving:
        # before the switch moves: no host bridge sends a moving instance anything on its own any
        # more (its neighbours there send up the trunk, the switch still sends it down), so once
        # the switch has moved, nothing enters the old copy but through the switch - and the
        # switch's markers follow its last packets (docs/operations.md#reordering); a VM's new
        # tags are arrivals already
        landing = {vm["instance"]: dict(new[vm["instance"]], host=IN_FLIGHT)} if vm is not None else {}
        # an interrupted move, resumed: the copy on the target exists and the switch may send it
        # traffic already (the run was killed after the switch's bundle); the switch keeps (or
        # starts) sending there, the old copy's output stays an arrival - never back to the old
        # copy, which would strand what the new one holds (measured: 3-7 packets lost)
        resumed = {iid for iid in moving if moves[iid]["how"] != "libvirt" and old.get(iid, {}).get(moves[iid]["to"])}
        landing.update((iid, draining[iid]) for iid in resumed if iid in draining)
        compiled_pre = _compile(valid, placement(before | resumed, in_flight=moving), landing, switches, blackboxes, hosts)
    out_hosts = {}
    for h in hosts:
        out_hosts[h] = {"remove_first": [], "export": [], "install": [], "remove": [],
                        "cookie": _cookie(CHAINS_COOKIE), "cookie_mask": _cookie(CHAINS_MASK),
                        "flows_pre": compiled_pre["hosts"][h] if compiled_pre else None,
                        "flows_during": compiled_during["hosts"][h], "flows": compiled_final["hosts"][h]}
    for iid, entry in sorted(new.items()):
        move = moves.get(iid)
        if move is not None:
            if iid not in ids:
                continue
            if move["how"] == "libvirt":
                continue  # libvirt makes the copy on the target; labels follow in "install" after it
        elif not converge or iid in leave:
            continue  # kept instances are converged (parameters, type) by deploy-chain's first wave
        chain, step = steps[(entry["chain"], entry["step"])]
        item = {"instance": iid, "kind": step["kind"], "type": step["type"], "params": step["params"],
                "vlans": entry["vlans"], "chain": chain["name"], "step": step["name"], "new": entry.get("new", False),
                "reason": entry.get("reason", ""), "carry_from": move["from"] if move and move["carry"] else None}
        if move and move["barrier"]:
            # the new copy holds what it would send until the old copy's markers come through
            item["hold"] = {"token": marker_token(move), "timeout": HOLD_TIMEOUT}
        if step["kind"] == "vm":
            item["vm"] = {k: v for k, v in (step.get("vm") or {}).items() if k in ("image", "memory", "vcpus")}
        out_hosts[entry["host"]]["install"].append(item)
        if move and move["carry"]:
            out_hosts[move["from"]]["export"].append({"instance": iid, "to": move["to"], "kind": move["kind"]})
    for iid, gone in sorted(removed.items()):
        move = moves.get(iid)
        if move is not None:
            if iid not in ids or move["how"] == "libvirt":
                continue  # libvirt removes the source copy itself
        elif not first:
            continue
        for host in gone.get("hosts") or [gone["host"]]:
            entry = {"instance": iid, "chain": gone.get("chain"), "reason": gone.get("reason", ""), "quiesce": True,
                     "export_to": move["to"] if move and move["carry"] and host == move["from"] else None}
            if new.get(iid, {}).get("host") == host and move is None:
                # the id is replaced on the same host (a step inserted before it, a kind change): the
                # id names the ports, namespace and domain there, so the old one goes first
                out_hosts[host]["remove_first"].append(dict(entry, quiesce=False))
            else:
                out_hosts[host]["remove"].append(entry)
    vm_move = None
    if vm is not None:
        entry = new[vm["instance"]]
        chain, step = steps[(entry["chain"], entry["step"])]
        install = {"instance": vm["instance"], "kind": "vm", "type": step["type"], "params": step["params"], "vlans": entry["vlans"],
                   "chain": chain["name"], "step": step["name"],
                   "vm": {k: v for k, v in (step.get("vm") or {}).items() if k in ("image", "memory", "vcpus")}}
        vm_move = dict(vm, switch=chain["switch"], from_libvirt_uri=hosts[vm["from"]].get("libvirt_uri"),
                       to_libvirt_uri=hosts[vm["to"]].get("libvirt_uri"), install=install)
    out_switches = {}
    for s in switches:
        final = compiled_final["switches"][s]
        out_switches[s] = {"cookie": _cookie(CHAINS_COOKIE), "cookie_mask": _cookie(CHAINS_MASK),
                           "flows_pre": compiled_pre["switches"][s]["flows"] if compiled_pre else None,
                           "flows_during": compiled_during["switches"][s]["flows"], "flows": final["flows"],
                           "group_id_range": list(GROUP_ID_RANGE),
                           "groups_pre": compiled_pre["switches"][s]["groups"] if compiled_pre else None,
                           "groups_during": compiled_during["switches"][s]["groups"], "groups": final["groups"],
                           "chains": final["chains"], "absent": final["absent"], "markers": [], "markers_pre": []}
    for iid in sorted(ids):
        move = moves[iid]
        if not move["barrier"]:
            continue
        chain = steps[(new[iid]["chain"], new[iid]["step"])][0]
        switch = out_switches[chain["switch"]]
        relays = _marker_relays(move, chain, hosts[move["from"]]["trunk"], hosts[move["to"]]["trunk"])
        switch["flows_during"] = switch["flows_during"] + relays
        # a resumed move's switch sends to the new copy from flows_pre on (see above): its markers
        # follow that bundle, or the new copy would hold what it gets until flows_during - a task
        # or two later, seconds of the chain's traffic let out at once (measured: 2.4 s, 8 lost)
        stage = "markers"
        if iid in resumed and switch["flows_pre"] is not None:
            switch["flows_pre"] = switch["flows_pre"] + relays
            stage = "markers_pre"
        token = marker_token(move)
        for direction, enters, _leaves in DIRECTIONS:
            # into the old copy's input leg from the switch, right after the switch's bundle: since
            # the host bridges' flows_pre nothing else sends it anything (a resumed move killed
            # before those: a host bridge may still send it a few packets for a task, delivered
            # onward as the old copy's output, possibly behind later ones)
            tag = move["from_vlans"][enters]
            switch[stage].append({
                "actions": "push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (0x1000 | tag, hosts[move["from"]]["trunk"]),
                "packet": marker_frame(iid, direction, token)})
    transition = any(v["flows_during"] != v["flows"] or v["groups_during"] != v["groups"] for v in out_switches.values()) or \
        any(v["flows_during"] != v["flows"] for v in out_hosts.values())
    return {"index": index, "name": wave["name"], "moves": [moves[i] for i in sorted(ids)], "vm_move": vm_move,
            "hosts": out_hosts, "switches": out_switches, "chains": compiled_final["chains"], "transition": transition}


def _compile(valid, placement, draining, switches, blackboxes, hosts):
    """Every present chain compiled for ``placement`` (and ``draining`` old copies): the flows of
    each switch and of each host bridge (host-local chaining), and the chains' summaries."""
    by_chain, leaving = {}, {}
    for inst, where in placement.items():
        by_chain.setdefault(where["chain"], {})[inst] = where
    for key, where in draining.items():
        leaving.setdefault(where["chain"], {})[key] = where
    out_hosts = {h: [] for h in hosts}
    out_switches = {s: {"flows": [], "groups": [], "chains": {}, "absent": []} for s in switches}
    group_owner = {}
    chains_out = {}
    for chain in valid:
        if chain["state"] == "absent":
            for switch in out_switches.values():
                switch["absent"].append({"chain": chain["name"], "cookie": _cookie(chain["cookie"])})
            chains_out[chain["name"]] = {"state": "absent", "cookie": _cookie(chain["cookie"])}
            continue
        switch = switches[chain["switch"]]
        if chain.get("held"):
            compiled = compile_held(chain, switch.get("uplinks") or {})
        else:
            compiled = compile_chain(chain, by_chain.get(chain["name"], {}), switch.get("uplinks") or {}, blackboxes,
                                     draining=leaving.get(chain["name"]))
        flows = _flow_items(chain, compiled["flows"])
        for host, host_flows in compiled["hosts"].items():
            if host in out_hosts:
                out_hosts[host].extend(_flow_items(chain, host_flows))
        out_switches[chain["switch"]]["chains"][chain["name"]] = {"cookie": _cookie(chain["cookie"]), "flow_count": len(flows)}
        out_switches[chain["switch"]]["flows"].extend(flows)
        for group in compiled["groups"]:
            key = (chain["switch"], group["group_id"])
            if key in group_owner:
                raise ChainError(chain["name"], None, "tag", "its fast-failover group %#x has the id of one of chain '%s' (a hash "
                                 "collision of instance ids): give one of the two chains its own tag" % (group["group_id"], group_owner[key]))
            group_owner[key] = chain["name"]
            out_switches[chain["switch"]]["groups"].append(group)
        chains_out[chain["name"]] = {
            "state": "held" if chain.get("held") else "present", "switch": chain["switch"], "cookie": _cookie(chain["cookie"]),
            "from": chain["from"], "to": chain["to"], "match": match_text(chain["match"]), "flow_count": len(flows),
            "path": compiled["path"], "host_flow_count": {h: len(f) for h, f in compiled["hosts"].items() if h in out_hosts},
            "placement": {i: {"host": w["host"], "step": w["step"], "vlans": w["vlans"]}
                          for i, w in sorted(by_chain.get(chain["name"], {}).items())},
        }
        if chain.get("held"):
            chains_out[chain["name"]]["held"] = {k: chain["held"][k] for k in ("fail_mode", "restore_priority", "reason", "step")}
    return {"hosts": out_hosts, "switches": out_switches, "chains": chains_out}


def _flow_items(chain, flows):
    return [{"cookie": _cookie(chain["cookie"]), "table": f["table"], "priority": f["priority"], "match": f["match"],
             "actions": f["actions"]} for f in flows]
