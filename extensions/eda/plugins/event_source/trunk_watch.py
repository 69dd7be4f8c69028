# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""flowstream.platform.trunk_watch - an Event-Driven Ansible event source: the module hosts of a
Flowstream platform, watched from the switch through their two witnesses (the BFD session on the
switch's end of each trunk, and the host's SSH greeting), with the same hysteresis as
flowstream.platform.failure_info. It puts an event on the queue whenever a host's status changes:

    {"flowstream": {"type": "host_status", "host": "mh2", "status": "failed", "previous": "suspect",
                    "down_for": 3.02, "switch": "sw1", "trunk": "fsl-mh2-tr", "diagnostic": "...",
                    "ssh": false, "dataplane": false, "time": "2026-12-04T12:00:00Z"}}

Statuses: healthy, degraded, suspect, isolated, failed, fenced (docs/failover.md). At start it
reports every host that is not healthy. When every trunk is down at once the switch is at fault,
not the hosts: nobody is failed or isolated then (``why`` says so). A switch that should carry
chains and holds no chain flow (its flow table lost: ovs-vswitchd restarted) is an event too:

    {"flowstream": {"type": "switch_flows", "switch": "sw1", "status": "missing", "chain_flows": 0, ...}}

(and ``present`` when they are back). The rulebook extensions/eda/rulebooks/failover.yml runs
flowstream.platform.failover on ``failed``, ``isolated`` and ``missing``.

Arguments:

``inventory``  the platform's inventory (e.g. ``inventory/lab``): the switches' bridges, and
               each module host's trunk and management address, read once at start with
               ``ansible-inventory --list``; or, instead,
``bridge`` and ``hosts``  the switch's bridge and [{name, trunk, address}] (one switch; with
               ``openflow_target`` and ``chains``, how many chains it carries).
