# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""deploy-chain on the lab, measured in one run (issue 5's figures):

* first deploy of the example chains (inventory/lab) onto a lab without chains, and a re-run;
* the traffic probe at 10 kpps through `web`: lost, reordered;
* the packet-rate capacity of `web` as a ratio of the direct path, side by side in the same run:
  the probe steps the same offered rates through both (the direct path: ports no chain takes),
  three probes per rate and path (the median counts: the 2-core machine is noisy), and a path's
  capacity is the highest rate that it and every lower rate carried with at most 0.1 % loss;
* the same sweep again with the module hosts' bridge flows removed (host-local chaining off:
  every step is a round trip through the switch, the naive way), then deploy-chain restores them;
* the same sweep again with the host bridges' ports (trunks and instance legs) as Open vSwitch's
  default AF_PACKET ports (``port_type: system``) instead of the lab's AF_XDP ports
  (``afxdp-nonpmd``), then lab-up and deploy-chain put the lab's own port type back.

Run from the checkout (lab up or not; it brings the lab up and leaves it with the chains):
    .venv/bin/python bench/deploy_chain.py [--rates 5000,10000,...] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(TOP, ".venv", "bin")
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(TOP, "ansible.cfg"), PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))


def playbook(name, *args, inventory="inventory/lab"):
    t0 = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", os.path.join(TOP, inventory), os.path.join(TOP, "playbooks", name)]
                          + list(args), cwd=TOP, env=dict(ENV, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"),
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit("%s failed:\n%s" % (name, proc.stdout[-3000:] + proc.stderr[-2000:]))
    stats = json.loads(proc.stdout[proc.stdout.index("{"):])["stats"]
    return seconds, sum(s.get("changed", 0) for s in stats.values())


def probe(rate, seconds, dport, flows=32):
    args = {"source": {"netns": "fsl-source", "address": "198.18.1.1"}, "sink": {"netns": "fsl-sink", "address": "198.18.1.2"},
            "flows": flows, "rate": rate, "duration": seconds, "destination_port": dport, "source_port": 30000,
            "vary": "sport", "priority": 0}
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", os.path.join(TOP, "inventory/lab"), "localhost", "-m",
                           "flowstream.platform.traffic_probe", "-a", json.dumps(args)], cwd=TOP,
                          env=dict(ENV, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"),
                          capture_output=True, text=True, check=False)
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result["probe"]["totals"], result["probe"]["rate"]["achieved_pps"]


HOST_FLOWS_OFF = {"switch": "fs-host", "cookie": "0xf5c0000000000000", "cookie_mask": "0xffff000000000000", "state": "absent"}


def host_flows_off():
    """Remove every chain flow from the module hosts' bridges (deploy-chain puts them back)."""
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", os.path.join(TOP, "inventory/lab"), "flowstream_module_hosts", "-m",
                           "flowstream.platform.openflow_flows", "-a", json.dumps(HOST_FLOWS_OFF)], cwd=TOP, env=ENV,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("removing the host flows failed:\n%s" % (proc.stdout[-3000:] + proc.stderr[-2000:]))


