# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Knowing a module host is dead: two independent witnesses, and hysteresis.

A host is **failed** when BOTH witnesses say so for a whole grace period:

* the data plane - its trunk's BFD session on the switch's end is not forwarding (or, on a trunk
  without BFD, the switch's trunk link is down);
* the management plane - its SSH server does not answer on its management address.

One witness alone is not a failure: a host whose trunk is down while it answers over SSH is
``isolated`` once the trunk has been down for the whole grace - its chains are black-holed, so a
failover fences it and re-places its instances like a failed host's, but the controller can
still reach it and removes its old copies at once; a host that stops answering SSH while its
trunk forwards is ``degraded`` (traffic flows; an sshd restart is no failover). One bad look is
not enough either: a host is ``suspect`` until every look for ``grace`` seconds found it down; a
single good look in between starts the count again (hysteresis - a flapping link never triggers
a failover).

:func:`assess` is pure (looks in, verdicts out) so the rules are tested without a platform.
"""

from __future__ import annotations

import socket

STATUSES = ("healthy", "degraded", "suspect", "isolated", "failed", "fenced", "powered_off")
#: statuses of hosts the platform took out itself (the fence mark on the switch's trunk port)
FENCED = ("fenced", "powered_off")
#: the statuses a failover acts on (fences and re-places)
FAILOVER = ("failed", "isolated")


def assess(history, grace, fenced=None):
    """Verdicts from looks.

    ``history``: {host: [(t, dataplane_up, ssh_up), ...]} in time order (seconds, monotonic);
    ``grace``: seconds both witnesses must have said "down" in every look, without a break;
    ``fenced``: {host: fence mark or None}.

    Returns {host: {status, dataplane, ssh, down_for, flaps, looks}}; ``down_for`` is how long
    (s) the host has been down in every look (0 when the last look found it up) - for an isolated
    or suspect host with SSH up, how long its data plane has been.
    """
    out = {}
    for host, looks in history.items():
        if not looks:
            raise ValueError("host %s: no look at it" % host)
        t_last, dp, ssh = looks[-1]
        down_for = _down_for(looks, lambda d, s: not d and not s)
        dp_down_for = _down_for(looks, lambda d, s: not d)
        states = [(bool(d), bool(s)) for _t, d, s in looks]
        flaps = sum(1 for a, b in zip(states, states[1:]) if a != b)
        mark = (fenced or {}).get(host)
        if mark:
            status = "powered_off" if isinstance(mark, dict) and mark.get("state") == "powered_off" else "fenced"
        elif dp and ssh:
            status = "healthy"
        elif dp:
            status = "degraded"
        elif ssh:
            status, down_for = ("isolated" if dp_down_for >= grace else "suspect"), dp_down_for
        elif down_for >= grace:
            status = "failed"
        else:
            status = "suspect"
        out[host] = {"status": status, "dataplane": bool(dp), "ssh": bool(ssh), "down_for": down_for, "flaps": flaps,
                     "looks": len(looks)}
    return out


def switch_at_fault(verdicts):
    """When EVERY host that is not fenced (two or more) has its data plane down at once, the
    fault is the switch's (restarted, its BFD sessions starting again) or the witness's, not the
    hosts': nobody is failed or isolated then - they are ``suspect``, and the verdicts say why.
    A failover never fences a whole platform. Returns True when it relabelled."""
    live = [v for v in verdicts.values() if v["status"] not in FENCED]
    if len(live) < 2 or any(v["dataplane"] for v in live):
        return False
    for v in live:
        if v["status"] in FAILOVER:
            v["status"] = "suspect"
        v["why"] = "every trunk is down at once: the switch is at fault, not the hosts"
    return True


def _down_for(looks, down):
    """Seconds from the first of the trailing looks for which ``down(dataplane, ssh)`` holds to
    the last look (0.0 when the last look does not hold)."""
    since = None
    for t, d, s in reversed(looks):
        if not down(d, s):
            break
        since = t
    return 0.0 if since is None else round(looks[-1][0] - since, 3)


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
