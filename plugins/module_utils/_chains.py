# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service chains: the description operators write, validated as a whole, and the names
(instance ids, cookies) that the planner and the compiler derive from it.

A chain takes the traffic that matches ``match`` entering the switch at the uplink ``from``,
passes it through its ``steps`` in order, and lets it leave at the uplink ``to``; the reverse
direction of the same connections takes the steps in reverse order. Schema:
docs/service-chains.md. Pure Python: no I/O.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import re

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue


class ChainError(Exception):
    """A chain description is wrong: names the chain, the step and the field."""

    def __init__(self, chain, step, field, message):
        self.chain = chain
        self.step = step
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = "chain '%s'" % self.chain if self.chain else "chains"
        if self.step is not None:
            where += ": step '%s'" % self.step
        if self.field:
            where += ": %s" % self.field
        return "%s: %s" % (where, self.message)


class ChainErrors(ChainError):
    """Several problems: the first of each step and of each chain, one per line."""

    def __init__(self, errors):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.chain, first.step, first.field, first.message)

    def __str__(self):
        return "%d problems in the chains:\n%s" % (len(self.errors), "\n".join(str(e) for e in self.errors))


def _raise_all(errors):
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ChainErrors(errors)


def _flatten(exc):
    return exc.errors if isinstance(exc, ChainErrors) else [exc]


NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}\Z")  # \Z, not $: "web\n" is no name
CHAIN_KEYS = {"name", "state", "switch", "match", "from", "to", "steps", "cookie", "priority", "description", "verify", "tag",
              "restore_priority", "fail_mode"}
# a failover short of capacity restores chains whole, highest restore_priority first (ties: the
# description's order); a chain it cannot restore is held, its traffic per its fail_mode
RESTORE_PRIORITY_RANGE = (0, 1000)
DEFAULT_RESTORE_PRIORITY = 500
FAIL_MODES = ("closed", "open")
STEP_KEYS = {"name", "type", "kind", "params", "instances", "blackbox", "split", "only_split", "vm", "apart", "trial", "spare"}
TRIAL_KEYS = {"type", "kind", "params", "instances", "percent", "vm"}
VM_KEYS = ("image", "memory", "vcpus")
# a chain's verify section (deploy-chain's probe): each key, and the whole numbers it may be
VERIFY_LIMITS = {"rate": (1, 10000000), "flows": (1, 4096), "duration": (1, 3600), "base_port": (1, 65535),
                 "max_lost": (0, 2 ** 31 - 1), "max_reordered": (0, 2 ** 31 - 1)}
# a trial's candidate instances are a step of their own, named after the step they try out with
# this suffix ('~' is no letter of a step name, so it names nothing else)
TRIAL_SUFFIX = "~trial"
# a step's warm spare (``spare: warm``) is a step of its own too: one standby instance of the
# step's module, on a host apart from the step's instances, behind fast-failover groups
SPARE_SUFFIX = "~spare"
SPARES = ("warm", "none")
SPLIT_KEYS = {"to", "match"}
# OpenFlow match fields a chain may use (ovs-ofctl names); the reverse direction swaps the
# source/destination pairs.
MATCH_FIELDS = {
    "ip": None, "tcp": None, "udp": None, "icmp": None, "sctp": None,
    "nw_src": "nw_dst", "nw_dst": "nw_src", "ip_src": "ip_dst", "ip_dst": "ip_src",
    "tp_src": "tp_dst", "tp_dst": "tp_src", "tcp_src": "tcp_dst", "tcp_dst": "tcp_src",
    "udp_src": "udp_dst", "udp_dst": "udp_src", "nw_proto": None, "ip_proto": None,
    "nw_tos": None, "ip_dscp": None, "nw_ecn": None, "ip_ecn": None, "dl_src": "dl_dst", "dl_dst": "dl_src",
}
PROTO_WORDS = ("ip", "tcp", "udp", "icmp", "sctp")
# what each match field's value may be (ovs-ofctl(8)): a port or value/mask, a small number, an
# IPv4 address with an optional prefix length or (any) mask, a MAC address with an optional mask
PORT_FIELDS = ("tp_src", "tp_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst")
ADDRESS_FIELDS = ("nw_src", "nw_dst", "ip_src", "ip_dst")
MAC_FIELDS = ("dl_src", "dl_dst")
NUMBER_FIELDS = {"nw_proto": 255, "ip_proto": 255, "nw_tos": 255, "ip_dscp": 63, "nw_ecn": 3, "ip_ecn": 3}
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
COOKIE_OWNER = 0xF5C0  # top 16 bits of every chain cookie: "flowstream chain"


