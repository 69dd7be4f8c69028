# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The planner: which module host runs each instance of each chain step, on which VLAN tags.

``plan(chains, hosts)`` reads the validated chains (``_chains.validate``) and, per module host,
its declared capacity and kinds and its live report (``module_host_info``), and returns where
every instance goes, what is removed, and why. Rules (docs/planner.md):

1. An instance that already runs stays where it is, with its VLAN tags, while its host is in
   service, runs its kind and hangs off the chain's switch: a re-run moves nothing.
2. Instances of absent chains, of steps that are gone, and beyond a step's count (the highest
   numbers first: a step of 2 keeps instances 0 and 1) are removed.
3. Every other instance is placed on a host that is in service, not a spare, runs its kind, is on
   the chain's switch and has room (declared CPU and memory left, and live memory available);
   among those: fewest instances of the same step (spreads a parallel step), then the most
   instances of the steps next to it in the chain (host-local chaining: consecutive steps on one
   host are joined on its bridge and do not cross the switch in between), then the lowest load
   (``load`` below), then the host name.
4. The whole plan is made before anything is returned: when an instance fits nowhere,
   ``PlanError`` names the chain, the step and the shortfall, and no plan is returned.
5. A ``policy`` (see ``check_policy``) says what an operation wants beyond that: hosts that
   take nothing new (``cordoned``), hosts that must be emptied (``draining``), instances that
   must go to a given host (``moves``), whether spares may take instances (``allow_spares``)
   and the ``objective``. Hosts carry the same marks on the platform itself (their report's
   ``maintenance``): a cordoned or drained host stays so whatever the request.

Pure Python, no I/O: the same input gives the same plan.
"""

from __future__ import annotations

import math

from ansible_collections.flowstream.platform.plugins.module_utils import _consolidate
from ansible_collections.flowstream.platform.plugins.module_utils._chains import (
    DEFAULT_RESTORE_PRIORITY, SPARE_SUFFIX, chain_short, companion_of, instance_id)

DEFAULT_VLAN_RANGE = (100, 4094)
OBJECTIVES = ("spread", "pack")
# objective pack (quiet-hours consolidation): its options and their defaults
PACK_DEFAULTS = {"headroom": 0.2, "keep_free": 1, "min_freed": 1, "min_interval": 0, "last": None, "now": None, "freeing": ()}
METHODS = ("live", "cold")
# marks a host carries on the platform (module_host_maintenance) -> (takes nothing new, must be emptied)
MARKS = {None: (False, False), "cordoned": (True, False), "draining": (True, True), "drained": (True, True)}
MILLI = 1000  # CPU and memory are counted in thousandths internally: exact sums, exact fits


class PlanError(Exception):
    """No plan: names the chain and the step (when there is one) and says what is short.

    ``details`` holds the figures of a capacity shortfall (needed, placed, short, kind, cpu,
    memory, and per host why it does not fit) for callers that want them as data.
    """

    def __init__(self, chain, step, message, details=None, holdable=False):
        self.chain = chain
        self.step = step
        self.message = message
        self.details = details or {}
        self.holdable = holdable  # capacity short: a restore by priority holds the chain instead
        super().__init__(str(self))

    def __str__(self):
        where = []
        if self.chain:
            where.append("chain '%s'" % self.chain)
        if self.step is not None:
            where.append("step '%s'" % self.step)
        return ": ".join(where + [self.message])


def _milli(value):
    return int(round(float(value or 0) * MILLI))


def _fmt_cpu(milli):
    return "%.2f CPU" % (milli / float(MILLI))


def _fmt_mem(milli):
    mib = milli / float(MILLI)
    return "%s MiB" % (("%d" % mib) if mib == int(mib) else ("%.1f" % mib))


def _fmt_pps(pps):
    return "%d pps" % pps


def _pps_of(info):
    """The packet rate a host's report measured for an instance (0 when it did not)."""
    value = info.get("pps") if isinstance(info, dict) else None
    return int(value) if _number(value) and value > 0 else 0


def _number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


class _Need(object):
    """One instance to place: its slot (chain, step, n) and what it reserves."""

    __slots__ = ("iid", "chain", "switch", "step", "n", "cpu", "mem", "pps", "previous", "why_previous", "move", "near", "pin",
                 "method", "previous_vlans")

    def __init__(self, iid, chain, step, n):
        self.iid = iid
        self.chain = chain["name"]
        self.near = tuple("%s/%s" % (chain["name"], name) for name in neighbours(chain["steps"]).get(step["name"], ()))
        self.switch = chain.get("switch")
        self.step = step
        self.n = n
        self.cpu = _milli(step["resources"].get("cpu"))
        self.mem = _milli(step["resources"].get("memory"))
        self.pps = 0  # packets per second: what a copy that runs now carries (its host's report), else 0
        self.previous = None  # the host of the copy this instance replaces, if any
        self.why_previous = None
        self.move = False  # True: same instance, its host can no longer hold it (or a move asks it elsewhere)
        self.pin = None  # a move of the policy: the host it must go to
        self.method = None  # how a moving instance moves: live or cold
        self.previous_vlans = None  # the tags of the copy that moves, on its old host

    @property
    def kind(self):
        return self.step["kind"]

    @property
    def label(self):
        return "%s/%s" % (self.chain, self.step["name"])

    @property
    def protects(self):
        """A warm spare: the label of the step whose instances it stands in for (else None)."""
        return "%s/%s" % (self.chain, self.step["spare_of"]) if self.step.get("spare_of") else None

    def order(self):
        """Placement order: warm spares after every instance they may have to stand apart from;
        instances that must leave a host first, then largest first (so that small instances fill
        the gaps), then chain, step and instance number."""
        return (1 if self.protects else 0, 0 if self.move else 1, -self.cpu, -self.mem, self.chain, self.step["index"], self.n)


def neighbours(steps):
    """{step name: sorted names of the steps a packet goes to straight before or after it}: the
    next step on the main path, a split's target, and the step after a split target."""
    main = [s for s in steps if not s.get("only_split") and not companion_of(s)]
    pairs = set(zip([s["name"] for s in main], [s["name"] for s in main[1:]]))
    for source in steps:
        split = source.get("split")
        if split and not companion_of(source):
            pairs.add((source["name"], split["to"]))
            deep = next((s for s in steps if s["name"] == split["to"]), None)
            after = next((s for s in main if deep is not None and s["index"] > deep["index"]), None)
            if after is not None:
                pairs.add((split["to"], after["name"]))
    out = {}
    for a, b in pairs:
        out.setdefault(a, set()).add(b)
        out.setdefault(b, set()).add(a)
    for step in steps:
        # a trial's candidates sit where the step they try out sits
        if step.get("trial_of"):
            out[step["name"]] = set(out.get(step["trial_of"], ()))
            for other in out[step["name"]]:
                out[other].add(step["name"])
    return {name: sorted(names) for name, names in out.items()}


