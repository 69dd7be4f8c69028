# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy-chain's controller side: chains + the platform + the hosts' reports -> what to do.

Everything is validated (chains, overlaps, capacity) before a plan is returned: a bad request
fails here, before any host or switch is touched. Pure: no I/O.
"""

from __future__ import annotations

from ansible_collections.flowstream.platform.plugins.module_utils import _planner
from ansible_collections.flowstream.platform.plugins.module_utils._chains import ChainError, match_text, validate
from ansible_collections.flowstream.platform.plugins.module_utils._compiler import check_overlaps, compile_chain

CHAINS_COOKIE = 0xF5C0000000000000
CHAINS_MASK = 0xFFFF000000000000


class DeployError(Exception):
    """Names the chain, step and field (ChainError, PlanError) or the platform piece at fault."""


def build_plan(chains, catalogue, hosts, switches, blackboxes):
    """``hosts``: {name: {capacity, kinds, spare, in_service, trunk, switch, host_bridge, report}};
    ``switches``: {name: {uplinks, openflow_target, openflow_version, ssl}};
    ``blackboxes``: {name: {switch, ports}}.
    Returns {"hosts": {h: {"install": [...], "remove_first": [...], "remove": [...], "cookie", "cookie_mask",
    "flows": [...]}},
    "switches": {s: {"cookie", "cookie_mask", "flows", "chains": {...}, "absent": [...]}}, "instances": {...},
    "chains": {...}, "why": [...]}. A host's ``flows`` are its bridge's share of host-local
    chaining (consecutive steps on that host, see _compiler), under the same cookie range.
    ``remove_first``: instances replaced under the same id on the same host, removed before the
    install; ``remove``: the rest, removed after the switches stopped sending them traffic."""
    try:
        valid = validate(chains, catalogue, {s: {"uplinks": v.get("uplinks") or {}} for s, v in switches.items()}, blackboxes)
        check_overlaps(valid)
        plan = _planner.plan(valid, hosts)
    except (ChainError, _planner.PlanError) as exc:
        raise DeployError(str(exc)) from exc
    by_chain = {}
    for inst, where in plan["instances"].items():
        by_chain.setdefault(where["chain"], {})[inst] = where
    out_hosts = {h: {"install": [], "remove_first": [], "remove": [], "cookie": "0x%016x" % CHAINS_COOKIE, "cookie_mask": "0x%016x" % CHAINS_MASK,
                     "flows": []} for h in hosts}
    out_switches = {s: {"cookie": "0x%016x" % CHAINS_COOKIE, "cookie_mask": "0x%016x" % CHAINS_MASK, "flows": [],
                        "chains": {}, "absent": []} for s in switches}
    chains_out = {}
    steps = {(c["name"], s["name"]): (c, s) for c in valid if c["state"] == "present" for s in c["steps"]}
    for inst, where in sorted(plan["instances"].items()):
        chain, step = steps[(where["chain"], where["step"])]
        item = {"instance": inst, "kind": step["kind"], "type": step["type"], "params": step["params"],
                "vlans": where["vlans"], "chain": chain["name"], "step": step["name"], "new": where.get("new", False),
                "reason": where.get("reason", "")}
        if step["kind"] == "vm":
            item["vm"] = {k: v for k, v in (step.get("vm") or {}).items() if k in ("image", "memory", "vcpus")}
        out_hosts[where["host"]]["install"].append(item)
    for inst, gone in sorted(plan.get("remove", {}).items()):
        entry = {"instance": inst, "reason": gone.get("reason", "")}
        if plan["instances"].get(inst, {}).get("host") == gone["host"]:
            # the id is replaced on the same host (a step inserted before it, a kind change): the id
            # names the ports, namespace and domain there, so the old one goes before the new is made
            out_hosts[gone["host"]]["remove_first"].append(entry)
        else:
            out_hosts[gone["host"]]["remove"].append(entry)
    for chain in valid:
        if chain["state"] == "absent":
            for switch in out_switches.values():
                switch["absent"].append({"chain": chain["name"], "cookie": "0x%016x" % chain["cookie"]})
            chains_out[chain["name"]] = {"state": "absent", "cookie": "0x%016x" % chain["cookie"]}
            continue
        switch = switches[chain["switch"]]
        compiled = compile_chain(chain, by_chain.get(chain["name"], {}), switch.get("uplinks") or {}, blackboxes)
        flows = _flow_items(chain, compiled["flows"])
        for host, host_flows in compiled["hosts"].items():
            out_hosts[host]["flows"].extend(_flow_items(chain, host_flows))
        out_switches[chain["switch"]]["chains"][chain["name"]] = {"cookie": "0x%016x" % chain["cookie"], "flow_count": len(flows)}
        out_switches[chain["switch"]]["flows"].extend(flows)
        chains_out[chain["name"]] = {
            "state": "present", "switch": chain["switch"], "cookie": "0x%016x" % chain["cookie"],
            "from": chain["from"], "to": chain["to"], "match": match_text(chain["match"]), "flow_count": len(flows),
            "path": compiled["path"], "host_flow_count": {h: len(f) for h, f in compiled["hosts"].items()},
            "placement": {i: {"host": w["host"], "step": w["step"], "vlans": w["vlans"]} for i, w in sorted(by_chain.get(chain["name"], {}).items())},
        }
    return {"hosts": out_hosts, "switches": out_switches, "chains": chains_out,
            "instances": plan["instances"], "moves": plan.get("moves", []),
            "capacity": plan.get("hosts", {})}


def _flow_items(chain, flows):
    return [{"cookie": "0x%016x" % chain["cookie"], "table": f["table"], "priority": f["priority"], "match": f["match"],
             "actions": f["actions"]} for f in flows]


def platform_from_vars(hostvars, groups):
    """The platform as the inventory plugin describes it: (hosts, switches, blackboxes)."""
    hosts, switches, boxes = {}, {}, {}
    for name in groups.get("flowstream_module_hosts", []):
        hv = hostvars[name]
        report = hv.get("flowstream_host_report")
        if isinstance(report, dict) and (report.get("failed") or report.get("unreachable")):
            report = None
        hosts[name] = {"capacity": dict(hv.get("flowstream_capacity") or {}), "kinds": list(hv.get("flowstream_kinds") or []),
                       "spare": bool(hv.get("flowstream_spare")), "in_service": hv.get("flowstream_in_service", True) is not False,
                       "trunk": hv.get("flowstream_trunk"), "switch": hv.get("flowstream_switch"),
                       "host_bridge": hv.get("flowstream_host_bridge", "fs-host"), "report": report}
    for name in groups.get("flowstream_switches", []):
        hv = hostvars[name]
        switches[name] = {"uplinks": dict(hv.get("flowstream_uplinks") or {}), "openflow_target": hv.get("flowstream_openflow_target"),
                          "bridge": hv.get("flowstream_bridge"), "ssl": dict(hv.get("flowstream_ssl") or {})}
    for name in groups.get("flowstream_blackboxes", []):
        hv = hostvars[name]
        boxes[name] = {"switch": hv.get("flowstream_switch"), "ports": dict(hv.get("flowstream_ports") or {})}
    return hosts, switches, boxes