def sweep(rates, seconds, repeat):
    """[(rate, direct pps, direct loss %, web pps, web loss %)], {"direct": capacity, "web": capacity}.

    Each rate is probed ``repeat`` times per path and the run with the median loss counts. A path's
    capacity is the highest rate that it, and every lower rate, carried with at most 0.1 % loss
    (median) at >= 95 % of the offered rate; after two failed rates in a row a path is not probed
    any higher (None in the rows)."""
    rows = []
    capacity = {"direct": 0, "web": 0}
    failed = {"direct": 0, "web": 0}
    clean = {"direct": True, "web": True}
    for rate in rates:
        row = [rate]
        for name, dport in (("direct", 7000), ("web", 8000)):
            if failed[name] >= 2:
                row += [None, None]
                continue
            runs = sorted((probe(rate, seconds, dport) for attempt in range(repeat)), key=lambda r: r[0]["loss_percent"])
            totals, got = runs[len(runs) // 2]
            row += [got, totals["loss_percent"]]
            if totals["loss_percent"] <= 0.1 and got >= 0.95 * rate:
                failed[name] = 0
                if clean[name]:
                    capacity[name] = rate
            else:
                failed[name] += 1
                clean[name] = False
        rows.append(row)
    return rows, capacity


def print_sweep(title, rows, capacity, seconds, repeat):
    print("\n%s\noffered pps | direct: achieved, loss %% | web: achieved, loss %%   (median of %d probes of %g s, 32 flows, "
          "64-byte payload)" % (title, repeat, seconds))
    for row in rows:
        cells = ["%10s %8s" % ("-", "-") if row[i] is None else "%10.0f %8.2f" % (row[i], row[i + 1]) for i in (1, 3)]
        print("%11d | %s | %s" % (row[0], cells[0], cells[1]))
    ratio = capacity["web"] / capacity["direct"] if capacity["direct"] else float("nan")
    print("capacity (highest rate carried with <= 0.1 %% loss, as every lower rate): direct %d pps, web %d pps, ratio %.0f %%"
          % (capacity["direct"], capacity["web"], 100 * ratio))
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rates", default="5000,10000,15000,20000,25000,30000,35000,40000,45000,50000,60000,80000")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="probes per rate and path; the median loss counts")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]

    playbook("lab-up.yml")
    # a lab without chains: the same inventory with every chain absent
    tmp = tempfile.mkdtemp(prefix="fsl-bench-")
    try:
        inv = os.path.join(tmp, "lab")
        shutil.copytree(os.path.join(TOP, "inventory", "lab"), inv)
        path = os.path.join(inv, "group_vars", "all", "chains.yml")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        import yaml  # pylint: disable=import-outside-toplevel
        data = yaml.safe_load(text)
        data["flowstream_chains"] = [{"name": c["name"], "state": "absent"} for c in data["flowstream_chains"]]
        with open(path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(data, handle)
        playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true", inventory=inv)
    finally:
        shutil.rmtree(tmp)
    first, first_changed = playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true")
    rerun, rerun_changed = playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true")
    time.sleep(8)  # the guest VM boots under TCG
    web10, achieved = probe(10000, 5, 8000)

    local_rows, local_cap = sweep(rates, args.seconds, args.repeat)
    host_flows_off()
    naive_rows, naive_cap = sweep(rates, args.seconds, args.repeat)
    restored, restored_changed = playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true")
    # AF_PACKET ports on the host bridges (extra vars beat the inventory's flowstream_port_type)
    system = ("-e", "flowstream_port_type=system")
    playbook("lab-up.yml", *system)
    playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true", *system)
    packet_rows, packet_cap = sweep(rates, args.seconds, args.repeat)
    playbook("lab-up.yml")
    back, back_changed = playbook("deploy-chain.yml", "-e", "flowstream_skip_verify=true")

    print("deploy-chain on the lab (3 module hosts; chains web, inspect, guest), one run\n")
    print("%-44s %10s" % ("", "seconds"))
    print("%-44s %10.1f   changed=%d  (goal <= 90 s)" % ("first deploy (no chains before)", first, first_changed))
    print("%-44s %10.1f   changed=%d  (goal <= 20 s, changed=0)" % ("re-run", rerun, rerun_changed))
    print("%-44s %10.1f   changed=%d  (puts the host flows back)" % ("re-run after the host flows were removed", restored, restored_changed))
    print("\nprobe through web at 10 kpps, 5 s: %.0f pps achieved, sent %d, lost %d, reordered %d, duplicated %d, longest gap %.1f ms"
          % (achieved, web10["sent"], web10["lost"], web10["reordered"], web10["duplicated"], web10["max_gap_ms"]))
    local = print_sweep("web with host-local chaining (as deployed)", local_rows, local_cap, args.seconds, args.repeat)
    naive = print_sweep("web with the host flows removed (every step a round trip through the switch)", naive_rows, naive_cap, args.seconds, args.repeat)
    packet = print_sweep("web with host-local chaining, AF_PACKET ports on the host bridges (port_type: system)",
                         packet_rows, packet_cap, args.seconds, args.repeat)
    print("\nweb/direct capacity (goal >= 60 %%): as deployed (AF_XDP ports, host-local chaining) %.0f %%; host flows "
          "removed %.0f %%; AF_PACKET ports %.0f %%" % (100 * local, 100 * naive, 100 * packet))
    print("as deployed / host flows removed: %.2fx; as deployed / AF_PACKET ports: %.2fx; back to AF_XDP: deploy-chain "
          "changed=%d" % (_ratio(local_cap["web"], naive_cap["web"]), _ratio(local_cap["web"], packet_cap["web"]), back_changed))


def _ratio(a, b):
    return a / b if b else float("nan")


if __name__ == "__main__":
    main()
