# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The traffic probe for real, on a lab of its own (prefix ``fsp``, see probelab.py).

Each figure the probe reports is provoked on purpose with switch flows the test sets, and,
where the platform keeps its own count, compared with that count:

- direct path, 64 flows at 10 kpps for 3 s: nothing lost, reordered or duplicated, the rate as asked;
- an OpenFlow meter drops a share: the probe's loss is the meter's own drop counter (plus what
  the busy path loses besides, if anything);
- the switch drops two whole flows: exactly those flows lose exactly what they sent;
- a kernel shaper on a module host (processing_module over SSH): the expected share arrives,
  the loss is the shaper's (tc) drop counter, and ``max_lost: 0`` fails the task;
- one flow output twice to the sink: exactly that flow's packets are duplicates;
- packets of each flow alternately marked DSCP 0 and 8, DSCP 8 steered through a module host:
  reordering; the same flows unmarked: none;
- the path dropped for 300 ms mid-run: a gap of that size, loss to match, and the command
  exits 1 on ``--max-gap-ms``;
- two monitors as a parallel step: the crossing report says which one each flow crossed, and
  flags every flow when both see it;
- check mode sends nothing;
- a started session of two groups, stopped a few seconds later: per-group totals, nothing lost,
  its ends ran detached in the namespaces and are gone after the stop; stopping it again, or a
  session that never existed, is a clear error; check mode starts and stops nothing;
- one group's path broken for 300 ms during a session: a window around the break shows that
  group's loss and blackout, the other group's none, and a window before it none;
- an abandoned session ends by itself after its duration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import probelab as lab_  # noqa: E402  pylint: disable=wrong-import-position
from ansible_cli import TOP, adhoc, playbook  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(TOP / "plugins" / "module_utils"))
import _probe  # noqa: E402  pylint: disable=wrong-import-position,import-error

SRC, SINK = lab_.UPLINK_SRC, lab_.UPLINK_SINK
TR1, TR2 = lab_.TRUNKS["mh1"], lab_.TRUNKS["mh2"]
# instances the tests use: host -> [(instance, type, params, left, right)]
INSTANCES = {
    "mh1": [("pw1", "wire", {}, 101, 102), ("pm1", "monitor", {}, 121, 122)],
    "mh2": [("ps1", "shaper", {"rate": "4mbit", "burst": "16kb"}, 111, 112), ("pm2", "monitor", {}, 131, 132)],
}
INSTANCES_PLAY = """\
- name: The probe tests' processing modules
  hosts: mh1:mh2
  gather_facts: false
  tasks:
    - name: Instances
      flowstream.platform.processing_module:
        instance: "{{ item[0] }}"
        kind: kernel
        type: "{{ item[1] }}"
        params: "{{ item[2] }}"
        vlans: {left: "{{ item[3] }}", right: "{{ item[4] }}"}
        chain: probe-test
        step: "0"
      loop: "{{ instances[inventory_hostname] }}"
"""


def _missing():
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ovs-vsctl", "ovs-ofctl", "ip", "nsenter", "tc"):
        if not shutil.which(tool):
            return "needs %s" % tool
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inv = lab_.write_inventory(tmp_path_factory.mktemp("fsp-inventory"))
    took = lab_.lab_up(inv)
    print("\nlab-up (fsp, two module hosts): %.1f s" % took)
    try:
        play = tmp_path_factory.mktemp("fsp-plays") / "instances.yml"
        play.write_text(INSTANCES_PLAY)
        t0 = time.monotonic()
        run = playbook(str(play), "-e", json.dumps({"instances": INSTANCES}), inventory=str(inv))
        assert run.rc == 0 and not run.failures(), run.explain()
        print("four kernel instances on two module hosts: %.1f s" % (time.monotonic() - t0))
        yield inv
    finally:
        lab_.lab_down(inv)
        assert not os.path.exists(lab_.STATE)


@pytest.fixture(autouse=True)
def _flows(lab):  # pylint: disable=redefined-outer-name,unused-argument
    lab_.del_flows()
    yield
    lab_.del_flows()


