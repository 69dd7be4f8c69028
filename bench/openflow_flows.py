# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark flowstream.platform.openflow_flows against raw ovs-ofctl, side by side.

    .venv/bin/python bench/openflow_flows.py [--sizes 1000,10000,50000] [--loop-sample 40]

Run as root from the checkout, with Open vSwitch running (scripts/setup.sh).  One run of each
scenario for N distinct flows on a bridge of its own (``fst-bench``, netdev datapath, deleted
at the end):

- ``empty task``: one ``ansible.builtin.ping`` task on localhost - Ansible's fixed cost.
- ``ansible moves N flows``: the same N flows handed to a module that does nothing - what Ansible
  itself spends on templating, validating and shipping the list (no OpenFlow work at all).
- ``raw bundle``: ``ovs-ofctl -O OpenFlow14 --bundle add-flows`` of the same flows, empty table.
- ``raw parse-flows``: ``ovs-ofctl parse-flows`` of the same flows, in 25k-flow parts run
  concurrently as the module runs them: Open vSwitch's own parser, the least any apply that checks
  the flows (duplicates, other owners' flows) before it commits must spend on top of the bundle.
- ``module fixed cost``: a no-op openflow_flows task with one flow - what a collection module with
  its module_utils costs Ansible beyond ``ping`` (AnsiballZ, imports, one dump-flows).
- ``module from empty``, ``module no-op re-run``, ``module 1 % changed``: ``ansible-playbook`` with
  one openflow_flows task (state=replaced), wall clock of the whole ansible-playbook process, and
  the module's own ``timings.total``; three ways to hand over the flows: ``flows_file`` (a file on
  the node, read by the module), ``flows_text`` (``lookup('file')``, one string), ``flows`` (a list).
- ``per-flow add-flow loop`` (1k only): one ``ovs-ofctl add-flow`` process per flow.
- ``ansible loop: add-flow`` (1k, extrapolated from --loop-sample flows): an Ansible ``loop:`` of
  ``ansible.builtin.command: ovs-ofctl add-flow``, as a playbook without this module would do it.

It prints a table of seconds and the ratios behind the goals, and writes the numbers as JSON to
bench/results/.  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BRIDGE = "fst-bench"  # not "fst-of...": the integration tests sweep that prefix
COOKIE = "0xf5000000000000be"
FIXED_COOKIE = "0xf5000000000000bf"  # the one flow of the module-fixed-cost row
PART = 25000                         # flows per concurrent parse-flows part, as the module splits them

NOOP_MODULE = '''#!/usr/bin/python
from __future__ import annotations
from ansible.module_utils.basic import AnsibleModule
def main():
    m = AnsibleModule(argument_spec=dict(flows=dict(type="list", elements="raw")), supports_check_mode=True)
    m.exit_json(changed=False, n=len(m.params["flows"] or []))
main()
'''


def sh(*argv, data=None, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, input=data, check=False)
    if check and proc.returncode != 0:
        sys.exit("bench: %s failed: %s" % (" ".join(argv[:4]), proc.stderr.strip()))
    return proc.stdout


def timed(fn):
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def flows_for(n, changed_every=None):
    out = []
    for i in range(n):
        action = "output:1"
        if changed_every and i % changed_every == 0:
            action = "output:2"
        out.append("table=0,priority=100,tcp,nw_src=10.%d.%d.%d,tp_dst=80,actions=%s"
                   % (i >> 16, (i >> 8) & 255, i & 255, action))
    return out


class Ansible:
    def __init__(self, work):
        self.work = work
        self.env = dict(os.environ)
        self.env.update({
            "ANSIBLE_CONFIG": str(TOP / "ansible.cfg"),
            "ANSIBLE_INVENTORY_ENABLED": "host_list",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_LIBRARY": str(work / "library"),
            "PATH": "%s:%s" % (BIN, os.environ.get("PATH", "")),
        })
        (work / "library").mkdir()
        (work / "library" / "fst_bench_noop.py").write_text(NOOP_MODULE)

    def playbook(self, tasks, extra_vars=None):
        path = self.work / "play.yml"
        path.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
        argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % sys.executable, str(path)]
        for k, v in (extra_vars or {}).items():
            argv += ["-e", "%s=%s" % (k, v)]
        t, proc = timed(lambda: subprocess.run(argv, cwd=TOP, env=self.env, capture_output=True, text=True,
                                               check=False))
        try:
            data = json.loads(proc.stdout[proc.stdout.index("{"):])
            results = [task["hosts"]["localhost"] for task in data["plays"][0]["tasks"]]
        except (ValueError, KeyError, IndexError):
            sys.exit("bench: ansible-playbook gave no result:\n%s\n%s" % (proc.stderr[-2000:], proc.stdout[-2000:]))
        for r in results:
            if r.get("failed"):
                sys.exit("bench: task failed: %s" % r.get("msg"))
        return t, results


