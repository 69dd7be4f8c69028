# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The consolidation packing (objective pack): on small platforms as few hosts as exhaustive
search finds, and of those placements one with the fewest moves; on larger ones the lower bound
or one host more; kinds, switches, cordons, steps kept apart and headroom respected."""

from __future__ import annotations

import itertools
import random

import pytest

from ansible_collections.flowstream.platform.plugins.module_utils._consolidate import Bin, Item, PackError, lower_bound, pack

K = 1000  # thousandths


def feasible(assignment, items, bins):
    by_name = {b.name: b for b in bins}
    used = {b.name: [b.base_cpu, b.base_mem, set()] for b in bins}
    for item in items:
        box = by_name[assignment[item.iid]]
        if box.kinds is not None and item.kind not in box.kinds:
            return False
        if box.switch and item.switch and box.switch != item.switch:
            return False
        if not box.open and item.home != box.name:
            return False
        use = used[box.name]
        if item.group is not None and item.group in use[2]:
            return False
        use[0] += item.cpu
        use[1] += item.mem
        if item.group is not None:
            use[2].add(item.group)
        if use[0] > box.cpu or use[1] > box.mem:
            return False
    return True


def brute_force(items, bins):
    """(fewest hosts on, fewest moves at that count) over every placement."""
    best = None
    names = [b.name for b in bins]
    fixed = set(b.name for b in bins if b.fixed)
    for choice in itertools.product(names, repeat=len(items)):
        assignment = {i.iid: host for i, host in zip(items, choice)}
        if not feasible(assignment, items, bins):
            continue
        score = (len(set(choice) | fixed), sum(1 for i, host in zip(items, choice) if i.home is not None and host != i.home))
        if best is None or score < best:
            best = score
    return best


def random_platform(rng, n_bins, n_items):
    bins = []
    for index in range(n_bins):
        bins.append(Bin("mh%d" % index, rng.choice([2, 4]) * K, rng.choice([1024, 2048]) * K,
                        kinds=rng.choice([None, ("kernel", "process"), ("kernel", "process", "vm")]),
                        is_open=rng.random() > 0.15))
    items = []
    for index in range(n_items):
        home = rng.choice([None] + [b.name for b in bins] * 2)
        kind = rng.choice(["kernel", "process", "vm"])
        items.append(Item("i%d" % index, rng.choice([250, 500, 1000, 1500]), rng.choice([64, 256, 512, 1024]) * K, kind=kind,
                          group=rng.choice([None, None, "web/mon"]), home=home))
    return items, bins


@pytest.mark.parametrize("seed", range(40))
def test_small_platforms_use_as_few_hosts_as_exhaustive_search_and_the_fewest_moves(seed):
    rng = random.Random(seed)
    items, bins = random_platform(rng, rng.randint(2, 4), rng.randint(1, 6))
    best = brute_force(items, bins)
    if best is None:
        with pytest.raises(PackError):
            pack(items, bins)
        return
    out = pack(items, bins)
    assert out["exact"]
    assert feasible(out["assignment"], items, bins)
    assert (len(out["active"]), len(out["moves"])) == best, out
    assert out["lower_bound"] <= best[0]


def test_what_fits_at_home_stays_home():
    bins = [Bin("a", 4 * K, 4096 * K), Bin("b", 4 * K, 4096 * K), Bin("c", 4 * K, 4096 * K)]
    items = [Item("x", 1 * K, 512 * K, home="a"), Item("y", 1 * K, 512 * K, home="b"), Item("z", 1 * K, 512 * K, home="b")]
    out = pack(items, bins)
    assert out["active"] == ["b"] and out["moves"] == ["x"]   # the host that holds the most stays on


def test_steps_kept_apart_cordons_kinds_and_fixed_hosts():
    bins = [Bin("a", 8 * K, 8192 * K, kinds=("kernel",)), Bin("b", 8 * K, 8192 * K), Bin("c", 8 * K, 8192 * K, is_open=False),
            Bin("d", 8 * K, 8192 * K, base_cpu=K, base_mem=K, fixed="holds instances of chains not described")]
    items = [Item("m0", K, K, kind="kernel", group="web/mon", home="a"), Item("m1", K, K, kind="kernel", group="web/mon", home="a"),
             Item("v", K, K, kind="vm", home="c")]
    out = pack(items, bins)
    assigned = out["assignment"]
    assert assigned["m0"] != assigned["m1"]          # apart
    assert assigned["v"] in ("b", "d", "c")            # not the kernel-only host
    assert "d" in out["active"]                        # fixed: stays on
    assert feasible(assigned, items, bins)
    assert len(out["active"]) == 2                     # d and one of the others
    assert lower_bound(items, bins) == 2


def test_nothing_fits_names_the_instance():
    bins = [Bin("a", 1 * K, 1024 * K)]
    with pytest.raises(PackError, match="big fits on no host"):
        pack([Item("big", 2 * K, 64 * K, label="big")], bins)


@pytest.mark.parametrize("seed", range(3))
def test_larger_platforms_stay_within_one_host_of_the_lower_bound(seed):
    rng = random.Random(1000 + seed)
    bins = [Bin("mh%03d" % n, rng.choice([8, 16]) * K, rng.choice([16384, 32768]) * K) for n in range(30)]
    items = [Item("i%d" % n, rng.choice([250, 500, 1000, 2000]), rng.choice([128, 512, 1024, 2048]) * K,
                  home=rng.choice(bins).name) for n in range(200)]
    out = pack(items, bins)
    assert feasible(out["assignment"], items, bins)
    assert len(out["active"]) <= out["lower_bound"] + 1, (len(out["active"]), out["lower_bound"])