def probe(inv, check=False, **args):
    """The traffic_probe module on the controller, source -> sink of the lab: (rc, result)."""
    base = {"source": {"netns": lab_.SOURCE_NS, "address": lab_.SOURCE_IP},
            "sink": {"netns": lab_.SINK_NS, "address": lab_.SINK_IP}}
    base.update(args)
    return lab_.on_controller(inv, "traffic_probe", check=check, **base)


def ok(pair):
    rc, res = pair
    assert rc == 0 and not res.get("failed"), json.dumps(res, indent=1)[:5000]
    return res


def show(name, res):
    if "probe" not in res:
        print("%s: no figures: %s" % (name, res.get("msg")))
        return
    t, r = res["probe"]["totals"], res["probe"]["rate"]
    print("%s: %s flows, asked %s pps, achieved %s pps; sent %d received %d lost %d reordered %d duplicated %d; "
          "longest gap %s ms; sender's longest pause %s ms; latency p50 %s p99 %s ms" % (
              name, res["probe"]["flow_count"], r["asked_pps"], r["achieved_pps"], t["sent"], t["received"], t["lost"],
              t["reordered"], t["duplicated"], t["max_gap_ms"], r["max_send_gap_ms"], t["latency_ms"]["p50"],
              t["latency_ms"]["p99"]))


def in_host(host, *argv):
    return ["nsenter", "--mount=%s/ns/%s.mnt" % (lab_.STATE, host), "--net=/run/netns/fsp-%s" % host] + list(argv)


def tbf_drops(host, instance):
    out = lab_.sh(*in_host(host, "ip", "netns", "exec", "fs-" + instance, "tc", "-s", "-j", "qdisc", "show")).stdout
    return sum(q.get("drops", 0) for q in json.loads(out) if q.get("kind") == "tbf")


def meter_drops(meter):
    out = lab_.sh("ovs-ofctl", "-O", "OpenFlow13", "meter-stats", lab_.SWITCH, "meter=%d" % meter).stdout
    return int(out.split("0: packet_count:")[1].split()[0])


def monitors(inv):
    """Per-flow counters of pm1 (mh1) and pm2 (mh2), both hosts in one run."""
    run = adhoc("mh1:mh2", "flowstream.platform.module_host_info", json.dumps({"flows": True}), inventory=str(inv))
    hosts = run.data["plays"][0]["tasks"][0]["hosts"]
    return {"mon": {"pm1": hosts["mh1"]["instances"]["pm1"]["flows"], "pm2": hosts["mh2"]["instances"]["pm2"]["flows"]}}


def test_direct_path_64_flows_at_10kpps_loses_nothing(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct())
    # other suites load both cores at times, and the switch's one forwarding thread then stalls
    # for 50-100 ms and drops (measured): a second attempt, and both are printed
    for attempt in (1, 2):
        before = lab_.port_rx(SRC)
        rc, res = probe(lab, flows=64, rate=10000, duration=3, max_lost=0, max_reordered=0, max_duplicated=0)
        show("direct 10 kpps, attempt %d" % attempt, res)
        if rc == 0:
            break
    res = ok((rc, res))
    pr, t = res["probe"], res["probe"]["totals"]
    assert (t["sent"], t["received"], t["lost"], t["reordered"], t["duplicated"]) == (30000, 30000, 0, 0, 0)
    assert abs(pr["rate"]["achieved_pps"] - 10000) < 100 and pr["rate"]["send_errors"] == {}
    assert pr["receiver"]["socket_drops"] == 0 and pr["receiver"]["timestamps"] == "kernel"
    assert pr["receiver"]["other_runs"] == 0 and pr["receiver"]["warmup_received"] == 64
    assert [(f["flow"], f["src"], f["dst"], f["proto"], f["sport"], f["dport"]) for f in pr["flows"]] == [
        (i, lab_.SOURCE_IP, lab_.SINK_IP, "udp", 40000 + i, 9000) for i in range(64)]
    assert {f["sent"] for f in pr["flows"]} == {468, 469} and res["changed"] is False
    # the switch saw every datagram the sender says it sent (its own port counter)
    assert lab_.port_rx(SRC) - before >= 30000 + 64