class _HostState(object):
    """What the plan knows about one module host, and what it has given out there so far."""

    def __init__(self, name, spec, vlan_range):
        self.name = name
        where = "host '%s'" % name
        if not isinstance(spec, dict):
            raise PlanError(None, None, "%s: must be a mapping (capacity, kinds, spare, in_service, trunk, switch, report)" % where)
        capacity = spec.get("capacity")
        if not isinstance(capacity, dict):
            raise PlanError(None, None, "%s: capacity must be a mapping with cpu (cores) and memory (MiB)" % where)
        for key, unit in (("cpu", "cores"), ("memory", "MiB")):
            if not _number(capacity.get(key)) or capacity[key] < 0:
                raise PlanError(None, None, "%s: capacity.%s must be a number of %s >= 0, got %r" % (where, key, unit, capacity.get(key)))
        kinds = spec.get("kinds") or []
        if not isinstance(kinds, (list, tuple, set, frozenset)) or not all(isinstance(k, str) for k in kinds):
            raise PlanError(None, None, "%s: kinds must be a list of kinds (kernel, process, click, vm), got %r" % (where, kinds))
        for key, default in (("spare", False), ("in_service", True)):
            if not isinstance(spec.get(key, default), bool):
                raise PlanError(None, None, "%s: %s must be true or false, got %r" % (where, key, spec.get(key)))
        if capacity.get("pps") is not None and (not _number(capacity["pps"]) or capacity["pps"] < 0):
            raise PlanError(None, None, "%s: capacity.pps must be a number of packets per second >= 0, got %r" % (where, capacity["pps"]))
        self.cap_cpu = _milli(capacity["cpu"])
        self.cap_mem = _milli(capacity["memory"])
        self.cap_pps = None if capacity.get("pps") is None else int(capacity["pps"])  # None: not declared, not counted
        self.kinds = frozenset(kinds)
        self.spare = spec.get("spare", False)
        self.in_service = spec.get("in_service", True)
        self.trunk = spec.get("trunk")
        self.switch = spec.get("switch")
        self.cordoned = self.draining = False
        self.why_cordoned = self.why_draining = None
        self.fence = spec.get("fence")
        if self.fence is not None and not isinstance(self.fence, dict):
            raise PlanError(None, None, "%s: fence must be the fence mark (state, since, reason) or null, got %r" % (where, self.fence))
        report = spec.get("report")
        if report is not None and not isinstance(report, dict):
            raise PlanError(None, None, "%s: report must be module_host_info's result or null, got %r" % (where, type(report).__name__))
        self.known = report is not None
        report = report or {}
        mark = (report.get("maintenance") or {}).get("state") if isinstance(report.get("maintenance"), dict) else None
        if mark not in MARKS:
            raise PlanError(None, None, "%s: report.maintenance.state must be one of cordoned, draining, drained or null, got %r"
                            % (where, mark))
        self.mark = mark
        if MARKS[mark][0]:
            self.cordon("is marked %s on the platform" % mark)
        if MARKS[mark][1]:
            self.drain("is marked %s on the platform" % mark)
        self.utilization = self._report_number(report, "cpu", "utilization", 0.0)
        self.utilization = min(max(self.utilization, 0.0), 1.0)
        available = self._report_number(report, "memory", "available_mib", None)
        self.available = None if available is None else _milli(available)
        self.instances = report.get("instances") or {}
        if not isinstance(self.instances, dict) or not all(isinstance(i, dict) for i in self.instances.values()):
            raise PlanError(None, None, "%s: report.instances must map instance ids to their descriptions" % where)
        self.vlan_lo, self.vlan_hi = vlan_range
        self.vlans = set()
        for tag in ((report.get("vlans") or {}).get("in_use") or {}):
            try:
                self.vlans.add(int(tag))
            except (TypeError, ValueError):
                raise PlanError(None, None, "%s: report.vlans.in_use has %r, which is not a VLAN tag" % (where, tag)) from None
        self.claimed = set()  # tags of the instances kept or left alone here
        self.next_vlan = self.vlan_lo
        self.reserved_cpu = 0
        self.reserved_mem = 0
        self.reserved_pps = 0  # the packet rates measured of what is kept, left alone and placed here
        self.planned_mem = 0  # memory of instances this plan creates here (not yet in the live report)
        self.per_step = {}
        self.ours = []
        self.others = []

    def cordon(self, why):
        """Nothing new is placed here; what runs here stays."""
        if not self.cordoned:
            self.cordoned, self.why_cordoned = True, why

    def drain(self, why):
        """Nothing new is placed here, and what runs here moves off."""
        self.cordon(why)
        if not self.draining:
            self.draining, self.why_draining = True, why

    def _report_number(self, report, section, key, default):
        value = (report.get(section) or {}).get(key)
        if value is None:
            return default
        if not _number(value):
            raise PlanError(None, None, "host '%s': report.%s.%s must be a number, got %r" % (self.name, section, key, value))
        return float(value)

    # -- what is left ---------------------------------------------------------------------------
    def cpu_left(self):
        return self.cap_cpu - self.reserved_cpu

    def mem_left(self):
        """Declared memory left, bounded by the live available memory minus what this plan
        has already put here."""
        left = self.cap_mem - self.reserved_mem
        if self.available is not None:
            left = min(left, self.available - self.planned_mem)
        return left

    def pps_left(self):
        """Declared packets per second left (None: the host declares no pps capacity)."""
        return None if self.cap_pps is None else self.cap_pps - self.reserved_pps

    def load(self):
        """The load score: the largest of the reserved CPU, memory and (when the host declares
        it) packet-rate fractions (what has been promised away, by every instance kept, placed
        or left alone here) plus the live CPU utilization of the host (0..1: what it is doing
        now, including work we did not place). 0 is an idle, empty host; 2 a host fully
        reserved and fully busy."""
        fractions = [self.reserved_cpu / float(self.cap_cpu) if self.cap_cpu else 1.0,
                     self.reserved_mem / float(self.cap_mem) if self.cap_mem else 1.0]
        if self.cap_pps is not None:
            fractions.append(self.reserved_pps / float(self.cap_pps) if self.cap_pps else (1.0 if self.reserved_pps else 0.0))
        return max(fractions) + self.utilization

    def usable_for(self, need, placing=False):
        """Why this host cannot take ``need`` on grounds that no placement changes (None: it can).
        ``placing``: for a new instance (a cordoned host keeps what it runs, takes nothing new)."""
        if not self.in_service:
            return "is out of service"
        if self.fence and self.fence.get("state") == "powered_off":
            return "is powered off (since %s; playbooks/power-up.yml brings it back)" % (self.fence.get("since") or "?")
        if self.fence:
            return "is fenced on the switch (failed%s; playbooks/uncordon-host.yml brings it back)" % (
                " since %s" % self.fence["since"] if self.fence.get("since") else "")
        if self.draining:
            return self.why_draining
        if placing and self.cordoned:
            return self.why_cordoned
        if not self.known:
            return "has no report (its instances and VLAN tags are unknown)"
        if need.kind not in self.kinds:
            return "does not run %s" % need.kind
        if self.switch and need.switch and self.switch != need.switch:
            return "is on switch %s, not %s" % (self.switch, need.switch)
        return None

    def why_not(self, need):
        """None when ``need`` fits here now, else what stops it (for reasons and errors)."""
        fixed = self.usable_for(need, placing=True)
        if fixed:
            return fixed
        if need.step.get("apart") and self.per_step.get(need.label):
            return "runs an instance of %s already (the step keeps its instances apart)" % need.label
        if need.protects and self.per_step.get(need.protects):
            return "runs an instance of %s (its warm spare stands on another host: a host that dies takes both)" % need.protects
        if self.cpu_left() < need.cpu:
            return "%s left" % _fmt_cpu(max(self.cpu_left(), 0))
        if self.cap_mem - self.reserved_mem < need.mem:
            return "%s left" % _fmt_mem(max(self.cap_mem - self.reserved_mem, 0))
        if self.mem_left() < need.mem:
            return "%s available now" % _fmt_mem(max(self.mem_left(), 0))
        if self.cap_pps is not None and self.pps_left() < need.pps:
            return "%s left (it carries %s)" % (_fmt_pps(max(self.pps_left(), 0)), _fmt_pps(need.pps))
        if self.free_pair() is None:
            return "has no two free VLAN tags in %d-%d" % (self.vlan_lo, self.vlan_hi)
        return None

    # -- VLAN tags ------------------------------------------------------------------------------
    def free_pair(self):
        while self.next_vlan in self.vlans:
            self.next_vlan += 1
        right = self.next_vlan + 1
        while right in self.vlans:
            right += 1
        if right > self.vlan_hi:
            return None
        return self.next_vlan, right

    def claim_vlans(self, legs):
        """Keep the tags of an instance that stays here: {"left", "right"}, or None when it has
        no valid pair or another instance that stays here holds one of them."""
        tags = (legs.get("left"), legs.get("right"))
        if not all(isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= 4094 for t in tags) \
                or tags[0] == tags[1] or self.claimed.intersection(tags):
            return None
        self.claimed.update(tags)
        self.vlans.update(tags)
        return {"left": tags[0], "right": tags[1]}

    def new_vlans(self):
        pair = self.free_pair()
        self.vlans.update(pair)
        return {"left": pair[0], "right": pair[1]}

    # -- reservations ---------------------------------------------------------------------------
    def reserve(self, iid, cpu, mem, label=None, new=False, ours=True, pps=0):
        self.reserved_cpu += cpu
        self.reserved_mem += mem
        self.reserved_pps += pps
        if new:
            self.planned_mem += mem
        if label:
            self.per_step[label] = self.per_step.get(label, 0) + 1
        (self.ours if ours else self.others).append(iid)

    def summary(self):
        if not self.in_service:
            status = "out of service"
        elif self.fence:
            status = "powered off" if self.fence.get("state") == "powered_off" else "fenced"
        elif self.draining:
            status = "draining"
        elif self.cordoned:
            status = "cordoned"
        elif not self.known:
            status = "unknown (no report)"
        elif self.spare:
            status = "spare"
        else:
            status = "in service"
        out = {
            "status": status,
            "reserved": {"cpu": self.reserved_cpu / float(MILLI), "memory": self.reserved_mem / float(MILLI)},
            "left": {"cpu": self.cpu_left() / float(MILLI), "memory": self.mem_left() / float(MILLI)},
            "instances": sorted(self.ours),
            "others": sorted(self.others),
        }
        if self.cap_pps is not None:
            out["reserved"]["pps"], out["left"]["pps"] = self.reserved_pps, self.pps_left()
        return out