def _key_name(key):
    """How an error names a key of the description: as written, or its repr when that would not
    show (a key that is no text - YAML makes ints, bools and null keys too -, empty, or not printable)."""
    return key if isinstance(key, str) and key and key.isprintable() else repr(key)


def suggest(word, known):
    close = difflib.get_close_matches(str(word), sorted(known), n=1)
    return " (did you mean '%s'?)" % close[0] if close else ""


def chain_cookie(name):
    """The chain's 64-bit cookie: 0xF5C0 in the top 16 bits, a hash of the name below."""
    low = int.from_bytes(hashlib.sha256(("chain:" + name).encode()).digest()[:6], "big")
    return (COOKIE_OWNER << 48) | low


TAG_RE = re.compile(r"^[a-z][a-z0-9]{0,5}\Z")


def chain_short(name, tag=None):
    """A short, stable tag of the chain for instance ids: the chain's own ``tag``, or up to 3
    letters of its name and 3 hex digits of a hash of it (validate() refuses two chains with the
    same short tag, naming both)."""
    if tag:
        return tag
    letters = re.sub(r"[^a-z0-9]", "", name)[:3] or "c"
    if not letters[0].isalpha():
        letters = "c" + letters[:2]
    return letters + hashlib.sha256(name.encode()).hexdigest()[:3]


def _b36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


MAX_STEPS = 36
MAX_INSTANCES = 1000
# a parallel step's fixed hash slots (_compiler.SLOTS: 256 makes a trial's share a multiple of
# 0.39 %, 1 % is 3 slots, and evens the instances' shares out - bench/slices.py), each owned by
# one instance: a step of more instances than slots would leave some without a flow
STEP_SLOTS = 256
# a VM's vcpus and memory (MiB): whole numbers libvirt takes (and the planner's floats hold)
VM_SIZE_MAX = 2 ** 31 - 1


def instance_id(chain, step_index, n, tag=None):
    """The id of instance ``n`` of step ``step_index`` of ``chain``: at most 10 characters, a
    valid processing-module instance id, the same on every run (e.g. 'web3f0a'): the chain's
    short tag, the step as one base-36 digit, the instance as a letter (a-z for the first 26)
    or 'z' and base-36 digits after that."""
    if not 0 <= step_index < MAX_STEPS or not 0 <= n < MAX_INSTANCES:
        raise ValueError("step %d / instance %d out of range" % (step_index, n))
    return "%s%s%s" % (chain_short(chain, tag), _b36(step_index), chr(97 + n) if n < 26 else "z" + _b36(n - 26))


def leg_port(instance, leg):
    """The host-bridge port of an instance's leg (``left``/``right``): ``fs-<id>-l``/``fs-<id>-r``."""
    return "fs-%s-%s" % (instance, leg[0])


def reverse_match(match):
    """The match of the reverse direction: source and destination fields swapped."""
    out = {}
    for key, value in match.items():
        other = MATCH_FIELDS.get(key)
        out[other or key] = value
    return out


def match_text(match):
    """ovs-ofctl text of a match mapping, deterministic ({'tcp': True, 'tp_dst': 80} -> 'tcp,tp_dst=80')."""
    words = [k for k in PROTO_WORDS if match.get(k) is True]
    fields = ["%s=%s" % (k, match[k]) for k in sorted(match) if k not in PROTO_WORDS]
    return ",".join(words + fields)