def test_check_mode_sends_nothing(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct())
    before = lab_.port_rx(SRC)
    res = ok(probe(lab, check=True, flows=64, rate=10000, duration=3))
    assert "probe" not in res and res["msg"] == "check mode: nothing sent" and res["changed"] is False
    assert lab_.SINK_IP in res["plan"]["addresses"]["sink"]
    assert lab_.port_rx(SRC) - before <= 2  # nothing but the namespace's own chatter, if any
    # a sink address the namespace does not have is refused before anything is sent
    rc, bad = probe(lab, check=True, sink={"netns": lab_.SINK_NS, "address": "198.18.33.99"})
    assert rc != 0 and "sink address 198.18.33.99 is not an address in namespace fsp-sink" in bad["msg"]


def test_meter_loss_equals_the_switch_s_own_drop_count(lab):  # pylint: disable=redefined-outer-name
    lab_.sh("ovs-ofctl", "-O", "OpenFlow13", "add-meter", lab_.SWITCH, "meter=7,pktps,burst,band=type=drop,rate=1000,burst_size=50")
    try:
        lab_.add_flows(lab_.direct() + ["priority=110,udp,in_port=%s,actions=meter:7,output:%s" % (SRC, SINK)])
        before = meter_drops(7)
        res = ok(probe(lab, flows=8, rate=3000, duration=2))
        show("meter 1000 pps", res)
        t = res["probe"]["totals"]
        dropped = meter_drops(7) - before
        print("meter: probe lost %d, the meter dropped %d" % (t["lost"], dropped))
        # what the meter dropped is lost; anything more was lost elsewhere on the path (measured:
        # exactly equal on a quiet machine, up to 131 more when other suites load both cores)
        assert dropped <= t["lost"] <= dropped + 0.03 * t["sent"]
        assert 0.60 < t["loss_percent"] / 100 < 0.72  # 2000 of 3000 pps over the meter's rate, less its burst
    finally:
        lab_.sh("ovs-ofctl", "-O", "OpenFlow13", "del-meter", lab_.SWITCH, "meter=7", check=False)


def test_whole_flows_dropped_by_the_switch_are_exactly_the_lost_ones(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct() + ["priority=110,udp,in_port=%s,tp_src=%d,actions=drop" % (SRC, port) for port in (40003, 40010)])
    res = ok(probe(lab, flows=16, rate=5000, duration=2))
    for f in res["probe"]["flows"]:
        if f["sport"] in (40003, 40010):
            assert (f["received"], f["lost"], f["loss_percent"]) == (0, f["sent"], 100.0), f
            assert f["max_gap_ms"] > 1900  # nothing arrived during the whole run
        else:
            assert f["lost"] == 0 and f["received"] == f["sent"], f
    assert res["probe"]["totals"]["lost"] == 2 * 625


def test_shaper_loses_the_expected_share_and_max_lost_fails_the_task(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.via(TR2, 111, 112))
    drops = tbf_drops("mh2", "ps1")
    rc, res = probe(lab, flows=8, rate=2000, duration=3, size=1000, max_lost=0)
    assert rc != 0 and res["failed"], json.dumps(res)[:3000]
    assert res["exceeded"] == ["lost %d > 0" % res["probe"]["totals"]["lost"]]
    assert res["msg"].startswith("traffic probe: lost %d > 0 (8 flows" % res["probe"]["totals"]["lost"])
    show("shaper 4 mbit", res)
    t = res["probe"]["totals"]
    # tbf at 4 Mbit/s on 1042-byte frames for 3 s, plus its bucket (16 kB) and queue (50 ms at 4 Mbit/s)
    expected = 4e6 * 3 / (1042 * 8) + 16384 / 1042 + 25000 / 1042
    print("shaper: %d received, %.0f expected from the shaper's settings; probe lost %d, tc dropped %d"
          % (t["received"], expected, t["lost"], tbf_drops("mh2", "ps1") - drops))
    assert abs(t["received"] - expected) < 0.08 * expected
    dropped = tbf_drops("mh2", "ps1") - drops
    assert dropped - 8 <= t["lost"] <= dropped + 0.03 * t["sent"]  # (8: the uncounted warm-up packets)


