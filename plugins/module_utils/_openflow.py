# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow table as a resource: want/have -> difference -> one atomic bundle.

``want`` is what the task lists (flows and groups, ovs-ofctl syntax or structured),
canonicalised by Open vSwitch's own parser (``ovs-ofctl parse-flows``/``parse-group``, one
offline process); ``have`` is what the switch holds under the task's cookie (``dump-flows
cookie=C/M``) and in its group table.  The difference is rendered as ONE ``ovs-ofctl bundle``
file: groups that flows will reference are added first, flows are changed, groups that are no
longer referenced are deleted last, and the switch applies all of it or nothing.

Ownership: a flow belongs to the task when ``flow.cookie & cookie_mask == cookie & cookie_mask``;
every flow the task installs carries exactly ``cookie`` - or, with ``flow_cookies`` (a range
claimed by a mask narrower than the full mask), its own cookie inside that range, and then the
task owns every flow of the range whatever its cookie.  Groups carry no cookie in OpenFlow, so
a task owns the groups it lists and, for ``replaced``/``absent``, the ids in ``group_id_range``.
Flows of other cookies are never deleted, modified or overwritten: an add whose table, priority
and match equal another owner's flow, a group deletion that another owner's flow references,
and (without ``flow_cookies``) a cookie mask that covers flows of other cookies are refused
before anything is sent.

Private module_utils: no Ansible imports.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.flowstream.platform.plugins.module_utils._ofctl import (
    DEFAULT_PRIORITY,
    OPENFLOW_VERSIONS,
    FlowEntry,
    GroupEntry,
    OfctlError,
    concurrently,
    parse_flow_mod_text,
)

COOKIE_BITS = 64
MAX_GROUP_ID = 0xffffff00   # OFPG_MAX: larger ids are reserved (OFPG_ALL, OFPG_ANY)
FULL_MASK = (1 << COOKIE_BITS) - 1
STATES = ("present", "replaced", "absent")
# Flags a flow keeps (the switch reports them back).  check_overlap and reset_counts are
# properties of one flow_mod, not of the flow, so a desired state cannot contain them.
KEPT_FLAGS = ("no_byte_counts", "no_packet_counts", "send_flow_rem")
RESERVED_PORTS = frozenset(("IN_PORT", "TABLE", "NORMAL", "FLOOD", "ALL", "CONTROLLER", "LOCAL", "ANY",
                            "NONE", "UNSET"))
# Bare action words that OVS reads as actions before it tries a port name.
_ACTION_WORDS = frozenset((
    "drop", "normal", "flood", "all", "local", "in_port", "controller", "table", "none", "any",
    "strip_vlan", "pop_vlan", "dec_ttl", "dec_mpls_ttl", "dec_nsh_ttl", "pop_queue", "clear_actions",
    "ct_clear", "exit", "ct", "nat", "commit", "force", "decap", "encap", "resubmit", "output",
))
_FLOW_DICT_KEYS = ("table", "priority", "match", "actions", "idle_timeout", "hard_timeout", "importance", "flags")
_GROUP_DICT_KEYS = ("group_id", "type", "selection_method", "selection_method_param", "fields", "buckets")
_BUCKET_DICT_KEYS = ("actions", "weight", "watch_port", "watch_group", "bucket_id")
GROUP_TYPES = ("all", "select", "indirect", "fast_failover", "ff")

_Q = r'"(?:[^"\\]|\\.)*"'
# Positions where ovs-ofctl accepts a port name: in_port=, output:, output(port=, enqueue:,
# enqueue(, resubmit:, resubmit(, watch_port:.
_PORT_CTX_RE = re.compile(
    r'(?P<pre>(?:(?<=^)|(?<=[,\s(]))(?:in_port|in_port_oxm)=|(?<![\w])(?:output|resubmit|watch_port|enqueue):'
    r'|(?<![\w])output\(port=|(?<![\w])(?:resubmit|enqueue)\()'
    r'(?P<val>' + _Q + r'|[^,\s():\[\]"=]+)(?P<post>\[?)')
_MEMBERS_RE = re.compile(r"(?<![\w])members:(?P<list>[^)]*)")
# A cheap first look (str.find, no regex scan): a port position whose value is not a number (or
# empty, as in resubmit(,2)), not a reserved port and not a field reference.  Flows without one
# (nearly all generated flows) skip the careful scan.
_PORT_KEYS = ("in_port=", "in_port_oxm=", "output:", "output(port=", "resubmit:", "resubmit(", "enqueue:",
              "enqueue(", "watch_port:", "members:")
