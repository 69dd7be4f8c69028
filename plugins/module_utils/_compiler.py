# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The chain compiler: a chain and its placement -> the exact switch flows, under the chain's cookie.

Wiring (DESIGN.md section 3): an instance of a step is reached by pushing the VLAN tag of its
``left`` leg and sending the packet out of its host's trunk; it comes back on that trunk with the
tag of its ``right`` leg. The reverse direction enters through ``right`` and comes back with
``left``. A black box is reached on its ``left`` switch port and comes back on its ``right``
port (the reverse the other way round).

Every place where a chain's packet reaches the switch is an *arrival*:

* forward: the ``from`` uplink (with the chain's match), and each instance's trunk with the
  tag of its right leg (or a black box's right port);
* reverse: the ``to`` uplink (with the reverse match), and each instance's trunk with the tag
  of its left leg (or a black box's left port).

(trunk, tag) pairs are unique on a platform (tags are unique per host, trunks per host), so an
arrival says which chain, step, instance and direction a packet is in. At each arrival one flow
(table 0) sends the packet on to its *next target*: the next step, or, where the step splits, the
split target for packets matching the split match, or the exit uplink. A target with one
instance is reached directly; a target with several (a parallel step) through the symmetric,
stable load-balancing recipe (``_flow_hash``: multipath over fixed slots in table 0, per-slot
dispatch in table 1), so both directions of a connection meet the same instance, and removing
an instance moves only its connections.

Splits (the paper's figure 4): ``split: {to: deep, match: {...}}`` on a step diverts the packets
that leave it matching ``match`` to the ``only_split`` step ``deep``; the rest passes ``deep``
by. In the reverse direction the reversed match (sources and destinations swapped) decides,
before the packets reach ``deep``. A match on what a filter instance writes (e.g. the DSCP it
sets when it flags a flow) therefore diverts the direction the filter flags; a match on header
fields diverts both directions.

Warm spares (``spare: warm`` on a step; docs/failover.md): the step's standby is a step of its
own (``<step>~spare``, one instance, apart from the step's). Every arrival reaches each of the
step's own instances through that instance's OpenFlow fast-failover group (one per instance and
leg): the instance while its host trunk is live, else the standby - so the switch moves a dead
host's flows, both directions, by itself. What leaves the standby goes on as from the step.

Host-local chaining (DESIGN.md section 3; the paper: kernel elements are fastest "for traffic
that needs to traverse several modules in the same host"). The switch flows above are complete:
they take any packet through the chain. When the next target of a packet leaving an instance
has an instance on the SAME module host, a flow on that host's bridge takes the packet straight
from the leg it leaves on to the next instance's leg, so it does not cross the trunk and the
switch in between. Those *host flows* make the same decisions as the switch flows would: the
same split matches, and, for a parallel step, the same multipath hash over the same slots with
the same slot owners, so a connection meets exactly the instances it would meet without them.
What a host cannot finish locally (the exit, a black box, an instance on another host) goes to
the bridge's NORMAL action, which sends it up the trunk tagged with the leg's VLAN as before,
and the switch flows carry on from there. Host flows carry the chain's cookie too and match on
the leg's port name (``fs-<id>-r``/``fs-<id>-l``), so they follow an instance whose port number
changes when the flows are installed again.

Pure and deterministic: same input, same bytes.
"""

from __future__ import annotations

import hashlib
import ipaddress

from ansible_collections.flowstream.platform.plugins.module_utils._chains import (
    PROTO_WORDS, STEP_SLOTS, ChainError, companion_of, leg_port, match_text, reverse_match)
from ansible_collections.flowstream.platform.plugins.module_utils._flow_hash import symmetric_lb_flows, trial_owners

CLASSIFY_TABLE = 0
DISPATCH_TABLE = 1
# a parallel step's fixed hash slots (257 flows per step and bridge; why 256: _chains.STEP_SLOTS)
SLOTS = STEP_SLOTS
VLAN_PRESENT = 0x1000
# the fast-failover groups of warm spares: ids in this range, one per (instance, leg) - see spare_group_id
GROUP_ID_RANGE = (0xE0000000, 0xEFFFFFFF)


class Target:
    """Where a packet goes next: an exit uplink port, or a step's instances / black box."""

    def __init__(self, kind, port=None, step=None, members=None, trial=None, standby=None):
        self.kind = kind          # "exit", "step", "blackbox"
        self.port = port          # exit port or black box port to enter
        self.step = step          # the step's name
        self.members = members or []   # [(instance id, trunk, vlan to push, host)]
        self.trial = trial        # a trial on the step: (its candidates' ids, percent) - they are members too
        self.standby = standby    # the step's warm spare: (instance id, trunk, vlan to push, host), or None


def _tag_actions(arriving_tagged, vlan):
    if arriving_tagged:
        return "set_field:%d->vlan_vid" % (VLAN_PRESENT | vlan)
    return "push_vlan:0x8100,set_field:%d->vlan_vid" % (VLAN_PRESENT | vlan)


def _out(port, in_port):
    # OpenFlow drops output to the port a packet came in on: a hairpin uses in_port
    return "in_port" if str(port) == str(in_port) else "output:%s" % port


def spare_group_id(instance, vlan):
    """The id of the fast-failover group that sends to ``instance``'s leg of tag ``vlan``, or to
    its step's warm spare when the instance's host trunk is dead: in GROUP_ID_RANGE, from a hash
    of the instance id (unique on a platform) and the leg's tag; the same on every run."""
    digest = int.from_bytes(hashlib.sha256(("%s/%d" % (instance, vlan)).encode()).digest()[:4], "big")
    return GROUP_ID_RANGE[0] | (digest & 0x0FFFFFFF)


def _spare_group(member, standby):
    """A fast-failover group (openflow_flows' dict form): the member while its host trunk is live
    (OpenFlow port liveness: the trunk's link and its BFD session), else the warm spare - the
    same leg of the same step. The packet arrives at the group tagged (see _deliver)."""
    inst, trunk, vlan, _host = member
    buckets = ["watch_port:%s,actions=set_field:%d->vlan_vid,output:%s" % (t, VLAN_PRESENT | v, t)
               for _i, t, v, _h in (member, standby)]
    return {"group_id": spare_group_id(inst, vlan), "type": "fast_failover", "buckets": buckets}


def _deliver(target, in_port, tagged, match, priority, chain, groups=None):
    """Flows (table 0, and table 1 for parallel steps) taking packets arriving at ``in_port``
    matching ``match`` to ``target``. A step with a warm spare sends to each of its own
    instances through that instance's fast-failover group (added to ``groups``): the switch
    moves the instance's flows - both directions, all arrivals, since every one goes through the
    same group - to the spare when the instance's host trunk dies, and back when it lives again."""
    if target.kind == "exit" or target.kind == "blackbox":
        actions = ("pop_vlan," if tagged else "") + _out(target.port, in_port)
        return [{"table": CLASSIFY_TABLE, "priority": priority, "match": match, "actions": actions}]
    members = {inst: "%s,%s" % (_tag_actions(tagged, vlan), _out(trunk, in_port)) for inst, trunk, vlan, _host in target.members}
    if target.standby is not None:
        candidates = (target.trial or (set(), 0))[0]
        for member in target.members:
            inst, trunk = member[0], member[1]
            if inst in candidates:
                continue  # a trial's candidate has no spare: its flows are the trial's
            group = _spare_group(member, target.standby)
            groups[group["group_id"]] = group
            # a bucket's output to the port the packet came in on would be dropped: the ingress
            # port is cleared first where a bucket goes back out of it
            hairpin = str(in_port) in (str(trunk), str(target.standby[1]))
            actions = ("" if tagged else "push_vlan:0x8100", "load:0->NXM_OF_IN_PORT[]" if hairpin else "", "group:%d" % group["group_id"])
            members[inst] = ",".join(a for a in actions if a)
    return _to_members(members, match, priority, chain, target.step, target.trial)


def _to_members(members, match, priority, chain, step, trial=None):
    """Flows sending ``match`` to the one member, or over the members of a parallel step.

    One slot -> instance assignment per step (the seed names the step, never the arrival or the
    bridge), so every arrival, in both directions, on the switch and on every host bridge,
    sends a connection's slot to the same instance. A step that runs a trial (``trial``: its
    candidates' ids and the percent) gives the trial's slots to the candidates and leaves every
    other slot with the instance it has without the trial."""
    if len(members) == 1:
        return [{"table": CLASSIFY_TABLE, "priority": priority, "match": match, "actions": next(iter(members.values()))}]
    seed = "%s/%s" % (chain, step)
    owners = None
    if trial:
        candidates, percent = trial
        owners = trial_owners(sorted(m for m in members if m not in candidates), sorted(candidates), percent, SLOTS, seed)
    return symmetric_lb_flows(members, match, CLASSIFY_TABLE, DISPATCH_TABLE, priority=priority, slots=SLOTS,
                              seed=seed, owners=owners)


def _deliver_on_host(target, host, leg, match, priority, chain):
    """Host-bridge flows taking packets that leave an instance on ``host`` (``match`` names its
    leg port) to ``target``: straight to the leg ``leg`` of a member on this host, or, for what
    this host cannot finish, NORMAL (up the trunk with the leg's tag; the switch carries on)."""
    if target.kind != "step":
        return [{"table": CLASSIFY_TABLE, "priority": priority, "match": match, "actions": "NORMAL"}]
    members = {inst: ("output:%s" % leg_port(inst, leg)) if on == host else "NORMAL" for inst, _trunk, _vlan, on in target.members}
    return _to_members(members, match, priority, chain, target.step, target.trial)


def compile_chain(chain, placement, uplinks, blackboxes=None, draining=None):
    """The flows of one chain.

    ``chain``: a chain as _chains.validate returns it (state present).
    ``placement``: {instance id: {"step": name, "n": int, "host": module host, "trunk": switch port,
    "vlans": {"left", "right"}}} for this chain's instances (the planner's result; without
    ``host`` the trunk names the host).
    ``uplinks``: {uplink name: switch port} of the chain's switch.
    ``blackboxes``: {name: {"ports": {"left", "right"}}}.
    ``draining``: old copies of instances that are leaving (a move, a replacement, a scale-down)
    while the change is applied, in ``placement``'s shape: they are never a target any more,
    but packets still inside them when the switch moved on are taken onward from them, on the
    switch (their trunk and right/left tag are arrivals like any other) and on their host's
    bridge, to the same next targets as the step's present instances (make-before-break: the
    flows of a change that is under way; see _deploy).
    Returns {"cookie", "flows": [switch flow dicts, sorted], "hosts": {module host: [host-bridge
    flow dicts, sorted]} (only hosts where consecutive steps meet), "path": [...]}.
    """
    name = chain["name"]
    blackboxes = blackboxes or {}
    steps = chain["steps"]
    members = {}
    for inst, where in sorted(placement.items()):
        members.setdefault(where["step"], []).append((where["n"], inst, where["trunk"], where["vlans"], where.get("host", where["trunk"])))
    leaving, orphans = {}, []
    for key, where in sorted((draining or {}).items()):
        inst = key.split("@")[0]  # "<id>@<host>": two old copies of one id
        step = where["step"]
        if where.get("removed_step"):
            # a copy of a step the chain no longer has (its index: where the step was)
            orphans.append((where["index"], inst, where["trunk"], where["vlans"], where.get("host", where["trunk"])))
            continue
        if step not in members and "~" in str(step):
            # the candidate of a trial that ends, a warm spare no longer asked for: what is still
            # inside it goes on as from the step it stood in for
            step = str(step).split("~", 1)[0]
        if step in members:
            leaving.setdefault(step, []).append((where["n"], inst, where["trunk"], where["vlans"], where.get("host", where["trunk"])))
    for step in steps:
        if step["kind"] == "blackbox":
            continue
        have = sorted(members.get(step["name"], []))
        if len(have) != step["instances"]:
            raise ChainError(name, step["name"], "instances", "the placement has %d instances, the step wants %d"
                             % (len(have), step["instances"]))
    in_port, out_port = uplinks[chain["from"]], uplinks[chain["to"]]
    fwd_match = match_text(chain["match"])
    rev_match = match_text(reverse_match(chain["match"]))
    priority = chain["priority"]
    flows = []
    groups = {}

    def target(step, direction):
        if step is None:
            return Target("exit", port=out_port if direction == "fwd" else in_port)
        if step["kind"] == "blackbox":
            ports = blackboxes[step["blackbox"]]["ports"]
            return Target("blackbox", port=ports["left"] if direction == "fwd" else ports["right"], step=step["name"])
        leg = "left" if direction == "fwd" else "right"
        group = sorted(members[step["name"]])
        trial = None
        if step.get("trial"):
            candidates = sorted(members[step["trial"]["step"]])
            group += candidates
            trial = ({inst for _n, inst, _t, _v, _h in candidates}, step["trial"]["percent"])
        standby = None
        if step.get("spare"):
            _n, inst, trunk, vlans, host = sorted(members[step["spare"]["step"]])[0]
            standby = (inst, trunk, vlans[leg], host)
        return Target("step", step=step["name"], trial=trial, standby=standby,
                      members=[(inst, trunk, vlans[leg], host) for _n, inst, trunk, vlans, host in group])

    def main_next(index, direction):
        """The next step a packet visits after step ``index`` (None: the exit), not counting
        splits; a trial's candidates are reached through the step they try out."""
        order = range(index + 1, len(steps)) if direction == "fwd" else range(index - 1, -1, -1)
        for j in order:
            if not steps[j]["only_split"] and not companion_of(steps[j]):
                return steps[j]
        return None

    def arrivals(step, direction):
        """(in_port, extra match, tagged) of packets leaving ``step`` in ``direction``."""
        if step["kind"] == "blackbox":
            ports = blackboxes[step["blackbox"]]["ports"]
            return [(ports["right"] if direction == "fwd" else ports["left"], "", False)]
        leg = "right" if direction == "fwd" else "left"
        return [(trunk, "dl_vlan=%d" % vlans[leg], True)
                for _n, _inst, trunk, vlans, _host in sorted(members[step["name"]] + leaving.get(step["name"], []))]

    by_name = {s["name"]: s for s in steps}

    def own_index(index):
        """A trial's candidates, a warm spare go on from where the step they stand in for goes on."""
        return by_name[companion_of(steps[index])]["index"] if companion_of(steps[index]) else index

    def splits_into(index, direction):
        """Split rules that apply to packets leaving step ``index``: [(split match text, target step)]."""
        out = []
        index = own_index(index)
        if direction == "fwd":
            split = steps[index]["split"]
            if split:
                out.append((match_text(split["match"]), next(s for s in steps if s["name"] == split["to"])))
        else:
            # reverse: a split target sitting right before this step (in forward order) is
            # entered when the reversed split match holds
            for source in steps:
                split = source["split"]
                if split and not companion_of(source):
                    deep = next(s for s in steps if s["name"] == split["to"])
                    after = main_next(deep["index"], "fwd")
                    if after is not None and after["index"] == index:
                        out.append((match_text(reverse_match(split["match"])), deep))
        return out

    def emit(arrival_port, extra, tagged, base_match, nxt, split_rules, direction, label):
        match = ",".join(x for x in ("in_port=%s" % arrival_port, extra, base_match) if x)
        for split_match, deep in split_rules:
            both = _merge(match, split_match)
            flows.extend(_deliver(target(deep, direction), arrival_port, tagged, both, priority + 1, name, groups))
        flows.extend(_deliver(target(nxt, direction), arrival_port, tagged, match, priority, name, groups))

    host_flows = {}

    def emit_on_host(copies, direction, nxt, split_rules):
        """Host flows for packets leaving each of ``copies`` (a step's instances) in ``direction``:
        only where one of the places they may go next has an instance on the same host."""
        out_leg, in_leg = ("right", "left") if direction == "fwd" else ("left", "right")
        base_match = fwd_match if direction == "fwd" else rev_match
        rules = [(priority + 1, split_match, target(deep, direction)) for split_match, deep in split_rules]
        rules.append((priority, "", target(nxt, direction)))
        for _n, inst, _trunk, _vlans, host in sorted(copies):
            if not any(on == host for _p, _m, tgt in rules for _i, _t, _v, on in tgt.members):
                continue
            match = "in_port=%s,%s" % (leg_port(inst, out_leg), base_match)
            for prio, split_match, tgt in rules:
                host_flows.setdefault(host, []).extend(
                    _deliver_on_host(tgt, host, in_leg, _merge(match, split_match) if split_match else match, prio, name))

    # the entries: forward from the uplink, reverse from the exit uplink
    first = next(s for s in steps if not s["only_split"] and not companion_of(s))
    emit(in_port, "", False, fwd_match, first, [], "fwd", "fwd:entry")
    last = next(s for s in reversed(steps) if not s["only_split"] and not companion_of(s))
    emit(out_port, "", False, rev_match, last, _reverse_entry_splits(steps, main_next), "rev", "rev:entry")
    # then every packet leaving a step, in each direction: on the switch and on its host's bridge
    for direction, base_match in (("fwd", fwd_match), ("rev", rev_match)):
        for step in steps:
            nxt = main_next(own_index(step["index"]), direction)
            rules = splits_into(step["index"], direction)
            for port, extra, tagged in arrivals(step, direction):
                emit(port, extra, tagged, base_match, nxt, rules, direction, "%s:%s:%s:%s" % (direction, step["name"], port, extra))
            if step["kind"] != "blackbox":
                emit_on_host(members[step["name"]] + leaving.get(step["name"], []), direction, nxt, rules)
        # old copies of a removed step: what leaves them goes where the step sent it, to the
        # next step that is still there (forward) or the one before it (reverse)
        for copy in sorted(orphans):
            index, _inst, trunk, vlans = copy[:4]
            order = range(index, len(steps)) if direction == "fwd" else range(min(index, len(steps)) - 1, -1, -1)
            nxt = next((steps[j] for j in order if not steps[j]["only_split"] and not companion_of(steps[j])), None)
            leg = "right" if direction == "fwd" else "left"
            extra = "dl_vlan=%d" % vlans[leg]
            emit(trunk, extra, True, base_match, nxt, [], direction, "%s:removed:%s:%s" % (direction, trunk, extra))
            emit_on_host([copy], direction, nxt, [])
    for flow in flows + [f for fl in host_flows.values() for f in fl]:
        flow["cookie"] = chain["cookie"]
    return {"cookie": chain["cookie"], "flows": _sorted(flows), "hosts": {h: _sorted(fl) for h, fl in sorted(host_flows.items())},
            "groups": [groups[g] for g in sorted(groups)], "path": path(chain, members)}


def compile_held(chain, uplinks):
    """The flows of a chain that a failover could not restore (held: not every step has its
    instances), in the shape compile_chain returns: its traffic, both directions, never reaches a
    step - ``fail_mode`` closed drops it at the switch, open sends it from uplink to uplink past
    the steps (as an inline appliance's bypass does). Nothing is half-plumbed."""
    in_port, out_port = uplinks[chain["from"]], uplinks[chain["to"]]
    fwd_match = match_text(chain["match"])
    rev_match = match_text(reverse_match(chain["match"]))
    bypass = chain.get("fail_mode") == "open"
    flows = []
    for arrival, match, exit_port in ((in_port, fwd_match, out_port), (out_port, rev_match, in_port)):
        flows.append({"table": CLASSIFY_TABLE, "priority": chain["priority"], "match": "in_port=%s,%s" % (arrival, match),
                      "actions": _out(exit_port, arrival) if bypass else "drop", "cookie": chain["cookie"]})
    return {"cookie": chain["cookie"], "flows": _sorted(flows), "hosts": {}, "groups": [], "path": []}


def _sorted(flows):
    return sorted(flows, key=lambda f: (f["table"], -f["priority"], f["match"], f["actions"]))


def _reverse_entry_splits(steps, main_next):
    """Reverse traffic entering from the exit uplink: a split target that is the last step the
    forward direction visits before leaving is entered first when the reversed match holds."""
    out = []
    for source in steps:
        split = source["split"]
        if split and not companion_of(source):
            deep = next(s for s in steps if s["name"] == split["to"])
            if main_next(deep["index"], "fwd") is None:
                out.append((match_text(reverse_match(split["match"])), deep))
    return out


def _merge(match, extra):
    """A match with ``extra`` fields added (protocol words are kept once)."""
    parts = [p for p in match.split(",") if p]
    for part in extra.split(","):
        if part and part not in parts:
            parts.append(part)
    return ",".join(parts)


def path(chain, members):
    """A readable description of the chain: step -> instances (for reports and pictures)."""
    out = []
    for step in chain["steps"]:
        if step["kind"] == "blackbox":
            out.append({"step": step["name"], "blackbox": step["blackbox"], "only_split": step["only_split"]})
        else:
            out.append({"step": step["name"], "kind": step["kind"], "type": step["type"], "only_split": step["only_split"],
                        "split": step["split"], "instances": [inst for _n, inst, _t, _v, _h in sorted(members[step["name"]])]})
            if step.get("trial"):
                out[-1]["trial"] = dict(step["trial"])
            if step.get("trial_of"):
                out[-1].update(trial_of=step["trial_of"], percent=step["percent"])
            if step.get("spare"):
                out[-1]["spare"] = dict(step["spare"])
            if step.get("spare_of"):
                out[-1]["spare_of"] = step["spare_of"]
    return out


# ---------------------------------------------------------------------------------------------
# Overlaps between chains
# ---------------------------------------------------------------------------------------------
def _ports_of(value):
    text = str(value)
    if "/" in text:  # value/mask
        base, mask = text.split("/", 1)
        return int(base, 0), int(mask, 0)
    return int(text, 0), 0xFFFF


def _field_disjoint(key, a, b):
    if key in ("nw_src", "nw_dst", "ip_src", "ip_dst"):
        return not ipaddress.ip_network(str(a), strict=False).overlaps(ipaddress.ip_network(str(b), strict=False))
    if key in ("tp_src", "tp_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst"):
        (va, ma), (vb, mb) = _ports_of(a), _ports_of(b)
        common = ma & mb
        return (va & common) != (vb & common)
    return str(a).lower() != str(b).lower()


_ALIASES = {"ip_src": "nw_src", "ip_dst": "nw_dst", "tcp_src": "tp_src", "tcp_dst": "tp_dst", "udp_src": "tp_src",
            "udp_dst": "tp_dst", "ip_proto": "nw_proto", "ip_dscp": "ip_dscp", "nw_tos": "nw_tos"}
_PROTO_NUMBER = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}


def matches_overlap(a, b):
    """Whether some packet could match both chain matches (False only when provably disjoint)."""
    pa = {p for p in PROTO_WORDS if a.get(p) is True and p != "ip"}
    pb = {p for p in PROTO_WORDS if b.get(p) is True and p != "ip"}
    if pa and pb and pa != pb:
        return False
    na = {_ALIASES.get(k, k): v for k, v in a.items() if k not in PROTO_WORDS}
    nb = {_ALIASES.get(k, k): v for k, v in b.items() if k not in PROTO_WORDS}
    for proto_set, other in ((pa, nb), (pb, na)):
        if proto_set and "nw_proto" in other and int(other["nw_proto"]) != _PROTO_NUMBER[next(iter(proto_set))]:
            return False
    for key in set(na) & set(nb):
        if _field_disjoint(key, na[key], nb[key]):
            return False
    return True


def check_overlaps(chains):
    """Chains entering at the same uplink of the same switch must not both match a packet, in
    either direction. Raises ChainError naming both chains (the first pair in the chains' order).

    Not pairwise: each chain's match is entered at its two uplinks (the reverse match at ``to``)
    and the entries of one uplink are split by what makes two matches disjoint for sure - the
    protocol, then exact transport ports and host addresses - so only matches that share all of
    those (or leave one open) are compared (bench/scale.py: 1,000 chains)."""
    present = [c for c in chains if c["state"] == "present"]
    by_uplink = {}
    for i, chain in enumerate(present):
        by_uplink.setdefault((chain["switch"], chain["from"]), []).append((i, chain["match"]))
        by_uplink.setdefault((chain["switch"], chain["to"]), []).append((i, reverse_match(chain["match"])))
    first = None
    for entries in by_uplink.values():
        for (i, ma), (j, mb) in _maybe_overlapping(entries, _DISCRIMINATORS):
            pair = (min(i, j), max(i, j))
            if i != j and (first is None or pair < first) and matches_overlap(ma, mb):
                first = pair
    if first is not None:
        _check_pair(present[first[0]], present[first[1]])


def _check_pair(a, b):
    """Raise the overlap error of chains ``a`` and ``b`` (``a`` first in the chains' order), if any."""
    if a["switch"] != b["switch"]:
        return
    pairs = []
    if a["from"] == b["from"]:
        pairs.append((a["match"], b["match"], a["from"]))
    if a["to"] == b["to"]:
        pairs.append((reverse_match(a["match"]), reverse_match(b["match"]), a["to"]))
    if a["from"] == b["to"]:
        pairs.append((a["match"], reverse_match(b["match"]), a["from"]))
    if a["to"] == b["from"]:
        pairs.append((reverse_match(a["match"]), b["match"], a["to"]))
    for ma, mb, uplink in pairs:
        if matches_overlap(ma, mb):
            raise ChainError(b["name"], None, "match", "overlaps chain '%s' at uplink %s: a packet could match "
                             "both (%s / %s); make the matches disjoint (e.g. different tp_dst or nw_dst)"
                             % (a["name"], uplink, match_text(ma), match_text(mb)))


def _proto_key(match):
    """The IP protocol number a match fixes (a protocol word or nw_proto), None when it fixes none
    for sure - two matches that fix different ones are disjoint (matches_overlap)."""
    words = [p for p in PROTO_WORDS if match.get(p) is True and p != "ip"]
    if len(words) == 1:
        return _PROTO_NUMBER[words[0]]
    number = match.get("nw_proto", match.get("ip_proto"))
    if not words and number is not None:
        try:
            return int(str(number), 0)
        except ValueError:
            return None
    return None


def _exact_key(field, aliases):
    """A discriminator: the exact value a match gives ``field`` (under any of its ``aliases``),
    None when it gives none or a masked one - two different exact values are disjoint
    (_field_disjoint)."""
    def key(match):
        values = [match[k] for k in aliases if k in match]
        if len(values) != 1:
            return None
        try:
            if field in ("nw_src", "nw_dst"):
                net = ipaddress.ip_network(str(values[0]), strict=False)
                return net.network_address if net.prefixlen == net.max_prefixlen else None
            value, mask = _ports_of(values[0])
            return value if mask == 0xFFFF else None
        except ValueError:
            return None
    return key


_DISCRIMINATORS = (_proto_key,
                   _exact_key("tp_dst", [k for k, v in _ALIASES.items() if v == "tp_dst"] + ["tp_dst"]),
                   _exact_key("nw_dst", [k for k, v in _ALIASES.items() if v == "nw_dst"] + ["nw_dst"]),
                   _exact_key("tp_src", [k for k, v in _ALIASES.items() if v == "tp_src"] + ["tp_src"]),
                   _exact_key("nw_src", [k for k, v in _ALIASES.items() if v == "nw_src"] + ["nw_src"]))


def _maybe_overlapping(entries, discriminators):
    """The pairs of ``entries`` that no discriminator proves disjoint: entries are split by the
    first discriminator's value; those it gives no value (open) meet every entry."""
    if len(entries) < 2:
        return
    if not discriminators:
        for n, a in enumerate(entries):
            for b in entries[n + 1:]:
                yield a, b
        return
    buckets, open_ = {}, []
    for entry in entries:
        value = discriminators[0](entry[1])
        (open_ if value is None else buckets.setdefault(value, [])).append(entry)
    for bucket in buckets.values():
        yield from _maybe_overlapping(bucket, discriminators[1:])
    yield from _maybe_overlapping(open_, discriminators[1:])
    for a in open_:
        for bucket in buckets.values():
            for b in bucket:
                yield a, b
