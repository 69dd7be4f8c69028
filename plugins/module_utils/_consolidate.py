# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Consolidation for quiet hours (the planner's ``objective: pack``): the fewest module hosts
that hold every instance with headroom left, and the moves that get there.

``pack(items, bins)`` is the packing itself, on a plain model (no chains, no reports) so that it
can be checked against exhaustive search and measured on a thousand instances:

* an ``Item`` is an instance: what it reserves (CPU and memory, in thousandths), the packets per
  second it carries (``pps``, as its host measured it), its kind, its chain's switch, the host it
  runs on now (``home``) and, for a step whose instances must stay apart, its step (``group``);
* a ``Bin`` is a module host that may stay on: what it can give (its capacity less the headroom;
  a packet rate only when the host declares one, else ``pps`` is None and rates are not counted
  there), the kinds it runs, its switch, what others reserve there already (``base``: instances
  of chains the request does not describe - they never move, so their host stays on: ``fixed``)
  and whether it takes instances it does not hold already (a cordoned host does not: ``open``).

It raises the number of hosts kept on from the lower bound (per resource, the fewest of the
largest hosts whose room adds up to the demand; at least as many as the largest group that must
stay apart; every fixed host) until every item fits, preferring at each count the hosts that
hold the most already, so that the fewest instances move:

* small platforms (``EXACT_BINS`` hosts, ``EXACT_ITEMS`` instances at most): every set of hosts
  of that count, and an exhaustive search of the placements on each - the fewest hosts, and of
  those placements the one with the fewest moves;
* larger ones: the hosts that hold the most (then the largest), and best-fit decreasing - what
  is home stays home, the rest goes where it leaves the least room unused; then the same with
  everything placed afresh; then the items the fewest hosts may hold first, onto the hosts that
  run the fewest kinds. A packing found is then shrunk: a host it uses that holds little is left
  out and everything packed again, while that works. On the bench's workloads this uses the
  lower bound or one host more; with packet rates counted too, up to 1.4 times the (per
  resource, weak) lower bound (bench/consolidate.py; docs/planner.md).