def _number(value, high):
    """``value`` (an int, or text in any base int() reads with prefix: 80, "0x50") if it is a whole
    number from 0 to ``high``; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip(), 0)
        except ValueError:
            return None
    return value if isinstance(value, int) and 0 <= value <= high else None


def _mask_of(text, check):
    """Whether ``text`` is ``value`` or ``value/mask`` with both parts passing ``check``."""
    value, slash, mask = text.partition("/")
    return check(value) and (not slash or check(mask))


def _ipv4(text):
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _check_verify(chain, verify):
    """A chain's verify section: known keys, each a number in its range; base_port required (the
    probe's destination ports start there)."""
    for key, value in verify.items():
        if key not in VERIFY_LIMITS:
            raise ChainError(chain, None, "verify.%s" % _key_name(key), "is not a verify setting%s (known: %s)"
                             % (suggest(key, VERIFY_LIMITS), ", ".join(sorted(VERIFY_LIMITS))))
        low, high = VERIFY_LIMITS[key]
        number = key in ("rate", "duration") and isinstance(value, float) and low <= value <= high  # (NaN: not)
        if not number and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            raise ChainError(chain, None, "verify." + key, "must be a %s from %d to %d, got %r"
                             % ("number" if key in ("rate", "duration") else "whole number", low, high, value))
    if verify and "base_port" not in verify:
        raise ChainError(chain, None, "verify.base_port", "is required: the first of the chain's destination ports the probe "
                         "sends to (inside the chain's match)")


def match_value_problem(key, value):
    """What is wrong with the value of match field ``key`` (None: nothing)."""
    if key in PORT_FIELDS:
        masked = isinstance(value, str) and "/" in value and _mask_of(value, lambda p: _number(p, 0xFFFF) is not None)
        fine = _number(value, 0xFFFF) is not None or masked
        return None if fine else "must be a port from 0 to 65535, or port/mask (e.g. 80 or \"0x1f40/0xffc0\"), got %r" % (value,)
    if key in NUMBER_FIELDS:
        high = NUMBER_FIELDS[key]
        return None if _number(value, high) is not None else "must be a whole number from 0 to %d, got %r" % (high, value)
    if key in ADDRESS_FIELDS:
        address, slash, mask = value.partition("/") if isinstance(value, str) else ("", "", "")
        fine = _ipv4(address) and (not slash or _ipv4(mask) or (mask.isdigit() and int(mask) <= 32))
        return None if fine else ("must be an IPv4 address as text, with a prefix length or mask if you like (e.g. "
                                  "198.18.1.2, 198.18.0.0/15 or 198.18.0.0/255.254.0.0), got %r" % (value,))
    if key in MAC_FIELDS:
        fine = isinstance(value, str) and _mask_of(value, lambda p: MAC_RE.match(p) is not None)
        return None if fine else "must be a MAC address, with a mask if you like (e.g. 02:00:00:00:00:01), got %r" % (value,)
    return None


def _check_match(chain, step, field, match):
    if not isinstance(match, dict) or not match:
        raise ChainError(chain, step, field, "must be a mapping of OpenFlow match fields, e.g. {ip: true, nw_dst: 198.18.1.2}")
    for key, value in match.items():
        if key not in MATCH_FIELDS:
            raise ChainError(chain, step, "%s.%s" % (field, key), "is not an OpenFlow match field this platform steers on%s "
                             "(known: %s)" % (suggest(key, MATCH_FIELDS), ", ".join(sorted(MATCH_FIELDS))))
        if key in PROTO_WORDS and value is not True:
            raise ChainError(chain, step, "%s.%s" % (field, key), "is a protocol word: write %s: true" % key)
        if key not in PROTO_WORDS and (isinstance(value, (bool, dict, list)) or value is None or str(value) == ""):
            raise ChainError(chain, step, "%s.%s" % (field, key), "needs a value, got %r" % (value,))
        problem = None if key in PROTO_WORDS else match_value_problem(key, value)
        if problem:
            raise ChainError(chain, step, "%s.%s" % (field, key), problem)
    if not any(match.get(p) is True for p in PROTO_WORDS):
        raise ChainError(chain, step, field, "must name the protocol (ip, tcp, udp, icmp or sctp: true): a chain "
                         "steers IP connections, and parallel steps hash their 5-tuple")