_VALUE_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[^,\s():\[\]"=]+')
_FIELD_PREFIXES = ("NXM_", "OXM_", "reg", "xreg", "tun_")


_KEY_RES = tuple(re.compile(re.escape(k) + r"(?![0-9,)])") for k in _PORT_KEYS)


def _join(texts):
    """One string for all texts (so each regex scans once) and the offset where each text starts."""
    starts = []
    pos = 0
    for text in texts:
        starts.append(pos)
        pos += len(text) + 1
    return "\n".join(texts), starts


def _suspect_lines(big, starts):
    """Indexes of the texts that may hold a port name in a port position (or a quoted name)."""
    found = set()
    for rx in _KEY_RES:        # each pattern starts with a literal: a fast scan of the whole string
        for m in rx.finditer(big):
            v = _VALUE_RE.match(big, m.end())
            if v is not None:
                value = v.group(0)
                if value.upper() in RESERVED_PORTS or value.startswith(_FIELD_PREFIXES) \
                        or big[v.end():v.end() + 1] == "[":
                    continue
            found.add(bisect.bisect_right(starts, m.start()) - 1)
    pos = big.find('"')
    while pos >= 0:
        found.add(bisect.bisect_right(starts, pos) - 1)
        pos = big.find('"', pos + 1)
    return found


def _suspect(text):
    return bool(_suspect_lines(text, [0]))


# A bare word as an action (``actions=web1``) that is not a keyword: maybe an output to a named port.
_BARE_CAND_RE = re.compile(r'(?:actions=|bucket=|,)(?!(?i:drop|normal|flood|all|local|in_port|controller|'
                           r'strip_vlan|pop_vlan|dec_ttl|dec_mpls_ttl|dec_nsh_ttl|pop_queue|clear_actions|ct_clear|'
                           r'exit|table|none|any)(?:[,)]|$))[A-Za-z_][^,\s():=\[\]"]*(?=[,)]|$)')
_BARE_RE = re.compile(r'(?:^|(?<=actions=)|(?<=bucket=)|(?<=[,(]))(?P<val>' + _Q + r'|[A-Za-z_][^,\s():=\[\]"]*)(?=[,)]|$)')
_GROUP_ID_ONLY_RE = re.compile(r"^\s*group_id\s*=\s*(\d+)\s*$")
_GROUP_REF_RE = re.compile(r"(?:^|[,(])group:(\d+)")
# ovs-ofctl reads a field as name=value, name:value or name(value); cookie in any of them.
_COOKIE_IN_HEAD_RE = re.compile(r"(?:^|[,\s])cookie\s*[=:(]")
_COOKIE_FIELD_RE = re.compile(r"(?:^|[,\s])\s*cookie\s*(?:[=:]\s*(?P<v>[^,\s]*)|\((?P<p>[^)]*)\))")
_NUMBER_RE = re.compile(r"^(?:\d+|0x[0-9a-fA-F]+)$")


class OpenFlowError(Exception):
    """A request that cannot be applied; the message names the flow/group or field and the fix."""

    def __init__(self, msg, **details):
        super(OpenFlowError, self).__init__(msg)
        self.msg = msg
        self.details = details

    def __str__(self):
        return self.msg


# ---------------------------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------------------------

def to_int(value, name, bits=64, minimum=0):
    """An int from an int or a decimal/0x-hex string, checked against the field's width."""
    if isinstance(value, bool):
        raise OpenFlowError("%s must be an integer, not %r" % (name, value))
    if isinstance(value, int):
        n = value
    else:
        s = str(value).strip()
        try:
            n = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
        except ValueError:
            raise OpenFlowError("%s: %r is not an integer (decimal or 0x-hex)" % (name, value))
    if n < minimum or n >= (1 << bits):
        raise OpenFlowError("%s: %s is out of range (%d..%d)" % (name, value, minimum, (1 << bits) - 1))
    return n


def check_ownership(cookie, cookie_mask, flow_cookies=False):
    """Validate the cookie/mask a task claims; returns (cookie, mask) as ints."""
    cookie = to_int(cookie, "cookie")
    mask = FULL_MASK if cookie_mask is None else to_int(cookie_mask, "cookie_mask")
    if cookie == 0:
        raise OpenFlowError(
            "cookie 0 is the cookie of every flow that nobody marked; claiming it would claim all of them. "
            "Use a cookie of your own (convention: top 16 bits name the owner's namespace, e.g. 0xf5000000000000a1)")
    if mask == 0:
        raise OpenFlowError("cookie_mask 0 would claim every flow on the switch; use the default full mask")
    if cookie & ~mask & FULL_MASK:
        if flow_cookies:
            raise OpenFlowError("cookie 0x%x has bits outside cookie_mask 0x%x (0x%x); with flow_cookies the cookie is "
                                "the base of the range (0x%x) and each flow sets its own cookie inside it"
                                % (cookie, mask, cookie & ~mask & FULL_MASK, cookie & mask))
        raise OpenFlowError("cookie 0x%x has bits outside cookie_mask 0x%x (0x%x); a task installs flows with "
                            "exactly its cookie, so the cookie must lie inside its own mask"
                            % (cookie, mask, cookie & ~mask & FULL_MASK))
    if cookie & mask == 0:
        raise OpenFlowError("cookie 0x%x under cookie_mask 0x%x selects cookie 0, i.e. every unmarked flow; "
                            "widen the mask to cover set bits of the cookie" % (cookie, mask))
    return cookie, mask


def owns(cookie, mask, flow_cookie):
    return (flow_cookie & mask) == (cookie & mask)


# ---------------------------------------------------------------------------------------------
# Want: items -> ovs-ofctl text
# ---------------------------------------------------------------------------------------------

def _short(text, limit=160):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_line(text, where):
    if not text:
        raise OpenFlowError("%s is empty" % where)
    for ch, name in (("\n", "a newline"), ("\r", "a carriage return"), ("#", "'#' (ovs-ofctl reads it as a comment)")):
        if ch in text:
            raise OpenFlowError("%s contains %s: give one flow or group per list item" % (where, name))


def _scalar_text(value, where):
    if isinstance(value, bool):
        raise OpenFlowError("%s: %r is not a valid value" % (where, value))
    return str(value)


def flow_item_text(item, index, need_actions=True, label=None):
    """One ``flows`` item (ovs-ofctl string or dict) -> ovs-ofctl text without cookie.

    ``label(index)`` names the item in messages (default ``flows[index]``).
    """
    if isinstance(item, str):       # the hot path: 50k strings must cost milliseconds
        text = item.strip()
        if not text or "\n" in text or "\r" in text or "#" in text:
            _check_line(text, label(index) if label else "flows[%d]" % index)
        head, sep, tail = text.partition("actions=")
        if sep and "cookie" not in head:
            return text
    where = label(index) if label else "flows[%d]" % index
    if isinstance(item, str):
        pass
    elif isinstance(item, dict):
        if "cookie" in item:
            raise OpenFlowError("%s sets a cookie (cookie: %s); %s" % (where, item["cookie"], _COOKIE_HINT))
        unknown = sorted(set(item) - set(_FLOW_DICT_KEYS))
        if unknown:
            raise OpenFlowError("%s has unknown key(s) %s (known: %s)" % (where, ", ".join(unknown), ", ".join(_FLOW_DICT_KEYS)))
        parts = []
        for key in ("table", "priority", "idle_timeout", "hard_timeout", "importance"):
            if item.get(key) is not None:
                parts.append("%s=%d" % (key, to_int(item[key], "%s.%s" % (where, key), bits=16 if key != "table" else 8)))
        match = item.get("match")
        if isinstance(match, dict):
            for k, v in match.items():
                parts.append(str(k) if v is None or v is True else "%s=%s" % (k, _scalar_text(v, "%s.match.%s" % (where, k))))
        elif isinstance(match, str):
            if match.strip():
                parts.append(match.strip())
        elif match is not None:
            raise OpenFlowError("%s.match must be a string or a dict, not %s" % (where, type(match).__name__))
        flags = item.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        for flag in flags:
            parts.append(str(flag))
        actions = item.get("actions")
        if isinstance(actions, (list, tuple)):
            actions = ",".join(str(a) for a in actions) if actions else "drop"
        if actions is not None:
            parts.append("actions=%s" % actions)
        text = ",".join(parts)
    else:
        raise OpenFlowError("%s must be a string in ovs-ofctl syntax or a dict, not %s" % (where, type(item).__name__))
    _check_line(text, where)
    head, sep, tail = text.partition("actions=")
    if _COOKIE_IN_HEAD_RE.search(head):
        raise OpenFlowError("%s (%r) sets a cookie; %s" % (where, _short(text), _COOKIE_HINT))
    if not sep:
        if need_actions:
            raise OpenFlowError("%s (%r) has no actions=; write actions=drop for a flow that drops" % (where, _short(text)))
        text = text.rstrip(",") + ",actions=drop" if text.rstrip(",") else "actions=drop"
    return text


_COOKIE_HINT = ("the task's cookie option marks every flow it installs: remove the cookie from the flow, or, for "
                "flows that carry cookies of their own, claim a cookie range (cookie_mask) and set flow_cookies: true")


def flow_item_cookie(item, index, need_actions=True, label=None):
    """One ``flows`` item that may carry its own cookie -> (ovs-ofctl text without cookie, cookie or None).

    A string may set ``cookie=0x..`` (also ``cookie:`` or ``cookie(..)``, as ovs-ofctl reads it)
    anywhere before ``actions=``, conventionally first; a dict may have a ``cookie`` key (int or
    decimal/0x-hex string).  A cookie with a mask is refused: a flow has one cookie.
    """
    if isinstance(item, str):
        text = item.strip()
        if text.startswith("cookie=0x"):       # the common shape, cheap: cookie first, in hex
            comma = text.find(",")
            if comma > 0:
                rest = text[comma + 1:]
                head, sep, tail = rest.partition("actions=")
                if "cookie" not in head:
                    try:
                        cookie = int(text[9:comma], 16)
                    except ValueError:
                        cookie = None
                    if cookie is not None and cookie >> 64 == 0:
                        return flow_item_text(rest, index, need_actions, label), cookie
        head, sep, tail = text.partition("actions=")
        if "cookie" not in head:
            return flow_item_text(text, index, need_actions, label), None
        where = label(index) if label else "flows[%d]" % index
        found = list(_COOKIE_FIELD_RE.finditer(head))
        if not found:
            return flow_item_text(text, index, need_actions, label), None
        if len(found) > 1:
            raise OpenFlowError("%s (%r) sets cookie %d times; a flow has one cookie" % (where, _short(text), len(found)))
        m = found[0]
        value = m.group("v") if m.group("v") is not None else m.group("p").strip()
        if "/" in value:
            raise OpenFlowError("%s (%r) gives its cookie a mask (%s); a flow has one cookie, the task's cookie_mask "
                                "says which cookies it owns" % (where, _short(text), value))
        cookie = to_int(value, "%s (%r) cookie" % (where, _short(text)))
        rest = (head[:m.start()] + head[m.end():]).lstrip(", \t") + sep + tail
        return flow_item_text(rest, index, need_actions, label), cookie
    if isinstance(item, dict) and "cookie" in item:
        where = label(index) if label else "flows[%d]" % index
        cookie = to_int(item["cookie"], "%s.cookie" % where)
        rest = dict((k, v) for k, v in item.items() if k != "cookie")
        return flow_item_text(rest, index, need_actions, label), cookie
    return flow_item_text(item, index, need_actions, label), None


def flows_text_lines(text, source="flows_text"):
    """``flows_text`` read like an ovs-ofctl flow file: returns [(line number, flow text)].

    ``#`` starts a comment and blank lines are skipped, as ovs-ofctl does; a line may not end in a
    backslash (continuation lines are not supported). ``source`` names the text in messages.
    """
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if "#" in line:
            line = line[:line.index("#")]
        line = line.strip()
        if not line:
            continue
        if line.endswith("\\"):
            raise OpenFlowError("%s line %d ends in a backslash; continuation lines are not supported, "
                                "put each flow on one line" % (source, number))
        out.append((number, line))
    return out


def group_item_text(item, index):
    """One ``groups`` item (ovs-ofctl string or dict) -> ovs-ofctl group text."""
    where = "groups[%d]" % index
    if isinstance(item, str):
        text = item.strip()
    elif isinstance(item, int) and not isinstance(item, bool):
        text = "group_id=%d" % item
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(_GROUP_DICT_KEYS))
        if unknown:
            raise OpenFlowError("%s has unknown key(s) %s (known: %s)" % (where, ", ".join(unknown), ", ".join(_GROUP_DICT_KEYS)))
        if item.get("group_id") is None:
            raise OpenFlowError("%s has no group_id" % where)
        parts = ["group_id=%d" % to_int(item["group_id"], where + ".group_id", bits=32)]
        gtype = item.get("type")
        if gtype is not None:
            if gtype not in GROUP_TYPES:
                raise OpenFlowError("%s.type %r is not one of %s" % (where, gtype, ", ".join(GROUP_TYPES[:4])))
            parts.append("type=%s" % gtype)
        if item.get("selection_method") is not None:
            parts.append("selection_method=%s" % item["selection_method"])
        if item.get("selection_method_param") is not None:
            parts.append("selection_method_param=%d" % to_int(item["selection_method_param"], where + ".selection_method_param"))
        if item.get("fields"):
            fields = item["fields"]
            if isinstance(fields, str):
                fields = [f.strip() for f in fields.split(",")]
            parts.append("fields(%s)" % ",".join(str(f) for f in fields))
        for b_index, bucket in enumerate(item.get("buckets") or []):
            bwhere = "%s.buckets[%d]" % (where, b_index)
            if isinstance(bucket, str):
                parts.append("bucket=%s" % bucket)
                continue
            if not isinstance(bucket, dict):
                raise OpenFlowError("%s must be a string or a dict" % bwhere)
            unknown = sorted(set(bucket) - set(_BUCKET_DICT_KEYS))
            if unknown:
                raise OpenFlowError("%s has unknown key(s) %s (known: %s)" % (bwhere, ", ".join(unknown), ", ".join(_BUCKET_DICT_KEYS)))
            bparts = []
            for key in ("bucket_id", "weight", "watch_port", "watch_group"):
                if bucket.get(key) is not None:
                    bparts.append("%s:%s" % (key, _scalar_text(bucket[key], "%s.%s" % (bwhere, key))))
            actions = bucket.get("actions")
            if isinstance(actions, (list, tuple)):
                actions = ",".join(str(a) for a in actions)
            bparts.append("actions=%s" % (actions if actions else "drop"))
            parts.append("bucket=%s" % ",".join(bparts))
        text = ",".join(parts)
    else:
        raise OpenFlowError("%s must be a string in ovs-ofctl group syntax, a dict or a group id, not %s"
                            % (where, type(item).__name__))
    _check_line(text, where)
    return text


