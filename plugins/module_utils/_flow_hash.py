# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flow-affine, symmetric, stable load balancing over the members of a parallel step.

The recipe (two OpenFlow tables, all in ovs-ofctl syntax, see docs/openflow.md):

1. Classify: ``table=T, priority=P, <match>`` ->
   ``multipath(symmetric_l3l4+udp, BASIS, modulo_n, S, 0, reg0[0..k]), goto_table:D``.
   Open vSwitch hashes the 5-tuple *symmetrically* (source and destination are combined so that
   both directions of a connection give the same hash) into one of S fixed *slots*. S never
   changes when members come and go, so a connection's slot never changes.
2. Dispatch: ``table=D, priority=P, <match>, reg0=s/mask`` -> the actions of the member that
   owns slot ``s`` (S flows).

Which member owns which slot is decided here, at compile time, by rendezvous (highest random
weight, HRW) hashing: slot ``s`` belongs to the member with the highest ``score(s, member)``.
Removing a member reassigns only the slots it owned (each to its runner-up), so only its
connections move; adding a member takes over only the slots where it now scores highest.

Why not a select group?  LAB.md measured ``type=select,selection_method=hash`` groups: stable,
but not symmetric (the reverse direction met the same bucket 15/50).  Why not
``multipath(..., hrw, N, ...)`` over the members directly?  Symmetric and stable when the *last*
member goes, but removing a member from the middle renumbers the links after it and moves their
connections too; fixed slots plus HRW at compile time keep every remaining connection in place
whichever member goes, and per-packet hashing stays O(1) (``modulo_n``) instead of O(N) (``hrw``).