def validate(chains, catalogue=None, switches=None, blackboxes=None):
    """Validate every chain description; return them normalised (defaults filled in).

    ``switches``: {switch: {"uplinks": {name: port}}}; ``blackboxes``: {name: {"switch": s, "ports": {...}}};
    ``catalogue``: the operator's types. Every error names the chain, the step and the field.
    Raises ChainError for one problem, ChainErrors (one line each) for the first problem of
    every step and every chain that has one.
    """
    if not isinstance(chains, list):
        raise ChainError(None, None, "flowstream_chains", "must be a list of chains")
    try:
        types = _catalogue.merged(catalogue or {})
    except Exception as exc:  # InstanceError: the operator's catalogue itself is wrong
        raise ChainError(None, None, "flowstream_catalogue" + ("." + exc.field.split(".", 1)[-1] if getattr(exc, "field", None) else ""),
                         getattr(exc, "message", str(exc))) from exc
    switches = switches or {}
    blackboxes = blackboxes or {}
    seen = {}
    shorts = {}
    out = []
    errors = []
    for index, chain in enumerate(chains):
        try:
            if not isinstance(chain, dict):
                raise ChainError(None, None, "flowstream_chains[%d]" % index, "must be a mapping")
            name = _check_named(chain, index, seen, CHAIN_KEYS, "chain")
            state = chain.get("state", "present")
            if state not in ("present", "absent"):
                raise ChainError(name, None, "state", "must be present or absent, got %r" % (state,))
            tag = chain.get("tag")
            if tag is not None and (not isinstance(tag, str) or not TAG_RE.match(tag)):
                raise ChainError(name, None, "tag", "a tag is 1-6 of a-z and 0-9, starting with a letter (it starts the "
                                 "chain's instance ids), got %r" % (tag,))
            short = chain_short(name, tag)
            if short in shorts:
                raise ChainError(name, None, "tag", "chain '%s' already has the short tag '%s' that starts instance ids; "
                                 "give one of the two its own tag (tag: <1-6 of a-z0-9>)" % (shorts[short], short))
            shorts[short] = name
            if chain.get("verify") and not isinstance(chain["verify"], dict):
                raise ChainError(name, None, "verify", "must be a mapping (deploy-chain's probe: rate, flows, duration, "
                                 "base_port ...), got %r" % (chain["verify"],))
            _check_verify(name, chain.get("verify") or {})
            norm = {"name": name, "state": state, "cookie": chain_cookie(name), "description": chain.get("description", ""),
                    "verify": dict(chain.get("verify") or {}), "tag": tag}
            if "cookie" in chain:
                cookie = chain["cookie"]
                if isinstance(cookie, str):
                    try:
                        cookie = int(cookie, 0)
                    except ValueError:
                        cookie = None
                if not isinstance(cookie, int) or cookie >> 48 != COOKIE_OWNER:
                    raise ChainError(name, None, "cookie", "must be a 64-bit cookie with 0x%X in its top 16 bits (the chains' "
                                     "cookie space), got %r" % (COOKIE_OWNER, chain["cookie"]))
                norm["cookie"] = cookie
            if state == "absent":
                out.append(norm)
                continue
            switch = chain.get("switch") or (sorted(switches)[0] if len(switches) == 1 else None)
            if not isinstance(switch, str) or switch not in switches:
                raise ChainError(name, None, "switch", "names switch %r, which the platform does not have (known: %s)"
                                 % (switch, ", ".join(sorted(switches)) or "none"))
            norm["switch"] = switch
            uplinks = switches[switch].get("uplinks") or {}
            for end in ("from", "to"):
                if not isinstance(chain.get(end), str) or chain.get(end) not in uplinks:
                    raise ChainError(name, None, end, "must name an uplink of switch %s%s (known: %s)"
                                     % (switch, suggest(chain.get(end), uplinks), ", ".join(sorted(uplinks)) or "none"))
                norm[end] = chain[end]
            if chain["from"] == chain["to"]:
                raise ChainError(name, None, "to", "traffic enters and leaves at the same uplink %s" % chain["to"])
            _check_match(name, None, "match", chain.get("match"))
            norm["match"] = dict(chain["match"])
            priority = chain.get("priority", 100)
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 60000:
                raise ChainError(name, None, "priority", "must be 1..60000 (more specific chains want higher), got %r" % (priority,))
            norm["priority"] = priority
            restore = chain.get("restore_priority", DEFAULT_RESTORE_PRIORITY)
            if isinstance(restore, bool) or not isinstance(restore, int) or \
                    not RESTORE_PRIORITY_RANGE[0] <= restore <= RESTORE_PRIORITY_RANGE[1]:
                raise ChainError(name, None, "restore_priority", "must be %d..%d (a failover short of capacity restores the "
                                 "highest first; default %d), got %r" % (RESTORE_PRIORITY_RANGE + (DEFAULT_RESTORE_PRIORITY, restore)))
            norm["restore_priority"] = restore
            fail_mode = chain.get("fail_mode", FAIL_MODES[0])
            if fail_mode not in FAIL_MODES:
                raise ChainError(name, None, "fail_mode", "must be closed (traffic of a chain a failover cannot restore is "
                                 "dropped) or open (it goes from uplink to uplink past the steps), got %r" % (fail_mode,))
            norm["fail_mode"] = fail_mode
            norm["steps"] = _validate_steps(name, chain.get("steps"), types, blackboxes, switch)
            out.append(norm)
        except ChainError as exc:
            errors.extend(_flatten(exc))
            if exc.step is None and not str(exc.field or "").startswith("steps") and isinstance(chain, dict) \
                    and isinstance(chain.get("name"), str) and chain.get("state", "present") == "present":
                # the chain's own fields are wrong: its steps are checked all the same (one run, every problem)
                guess = chain.get("switch") or (sorted(switches)[0] if len(switches) == 1 else None)
                try:
                    _validate_steps(chain["name"], chain.get("steps"), types, blackboxes, guess)
                except ChainError as more:
                    errors.extend(_flatten(more))
    _raise_all(errors)
    return out


