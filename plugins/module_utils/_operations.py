# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an operation proves with traffic, and how it says so (pure: no I/O).

An operation (migrate-module, drain-host, and every later one) runs the traffic probe through
the chains it touches for the whole change (:func:`probe_groups`: one group per chain, on the
chain's own ports), records when each wave of its plan started and ended, and judges the probe
per wave and chain (:func:`move_figures`): every move carries the packets sent, lost, reordered
and duplicated while its wave ran, and the blackout its chain's flows saw.
"""

from __future__ import annotations

BASE_SOURCE_PORT = 20000
SOURCE_PORT_BLOCK = 100     # each chain's source ports start on a block of 100 (readable in a capture)


def probe_groups(chains, names=None, max_rate=None):
    """The probe's groups for the present chains with a ``verify`` section (all, or those named):
    each on its chain's ports (``verify.base_port``), its own source ports, its rate (capped).

    Source ports are given in the order of the chains, each chain the blocks of 100 its flows need,
    from 20000 up; past 65535 they start again at 20000 (a chain is still told apart by its own
    destination port). A chain's source ports do not depend on which chains a run names."""
    out = []
    verified = [c for c in chains or [] if c.get("state", "present") == "present" and c.get("verify")]
    port = BASE_SOURCE_PORT
    for chain in verified:
        verify = chain["verify"]
        flows = int(verify.get("flows", 16))
        if port + flows - 1 > 65535:
            port = BASE_SOURCE_PORT
        source_port = port
        port += -(-max(flows, 1) // SOURCE_PORT_BLOCK) * SOURCE_PORT_BLOCK
        if names is not None and chain["name"] not in names:
            continue
        rate = float(verify.get("rate", 1000))
        if max_rate:
            rate = min(rate, float(max_rate))
        out.append({"name": chain["name"], "flows": flows, "rate": rate,
                    "destination_port": int(verify["base_port"]), "source_port": source_port, "vary": "sport"})
    return out


def affected_chains(plan):
    """The chains a plan's waves touch: those of moved, installed and removed instances."""
    names = set()
    for wave in (plan or {}).get("waves") or []:
        for move in wave.get("moves") or []:
            names.add(move["chain"])
        for host in (wave.get("hosts") or {}).values():
            for item in host.get("install") or []:
                if item.get("new") or item.get("carry_from"):
                    names.add(item["chain"])
            for item in host.get("remove") or []:
                if item.get("chain"):
                    names.add(item["chain"])
    return sorted(names)


def wave_windows(times):
    """[{name, start, end}] for the probe, from the waves' recorded times (epoch seconds)."""
    return [{"name": name, "start": float(t["started"]), "end": float(t["ended"])}
            for name, t in sorted((times or {}).items(), key=lambda kv: float(kv[1].get("started", 0))) if "ended" in t]


def hold_results(registered):
    """{instance: hold} from registered processing_module results (one per host; a run for
    several instances, or loops): how each new copy of a moving instance let its held output go."""
    out = {}
    for result in registered or []:
        if not isinstance(result, dict):
            continue
        for item in result.get("converged") or []:
            if isinstance(item, dict) and item.get("hold"):
                out[item["instance"]] = item["hold"]
        for item in result.get("results") or [result]:
            if isinstance(item, dict) and item.get("hold") and isinstance(item.get("item"), dict):
                out[item["item"]["instance"]] = item["hold"]
    return out


REQUEST_KEYS = ("instance", "kind", "type", "params", "vlans", "chain", "step", "vm")


def instance_requests(install, exported=None, hold=True):
    """The ``instances`` of one processing_module run from a plan's ``install`` entries of a
    host: each entry's own options; a moving instance's ``carried_state`` from ``exported``
    (registered module_host_info results with ``export_state``, one per host - where the old
    copies run); its ``hold`` when ``hold``. A moving instance whose old copy's host did not
    export it is an error (its new copy would start without its state)."""
    states = {}
    for result in exported or []:
        if isinstance(result, dict) and isinstance(result.get("exported_state"), dict):
            states.update(result["exported_state"])
    out = []
    for entry in install or []:
        request = {k: entry[k] for k in REQUEST_KEYS if entry.get(k) is not None}
        if entry.get("carry_from"):
            if entry["instance"] not in states:
                raise ValueError("instance %s carries its state from %s, but no state was read there for it"
                                 % (entry["instance"], entry["carry_from"]))
            if states[entry["instance"]] is not None:
                request["carried_state"] = states[entry["instance"]]
        if hold and entry.get("hold"):
            request["hold"] = entry["hold"]
        out.append(request)
    return out


def order_of(hold):
    """How a move kept order: ``marker`` (both directions released by their markers: in order),
    else what released a direction first otherwise (``timeout``: nothing lost, order not kept
    for sure), None without a hold (a VM, a Click or operator's process type)."""
    if not hold:
        return None
    ways = [d.get("released_by") or "holding" for d in (hold.get("directions") or {}).values()]
    others = [w for w in ways if w != "marker"]
    return others[0] if others else "marker"


def move_figures(probe, plan, times, vm_results=None, holds=None):
    """One row per move of ``plan``: where from and to, how, how long its wave took, and what its
    chain's traffic saw meanwhile (the probe's window of the wave, the chain's group); how the
    new copy's hold kept order (``order``, ``held_ms``)."""
    windows = (probe or {}).get("windows") or {}
    vm_results = vm_results or {}
    holds = holds or {}
    rows = []
    for wave in (plan or {}).get("waves") or []:
        t = (times or {}).get(wave["name"]) or {}
        window = windows.get(wave["name"]) or {}
        for move in wave.get("moves") or []:
            figures = (window.get("groups") or {}).get(move["chain"])
            row = {"instance": move["instance"], "chain": move["chain"], "step": move["step"], "kind": move["kind"],
                   "from": move["from"], "to": move["to"], "method": move["method"], "how": move["how"], "wave": wave["name"],
                   "duration_s": round(float(t["ended"]) - float(t["started"]), 2) if "ended" in t and "started" in t else None,
                   "probed": figures is not None}
            for key in ("sent", "lost", "reordered", "duplicated", "blackout_ms", "max_gap_ms", "lost_bursts"):
                row[key] = (figures or {}).get(key)
            vm = vm_results.get(move["instance"]) or {}
            if vm:
                row["downtime_ms"] = vm.get("downtime_ms")
            hold = holds.get(move["instance"])
            row["order"] = order_of(hold)
            row["held_ms"] = max([d.get("held_ms") or 0 for d in (hold or {}).get("directions", {}).values()] or [None]) if hold else None
            rows.append(row)
    return rows


def failover_report(probe, plan, times, started, failed):
    """One row per chain a failover restored: the instances it placed anew (id -> host), what the
    chain's traffic saw while the change ran (the probe's windows of the waves: sent, lost,
    reordered, duplicated, blackout), and ``restored_s`` - seconds from the failover's start
    (``started``, epoch) until the chain carried traffic again (the end of the outage the probe saw
    at the start of the change; the change's start when it saw none; None without a probe).
    A chain the plan held (capacity short, policy restore_by_priority) has a row too, with
    ``held``: its restore_priority, fail_mode, the step that did not fit and why - it is not
    restored."""
    windows = (probe or {}).get("windows") or {}
    placed = {}
    for wave in (plan or {}).get("waves") or []:
        for host, work in sorted((wave.get("hosts") or {}).items()):
            for item in work.get("install") or []:
                if item.get("new") or item.get("carry_from"):
                    placed.setdefault(item["chain"], {})[item["instance"]] = host
        for move in wave.get("moves") or []:
            placed.setdefault(move["chain"], {})[move["instance"]] = move["to"]
    rows = []
    for chain in affected_chains(plan):
        row = {"chain": chain, "failed_hosts": list(failed or []), "placed": placed.get(chain, {}), "probed": False,
               "restored_s": None, "held": None}
        for key in ("sent", "lost", "reordered", "duplicated", "blackout_ms"):
            row[key] = None
        for wave in (plan or {}).get("waves") or []:
            figures = ((windows.get(wave["name"]) or {}).get("groups") or {}).get(chain)
            t = (times or {}).get(wave["name"]) or {}
            if figures is None:
                continue
            row["probed"] = True
            for key in ("sent", "lost", "reordered", "duplicated"):
                row[key] = (row[key] or 0) + (figures.get(key) or 0)
            row["blackout_ms"] = max(row["blackout_ms"] or 0, figures.get("blackout_ms") or 0)
            if row["restored_s"] is None and "started" in t and started is not None:
                outage = [b for b in figures.get("lost_bursts") or [] if b["after_ms"] <= 50]
                back = float(t["started"]) + ((outage[0]["after_ms"] + outage[0]["ms"]) / 1000.0 if outage else 0.0)
                row["restored_s"] = round(back - float(started), 2)
        rows.append(row)
    for chain, held in sorted(((plan or {}).get("held") or {}).items()):
        row = {"chain": chain, "failed_hosts": list(failed or []), "placed": {}, "probed": False, "restored_s": None,
               "held": {k: held.get(k) for k in ("restore_priority", "fail_mode", "step", "reason", "missing")}}
        for key in ("sent", "lost", "reordered", "duplicated", "blackout_ms"):
            row[key] = None
        rows.append(row)
    return rows


def failover_table(rows):
    """The failover's rows as lines of a table."""
    lines = ["chain    restored(s)    sent   lost  reord   dup  blackout(ms)  placed"]
    for r in rows:
        lines.append("%-8s %11s %7s %6s %6s %5s %13s  %s" % (
            r["chain"], _cell(r["restored_s"], "%.2f"), _cell(r["sent"]), _cell(r["lost"]), _cell(r["reordered"]),
            _cell(r["duplicated"]), _cell(r["blackout_ms"], "%.1f"),
            ", ".join("%s on %s" % kv for kv in sorted(r["placed"].items())) or "-"))
        held = r.get("held")
        if held:
            lines[-1] = "%-8s NOT RESTORED (restore_priority %s; fail_mode %s: its traffic is %s): step %s: %s" % (
                r["chain"], held["restore_priority"], held["fail_mode"],
                "sent past its steps" if held["fail_mode"] == "open" else "dropped", held["step"], held["reason"])
    return lines


def _cell(value, fmt="%d"):
    return "-" if value is None else fmt % value


def moves_table(rows):
    """The rows as lines of a table (the job log's last word on an operation)."""
    lines = ["instance   chain    from   to     how                 secs    sent   lost  reord   dup  blackout(ms)  order"]
    for r in rows:
        lines.append("%-10s %-8s %-6s %-6s %-18s %6s %7s %6s %6s %5s %12s  %s" % (
            r["instance"], r["chain"], r["from"], r["to"], r["how"], _cell(r["duration_s"], "%.1f"), _cell(r["sent"]),
            _cell(r["lost"]), _cell(r["reordered"]), _cell(r["duplicated"]), _cell(r["blackout_ms"], "%.1f"), r.get("order") or "-"))
    return lines
