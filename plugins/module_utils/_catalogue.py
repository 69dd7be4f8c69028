# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalogue of processing-module types.

A *type* is what a processing module does (``firewall``, ``monitor`` ...); a *kind* is how an
instance of it runs on a module host (``kernel`` elements, a ``process``, a ``click``
configuration, a ``vm``, or a third-party ``blackbox`` on switch ports). Each type states which
kinds can run it, the parameters it takes, and what an instance costs its host.

Operators add their own types in the inventory (variable ``flowstream_catalogue``); a user type
names how each of its kinds runs it: ``process.command``, ``kernel.nft``/``kernel.tc``,
``click.config``, ``vm.image``.
"""

from __future__ import annotations

import copy
import re

from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError

KINDS = ("kernel", "process", "click", "vm", "blackbox")

_RATE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)\Z")
_SIZE_RE = re.compile(r"^[0-9]+(b|kb|k|mb|m)?\Z")
_TIME_RE = re.compile(r"^[0-9]+(us|ms|s)\Z")

BUILTIN_TYPES = {
    "wire": {
        "description": "Pass-through: every packet crosses unchanged, in both directions.",
        "kinds": ["kernel", "process", "click", "vm"],
        "resources": {"cpu": 0.05, "memory": 16},
        "params": {},
    },
    "firewall": {
        "description": "Packet filter: nftables rules (bridge family) applied in order to traffic in both "
                       "directions, then a default policy. Each rule is an nftables rule body, e.g. "
                       "'ip saddr 198.18.1.0/28 udp dport 53 drop'; the click kind takes the same for "
                       "addresses, protocols and ports (as IPFilter patterns), or IPFilter's own "
                       "'allow|deny EXPR'.",
        "kinds": ["kernel", "click"],
        "resources": {"cpu": 0.1, "memory": 16},
        "params": {
            "rules": {"type": "list", "items": "line", "default": []},
            "policy": {"type": "str", "choices": ["accept", "drop"], "default": "accept"},
        },
    },
    "shaper": {
        "description": "Rate limiter on each direction: a token bucket (tc tbf) in the kernel, a "
                       "BandwidthShaper (paced, burst and latency size its queue) in Click.",
        "kinds": ["kernel", "click"],
        "resources": {"cpu": 0.1, "memory": 16},
        "params": {
            "rate": {"type": "rate", "required": True},
            "burst": {"type": "size", "default": "64kb"},
            "latency": {"type": "time", "default": "50ms"},
        },
    },
    "monitor": {
        "description": "Counts traffic that passes unchanged, both directions: per flow (5-tuple) in the "
                       "kernel and process kinds, per direction (packets, bytes) in Click.",
        "kinds": ["kernel", "process", "click"],
        "resources": {"cpu": 0.1, "memory": 32},
        "params": {},
    },
    "inspect": {
        "description": "Deep inspection: matches payload patterns (regular expressions over the bytes of "
                       "each packet) and drops matching packets, or marks them (IP DSCP) for the switch "
                       "to divert, or only counts them.",
        "kinds": ["process"],
        "resources": {"cpu": 0.5, "memory": 64},
        "params": {
            "patterns": {"type": "list", "items": "regex", "required": True},
            "action": {"type": "str", "choices": ["drop", "mark", "count"], "default": "drop"},
            "dscp": {"type": "int", "min": 0, "max": 63, "default": 8},
        },
    },
    "classify": {
        "description": "Quick filter (the paper's flow splitting): packets that match any of the expressions "
                       "(Click IPClassifier syntax: header fields, and payload bytes at fixed offsets, e.g. "
                       "'udp && transp[8:4] == 0x45564c31') are marked with an IP DSCP for the switch to "
                       "split them off to a deeper step, or dropped, or only counted; the rest passes.",
        "kinds": ["click"],
        "resources": {"cpu": 0.1, "memory": 16},
        "params": {
            "match": {"type": "list", "items": "ipclassifier", "required": True},
            "action": {"type": "str", "choices": ["mark", "drop", "count"], "default": "mark"},
            "dscp": {"type": "int", "min": 0, "max": 63, "default": 8},
        },
    },
}

PARAM_TYPES = ("str", "int", "bool", "list", "dict", "rate", "size", "time")
# what each element of a list parameter must be (``items``), checked on the controller before
# any host is touched - the program that reads it on the host would fail only once started
ITEM_KINDS = ("line", "regex", "ipclassifier")
TYPE_KEYS = {"description", "kinds", "resources", "params", "process", "kernel", "click", "vm"}


def merged(user_types):
    """The built-in catalogue with the operator's types added (a user type may not silently
    redefine a built-in one)."""
    catalogue = copy.deepcopy(BUILTIN_TYPES)
    for name, definition in sorted((user_types or {}).items()):
        if name in BUILTIN_TYPES:
            raise InstanceError(None, "catalogue.%s" % name,
                                "redefines the built-in type '%s'; choose another name" % name)
        catalogue[name] = check_user_type(name, definition)
    return catalogue


def check_user_type(name, definition):
    where = "catalogue.%s" % name
    if not isinstance(definition, dict):
        raise InstanceError(None, where, "must be a mapping")
    unknown = sorted(set(definition) - TYPE_KEYS)
    if unknown:
        raise InstanceError(None, where, "unknown key(s) %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(TYPE_KEYS))))
    kinds = definition.get("kinds")
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise InstanceError(None, where + ".kinds", "must be a non-empty list of %s" % ", ".join(KINDS))
    for kind in kinds:
        if kind == "process" and not isinstance((definition.get("process") or {}).get("command"), list):
            raise InstanceError(None, where + ".process.command",
                                "a process type needs its command as a list of arguments "
                                "({left}, {right}, {instance}, {dir} are replaced)")
        if kind == "kernel" and not (definition.get("kernel") or {}).get("nft"):
            raise InstanceError(None, where + ".kernel.nft", "a kernel type needs an nftables ruleset body")
        if kind == "click" and not (definition.get("click") or {}).get("config"):
            raise InstanceError(None, where + ".click.config", "a click type needs a Click configuration")
        if kind == "vm" and not (definition.get("vm") or {}).get("image"):
            raise InstanceError(None, where + ".vm.image", "a vm type needs an image (kernel and initrd, or disk)")
    out = {"description": str(definition.get("description", "")), "kinds": list(kinds),
           "resources": dict(definition.get("resources") or {"cpu": 0.1, "memory": 32}),
           "params": dict(definition.get("params") or {})}
    for key in ("process", "kernel", "click", "vm"):
        if key in definition:
            out[key] = copy.deepcopy(definition[key])
    for pname, spec in out["params"].items():
        if not isinstance(spec, dict) or spec.get("type", "str") not in PARAM_TYPES:
            raise InstanceError(None, "%s.params.%s" % (where, pname),
                                "must be a mapping with a type from %s" % ", ".join(PARAM_TYPES))
        if "items" in spec and (spec.get("type") != "list" or spec["items"] not in ITEM_KINDS):
            raise InstanceError(None, "%s.params.%s.items" % (where, pname),
                                "is for a list parameter, one of %s; got %r" % (", ".join(ITEM_KINDS), spec["items"]))
    for res in ("cpu", "memory"):
        value = out["resources"].get(res, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InstanceError(None, "%s.resources.%s" % (where, res), "must be a number >= 0")
    return out


def resolve(catalogue, instance, type_name, kind, params, host_kinds=None):
    """Check that ``type_name`` exists, that ``kind`` can run it and the host can run ``kind``,
    and return the type's parameters with defaults filled in."""
    if kind not in KINDS:
        raise InstanceError(instance, "kind", "unknown kind '%s' (known: %s)" % (kind, ", ".join(KINDS)))
    if type_name not in catalogue:
        raise InstanceError(instance, "type", "unknown type '%s' (the catalogue has: %s)"
                            % (type_name, ", ".join(sorted(catalogue))))
    definition = catalogue[type_name]
    if kind not in definition["kinds"]:
        raise InstanceError(instance, "kind", "type '%s' cannot run as kind '%s' (it runs as: %s)"
                            % (type_name, kind, ", ".join(definition["kinds"])))
    if host_kinds is not None and kind != "blackbox" and kind not in host_kinds:
        raise InstanceError(instance, "kind", "this module host does not run kind '%s' (its kinds: %s)"
                            % (kind, ", ".join(host_kinds) or "none"))
    return check_params(instance, definition, params or {})