``ovsdb``      the switch's OVSDB (``ovs-vsctl --db``); the local one when left out.
``grace``      seconds both witnesses must find a host down, in every look (default 3).
``interval``   seconds between two looks (default 0.5).
``ssh_port``, ``ssh_timeout``   the management witness (default 22, 1.0 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from ansible_collections.flowstream.platform.plugins.module_utils import _failure, _hostvars, _trunk
    from ansible_collections.flowstream.platform.plugins.module_utils._deploy import CHAINS_COOKIE, CHAINS_MASK
    from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError
    from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB
except ImportError:  # ansible-rulebook loads this file by path: put the collection's root on sys.path
    def _root(here):
        """The directory holding ansible_collections/flowstream/platform (an installed collection's
        root, or a checkout's collections/ directory)."""
        while here != os.path.dirname(here):
            for top in (here, os.path.join(here, "collections")):
                if os.path.isdir(os.path.join(top, "ansible_collections", "flowstream", "platform")):
                    return top
            here = os.path.dirname(here)
        raise ImportError("trunk_watch: the flowstream.platform collection is not above %s" % __file__)

    sys.path.insert(0, _root(os.path.dirname(os.path.abspath(__file__))))
    from ansible_collections.flowstream.platform.plugins.module_utils import _failure, _hostvars, _trunk
    from ansible_collections.flowstream.platform.plugins.module_utils._deploy import CHAINS_COOKIE, CHAINS_MASK
    from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import Ofctl, OfctlError
    from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB


def _plain(value):
    """ansible-inventory's JSON with its markers taken off (ansible-core 2.19 writes a value from
    the description as {"__ansible_unsafe": value})."""
    if isinstance(value, dict):
        if len(value) == 1 and "__ansible_unsafe" in value:
            return _plain(value["__ansible_unsafe"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def platform_from_inventory(inventory, run=subprocess.run):
    """{switch: {"bridge", "openflow_target", "chains" (how many present chains it carries),
    "hosts": [{name, trunk, address}]}} from ``ansible-inventory --list``."""
    out = run(["ansible-inventory", "-i", inventory, "--list"], capture_output=True, text=True, check=True).stdout
    data = _plain(json.loads(out))
    hostvars = (data.get("_meta") or {}).get("hostvars") or {}

    def members(group):
        found = list((data.get(group) or {}).get("hosts") or [])
        for child in (data.get(group) or {}).get("children") or []:
            found += members(child)
        return found

    groups = {g: members(g) for g in (_hostvars.GROUP_SWITCHES, _hostvars.GROUP_MODULE_HOSTS)}
    out = {}
    for sw in groups[_hostvars.GROUP_SWITCHES]:
        hv = hostvars[sw]
        chains = [c for c in hv.get("flowstream_chains") or [] if isinstance(c, dict) and c.get("state", "present") != "absent"]
        out[sw] = {"bridge": hv.get("flowstream_bridge"), "openflow_target": hv.get("flowstream_openflow_target"),
                   "chains": sum(1 for c in chains if c.get("switch") in (None, sw)),
                   "hosts": _hostvars.switch_module_hosts(hostvars, groups, sw)}
    return out


class Watch:
    """Looks at the hosts of one switch and says which statuses changed (pure apart from ``look``)."""

    def __init__(self, switch, bridge, hosts, grace=3.0, interval=0.5, look=None, chains=0):
        self.switch, self.bridge, self.hosts, self.chains = switch, bridge, list(hosts), chains
        self.flows = None  # "missing" / "present" once looked at
        self.grace, self.interval = float(grace), float(interval)
        self.keep = int(self.grace / self.interval) + 3  # looks kept per host: the grace and a margin
        self.history = {h["name"]: [] for h in self.hosts}
        self.status = {h["name"]: None for h in self.hosts}
        self.look = look

    def step(self, now, trunks, ssh, chain_flows=None):
        """One look (``trunks``: {port: _trunk.read() or None}, ``ssh``: {host: bool},
        ``chain_flows``: the switch's flows in the chains' cookie space) -> events."""
        for h in self.hosts:
            looks = self.history[h["name"]]
            looks.append((now, _failure.dataplane_up(trunks.get(h["trunk"])), bool(ssh.get(h["name"]))))
            del looks[:-self.keep]
        fenced = {h["name"]: (trunks.get(h["trunk"]) or {}).get("fence") for h in self.hosts}
        verdicts = _failure.assess(self.history, self.grace, fenced)
        _failure.switch_at_fault(verdicts)
        events = []
        for h in self.hosts:
            v = verdicts[h["name"]]
            before = self.status[h["name"]]
            if v["status"] != before and not (before is None and v["status"] == "healthy"):
                trunk = trunks.get(h["trunk"]) or {}
                events.append({"flowstream": {
                    "type": "host_status", "host": h["name"], "status": v["status"], "previous": before,
                    "down_for": v["down_for"], "switch": self.switch, "trunk": h["trunk"], "why": v.get("why"),
                    "diagnostic": (trunk.get("bfd") or {}).get("diagnostic"), "ssh": v["ssh"], "dataplane": v["dataplane"],
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})
            self.status[h["name"]] = v["status"]
        if chain_flows is not None and self.chains:
            flows = "missing" if chain_flows == 0 else "present"
            if flows != self.flows and not (self.flows is None and flows == "present"):
                events.append({"flowstream": {"type": "switch_flows", "switch": self.switch, "status": flows,
                                              "previous": self.flows, "chain_flows": chain_flows,
                                              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})
            self.flows = flows
        return events


def _looker(ovs, ofctl, hosts, ssh_port, ssh_timeout, pool):
    ports = [h["trunk"] for h in hosts]

    def look():
        answers = dict(zip([h["name"] for h in hosts],
                           pool.map(lambda h: _failure.ssh_answers(h["address"], ssh_port, ssh_timeout), hosts)))
        try:
            flows = len(ofctl.dump_flows(cookie=CHAINS_COOKIE, cookie_mask=CHAINS_MASK))
        except OfctlError:
            flows = None  # the switch does not answer OpenFlow: its trunks say the rest
        return _trunk.read_all(ovs, ports), answers, flows
    return look


async def main(queue, args):
    """The event source's entry point (ansible-rulebook)."""
    if args.get("inventory"):
        platform = platform_from_inventory(args["inventory"])
    else:
        platform = {args.get("switch", "switch"): {"bridge": args["bridge"], "hosts": args["hosts"],
                                                   "openflow_target": args.get("openflow_target"), "chains": int(args.get("chains", 0))}}
    ovs = OVSDB(db=args.get("ovsdb"))
    grace, interval = float(args.get("grace", 3)), float(args.get("interval", 0.5))
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=16) as pool:
        watches = [Watch(sw, spec["bridge"], spec["hosts"], grace, interval,
                         _looker(ovs, Ofctl(spec.get("openflow_target") or spec["bridge"], timeout=5), spec["hosts"],
                                 int(args.get("ssh_port", 22)), float(args.get("ssh_timeout", 1.0)), pool),
                         chains=spec.get("chains", 0))
                   for sw, spec in sorted(platform.items()) if spec["hosts"]]
        while True:
            started = time.monotonic()
            for watch in watches:
                trunks, ssh, flows = await loop.run_in_executor(None, watch.look)
                for event in watch.step(time.monotonic(), trunks, ssh, flows):
                    await queue.put(event)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


if __name__ == "__main__":
    # by hand: python trunk_watch.py inventory/lab  (prints the events as they come)

    class _Print:
        async def put(self, event):
            print(json.dumps(event), flush=True)

    asyncio.run(main(_Print(), {"inventory": sys.argv[1] if len(sys.argv) > 1 else "inventory/lab"}))