def module_task(flows_file, form):
    if form == "text":
        flows = {"flows_text": "{{ lookup('ansible.builtin.file', '%s') }}" % flows_file}
    elif form == "file":
        flows = {"flows_file": str(flows_file)}  # read by the module on the node: Ansible moves no flows
    else:
        flows = {"flows": "{{ lookup('ansible.builtin.file', '%s').splitlines() }}" % flows_file}
    task = {"switch": BRIDGE, "cookie": COOKIE, "state": "replaced", "report_limit": 0}
    task.update(flows)
    return {"flowstream.platform.openflow_flows": task}


def make_bridge():
    sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE)
    sh("ovs-vsctl", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
       "protocols=OpenFlow13,OpenFlow14,OpenFlow15",
       "--", "add-port", BRIDGE, BRIDGE + "1", "--", "set", "interface", BRIDGE + "1", "type=internal", "ofport_request=1",
       "--", "add-port", BRIDGE, BRIDGE + "2", "--", "set", "interface", BRIDGE + "2", "type=internal", "ofport_request=2")


def clear(cookie=COOKIE):
    sh("ovs-ofctl", "-O", "OpenFlow14", "del-flows", BRIDGE, "cookie=%s/-1" % cookie)


def parse_flows_parts(flows):
    """ovs-ofctl parse-flows of the flows in PART-sized parts, all parts at once."""
    def start(part):
        proc = subprocess.Popen(["ovs-ofctl", "-O", "OpenFlow14", "parse-flows", "-"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        proc.stdin.write("\n".join(part) + "\n")
        proc.stdin.close()
        return proc
    procs = [start(flows[i:i + PART]) for i in range(0, len(flows), PART)]
    for proc in procs:
        if proc.wait() != 0:
            sys.exit("bench: ovs-ofctl parse-flows failed: %s" % proc.stderr.read().strip())


def count():
    out = sh("ovs-ofctl", "-O", "OpenFlow14", "dump-aggregate", BRIDGE, "cookie=%s/-1" % COOKIE)
    return int(out.split("flow_count=")[1].split()[0])


def run(sizes, loop_sample):
    res = {"sizes": sizes, "rows": {}, "checks": {}}
    rows = res["rows"]

    def put(row, n, value):
        rows.setdefault(row, {})[str(n)] = value

    with tempfile.TemporaryDirectory(prefix="fst-bench-") as tmp:
        work = Path(tmp)
        ans = Ansible(work)
        t = ans.playbook([{"ansible.builtin.ping": {}}])[0]
        t2 = ans.playbook([{"ansible.builtin.ping": {}}])[0]
        empty = min(t, t2)
        one = work / "one-flow.txt"
        one.write_text(flows_for(1)[0] + "\n")
        task = {"flowstream.platform.openflow_flows": {"switch": BRIDGE, "cookie": FIXED_COOKIE, "state": "replaced",
                                                       "report_limit": 0, "flows_file": str(one)}}
        ans.playbook([task])
        module_fixed = min(ans.playbook([task])[0], ans.playbook([task])[0])
        clear(FIXED_COOKIE)
        for n in sizes:
            put("empty task (Ansible fixed cost)", n, empty)
            put("module fixed cost (openflow_flows, 1 flow, no-op)", n, module_fixed)
            flows = flows_for(n)
            f_file = work / ("flows-%d.txt" % n)
            f_file.write_text("\n".join(flows) + "\n")
            c_file = work / ("changed-%d.txt" % n)
            c_file.write_text("\n".join(flows_for(n, changed_every=100)) + "\n")
            raw_file = work / ("raw-%d.txt" % n)
            raw_file.write_text("".join("cookie=%s,%s\n" % (COOKIE, f) for f in flows))

            t = ans.playbook([{"fst_bench_noop": {
                "flows": "{{ lookup('ansible.builtin.file', '%s').splitlines() }}" % f_file}}])[0]
            put("ansible moves N flows as a list (no-op module)", n, t)

            clear()
            t = timed(lambda: sh("ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", BRIDGE, str(raw_file)))[0]
            assert count() == n
            put("raw ovs-ofctl --bundle add-flows", n, t)
            clear()
            put("raw ovs-ofctl parse-flows (%dk-flow parts at once)" % (PART // 1000), n,
                min(timed(lambda: parse_flows_parts(flows))[0] for dummy in range(3)))

            for form, tag in (("file", "flows_file"), ("text", "flows_text"), ("list", "flows list")):
                clear()
                t, r = ans.playbook([module_task(f_file, form)])
                assert r[0]["changed"] and r[0]["counts"]["flows_added"] == n and count() == n, r[0]["counts"]
                put("openflow_flows from empty [%s]" % tag, n, t)
                put("  module's own time [%s] " % tag, n, r[0]["timings"]["total"])

                t, r = ans.playbook([module_task(f_file, form)])
                assert r[0]["changed"] is False
                res["checks"]["no-op changed=0 at %d (%s)" % (n, tag)] = True
                put("openflow_flows no-op re-run [%s]" % tag, n, t)
                put("  module's own time [%s]  " % tag, n, r[0]["timings"]["total"])

                t, r = ans.playbook([module_task(c_file, form)])
                want = (n + 99) // 100
                assert r[0]["counts"]["flows_modified"] == want and r[0]["counts"]["flows_added"] == 0, r[0]["counts"]
                put("openflow_flows 1 %% changed [%s]" % tag, n, t)
                put("  module's own time [%s]   " % tag, n, r[0]["timings"]["total"])
            clear()

            if n == 1000:
                def loop():
                    for f in flows:
                        sh("ovs-ofctl", "-O", "OpenFlow14", "add-flow", BRIDGE, "cookie=%s,%s" % (COOKIE, f))
                t = timed(loop)[0]
                assert count() == n
                put("per-flow ovs-ofctl add-flow loop", n, t)
                clear()
                if loop_sample:
                    sample = flows[:loop_sample]
                    t = ans.playbook([{
                        "ansible.builtin.command": {"argv": ["ovs-ofctl", "-O", "OpenFlow14", "add-flow", BRIDGE,
                                                             "cookie=%s,{{ item }}" % COOKIE]},
                        "loop": sample}])[0]
                    put("ansible loop: add-flow (extrapolated)", n, (t - empty) * n / loop_sample + empty)
                    clear()
    return res


def fmt(v):
    return "-" if v is None else ("%.2f" % v if v < 100 else "%.0f" % v)


def report(res):
    sizes = [str(n) for n in res["sizes"]]
    names = {"1000": "1k", "10000": "10k", "50000": "50k"}
    rows = res["rows"]
    width = max(len(r) for r in rows) + 2
    lines = ["%-*s" % (width, "seconds (one run)") + "".join("%10s" % names.get(n, n) for n in sizes)]
    for row, vals in rows.items():
        lines.append("%-*s" % (width, row) + "".join("%10s" % fmt(vals.get(n)) for n in sizes))
    lines.append("")

    def get(row, n):
        return rows.get(row, {}).get(n)

    for n in sizes:
        raw = get("raw ovs-ofctl --bundle add-flows", n)
        fixed = get("empty task (Ansible fixed cost)", n)
        carry = get("ansible moves N flows as a list (no-op module)", n)
        limit = 1.5 * raw + fixed
        lines.append("N=%s: goal for 'from empty' = 1.5 x raw + fixed cost = %.2f s" % (names.get(n, n), limit))
        for tag in ("flows_file", "flows_text", "flows list"):
            mod = get("openflow_flows from empty [%s]" % tag, n)
            own = get("  module's own time [%s] " % tag, n)
            noop = get("openflow_flows no-op re-run [%s]" % tag, n)
            lines.append("   %-10s from empty %.2f s = %.2fx the goal (module's own %.2f s = %.2fx raw); no-op %.2f s, changed=0"
                         % (tag, mod, mod / limit, own, own / raw, noop))
        lines.append("   (Ansible alone spends %.2f s moving N flows as a list into a module that does nothing)" % carry)
        mfixed = get("module fixed cost (openflow_flows, 1 flow, no-op)", n)
        parse = get("raw ovs-ofctl parse-flows (%dk-flow parts at once)" % (PART // 1000), n)
        if mfixed is not None and parse is not None:
            floor = mfixed + parse + raw
            lines.append("   floor of an apply that checks before it commits = module fixed cost %.2f + parse-flows %.2f + "
                         "raw bundle %.2f = %.2f s = %.2fx the goal" % (mfixed, parse, raw, floor, floor / limit))
        loop = get("per-flow ovs-ofctl add-flow loop", n)
        if loop:
            mod = get("openflow_flows from empty [flows_text]", n)
            lines.append("   per-flow add-flow loop %.1f s = %.0fx the module's wall clock (Ansible's fixed cost included)"
                         % (loop, loop / mod))
            aloop = get("ansible loop: add-flow (extrapolated)", n)
            if aloop:
                lines.append("   ansible loop: add-flow ~%.0f s = %.0fx the module" % (aloop, aloop / mod))
    big = max(res["sizes"])
    loop1k = get("per-flow ovs-ofctl add-flow loop", "1000")
    if loop1k and str(big) in rows.get("openflow_flows from empty [flows_text]", {}):
        rate_loop = 1000 / loop1k
        rate_mod = big / get("openflow_flows from empty [flows_text]", str(big))
        lines.append("throughput: per-flow loop %.0f flows/s, module at %d flows %.0f flows/s (%.0fx)"
                     % (rate_loop, big, rate_mod, rate_mod / rate_loop))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--sizes", default="1000,10000,50000")
    ap.add_argument("--loop-sample", type=int, default=40,
                    help="flows for the Ansible loop: row (extrapolated to 1k); 0 skips it")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it creates an OVS bridge)")
    sizes = [int(x) for x in args.sizes.split(",")]
    make_bridge()
    try:
        res = run(sizes, args.loop_sample)
    finally:
        sh("ovs-vsctl", "--if-exists", "del-br", BRIDGE)
    res["ovs"] = sh("ovs-ofctl", "--version").splitlines()[0]
    res["when"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    res["cpus"] = os.cpu_count()
    text = report(res)
    print(text)
    out = TOP / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("openflow_flows-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    path.write_text(json.dumps(res, indent=1) + "\n")
    print("\n(numbers saved to %s)" % path.relative_to(TOP))


if __name__ == "__main__":
    main()