def _check_named(item, index, seen, keys, what, chain=None):
    """A chain's (``chain`` None) or a chain's step's name - well formed, unique among its kind
    (``seen``: name -> index) - and keys; returns the name."""
    name = item.get("name")

    def error(field, message, label=name):
        return ChainError(label, None, field, message) if chain is None else ChainError(chain, label, field, message)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise error("name", "a %s name is 1-32 characters, a-z, 0-9 and '-', starting with a letter" % what,
                    name if chain is None or isinstance(name, str) else index)
    if name in seen:
        raise error("name", "is used by %ss %d and %d" % (what, seen[name], index))
    seen[name] = index
    unknown = sorted(_key_name(k) for k in set(item) - keys)
    if unknown:
        raise error(unknown[0], "unknown key%s (known: %s)" % (suggest(unknown[0], keys), ", ".join(sorted(keys))))
    return name


def _module_of(chain, sname, spec, types, prefix):
    """kind, type, params, resources (and vm) of a step's processing module - or of its trial's
    candidate (``prefix`` 'trial.': the fields named so in errors)."""
    kind = spec.get("kind")
    type_name = spec.get("type")
    if type_name is None:
        raise ChainError(chain, sname, prefix + "type", "is required (a catalogue type)%s"
                         % ("" if prefix else " unless the step is a blackbox"))
    if not isinstance(type_name, str):
        raise ChainError(chain, sname, prefix + "type", "must name a catalogue type (the catalogue has: %s), got %r"
                         % (", ".join(sorted(types)), type_name))
    if kind is None:
        raise ChainError(chain, sname, prefix + "kind", "is required (kernel, process, click or vm)")
    if spec.get("params") and not isinstance(spec["params"], dict):
        raise ChainError(chain, sname, prefix + "params", "must be a mapping of the type's parameters, got %r" % (spec["params"],))
    odd = sorted(_key_name(k) for k in spec.get("params") or {} if not isinstance(k, str))
    if odd:
        raise ChainError(chain, sname, prefix + "params." + odd[0], "is no parameter name (a type's parameters are named in text)")
    try:
        params = _catalogue.resolve(types, sname, type_name, kind, spec.get("params"))
    except Exception as exc:  # InstanceError from the catalogue, re-said for the chain
        field = getattr(exc, "field", None) or "type"
        raise ChainError(chain, sname, prefix + field, getattr(exc, "message", str(exc))) from exc
    if kind == "blackbox":
        raise ChainError(chain, sname, prefix + "kind", "write blackbox: <name> for a black-box step")
    count = spec.get("instances", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= STEP_SLOTS:
        raise ChainError(chain, sname, prefix + "instances", "must be a whole number from 1 to %d (a step's flows hash into %d slots, "
                         "each instance owns some), got %r" % (STEP_SLOTS, STEP_SLOTS, count))
    out = {"kind": kind, "type": type_name, "instances": count, "blackbox": None, "params": params,
           "resources": dict(types[type_name].get("resources") or {})}
    if kind == "vm":
        if spec.get("vm") and not isinstance(spec["vm"], dict):
            raise ChainError(chain, sname, prefix + "vm", "must be a mapping (image, memory, vcpus), got %r" % (spec["vm"],))
        for key in spec.get("vm") or {}:
            if key not in VM_KEYS:
                raise ChainError(chain, sname, prefix + "vm.%s" % _key_name(key), "is not a VM setting%s (known: %s)"
                                 % (suggest(key, VM_KEYS), ", ".join(VM_KEYS)))
        vm = dict(types[type_name].get("vm") or {})
        vm.update(spec.get("vm") or {})
        if "image" in vm and (not isinstance(vm["image"], dict) or not vm["image"]):
            raise ChainError(chain, sname, prefix + "vm.image", "must be a mapping: kernel and initrd (and cmdline), or disk "
                             "(and format), got %r" % (vm["image"],))
        for key in ("vcpus", "memory"):
            if key in vm and (isinstance(vm[key], bool) or not isinstance(vm[key], int) or not 1 <= vm[key] <= VM_SIZE_MAX):
                raise ChainError(chain, sname, prefix + "vm." + key, "must be a whole number of %s from 1 to %d, got %r"
                                 % ("virtual CPUs" if key == "vcpus" else "MiB", VM_SIZE_MAX, vm[key]))
        out["resources"] = {"cpu": float(vm.get("vcpus", 1)), "memory": float(vm.get("memory", 96))}
        out["vm"] = vm
    return out


def _trial_steps(chain, out, raw, types):
    """The candidate steps of the steps' trials (``trial: {type, kind, params, instances,
    percent}``), appended after the chain's steps: each tries out a new processing module on
    ``percent`` of its step's flows (whole flows, both directions; _flow_hash.trial_owners) and
    sends what leaves it where the step's own instances send theirs. The step says
    ``trial: {step: <candidate step>, percent}``, the candidate ``trial_of: <step>``."""
    extra = []
    for norm, step in zip(out, raw):
        spec = step.get("trial")
        if spec is None:
            continue
        sname = norm["name"]
        if not isinstance(spec, dict):
            raise ChainError(chain, sname, "trial", "must be {type: <catalogue type>, kind: ..., percent: <0-100>[, params, instances]}")
        unknown = sorted(_key_name(k) for k in set(spec) - TRIAL_KEYS)
        if unknown:
            raise ChainError(chain, sname, "trial." + unknown[0], "unknown key%s (known: %s)"
                             % (suggest(unknown[0], TRIAL_KEYS), ", ".join(sorted(TRIAL_KEYS))))
        if norm["kind"] == "blackbox":
            raise ChainError(chain, sname, "trial", "a black box cannot be tried out (the platform does not run it)")
        percent = spec.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
            raise ChainError(chain, sname, "trial.percent", "must be a number in (0, 100]: the share of the step's flows the "
                             "candidate takes, got %r" % (percent,))
        if len(out) + len(extra) >= MAX_STEPS:
            raise ChainError(chain, sname, "trial", "a chain has at most %d steps, its trials' candidates counted" % MAX_STEPS)
        candidate = dict(_module_of(chain, sname, dict({"kind": norm["kind"]}, **spec), types, "trial."),
                         name=sname + TRIAL_SUFFIX, index=len(out) + len(extra), only_split=norm["only_split"],
                         split=norm["split"], apart=norm["apart"], trial=None, trial_of=sname, percent=float(percent),
                         spare=None, spare_of=None)
        norm["trial"] = {"step": candidate["name"], "percent": float(percent)}
        extra.append(candidate)
    return extra


def main_steps(chain):
    """The chain's own steps, without their companions (trials' candidates, warm spares: they sit after them)."""
    return [s for s in chain["steps"] if not companion_of(s)]


def companion_of(step):
    """The step a companion step stands in for - the one a trial's candidate tries out, the one a
    warm spare protects - or None for a step of the chain's own."""
    return step.get("trial_of") or step.get("spare_of")


def _spare_steps(chain, out, raw):
    """The warm spares of the steps that ask for one (``spare: warm``), appended after the chain's
    steps and before the trials' candidates: one standby instance of the step's own module each,
    which carries a primary instance's flows when the switch finds that instance's host trunk
    dead (OpenFlow fast-failover groups; _compiler). The step says ``spare: {step: <standby
    step>}``, the standby ``spare_of: <step>``."""
    extra = []
    for norm, step in zip(out, raw):
        spec = step.get("spare")
        if spec is None or spec == "none":
            continue
        sname = norm["name"]
        if spec not in SPARES:
            raise ChainError(chain, sname, "spare", "must be warm (a standby instance the switch fails over to by itself) or none, "
                             "got %r" % (spec,))
        if norm["kind"] == "blackbox":
            raise ChainError(chain, sname, "spare", "a black box has no warm spare (the platform does not run it)")
        if len(out) + len(extra) >= MAX_STEPS:
            raise ChainError(chain, sname, "spare", "a chain has at most %d steps, its warm spares counted" % MAX_STEPS)
        keep = ("kind", "type", "params", "resources", "blackbox", "vm")
        standby = dict({k: norm[k] for k in keep if k in norm}, name=sname + SPARE_SUFFIX, index=len(out) + len(extra),
                       instances=1, only_split=norm["only_split"], split=norm["split"], apart=False, trial=None,
                       trial_of=None, spare=None, spare_of=sname)
        norm["spare"] = {"step": standby["name"]}
        extra.append(standby)
    return extra


def _validate_steps(chain, steps, types, blackboxes, switch):
    if not isinstance(steps, list) or not steps:
        raise ChainError(chain, None, "steps", "needs at least one step")
    if len(steps) > MAX_STEPS:
        raise ChainError(chain, None, "steps", "has %d steps; a chain has at most %d" % (len(steps), MAX_STEPS))
    names = {}
    out = []
    errors = []
    for index, step in enumerate(steps):
        try:
            if not isinstance(step, dict):
                raise ChainError(chain, index, "steps[%d]" % index, "must be a mapping")
            sname = _check_named(step, index, names, STEP_KEYS, "step", chain)
            norm = {"name": sname, "index": index, "only_split": bool(step.get("only_split", False)), "split": None,
                    "apart": step.get("apart", False), "trial": None, "trial_of": None,
                    "spare": None, "spare_of": None}
            if not isinstance(norm["apart"], bool):
                raise ChainError(chain, sname, "apart", "must be true (its instances never share a module host) or false, got %r"
                                 % (norm["apart"],))
            if not isinstance(step.get("only_split", False), bool):
                raise ChainError(chain, sname, "only_split", "must be true (only split traffic visits the step) or false, got %r"
                                 % (step["only_split"],))
            if step.get("blackbox"):
                box = step["blackbox"]
                if not isinstance(box, str) or box not in blackboxes:
                    raise ChainError(chain, sname, "blackbox", "names black box %r, which the platform does not have%s (known: %s)"
                                     % (box, suggest(box, blackboxes), ", ".join(sorted(blackboxes)) or "none"))
                if blackboxes[box].get("switch") not in (None, switch):
                    raise ChainError(chain, sname, "blackbox", "black box %s hangs off switch %s, not the chain's switch %s"
                                     % (box, blackboxes[box].get("switch"), switch))
                for key in ("type", "kind", "instances", "params"):
                    if key in step:
                        raise ChainError(chain, sname, key, "a black-box step has no %s: the box is what it is" % key)
                norm.update(kind="blackbox", type=None, instances=1, blackbox=box, params={}, resources={})
            else:
                norm.update(_module_of(chain, sname, step, types, ""))
            if step.get("split") is not None:
                split = step["split"]
                if not isinstance(split, dict) or set(split) - SPLIT_KEYS or "to" not in split or "match" not in split:
                    raise ChainError(chain, sname, "split", "must be {to: <a later step>, match: <OpenFlow match of the "
                                     "traffic to divert, e.g. {ip: true, ip_dscp: 8}>}")
                if not isinstance(split["to"], str):
                    raise ChainError(chain, sname, "split.to", "must name a later step, got %r" % (split["to"],))
                _check_match(chain, sname, "split.match", split["match"])
                norm["split"] = {"to": split["to"], "match": dict(split["match"])}
            out.append(norm)
        except ChainError as exc:
            errors.append(exc)
    _raise_all(errors)
    boxes = {}
    for step in out:
        if step["blackbox"]:
            if step["blackbox"] in boxes:
                raise ChainError(chain, step["name"], "blackbox", "black box %s is already step %s: its ports can be one "
                                 "step of a chain (packets coming back from it must say where they are)"
                                 % (step["blackbox"], boxes[step["blackbox"]]))
            boxes[step["blackbox"]] = step["name"]
    by_name = {s["name"]: s for s in out}
    for step in out:
        if step["split"]:
            target = step["split"]["to"]
            if target not in by_name:
                raise ChainError(chain, step["name"], "split.to", "names step %r, which chain %s does not have%s (steps: %s)"
                                 % (target, chain, suggest(target, by_name), ", ".join(by_name)))
            if by_name[target]["index"] <= step["index"]:
                raise ChainError(chain, step["name"], "split.to", "step %s comes before %s: a split only goes forward "
                                 "(a chain has no loops)" % (target, step["name"]))
            if by_name[target]["index"] != step["index"] + 1:
                raise ChainError(chain, step["name"], "split.to", "step %s must come right after %s: split traffic "
                                 "visits it and then goes on with the steps after it, so no step may sit between"
                                 % (target, step["name"]))
            if step["only_split"]:
                raise ChainError(chain, step["name"], "split", "a step that only split traffic visits cannot split again")
            if not by_name[target]["only_split"]:
                raise ChainError(chain, step["name"], "split.to", "step %s must say only_split: true (traffic that is "
                                 "not split passes it by)" % target)
    for step in out:
        if step["only_split"] and not any(s["split"] and s["split"]["to"] == step["name"] for s in out):
            raise ChainError(chain, step["name"], "only_split", "no step splits traffic to it")
    if out[0]["only_split"]:
        raise ChainError(chain, out[0]["name"], "only_split", "the first step cannot be reached by a split")
    spares = _spare_steps(chain, out, steps)
    return out + spares + _trial_steps(chain, out + spares, steps, types)
