# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module host's trunk to the switch, seen from either end: BFD on it, its link, and the
fence the platform puts on a failed host's trunk.

BFD runs in ovs-vswitchd on both ends (the switch's trunk port and the host bridge's), so a
dead host - its Open vSwitch gone, its link down, its box off - stops answering within
``min_rx`` x 3 (Open vSwitch's BFD multiplier is fixed at 3). Its state is the Interface's
``bfd_status`` column.

The fence lives on the SWITCH's trunk port, not on the host (a failed host cannot be written
to): the Port's ``external_ids`` (``flowstream-fence``, ``-since``, ``-reason``) carry the mark,
the trunk's OpenFlow port is set ``down`` (``ovs-ofctl mod-port``), and a drop flow for
everything arriving on it sits above every chain flow (``fence_flow``) - so nothing the host
sends reaches the chains, whatever still runs there, even when its link comes up again (a
restarted switch, a cable re-plugged: Open vSwitch follows the link, not the earlier port-mod).
"""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import quote_value, read_mark

FENCE_KEY = "flowstream-fence"
#: the fence's states: a failed host (``fenced``), a host the platform powered off (``powered_off``:
#: playbooks/power-down.yml - the same fence, so nothing mistakes the host for a failed one)
FENCE_STATES = ("fenced", "powered_off")
#: cookie of a fence's drop flow (0xF5FE in the top 16 bits - outside the chains' 0xF5C0 space -
#: the trunk's OpenFlow port number below); priority above every chain flow
FENCE_COOKIE = 0xF5FE << 48
FENCE_PRIORITY = 65535
#: the host-side trunk port is found on the host bridge by this external_ids pair
ROLE_KEY, ROLE_TRUNK = "flowstream-role", "trunk"
#: bfd column keys the platform manages (others set by an operator are left alone)
BFD_KEYS = ("enable", "min_rx", "min_tx", "decay_min_rx")
#: Open vSwitch's BFD detect multiplier (fixed in ovs-vswitchd)
BFD_MULT = 3


def bfd_want(enabled=True, min_tx=100, min_rx=100, decay_min_rx=0):
    """The ``bfd`` column values (strings, as OVSDB keeps them) for these settings."""
    for name, value in (("min_tx", min_tx), ("min_rx", min_rx), ("decay_min_rx", decay_min_rx)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError("bfd.%s must be a whole number of milliseconds >= 0, got %r" % (name, value))
    if enabled and (min_tx < 1 or min_rx < 1):
        raise ValueError("bfd.min_tx and bfd.min_rx must be at least 1 ms with BFD enabled")
    if not enabled:
        return {"enable": "false"}
    want = {"enable": "true", "min_tx": str(min_tx), "min_rx": str(min_rx)}
    if decay_min_rx:
        want["decay_min_rx"] = str(decay_min_rx)
    return want


def bfd_changes(have, want):
    """(set, remove): the bfd keys to write and to delete so that the managed keys equal ``want``."""
    have = have or {}
    to_set = {k: v for k, v in want.items() if have.get(k) != v}
    to_remove = sorted(k for k in BFD_KEYS if k in have and k not in want)
    return to_set, to_remove


def bfd_summary(config, status):
    """What an operator wants to know of one end's BFD: enabled, the intervals, and the session's
    state (``forwarding`` is what OpenFlow fast-failover and the failure check go by)."""
    config, status = config or {}, status or {}
    enabled = config.get("enable") == "true"
    out = {"enabled": enabled, "min_tx": _int(config.get("min_tx")), "min_rx": _int(config.get("min_rx")),
           "detect_ms": None}
    if enabled and out["min_rx"]:
        out["detect_ms"] = out["min_rx"] * BFD_MULT
    out.update(state=status.get("state"), forwarding=status.get("forwarding") == "true" if status else None,
               remote_state=status.get("remote_state"), diagnostic=None if status.get("diagnostic") in (None, "", "No Diagnostic") else status["diagnostic"],
               flap_count=_int(status.get("flap_count")))
    return out


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def read(ovs, port):
    """{port, bfd (summary), bfd_config, link_state, admin_state, ofport, fence} of one trunk
    port, or None when there is no such interface."""
    return read_all(ovs, [port])[port]


def read_all(ovs, ports):
    """read() for several ports, in two OVSDB calls: {port: read() or None}."""
    if not ports:
        return {}
    rows = {r["name"]: r for r in ovs.list_table("Interface", ["name", "bfd", "bfd_status", "link_state", "admin_state", "ofport"])}
    exts = {r["name"]: r.get("external_ids") or {} for r in ovs.list_table("Port", ["name", "external_ids"])}
    out = {}
    for port in ports:
        row = rows.get(port)
        out[port] = None if row is None else {
            "port": port, "bfd": bfd_summary(row.get("bfd"), row.get("bfd_status")), "bfd_config": row.get("bfd") or {},
            "link_state": row.get("link_state"), "admin_state": row.get("admin_state"), "ofport": row.get("ofport"),
            "fence": fence_mark(exts.get(port) or {})}
    return out


def host_trunk_port(ovs, bridge):
    """The trunk port of a host bridge: the port whose Interface carries flowstream-role=trunk."""
    names = set(ovs.ports(bridge))
    found = sorted(r["name"] for r in ovs.list_table("Interface", ["name", "external_ids"])
                   if r["name"] in names and (r.get("external_ids") or {}).get(ROLE_KEY) == ROLE_TRUNK)
    return found[0] if found else None


def bfd_args(port, to_set, to_remove):
    """The ovs-vsctl commands (one transaction's part) that make the port's bfd column so."""
    args = []
    if to_set:
        args += ["--", "set", "Interface", port] + ["bfd:%s=%s" % (k, quote_value(v)) for k, v in sorted(to_set.items())]
    if to_remove:
        args += ["--", "remove", "Interface", port, "bfd"] + list(to_remove)
    return args


def set_bfd(ovs, changes):
    """``changes``: {port: (to_set, to_remove)}, written in ONE OVSDB transaction."""
    args = [a for port, (to_set, to_remove) in sorted(changes.items()) for a in bfd_args(port, to_set, to_remove)]
    if args:
        ovs.vsctl(*args)


def fence_cookie(ofport):
    return FENCE_COOKIE | (int(ofport) & 0xFFFFFFFF)


def fence_flow(ofport):
    """The fence's drop flow for the trunk's OpenFlow port (a bundle line's flow part): whatever
    the fenced host sends is dropped before any chain flow sees it."""
    return "cookie=0x%x,table=0,priority=%d,in_port=%d,actions=drop" % (fence_cookie(ofport), FENCE_PRIORITY, int(ofport))


def fence_mark(external_ids):
    """{state: fenced or powered_off, since, reason} from a Port's external_ids, or None."""
    return read_mark(external_ids, FENCE_KEY, FENCE_STATES)


def write_fence(ovs, port, state, reason=None):
    """Set (``state``: one of FENCE_STATES) or clear (None) the fence mark on the switch's trunk
    Port, one transaction."""
    if state is not None and state not in FENCE_STATES:
        raise ValueError("fence state must be one of %s, got %r" % (", ".join(FENCE_STATES), state))
    ovs.write_mark("Port", port, FENCE_KEY, state, reason)