# ---------------------------------------------------------------------------------------------
# Port names -> numbers (the canonical form uses numbers; the switch knows the names)
# ---------------------------------------------------------------------------------------------

class PortNames:
    """Resolve port names in flow/group text to the numbers the switch reports.

    ``placeholders`` (check mode): a name the switch does not have yet - the port of an instance
    that the same run would create before this task - stands for a number of its own from
    PLACEHOLDER_PORT on (listed in ``missing``), instead of failing the task."""

    PLACEHOLDER_PORT = 0xfe00

    def __init__(self, ports, placeholders=False):
        self.by_name = dict((p.name, p.number) for p in ports)
        names = sorted(self.by_name, key=len, reverse=True)
        self._any = re.compile("|".join(re.escape(n) for n in names)) if names else None
        self.placeholders = placeholders
        self.missing = {}

    def _lookup(self, raw, where, strict):
        name = json.loads(raw) if raw.startswith('"') else raw
        if _NUMBER_RE.match(name) or name.upper() in RESERVED_PORTS:
            return None
        number = self.by_name.get(name)
        if number is None and strict and self.placeholders:
            number = self.missing.setdefault(name, str(self.PLACEHOLDER_PORT + len(self.missing)))
        if number is None and strict:
            known = ", ".join("%s=%s" % (n, self.by_name[n]) for n in sorted(self.by_name)) or "none"
            raise OpenFlowError("%s names port %r, which the switch does not have (ports: %s)" % (where, name, known))
        return number

    def resolve(self, text, where):
        """Return text with every port name replaced by its number; unknown names fail."""
        named = self._any is not None and self._any.search(text) is not None
        if not named and '"' not in text and not _suspect(text):
            return text                  # numbers and reserved ports only: nothing to do
        if not named and '"' not in text and not self.placeholders:
            self._check_unknown(text, where)
            return text

        def ctx(m):
            if m.group("post"):  # output:NXM_NX_REG0[0..15] is a field, not a port
                return m.group(0)
            number = self._lookup(m.group("val"), where, strict=True)
            return m.group(0) if number is None else m.group("pre") + number + m.group("post")

        text = _PORT_CTX_RE.sub(ctx, text)

        def members(m):
            items, wrap = _member_list(m.group("list"))
            out = []
            for member in items:
                number = self._lookup(member.strip(), where, strict=True) if member.strip() else None
                out.append(member if number is None else number)
            return "members:" + wrap % ",".join(out)

        text = _MEMBERS_RE.sub(members, text)

        def bare(m):
            val = m.group("val")
            if val.lower() in _ACTION_WORDS:
                return val
            number = self._lookup(val, where, strict=False)
            return val if number is None else number

        head, sep, tail = text.partition("actions=")
        if sep:
            text = head + sep + _BARE_RE.sub(bare, tail)
        if text.startswith("group_id=") or ",bucket=" in text:
            text = _BARE_RE.sub(bare, text)
        return text

    def resolve_many(self, texts, where):
        """resolve() for many texts; only the ones that may hold a port name are looked at.

        ``where(i)`` names text i in messages.
        """
        big, starts = _join(texts)
        todo = _suspect_lines(big, starts)
        if self._any is not None:
            for m in self._any.finditer(big):
                todo.add(bisect.bisect_right(starts, m.start()) - 1)
        out = list(texts)
        for i in sorted(todo):
            out[i] = self.resolve(texts[i], where(i))
        return out

    def _check_unknown(self, text, where):
        for m in _PORT_CTX_RE.finditer(text):
            if not m.group("post"):
                self._lookup(m.group("val"), where, strict=True)
        for m in _MEMBERS_RE.finditer(text):
            for member in _member_list(m.group("list"))[0]:
                if member.strip():
                    self._lookup(member.strip(), where, strict=True)


