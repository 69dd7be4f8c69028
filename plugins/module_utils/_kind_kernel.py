# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processing modules as Linux kernel forwarding elements.

An instance is a network namespace ``fs-<id>`` whose legs ``left`` and ``right`` are joined by
a Linux bridge ``br0``; an nftables ruleset of the bridge family filters and counts what
crosses it (the table ``bridge flowstream``), and tc token buckets (``tbf``) shape each
direction. Rulesets are checked with ``nft -c`` before anything changes and applied with one
``nft -f`` transaction.

Measured on this kernel: a bridge-family base chain loaded into a namespace *before* the first
Linux bridge exists there never sees a packet; loaded after the bridge (or reloaded) it does.
The ruleset is therefore always loaded after ``br0`` exists, and reloaded when ``br0`` is
re-created.
"""

from __future__ import annotations

import hashlib
import json
import re

from ansible_collections.flowstream.platform.plugins.module_utils._catalogue import item_problem
from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, run as _run
from ansible_collections.flowstream.platform.plugins.module_utils._instance import (
    EXT, LEGS, NamespaceLegs, netns_name, port_name)
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._iproute import IPRoute, link_is_up, stable_mac
from ansible_collections.flowstream.platform.plugins.module_utils._nft import Nft, error_lines
from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import OVSDB

TABLE = "flowstream"
BRIDGE = "br0"
_UNITS = {"bit": 1 / 8.0, "kbit": 1000 / 8.0, "mbit": 1e6 / 8, "gbit": 1e9 / 8,
          "bps": 1, "kbps": 1000, "mbps": 1e6, "gbps": 1e9}
_DIGEST_RE = re.compile(r'comment "flowstream [^"]*sha256:([0-9a-f]{16})"')


def rate_bytes(rate):
    """A tc rate ('10mbit', '500kbit', '1gbit', '100kbps') in bytes per second."""
    match = re.match(r"^([0-9.]+)([a-z]+)$", rate)
    return int(round(float(match.group(1)) * _UNITS[match.group(2)]))


PREAMBLE = "table bridge %s\ndelete table bridge %s\n" % (TABLE, TABLE)
OPEN_RATE_BYTES = 1.25e9  # a token bucket at 10 Gbit/s or more shapes nothing on these legs


def ruleset(spec):
    """The nftables ruleset for ``spec``: the text to apply (which replaces the table in one
    transaction), its digest, and {line number in that text: index of the operator's rule} so
    nft's errors can name the rule."""
    kind_rules = []
    policy = "accept"
    with_flows = False
    if spec.type == "firewall":
        kind_rules = list(spec.params["rules"])
        policy = spec.params["policy"]
    elif spec.type == "monitor":
        with_flows = True
    elif spec.type not in ("wire", "shaper"):
        body = (spec.definition.get("kernel") or {}).get("nft") or ""
        kind_rules = [line.strip() for line in body.splitlines() if line.strip()]
    for index, rule in enumerate(kind_rules):
        problem = item_problem("line", rule)   # checked on the controller too (the catalogue's items)
        if problem:
            raise InstanceError(spec.id, "params.rules[%d]" % index, problem)
    body = ["table bridge %s {" % TABLE, None]  # None: the comment, filled in below
    if with_flows:
        body += [
            "  set flows {",
            "    type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service",
            "    flags dynamic",
            "    counter",
            "    size 65536",
            "  }",
        ]
    body += ["  chain forward {", "    type filter hook forward priority 0; policy %s;" % policy]
    if with_flows:
        body.append("    ip protocol { tcp, udp } update @flows { ip saddr . ip daddr . ip protocol . th sport . th dport }")
    rule_lines = {}
    for index, rule in enumerate(kind_rules):
        body.append("    " + rule.strip())
        rule_lines[PREAMBLE.count("\n") + len(body)] = index
    body += ["  }", "}"]
    digest = hashlib.sha256("\n".join(line for line in body if line is not None).encode()).hexdigest()[:16]
    body[1] = '  comment "flowstream %s %s sha256:%s"' % (spec.id, spec.type, digest)
    return PREAMBLE + "\n".join(body) + "\n", digest, rule_lines


class KernelKind:
    name = "kernel"

    def __init__(self, log, run=_run):
        self.log = log
        self._run = run

    # -- validation (before anything changes) -------------------------------------------
    def validate(self, spec):
        text, _digest, rule_lines = ruleset(spec)
        try:
            Nft(run=self._run).check(text)
        except CommandError as exc:
            for line, message in error_lines(exc.words):
                if line in rule_lines:
                    index = rule_lines[line]
                    raise InstanceError(spec.id, "params.rules[%d]" % index, "nft rejects %r: %s"
                                        % (spec.params["rules"][index], message)) from exc
            raise InstanceError(spec.id, "params", "nft rejects the ruleset: %s" % exc.words) from exc

    # -- observe -----------------------------------------------------------------------
    def observe(self, instance):
        ns = netns_name(instance)
        inner = IPRoute(netns=ns, run=self._run)
        br = inner.link(BRIDGE)
        text = Nft(netns=ns, run=self._run).list_table("bridge", TABLE, stateless=True)
        match = _DIGEST_RE.search(text or "")
        return {"bridge": br is not None, "ruleset_digest": match.group(1) if match else None,
                "ruleset_listing": _canonical(text), "running": all(link_is_up(inner.link(leg)) for leg in LEGS)}

    # -- ensure ------------------------------------------------------------------------
    def ensure(self, spec):
        legs = NamespaceLegs(spec.id, self.log, run=self._run)
        made = legs.ensure(spec, up=spec.running)
        ns = legs.netns
        inner = IPRoute(netns=ns, run=self._run)
        br = None if made else inner.link(BRIDGE)
        fresh_bridge = br is None
        if fresh_bridge:
            self.log.act("created bridge %s in %s" % (BRIDGE, ns), inner.ip, "link", "add", BRIDGE,
                         "address", stable_mac("fs", spec.id, BRIDGE), "type", "bridge")
        for leg in LEGS:
            link = None if (made or fresh_bridge) else inner.link(leg)
            if link is None or link.get("master") != BRIDGE:
                self.log.act("joined %s to %s in %s" % (leg, BRIDGE, ns), inner.set_master, leg, BRIDGE)
        if fresh_bridge or not link_is_up(br):
            self.log.act("set %s up in %s" % (BRIDGE, ns), inner.set_up, BRIDGE)
        self._ensure_ruleset(spec, ns, force=fresh_bridge)
        self._ensure_shaping(spec, ns, fresh=made)

    def _ensure_ruleset(self, spec, ns, force=False):
        text, digest, _rules = ruleset(spec)
        nft = Nft(netns=ns, run=self._run)
        ovs = OVSDB(run=self._run)
        if not force:
            listing = nft.list_table("bridge", TABLE, stateless=True)
            match = _DIGEST_RE.search(listing or "")
            recorded = (ovs.get("Port", port_name(spec.id, "left"), "external_ids", EXT + "nft") or "").strip('"')
            if match and match.group(1) == digest:
                if recorded == _listing_digest(listing):
                    return
                self.log.note("the ruleset of %s was changed by hand: reapplying it" % spec.id)
        self.log.act("applied the nftables ruleset of %s (%s, sha256:%s)" % (spec.id, spec.type, digest),
                     nft.apply, text)
        if not self.log.check_mode:
            listing = _listing_digest(nft.list_table("bridge", TABLE, stateless=True))
            ovs.set_external_ids("Port", port_name(spec.id, "left"), {EXT + "nft": listing})

    def _ensure_shaping(self, spec, ns, fresh=False):
        want = None
        if spec.type == "shaper":
            want = spec.params
        for leg in LEGS:
            have = None if fresh else self._root_qdisc(ns, leg)
            if want:
                rate = rate_bytes(want["rate"])
                if not have or have.get("kind") != "tbf" or (have.get("options") or {}).get("rate") != rate:
                    self.log.act("shaped %s of %s to %s (tbf burst %s latency %s)" % (leg, spec.id, want["rate"], want["burst"],
                                                                                      want["latency"]),
                                 self._run, ["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", leg, "root", "tbf",
                                             "rate", want["rate"], "burst", want["burst"], "latency", want["latency"]])
            elif have and have.get("kind") == "tbf" and (have.get("options") or {}).get("rate", 0) < OPEN_RATE_BYTES:
                self.log.act("removed shaping from %s of %s" % (leg, spec.id), self._run,
                             ["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", leg, "root"])
            # a wide open bucket (what a move's hold leaves when it lets go) is left in place: deleting
            # a qdisc drops what it holds at that instant (measured: 1-9 packets per move)

    def _root_qdisc(self, ns, dev):
        res = self._run(["ip", "netns", "exec", ns, "tc", "-j", "qdisc", "show", "dev", dev], check=False)
        if res.rc != 0 or not res.stdout.strip():
            return None
        for qdisc in json.loads(res.stdout):
            if qdisc.get("root"):
                return qdisc
        return None

    # -- remove / counters ----------------------------------------------------------------
    def remove(self, instance, host_bridge):
        NamespaceLegs(instance, self.log, run=self._run).remove(host_bridge)

    def flows(self, instance):
        """Per-flow counters of a monitor instance, from its nftables set."""
        flows = []
        for obj in Nft(netns=netns_name(instance), run=self._run).list_json("bridge", TABLE):
            elements = (obj.get("set") or {}).get("elem") or []
            for elem in elements:
                item = elem.get("elem", elem)
                val = item.get("val", {})
                counter = item.get("counter", {})
                if isinstance(val, dict) and "concat" in val:
                    src, dst, proto, sport, dport = val["concat"]
                    flows.append({"src": src, "dst": dst, "proto": proto, "sport": sport, "dport": dport,
                                  "packets": counter.get("packets", 0), "bytes": counter.get("bytes", 0)})
        return flows


def _canonical(text):
    """A stateless listing without set elements (which change with traffic)."""
    if not text:
        return ""
    return re.sub(r"\n\s*elements = \{[^}]*\}", "", text)


def _listing_digest(text):
    return hashlib.sha256(_canonical(text).encode()).hexdigest()[:16]