def test_a_flow_sent_twice_is_counted_as_duplicated(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct() + ["priority=110,udp,in_port=%s,tp_src=40003,actions=output:%s,output:%s" % (SRC, SINK, SINK)])
    res = ok(probe(lab, flows=8, rate=5000, duration=2, max_lost=0))
    rc, limited = probe(lab, flows=8, rate=5000, count=800, max_duplicated=0)
    assert rc != 0 and limited["exceeded"] == ["duplicated 100 > 0"]
    dups = {f["sport"]: f["duplicated"] for f in res["probe"]["flows"]}
    assert dups == {40000 + i: (1250 if i == 3 else 0) for i in range(8)}
    flow3 = res["probe"]["flows"][3]
    assert (flow3["received"], flow3["unique"], flow3["lost"]) == (2500, 1250, 0)


def test_two_paths_of_different_latency_reorder(lab):  # pylint: disable=redefined-outer-name
    # DSCP 8 goes through the wire on mh1 (two more Open vSwitch hops and a kernel bridge), the rest direct
    lab_.add_flows(lab_.direct() + lab_.via(TR1, 101, 102, match="udp,ip_dscp=8", priority=110))
    mixed = ok(probe(lab, flows=4, rate=10000, duration=2, dscp=[0, 8], max_duplicated=0))
    show("DSCP 0/8 over two paths", mixed)
    t = mixed["probe"]["totals"]
    # the path through the module host sometimes loses a little on this busy machine (measured: 0-140 of 10000)
    assert t["lost"] < 0.05 * t["sent"]
    assert t["reordered"] > 0.01 * t["sent"], t  # measured: 15-49 %, depending on how the sender batches
    assert all(f["reordered"] > 0 for f in mixed["probe"]["flows"])
    assert t["max_reorder_extent"] >= 1
    # the same flows unmarked take one path: no reordering
    same = ok(probe(lab, flows=4, rate=10000, duration=2, max_lost=0, max_reordered=0))
    assert same["probe"]["totals"]["reordered"] == 0