def check_params(instance, definition, params):
    spec = definition["params"]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InstanceError(instance, "params.%s" % unknown[0], "unknown parameter (this type takes: %s)"
                            % (", ".join(sorted(spec)) or "none"))
    out = {}
    for name, rule in sorted(spec.items()):
        field = "params.%s" % name
        if name not in params or params[name] is None:
            if rule.get("required"):
                raise InstanceError(instance, field, "is required")
            out[name] = copy.deepcopy(rule.get("default"))
            continue
        out[name] = _check_value(instance, field, rule, params[name])
    return out


def _check_value(instance, field, rule, value):
    kind = rule.get("type", "str")
    checks = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
        "rate": lambda v: isinstance(v, str) and _RATE_RE.match(v.lower()),
        "size": lambda v: isinstance(v, str) and _SIZE_RE.match(v.lower()),
        "time": lambda v: isinstance(v, str) and _TIME_RE.match(v.lower()),
    }
    hints = {"rate": "a tc rate such as 10mbit or 500kbit", "size": "a size such as 64kb",
             "time": "a time such as 50ms"}
    if not checks[kind](value):
        raise InstanceError(instance, field, "must be %s, got %r" % (hints.get(kind, "a " + kind), value))
    if "choices" in rule and value not in rule["choices"]:
        raise InstanceError(instance, field, "must be one of %s, got %r" % (", ".join(rule["choices"]), value))
    if kind == "int" and ("min" in rule and value < rule["min"] or "max" in rule and value > rule["max"]):
        raise InstanceError(instance, field, "must be between %s and %s, got %s" % (rule.get("min"), rule.get("max"), value))
    if kind in ("rate", "size", "time"):
        return value.lower()
    if kind == "list" and rule.get("items"):
        for index, item in enumerate(value):
            problem = item_problem(rule["items"], item)
            if problem:
                raise InstanceError(instance, "%s[%d]" % (field, index), problem)
    return copy.deepcopy(value)


def item_problem(kind, item):
    """What is wrong with one element of a list parameter whose elements are ``kind`` (None: nothing)."""
    if not isinstance(item, str) or not item.strip():
        return "must be non-empty text, got %r" % (item,)
    if kind == "line" and ("\n" in item or "\r" in item):
        return "must be one line (one nftables rule), got %r" % (item,)
    if kind == "ipclassifier" and ("," in item or "\n" in item):
        return "must be one IPClassifier expression, without commas or line breaks, got %r" % (item,)
    if kind == "regex":
        try:
            re.compile(item.encode())
        except (re.error, UnicodeError) as exc:
            return "must be a regular expression (Python's re, over the payload's bytes): %s in %r" % (exc, item)
    return None