Pure Python, no I/O.
"""

from __future__ import annotations

import itertools

EXACT_BINS = 6
EXACT_ITEMS = 10
EXACT_BUDGET = 200000  # search steps per host count before the exact search gives way to best fit


class PackError(Exception):
    """No number of hosts holds the items: ``item`` (an Item) fits on none of them."""

    def __init__(self, item, message):
        super().__init__(message)
        self.item = item


class Item(object):
    __slots__ = ("iid", "cpu", "mem", "pps", "kind", "switch", "group", "home", "label")

    def __init__(self, iid, cpu, mem, kind=None, switch=None, group=None, home=None, label=None, pps=0):
        self.iid, self.cpu, self.mem, self.kind, self.switch = iid, int(cpu), int(mem), kind, switch
        self.group, self.home, self.label, self.pps = group, home, label or iid, int(pps)

    def __repr__(self):
        return "Item(%s, %d, %d, home=%s)" % (self.iid, self.cpu, self.mem, self.home)


class Bin(object):
    __slots__ = ("name", "cpu", "mem", "pps", "kinds", "switch", "base_cpu", "base_mem", "base_pps", "fixed", "open")

    def __init__(self, name, cpu, mem, kinds=None, switch=None, base_cpu=0, base_mem=0, fixed=None, is_open=True, pps=None, base_pps=0):
        self.name, self.cpu, self.mem = name, int(cpu), int(mem)
        self.pps = None if pps is None else int(pps)  # None: no declared packet rate, rates not counted here
        self.kinds = None if kinds is None else frozenset(kinds)
        self.switch, self.base_cpu, self.base_mem, self.base_pps = switch, int(base_cpu), int(base_mem), int(base_pps)
        self.fixed = fixed  # why it stays on whatever the packing (None: it may be freed)
        self.open = is_open

    def __repr__(self):
        return "Bin(%s, %d, %d)" % (self.name, self.cpu, self.mem)


def can_hold(item, box):
    """Whether ``box`` may ever hold ``item`` (kind, switch, cordon), room aside."""
    if box.kinds is not None and item.kind is not None and item.kind not in box.kinds:
        return False
    if box.switch and item.switch and box.switch != item.switch:
        return False
    return box.open or item.home == box.name


class _Load(object):
    """What a packing has put on each host so far."""

    def __init__(self, bins):
        self.cpu = {b.name: b.base_cpu for b in bins}
        self.mem = {b.name: b.base_mem for b in bins}
        self.pps = {b.name: b.base_pps for b in bins}
        self.groups = {b.name: set() for b in bins}

    def fits(self, item, box):
        return (self.cpu[box.name] + item.cpu <= box.cpu and self.mem[box.name] + item.mem <= box.mem
                and (box.pps is None or self.pps[box.name] + item.pps <= box.pps)
                and (item.group is None or item.group not in self.groups[box.name]))

    def put(self, item, box):
        self.cpu[box.name] += item.cpu
        self.mem[box.name] += item.mem
        self.pps[box.name] += item.pps
        if item.group is not None:
            self.groups[box.name].add(item.group)

    def take(self, item, box):
        self.cpu[box.name] -= item.cpu
        self.mem[box.name] -= item.mem
        self.pps[box.name] -= item.pps
        if item.group is not None:
            self.groups[box.name].discard(item.group)

    def empty(self, box):
        """Whether ``box`` holds nothing of this packing (what others reserve aside)."""
        return (self.cpu[box.name] == box.base_cpu and self.mem[box.name] == box.base_mem and self.pps[box.name] == box.base_pps
                and not self.groups[box.name])

    def slack(self, item, box):
        """The room ``box`` would have left after ``item``, as the largest of the fractions."""
        room = [(box.cpu - self.cpu[box.name] - item.cpu) / float(box.cpu or 1),
                (box.mem - self.mem[box.name] - item.mem) / float(box.mem or 1)]
        if box.pps is not None:
            room.append((box.pps - self.pps[box.name] - item.pps) / float(box.pps or 1))
        return max(room)


def size(item, bins):
    """An item's size for ordering: its largest share of the largest host (packet rates against
    the largest declared one)."""
    cpu = max([b.cpu for b in bins] or [1]) or 1
    mem = max([b.mem for b in bins] or [1]) or 1
    shares = [item.cpu / float(cpu), item.mem / float(mem)]
    declared = [b.pps for b in bins if b.pps is not None]
    if declared and item.pps:
        shares.append(item.pps / float(max(declared) or 1))
    return max(shares)


def lower_bound(items, bins):
    """The fewest hosts that could hold ``items``: per resource, the fewest of the largest hosts
    whose room adds up to the demand (what others reserve included); never fewer than the
    fixed hosts, nor than the largest group that must stay apart."""
    bound = sum(1 for b in bins if b.fixed)
    groups = {}
    for item in items:
        if item.group is not None:
            groups[item.group] = groups.get(item.group, 0) + 1
    bound = max([bound] + list(groups.values()))
    # a packet rate bounds the count only when every host declares one (one that does not takes any rate)
    counted = ("cpu", "mem", "pps") if bins and all(b.pps is not None for b in bins) else ("cpu", "mem")
    for attr in counted:
        demand = sum(getattr(i, attr) for i in items) + sum(getattr(b, "base_" + attr) for b in bins)
        if demand <= 0:
            continue
        room = 0
        for count, cap in enumerate(sorted((getattr(b, attr) for b in bins), reverse=True), 1):
            room += cap
            if room >= demand:
                bound = max(bound, count)
                break
        else:
            bound = max(bound, len(bins) + 1)  # not even every host together holds it
    return bound


def pack(items, bins):
    """{"active": [host names kept on], "assignment": {iid: host}, "moves": [iid whose host
    changes], "lower_bound": n, "exact": whether the count is proven the fewest}; raises
    PackError when even every host together cannot hold the items."""
    bins = sorted(bins, key=lambda b: b.name)
    for item in items:
        if not any(can_hold(item, b) and _Load([b]).fits(item, b) for b in bins):
            raise PackError(item, "%s fits on no host that may stay on (kind %s, %.2f CPU, %d MiB%s)"
                            % (item.label, item.kind, item.cpu / 1000.0, item.mem // 1000, ", %d pps" % item.pps if item.pps else ""))
    bound = lower_bound(items, bins)
    held = {}
    for item in items:
        if item.home is not None:
            held[item.home] = held.get(item.home, 0) + size(item, bins)
    fixed = [b for b in bins if b.fixed]
    free = [b for b in bins if not b.fixed]
    small = len(bins) <= EXACT_BINS and len(items) <= EXACT_ITEMS
    exact = small
    for count in range(max(bound, len(fixed), 1 if items else 0), len(bins) + 1):
        extra = count - len(fixed)
        if small:
            found, complete = _exact(items, fixed, free, extra, held)
            exact = exact and complete
            if found is not None:
                return _result(found, items, bound, exact)
            if complete:
                continue
        keeps = list(_keep_sets(fixed, free, extra, held, items))
        # each set of hosts, what is home first, then afresh; only then the most constrained first
        for keep, way in [(k, w) for k in keeps for w in ("home", "fresh")] + [(k, "constrained") for k in keeps]:
            found = _best_fit(items, keep, way)
            if found is not None:
                return _result(_shrink(found, items, keep), items, bound, False)
    raise PackError(None, "the instances do not fit on every host together (with the headroom asked)")


def _result(assignment, items, bound, exact):
    return {"active": sorted(set(assignment.values())), "assignment": assignment,
            "moves": sorted(i.iid for i in items if i.home is not None and assignment[i.iid] != i.home),
            "lower_bound": bound, "exact": exact}


def _keep_sets(fixed, free, extra, held, items):
    """The hosts to keep on at this count: the fixed ones, then either those that hold the most
    (the fewest moves), or those that together cover the demand best (one at a time, the host
    that raises the least-covered resource most; the one that holds more on a tie)."""
    seen = []
    for keep in (fixed + sorted(free, key=lambda b: (-held.get(b.name, 0), -(b.cpu + b.mem), b.name))[:extra],
                 fixed + _covering(fixed, free, extra, held, items)):
        names = sorted(b.name for b in keep)
        if names not in seen:
            seen.append(names)
            yield keep


def _covering(fixed, free, extra, held, items):
    everyone = fixed + free
    attrs = ("cpu", "mem", "pps") if all(b.pps is not None for b in everyone) else ("cpu", "mem")
    demand = [float(sum(getattr(i, a) for i in items) + sum(getattr(b, "base_" + a) for b in everyone) or 1) for a in attrs]
    cover = [float(sum(getattr(b, a) for b in fixed)) for a in attrs]
    left = list(free)
    chosen = []
    for _count in range(extra):
        def score(box):
            after = [(c + getattr(box, a)) / d for a, c, d in zip(attrs, cover, demand)]
            return (min(after), sum(min(a, 1.25) for a in after), held.get(box.name, 0), box.name)
        best = max(left, key=score)
        left.remove(best)
        chosen.append(best)
        cover = [c + getattr(best, a) for a, c in zip(attrs, cover)]
    return chosen


SHRINK_TRIES = 3  # hosts tried per round when a packing is shrunk


def _shrink(assignment, items, keep):
    """A packing found by best fit, on fewer hosts where it can be: a host it uses (not a fixed
    one; the ones holding the least first, a few per round) is left out and the items packed
    again onto the others, until none can be left out."""
    while True:
        used = set(assignment.values())
        hold = {}
        for item in items:
            hold[assignment[item.iid]] = hold.get(assignment[item.iid], 0.0) + size(item, keep)
        candidates = sorted((b for b in keep if b.name in used and not b.fixed), key=lambda b: (hold.get(b.name, 0.0), b.name))
        for box in candidates[:SHRINK_TRIES]:
            rest = [b for b in keep if b.name in used and b is not box]
            found = next((f for f in (_best_fit(items, rest, w) for w in ("home", "fresh", "constrained")) if f is not None), None)
            if found is not None:
                assignment = found
                break
        else:
            return assignment


def _best_fit(items, keep, way):
    """Best-fit decreasing onto ``keep``: {iid: host} or None. ``way`` V(home): what is home
    stays home first, then the rest in size order, each where it leaves the least room;
    V(fresh): every item in size order, home when it fits there, else best fit; V(constrained):
    the items the fewest of these hosts may hold (kind, switch) first, each home when it fits
    there, else on the host that runs the fewest kinds (versatile hosts are kept for the items
    only they can take), then best fit - what several resources binding at once need."""
    load = _Load(keep)
    by_name = {b.name: b for b in keep}
    if way == "constrained":
        order = sorted(items, key=lambda i: (sum(1 for b in keep if can_hold(i, b)), -size(i, keep), i.iid))
    else:
        order = sorted(items, key=lambda i: (-size(i, keep), i.iid))
    fresh = way != "home"
    out = {}
    rest = order
    if not fresh:
        rest = []
        for item in order:
            box = by_name.get(item.home)
            if box is not None and can_hold(item, box) and load.fits(item, box):
                load.put(item, box)
                out[item.iid] = box.name
            else:
                rest.append(item)
    for item in rest:
        home = by_name.get(item.home)
        if fresh and home is not None and can_hold(item, home) and load.fits(item, home):
            best = home
        else:
            best, best_slack = None, None
            for box in keep:
                if can_hold(item, box) and load.fits(item, box):
                    slack = load.slack(item, box)
                    if way == "constrained":
                        slack = (len(box.kinds) if box.kinds is not None else 99, slack)
                    if best is None or slack < best_slack:
                        best, best_slack = box, slack
            if best is None:
                return None
        load.put(item, best)
        out[item.iid] = best.name
    return out


def _exact(items, fixed, free, extra, held):
    """The placement on ``extra`` of the ``free`` hosts (with every fixed one) with the fewest
    moves, over every such set of hosts: ({iid: host} or None, whether the search was complete)."""
    best = [None, None]  # moves, assignment
    budget = [EXACT_BUDGET]
    sets = sorted(itertools.combinations(free, extra), key=lambda c: (-sum(held.get(b.name, 0) for b in c), [b.name for b in c]))
    order = sorted(items, key=lambda i: (-size(i, free + fixed), i.iid))
    for chosen in sets:
        keep = list(fixed) + list(chosen)
        names = set(b.name for b in keep)
        if best[0] is not None and best[0] <= sum(1 for i in items if i.home is not None and i.home not in names):
            continue  # cannot beat what is found: those must move anyway
        _search(order, 0, keep, _Load(keep), {}, 0, best, budget)
        if budget[0] <= 0:
            return best[1], False
    return best[1], True


def _search(order, index, keep, load, out, moves, best, budget):
    if best[0] is not None and moves >= best[0]:
        return
    if index == len(order):
        best[0], best[1] = moves, dict(out)
        return
    budget[0] -= 1
    if budget[0] <= 0:
        return
    item = order[index]
    tried_empty = set()
    homes = set(i.home for i in order[index:])
    for box in sorted(keep, key=lambda b: (b.name != item.home, b.name)):
        if not can_hold(item, box) or not load.fits(item, box):
            continue
        if box.name not in homes and load.empty(box):
            # empty hosts alike, home to none of the items left: trying one is trying them all
            alike = (box.cpu, box.mem, box.pps, box.kinds, box.switch, box.open, box.base_cpu, box.base_mem, box.base_pps)
            if alike in tried_empty:
                continue
            tried_empty.add(alike)
        load.put(item, box)
        out[item.iid] = box.name
        _search(order, index + 1, keep, load, out, moves + (1 if item.home is not None and box.name != item.home else 0), best, budget)
        load.take(item, box)
        del out[item.iid]
