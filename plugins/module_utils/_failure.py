# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Knowing a module host is dead: two independent witnesses, and hysteresis.

A host is **failed** when BOTH witnesses say so for a whole grace period:

* the data plane - its trunk's BFD session on the switch's end is not forwarding (or, on a trunk
  without BFD, the switch's trunk link is down);
* the management plane - its SSH server does not answer on its management address.

One witness alone is not enough (a trunk cut with the host alive is ``degraded``: the host
answers, its instances can be removed by the controller; an sshd restart is not a failure), and
one bad look is not enough either: a host is ``suspect`` until every look for ``grace`` seconds
found it down; a single good look in between starts the count again (hysteresis - a flapping
link never triggers a failover).

:func:`assess` is pure (looks in, verdicts out) so the rules are tested without a platform.
"""

from __future__ import annotations

import socket

STATUSES = ("healthy", "degraded", "suspect", "failed", "fenced")


def assess(history, grace, fenced=None):
    """Verdicts from looks.

    ``history``: {host: [(t, dataplane_up, ssh_up), ...]} in time order (seconds, monotonic);
    ``grace``: seconds both witnesses must have said "down" in every look, without a break;
    ``fenced``: {host: fence mark or None}.

    Returns {host: {status, dataplane, ssh, down_for, flaps, looks}}; ``down_for`` is how long
    (s) the host has been down in every look (0 when the last look found it up).
    """
    out = {}
    for host, looks in history.items():
        if not looks:
            raise ValueError("host %s: no look at it" % host)
        t_last, dp, ssh = looks[-1]
        down_since = None
        for t, d, s in reversed(looks):
            if d or s:
                break
            down_since = t
        down_for = 0.0 if down_since is None else round(t_last - down_since, 3)
        states = [(bool(d), bool(s)) for _t, d, s in looks]
        flaps = sum(1 for a, b in zip(states, states[1:]) if a != b)
        if (fenced or {}).get(host):
            status = "fenced"
        elif dp and ssh:
            status = "healthy"
        elif dp or ssh:
            status = "degraded"
        elif down_for >= grace:
            status = "failed"
        else:
            status = "suspect"
        out[host] = {"status": status, "dataplane": bool(dp), "ssh": bool(ssh), "down_for": down_for, "flaps": flaps,
                     "looks": len(looks)}
    return out


def dataplane_up(trunk):
    """The data-plane witness from a trunk end (_trunk.read): BFD forwarding when BFD is on,
    else the link. None (no such port) counts as down."""
    if not trunk:
        return False
    if trunk["bfd"]["enabled"]:
        return bool(trunk["bfd"]["forwarding"])
    return trunk.get("link_state") == "up"


def ssh_answers(address, port=22, timeout=1.0):
    """The management witness: the host's SSH server accepts a connection and greets (``SSH-``)
    within ``timeout`` seconds. It says nothing of credentials - Ansible's own connection does."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
