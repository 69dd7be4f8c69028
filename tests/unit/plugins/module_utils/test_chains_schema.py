# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The chain description's schema (issue 18: bad input gets a clear error and changes nothing).

Hypothesis properties over ``_chains.validate``:

* a valid chain with ONE field made wrong (a wrong-typed or out-of-range value, an unknown key,
  a required key left out) is refused with a ChainError that names the chain and the field, and
  blames nothing else;
* whatever junk is given (random values, random mappings with the schema's keys), nothing but a
  ChainError ever escapes, every problem reported names its field, and the input is not changed;
* a valid description is normalised deterministically, without changing the input, and the
  normalised chains written back as a description (every default made explicit) validate to the
  same chains.

And an example test for each hole the properties found.
"""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.flowstream.platform.plugins.module_utils import _catalogue, _chains
from ansible_collections.flowstream.platform.plugins.module_utils._chains import ChainError, ChainErrors, validate

SWITCHES = {"sw1": {"uplinks": {"source": "p1", "sink": "p2"}}, "sw2": {"uplinks": {"source": "p3", "sink": "p4"}}}
BOXES = {"bb1": {"switch": "sw1", "ports": {"left": "bb1-l", "right": "bb1-r"}},
         "bb2": {"switch": "sw1", "ports": {"left": "bb2-l", "right": "bb2-r"}}}
TYPES = _catalogue.BUILTIN_TYPES
PROTOS = ("ip", "tcp", "udp", "icmp", "sctp")
# written out here rather than taken from _chains: the tests say what the schema is
NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
TAG = re.compile(r"[a-z][a-z0-9]{0,5}")
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much]}


def run(chains):
    return validate(chains, switches=SWITCHES, blackboxes=BOXES)


def problems(err):
    """The problems one ChainError (or ChainErrors) reports, one each."""
    return err.errors if isinstance(err, ChainErrors) else [err]


def key_label(key):
    """How an error names an unknown key: as written, or its repr when that would not show (not a
    string, empty, a control character)."""
    return key if isinstance(key, str) and key and key.isprintable() else repr(key)


# -- valid chains to start from -------------------------------------------------------------------
def web():
    """Chain-level options given, a firewall in the kernel, a parallel process monitor with a warm
    spare and a trial."""
    return {"name": "web", "description": "the web tier", "switch": "sw1", "from": "source", "to": "sink",
            "match": {"tcp": True, "nw_dst": "198.18.1.2", "tp_dst": 80}, "priority": 200, "restore_priority": 900,
            "fail_mode": "open", "tag": "web1", "verify": {"rate": 1000, "flows": 8, "base_port": 8000},
            "steps": [{"name": "fw", "type": "firewall", "kind": "kernel", "params": {"rules": ["tcp dport 23 drop"], "policy": "drop"}},
                      {"name": "mon", "type": "monitor", "kind": "process", "instances": 3, "apart": True, "spare": "warm",
                       "trial": {"type": "monitor", "kind": "kernel", "percent": 10, "instances": 1}}]}


def ids():
    """A quick filter splitting to an only_split deep inspection, then a black box."""
    return {"name": "ids", "switch": "sw1", "from": "sink", "to": "source", "match": {"udp": True, "nw_dst": "198.18.1.3"},
            "restore_priority": 0, "fail_mode": "closed",
            "steps": [{"name": "filter", "type": "inspect", "kind": "process", "params": {"patterns": ["SUSPICIOUS"], "action": "mark"},
                       "split": {"to": "deep", "match": {"udp": True, "ip_dscp": 8}}},
                      {"name": "deep", "type": "inspect", "kind": "process", "params": {"patterns": ["EVIL[0-9]+"]}, "only_split": True},
                      {"name": "box", "blackbox": "bb1"}]}


def vnf():
    """A VM step and a kernel shaper on the second switch, a cookie given as text."""
    return {"name": "vnf", "switch": "sw2", "from": "source", "to": "sink", "match": {"ip": True, "nw_src": "198.18.0.0/16"},
            "cookie": "0xF5C0000000000001",
            "steps": [{"name": "vm", "type": "wire", "kind": "vm", "vm": {"vcpus": 2, "memory": 128}},
                      {"name": "shape", "type": "shaper", "kind": "kernel", "params": {"rate": "400mbit"}}]}


def other():
    return {"name": "other", "switch": "sw1", "from": "source", "to": "sink", "match": {"icmp": True},
            "steps": [{"name": "a", "type": "wire", "kind": "kernel"}]}


TEMPLATES = {"web": web, "ids": ids, "vnf": vnf}


def test_the_templates_are_valid():
    out = run([web(), ids(), vnf(), other()])
    assert [c["name"] for c in out] == ["web", "ids", "vnf", "other"]
    assert [s["name"] for s in out[0]["steps"]] == ["fw", "mon", "mon~spare", "mon~trial"]


# -- what a valid value is, written independently of _chains --------------------------------------
def is_int(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def whole(value, high):
    """An int, or text int(x, 0) reads, from 0 to high."""
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            return False
    return is_int(value, 0, high)


def valid_field_value(key, val):
    """ovs-ofctl(8)'s forms of each field the platform steers on."""
    if key.endswith(("_src", "_dst")) and key.startswith(("tp", "tcp", "udp")):
        return whole(val, 65535) or (isinstance(val, str) and val.count("/") == 1 and all(whole(p, 65535) for p in val.split("/")))
    if key in ("nw_proto", "ip_proto", "nw_tos"):
        return whole(val, 255)
    if key == "ip_dscp":
        return whole(val, 63)
    if key in ("nw_ecn", "ip_ecn"):
        return whole(val, 3)
    if key.startswith(("nw_", "ip_")):
        if not isinstance(val, str):
            return False
        address, mask = val.partition("/")[::2]
        quad = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
        return quad.fullmatch(address) is not None and (mask == "" and "/" not in val or quad.fullmatch(mask) is not None
                                                        or mask.isdigit() and int(mask) <= 32)
    mac = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
    return isinstance(val, str) and all(mac.fullmatch(p) for p in val.split("/")) and val.count("/") <= 1


def valid_match(value):
    if not isinstance(value, dict) or not any(value.get(p) is True for p in PROTOS):
        return False
    for key, val in value.items():
        if key not in _chains.MATCH_FIELDS:
            return False
        if key in PROTOS and val is not True:
            return False
        if key not in PROTOS and not valid_field_value(key, val):
            return False
    return True


def valid_cookie(value):
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            return False
    return isinstance(value, int) and not isinstance(value, bool) and value >> 48 == 0xF5C0


def valid_name(value):
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def maybe_params(type_name):
    """Params the type may take: no mapping (or an empty one) when it requires none; a mapping of
    only its own parameters may be valid too (the catalogue's checks then decide)."""
    spec = TYPES[type_name]["params"]
    required = any(rule.get("required") for rule in spec.values())
    return lambda v: (not v and not required) or (isinstance(v, dict) and bool(v) and set(v) <= set(spec))


def maybe_vm(value):
    if not value:
        return True
    return (isinstance(value, dict) and set(value) <= {"vcpus", "memory", "image"}
            and all(is_int(value[k], 1, 2 ** 31 - 1) for k in ("vcpus", "memory") if k in value)
            and ("image" not in value or isinstance(value["image"], dict) and value["image"] != {}))


def valid_verify(value):
    """The probe's settings: base_port required, each a whole number in its range (rate and
    duration may be fractions)."""
    if not value:
        return True
    ranges = {"rate": (1, 10 ** 7), "flows": (1, 4096), "duration": (1, 3600), "base_port": (1, 65535),
              "max_lost": (0, 2 ** 31 - 1), "max_reordered": (0, 2 ** 31 - 1)}
    if not isinstance(value, dict) or not set(value) <= set(ranges) or "base_port" not in value:
        return False
    for key, val in value.items():
        low, high = ranges[key]
        fraction = key in ("rate", "duration") and isinstance(val, float) and low <= val <= high
        if not (fraction or is_int(val, low, high)):
            return False
    return True


CHAIN_FIELDS = {
    "name": lambda v: valid_name(v) and v != "other",       # "other": the chain beside it (a second 'other' is refused)
    "state": lambda v: v in ("present", "absent"),
    "switch": lambda v: v in ("sw1", "sw2"),
    "from": lambda v: v in ("source", "sink"),
    "to": lambda v: v in ("source", "sink"),
    "match": valid_match,
    "priority": lambda v: is_int(v, 1, 60000),
    "restore_priority": lambda v: is_int(v, 0, 1000),
    "fail_mode": lambda v: v in ("closed", "open"),
    "tag": lambda v: v is None or (isinstance(v, str) and TAG.fullmatch(v) is not None),
    "cookie": valid_cookie,
    "verify": valid_verify,
    "steps": lambda v: False,                                # given steps_junk below: never valid
}
# (template, path below the chain, index of the step the error is about, the field's name in it, valid?)
STEP_FIELDS = [
    ("web", ("steps", 0, "name"), 0, "name", lambda v: valid_name(v) and v != "mon"),
    ("web", ("steps", 0, "type"), 0, "type", lambda v: isinstance(v, str) and v in TYPES),
    ("web", ("steps", 0, "kind"), 0, "kind", lambda v: v in TYPES["firewall"]["kinds"]),
    ("web", ("steps", 0, "params"), 0, "params", maybe_params("firewall")),
    ("web", ("steps", 0, "instances"), 0, "instances", lambda v: is_int(v, 1, 256)),
    ("web", ("steps", 0, "only_split"), 0, "only_split", lambda v: v is False),
    ("web", ("steps", 0, "apart"), 0, "apart", lambda v: isinstance(v, bool)),
    ("web", ("steps", 1, "instances"), 1, "instances", lambda v: is_int(v, 1, 256)),
    ("web", ("steps", 1, "apart"), 1, "apart", lambda v: isinstance(v, bool)),
    ("web", ("steps", 1, "spare"), 1, "spare", lambda v: v in (None, "none", "warm")),
    ("web", ("steps", 1, "trial"), 1, "trial", lambda v: v is None),
    ("web", ("steps", 1, "trial", "percent"), 1, "trial.percent",
     lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100),
    ("web", ("steps", 1, "trial", "type"), 1, "trial.type", lambda v: isinstance(v, str) and v in TYPES),
    ("web", ("steps", 1, "trial", "kind"), 1, "trial.kind", lambda v: v in TYPES["monitor"]["kinds"]),
    ("web", ("steps", 1, "trial", "instances"), 1, "trial.instances", lambda v: is_int(v, 1, 256)),
    ("web", ("steps", 1, "trial", "params"), 1, "trial.params", maybe_params("monitor")),
    ("ids", ("steps", 0, "params"), 0, "params", maybe_params("inspect")),
    ("ids", ("steps", 0, "split"), 0, "split", lambda v: v is None),
    ("ids", ("steps", 0, "split", "to"), 0, "split.to", lambda v: v == "deep"),
    ("ids", ("steps", 0, "split", "match"), 0, "split.match", valid_match),
    ("ids", ("steps", 1, "name"), 1, "name", valid_name),   # (a valid one: 'filter' splits to a step it lacks)
    ("ids", ("steps", 1, "only_split"), 1, "only_split", lambda v: v is True or v is False),   # false: filter's split.to
    ("ids", ("steps", 2, "blackbox"), 2, "blackbox", lambda v: isinstance(v, str) and v in BOXES),
    ("ids", ("steps", 2, "instances"), 2, "instances", lambda v: False),
    ("ids", ("steps", 2, "spare"), 2, "spare", lambda v: v in (None, "none")),
    ("vnf", ("steps", 0, "vm"), 0, "vm", maybe_vm),
    ("vnf", ("steps", 0, "vm", "vcpus"), 0, "vm.vcpus", lambda v: is_int(v, 1, 2 ** 31 - 1)),
    ("vnf", ("steps", 0, "vm", "memory"), 0, "vm.memory", lambda v: is_int(v, 1, 2 ** 31 - 1)),
    ("vnf", ("steps", 1, "params"), 1, "params", maybe_params("shaper")),
    ("vnf", ("steps", 1, "type"), 1, "type", lambda v: isinstance(v, str) and v in TYPES),
]
TARGETS = [(t, (key,), None, key, valid) for t in sorted(TEMPLATES) for key, valid in sorted(CHAIN_FIELDS.items())] + STEP_FIELDS


# -- junk -----------------------------------------------------------------------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10))
KEYS = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))
JUNK = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 2 ** 64, 10 ** 30, 1.5, -0.0, float("nan"), float("inf"), "", "x", [], {}, [None], {"x": 1}]),
    st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
                 max_leaves=6))