def host_states(hosts, vlan_range=DEFAULT_VLAN_RANGE):
    """{host: _HostState} from the ``hosts`` argument of ``plan`` (validated)."""
    if not isinstance(hosts, dict):
        raise PlanError(None, None, "hosts must be a mapping of module host names to their capacity, kinds and report")
    if (not isinstance(vlan_range, (list, tuple)) or len(vlan_range) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in vlan_range)
            or not 1 <= vlan_range[0] < vlan_range[1] <= 4094):
        raise PlanError(None, None, "vlan_range must be two VLAN tags (low, high) with 1 <= low < high <= 4094, got %r" % (vlan_range,))
    states = {}
    for name in sorted(hosts):
        states[name] = _HostState(name, hosts[name], tuple(vlan_range))
    return states


def choose(states, need, allow_spares=False, pack=False):
    """The host for ``need`` and the reason, or (None, {host: why it does not fit}).

    Candidates are the hosts where ``need`` fits now; the best has the fewest instances of the
    same chain step, then the most instances of its neighbouring steps (host-local chaining),
    then the lowest ``load()`` (``pack``: the highest - the fullest host that fits, so that
    consolidation keeps hosts free), then the first name. ``allow_spares`` is for a failover
    plan; normal placement never uses spares.
    """
    fits = []
    refused = {}
    for state in states:
        if state.spare and not allow_spares and not need.protects:
            continue
        why = state.why_not(need)
        if why:
            refused[state.name] = why
        else:
            near = sum(state.per_step.get(label, 0) for label in need.near)
            # a warm spare goes to a spare host first; an instance keeps off its step's warm spare
            apart = (0 if state.spare else 1) if need.protects else state.per_step.get(need.label + SPARE_SUFFIX, 0)
            # a replacement (another step's instance ran under this id) keeps off the host of the
            # copy it replaces where it can: the id names the ports there, so only elsewhere can
            # that copy drain while the new one takes over (make-before-break, not removed first)
            away = 1 if need.previous == state.name and not need.move else 0
            fits.append((state.per_step.get(need.label, 0), -near, -state.load() if pack else state.load(), state.name, state, apart,
                         away))
    if not fits:
        return None, refused
    fits.sort(key=_ranks)
    return fits[0][4], _reason(need, fits, pack)


def _ranks(candidate):
    return (candidate[6], candidate[5]) + candidate[:4]


def _reason(need, fits, pack=False):
    """Why the first of ``fits`` (sorted candidates) won: the criterion that beat the runner-up."""
    same, near, load, name, state, apart, away = fits[0]
    if len(fits) == 1:
        return "%s: the only host where it fits (%s)" % (name, _load_text(state))
    r_same, r_near, r_load, r_name = fits[1][:4]
    parts = []
    if away < fits[1][6]:
        return "%s: not %s, where the copy it replaces runs under the same id (elsewhere that copy drains while this one " \
            "takes over) (%s)" % (name, need.previous, _load_text(state))
    if apart < fits[1][5]:
        if need.protects:
            return "%s: a spare host, apart from the instances of %s it stands in for (%s)" % (name, need.protects, _load_text(state))
        return "%s: not where the warm spare of %s runs (%s has it)" % (name, need.label, r_name)
    if same < r_same:
        if same == 0:
            parts.append("no other instance of %s there (%s has %d)" % (need.label, r_name, r_same))
        else:
            parts.append("fewest instances of %s (%d; %s has %d)" % (need.label, same, r_name, r_same))
        parts.append(_load_text(state))
    else:
        if need.step["instances"] > 1:
            parts.append("no other instance of %s there" % need.label if same == 0 else
                         "%d other instance(s) of %s there, and no host where it fits has fewer" % (same, need.label))
        if near < r_near:
            parts.append("next to %d instance(s) of the steps before and after it (host-local chaining; %s has %d)"
                         % (-near, r_name, -r_near))
            parts.append(_load_text(state))
            return "%s: %s" % (name, "; ".join(parts))
        if near:
            parts.append("next to %d instance(s) of the steps before and after it" % -near)
        tied = sum(1 for f in fits if f[:2] == (same, near) and f[5] == apart)
        if load < r_load:
            parts.append(("fullest of %d hosts where it fits, to keep hosts free (%s; next %s at %.2f)" if pack else
                          "least loaded of %d hosts (%s; next %s at %.2f)") % (tied, _load_text(state), r_name, abs(r_load)))
        else:
            parts.append("as loaded as %s (%s), first by name" % (r_name, _load_text(state)))
    return "%s: %s" % (name, "; ".join(parts))


def _load_text(state):
    reserved = state.load() - state.utilization
    return "load %.2f = %.2f reserved + %.2f CPU busy" % (state.load(), reserved, state.utilization)


def _left_text(state):
    text = "left after: %s, %s" % (_fmt_cpu(state.cpu_left()), _fmt_mem(state.mem_left()))
    return text if state.cap_pps is None else "%s, %s" % (text, _fmt_pps(state.pps_left()))


