# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processing modules as Click configurations (the Click modular router, userlevel driver).

The configuration is generated here for the built-in types (``wire``, ``firewall``,
``monitor``, ``shaper``, ``classify``), given verbatim (a type's ``click.config``) or generated
from an element graph (``click.elements`` + ``click.connections``). It runs as
``click -R -u click.sock config.click`` under the same supervision as the process kind, in the
instance namespace, with ``left`` and ``right`` as its devices.

* Before anything changes, Click itself checks the configuration: ``click -q`` in a throwaway
  network namespace (``unshare --net``) holding stand-in ``left``/``right`` links. Its message
  names the instance and the line (``fw1.click:4: While configuring 'fw_fwd :: IPFilter' ...``).
* Each instance listens on a ControlSocket (``/run/flowstream/<id>/click.sock``): its element
  counters are read there (:func:`counters`), and a running instance takes a new configuration
  without a restart when it can - through the ``config`` handlers of the elements whose
  arguments changed when nothing else did (every element in one pass: an IPFilter's rules, a
  shaper's rate), else through the driver's ``hotconfig`` handler (a new router swapped in,
  queues carried over); a restart only when Click refuses both. :attr:`ClickKind.reconfigured`
  says which, and why.

The generated configurations share one shape, so every type reports the same counters::

    in_left :: FromDevice(left) -> <the type's work, fwd> -> q_right :: Queue -> out_right :: Counter -> ToDevice(right)
    in_right :: FromDevice(right) -> <the type's work, rev> -> q_left :: Queue -> out_left :: Counter -> ToDevice(left)

Click is built from the pinned source by the project's set-up (``scripts/click.sh``) into
``/opt/flowstream/click``; a host without it fails saying so and how to provide it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile

from ansible_collections.flowstream.platform.plugins.module_utils._catalogue import item_problem
from ansible_collections.flowstream.platform.plugins.module_utils._click_control import ClickControl, ClickControlError
from ansible_collections.flowstream.platform.plugins.module_utils._files import holds, write_atomic
from ansible_collections.flowstream.platform.plugins.module_utils._instance import RUN_DIR, instance_dir
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._kind_process import ProcessKind

DEFAULT_BINARY = "/opt/flowstream/click/bin/click"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_@/]*$")
_DECL = re.compile(r"^([A-Za-z_][A-Za-z0-9_@/]*) :: ([A-Za-z_][A-Za-z0-9_@/]*)(?:\((.*)\))?;$")
MISSING = ("the click binary (Click modular router, userlevel driver) is not installed on this host: Click is "
           "not packaged for Debian 12 or PyPI. The project's set-up builds it from the pinned source into "
           "/opt/flowstream/click (scripts/click.sh; docs/processing-modules.md says how to put it on a module "
           "host), or give its path in the click_binary option (inventory variable flowstream_click_binary)")
DIRECTIONS = (("fwd", "left", "right"), ("rev", "right", "left"))
_UNITS = {"bit": 1 / 8.0, "kbit": 125, "mbit": 125e3, "gbit": 125e6, "bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}
_SIZES = {"b": 1, "": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2}


# -- the built-in types ------------------------------------------------------------------------
class Config:
    """A configuration in the form this module writes: one declaration per line
    (``name :: Class(args);``), then one connection per line. That form is what lets a running
    instance take new arguments through its elements' ``config`` handlers."""

    def __init__(self, instance, type_name):
        self.head = "// flowstream %s: built-in type '%s' for kind click" % (instance, type_name)
        self.decls = []
        self.links = []

    def el(self, name, decl):
        self.decls.append("%s :: %s;" % (name, decl))
        return name

    def link(self, *names):
        self.links.append(" -> ".join(names) + ";")

    def text(self):
        return "\n".join([self.head] + self.decls + self.links) + "\n"


def _two_way(spec, middle, queue=1024, shaper=None):
    """The common shape: for each direction, ``middle(cfg, d, entry, exit_)`` connects the
    FromDevice ``entry`` to the Queue ``exit_`` through the type's elements."""
    cfg = Config(spec.id, spec.type)
    for d, src, dst in DIRECTIONS:
        entry = cfg.el("in_%s" % src, "FromDevice(%s, PROMISC true, SNIFFER true)" % src)
        exit_ = cfg.el("q_%s" % dst, "Queue(%d)" % queue)
        middle(cfg, d, entry, exit_)
        pulled = [exit_]
        if shaper:
            pulled.append(cfg.el("shape_%s" % dst, "BandwidthShaper(%s)" % shaper))
        pulled.append(cfg.el("out_%s" % dst, "Counter"))
        pulled.append(cfg.el("to_%s" % dst, "ToDevice(%s)" % dst))
        cfg.link(*pulled)
    return cfg.text()


def _ip_split(cfg, d, entry, name):
    """IPv4 frames (their IP header marked) on ``name``'s output 0; other frames on ip_<d>[1]."""
    cfg.el("ip_%s" % d, "Classifier(12/0800, -)")
    cfg.el("iph_%s" % d, "MarkIPHeader(14)")
    cfg.link(entry, "ip_%s" % d)
    cfg.link("ip_%s" % d, "iph_%s" % d, name)


_ADDR = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?:/[0-9]{1,2})?"
_PORT = r"[0-9]{1,5}(?:-[0-9]{1,5})?"


def ipfilter_rule(instance, index, rule):
    """One firewall rule as an IPFilter pattern with its output (0 pass, 1 drop).

    Two forms: Click's own (``allow EXPR`` / ``deny EXPR`` / ``drop EXPR``, taken as written), or
    the nftables form the kernel kind takes, for the parts both can do: ``ip saddr|daddr ADDR[/LEN]``,
    ``ip protocol tcp|udp|icmp``, ``tcp|udp sport|dport PORT[-PORT]``, ``counter`` (Click counts
    anyway), and a final ``accept`` or ``drop``."""
    field = "params.rules[%d]" % index
    if not isinstance(rule, str) or not rule.strip() or "\n" in rule or "," in rule:
        raise InstanceError(instance, field, "must be one rule on one line without commas, got %r" % (rule,))
    words = rule.split()
    if words[0] in ("allow", "deny", "drop"):
        return "%d %s" % (0 if words[0] == "allow" else 1, " ".join(words[1:]) or "all")
    if words[-1] not in ("accept", "drop"):
        raise InstanceError(instance, field, "%r ends without a verdict: the click kind takes an nftables rule "
                            "ending in accept or drop, or an IPFilter rule (allow|deny EXPR)" % rule)
    terms, rest = [], " ".join(words[:-1])
    forms = [
        (r"ip (saddr|daddr) (%s)" % _ADDR, lambda m: "%s %s %s" % (
            "src" if m.group(1) == "saddr" else "dst", "net" if "/" in m.group(2) else "host", m.group(2))),
        (r"ip protocol (tcp|udp|icmp)", lambda m: m.group(1)),
        (r"(tcp|udp) (sport|dport) (%s)" % _PORT, _port_term),
        (r"counter", lambda m: None),
    ]
    while rest:
        for pattern, term in forms:
            match = re.match(pattern + r"(?:\s+|$)", rest)
            if match:
                made = term(match)
                if made:
                    terms.append(made)
                rest = rest[match.end():]
                break
        else:
            raise InstanceError(instance, field, "the click kind cannot translate %r of %r: it takes ip saddr/daddr "
                                "ADDR[/LEN], ip protocol tcp|udp|icmp, tcp|udp sport|dport PORT[-PORT], counter, then "
                                "accept or drop - or write the rule in IPFilter's own form (allow|deny EXPR)" % (rest, rule))
    return "%d %s" % (0 if words[-1] == "accept" else 1, " && ".join(terms) or "all")


def _port_term(match):
    proto, which, port = match.group(1), "src" if match.group(2) == "sport" else "dst", match.group(3)
    if "-" in port:
        low, high = port.split("-")
        return "%s && %s port >= %s && %s port <= %s" % (proto, which, low, which, high)
    return "%s && %s port %s" % (proto, which, port)


def firewall_config(spec):
    rules = [ipfilter_rule(spec.id, i, r) for i, r in enumerate(spec.params["rules"])]
    last = "%d all" % (0 if spec.params["policy"] == "accept" else 1)

    def middle(cfg, d, entry, exit_):
        fw = cfg.el("fw_%s" % d, "IPFilter(%s)" % ", ".join(rules + [last]))
        denied = cfg.el("denied_%s" % d, "Counter")
        cfg.el("drop_%s" % d, "Discard")
        _ip_split(cfg, d, entry, fw)
        cfg.link(fw, exit_)
        cfg.link("%s [1]" % fw, denied, "drop_%s" % d)
        # frames that are not IPv4 (ARP) take the policy, as in the kernel kind's bridge table
        cfg.link("ip_%s [1]" % d, exit_ if spec.params["policy"] == "accept" else denied)
    return _two_way(spec, middle)


def classify_config(spec):
    """The quick filter of flow splitting: IPClassifier expressions; a match is marked (DSCP),
    dropped or only counted; everything else passes."""
    exprs = spec.params["match"]
    for index, expr in enumerate(exprs):
        problem = item_problem("ipclassifier", expr)   # checked on the controller too (the catalogue's items)
        if problem:
            raise InstanceError(spec.id, "params.match[%d]" % index, problem)
    action = spec.params["action"]

    def middle(cfg, d, entry, exit_):
        cl = cfg.el("cl_%s" % d, "IPClassifier(%s, -)" % ", ".join(e.strip() for e in exprs))
        hits = cfg.el("hits_%s" % d, "Counter")
        _ip_split(cfg, d, entry, cl)
        cfg.link("ip_%s [1]" % d, exit_)
        for port in range(len(exprs)):
            cfg.link("%s [%d]" % (cl, port), hits)
        cfg.link("%s [%d]" % (cl, len(exprs)), exit_)
        if action == "mark":
            cfg.link(hits, cfg.el("dscp_%s" % d, "SetIPDSCP(%d)" % spec.params["dscp"]), exit_)
        elif action == "drop":
            cfg.link(hits, cfg.el("drop_%s" % d, "Discard"))
        else:
            cfg.link(hits, exit_)
    return _two_way(spec, middle)


def monitor_config(spec):
    def middle(cfg, d, entry, exit_):
        cfg.link(entry, cfg.el("count_%s" % d, "Counter"), exit_)
    return _two_way(spec, middle)


def _bytes_per_second(rate):
    match = re.match(r"^([0-9.]+)([a-z]+)$", rate)
    return int(round(float(match.group(1)) * _UNITS[match.group(2)]))


def shaper_config(spec):
    """A BandwidthShaper paces each direction at the rate (Click's shaper sends smoothly: no
    burst above the rate); burst and latency size the queue in front of it, as tc tbf's limit."""
    rate = _bytes_per_second(spec.params["rate"])
    burst = re.match(r"^([0-9]+)([a-z]*)$", spec.params["burst"])
    burst_bytes = int(burst.group(1)) * _SIZES[burst.group(2)]
    latency = re.match(r"^([0-9]+)(us|ms|s)$", spec.params["latency"])
    seconds = int(latency.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[latency.group(2)]
    queue = max(64, int(math.ceil((rate * seconds + burst_bytes) / 1500.0)))

    def middle(cfg, d, entry, exit_):
        cfg.link(entry, exit_)
    return _two_way(spec, middle, queue=queue, shaper="%dBps" % rate)


def wire_config(spec):
    return _two_way(spec, lambda cfg, d, entry, exit_: cfg.link(entry, exit_))


BUILT_IN = {"wire": wire_config, "firewall": firewall_config, "monitor": monitor_config, "shaper": shaper_config,
            "classify": classify_config}


def graph_config(instance, graph):
    """Click language from an element graph: ``elements`` {name: "Class(args)"} and
    ``connections`` [[from, to] or [from, out_port, in_port, to]]."""
    elements = graph.get("elements") or {}
    connections = graph.get("connections") or []
    if not isinstance(elements, dict) or not elements:
        raise InstanceError(instance, "click.elements", "needs at least one element: {name: 'Class(args)'}")
    lines = []
    for name, decl in sorted(elements.items()):
        if not _NAME.match(str(name)):
            raise InstanceError(instance, "click.elements.%s" % name, "is not a valid Click element name")
        if not isinstance(decl, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_@/]*(\(.*\))?$", decl.strip(), re.S):
            raise InstanceError(instance, "click.elements.%s" % name, "must be 'Class(arguments)', got %r" % (decl,))
        lines.append("%s :: %s;" % (name, decl.strip()))
    for index, conn in enumerate(connections):
        if not isinstance(conn, list) or len(conn) not in (2, 4):
            raise InstanceError(instance, "click.connections[%d]" % index, "must be [from, to] or [from, out, in, to]")
        src, dst = conn[0], conn[-1]
        for end in (src, dst):
            if end not in elements:
                raise InstanceError(instance, "click.connections[%d]" % index,
                                    "names element '%s', which click.elements does not define" % end)
        if len(conn) == 2:
            lines.append("%s -> %s;" % (src, dst))
        else:
            lines.append("%s [%d] -> [%d] %s;" % (src, int(conn[1]), int(conn[2]), dst))
    return "\n".join(lines) + "\n"


def config_for(spec):
    click = spec.definition.get("click") or {}
    if click.get("config"):
        return str(click["config"]).rstrip("\n") + "\n"
    if click.get("elements"):
        return graph_config(spec.id, click)
    if spec.type in BUILT_IN:
        return BUILT_IN[spec.type](spec)
    raise InstanceError(spec.id, "type", "type '%s' has no Click configuration" % spec.type)


def _param_at_fault(spec, message):
    """The parameter a refusal of a built-in type's configuration is about: Click numbers an
    IPFilter's or IPClassifier's patterns as the rules or expressions were given."""
    match = re.search(r"While configuring '(fw|cl)_[a-z]+ :: [A-Za-z]+':\s*\|\s*pattern ([0-9]+):", message)
    if match:
        name = "rules" if match.group(1) == "fw" else "match"
        if int(match.group(2)) < len(spec.params.get(name) or []):
            return "params.%s[%s]" % (name, match.group(2))
    return "params"


def config_path(instance):
    return "%s/config.click" % instance_dir(instance)


def socket_path(instance):
    return "%s/%s/click.sock" % (RUN_DIR, instance)


def declarations(text):
    """({name: (class, args)}, [other lines]) of a configuration in the one-declaration-per-line
    form, or None when some line is not in that form."""
    decls, rest = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        match = _DECL.match(line)
        if match:
            decls[match.group(1)] = (match.group(2), match.group(3) or "")
        elif "::" in line:
            return None
        else:
            rest.append(line)
    return decls, rest


def argument_changes(old, new):
    """{element: new args} when ``new`` differs from ``old`` only in elements' arguments (same
    elements, classes and connections), else None."""
    a, b = declarations(old), declarations(new)
    if a is None or b is None or a[1] != b[1] or set(a[0]) != set(b[0]):
        return None
    if any(a[0][name][0] != b[0][name][0] for name in a[0]):
        return None
    return {name: b[0][name][1] for name in sorted(b[0]) if a[0][name][1] != b[0][name][1]}


# -- counters read over the control socket ------------------------------------------------------------
COUNTER_HANDLERS = ("count", "byte_count", "drops", "kernel_drops", "length")  # kernel_drops: see _kernel_drop_totals


def counters(instance, timeout=3.0):
    """{elements: {name: {handler: int}}, packets_in, packets_out, dropped} of a running instance,
    read over its control socket; None when it does not answer. ``packets_in`` adds the
    FromDevice counts, ``packets_out`` the ``out_<leg>`` Counters (the generated configurations'
    names; an operator's configuration reports them when it uses the same names), ``dropped``
    the queues' drops, what the packet sockets dropped (``kernel_drops``) and the
    ``denied_*``/``drop*`` counters."""
    try:
        with ClickControl(socket_path(instance), timeout=timeout) as ctl:
            elements = {}
            for name in ctl.elements():
                handlers = ctl.read("%s.handlers" % name).split()
                values = {}
                for handler in handlers:
                    handler = handler.split("\t")[0]
                    if handler in COUNTER_HANDLERS:
                        try:
                            values[handler] = int(float(ctl.read("%s.%s" % (name, handler)).strip() or 0))
                        except (ClickControlError, ValueError):
                            continue
                values["class"] = ctl.read("%s.class" % name).strip()
                if len(values) > 1:
                    elements[name] = values
    except (ClickControlError, OSError):
        return None
    _kernel_drop_totals(instance, elements)
    summary = {"elements": elements, "packets_in": 0, "packets_out": 0, "dropped": 0}
    for name, values in elements.items():
        if values["class"] == "FromDevice":
            summary["packets_in"] += values.get("count", 0)
        elif name.startswith("out_") and values["class"] == "Counter":
            summary["packets_out"] += values.get("count", 0)
        elif (name.startswith("denied_") or name.startswith("drop")) and values["class"] == "Counter":
            summary["dropped"] += values.get("count", 0)
        summary["dropped"] += values.get("drops", 0) + values.get("kernel_drops", 0)
    return summary


def _kernel_drop_totals(instance, elements):
    """A FromDevice's ``kernel_drops`` is the packet socket's PACKET_STATISTICS, which the kernel
    clears at every read: the reads are added up in ``kernel-drops.json`` beside the instance, so
    the report says what the sockets dropped since the instance was made."""
    path = "%s/%s/kernel-drops.json" % (RUN_DIR, instance)
    try:
        with open(path, encoding="utf-8") as handle:
            totals = json.load(handle)
    except (OSError, ValueError):
        totals = {}
    seen = {name: values["kernel_drops"] for name, values in elements.items() if "kernel_drops" in values}
    for name, dropped in seen.items():
        totals[name] = int(totals.get(name, 0)) + dropped
        elements[name]["kernel_drops"] = totals[name]
    if any(seen.values()) or (seen and not os.path.exists(path)):
        try:
            write_atomic(path, json.dumps(totals, sort_keys=True) + "\n", 0o644)
        except OSError:
            pass


class ClickKind(ProcessKind):
    name = "click"

    def __init__(self, log, run=None, python=None, binary=None):
        kwargs = {"python": python}
        if run is not None:
            kwargs["run"] = run
        super().__init__(log, **kwargs)
        self.binary = binary
        self.reconfigured = None

    def find_binary(self):
        if self.binary:
            return self.binary if os.access(self.binary, os.X_OK) else None
        return shutil.which("click") or (DEFAULT_BINARY if os.access(DEFAULT_BINARY, os.X_OK) else None)

    def argv(self, spec):
        return [self.find_binary() or "click", "-R", "-u", socket_path(spec.id), config_path(spec.id)]

    def validate(self, spec):
        text = config_for(spec)
        if not self.find_binary():
            raise InstanceError(spec.id, "kind", MISSING)
        own = (spec.definition.get("click") or {})
        if own.get("config") or own.get("elements"):
            self.check_config(spec.id, text)
            return
        try:
            self.check_config(spec.id, text, "params")
        except InstanceError as exc:
            raise InstanceError(spec.id, _param_at_fault(spec, exc.message), exc.message) from exc

    def check_config(self, instance, text, field="click.config"):
        """Click's own verdict on ``text``: every element configured and initialised (``click
        -q``) in a network namespace of its own that ends with the check, whose ``left`` and
        ``right`` are a veth pair. Nothing on the host changes."""
        folder = tempfile.mkdtemp(prefix="flowstream-click-check-")
        try:
            path = os.path.join(folder, "%s.click" % instance)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            script = ("ip link add left type veth peer name right && ip link set left up && ip link set right up "
                      "&& exec \"$0\" -q \"$1\"")
            result = self._run(["unshare", "--net", "sh", "-c", script, self.find_binary(), path], check=False, timeout=30)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if result.rc != 0:
            said = (result.stderr or result.stdout or "").replace(folder + "/", "")
            words = " | ".join(line.strip() for line in said.splitlines() if line.strip() and "could not be initialized" not in line)
            raise InstanceError(instance, field, "Click refuses the configuration: %s" % (words or "rc %d" % result.rc))

    def ensure(self, spec, argv=None):
        self.validate(spec)
        text = config_for(spec)
        path = config_path(spec.id)
        self.reconfigured = None
        old = None
        previous = None
        if not holds(path, text):
            try:
                with open(path, encoding="utf-8") as handle:
                    old = handle.read()
            except OSError:
                old = None
            if not os.path.isdir(instance_dir(spec.id)):
                self.log.act("created %s" % instance_dir(spec.id), os.makedirs, instance_dir(spec.id), 0o755, True)
            self.log.act("wrote the Click configuration %s" % path, write_atomic, path, text, 0o644)
            state = self.status(spec.id)
            if old is not None and state["running"] and spec.running and state.get("argv") == self.argv(spec):
                self.reconfigure(spec.id, old, text)
            elif state["running"]:
                self.log.act("stopped click of %s for its new configuration" % spec.id, self.stop, spec.id)
                self.reconfigured = {"how": "restart", "why": "it ran without a control socket of this version"}
            if old is not None and state["running"] and spec.running and state.get("argv") and not self.status(spec.id)["running"]:
                # (stopped for the new configuration: if that one does not stay up, the old one
                # runs again - its file put back first)
                previous = {"argv": state["argv"], "restore": lambda: write_atomic(path, old, 0o644)}
        super().ensure(spec, argv=self.argv(spec), previous=previous)

    def reconfigure(self, instance, old, new):
        """A running instance takes ``new``: its elements' config handlers when only arguments
        changed, else hotconfig, else (Click refused both) a restart."""
        changes = argument_changes(old, new)
        why = "its elements or connections changed" if changes is None else None
        if changes:
            try:
                self.log.act("reconfigured %s live through the config handlers of %s" % (instance, ", ".join(sorted(changes))),
                             self._write_handlers, instance, changes)
                self.reconfigured = {"how": "handlers", "elements": sorted(changes)}
                return
            except ClickControlError as exc:
                why = "an element refused its new arguments live (%s)" % exc.message
        try:
            self.log.act("swapped the new configuration into the running %s (hotconfig)" % instance,
                         self._hotconfig, instance, new)
            self.reconfigured = {"how": "hotconfig", "why": why}
            return
        except ClickControlError as exc:
            why = "%s; hotconfig refused it too (%s)" % (why, exc.message) if why else "hotconfig refused it (%s)" % exc.message
        self.log.act("stopped click of %s to restart with its new configuration: %s" % (instance, why), self.stop, instance)
        self.reconfigured = {"how": "restart", "why": why}

    def _write_handlers(self, instance, changes):
        with ClickControl(socket_path(instance)) as ctl:
            for name, args in sorted(changes.items()):
                ctl.write("%s.config" % name, args)

    def _hotconfig(self, instance, text):
        with ClickControl(socket_path(instance), timeout=15) as ctl:
            ctl.write("hotconfig", text)

    def counters(self, instance):
        return counters(instance) if self.status(instance)["running"] else None


__all__ = ["ClickKind", "config_for", "counters", "DEFAULT_BINARY"]