def junk_for(path):
    if path == ("steps",):
        # steps that are no list of steps: no list, an empty one, one of non-mappings, one too long
        return st.one_of(JUNK.filter(lambda v: not isinstance(v, list)), st.just([]),
                         st.lists(SCALARS, min_size=1, max_size=3), st.just([{"name": "s%d" % n} for n in range(_chains.MAX_STEPS + 1)]))
    return JUNK


def set_path(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def del_path(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    del obj[path[-1]]


ANY_STEP = object()
# a field refused through another one, which names it in its message: a black box left out (or
# false) makes a step that needs a type; a split target that is not only_split is the splitting
# step's split.to
NAMED_BY = {"blackbox": ("type",), "only_split": ("split.to",)}


def names_field(err, field):
    got = str(err.field)
    return got == field or got.startswith((field + ".", field + "[")) or (got in NAMED_BY.get(field, ()) and field in err.message)


def check_refused(chains, chain_name, step_label, field):
    """validate(chains) raises a ChainError naming ``chain_name`` (None: the chain has no usable
    name) and ``field``, about step ``step_label`` (None: the chain itself; ANY_STEP: any); every
    problem it reports names its field, nothing but that chain is blamed, and the input is as it
    was."""
    before = copy.deepcopy(chains)
    with pytest.raises(ChainError) as err:
        run(chains)
    assert [chains] == [before], "validate changed its input"   # (in a list: NaN is the same NaN, not an equal one)
    text = str(err.value)
    assert field in text, text
    found = problems(err.value)
    if chain_name is not None:
        assert "chain '%s'" % chain_name in text, text
        assert all(e.chain == chain_name for e in found), text
    assert any((step_label is ANY_STEP or e.step == step_label) and names_field(e, field) for e in found), text
    assert all(e.field for e in found), text
    return err.value


def step_label_after(template, step_index, path, value):
    """The step an error names: its name, or - its name being the field made wrong - what it was
    made (when text), else its position."""
    if path == ("steps",):
        return ANY_STEP
    if step_index is None:
        return None
    if path[-1] == "name" and len(path) == 3:
        return value if isinstance(value, str) else step_index
    return TEMPLATES[template]()["steps"][step_index]["name"]


# -- 1. one field wrong ----------------------------------------------------------------------------
@settings(max_examples=500, **SETTINGS)
@given(st.sampled_from(TARGETS), st.booleans(), st.data())
def test_one_wrong_value_is_refused_naming_the_chain_and_the_field(target, first, data):
    template, path, step_index, field, valid = target
    value = data.draw(junk_for(path), label="value")
    assume(not valid(value))
    chain = TEMPLATES[template]()
    set_path(chain, path, value)
    named = template if path != ("name",) else None
    step = step_label_after(template, step_index, path, value)
    err = check_refused([chain, other()] if first else [other(), chain], named, step, field)
    if path == ("name",) and isinstance(value, str) and value:
        assert err.chain == value


CHAIN_KEY_PATHS = [(t, ()) for t in sorted(TEMPLATES)]
STEP_KEY_PATHS = [("web", ("steps", 0)), ("web", ("steps", 1)), ("ids", ("steps", 0)), ("ids", ("steps", 2)), ("vnf", ("steps", 0))]
TRIAL_KEY_PATHS = [("web", ("steps", 1, "trial"))]
SPLIT_KEY_PATHS = [("ids", ("steps", 0, "split"))]


@settings(max_examples=300, **SETTINGS)
@given(st.sampled_from(CHAIN_KEY_PATHS + STEP_KEY_PATHS + TRIAL_KEY_PATHS + SPLIT_KEY_PATHS), KEYS, JUNK, st.booleans())
def test_an_unknown_key_is_refused_naming_it(where, key, value, first):
    template, path = where
    chain = TEMPLATES[template]()
    into = chain
    for part in path:
        into = into[part]
    if not path:
        known = _chains.CHAIN_KEYS
    elif len(path) == 2:
        known = _chains.STEP_KEYS
    else:
        known = _chains.TRIAL_KEYS if path[-1] == "trial" else _chains.SPLIT_KEYS
    assume(key not in known)
    into[key] = value
    if not path:
        step, field = None, key_label(key)
    else:
        step = chain["steps"][path[1]]["name"]
        # an unknown key of a trial is named below it; a split is refused whole (its shape is wrong)
        field = {2: key_label(key), 3: "trial." + key_label(key) if path[-1] == "trial" else "split"}[len(path)]
    check_refused([chain, other()] if first else [other(), chain], template, step, field)


REQUIRED = [
    ("web", ("name",), None, "name"), ("web", ("switch",), None, "switch"), ("web", ("from",), None, "from"),
    ("web", ("to",), None, "to"), ("web", ("match",), None, "match"), ("web", ("steps",), None, "steps"),
    ("vnf", ("switch",), None, "switch"), ("ids", ("match",), None, "match"),
    ("web", ("steps", 0, "name"), 0, "name"), ("web", ("steps", 0, "type"), "fw", "type"), ("web", ("steps", 0, "kind"), "fw", "kind"),
    ("web", ("steps", 1, "trial", "percent"), "mon", "trial.percent"), ("ids", ("steps", 0, "params"), "filter", "params.patterns"),
    ("ids", ("steps", 0, "split", "to"), "filter", "split"), ("ids", ("steps", 0, "split", "match"), "filter", "split"),
    ("ids", ("steps", 1, "only_split"), "filter", "only_split"), ("ids", ("steps", 2, "blackbox"), "box", "blackbox"),
    ("vnf", ("steps", 1, "params"), "shape", "params.rate"),
]


@pytest.mark.parametrize("template, path, step, field", REQUIRED)
def test_a_required_key_left_out_is_refused_naming_it(template, path, step, field):
    chain = TEMPLATES[template]()
    del_path(chain, path)
    check_refused([other(), chain], template if path != ("name",) else None, step, field)


def _with(make, change):
    chain = make()
    change(chain)
    return chain


def _steps(chain, *edits):
    for index, key, value in edits:
        if value is None:
            chain["steps"][index].pop(key)
        else:
            chain["steps"][index][key] = value


WIRE = {"type": "wire", "kind": "kernel"}
# mistakes in how fields relate rather than in one field: (chains, chain, step, field, words)
RELATIONAL = [
    ([_with(ids, lambda c: c.update({"to": c["from"]}))], "ids", None, "to", "the same uplink"),
    ([web(), dict(other(), tag="web1")], "other", None, "tag", "already has the short tag 'web1'"),
    ([_with(ids, lambda c: _steps(c, (2, "trial", {"type": "monitor", "kind": "process", "percent": 5})))], "ids", "box", "trial",
     "cannot be tried out"),
    ([_with(ids, lambda c: _steps(c, (2, "spare", "warm")))], "ids", "box", "spare", "no warm spare"),
    ([_with(ids, lambda c: c["steps"].append({"name": "box2", "blackbox": "bb1"}))], "ids", "box2", "blackbox", "is already step box"),
    ([_with(ids, lambda c: _steps(c, (0, "split", {"to": "nosuch", "match": {"udp": True}})))], "ids", "filter", "split.to",
     "does not have"),
    ([_with(ids, lambda c: c["steps"].reverse())], "ids", "filter", "split.to", "a split only goes forward"),
    ([_with(ids, lambda c: c["steps"].insert(1, dict(WIRE, name="mid")))], "ids", "filter", "split.to", "must come right after"),
    ([_with(ids, lambda c: _steps(c, (1, "split", {"to": "box", "match": {"udp": True}})))], "ids", "deep", "split", "cannot split again"),
    ([_with(ids, lambda c: _steps(c, (0, "split", None)))], "ids", "deep", "only_split", "no step splits traffic to it"),
    ([_with(ids, lambda c: _steps(c, (1, "only_split", False)))], "ids", "filter", "split.to", "must say only_split: true"),
    ([_with(other, lambda c: c.update(steps=[dict(WIRE, name="s%d" % n, spare="warm") for n in range(19)]))], "other", "s17", "spare",
     "at most 36 steps"),
    ([_with(other, lambda c: c.update(steps=[dict(WIRE, name="s%d" % n) for n in range(35)] +
                                      [dict(WIRE, name="s35", trial={"type": "wire", "percent": 5})]))], "other", "s35", "trial",
     "at most 36 steps"),
]


@pytest.mark.parametrize("chains, chain, step, field, words", RELATIONAL)
def test_fields_that_do_not_fit_together_are_refused_naming_chain_step_and_field(chains, chain, step, field, words):
    err = check_refused(chains, chain, step, field)
    assert (err.chain, err.step, err.field) == (chain, step, field) and words in err.message, str(err)


def test_a_kind_that_is_a_black_box_is_refused_naming_the_kind():
    chain = _with(other, lambda c: c.update(steps=[{"name": "app", "type": "appliance", "kind": "blackbox"}]))
    with pytest.raises(ChainError) as err:
        validate([chain], catalogue={"appliance": {"kinds": ["blackbox"]}}, switches=SWITCHES, blackboxes=BOXES)
    assert (err.value.chain, err.value.step, err.value.field) == ("other", "app", "kind"), str(err.value)
    assert "write blackbox: <name>" in str(err.value)


# -- 2. junk ----------------------------------------------------------------------------------------
def plausible(*good):
    return st.one_of(st.sampled_from(good), JUNK)


STEP_VALUES = {
    "name": plausible("a", "b", "fw", "mon", "deep", "Bad"),
    "type": plausible(*sorted(TYPES)),
    "kind": plausible(*_catalogue.KINDS),
    "params": plausible({}, {"rules": []}, {"patterns": ["x"]}, {"rate": "10mbit"}, {"rate": 5}, None),
    "instances": plausible(1, 2, 256, 257, 0),
    "blackbox": plausible("bb1", "bb2", "bb9"),
    "split": plausible({"to": "b", "match": {"udp": True}}, {"to": ["b"], "match": {"udp": True}}, {"to": "b"}),
    "only_split": plausible(True, False, "false"),
    "vm": plausible({}, {"vcpus": 2}, {"memory": "x"}, {"vcpus": None}, {"cpus": 2}, {"image": ""}, {"image": {"kernel": "k", "initrd": "i"}}),
    "apart": plausible(True, False),
    "trial": plausible({"type": "monitor", "kind": "process", "percent": 10}, {"percent": 50}, {"percent": 5, 1: 2, "x": 3},
                       {"type": "wire", "kind": "vm", "percent": 1, "vm": [1]}),
    "spare": plausible("warm", "none", "hot"),
}
STEP = st.fixed_dictionaries({"name": STEP_VALUES["name"]}, optional={**{k: v for k, v in STEP_VALUES.items() if k != "name"}, "extra": JUNK})
CHAIN_VALUES = {
    "state": plausible("present", "absent"),
    "switch": plausible("sw1", "sw2", "sw9"),
    "match": plausible({"tcp": True}, {"udp": True, "tp_dst": 53}, {"tcp": "yes"}),
    "from": plausible("source", "sink"),
    "to": plausible("source", "sink"),
    "steps": st.one_of(st.lists(st.one_of(STEP, JUNK), max_size=4), JUNK),
    "cookie": plausible(_chains.chain_cookie("x"), "0xF5C0000000000002", "0xzz"),
    "priority": plausible(1, 100, 60001),
    "restore_priority": plausible(0, 1000, 1001),
    "fail_mode": plausible("open", "closed", "bypass"),
    "tag": plausible("t1", "t1", None),
    "verify": plausible({}, {"rate": 10}, None, {"base_port": 8000, "rate": 2.5}, {"base_port": "abc"}, {"base_port": 80, "ratee": 1}),
    "description": plausible("text"),
}
CHAIN = st.fixed_dictionaries({"name": plausible("a", "b", "web", "Web", "")},
                              optional={**CHAIN_VALUES, "extra": JUNK, 7: JUNK})
DESCRIPTIONS = st.one_of(JUNK, st.lists(st.one_of(CHAIN, CHAIN, JUNK), max_size=4))


@settings(max_examples=500, **SETTINGS)
@given(DESCRIPTIONS)
def test_whatever_the_input_only_a_chain_error_escapes_and_names_its_fields(chains):
    before = copy.deepcopy(chains)
    try:
        out = run(chains)
    except ChainError as exc:
        text = str(exc)
        found = problems(exc)
        assert found and all(e.field for e in found), text
        assert all(isinstance(e, ChainError) and not isinstance(e, ChainErrors) for e in found), text
        if isinstance(exc, ChainErrors):
            assert text.startswith("%d problems in the chains:\n" % len(found)), text
        for e in found:   # a chain that is named is one of those given
            assert not e.chain or any(isinstance(c, dict) and (c.get("name") is e.chain or c.get("name") == e.chain) for c in chains), text
    else:
        assert isinstance(chains, list) and len(out) == len(chains)
        assert [c["name"] for c in out] == [c["name"] for c in chains]
    assert [chains] == [before], "validate changed its input"   # (in a list: NaN is the same NaN, not an equal one)


# -- 3. valid descriptions --------------------------------------------------------------------------
MATCHES = st.sampled_from([{"tcp": True}, {"udp": True, "tp_dst": 53}, {"ip": True, "nw_dst": "198.18.1.0/24"},
                           {"tcp": True, "nw_src": "198.18.0.1", "tp_dst": "0x1f40/0xffc0"}, {"icmp": True, "ip_dscp": 8}])


RULES = st.lists(st.sampled_from(["tcp dport 23 drop", "udp dport 53 accept"]), max_size=2)
PARAMS = {
    "monitor": st.none(),
    "wire": st.none(),
    "firewall": st.fixed_dictionaries({}, optional={"rules": RULES, "policy": st.sampled_from(["accept", "drop"])}),
    "shaper": st.fixed_dictionaries({"rate": st.sampled_from(["10mbit", "400MBIT", "1gbit"])},
                                    optional={"burst": st.just("64kb"), "latency": st.just("5ms")}),
    "inspect": st.fixed_dictionaries({"patterns": st.lists(st.just("EVIL"), min_size=1, max_size=2)},
                                     optional={"action": st.sampled_from(["drop", "mark", "count"]), "dscp": st.integers(0, 63)}),
}


@st.composite
def module(draw, with_trial=True):
    shape = draw(st.sampled_from(["monitor", "firewall", "shaper", "inspect", "wire-vm", "wire"]))
    if shape == "wire-vm":
        out = {"type": "wire", "kind": "vm"}
        vm = draw(st.fixed_dictionaries({}, optional={"vcpus": st.integers(1, 8), "memory": st.integers(64, 4096)}))
        if vm or draw(st.booleans()):
            out["vm"] = vm
    else:
        out = {"type": shape, "kind": draw(st.sampled_from([k for k in TYPES[shape]["kinds"] if k != "vm"]))}
        params = draw(PARAMS[shape])
        if params is not None:
            out["params"] = params
    if draw(st.booleans()):
        out["instances"] = draw(st.one_of(st.integers(1, 4), st.just(256)))
    if draw(st.booleans()):
        out["apart"] = draw(st.booleans())
    if draw(st.booleans()):
        out["spare"] = draw(st.sampled_from(["warm", "none"]))
    if with_trial and draw(st.integers(0, 3)) == 0:
        out["trial"] = draw(st.one_of(
            st.fixed_dictionaries({"type": st.just("monitor"), "kind": st.just("process"),
                                   "percent": st.one_of(st.integers(1, 100), st.floats(0.01, 100))},
                                  optional={"instances": st.integers(1, 3)}),
            st.fixed_dictionaries({"type": st.just("wire"), "kind": st.just("vm"), "percent": st.integers(1, 100)},
                                  optional={"vm": st.fixed_dictionaries({"vcpus": st.integers(1, 4)})})))
    return out


@st.composite
def valid_steps(draw, switch):
    steps = []
    boxes = sorted(BOXES) if switch == "sw1" else []
    for n in range(draw(st.integers(1, 5))):
        shape = draw(st.sampled_from(["module", "module", "split", "box"] if boxes else ["module", "split"]))
        if shape == "box":
            steps.append(dict({"name": "s%d" % n, "blackbox": boxes.pop(0)}, **draw(st.fixed_dictionaries({}, optional={"apart": st.booleans()}))))
        elif shape == "split":
            target = "s%d-deep" % n
            steps.append(dict(draw(module()), name="s%d" % n, split={"to": target, "match": draw(MATCHES)}))
            steps.append(dict(draw(module(with_trial=False)), name=target, only_split=True))
        else:
            steps.append(dict(draw(module()), name="s%d" % n))
    return steps


@st.composite
def valid_chain(draw, index):
    # the first three letters differ from chain to chain: no two chains get the same short tag
    name = "c%02d" % index + draw(st.from_regex(r"[a-z0-9-]{0,20}", fullmatch=True))
    if draw(st.integers(0, 5)) == 0:
        return dict({"name": name, "state": "absent"}, **draw(st.fixed_dictionaries({}, optional={"cookie": st.just(_chains.chain_cookie(name))})))
    switch = draw(st.sampled_from(sorted(SWITCHES)))
    ends = draw(st.permutations(["source", "sink"]))
    out = {"name": name, "switch": switch, "from": ends[0], "to": ends[1], "match": draw(MATCHES), "steps": draw(valid_steps(switch))}
    out.update(draw(st.fixed_dictionaries({}, optional={
        "state": st.just("present"), "priority": st.integers(1, 60000), "restore_priority": st.integers(0, 1000),
        "fail_mode": st.sampled_from(["closed", "open"]), "tag": st.just("t%d" % index), "description": st.text(max_size=20),
        "verify": st.fixed_dictionaries({"base_port": st.integers(1024, 60000)}, optional={"rate": st.integers(1, 10000)}),
        "cookie": st.sampled_from([(0xF5C0 << 48) | index, "0x%x" % ((0xF5C0 << 48) | index)])})))
    return out


@st.composite
def valid_descriptions(draw):
    return [draw(valid_chain(n)) for n in range(draw(st.integers(1, 4)))]


def described(chain):
    """A normalised chain written back as a description, every default given."""
    out = {k: chain[k] for k in ("name", "state", "cookie", "description", "verify", "tag")}
    if chain["state"] == "absent":
        return out
    out.update({k: chain[k] for k in ("switch", "from", "to", "match", "priority", "restore_priority", "fail_mode")})
    by_name = {s["name"]: s for s in chain["steps"]}
    out["steps"] = []
    for step in _chains.main_steps(chain):
        desc = {"name": step["name"], "apart": step["apart"], "only_split": step["only_split"]}
        if step["kind"] == "blackbox":
            desc["blackbox"] = step["blackbox"]
        else:
            desc.update({k: step[k] for k in ("type", "kind", "params", "instances", "vm") if k in step})
            desc["spare"] = "warm" if step["spare"] else "none"
        if step["split"]:
            desc["split"] = step["split"]
        if step["trial"]:
            candidate = by_name[step["trial"]["step"]]
            desc["trial"] = dict({k: candidate[k] for k in ("type", "kind", "params", "instances", "vm") if k in candidate},
                                 percent=step["trial"]["percent"])
        out["steps"].append(desc)
    return out


@settings(max_examples=150, **SETTINGS)
@given(valid_descriptions())
def test_a_valid_description_is_normalised_deterministically_and_is_a_fixed_point(chains):
    before = copy.deepcopy(chains)
    out = run(chains)
    assert [chains] == [before], "validate changed its input"   # (in a list: NaN is the same NaN, not an equal one)
    assert run(copy.deepcopy(chains)) == out
    assert json.dumps(run(chains), sort_keys=True) == json.dumps(out, sort_keys=True)
    assert [c["name"] for c in out] == [c["name"] for c in chains]
    for desc, norm in zip(chains, out):
        assert norm["cookie"] >> 48 == 0xF5C0
        if norm["state"] == "absent":
            continue
        assert norm["priority"] == desc.get("priority", 100)
        assert norm["restore_priority"] == desc.get("restore_priority", 500)
        assert norm["fail_mode"] == desc.get("fail_mode", "closed")
        own = _chains.main_steps(norm)
        assert [s["name"] for s in own] == [s["name"] for s in desc["steps"]]
        for step, given_step in zip(own, desc["steps"]):
            assert step["instances"] == given_step.get("instances", 1)
            assert bool(step["spare"]) == (given_step.get("spare") == "warm" and "blackbox" not in given_step)
            if step["trial"]:
                assert math.isclose(step["trial"]["percent"], given_step["trial"]["percent"])
    # the normalised chains, written back with every default explicit, are the same chains
    again = [described(c) for c in out]
    assert run(again) == out


# -- the holes the properties found -------------------------------------------------------------------
@pytest.mark.parametrize("where, key, field", [
    ((), 1, "1"), ((), None, "None"), ((), "", "''"), ((), "bad\nkey", repr("bad\nkey")),
    (("steps", 0), 7, "7"), (("steps", 1, "trial"), 3, "trial.3"), (("steps", 1, "trial"), "", "trial.''"),
])
def test_an_unknown_key_that_is_no_plain_text_is_named(where, key, field):
    """Keys of several types could not be sorted (TypeError), an int trial key could not be
    joined to 'trial.' (TypeError), an empty key named no field."""
    chain = web()
    into = chain
    for part in where:
        into = into[part]
    into[key] = "x"
    into["zzz"] = "y"      # a second unknown key: text and non-text keys sorted together
    with pytest.raises(ChainError) as err:
        run([chain])
    assert field + ": unknown key" in str(err.value), str(err.value)


@pytest.mark.parametrize("path, value, field", [
    (("switch",), ["sw1"], "switch"), (("from",), {"a": 1}, "from"), (("to",), ["sink"], "to"),
    (("steps", 2, "blackbox"), ["bb1"], "blackbox"), (("steps", 0, "split", "to"), ["deep"], "split.to"),
    (("steps", 0, "split", "to"), 7, "split.to"),
])
def test_an_unhashable_name_is_refused_naming_the_field(path, value, field):
    """A list or mapping where a switch, uplink, black box or step is named was looked up in a
    dict: TypeError (unhashable type)."""
    chain = ids()
    set_path(chain, path, value)
    err = check_refused([chain], "ids", "filter" if path[1:2] == (0,) else ("box" if len(path) > 1 else None), field)
    assert "unhashable" not in str(err)


@pytest.mark.parametrize("value", [["rules"], "rules", 5, True])
def test_params_that_are_no_mapping_are_refused_as_params(value):
    """Params that are no mapping failed inside the catalogue (TypeError) and were reported as
    a 'type' problem ('type: list indices must be integers or slices, not str'), or taken apart
    letter by letter ('params.e: unknown parameter')."""
    chain = web()
    chain["steps"][0]["params"] = value
    err = check_refused([chain], "web", "fw", "params")
    assert err.field == "params" and "mapping" in err.message, str(err)


@pytest.mark.parametrize("params, field", [({"": None, 0: None}, "params.0"), ({"rules": [], None: 1}, "params.None"),
                                           ({"rate": "1mbit", True: 1}, "params.True")])
def test_params_named_by_no_text_are_refused_as_params(params, field):
    """Parameter names of several types could not be sorted in the catalogue (TypeError), reported
    as 'type: '<' not supported between instances of 'int' and 'str''."""
    chain = vnf()
    chain["steps"][1]["params"] = params
    err = check_refused([chain], "vnf", "shape", field)
    assert err.field == field and "not supported" not in err.message, str(err)


def test_a_type_that_is_no_text_is_refused_clearly():
    chain = web()
    chain["steps"][0]["type"] = ["firewall"]
    err = check_refused([chain], "web", "fw", "type")
    assert "unhashable" not in str(err), str(err)


@pytest.mark.parametrize("value", [[1, 2], "fast", 5, True])
def test_verify_that_is_no_mapping_is_refused(value):
    """dict(verify) raised TypeError or ValueError."""
    chain = web()
    chain["verify"] = value
    err = check_refused([chain], "web", None, "verify")
    assert err.field == "verify", str(err)


@pytest.mark.parametrize("path, value, field", [
    (("vm",), [1], "vm"), (("vm",), "big", "vm"), (("vm", "vcpus"), "two", "vm.vcpus"), (("vm", "vcpus"), None, "vm.vcpus"),
    (("vm", "memory"), [], "vm.memory"), (("vm", "memory"), -5, "vm.memory"), (("vm", "vcpus"), True, "vm.vcpus"),
    (("vm", "memory"), float("nan"), "vm.memory"), (("vm", "vcpus"), 2 ** 1100, "vm.vcpus"), (("vm", "memory"), 2 ** 31, "vm.memory"),
])
def test_a_vm_that_is_no_vm_is_refused(path, value, field):
    """float(vm['vcpus']) raised ValueError, TypeError or (too large) OverflowError; dict(**vm)
    TypeError; a negative or NaN size was taken."""
    chain = vnf()
    set_path(chain["steps"][0], path, value)
    err = check_refused([chain], "vnf", "vm", field)
    assert err.field == field, str(err)
    trial = vnf()
    trial["steps"][1]["trial"] = {"type": "wire", "kind": "vm", "percent": 10, "vm": value if path == ("vm",) else {path[1]: value}}
    check_refused([trial], "vnf", "shape", "trial." + field)


@pytest.mark.parametrize("value", ["false", "no", 1, [], None])
def test_only_split_is_true_or_false(value):
    """only_split was taken for its truth: 'false' (text) made a step only_split."""
    chain = ids()
    chain["steps"][1]["only_split"] = value
    err = check_refused([chain], "ids", "deep", "only_split")
    assert err.field == "only_split", str(err)


@pytest.mark.parametrize("field, value", [("name", "web\n"), ("tag", "web1\n")])
def test_a_name_or_tag_with_a_line_break_at_its_end_is_refused(field, value):
    """'$' in the name and tag patterns matched before a final line break: 'web\\n' was a chain."""
    chain = web()
    chain[field] = value
    with pytest.raises(ChainError) as err:
        run([chain])
    assert err.value.field == field, str(err.value)
    step = web()
    step["steps"][0]["name"] = "fw\n"
    check_refused([step], "web", "fw\n", "name")


@pytest.mark.parametrize("key, value", [
    ("tp_dst", 1.5), ("tp_dst", float("nan")), ("tp_dst", 70000), ("tp_dst", "http"), ("tp_dst", "80/"), ("tp_dst", -1),
    ("udp_src", "0x10000"), ("ip_dscp", 64), ("nw_proto", "tcp"), ("nw_ecn", 4), ("nw_dst", "198.18.1.256"),
    ("nw_dst", 3323068674), ("nw_src", "198.18.0.0/33"), ("nw_src", "198.18.0.0/255.0"), ("ip_dst", "2001:db8::1"),
    ("dl_dst", "02:00:00:00:00"), ("dl_src", "02:00:00:00:00:01/ff"),
])
def test_a_match_value_ovs_would_not_take_is_refused_naming_the_field(key, value):
    """Match values were only checked to be there: 1.5, NaN, 70000 or 'http' reached ovs-ofctl."""
    chain = web()
    chain["match"] = {"udp": True, key: value}
    with pytest.raises(ChainError) as err:
        run([chain])
    assert err.value.field == "match." + key and err.value.chain == "web", str(err.value)
    assert "got" in str(err.value)


@pytest.mark.parametrize("key, value", [
    ("tp_dst", 80), ("tp_dst", "0x1f40/0xffc0"), ("tp_dst", "8080"), ("ip_dscp", 63), ("nw_proto", 17), ("nw_dst", "198.18.1.2"),
    ("nw_src", "198.18.0.0/15"), ("nw_src", "198.18.0.0/255.254.0.0"), ("nw_src", "198.18.0.1/255.0.255.0"),
    ("dl_dst", "02:00:00:00:00:01"), ("dl_dst", "01:00:00:00:00:00/01:00:00:00:00:00"),
])
def test_every_form_ovs_takes_for_a_match_value_is_accepted(key, value):
    chain = web()
    chain["match"] = {"udp": True, key: value}
    (out,) = run([chain])
    assert out["match"][key] == value


@pytest.mark.parametrize("verify, field", [
    ({"base_port": "abc"}, "verify.base_port"), ({"base_port": 70000}, "verify.base_port"), ({"rate": 100}, "verify.base_port"),
    ({"base_port": 8000, "rate": 0}, "verify.rate"), ({"base_port": 8000, "flows": 1.5}, "verify.flows"),
    ({"base_port": 8000, "duration": float("nan")}, "verify.duration"), ({"base_port": 8000, "max_lost": -1}, "verify.max_lost"),
    ({"base_port": 8000, "ratee": 10}, "verify.ratee"), ({"base_port": 8000, "flows": True}, "verify.flows"),
])
def test_a_verify_section_the_probe_could_not_run_is_refused_naming_the_key(verify, field):
    """verify's contents were not checked: base_port 'abc' failed in the probe's filter, after the change."""
    chain = web()
    chain["verify"] = verify
    with pytest.raises(ChainError) as err:
        run([chain])
    assert err.value.field == field and err.value.chain == "web", str(err.value)


@pytest.mark.parametrize("vm, field", [({"cpus": 2}, "vm.cpus"), ({"image": {}}, "vm.image"), ({"image": "wire"}, "vm.image")])
def test_an_unknown_or_bad_vm_setting_is_refused(vm, field):
    """Unknown keys under vm were ignored (a typo, cpus for vcpus, gave the type's default silently)."""
    chain = vnf()
    chain["steps"][0]["vm"] = vm
    check_refused([chain], "vnf", "vm", field)


@pytest.mark.parametrize("make, step, params, field", [
    (ids, "filter", {"patterns": ["EVIL(["]}, "params.patterns[0]"),
    (ids, "filter", {"patterns": ["ok", ""]}, "params.patterns[1]"),
    (web, "fw", {"rules": ["tcp dport 23 drop\nflush ruleset"]}, "params.rules[0]"),
    (web, "fw", {"rules": [23]}, "params.rules[0]"),
    (vnf, "shape", {"rate": "400mbit\n"}, "params.rate"),
])
def test_a_parameter_its_program_could_not_read_is_refused_on_the_controller(make, step, params, field):
    """A processing module's parameter its program cannot parse was checked only on the host, where
    a running instance was restarted with it and left stopped (issue 18, 6): now the plan refuses it."""
    chain = make()
    target = next(s for s in chain["steps"] if s["name"] == step)
    target["params"] = dict(target.get("params") or {}, **params)
    check_refused([chain], chain["name"], step, field)


def test_a_classify_expression_with_a_comma_and_a_user_type_with_unknown_items_are_refused():
    chain = other()
    chain["steps"] = [{"name": "q", "type": "classify", "kind": "click", "params": {"match": ["udp, tcp"]}}]
    check_refused([chain], "other", "q", "params.match[0]")
    bad = {"mine": {"kinds": ["kernel"], "kernel": {"nft": "counter"}, "params": {"words": {"type": "str", "items": "regex"}}}}
    with pytest.raises(ChainError) as err:
        validate([other()], catalogue=bad, switches=SWITCHES, blackboxes=BOXES)
    assert "catalogue.mine.params.words.items" in str(err.value)