# -- the request: which instances should exist -----------------------------------------------------
def _wanted(chains):
    """{instance id: (chain, step, n)} in chain, step, instance order; {chain name: chain}."""
    if not isinstance(chains, list):
        raise PlanError(None, None, "chains must be the list that _chains.validate returns")
    wanted = {}
    by_name = {}
    for chain in chains:
        by_name[chain["name"]] = chain
        if chain.get("state", "present") != "present":
            continue
        for step in chain["steps"]:
            if step["kind"] == "blackbox":
                continue
            for n in range(step["instances"]):
                iid = instance_id(chain["name"], step["index"], n, chain.get("tag"))
                if iid in wanted:
                    other = wanted[iid]
                    raise PlanError(chain["name"], step["name"], "instance %d has the id %s, the same as instance %d of step '%s' of chain '%s': "
                                    "give one of the chains its own tag (ids start with the chain's tag)"
                                    % (n, iid, other[2], other[1]["name"], other[0]["name"]))
                wanted[iid] = (chain, step, n)
    return wanted, by_name


def decode_instance(chain, iid):
    """(step index, n) of an instance id of the (validated) ``chain``, or None."""
    return _decode(chain["name"], iid, chain.get("tag"))


def _decode(chain, iid, tag=None):
    """(step index, n) of an instance id of ``chain``, or None when it is not one."""
    short = chain_short(chain, tag)
    if not iid.startswith(short) or len(iid) < len(short) + 2:
        return None
    try:
        step_index = int(iid[len(short)], 36)
    except ValueError:
        return None
    rest = iid[len(short) + 1:]
    if len(rest) == 1 and "a" <= rest <= "z":
        n = ord(rest) - 97
    elif rest.startswith("z"):
        try:
            n = 26 + int(rest[1:], 36)
        except ValueError:
            return None
    else:
        return None
    try:
        return (step_index, n) if instance_id(chain, step_index, n, tag) == iid else None
    except ValueError:
        return None


def _why_unwanted(chain, iid):
    """Why an instance of a chain that the request names is removed."""
    if chain.get("state", "present") != "present":
        return "chain %s is absent" % chain["name"]
    slot = _decode(chain["name"], iid, chain.get("tag"))
    if slot is None:
        return "not an instance id of chain %s as described now" % chain["name"]
    step_index, n = slot
    steps = chain["steps"]
    if step_index >= len(steps):
        return ("chain %s has %d step(s) now, its trials' candidates counted; this was an instance of step %d (a step since "
                "removed, or the candidate of a trial that has ended)" % (chain["name"], len(steps), step_index))
    step = steps[step_index]
    if step["kind"] == "blackbox":
        return "step %s/%s is a black box now (no instances)" % (chain["name"], step["name"])
    return "scale down: step %s/%s has %d instance(s) now; this is instance %d" % (chain["name"], step["name"], step["instances"], n)


def _matches(info, chain, step):
    """Is the instance a host reports this step's instance (so it can stay)? None = yes, else why not."""
    if info.get("step") not in (None, step["name"], str(step["index"])):
        return "it served step %s, this id is now step %s/%s" % (info.get("step"), chain["name"], step["name"])
    if info.get("kind") not in (None, step["kind"]):
        return "kind changes %s -> %s" % (info.get("kind"), step["kind"])
    return None


def _legs(info):
    legs = info.get("legs") or {}
    return {leg: (legs.get(leg) or {}).get("vlan") for leg in ("left", "right")}