def _member_list(text):
    """The ports of a ``bundle``/``bundle_load`` action's ``members:`` list and how the list was
    written: ``2,3`` or, as ovs-ofctl also takes it, ``[2,3]`` (the brackets kept as they were)."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        return inner[1:-1].split(","), "[%s]"
    return text.split(","), "%s"


def needs_port_names(texts):
    """True when some text may name a port (then the switch's port map is fetched)."""
    big, starts = _join(texts)
    if _suspect_lines(big, starts):
        return True
    bare = _BARE_CAND_RE.search
    for text in texts:
        head, sep, tail = text.partition("actions=")
        if sep and bare("actions=" + tail) is not None:
            return True
    return False


def group_refs(actions):
    return set(int(g) for g in _GROUP_REF_RE.findall(actions))


# ---------------------------------------------------------------------------------------------
# Reconcile
# ---------------------------------------------------------------------------------------------

class Want:
    """Wanted flows/groups with their source positions (for messages)."""

    def __init__(self):
        self.flow_texts = []      # ovs-ofctl text per flows[i] (names resolved), no cookie
        self.flows = []           # canonical FlowEntry per flows[i]
        self.group_texts = []
        self.groups = []          # canonical GroupEntry per groups[i]


def _sort_key(flow):
    return (flow.table, -flow.priority, flow.match, flow.cookie or 0)


def _limit(items, limit, key, fmt):
    """The first ``limit`` of ``items`` in ``key`` order, each through ``fmt``, and whether some
    were left out.  Only the reported items are sorted in full and formatted: a 50k-flow change
    reported with a limit of 1000 (or 0) does not format 50k lines."""
    if limit is None or limit < 0 or limit >= len(items):
        return [fmt(x) for x in sorted(items, key=key)], False
    if limit == 0:
        return [], bool(items)
    return [fmt(x) for x in heapq.nsmallest(limit, items, key=key)], True


class Reconciler:
    """Compute and (unless check mode) apply the difference for one openflow_flows task."""

    def __init__(self, ofctl, cookie, cookie_mask=None, state="present", flows=None, groups=None,
                 group_id_range=None, report_limit=1000, diff=False, check_mode=False, flows_text=None,
                 flow_cookies=False, flows_text_source="flows_text"):
        if state not in STATES:
            raise OpenFlowError("state must be one of %s, not %r" % (", ".join(STATES), state))
        if OPENFLOW_VERSIONS[ofctl.version] < OPENFLOW_VERSIONS["OpenFlow14"]:
            raise OpenFlowError("openflow_version %s has no bundles; use OpenFlow14 or OpenFlow15" % ofctl.version)
        self.ofctl = ofctl
        self.cookie, self.mask = check_ownership(cookie, cookie_mask, flow_cookies)
        if flow_cookies and self.mask == FULL_MASK:
            raise OpenFlowError(
                "flow_cookies needs a cookie range: under the full cookie_mask every flow's cookie would have to be "
                "0x%x itself. Claim a range with cookie_mask (for example cookie 0xf5c0000000000000, cookie_mask "
                "0xffff000000000000: every service chain) and give each flow its own cookie inside it" % self.cookie)
        self.flow_cookies = bool(flow_cookies)
        self.own_cookies = []       # per flow: the cookie the item set itself, or None (flow_cookies only)
        self.state = state
        self.flow_items = flows
        self.flows_text = flows_text
        self.flows_text_source = flows_text_source  # how messages name it: flows_text, or flows_file PATH
        self.flows_given = flows is not None or flows_text is not None
        self.text_line_numbers = []
        self.group_items = groups
        self.report_limit = report_limit
        self.want_diff = diff
        self.check_mode = check_mode
        self.range = None
        if group_id_range is not None:
            if len(group_id_range) != 2:
                raise OpenFlowError("group_id_range must be [first, last], not %r" % (group_id_range,))
            first = to_int(group_id_range[0], "group_id_range[0]", bits=32)
            last = to_int(group_id_range[1], "group_id_range[1]", bits=32)
            if first > last or last > MAX_GROUP_ID:
                raise OpenFlowError("group_id_range [%d, %d] is empty or reaches the reserved ids (> 0x%x)" % (first, last, MAX_GROUP_ID))
            self.range = (first, last)
        if state == "replaced" and not self.flows_given:
            raise OpenFlowError("state=replaced needs flows, flows_text or flows_file: the flows the cookie should hold "
                                "(an empty list removes every flow of the cookie)")
        if state == "replaced" and groups is not None and self.range is None:
            raise OpenFlowError("state=replaced with groups needs group_id_range: groups carry no cookie, so the "
                                "range says which group ids this task owns and may delete")
        self.timings = {}

    # -- helpers ------------------------------------------------------------------------------
    def _tick(self, name, t0):
        now = time.monotonic()
        self.timings[name] = round(self.timings.get(name, 0.0) + (now - t0), 4)
        return now

    def _in_range(self, gid):
        return self.range is not None and self.range[0] <= gid <= self.range[1]

    def _flow_label(self, i):
        n = len(self.flow_items or [])
        if i < n:
            return "flows[%d]" % i
        return "%s line %d" % (self.flows_text_source, self.text_line_numbers[i - n])

    def _flow_where(self, i):
        own = self.own_cookies[i] if self.own_cookies else None
        if own is not None:
            return "%s (%r)" % (self._flow_label(i), _short("cookie=0x%x,%s" % (own, self.flow_texts_raw[i])))
        return "%s (%r)" % (self._flow_label(i), _short(self.flow_texts_raw[i]))

    def _flow_items_with_cookies(self, flow_items, need_actions):
        """flow_cookies: split each item into (text, own cookie); every own cookie inside the range."""
        pairs = [flow_item_cookie(item, i, need_actions) for i, item in enumerate(flow_items)]
        if self.flows_text:
            lines = flows_text_lines(self.flows_text, self.flows_text_source)
            self.text_line_numbers = [number for number, text in lines]
            offset = len(flow_items)
            label = self._flow_label
            pairs += [flow_item_cookie(text, offset + i, need_actions, label) for i, (number, text) in enumerate(lines)]
        self.flow_texts_raw = [text for text, own in pairs]
        self.own_cookies = [own for text, own in pairs]
        mask, mine = self.mask, self.cookie & self.mask
        for i, own in enumerate(self.own_cookies):
            if own is not None and own & mask != mine:
                field = "cookie: " if i < len(flow_items) and isinstance(flow_items[i], dict) else "cookie="
                raise OpenFlowError(
                    "%s: %s0x%x lies outside the task's cookie range 0x%x/0x%x (it differs in bits 0x%x of "
                    "cookie_mask); give the flow a cookie inside the range, or leave the cookie out to use 0x%x"
                    % (self._flow_where(i), field, own, self.cookie, mask, (own ^ self.cookie) & mask, self.cookie))

    def _group_where(self, i):
        return "groups[%d] (%r)" % (i, _short(self.group_texts_raw[i]))

    # -- main -----------------------------------------------------------------------------------
    def run(self):
        t_start = t = time.monotonic()
        ofctl = self.ofctl
        need_actions = self.state != "absent"
        flow_items = self.flow_items or []
        group_items = self.group_items or []
        if self.flow_cookies:
            self._flow_items_with_cookies(flow_items, need_actions)
        else:
            self.flow_texts_raw = [flow_item_text(item, i, need_actions) for i, item in enumerate(flow_items)]
            if self.flows_text:
                lines = flows_text_lines(self.flows_text, self.flows_text_source)
                self.text_line_numbers = [number for number, text in lines]
                offset = len(flow_items)
                label = self._flow_label
                self.flow_texts_raw += [flow_item_text(text, offset + i, need_actions, label)
                                        for i, (number, text) in enumerate(lines)]
        if self.state != "absent":
            for i, item in enumerate(group_items):
                if isinstance(item, int) and not isinstance(item, bool):
                    raise OpenFlowError("groups[%d] is only a group id (%d); state=%s needs the whole group "
                                        "(type and buckets)" % (i, item, self.state))
        self.group_texts_raw = [group_item_text(item, i) for i, item in enumerate(group_items)]
        if OPENFLOW_VERSIONS[ofctl.version] < OPENFLOW_VERSIONS["OpenFlow15"]:
            for i, text in enumerate(self.group_texts_raw):
                if "selection_method" in text or "fields(" in text:
                    raise OpenFlowError(
                        "%s uses selection_method/fields, which OpenFlow 1.4 cannot carry (Open vSwitch would "
                        "silently install a group without them); set openflow_version: OpenFlow15" % self._group_where(i))
        t = self._tick("validate", t)

        # Port names -> numbers (one dump-ports-desc, only when some text may name a port).
        texts = self.flow_texts_raw + self.group_texts_raw
        self.missing_ports = {}
        if needs_port_names(texts):
            names = PortNames(ofctl.dump_ports(), placeholders=self.check_mode)
            flow_texts = names.resolve_many(self.flow_texts_raw, self._flow_label)
            group_texts = names.resolve_many(self.group_texts_raw, lambda i: "groups[%d]" % i)
            self.missing_ports = names.missing
            t = self._tick("read", t)
        else:
            flow_texts, group_texts = self.flow_texts_raw, self.group_texts_raw
        self.flow_texts = flow_texts

        manage_groups = bool(group_items) or self.range is not None
        # have (flows of our cookie region, all groups) and canonical want, concurrently.
        calls = [lambda: ofctl.dump_flows(self.cookie, self.mask)]
        if flow_texts:
            calls.append(lambda: self._parse_flows(flow_texts))
        results = concurrently(*calls)
        have_flows = results[0]
        want_flows = results[1] if flow_texts else []
        # The cookie each wanted flow carries: its own (flow_cookies) or the task's.
        default = self.cookie
        if self.own_cookies:
            for f, own in zip(want_flows, self.own_cookies):
                f.cookie = default if own is None else own
        else:
            for f in want_flows:
                f.cookie = default
        t = self._tick("read", t)

        # Groups: needed when the task manages groups or its flows reference groups.
        want_refs = set()
        for f in want_flows:
            if "group:" in f.actions:
                want_refs |= group_refs(f.actions)
        self.want_groups = []
        have_refs = set()
        for f in have_flows:
            if "group:" in f.actions:
                have_refs |= group_refs(f.actions)
        have_groups = {}
        if manage_groups or want_refs or have_refs:
            have_groups = dict((g.group_id, g) for g in ofctl.dump_groups_seen_fully())
            t = self._tick("read", t)
        want_groups = self._canonical_groups(group_texts, have_groups)
        self.want_groups = want_groups
        t = self._tick("canonicalise", t)

        plan = self._plan(want_flows, have_flows, want_groups, have_groups)
        t = self._tick("plan", t)

        # Checks that need the whole table (other owners' flows): only when something is added
        # or a group is deleted.
        if plan["flow_add"] or plan["group_del"]:
            everything = ofctl.dump_flows()
            t = self._tick("read", t)
            self._check_foreign(plan, everything)
            t = self._tick("plan", t)
        if want_refs or have_refs or plan["group_add"] or plan["group_modify"] or plan["group_del"]:
            self._check_group_refs(plan, have_groups)   # nothing to check when no flow or group names a group
        lines = self._render(plan)
        t = self._tick("plan", t)
        changed = bool(lines)
        datapath = None
        if changed and not self.check_mode:
            self._apply(lines, plan)
            t = self._tick("apply", t)
            # a local userspace datapath can keep a flow translated from the old table (see
            # _ofctl.refresh_datapath): its datapath flows go, every packet's next one is new
            datapath = self.ofctl.refresh_datapath()
            t = self._tick("datapath", t)
        result = self._result(plan, changed, have_flows, have_groups)
        if datapath is not None:
            result["datapath"] = datapath
        self._tick("report", t)
        self.timings["total"] = round(time.monotonic() - t_start, 4)
        return result

    # -- canonicalisation ---------------------------------------------------------------------
    def _parse_flows(self, texts):
        try:
            flows = self.ofctl.parse_flows(texts)
        except OfctlError as exc:
            if exc.kind == "parse" and exc.line and 1 <= exc.line <= len(texts):
                i = exc.line - 1
                raise OpenFlowError("%s: %s (ovs-ofctl)" % (self._flow_where(i), exc.msg), index=i, ovs=exc.msg)
            if exc.kind in ("parse", "other") and exc.line is None:
                # Some errors ("no usable protocol": a flow OpenFlow 1.4 cannot express) come
                # without a line number; find the first offending flow by bisection.
                i = self._first_bad_flow(texts)
                if i is not None:
                    hint = ""
                    if "no usable protocol" in exc.msg:
                        hint = (" - %s cannot express this flow; an action may lack its prerequisite in the match "
                                "(dec_ttl and mod_nw_* need ip, mod_tp_* needs tcp/udp)" % self.ofctl.version)
                    raise OpenFlowError("%s: %s (ovs-ofctl)%s" % (self._flow_where(i), exc.msg, hint), index=i, ovs=exc.msg)
            raise
        for i, f in enumerate(flows):
            if f.cookie is not None:
                # ovs-ofctl read a cookie the module did not (e.g. in a spelling it does not know).
                raise OpenFlowError("%s sets a cookie (Open vSwitch reads cookie 0x%x from it); %s"
                                    % (self._flow_where(i), f.cookie, _COOKIE_HINT))
            bad = [x for x in f.flags if x not in KEPT_FLAGS]
            if bad:
                raise OpenFlowError("%s: flag(s) %s apply to one flow_mod, not to a flow's desired state; remove them "
                                    "(kept flags: %s)" % (self._flow_where(i), ", ".join(bad), ", ".join(KEPT_FLAGS)))
        return flows

    def _first_bad_flow(self, texts):
        lo, hi = 0, len(texts)          # invariant: texts[lo:hi] fails to parse
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                self.ofctl.parse_flows(texts[lo:mid])
            except OfctlError:
                hi = mid
            else:
                lo = mid
        try:
            self.ofctl.parse_flows(texts[lo:hi])
        except OfctlError:
            return lo
        return None

    def _canonical_groups(self, texts, have_groups):
        canon = []
        have_texts = dict((g.text, g) for g in have_groups.values())
        todo = []
        for i, text in enumerate(texts):
            only_id = _GROUP_ID_ONLY_RE.match(text) if self.state == "absent" else None
            if only_id is not None:         # absent: the id is all that is needed (no type, no buckets)
                gid = int(only_id.group(1))
                if gid > MAX_GROUP_ID:
                    raise OpenFlowError("%s: group_id %d is above the largest OpenFlow group id %d (0x%x)"
                                        % (self._group_where(i), gid, MAX_GROUP_ID, MAX_GROUP_ID))
                canon.append(GroupEntry(gid, text))
            elif text in have_texts:        # already in canonical form: no process needed
                canon.append(have_texts[text])
            else:
                canon.append(None)
                todo.append(i)

        def parse(i):
            try:
                return self.ofctl.parse_group(texts[i])
            except OfctlError as exc:
                if exc.kind == "parse":
                    raise OpenFlowError("%s: %s (ovs-ofctl)" % (self._group_where(i), exc.msg), index=i, ovs=exc.msg)
                raise

        if todo:
            with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:
                for i, g in zip(todo, pool.map(parse, todo)):
                    canon[i] = g
        self.group_texts = texts
        return canon

    # -- planning -------------------------------------------------------------------------------
    def _plan(self, want_flows, have_flows, want_groups, have_groups):
        state = self.state
        # Without flow_cookies the task's flows carry exactly its cookie, so other cookies under a
        # wider mask are another task's flows; with flow_cookies the task owns the whole range.
        check_region = self.mask != FULL_MASK and not self.flow_cookies
        have = {}
        foreign_in_region = {}
        for f in have_flows:
            have[f.key] = f
            if check_region and f.cookie != self.cookie:
                foreign_in_region.setdefault(f.cookie, f)
        if foreign_in_region and state != "absent":
            cookies = ", ".join("0x%x" % c for c in sorted(foreign_in_region)[:8])
            raise OpenFlowError(
                "cookie 0x%x/0x%x overlaps flows of other cookie(s) %s (e.g. %r): another task's flows fall under "
                "this mask. A task installs flows with exactly its cookie; use a mask that covers only your own "
                "cookie (the default full mask), or remove those flows with state=absent"
                % (self.cookie, self.mask, cookies, _short(next(iter(foreign_in_region.values())).text())))

        want = {}
        want_index = {}
        # absent with flow_cookies: a flow listed with its own cookie is deleted only if it has that
        # cookie; one listed without is deleted whatever cookie of the range it has.
        by_cookie = self.flow_cookies and state == "absent"
        any_cookie = set()
        del_cookies = {}
        for i, f in enumerate(want_flows):
            if by_cookie:
                if self.own_cookies[i] is None:
                    any_cookie.add(f.key)
                else:
                    del_cookies.setdefault(f.key, set()).add(f.cookie)
            prev = want.get(f.key)
            if prev is not None:
                j = want_index[f.key]
                if state != "absent" and (prev.value != f.value or prev.cookie != f.cookie):
                    what = "cookies (0x%x, 0x%x)" % (prev.cookie, f.cookie) if prev.cookie != f.cookie \
                        else "actions or timeouts"
                    raise OpenFlowError(
                        "%s and %s are the same flow (table %d, priority %d, match %r) with different %s; "
                        "OpenFlow keeps one flow per table, priority and match"
                        % (self._flow_where(j), self._flow_where(i), f.table, f.priority, f.match or "any", what))
                continue
            want[f.key] = f
            want_index[f.key] = i

        plan = {"flow_add": [], "flow_modify": [], "flow_readd": [], "flow_recookie": [], "flow_del": [],
                "flow_unchanged": 0,
                "group_add": [], "group_modify": [], "group_del": [], "group_unchanged": 0,
                "want_index": want_index}
        if state in ("present", "replaced"):
            for key, w in want.items():
                h = have.get(key)
                if h is None:
                    plan["flow_add"].append(w)
                elif h.cookie != w.cookie:
                    plan["flow_recookie"].append((h, w))   # modify keeps the cookie: delete + add
                elif h.value == w.value:
                    plan["flow_unchanged"] += 1
                elif (h.idle_timeout, h.hard_timeout, h.importance, h.flags) == \
                        (w.idle_timeout, w.hard_timeout, w.importance, w.flags):
                    plan["flow_modify"].append((h, w))     # actions only: counters survive
                else:
                    plan["flow_readd"].append((h, w))      # timeouts/flags/importance: re-add
            if state == "replaced":
                plan["flow_del"] = [h for key, h in have.items() if key not in want]
        else:
            if self.flows_given:
                if by_cookie:
                    plan["flow_del"] = [have[k] for k in want if k in have and
                                        (k in any_cookie or have[k].cookie in del_cookies[k])]
                else:
                    plan["flow_del"] = [have[k] for k in want if k in have]
                plan["flow_unchanged"] = len(have) - len(plan["flow_del"])
            elif self.group_items is None:
                plan["flow_del"] = list(have.values())

        # Groups.
        wanted_groups = {}
        for i, g in enumerate(want_groups):
            if self.range is not None and not self._in_range(g.group_id):
                raise OpenFlowError("%s: group_id %d is outside group_id_range [%d, %d]"
                                    % (self._group_where(i), g.group_id, self.range[0], self.range[1]))
            if g.group_id in wanted_groups and wanted_groups[g.group_id][1].text != g.text and state != "absent":
                raise OpenFlowError("%s and %s define group %d twice, differently"
                                    % (self._group_where(wanted_groups[g.group_id][0]), self._group_where(i), g.group_id))
            wanted_groups.setdefault(g.group_id, (i, g))
        if state in ("present", "replaced"):
            for gid, (i, g) in sorted(wanted_groups.items()):
                h = have_groups.get(gid)
                if h is None:
                    plan["group_add"].append((i, g))
                elif h.text != g.text or h.openflow15_only:
                    # openflow15_only: the switch's group hashes by selection_method/fields, which
                    # the wanted group (OpenFlow 1.4 cannot carry them) does not; a modify clears them.
                    plan["group_modify"].append((i, g, h))
                else:
                    plan["group_unchanged"] += 1
            if state == "replaced" and self.range is not None and self.group_items is not None:
                plan["group_del"] = [h for gid, h in sorted(have_groups.items())
                                     if self._in_range(gid) and gid not in wanted_groups]
        else:
            if self.group_items is not None:
                plan["group_del"] = [have_groups[gid] for gid in sorted(wanted_groups) if gid in have_groups]
            elif not self.flows_given and self.range is not None:
                plan["group_del"] = [h for gid, h in sorted(have_groups.items()) if self._in_range(gid)]
        plan["have"] = have
        plan["want"] = want
        return plan

    def _check_foreign(self, plan, everything):
        """Refuse to overwrite another owner's flow or delete a group another owner's flow uses."""
        foreign = {}
        foreign_refs = {}
        for f in everything:
            if owns(self.cookie, self.mask, f.cookie):
                continue
            foreign[f.key] = f
            if "group:" in f.actions:
                for gid in group_refs(f.actions):
                    foreign_refs.setdefault(gid, f)
        for w in plan["flow_add"]:
            other = foreign.get(w.key)
            if other is not None:
                i = plan["want_index"][w.key]
                raise OpenFlowError(
                    "%s has the same table, priority and match as a flow of cookie 0x%x (%r); adding it would "
                    "overwrite that flow, which this task does not own. Change the priority or match, or remove "
                    "the other flow first" % (self._flow_where(i), other.cookie, _short(other.text())))
        for g in plan["group_del"]:
            other = foreign_refs.get(g.group_id)
            if other is not None:
                raise OpenFlowError(
                    "group %d cannot be deleted: a flow of cookie 0x%x (%r) uses it, and OpenFlow deletes the flows "
                    "of a deleted group" % (g.group_id, other.cookie, _short(other.text())))

    def _check_group_refs(self, plan, have_groups):
        """Every group a flow (or group) will use exists after the change; none in use is deleted."""
        deleted = set(g.group_id for g in plan["group_del"])
        after = (set(have_groups) - deleted) | set(g.group_id for i, g in plan["group_add"])
        deleted_keys = set(f.key for f in plan["flow_del"])
        written = {}
        for w in plan["flow_add"]:
            written[w.key] = (plan["want_index"][w.key], w)
        for h, w in plan["flow_modify"] + plan["flow_readd"] + plan["flow_recookie"]:
            written[w.key] = (plan["want_index"][w.key], w)
        flows_after = list(written.values())
        flows_after += [(None, f) for key, f in plan["have"].items() if key not in deleted_keys and key not in written]
        for idx, f in flows_after:
            if "group:" not in f.actions:
                continue
            for gid in group_refs(f.actions):
                if gid in after:
                    continue
                where = self._flow_where(idx) if idx is not None else "flow %r of this cookie" % _short(f.text())
                if gid in deleted:
                    raise OpenFlowError("%s uses group %d, which this task would delete; keep the group or "
                                        "change the flow in the same task" % (where, gid))
                raise OpenFlowError("%s names group %d, which neither this task nor the switch defines; add it to "
                                    "groups (the group and the flow then go in the same bundle)" % (where, gid))
        for i, g, h in plan["group_modify"]:
            for gid in g.references():
                if gid not in after:
                    raise OpenFlowError("%s chains to group %d, which will not exist" % (self._group_where(i), gid))
        for i, g in plan["group_add"]:
            for gid in g.references():
                if gid not in after:
                    raise OpenFlowError("%s chains to group %d, which will not exist" % (self._group_where(i), gid))

    # -- rendering -------------------------------------------------------------------------------
    def _render(self, plan):
        lines = []
        # 1. groups that flows will use: chained groups after the groups they chain to.
        adds = dict((g.group_id, (i, g)) for i, g in plan["group_add"])
        done = set()

        def emit(gid, stack=()):
            if gid in done or gid not in adds:
                return
            if gid in stack:
                raise OpenFlowError("groups chain to each other in a loop: %s" % " -> ".join(str(x) for x in stack + (gid,)))
            for ref in sorted(adds[gid][1].references()):
                emit(ref, stack + (gid,))
            done.add(gid)
            lines.append("group add %s" % self.group_texts[adds[gid][0]])

        for gid in sorted(adds):
            emit(gid)
        for i, g, h in plan["group_modify"]:
            lines.append("group modify %s" % self.group_texts[i])
        # 2. flows.  Strict deletes and modifies name table, priority and match only: with a
        # cookie mask Open vSwitch walks every flow of the cookie for each of them (measured:
        # 500 masked strict ops on a 50k-flow cookie take 4 s, unmasked 0.02 s).  The key was
        # read under our cookie a moment ago; see the notes on the window in the module docs.
        if plan["flow_del"] and len(plan["flow_del"]) == len(plan["have"]) and len(plan["have"]) > 1:
            # Everything of the cookie goes: one non-strict delete over all tables.
            lines.append("flow delete cookie=0x%x/0x%x" % (self.cookie, self.mask))
        else:
            for h in sorted(plan["flow_del"], key=_sort_key):
                lines.append("flow delete_strict %s" % h.match_spec())
        # A flow whose cookie changes is deleted and added again (OpenFlow 1.1+ modify keeps the
        # cookie, and an add over it would keep the old owner's counters); ordered, in this bundle.
        for h, w in plan["flow_recookie"]:
            lines.append("flow delete_strict %s" % h.match_spec())
        for h, w in plan["flow_modify"]:
            lines.append("flow modify_strict %s,actions=%s" % (w.match_spec(), w.actions))
        texts, index = self.flow_texts, plan["want_index"]
        for h, w in plan["flow_readd"] + plan["flow_recookie"]:
            lines.append("flow add cookie=0x%x,%s" % (w.cookie, texts[index[w.key]]))
        for w in plan["flow_add"]:
            lines.append("flow add cookie=0x%x,%s" % (w.cookie, texts[index[w.key]]))
        # 3. groups nobody uses any more: chaining groups before the groups they chain to.
        dels = dict((g.group_id, g) for g in plan["group_del"])
        order = []
        seen = set()

        def visit(gid):
            if gid in seen or gid not in dels:
                return
            seen.add(gid)
            for ref in sorted(dels[gid].references()):
                visit(ref)
            order.append(gid)

        for gid in sorted(dels):
            visit(gid)
        for gid in reversed(order):
            lines.append("group delete group_id=%d" % gid)
        return lines

    def _apply(self, lines, plan):
        has_groups = any(line.startswith("group ") for line in lines)
        try:
            if has_groups:
                self.ofctl.bundle(lines)
            else:
                self.ofctl.bundle_flows([line[5:] for line in lines])
        except OfctlError as exc:
            raise self._explain_apply_error(exc, plan)

    def _explain_apply_error(self, exc, plan):
        if exc.kind != "rejected" or not exc.failed:
            return exc
        failed = exc.failed
        body = failed.split(" ", 1)[1] if failed.split(" ", 1)[0].isupper() and " " in failed else failed
        where = None
        if body.startswith("group_id="):
            m = re.match(r"group_id=(\d+)", body)
            gid = int(m.group(1))
            for i, g in enumerate(self.want_groups):
                if g.group_id == gid:
                    where = self._group_where(i)
                    break
            where = where or "group %d" % gid
        else:
            f = parse_flow_mod_text(failed)
            i = plan["want_index"].get(f.key)
            where = self._flow_where(i) if i is not None else "the flow %r" % _short(f.text())
        msg = "the switch rejected %s: %s (Open vSwitch printed the message as: %s). Nothing was changed: the " \
              "bundle is all or nothing." % (where, exc.code, failed)
        return OpenFlowError(msg, code=exc.code, ovs=failed)

    # -- result ----------------------------------------------------------------------------------
    def _flow_line(self, f):
        if self.mask != FULL_MASK and f.cookie is not None:
            return "cookie=0x%x,%s" % (f.cookie, f.text())
        return f.text()

    def _result(self, plan, changed, have_flows, have_groups):
        limit = self.report_limit
        added, t1 = _limit(plan["flow_add"], limit, _sort_key, self._flow_line)
        removed, t2 = _limit(plan["flow_del"], limit, _sort_key, self._flow_line)
        changes = plan["flow_modify"] + plan["flow_readd"] + plan["flow_recookie"]
        modified, t3 = _limit(changes, limit, lambda p: _sort_key(p[0]),
                              lambda p: {"before": self._flow_line(p[0]), "after": self._flow_line(p[1])})
        g_added = [g.text for i, g in plan["group_add"]]
        g_removed = [g.full_text() for g in plan["group_del"]]
        g_modified = [{"before": h.full_text(), "after": g.text} for i, g, h in plan["group_modify"]]
        n_mod = len(changes)
        counts = {
            "flows_added": len(plan["flow_add"]),
            "flows_removed": len(plan["flow_del"]),
            "flows_modified": n_mod,
            "flows_unchanged": plan["flow_unchanged"],
            "flows_before": len(have_flows),
            "flows_after": len(have_flows) + len(plan["flow_add"]) - len(plan["flow_del"]),
            "groups_added": len(g_added),
            "groups_removed": len(g_removed),
            "groups_modified": len(g_modified),
            "groups_unchanged": plan["group_unchanged"],
        }
        result = {
            "changed": changed,
            "cookie": "0x%016x" % self.cookie,
            "cookie_mask": "0x%016x" % self.mask,
            "counts": counts,
            "added": added,
            "removed": removed,
            "modified": modified,
            "groups_added": g_added,
            "groups_removed": g_removed,
            "groups_modified": g_modified,
            "truncated": t1 or t2 or t3,
            "timings": self.timings,
        }
        if getattr(self, "missing_ports", None):
            result["ports_not_there"] = {name: int(number) for name, number in sorted(self.missing_ports.items())}
        if self.want_diff:
            result["diff"] = self._diff(plan, have_flows, have_groups)
        return result

    def _diff(self, plan, have_flows, have_groups):
        deleted = set(f.key for f in plan["flow_del"])
        new = dict((w.key, w) for w in plan["flow_add"])
        for h, w in plan["flow_modify"] + plan["flow_readd"] + plan["flow_recookie"]:
            new[w.key] = w
        after_flows = [f for f in have_flows if f.key not in deleted and f.key not in new]
        after_flows.extend(new.values())
        shown = set()
        for i, g in plan["group_add"]:
            shown.add(g.group_id)
        for i, g, h in plan["group_modify"]:
            shown.add(g.group_id)
        # Groups shown: the ones this task touches or owns, before and after.
        owned = set(gid for gid in have_groups if self._in_range(gid))
        owned |= shown | set(g.group_id for g in plan["group_del"])
        owned |= set(g.group_id for g in self.want_groups)
        before_groups = [have_groups[gid].full_text() for gid in sorted(owned) if gid in have_groups]
        after_map = dict((gid, have_groups[gid].full_text()) for gid in owned if gid in have_groups)
        for g in plan["group_del"]:
            after_map.pop(g.group_id, None)
        for i, g in plan["group_add"]:
            after_map[g.group_id] = g.text
        for i, g, h in plan["group_modify"]:
            after_map[g.group_id] = g.text
        after_groups = [after_map[gid] for gid in sorted(after_map)]

        def text(groups, flows):
            lines = ["group %s" % g for g in groups] + [self._flow_line(f) for f in sorted(flows, key=_sort_key)]
            return "".join(line + "\n" for line in lines)

        target = "%s cookie=0x%x/0x%x" % (self.ofctl.target, self.cookie, self.mask)
        return {
            "before_header": target,
            "after_header": target,
            "before": text(before_groups, have_flows),
            "after": text(after_groups, after_flows),
        }


def reconcile(ofctl, **kwargs):
    """Convenience wrapper: Reconciler(ofctl, **kwargs).run()."""
    return Reconciler(ofctl, **kwargs).run()


# ---------------------------------------------------------------------------------------------
# Read-only view (openflow_info)
# ---------------------------------------------------------------------------------------------

def gather(ofctl, cookie=None, cookie_mask=None, flows=True, groups=True, ports=True, table=None):
    """Flows (with counters), groups (with stats) and ports of one switch."""
    result = {}
    t0 = time.monotonic()
    c = m = None
    if cookie is not None:
        c = to_int(cookie, "cookie")
        m = FULL_MASK if cookie_mask is None else to_int(cookie_mask, "cookie_mask")
    calls = []
    if flows:
        calls.append(("flows", lambda: ofctl.dump_flows(c, m, table)))
    if groups:
        calls.append(("groups", ofctl.dump_groups_seen_fully))
        calls.append(("group_stats", ofctl.dump_group_stats))
    if ports:
        calls.append(("ports", ofctl.dump_ports))
    values = dict(zip([name for name, call in calls], concurrently(*[call for name, call in calls]))) if calls else {}
    if flows:
        result["flows"] = [f.as_dict(stats=True) for f in sorted(values["flows"], key=_sort_key)]
    if groups:
        stats = values["group_stats"]
        out = []
        for g in sorted(values["groups"], key=lambda x: x.group_id):
            g.stats = stats.get(g.group_id)
            out.append(g.as_dict())
        result["groups"] = out
    if ports:
        plist = values["ports"]
        result["ports"] = [p.as_dict() for p in plist]
        result["port_numbers"] = dict((p.name, p.number) for p in plist)
        result["port_names"] = dict((p.number, p.name) for p in plist)
    result["timings"] = {"total": round(time.monotonic() - t0, 4)}
    return result


__all__ = ["OpenFlowError", "Reconciler", "reconcile", "gather", "check_ownership", "flow_item_text", "flow_item_cookie",
           "group_item_text", "PortNames", "needs_port_names", "FULL_MASK", "DEFAULT_PRIORITY", "FlowEntry"]