Pure functions, no I/O: the chain compiler calls them and hands the flows to openflow_flows.
"""

from __future__ import annotations

import functools
import hashlib

DEFAULT_SLOTS = 256
MAX_SLOTS = 65536
HASH_FIELDS = ("symmetric_l3l4+udp", "symmetric_l3l4", "symmetric_l4", "symmetric_l3")


def hrw_score(slot, member, seed=""):
    """Deterministic 64-bit rendezvous weight of (slot, member); the same on every host and run."""
    digest = hashlib.blake2b(("%s\x00%d\x00%s" % (seed, slot, member)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def slot_owners(members, slots=DEFAULT_SLOTS, seed=""):
    """The member that owns each slot: a list of ``slots`` member names.

    ``members`` is an iterable of distinct names (strings).  The result depends only on the SET of
    members (not on their order), the slot count and the seed.
    """
    names = [str(m) for m in members]
    if not names:
        raise ValueError("a load-balanced step needs at least one member")
    if len(set(names)) != len(names):
        dupes = sorted(set(n for n in names if names.count(n) > 1))
        raise ValueError("members must be distinct; repeated: %s" % ", ".join(dupes))
    if not 1 <= int(slots) <= MAX_SLOTS:
        raise ValueError("slots must be between 1 and %d, not %r" % (MAX_SLOTS, slots))
    return list(_hrw_owners(tuple(sorted(names)), int(slots), seed))


@functools.lru_cache(maxsize=4096)
def _hrw_owners(names, slots, seed):
    # a step's owners are asked for once per arrival (both directions, the switch and each host
    # bridge) and per plan: computed once
    return tuple(max(names, key=lambda n: (hrw_score(slot, n, seed), n)) for slot in range(slots))


TRIAL_MEMBER = "\x00trial"


def trial_slots(percent, slots=DEFAULT_SLOTS, seed=""):
    """The slots a trial at ``percent`` (0 < percent <= 100) of a step's flows takes: the nearest
    whole number of slots (at least one), chosen by a fixed score of their own - so a larger
    percent takes every slot a smaller one took and more (10 -> 50 -> 100 only adds slots), and
    which slots a trial takes does not depend on who holds them. Sorted."""
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        raise ValueError("percent must be a number in (0, 100], not %r" % (percent,)) from None
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100], not %r" % (percent,))
    slots = int(slots)
    count = min(slots, max(1, int(percent * slots / 100.0 + 0.5)))
    ranked = sorted(range(slots), key=lambda s: (-hrw_score(s, TRIAL_MEMBER, seed), s))
    return sorted(ranked[:count])


def trial_owners(incumbents, candidates, percent, slots=DEFAULT_SLOTS, seed=""):
    """Slot owners of a step that runs a trial: the slots of ``trial_slots(percent)`` go to the
    ``candidates`` (by rendezvous hashing among them), every other slot stays with the incumbent
    that ``slot_owners(incumbents)`` gives it - the rest of the step's flows are untouched, and
    ending the trial gives each slot back to the incumbent that had it. A connection's slot
    comes from the symmetric hash, so both directions of it meet the same instance, candidate or
    incumbent, never both."""
    owners = slot_owners(incumbents, slots, seed)
    candidates = [str(c) for c in candidates]
    overlap = sorted(set(candidates) & set(str(m) for m in incumbents))
    if overlap:
        raise ValueError("a candidate cannot be an incumbent too: %s" % ", ".join(overlap))
    taken = trial_slots(percent, slots, seed)
    for slot in taken:
        owners[slot] = max(candidates, key=lambda n: (hrw_score(slot, n, seed), n)) if candidates else None
    if None in owners:
        raise ValueError("a trial needs at least one candidate")
    return owners


def moved_slots(old_owners, new_owners):
    """Slots whose owner differs between two assignments (what a membership change moves)."""
    if len(old_owners) != len(new_owners):
        raise ValueError("both assignments must have the same number of slots")
    return [s for s, (a, b) in enumerate(zip(old_owners, new_owners)) if a != b]


def slot_bits(slots):
    return max(1, (int(slots) - 1).bit_length())


def symmetric_lb_flows(members, match, table, dispatch_table, priority=100, slots=DEFAULT_SLOTS,
                       register=0, basis=0, fields="symmetric_l3l4+udp", seed="", owners=None):
    """Flows (dicts for openflow_flows' ``flows`` option) that balance ``match`` over ``members``.

    ``members``: mapping of member name -> actions (string or list of actions) to apply to that
    member's share, e.g. ``{"ids1": "push_vlan:0x8100,set_field:4196->vlan_vid,output:3"}``.
    ``match``: the traffic of this step in ovs-ofctl syntax; it must select IP traffic (``ip``,
    ``ipv6``, ``tcp``, ...) - other traffic has no 5-tuple and would all land in one slot.
    ``table``/``dispatch_table``: the classify table and a later table for the per-slot flows
    (``dispatch_table > table``, OpenFlow's goto_table only goes forward).
    ``register``: which NXM_NX_REGn holds the slot (its low bits; other bits are left alone).
    ``fields``: the multipath hash; the symmetric ones only.  ``symmetric_l3l4+udp`` (default)
    hashes addresses, protocol and TCP/UDP/SCTP ports and ignores Ethernet and VLAN headers, so
    a reply that comes back with other MAC addresses or another VLAN still hashes the same.
    ``owners``: the member of each slot when it is not ``slot_owners(members)`` (a trial:
    ``trial_owners``); every owner must be a member.
    Returns flows sorted by table, then slot: deterministic (same input, same output).
    """
    if not isinstance(members, dict) or not members:
        raise ValueError("members must be a non-empty mapping of member name -> actions")
    if fields not in HASH_FIELDS:
        raise ValueError("fields must be a symmetric multipath hash (%s), not %r" % (", ".join(HASH_FIELDS), fields))
    table = int(table)
    dispatch_table = int(dispatch_table)
    if not 0 <= table < dispatch_table <= 254:
        raise ValueError("dispatch_table (%s) must come after table (%s), both in 0..254" % (dispatch_table, table))
    if not 0 <= int(register) <= 15:
        raise ValueError("register must be 0..15 (NXM_NX_REG0..15), not %r" % (register,))
    match = (match or "").strip().strip(",")
    if "actions" in match:
        raise ValueError("match must not contain actions: %r" % match)
    if owners is None:
        owners = slot_owners(sorted(members), slots, seed)
    elif len(owners) != int(slots) or not set(owners) <= set(members):
        raise ValueError("owners must name a member for each of the %d slots" % int(slots))
    bits = slot_bits(slots)
    mask = (1 << bits) - 1
    reg = "NXM_NX_REG%d" % int(register)
    classify = {
        "table": table,
        "priority": int(priority),
        "match": match,
        "actions": "multipath(%s,%d,modulo_n,%d,0,%s[0..%d]),goto_table:%d"
                   % (fields, int(basis), int(slots), reg, bits - 1, dispatch_table),
    }
    flows = [classify]
    for slot, owner in enumerate(owners):
        actions = members[owner]
        if isinstance(actions, (list, tuple)):
            actions = ",".join(str(a) for a in actions)
        slot_match = "reg%d=0x%x/0x%x" % (int(register), slot, mask)
        flows.append({
            "table": dispatch_table,
            "priority": int(priority),
            "match": "%s,%s" % (match, slot_match) if match else slot_match,
            "actions": actions,
        })
    return flows


def share(owners):
    """Slots per member: {member: count} (how evenly the step is balanced)."""
    counts = {}
    for owner in owners:
        counts[owner] = counts.get(owner, 0) + 1
    return counts