# -- the plan ------------------------------------------------------------------------------------------
def check_policy(policy, states):
    """The policy of an operation, checked against the hosts, with defaults; marks ``states``.

    ``cordoned``: hosts that take nothing new (what runs there stays); ``draining``: hosts that
    are emptied (nothing new, and what runs there moves off); ``moves``: ``[{instance, to,
    method}]``, instances that must go to a given host, ``method`` ``live`` (the default: a VM by
    libvirt live migration, other kinds make-before-break with their state carried) or ``cold``
    (re-created there); ``allow_spares``: spares may take instances (a failover; explicit moves
    to a spare need it too); ``objective``: ``spread`` (placement as always) or ``pack``
    (consolidation: the fewest hosts, see ``consolidate``), with its options in ``pack``;
    ``restore_by_priority``: capacity short, hold the chains that do not fit (see ``plan``)."""
    policy = {} if policy is None else policy
    if not isinstance(policy, dict):
        raise PlanError(None, None, "policy must be a mapping (cordoned, draining, moves, allow_spares, objective, pack), got %r" % (policy,))
    known = ("cordoned", "draining", "moves", "allow_spares", "objective", "pack", "respread", "restore_by_priority")
    unknown = sorted(set(policy) - set(known))
    if unknown:
        raise PlanError(None, None, "policy: unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(known)))
    out = {"cordoned": [], "draining": [], "moves": {}, "allow_spares": policy.get("allow_spares", False),
           "objective": policy.get("objective") or "spread"}
    if not isinstance(out["allow_spares"], bool):
        raise PlanError(None, None, "policy.allow_spares must be true or false, got %r" % (out["allow_spares"],))
    if out["objective"] not in OBJECTIVES:
        raise PlanError(None, None, "policy.objective must be one of %s, got %r" % (", ".join(OBJECTIVES), out["objective"]))
    out["pack"] = _pack_options(policy.get("pack"))
    out["restore_by_priority"] = policy.get("restore_by_priority", False)
    if not isinstance(out["restore_by_priority"], bool):
        raise PlanError(None, None, "policy.restore_by_priority must be true or false, got %r" % (out["restore_by_priority"],))
    out["respread"] = policy.get("respread", False)
    if not isinstance(out["respread"], bool):
        raise PlanError(None, None, "policy.respread must be true or false, got %r" % (out["respread"],))
    if out["respread"] and out["objective"] != "spread":
        raise PlanError(None, None, "policy.respread goes with objective spread (it undoes a pack), not %s" % out["objective"])
    for key, verb in (("cordoned", "cordon"), ("draining", "drain")):
        names = policy.get(key) or []
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise PlanError(None, None, "policy.%s must be a list of module host names, got %r" % (key, names))
        for name in names:
            if name not in states:
                raise PlanError(None, None, "policy.%s: '%s' is not a module host (known: %s)" % (key, name, ", ".join(sorted(states)) or "none"))
            getattr(states[name], verb)("is %s by this operation" % ("cordoned" if key == "cordoned" else "being drained"))
            out[key].append(name)
    moves = policy.get("moves") or []
    if not isinstance(moves, (list, tuple)):
        raise PlanError(None, None, "policy.moves must be a list of {instance, to, method}, got %r" % (moves,))
    for index, move in enumerate(moves):
        where = "policy.moves[%d]" % index
        if not isinstance(move, dict):
            raise PlanError(None, None, "%s must be a mapping {instance, to, method}, got %r" % (where, move))
        extra = sorted(set(move) - {"instance", "to", "method"})
        if extra:
            raise PlanError(None, None, "%s: unknown key(s) %s (known: instance, to, method)" % (where, ", ".join(extra)))
        iid, to, method = move.get("instance"), move.get("to"), move.get("method") or "live"
        if not isinstance(iid, str) or not iid:
            raise PlanError(None, None, "%s: instance must be an instance id, got %r" % (where, iid))
        if iid in out["moves"]:
            raise PlanError(None, None, "%s: instance %s is moved twice (also policy.moves[%d])" % (where, iid, out["moves"][iid]["index"]))
        if to not in states:
            raise PlanError(None, None, "%s: instance %s: to '%s' is not a module host (known: %s)"
                            % (where, iid, to, ", ".join(sorted(states)) or "none"))
        if method not in METHODS:
            raise PlanError(None, None, "%s: instance %s: method must be one of %s, got %r" % (where, iid, ", ".join(METHODS), method))
        out["moves"][iid] = {"to": to, "method": method, "index": index, "where": where}
    return out


def _pack_options(given):
    """policy.pack checked, with defaults: ``headroom`` (the share of each host's CPU, memory and
    declared packet rate a packing leaves unused, 0 to 0.9), ``keep_free`` (hosts kept on and empty for a failover,
    declared spares counted), ``min_freed`` (fewer hosts to power off than this: nothing moves),
    ``min_interval`` (seconds; since the ``last`` consolidation - epoch seconds - at ``now``:
    sooner, nothing moves), ``freeing`` (hosts an earlier power-down marked to free and did not
    switch off - killed half-way: freed again, whatever their mark)."""
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise PlanError(None, None, "policy.pack must be a mapping (%s), got %r" % (", ".join(PACK_DEFAULTS), given))
    unknown = sorted(set(given) - set(PACK_DEFAULTS))
    if unknown:
        raise PlanError(None, None, "policy.pack: unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(PACK_DEFAULTS)))
    out = dict(PACK_DEFAULTS)
    out.update((k, v) for k, v in given.items() if v is not None)
    if not _number(out["headroom"]) or not 0 <= out["headroom"] <= 0.9:
        raise PlanError(None, None, "policy.pack.headroom must be a fraction from 0 to 0.9 (0.2 leaves a fifth of every host unused), "
                        "got %r" % (out["headroom"],))
    for key in ("keep_free", "min_freed"):
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0:
            raise PlanError(None, None, "policy.pack.%s must be a whole number of hosts >= 0, got %r" % (key, out[key]))
    if not isinstance(out["freeing"], (list, tuple)) or not all(isinstance(h, str) and h for h in out["freeing"]):
        raise PlanError(None, None, "policy.pack.freeing must be a list of module host names, got %r" % (out["freeing"],))
    for key in ("min_interval", "last", "now"):
        if out[key] is not None and (not _number(out[key]) or out[key] < 0):
            raise PlanError(None, None, "policy.pack.%s must be a number of seconds >= 0%s, got %r"
                            % (key, "" if key == "min_interval" else " (epoch)", out[key]))
    return out


def consolidate(states, wanted, policy):
    """Objective ``pack``: which hosts the instances fit on with the headroom asked
    (_consolidate.pack), which of the others are powered off and which stay on empty
    (``keep_free``, declared spares counted), and - when that is worth it - the marks and moves
    that get there: the hosts to free are drained, each instance that changes host is an asked
    move (live) to the host the packing chose, and the hosts to power off and to keep free take
    nothing new. Changes ``states`` and ``policy`` in place; returns what it decided and why."""
    opts = policy["pack"]
    keep = 1.0 - float(opts["headroom"])
    bins, why_fixed = [], {}
    described = {chain["name"] for chain, _step, _n in wanted.values()}
    candidates = [st for st in states.values() if st.in_service and st.known and not st.fence and not st.draining and not st.spare]
    # hosts an interrupted power-down was freeing (marked draining or drained by it, still on):
    # no bin of the packing, their instances are its to move off again, and they go off with the rest
    freeing = [st for st in states.values() if st.name in opts["freeing"] and st.draining and st.in_service and st.known
               and not st.fence and not st.spare]
    for st in candidates:
        foreign = [iid for iid, info in st.instances.items() if iid not in wanted and info.get("chain") not in described]
        base_cpu = sum(_milli((st.instances[i].get("resources") or {}).get("cpu")) for i in foreign)
        base_mem = sum(_milli((st.instances[i].get("resources") or {}).get("memory")) for i in foreign)
        base_pps = sum(_pps_of(st.instances[i]) for i in foreign)
        # warm spares are not packed (a packing knows nothing of whom they must stand apart from):
        # one counts where it runs; on a host that is freed, placement finds it another
        spares = [wanted[i][1] for i in st.instances if i in wanted and wanted[i][1].get("spare_of")]
        base_cpu += sum(_milli(step["resources"].get("cpu")) for step in spares)
        base_mem += sum(_milli(step["resources"].get("memory")) for step in spares)
        if foreign:
            why_fixed[st.name] = "runs %s, of no chain this request describes" % ", ".join(sorted(foreign)[:5])
        bins.append(_consolidate.Bin(st.name, int(st.cap_cpu * keep), int(st.cap_mem * keep), kinds=st.kinds, switch=st.switch,
                                     base_cpu=base_cpu, base_mem=base_mem, fixed=why_fixed.get(st.name), is_open=not st.cordoned,
                                     pps=None if st.cap_pps is None else int(st.cap_pps * keep), base_pps=base_pps))
    names = set(b.name for b in bins)
    homes_of = sorted(states.values(), key=lambda st: st in freeing)  # a copy on a host kept on is home first
    homes_at = names | set(st.name for st in freeing)
    items = []
    for iid, (chain, step, n) in wanted.items():
        if step.get("spare_of"):
            continue
        need = _Need(iid, chain, step, n)
        home = next((st.name for st in homes_of if iid in st.instances and _matches(st.instances[iid], chain, step) is None
                     and st.name in homes_at), None)
        pps = max([_pps_of(st.instances[iid]) for st in states.values() if iid in st.instances] or [0])
        items.append(_consolidate.Item(iid, need.cpu, need.mem, kind=need.kind, switch=need.switch,
                                       group=need.label if step.get("apart") else None, home=home, label="%s (%s)" % (iid, need.label),
                                       pps=pps))
    try:
        packed = _consolidate.pack(items, bins)
    except _consolidate.PackError as exc:
        item = exc.item
        chain, step, _n = wanted[item.iid] if item is not None else (None, None, None)
        raise PlanError(chain["name"] if chain else None, step["name"] if step else None,
                        "cannot consolidate with headroom %.0f %%: %s" % (opts["headroom"] * 100, exc)) from None
    on_before = sorted(st.name for st in candidates + freeing if st.instances)
    active = packed["active"]
    free_after = sorted(homes_at - set(active))
    spares_on = sorted(st.name for st in states.values() if st.spare and st.in_service and not st.fence)
    standby_count = max(0, opts["keep_free"] - len(spares_on))
    standby = sorted(sorted(free_after, key=lambda h: (-states[h].cap_cpu, -states[h].cap_mem, h))[:standby_count])
    power_off = sorted(h for h in free_after if h not in standby)
    freed = sorted(h for h in on_before if h not in active)
    homes = {i.iid: i.home for i in items}
    out = {"headroom": opts["headroom"], "keep_free": opts["keep_free"], "min_freed": opts["min_freed"],
           "lower_bound": packed["lower_bound"], "exact": packed["exact"], "before": on_before, "after": active,
           "freed": freed, "power_off": power_off, "standby": standby, "spares": spares_on, "fixed": why_fixed,
           "moves": [{"instance": iid, "from": homes[iid], "to": packed["assignment"][iid]} for iid in packed["moves"]]}
    why_not = None
    if len(power_off) < opts["min_freed"]:
        why_not = "not worth it: %d host(s) could be powered off (%s), at least %d asked (min_freed)" % (
            len(power_off), ", ".join(power_off) or "none", opts["min_freed"])
    elif opts["min_interval"] and opts["last"] is not None and opts["now"] is not None \
            and opts["now"] - opts["last"] < opts["min_interval"]:
        why_not = "too soon: the last consolidation was %d s ago, at least %d s asked (min_interval)" % (
            opts["now"] - opts["last"], opts["min_interval"])
    out["worth_it"] = why_not is None
    if why_not:
        out.update(why=why_not, moves=[], freed=[], power_off=[], standby=[])
        return out
    out["why"] = "%d host(s) hold every instance with %.0f %% headroom (lower bound %d%s) instead of %d: %s powered off%s" % (
        len(active), opts["headroom"] * 100, packed["lower_bound"], ", the fewest possible" if packed["exact"] else "",
        len(on_before), ", ".join(power_off) or "none", "; %s kept on, empty (keep_free)" % ", ".join(standby) if standby else "")
    text = "consolidation: %d host(s) instead of %d" % (len(active), len(on_before))
    for host in power_off:
        states[host].drain("is freed by %s, to be powered off" % text)
    for host in standby:
        states[host].cordon("is kept on and empty by %s (keep_free)" % text)
    for move in out["moves"]:
        if move["instance"] not in policy["moves"]:
            policy["moves"][move["instance"]] = {"to": move["to"], "method": "live", "index": len(policy["moves"]),
                                                 "where": "consolidation (%s)" % text, "why": "%s: packed onto %s" % (text, move["to"])}
    return out


def respread(chains, hosts, vlan_range, states, wanted, policy):
    """``policy.respread`` (power-up, after a pack): when the instances run on fewer hosts than
    placement would use from empty (a pack), the layout placement makes from empty on the hosts
    as they are now (instances of chains not described left where they are), and a move (live)
    for every instance that runs elsewhere; spread as widely already, nothing moves. That layout is made from what is reserved,
    not from the hosts' live CPU utilization (which moves by the second, and would have a second
    run move things again). Changes ``policy`` in place; returns the moves."""
    empty = {}
    for name, spec in hosts.items():
        spec = dict(spec)
        report = spec.get("report")
        if isinstance(report, dict):
            report = dict(report, instances={iid: info for iid, info in (report.get("instances") or {}).items() if iid not in wanted},
                          cpu=dict(report.get("cpu") or {}, utilization=0.0), memory={})
            spec["report"] = report
        empty[name] = spec
    asked = {"cordoned": [n for n, st in states.items() if st.cordoned and not st.draining],
             "draining": [n for n, st in states.items() if st.draining], "allow_spares": policy["allow_spares"]}
    # what each instance carries now goes with it in that layout too
    rates = {iid: _pps_of(info) for st in states.values() for iid, info in st.instances.items() if iid in wanted}
    fresh = plan(chains, empty, vlan_range, policy=asked, rates=rates)
    homes = {}
    for iid in fresh["instances"]:
        homes[iid] = next((st.name for st in states.values() if iid in st.instances and st.usable_for(_Need(iid, *wanted[iid])) is None),
                          None)
    if len({h for h in homes.values() if h}) >= len({e["host"] for e in fresh["instances"].values()}):
        return []  # spread over as many hosts already (not packed): nothing moves
    moves = []
    for iid, entry in sorted(fresh["instances"].items()):
        home = homes[iid]
        if home is not None and home != entry["host"] and iid not in policy["moves"]:
            policy["moves"][iid] = {"to": entry["host"], "method": "live", "index": len(policy["moves"]),
                                    "where": "re-spread (the layout placement makes from empty)",
                                    "why": "re-spread: the layout placement makes from empty has it on %s" % entry["host"]}
            moves.append({"instance": iid, "from": home, "to": entry["host"]})
    return moves


def plan(chains, hosts, vlan_range=DEFAULT_VLAN_RANGE, policy=None, rates=None):
    """Place every instance of ``chains`` on ``hosts``; see the module docstring and docs/planner.md.

    With ``policy.restore_by_priority`` (a failover) a shortfall of capacity holds chains instead
    of failing: chains are placed whole, highest ``restore_priority`` first (ties: the request's
    order); a chain that does not fit is held - nothing of it is placed, moved or removed, what
    of it still runs is left alone - and the chains after it are placed without it.

    ``rates`` ({instance id: packets per second}) gives the packet rate of instances that no
    host's report shows running (a re-spread plans as if from empty); a running one's is its
    report's ``pps``.

    Returns {"instances", "remove", "hosts", "moves", "warnings", "policy", "consolidation",
    "held"}; raises PlanError.
    """
    held = {}
    while True:
        try:
            out = _plan_once(chains, hosts, vlan_range, policy, held, rates)
        except PlanError as exc:
            if not (exc.holdable and exc.chain and exc.chain not in held and (policy or {}).get("restore_by_priority")):
                raise
            held[exc.chain] = exc
            continue
        out["held"] = _held(chains, held, hosts)
        return out


def _plan_once(chains, hosts, vlan_range, policy, held, rates=None):
    states = host_states(hosts, vlan_range)
    policy = check_policy(policy, states)
    wanted, by_name = _wanted(chains)
    consolidation = consolidate(states, wanted, policy) if policy["objective"] == "pack" else None
    if policy["respread"]:
        respread(chains, hosts, vlan_range, states, wanted, policy)
    kept, needs, remove = _sort_out(states, wanted, by_name, policy, held, rates)
    out = _keep(kept, states)
    moves = _place(needs, states, out, policy, _restore_ranks(chains) if policy["restore_by_priority"] else None)
    moves += [iid for iid, entry in out.items() if entry["action"] == "migrate" and iid not in moves]
    return {
        "instances": {iid: out[iid] for iid in sorted(out)},
        "remove": {iid: {"host": remove[iid]["hosts"][0], "hosts": remove[iid]["hosts"], "reason": "; ".join(remove[iid]["reasons"]),
                         "chain": remove[iid]["chain"]}
                   for iid in sorted(remove)},
        "hosts": {name: state.summary() for name, state in states.items()},
        "moves": sorted(moves),
        "warnings": _warnings(states),
        "policy": {"cordoned": sorted(n for n, st in states.items() if st.cordoned and not st.draining),
                   "draining": sorted(n for n, st in states.items() if st.draining),
                   "moves": [dict(instance=iid, to=m["to"], method=m["method"]) for iid, m in sorted(policy["moves"].items())],
                   "allow_spares": policy["allow_spares"], "objective": policy["objective"],
                   "restore_by_priority": policy["restore_by_priority"]},
        "consolidation": consolidation,
    }


def _restore_ranks(chains):
    """{chain name: its place in a restore}: highest restore_priority first, then the request's order."""
    present = [c for c in chains if c.get("state", "present") == "present"]
    return {c["name"]: (-c.get("restore_priority", DEFAULT_RESTORE_PRIORITY), index) for index, c in enumerate(present)}


def _held(chains, held, hosts):
    """{chain: why it is held, what of it still runs where, what is missing} of the held chains."""
    out = {}
    running = {}
    for name, spec in hosts.items():
        for iid, info in ((spec.get("report") or {}).get("instances") or {}).items():
            running.setdefault(info.get("chain"), {}).setdefault(iid, []).append(name)
    wanted, _by_name = _wanted([c for c in chains if c["name"] in held])
    for chain in chains:
        if chain["name"] not in held:
            continue
        exc = held[chain["name"]]
        mine = running.get(chain["name"], {})
        out[chain["name"]] = {
            "restore_priority": chain.get("restore_priority", DEFAULT_RESTORE_PRIORITY),
            "fail_mode": chain.get("fail_mode", "closed"),
            "step": exc.step, "reason": exc.message, "details": exc.details,
            "running": {iid: sorted(mine[iid]) for iid in sorted(mine)},
            "missing": sorted(iid for iid, (c, _s, _n) in wanted.items() if c["name"] == chain["name"] and iid not in mine),
        }
    return out


def _sort_out(states, wanted, by_name, policy, held=(), rates=None):
    """Sort what the hosts report against what is wanted: the instances that stay
    ({id: (need, host state, description)}), those that need a host ({id: _Need}) and the copies
    to remove ({id: {"hosts", "reasons"}}). Instances of chains not in the request, and of
    ``held`` chains, are left alone: they keep their share of their host and their VLAN tags.
    ``rates``: the packet rate of instances that no report shows running ({id: pps})."""
    copies = {}  # instance id -> [(host state, description)], hosts by name
    for state in states.values():
        for iid in sorted(state.instances):
            copies.setdefault(iid, []).append((state, state.instances[iid]))
    kept, needs, remove = {}, {}, {}
    _check_moves(policy["moves"], copies, wanted, by_name)

    def drop(iid, state, why):
        entry = remove.setdefault(iid, {"hosts": [], "reasons": [], "chain": copies[iid][0][1].get("chain")})
        entry["hosts"].append(state.name)
        entry["reasons"].append(why if len(copies[iid]) == 1 else "%s: %s" % (state.name, why))

    for iid in sorted(copies):
        found = copies[iid]
        if iid not in wanted or wanted[iid][0]["name"] in held:
            for state, info in found:
                if info.get("chain") in by_name and info["chain"] not in held:
                    drop(iid, state, _why_unwanted(by_name[info["chain"]], iid))
                else:
                    res = info.get("resources") or {}
                    state.reserve(iid, _milli(res.get("cpu")), _milli(res.get("memory")), ours=False, pps=_pps_of(info))
                    state.claim_vlans(_legs(info))
            continue
        chain, step, n = wanted[iid]
        for state, info in found:
            if info.get("chain") not in (None, chain["name"]):
                raise PlanError(chain["name"], step["name"], "instance %d would be %s, but %s already runs an instance %s of chain '%s': "
                                "rename one of the chains (ids come from the chain's name)" % (n, iid, state.name, iid, info.get("chain")))
        need = _Need(iid, chain, step, n)
        # what it carries goes where it goes (a warm spare carries nothing until a failover)
        need.pps = 0 if step.get("spare_of") else max(_pps_of(i) for _s, i in found)
        stay = [(s, i) for s, i in found if _matches(i, chain, step) is None and s.usable_for(need) is None]
        asked = policy["moves"].get(iid)
        if asked:
            here = [s for s, i in found if _matches(i, chain, step) is None]
            if here and here[0].name == asked["to"] and len(found) == 1:
                raise PlanError(chain["name"], step["name"], "%s: instance %s already runs on %s: choose another host"
                                % (asked["where"], iid, asked["to"]))
            need.pin, need.method = asked["to"], asked["method"]
            on_target = [(s, i) for s, i in stay if s.name == asked["to"]]
            if on_target:
                # an interrupted move: the copy on the target is there already and is kept
                state, info = on_target[0]
                kept[iid] = (need, state, info)
                source = next((s, i) for s, i in found if s is not state)
                for other, _info in found:
                    if other is not state:
                        drop(iid, other, "moves off %s to %s (asked; the copy there exists already)" % (other.name, state.name))
                need.previous, need.why_previous, need.move = source[0].name, asked.get("why") or "asked to move to %s" % asked["to"], True
                need.previous_vlans = _legs(source[1])
                continue
            if stay:
                state, info = stay[0]
                drop(iid, state, "moves off %s to %s (asked)" % (state.name, asked["to"]))
                need.previous, need.why_previous, need.move = state.name, asked.get("why") or "asked to move to %s" % asked["to"], True
                need.previous_vlans = _legs(info)
                for other, _info in found:
                    if other is not state:
                        drop(iid, other, "a second copy: %s moves from %s to %s" % (iid, state.name, asked["to"]))
                needs[iid] = need
                continue
        if stay:
            kept[iid] = (need, stay[0][0], stay[0][1])
            for state, info in found:
                if state is stay[0][0]:
                    continue
                if _matches(info, chain, step) is None and not need.move and not state.fence:
                    # the same instance on two hosts: a move an earlier run did not finish (a
                    # drain, a power-down, a re-spread killed half-way) - resumed towards the copy
                    # that stays, as an asked one is (its old copy drains, its state comes along);
                    # a fenced host's copies carry no traffic and nothing is taken from them
                    drop(iid, state, "moves off %s to %s (an interrupted move, resumed: the copy there exists already)"
                         % (state.name, stay[0][0].name))
                    need.previous, need.move = state.name, True
                    need.why_previous = "an interrupted move, resumed (%s)" % (state.usable_for(need) or "a second copy")
                    need.previous_vlans = _legs(info)
                else:
                    drop(iid, state, "a second copy: the one on %s is kept" % stay[0][0].name)
            continue
        for state, info in found:
            mismatch = _matches(info, chain, step)
            if mismatch:  # another instance under this id: replaced
                drop(iid, state, "replaced (%s)" % mismatch)
                if need.previous is None:
                    need.previous, need.why_previous = state.name, mismatch
            else:  # this instance, on a host that cannot keep it: moves
                why = "%s %s" % (state.name, state.usable_for(need))
                drop(iid, state, "moves off %s: %s" % (state.name, why))
                if not need.move:
                    need.previous, need.why_previous, need.move = state.name, why, True
                    need.previous_vlans = _legs(info)
                    # a fenced host carries no traffic: its copy is re-created, nothing to carry over
                    need.method = need.method or ("cold" if state.fence else "live")
        needs[iid] = need
    for iid, (chain, step, n) in wanted.items():
        if iid not in kept and iid not in needs and chain["name"] not in held:
            needs[iid] = _Need(iid, chain, step, n)
            needs[iid].pps = 0 if step.get("spare_of") else int((rates or {}).get(iid) or 0)
    return kept, needs, remove


def _check_moves(moves, copies, wanted, by_name):
    """Every asked move names an instance that runs and that the request keeps."""
    for iid, move in sorted(moves.items(), key=lambda kv: kv[1]["index"]):
        if iid not in copies:
            running = sorted(copies)
            raise PlanError(None, None, "%s: instance %s runs on no module host (running: %s)"
                            % (move["where"], iid, ", ".join(running[:20]) + (" ..." if len(running) > 20 else "") or "none"))
        if iid not in wanted:
            chain = copies[iid][0][1].get("chain")
            if chain in by_name:
                raise PlanError(chain, None, "%s: instance %s is being removed (%s), it cannot move"
                                % (move["where"], iid, _why_unwanted(by_name[chain], iid)))
            raise PlanError(chain, None, "%s: instance %s belongs to %s, which the request does not describe: describe the chain to "
                            "move its instances" % (move["where"], iid, "chain '%s'" % chain if chain else "no chain"))


def _keep(kept, states):
    """Reserve what the kept instances need and keep their VLAN tags, before anything new is
    placed; an instance without (valid, unclashing) tags gets new ones on its host."""
    out = {}
    retag = []
    for iid in sorted(kept):
        need, state, info = kept[iid]
        state.reserve(iid, need.cpu, need.mem, need.label, pps=need.pps)
        vlans = state.claim_vlans(_legs(info))
        reason = "kept on %s (already there)" % state.name
        if info.get("type") not in (None, need.step["type"]):
            reason += "; type changes %s -> %s in place" % (info.get("type"), need.step["type"])
        if vlans is None:
            retag.append((need, state))
        out[iid] = _entry(need, state, vlans, False, reason)
        if need.move:  # an interrupted move, resumed: this copy is the target's
            out[iid].update(action="migrate", method=need.method, moved_from=need.previous, previous_vlans=need.previous_vlans,
                            reason="moved from %s (%s): the copy on %s exists already (an interrupted move, resumed)"
                            % (need.previous, need.why_previous, state.name))
    for need, state in retag:
        if state.free_pair() is None:
            raise PlanError(need.chain, need.step["name"], "instance %s on %s has no VLAN tags and %s has no two free tags in %d-%d"
                            % (need.iid, state.name, state.name, state.vlan_lo, state.vlan_hi))
        out[need.iid]["vlans"] = state.new_vlans()
        out[need.iid]["reason"] += "; its legs had no VLAN tags: new ones"
    return out


def _place(needs, states, out, policy, ranks=None):
    """Place every instance that needs a host, in ``_Need.order`` (asked moves first; with
    ``ranks``, a restore, chain by chain in that order); add them to ``out`` and return the ids
    that moved."""
    moves = []
    for need in sorted(needs.values(), key=lambda n: (0 if n.pin else 1,) + ((ranks[n.chain],) if ranks else ()) + n.order()):
        if need.pin:
            state, why = _pinned(need, states[need.pin], policy)
        else:
            state, why = choose(states.values(), need, allow_spares=policy["allow_spares"], pack=policy["objective"] == "pack")
        if state is None:
            raise _short(need, why, out, states)
        vlans = state.new_vlans()
        state.reserve(need.iid, need.cpu, need.mem, need.label, new=True, pps=need.pps)
        reason = "%s; %s" % (why, _left_text(state))
        entry = _entry(need, state, vlans, True, reason)
        if need.move:
            entry["reason"] = "moved from %s (%s): %s" % (need.previous, need.why_previous, reason)
            entry.update(action="migrate", method=need.method, moved_from=need.previous, previous_vlans=need.previous_vlans)
            moves.append(need.iid)
        elif need.previous:
            entry["reason"] = "replaces the copy on %s (%s): %s" % (need.previous, need.why_previous, reason)
            entry["action"] = "replace"
        out[need.iid] = entry
    return moves


def _pinned(need, state, policy):
    """The host an asked move names, or PlanError saying why it cannot take the instance."""
    where = policy["moves"][need.iid]["where"]
    if state.spare and not policy["allow_spares"]:
        raise PlanError(need.chain, need.step["name"], "%s: instance %s cannot move to %s: it is a spare (spares take instances "
                        "in a failover; allow_spares to use it anyway)" % (where, need.iid, state.name))
    why = state.why_not(need)
    if why:
        short = []
        if state.cpu_left() < need.cpu:
            short.append("%s short" % _fmt_cpu(need.cpu - max(state.cpu_left(), 0)))
        if state.mem_left() < need.mem:
            short.append("%s short" % _fmt_mem(need.mem - max(state.mem_left(), 0)))
        if state.cap_pps is not None and state.pps_left() < need.pps:
            short.append("%s short" % _fmt_pps(need.pps - max(state.pps_left(), 0)))
        needs = [_fmt_cpu(need.cpu), _fmt_mem(need.mem)] + ([_fmt_pps(need.pps)] if state.cap_pps is not None else [])
        raise PlanError(need.chain, need.step["name"], "%s: instance %s cannot move to %s: %s %s (it needs %s and %s%s)" % (
            where, need.iid, state.name, state.name, why, ", ".join(needs[:-1]), needs[-1],
            "; " + ", ".join(short) if short else ""), {"host": state.name, "why": why})
    return state, "%s: asked (%s)" % (state.name, _load_text(state))


def _warnings(states):
    warnings = []
    for state in states.values():
        for label in sorted(state.per_step):
            if label.endswith(SPARE_SUFFIX) and state.per_step.get(label[:-len(SPARE_SUFFIX)]):
                warnings.append("%s: the warm spare of %s runs there with an instance of that step, which it therefore does not "
                                "protect (no other host had room for it)" % (state.name, label[:-len(SPARE_SUFFIX)]))
        mem_left = state.cap_mem - state.reserved_mem
        if state.cpu_left() < 0 or mem_left < 0:
            warnings.append("%s: the instances kept there reserve more than its capacity (%s, %s left); they are not moved "
                            "for that (drain it, or raise its capacity)" % (state.name, _fmt_cpu(state.cpu_left()), _fmt_mem(mem_left)))
        if state.cap_pps is not None and state.pps_left() < 0:
            carried = (state.name, _fmt_pps(state.reserved_pps), _fmt_pps(state.cap_pps))
            warnings.append("%s: the instances kept there carry more than its packet rate capacity (%s, measured now, of %s); they "
                            "are not moved for that (drain it, or raise its capacity)" % carried)
    return warnings


def _entry(need, state, vlans, new, reason):
    return {
        "chain": need.chain, "step": need.step["name"], "step_index": need.step["index"], "n": need.n,
        "host": state.name, "trunk": state.trunk, "kind": need.kind, "type": need.step["type"],
        "vlans": vlans, "resources": dict(need.step["resources"]), "new": new, "reason": reason,
        "action": "install" if new else "keep", "method": None, "moved_from": None, "previous_vlans": None,
    }


def _short(need, refused, out, states):
    """The capacity-short error for ``need``: what the step needs, what it got, why every
    other host refuses."""
    step = need.step
    placed = sorted(e["host"] for e in out.values() if e["chain"] == need.chain and e["step_index"] == step["index"])
    short = step["instances"] - len(placed)
    text = "capacity short: needs %d instance%s of %s and %s (kind %s)" % (
        step["instances"], "s" if step["instances"] > 1 else "", _fmt_cpu(need.cpu), _fmt_mem(need.mem), need.kind)
    if need.protects:
        text = ("no host can hold the warm spare of %s (spare: warm asks for a standby instance of %s and %s, kind %s, on a "
                "host that runs none of its instances)" % (need.protects, _fmt_cpu(need.cpu), _fmt_mem(need.mem), need.kind))
    if need.move:
        text += "; %s must leave %s (%s)" % (need.iid, need.previous, need.why_previous)
    if not need.protects:
        if placed:
            text += "; %d placed (on %s); no host fits the other %d" % (len(placed), ", ".join(sorted(set(placed))), short)
        else:
            text += "; none placed; no host fits %s" % ("any" if short > 1 else "it")
    if refused:
        text += ": " + ", ".join("%s %s" % (name, why) for name, why in sorted(refused.items()))
    else:
        text += ": there are no module hosts"
    spares = sorted(s.name for s in states.values() if s.spare)
    if spares and not need.protects:
        text += " (spares %s are kept free)" % ", ".join(spares)
    details = {"needed": step["instances"], "placed": len(placed), "short": short, "kind": need.kind,
               "cpu": need.cpu / float(MILLI), "memory": need.mem / float(MILLI), "hosts": dict(sorted(refused.items())),
               "spares": spares}
    return PlanError(need.chain, step.get("spare_of") or step["name"], text, details, holdable=True)
