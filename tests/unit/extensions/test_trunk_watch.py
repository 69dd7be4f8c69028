# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EDA event source trunk_watch: an event per change of a host's status, with hysteresis;
the platform read from ansible-inventory's output."""

from __future__ import annotations

import asyncio
import json

from ansible_collections.flowstream.platform.extensions.eda.plugins.event_source import trunk_watch
from ansible_collections.flowstream.platform.plugins.module_utils import _trunk

HOSTS = [{"name": "mh1", "trunk": "tr1", "address": "198.18.0.11"}, {"name": "mh2", "trunk": "tr2", "address": "198.18.0.12"}]


def trunk(forwarding, fence=None):
    status = {"state": "up" if forwarding else "down", "forwarding": "true" if forwarding else "false"}
    if not forwarding:
        status["diagnostic"] = "Control Detection Time Expired"
    return {"bfd": _trunk.bfd_summary({"enable": "true", "min_rx": "100"}, status), "link_state": "up", "fence": fence}


def test_an_event_per_change_and_none_while_nothing_changes():
    watch = trunk_watch.Watch("sw1", "fsl-sw", HOSTS, grace=1.0, interval=0.5)
    up = {"tr1": trunk(True), "tr2": trunk(True)}
    assert watch.step(0.0, up, {"mh1": True, "mh2": True}) == []  # healthy at start: nothing to say
    down = dict(up, tr2=trunk(False))
    statuses = []
    for i in range(1, 6):
        statuses += [(e["flowstream"]["host"], e["flowstream"]["previous"], e["flowstream"]["status"])
                     for e in watch.step(i * 0.5, down, {"mh1": True, "mh2": False})]
    # suspect at once, failed once every look for the grace (1 s) found it down - and said once
    assert statuses == [("mh2", "healthy", "suspect"), ("mh2", "suspect", "failed")]
    fenced = dict(down, tr2=trunk(False, fence={"state": "fenced", "since": "T", "reason": "failed"}))
    (event,) = watch.step(3.0, fenced, {"mh1": True, "mh2": False})
    assert (event["flowstream"]["status"], event["flowstream"]["diagnostic"], event["flowstream"]["switch"]) == \
        ("fenced", "Control Detection Time Expired", "sw1")


def test_a_flap_shorter_than_the_grace_never_fails_a_host():
    watch = trunk_watch.Watch("sw1", "fsl-sw", HOSTS, grace=1.0, interval=0.5)
    up = {"tr1": trunk(True), "tr2": trunk(True)}
    down = dict(up, tr2=trunk(False))
    seen = []
    for i, (trunks, ssh) in enumerate([(up, True), (down, False), (down, False), (up, True), (down, False), (down, False), (up, True)]):
        seen += [e["flowstream"]["status"] for e in watch.step(i * 0.5, trunks, {"mh1": True, "mh2": ssh})]
    assert "failed" not in seen and seen == ["suspect", "healthy", "suspect", "healthy"]


def test_a_host_unhealthy_at_start_is_reported_at_once():
    watch = trunk_watch.Watch("sw1", "fsl-sw", HOSTS, grace=3.0)
    events = watch.step(0.0, {"tr1": trunk(True), "tr2": None}, {"mh1": True, "mh2": True})
    assert [(e["flowstream"]["host"], e["flowstream"]["previous"], e["flowstream"]["status"]) for e in events] == \
        [("mh2", None, "suspect")]


def test_the_platform_comes_from_ansible_inventory():
    listing = {"_meta": {"hostvars": {
        "sw1": {"flowstream_bridge": "fsl-sw", "flowstream_openflow_target": "unix:/run/openvswitch/fsl-sw.mgmt",
                "flowstream_chains": [{"name": "web", "switch": "sw1"}, {"name": "old", "state": "absent"}, {"name": "x", "switch": "sw2"}]},
        # ansible-core 2.19 marks what came from the description as unsafe in its JSON
        "mh1": {"flowstream_switch": {"__ansible_unsafe": "sw1"}, "flowstream_trunk": {"__ansible_unsafe": "fsl-mh1-tr"},
                "flowstream_management_address": "198.18.0.11"},
        "spare1": {"flowstream_switch": "sw1", "flowstream_trunk": "fsl-spare1-tr", "ansible_host": "198.18.0.21"}}},
        "flowstream_switches": {"hosts": ["sw1"]},
        "flowstream_module_hosts": {"hosts": ["mh1"], "children": ["flowstream_spares"]},
        "flowstream_spares": {"hosts": ["spare1"]}}

    class Done:
        stdout = json.dumps(listing)

    calls = []
    got = trunk_watch.platform_from_inventory("inventory/lab", run=lambda argv, **kw: calls.append(argv) or Done())
    assert calls == [["ansible-inventory", "-i", "inventory/lab", "--list"]]
    assert got == {"sw1": {"bridge": "fsl-sw", "openflow_target": "unix:/run/openvswitch/fsl-sw.mgmt", "chains": 1, "hosts": [
        {"name": "mh1", "trunk": "fsl-mh1-tr", "address": "198.18.0.11"},
        {"name": "spare1", "trunk": "fsl-spare1-tr", "address": "198.18.0.21"}]}}


def test_main_puts_the_events_on_the_queue(monkeypatch):
    looks = iter([({"tr1": trunk(True), "tr2": trunk(False)}, {"mh1": True, "mh2": False})] * 4)
    monkeypatch.setattr(trunk_watch, "_looker", lambda *a: lambda: next(looks) + (None,))

    async def run():
        queue = asyncio.Queue()
        task = asyncio.create_task(trunk_watch.main(queue, {"bridge": "fsl-sw", "hosts": HOSTS, "grace": 0.1, "interval": 0.05}))
        first, second = await asyncio.wait_for(queue.get(), 5), await asyncio.wait_for(queue.get(), 5)
        task.cancel()
        return [first["flowstream"]["status"], second["flowstream"]["status"]]

    assert asyncio.run(run()) == ["suspect", "failed"]


def test_a_switch_that_lost_its_chain_flows_is_an_event_and_so_is_their_return():
    watch = trunk_watch.Watch("sw1", "fsl-sw", HOSTS, grace=1.0, chains=2)
    up = {"tr1": trunk(True), "tr2": trunk(True)}
    ssh = {"mh1": True, "mh2": True}
    assert watch.step(0.0, up, ssh, chain_flows=40) == []
    (gone,) = watch.step(0.5, up, ssh, chain_flows=0)
    assert (gone["flowstream"]["type"], gone["flowstream"]["status"], gone["flowstream"]["previous"]) == ("switch_flows", "missing", "present")
    assert watch.step(1.0, up, ssh, chain_flows=0) == []
    (back,) = watch.step(1.5, up, ssh, chain_flows=40)
    assert back["flowstream"]["status"] == "present"
    # a switch with no chain to carry never misses its flows; an unanswered dump says nothing
    idle = trunk_watch.Watch("sw1", "fsl-sw", HOSTS, chains=0)
    assert idle.step(0.0, up, ssh, chain_flows=0) == [] and watch.step(2.0, up, ssh, chain_flows=None) == []