def test_a_300_ms_blackout_is_the_longest_gap(lab):  # pylint: disable=redefined-outer-name,unused-argument
    lab_.add_flows(lab_.direct())
    cmd = [str(lab_.COMMAND), "--source-netns", lab_.SOURCE_NS, "--sink-netns", lab_.SINK_NS, "--dst", lab_.SINK_IP,
           "--flows", "16", "--rate", "10000", "--duration", "3", "--max-gap-ms", "100", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # pylint: disable=consider-using-with
    try:
        time.sleep(1.5)
        t0 = time.monotonic()
        lab_.add_flows(["priority=200,in_port=%s,actions=drop" % SRC])
        t1 = time.monotonic()
        time.sleep(0.3)
        t2 = time.monotonic()
        lab_.sh("ovs-ofctl", "-O", "OpenFlow14", "--strict", "del-flows", lab_.SWITCH, "priority=200,in_port=%s" % SRC)
        t3 = time.monotonic()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err + out  # --max-gap-ms 100 exceeded
    res = json.loads(out)
    t = res["totals"]
    gap = t["max_gap_ms"]
    print("blackout: drop flow in place %.0f ms (%.0f ms from adding it to its removal done); longest gap %.1f ms, "
          "lost %d (= %.1f ms at 10 kpps); receiver socket drops %s; notes %s" % (
              (t2 - t1) * 1e3, (t3 - t0) * 1e3, gap, t["lost"], t["lost"] / 10.0, res["receiver"]["socket_drops"], res["notes"]))
    assert res["exceeded"] == ["max_gap_ms %s > 100.0" % gap]
    assert (t2 - t1) * 1e3 - 5 <= gap <= (t3 - t0) * 1e3 + 30
    # every packet sent during the gap was lost (10 per ms); more may be lost around the flow-table
    # changes without a gap as long (measured: 0-130 ms worth on this busy machine)
    assert t["lost"] / 10.0 >= 0.9 * gap
    assert res["receiver"]["socket_drops"] == 0
    assert t["reordered"] == 0 and t["duplicated"] == 0


def test_crossing_report_shows_the_instance_each_flow_crossed(lab):  # pylint: disable=redefined-outer-name
    # a parallel step of two monitors: even source ports through pm1 on mh1, odd through pm2 on mh2
    split = ["priority=110,udp,in_port=%s,tp_src=0/1,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (SRC, 4096 + 121, TR1),
             "priority=110,udp,in_port=%s,tp_src=1/1,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s" % (SRC, 4096 + 131, TR2),
             "priority=110,in_port=%s,dl_vlan=122,actions=pop_vlan,output:%s" % (TR1, SINK),
             "priority=110,in_port=%s,dl_vlan=132,actions=pop_vlan,output:%s" % (TR2, SINK)]
    lab_.add_flows(split)
    before = monitors(lab)
    res = ok(probe(lab, flows=16, rate=2000, duration=1, max_lost=0))
    after = monitors(lab)
    report = _probe.crossing_report(res["probe"], after, before=before)
    assert report["ok"], report["problems"]
    for f in report["flows"]:
        assert f["steps"]["mon"] == ["pm1" if f["sport"] % 2 == 0 else "pm2"], f
    assert report["steps"]["mon"]["instances"]["pm1"]["flows"] == report["steps"]["mon"]["instances"]["pm2"]["flows"] == 8
    # without the baseline the counters of earlier runs are still this step's: same verdict here
    assert _probe.crossing_report(res["probe"], after)["ok"]

    # now a copy of every packet goes to both: every flow crossed both instances, and arrives twice
    lab_.del_flows()
    lab_.add_flows(split[2:] + ["priority=110,udp,in_port=%s,actions=push_vlan:0x8100,set_field:%d->vlan_vid,output:%s,"
                                "set_field:%d->vlan_vid,output:%s" % (SRC, 4096 + 121, TR1, 4096 + 131, TR2)])
    res = ok(probe(lab, flows=16, rate=2000, duration=1))
    again = monitors(lab)
    report = _probe.crossing_report(res["probe"], again, before=after)
    assert not report["ok"] and report["steps"]["mon"]["multiple"] == list(range(16))
    assert "crossed 2 instances (pm1, pm2)" in report["problems"][0]
    assert res["probe"]["totals"]["duplicated"] == res["probe"]["totals"]["sent"]


# --- sessions, groups and windows (day-2 operations) ------------------------------------------------

GROUPS = [{"name": "web", "flows": 8, "rate": 2000, "destination_port": 9000},
          {"name": "guest", "flows": 4, "rate": 1000, "destination_port": 9100}]


def stop(inv, session, check=False, **args):
    """traffic_probe state=stopped: (rc, result)."""
    return lab_.on_controller(inv, "traffic_probe", check=check, state="stopped", session=session, **args)


def ended(pid):
    info = _probe.proc_info(pid)
    return info is None or info[0] == "Z"


def in_netns(pid, netns):
    return os.stat("/proc/%d/ns/net" % pid).st_ino == os.stat("/run/netns/%s" % netns).st_ino


def show_groups(name, res):
    for gname, g in res["probe"]["groups"].items():
        t = g["totals"]
        print("%s, group %s: flows %s, sent %d received %d lost %d reordered %d duplicated %d, longest gap %s ms" % (
            name, gname, g["flows"], t["sent"], t["received"], t["lost"], t["reordered"], t["duplicated"], t["max_gap_ms"]))
    for wname, w in (res["probe"].get("windows") or {}).items():
        for gname, gw in w["groups"].items():
            print("%s, window %s, group %s: sent %d lost %d, longest flow gap %s ms, blackout %s ms" % (
                name, wname, gname, gw["sent"], gw["lost"], gw["max_gap_ms"], gw["blackout_ms"]))


def test_a_started_session_of_two_groups_loses_nothing_and_stops_once(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct())
    before = set(os.listdir(_probe.SESSION_ROOT)) if os.path.isdir(_probe.SESSION_ROOT) else set()
    planned = ok(probe(lab, check=True, state="started", groups=GROUPS))
    assert planned["msg"].startswith("check mode: nothing started") and [g["name"] for g in planned["plan"]["groups"]] == ["web", "guest"]
    assert (set(os.listdir(_probe.SESSION_ROOT)) if os.path.isdir(_probe.SESSION_ROOT) else set()) == before
    for attempt in (1, 2):
        t0 = time.monotonic()
        started = ok(probe(lab, state="started", groups=GROUPS, duration=60, max_lost=0))
        session = started["session"]
        print("started session %s in %.1f s (the module's own run, as a task)" % (session["id"], time.monotonic() - t0))
        assert started["changed"] is False and os.path.isdir(session["dir"])
        assert in_netns(session["pids"]["sender"], lab_.SOURCE_NS) and in_netns(session["pids"]["receiver"], lab_.SINK_NS)
        assert all(not ended(pid) for pid in session["pids"].values())
        if attempt == 1:
            would = ok(stop(lab, session["id"], check=True))
            assert would["msg"].startswith("check mode: would stop session %s" % session["id"])
            assert would["session"]["sender"]["state"] == would["session"]["receiver"]["state"] == "running"
            assert os.path.isdir(session["dir"]) and all(not ended(pid) for pid in session["pids"].values())
        time.sleep(2.5)
        rc, res = stop(lab, session)
        if "probe" in res:
            show("session of two groups, attempt %d" % attempt, res)
            show_groups("attempt %d" % attempt, res)
        if rc == 0:
            break
    res = ok((rc, res))
    pr = res["probe"]
    web, guest = pr["groups"]["web"], pr["groups"]["guest"]
    assert web["flows"] == list(range(8)) and guest["flows"] == [8, 9, 10, 11]
    assert [f["group"] for f in pr["flows"]] == ["web"] * 8 + ["guest"] * 4
    assert web["totals"]["lost"] == guest["totals"]["lost"] == pr["totals"]["lost"] == 0
    assert web["totals"]["sent"] > 2000 * 2.5 and guest["totals"]["sent"] > 1000 * 2.5
    assert abs(web["totals"]["sent"] / guest["totals"]["sent"] - 2.0) < 0.05           # each group at its own rate
    assert web["totals"]["sent"] + guest["totals"]["sent"] == pr["totals"]["sent"] == pr["totals"]["received"]
    assert sorted(pr["receiver"]["ports"]) == [9000, 9100] and res["session"]["sender_stopped_by"] == "signal 15"
    assert res["changed"] is False and not os.path.exists(session["dir"])
    assert all(ended(pid) for pid in session["pids"].values())
    # stopped twice: it does not exist any more, and the error says so
    rc, again = stop(lab, session)
    assert rc != 0 and "session %s does not exist" % session["id"] in again["msg"] and "stopped already" in again["msg"]
    rc, unknown = stop(lab, "20991231-000000-abcdef")
    assert rc != 0 and "session 20991231-000000-abcdef does not exist" in unknown["msg"]


def test_a_window_shows_the_blackout_of_a_broken_group_and_none_before(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct())
    drop = "priority=200,udp,in_port=%s,tp_dst=9100" % SRC      # group guest only; web keeps flowing
    for attempt in (1, 2):
        session = ok(probe(lab, state="started", groups=GROUPS, duration=60))["session"]
        time.sleep(1.0)
        t0 = time.time_ns()
        lab_.add_flows([drop + ",actions=drop"])
        t1 = time.time_ns()
        time.sleep(0.3)
        t2 = time.time_ns()
        lab_.sh("ovs-ofctl", "-O", "OpenFlow14", "--strict", "del-flows", lab_.SWITCH, drop)
        t3 = time.time_ns()
        time.sleep(0.7)
        # the normal use: the operation noted when the break started and ended, and gives the windows at the stop.
        # The break ends 200 ms after del-flows returned: the datapath's cached flows follow the table a few ms
        # later (revalidators), so a packet sent just after t3 may still meet the drop (CI, stop 35: 1 packet).
        rc, res = stop(lab, session, windows=[{"name": "before", "start": session["started_ns"], "end": t0 - 50 * 10 ** 6},
                                              {"name": "break", "start": t0 / 1e9, "end": t3 / 1e9 + 0.2}])
        res = ok((rc, res))
        show("break, attempt %d" % attempt, res)
        show_groups("break, attempt %d" % attempt, res)
        win = res["probe"]["windows"]
        print("drop flow in place %.0f ms (%.0f ms from adding it to its removal done)" % ((t2 - t1) / 1e6, (t3 - t0) / 1e6))
        # other suites load both cores at times and the switch then stalls and drops (LAB.md): a second attempt
        if win["before"]["lost"] == 0 and win["break"]["groups"]["web"]["lost"] == 0 \
                and win["break"]["lost"] == res["probe"]["totals"]["lost"]:
            break
    brk, guest, web = win["break"], win["break"]["groups"]["guest"], win["break"]["groups"]["web"]
    # guest: every packet sent while the drop flow was in place lost (1 per ms), the gap of that size
    assert guest["lost"] >= 0.9 * (t2 - t1) / 1e6 and guest["lost"] == brk["lost"] == res["probe"]["totals"]["lost"]
    assert (t2 - t1) / 1e6 - 5 <= guest["max_gap_ms"] <= (t3 - t0) / 1e6 + 30
    assert guest["blackout_ms"] == pytest.approx(guest["max_gap_ms"] - 4.0, abs=0.01)      # spacing: 4 flows at 1000 pps
    assert brk["max_gap_flow"] in range(8, 12) and brk["blackout_ms"] == guest["blackout_ms"]
    assert web["lost"] == 0 and web["blackout_ms"] < 100
    assert guest["sent"] > 0.9 * (t3 - t0) / 1e6 and web["sent"] > 1.8 * (t3 - t0) / 1e6
    before = win["before"]
    assert before["lost"] == 0 and before["blackout_ms"] < 100 and before["sent"] > 1500
    # the run's total gap hides the break (web kept flowing); the group's and the window's per-flow gap show it
    assert res["probe"]["totals"]["max_gap_ms"] < 0.5 * guest["max_gap_ms"]
    assert res["probe"]["groups"]["guest"]["totals"]["max_gap_ms"] >= (t2 - t1) / 1e6 - 5


def test_an_abandoned_session_ends_by_itself_after_its_duration(lab):  # pylint: disable=redefined-outer-name
    lab_.add_flows(lab_.direct())
    session = ok(probe(lab, state="started", flows=4, rate=1000, duration=2, settle=0.3))["session"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2 + 0.3 + 5 and not all(ended(pid) for pid in session["pids"].values()):
        time.sleep(0.1)
    print("abandoned session %s: both ends gone %.1f s after the start returned (duration 2 s, settle 0.3 s)" % (
        session["id"], time.monotonic() - t0))
    assert all(ended(pid) for pid in session["pids"].values())
    assert os.path.isdir(session["dir"])            # its reports wait for the stop
    res = ok(stop(lab, session["id"]))
    assert res["probe"]["totals"]["sent"] == 2000 and res["probe"]["session"]["sender_stopped_by"] == "duration"
    assert any("had ended on its own at its bound" in n for n in res["probe"]["notes"])
    assert not os.path.exists(session["dir"])
