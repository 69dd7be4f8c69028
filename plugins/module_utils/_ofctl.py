# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wrapper around ``ovs-ofctl`` that every flowstream.platform OpenFlow plugin uses.

It builds argv (OpenFlow version, ``--timeout``, ``--no-names``, SSL options, ``--bundle``),
runs the tool, parses what it prints (``dump-flows``, ``dump-groups``, ``dump-group-stats``,
``dump-ports-desc``, ``parse-flows``, ``parse-group``) and maps every failure to one exception
type, :class:`OfctlError`, that carries the switch's own words.

Canonical form.  ``ovs-ofctl parse-flows``/``parse-group`` encode a flow or group into an
OpenFlow message of the chosen version, decode it again and print it with the same functions
that print ``dump-flows``/``dump-groups`` replies.  So the canonical text of a wanted flow is
what Open vSwitch itself prints, computed offline in one process for any number of flows, and
it compares byte for byte with what the switch dumps back (``tests/integration/openflow``
proves this property against the real switch).

Private module_utils: no Ansible imports, no side effects at import time.  The process runner
is injectable so that unit tests can list exact argv and feed canned output.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import CommandError, run as _run

OPENFLOW_VERSIONS = {
    "OpenFlow13": 0x04,
    "OpenFlow14": 0x05,
    "OpenFlow15": 0x06,
}
_VERSION_NAMES = dict((v, k) for k, v in OPENFLOW_VERSIONS.items())
_VERSION_NAMES.update({0x01: "OpenFlow10", 0x02: "OpenFlow11", 0x03: "OpenFlow12"})

# Flow-mod flags OVS prints as bare words (ofp_print_flow_flags).
FLOW_FLAGS = ("send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts")
_FLOW_FLAG_SET = frozenset(FLOW_FLAGS)
DEFAULT_PRIORITY = 32768

_TARGET_RE = re.compile(
    r"^(?:"
    r"(?P<unix>unix:.+)"
    r"|(?P<inet>(?P<scheme>tcp|ssl):(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(?::\d{1,5})?)"
    r"|(?P<bridge>[A-Za-z0-9_.\-]{1,64})"
    r")$"
)
_LOG_PREFIX_RE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z\|\d+\|[\w-]+\|[A-Z]+\|")
_SWITCH_ERROR_RE = re.compile(r"^Error (?P<code>[A-Z0-9_]+) for: (?P<msg>.*)$")
_FILE_LINE_RE = re.compile(r"^ovs-ofctl: (?:-|[^:\s]+):(?P<line>\d+): (?P<msg>.*)$")
_VERSION_RE = re.compile(r"version negotiation failed \(we support version 0x(?P<ours>[0-9a-f]+), "
                         r"peer supports versions? (?P<theirs>0x[0-9a-f]+(?:, 0x[0-9a-f]+)*)\)")
_XID_HEAD_RE = re.compile(r"^(?:OFPT|NXT|ONFT)_[A-Z_]+ \(OF[\d.x]+\) \(xid=0x[0-9a-f]+\):\s*")
_PORT_RE = re.compile(r"^ (?P<number>\d+|LOCAL)\((?P<name>.*)\): addr:(?P<addr>\S+)$")


class OfctlError(Exception):
    """Any failure of ovs-ofctl, with the switch's (or the tool's) own words.

    ``kind`` is one of: ``exec`` (the tool could not run), ``connect`` (switch unreachable),
    ``version`` (OpenFlow version refused), ``ssl`` (TLS handshake failed), ``timeout``,
    ``parse`` (ovs-ofctl rejected the syntax of a flow or group; ``line`` is the 1-based
    input line), ``rejected`` (the switch rejected a message; ``code`` is the OpenFlow error
    name and ``failed`` the message as Open vSwitch printed it), ``other``.
    """

    def __init__(self, msg, argv=None, rc=None, stderr="", kind="other", code=None, failed=None, line=None):
        super(OfctlError, self).__init__(msg)
        self.msg = msg
        self.argv = list(argv or [])
        self.rc = rc
        self.stderr = stderr
        self.kind = kind
        self.code = code
        self.failed = failed
        self.line = line

    def __str__(self):
        return self.msg


def version_name(number):
    """0x05 -> 'OpenFlow14'."""
    return _VERSION_NAMES.get(number, "0x%02x" % number)


def run_subprocess(argv, data=None, timeout=None):
    """Run argv, feeding ``data`` (str) on stdin; returns (rc, stdout, stderr) as str.

    Through the collection's one command runner (_cmd.run: communicate() on pipes, so a
    50k-line input and a large dump never deadlock), not AnsibleModule.run_command, which
    writes all of stdin before it reads stdout/stderr and was measured 2-3x slower collecting
    a 6 MB dump-flows. Nothing secret is ever on argv: SSL private keys are file paths.
    """
    try:
        res = _run(argv, check=False, data=data, env={"LC_ALL": "C"}, timeout=timeout)
    except CommandError as exc:
        if exc.rc == -1:
            raise OfctlError("%s did not finish within %s s" % (" ".join(argv[:6]), timeout), argv=argv, kind="timeout")
        raise OfctlError("cannot run %s: %s" % (argv[0], exc.words), argv=argv, kind="exec")
    return res.rc, res.stdout, res.stderr


# ---------------------------------------------------------------------------------------------
# Records parsed from ovs-ofctl output
# ---------------------------------------------------------------------------------------------

class FlowEntry:
    """One flow as Open vSwitch prints it: canonical match and actions text.

    Identity (``key``) is what OpenFlow itself uses: table, priority and match; two entries
    with the same key cannot coexist in a switch.  ``value`` is what a flow_mod can change.
    """

    __slots__ = ("table", "priority", "match", "actions", "cookie", "idle_timeout", "hard_timeout",
                 "importance", "flags", "n_packets", "n_bytes", "duration")

    def __init__(self, table=0, priority=DEFAULT_PRIORITY, match="", actions="drop", cookie=None,
                 idle_timeout=0, hard_timeout=0, importance=0, flags=(), n_packets=None, n_bytes=None,
                 duration=None):
        self.table = table
        self.priority = priority
        self.match = match
        self.actions = actions
        self.cookie = cookie
        self.idle_timeout = idle_timeout
        self.hard_timeout = hard_timeout
        self.importance = importance
        self.flags = flags
        self.n_packets = n_packets
        self.n_bytes = n_bytes
        self.duration = duration

    @property
    def key(self):
        return (self.table, self.priority, self.match)

    @property
    def value(self):
        return (self.actions, self.idle_timeout, self.hard_timeout, self.importance, self.flags)

    def spec(self):
        """table/priority/match/timeouts/flags in ovs-ofctl syntax, without actions or cookie."""
        parts = ["table=%d" % self.table, "priority=%d" % self.priority]
        if self.match:
            parts.append(self.match)
        if self.idle_timeout:
            parts.append("idle_timeout=%d" % self.idle_timeout)
        if self.hard_timeout:
            parts.append("hard_timeout=%d" % self.hard_timeout)
        if self.importance:
            parts.append("importance=%d" % self.importance)
        parts.extend(self.flags)
        return ",".join(parts)

    def text(self):
        """Canonical, re-parseable ovs-ofctl text (cookie left out: the task sets it)."""
        return "%s,actions=%s" % (self.spec(), self.actions)

    def match_spec(self):
        """table, priority and match only: what delete_strict/modify_strict select on."""
        if self.match:
            return "table=%d,priority=%d,%s" % (self.table, self.priority, self.match)
        return "table=%d,priority=%d" % (self.table, self.priority)

    def as_dict(self, stats=False):
        d = {
            "table": self.table,
            "priority": self.priority,
            "match": self.match,
            "actions": self.actions,
            "idle_timeout": self.idle_timeout,
            "hard_timeout": self.hard_timeout,
            "importance": self.importance,
            "flags": list(self.flags),
            "flow": self.text(),
        }
        if self.cookie is not None:
            d["cookie"] = "0x%x" % self.cookie
        if stats:
            d["n_packets"] = self.n_packets
            d["n_bytes"] = self.n_bytes
            d["duration"] = self.duration
        return d

    def __repr__(self):
        return "FlowEntry(%r)" % self.text()


class GroupEntry:
    """One group as Open vSwitch prints it (``group_id=N,type=...,bucket=...``)."""

    __slots__ = ("group_id", "text", "stats", "openflow15_only")

    def __init__(self, group_id, text, stats=None):
        self.group_id = group_id
        self.text = text
        self.stats = stats
        # selection_method/fields the switch holds but an OpenFlow 1.4 (or older) reply leaves out
        self.openflow15_only = None

    def full_text(self):
        """The text with the OpenFlow 1.5-only properties put back (what the switch really holds)."""
        if not self.openflow15_only:
            return self.text
        head, sep, tail = self.text.partition(",bucket=")
        return "%s,%s%s%s" % (head, self.openflow15_only, sep, tail)

    @property
    def type(self):
        m = re.search(r",type=([a-z_]+)", self.text)
        return m.group(1) if m else None

    def references(self):
        """Group ids this group's buckets chain to (``group:N`` actions, ``watch_group:N``)."""
        return set(int(g) for g in re.findall(r"(?:[=,(:]group:|watch_group:)(\d+)", self.text))

    def as_dict(self):
        d = {"group_id": self.group_id, "type": self.type, "group": self.text}
        if self.openflow15_only:
            d["openflow15_only"] = self.openflow15_only
        if self.stats is not None:
            d.update(self.stats)
        return d

    def __repr__(self):
        return "GroupEntry(%r)" % self.text


class Port:
    __slots__ = ("number", "name", "addr", "config", "state")

    def __init__(self, number, name, addr=None, config=(), state=()):
        self.number = number
        self.name = name
        self.addr = addr
        self.config = config
        self.state = state

    def as_dict(self):
        return {"number": self.number, "name": self.name, "mac": self.addr,
                "config": list(self.config), "state": list(self.state)}


# ---------------------------------------------------------------------------------------------
# Output parsers (pure functions; unit-tested with canned output of OVS 3.1)
# ---------------------------------------------------------------------------------------------

def _split_priority(match):
    """'priority=5,tcp,tp_dst=80' -> (5, 'tcp,tp_dst=80'); a missing priority is 32768."""
    if match.startswith("priority="):
        head, sep, rest = match.partition(",")
        return int(head[9:]), rest
    return DEFAULT_PRIORITY, match


# The common shapes, parsed in one regex match (the general tokenizer handles everything else:
# timeouts, flags, importance).  50k flows: 0.08 s instead of 0.18 s.
_DUMP_FAST_RE = re.compile(r"^ cookie=0x([0-9a-f]+), duration=([0-9.]+)s, table=(\d+), n_packets=(\d+), "
                           r"n_bytes=(\d+), (?:(\S+) )?actions=(.*)$")
_PARSE_FAST_RE = re.compile(r"^OFPT_FLOW_MOD \(OF1\.\d\) \(xid=0x[0-9a-f]+\): ADD (?:table:(\d+) )?(?:(\S+) )?actions=(.*)$")


def _plain_match(tok):
    """True when the one token before 'actions=' can only be a match (not a stat, flag or option)."""
    return tok is None or not (tok[-1] == "," or tok in _FLOW_FLAG_SET or ":" in tok.partition("=")[0])


def parse_dump_flows(text):
    """Parse ``ovs-ofctl --no-names dump-flows`` output (OpenFlow 1.1+ replies) into FlowEntry."""
    flows = []
    append = flows.append
    fast = _DUMP_FAST_RE.match
    for line in text.splitlines():
        if not line.startswith(" "):
            # 'OFPST_FLOW reply (OF1.4) (xid=0x2): flags=[more]' headers, one per multipart part.
            continue
        m = fast(line)
        if m is not None and _plain_match(m.group(6)):
            cookie, duration, table, n_packets, n_bytes, match, actions = m.groups()
            priority, match = _split_priority(match or "")
            append(FlowEntry(int(table), priority, match, actions, int(cookie, 16), 0, 0, 0, (),
                             int(n_packets), int(n_bytes), float(duration)))
            continue
        head, sep, actions = line.partition(" actions=")
        if not sep:
            continue
        cookie = table = 0
        n_packets = n_bytes = None
        duration = None
        idle = hard = importance = 0
        flags = []
        match = ""
        for tok in head.split():
            if tok[-1] == ",":
                name, eq, val = tok[:-1].partition("=")
                if name == "cookie":
                    cookie = int(val, 16)
                elif name == "table":
                    table = int(val)
                elif name == "n_packets":
                    n_packets = int(val)
                elif name == "n_bytes":
                    n_bytes = int(val)
                elif name == "duration":
                    duration = float(val.rstrip("s"))
                elif name == "idle_timeout":
                    idle = int(val)
                elif name == "hard_timeout":
                    hard = int(val)
                elif name == "importance":
                    importance = int(val)
                # idle_age, hard_age: ignored
            elif tok in _FLOW_FLAG_SET:
                flags.append(tok)
            else:
                match = tok
        priority, match = _split_priority(match)
        append(FlowEntry(table, priority, match, actions, cookie, idle, hard, importance,
                         tuple(sorted(flags)), n_packets, n_bytes, duration))
    return flows


def parse_flow_mod_text(body):
    """Parse the body OVS prints for a flow_mod (``ADD table:1 priority=5,ip idle:5 actions=..``)."""
    head, sep, actions = body.partition("actions=")
    table = 0
    cookie = None
    idle = hard = importance = 0
    flags = []
    match = ""
    for tok in head.split():
        if tok in ("ADD", "MOD", "MOD_STRICT", "DEL", "DEL_STRICT"):
            continue
        name, colon, val = tok.partition(":")
        if colon and name in ("table", "cookie", "idle", "hard", "importance", "buf", "out_port", "out_group"):
            if name == "table":
                table = int(val)
            elif name == "cookie":
                cookie = int(val.split("/")[0], 16)
            elif name == "idle":
                idle = int(val)
            elif name == "hard":
                hard = int(val)
            elif name == "importance":
                importance = int(val)
            continue
        if tok in _FLOW_FLAG_SET:
            flags.append(tok)
        else:
            match = tok
    priority, match = _split_priority(match)
    return FlowEntry(table, priority, match, actions if sep else "", cookie, idle, hard, importance,
                     tuple(sorted(flags)))


def parse_parse_flows(text):
    """Parse ``ovs-ofctl parse-flows`` output: one FlowEntry per input flow, in input order."""
    flows = []
    fast = _PARSE_FAST_RE.match
    for line in text.splitlines():
        m = fast(line)
        if m is not None and _plain_match(m.group(2)):
            table, match, actions = m.groups()
            priority, match = _split_priority(match or "")
            flows.append(FlowEntry(int(table) if table else 0, priority, match, actions))
            continue
        if line.startswith("OFPT_FLOW_MOD") or line.startswith("NXT_FLOW_MOD"):
            body = _XID_HEAD_RE.sub("", line, count=1)
            flows.append(parse_flow_mod_text(body))
    return flows


def _group_from_text(text):
    text = text.strip()
    if text.startswith("ADD "):
        text = text[4:]
    m = re.match(r"group_id=(\d+)", text)
    if not m:
        return None
    return GroupEntry(int(m.group(1)), text)


def parse_dump_groups(text):
    """Parse ``ovs-ofctl dump-groups`` output into GroupEntry records."""
    groups = []
    for line in text.splitlines():
        if line.startswith(" group_id="):
            g = _group_from_text(line)
            if g is not None:
                groups.append(g)
    return groups


_OF15_GROUP_PROP_RE = re.compile(r",(selection_method=[^,]*|selection_method_param=[^,]*|fields\([^)]*\))")


def openflow15_group_props(text):
    """'selection_method=hash,fields(ip_src)' from a group's OpenFlow 1.5 text ('' when it has none)."""
    head = text.partition(",bucket=")[0]
    return ",".join(_OF15_GROUP_PROP_RE.findall(head))


def parse_parse_group(text):
    """Parse ``ovs-ofctl parse-group`` output (the group mod is printed on its own line)."""
    for line in text.splitlines():
        if line.startswith(" ADD ") or line.startswith(" group_id="):
            return _group_from_text(line)
    return None


def parse_group_stats(text):
    """Parse ``dump-group-stats``: {group_id: {ref_count, packet_count, byte_count, duration, buckets}}."""
    stats = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("group_id="):
            continue
        parts = re.split(r",bucket(\d+):", line)
        fields = dict(kv.split("=", 1) for kv in parts[0].split(",") if "=" in kv)
        buckets = []
        for body in parts[2::2]:
            b = dict(kv.split("=", 1) for kv in body.split(",") if "=" in kv)
            buckets.append({"packet_count": int(b.get("packet_count", 0)),
                            "byte_count": int(b.get("byte_count", 0))})
        gid = int(fields["group_id"])
        stats[gid] = {
            "ref_count": int(fields.get("ref_count", 0)),
            "packet_count": int(fields.get("packet_count", 0)),
            "byte_count": int(fields.get("byte_count", 0)),
            "duration": float(fields.get("duration", "0").rstrip("s")),
            "buckets": buckets,
        }
    return stats


def parse_ports_desc(text):
    """Parse ``dump-ports-desc`` into Port records (number is a decimal string or 'LOCAL')."""
    ports = []
    cur = None
    for line in text.splitlines():
        m = _PORT_RE.match(line)
        if m:
            cur = Port(m.group("number"), m.group("name"), m.group("addr"), (), ())
            ports.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        # OVS prints "config: 0" / "state: 0" for no flags at all
        if s.startswith("config:"):
            cur.config = tuple(w for w in s[7:].split() if w != "0")
        elif s.startswith("state:"):
            cur.state = tuple(w for w in s[6:].split() if w != "0")
    return ports


_PORT_STATS_RX = re.compile(r"^\s*port\s+(?P<number>\S+?):?\s+rx pkts=(?P<pkts>\d+|\?), bytes=(?P<bytes>\d+|\?), "
                            r"drop=(?P<drop>\d+|\?)")
_PORT_STATS_TX = re.compile(r"^\s*tx pkts=(?P<pkts>\d+|\?), bytes=(?P<bytes>\d+|\?), drop=(?P<drop>\d+|\?)")


def _stat(text):
    return None if text == "?" else int(text)


def parse_port_stats(text):
    """Parse ``dump-ports`` into {port number (decimal string or 'LOCAL'): counters}; a counter
    the switch does not keep ('?') is None."""
    stats = {}
    cur = None
    for line in text.splitlines():
        m = _PORT_STATS_RX.match(line)
        if m:
            cur = stats[m.group("number")] = {"rx_packets": _stat(m.group("pkts")), "rx_bytes": _stat(m.group("bytes")),
                                              "rx_dropped": _stat(m.group("drop"))}
            continue
        m = _PORT_STATS_TX.match(line)
        if m and cur is not None:
            cur.update(tx_packets=_stat(m.group("pkts")), tx_bytes=_stat(m.group("bytes")), tx_dropped=_stat(m.group("drop")))
    return stats


# ---------------------------------------------------------------------------------------------
# Error mapping
# ---------------------------------------------------------------------------------------------

def _clean_stderr_lines(stderr):
    lines = []
    for raw in stderr.splitlines():
        line = _LOG_PREFIX_RE.sub("", raw).rstrip()
        # tcp:/ssl: without a port: OVS's notice about its default port, not the error
        if line and "default OpenFlow port number has changed" not in line:
            lines.append(line)
    return lines


def map_error(argv, rc, stderr, target=None):
    """Turn a failed ovs-ofctl run into OfctlError with the switch's own words."""
    lines = _clean_stderr_lines(stderr)
    words = "; ".join(lines) if lines else "exit status %s" % rc
    where = target or "the switch"

    # The switch rejected a message: 'Error CODE for: <msg>' (the message may continue on
    # indented lines).  A bundle commit failure that follows is a consequence, not the cause.
    for i, line in enumerate(lines):
        m = _SWITCH_ERROR_RE.match(line)
        if m and m.group("code") != "OFPBFC_MSG_FAILED":
            failed = m.group("msg")
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):
                failed += " " + lines[j].strip()
                j += 1
            failed = _XID_HEAD_RE.sub("", failed, count=1).strip()
            return OfctlError("%s rejected %s: %s" % (where, failed, m.group("code")), argv, rc, stderr,
                              kind="rejected", code=m.group("code"), failed=failed)
    for line in lines:
        m = _VERSION_RE.search(line)
        if m:
            ours = version_name(int(m.group("ours"), 16))
            theirs = ", ".join(version_name(int(v, 16)) for v in m.group("theirs").split(", "))
            return OfctlError(
                "%s does not speak %s (it offers %s; a bridge's versions are its protocols column, e.g. "
                "ovs-vsctl set bridge BR protocols=OpenFlow13,OpenFlow14,OpenFlow15): %s" % (where, ours, theirs, words),
                argv, rc, stderr, kind="version")
    for line in lines:
        m = _FILE_LINE_RE.match(line)
        if m:
            return OfctlError(m.group("msg"), argv, rc, stderr, kind="parse", line=int(m.group("line")))
    low = words.lower()
    if "ssl" in low and ("verify" in low or "handshake" in low or "certificate" in low or "private key" in low):
        return OfctlError("TLS with %s failed: %s" % (where, words), argv, rc, stderr, kind="ssl")
    if ("failed to connect" in low or "connection refused" in low or "is not a bridge or a socket" in low
            or "connecting to" in low or "no such file or directory" in low):
        return OfctlError("cannot reach %s: %s" % (where, words), argv, rc, stderr, kind="connect")
    if "timeout" in low or "timed out" in low:
        return OfctlError("%s did not answer in time: %s" % (where, words), argv, rc, stderr, kind="timeout")
    if rc != 0 and lines and lines[-1].startswith("ovs-ofctl: ") and len(lines) == 1:
        # Single-line syntax errors from parse-group and friends.
        return OfctlError(lines[-1][len("ovs-ofctl: "):], argv, rc, stderr, kind="parse")
    return OfctlError("ovs-ofctl failed against %s: %s" % (where, words), argv, rc, stderr, kind="other")


def check_target(target):
    """Validate an OpenFlow target; returns 'bridge', 'unix', 'tcp' or 'ssl'."""
    m = _TARGET_RE.match(target or "")
    if not m:
        raise ValueError(
            "switch %r is neither a bridge name nor an OpenFlow target (unix:PATH, tcp:HOST[:PORT], "
            "ssl:HOST[:PORT])" % (target,))
    if m.group("unix"):
        return "unix"
    if m.group("inet"):
        return m.group("scheme")
    return "bridge"


def _local_daemon(target):
    """(``ovs-appctl`` argv that reaches the ovs-vswitchd holding a LOCAL OpenFlow target, the
    bridge it names) - a bridge name: the default daemon; ``unix:<rundir>/<bridge>.mgmt``: the
    daemon whose pid file is in that rundir (bridge None for a socket of another name) - or None
    for a remote switch (tcp:, ssl:)."""
    kind = check_target(target)
    if kind == "bridge":
        return ["ovs-appctl"], target
    if kind != "unix":
        return None
    path = target[len("unix:"):]
    name = os.path.basename(path)
    bridge = name[:-len(".mgmt")] if name.endswith(".mgmt") else None
    rundir = os.path.dirname(path)
    try:
        with open(os.path.join(rundir, "ovs-vswitchd.pid"), encoding="ascii") as handle:
            control = os.path.join(rundir, "ovs-vswitchd.%d.ctl" % int(handle.read().strip()))
    except (OSError, ValueError):
        return ["ovs-appctl"], bridge
    return (["ovs-appctl", "-t", control] if os.path.exists(control) else ["ovs-appctl"]), bridge


def _datapath_type(dpif_show, bridge):
    """The type of the datapath (``netdev``, ``system``) that holds ``bridge`` in ``ovs-appctl
    dpif/show`` output; with ``bridge`` None (a socket that names no bridge): ``netdev`` if any
    datapath is."""
    kind = None
    for line in dpif_show.splitlines():
        head = re.match(r"^(\w+)@\S+:", line)
        if head:
            kind = head.group(1)
            if bridge is None and kind == "netdev":
                return kind
            continue
        if bridge is not None and re.match(r"^  %s:$" % re.escape(bridge), line):
            return kind
    return None


def refresh_datapath(target, runner=None):
    """After a change of a bridge's OpenFlow tables: when the bridge is in a LOCAL Open vSwitch
    with a userspace (``netdev``) datapath, drop that datapath's flows (``ovs-appctl
    revalidator/purge``), so every packet's next datapath flow is translated from the tables as
    they are now. Returns what was done: ``purged``, ``kernel datapath``, ``remote switch`` or
    ``not purged: <why>`` (never raises: the tables are right either way).

    Why: Open vSwitch's revalidators bring existing datapath flows in line with a changed table,
    but in the userspace datapath a revalidation that modifies an exact-match datapath flow (a
    ``multipath`` hash matches every field it hashes) can leave it with its old actions when a
    wider datapath flow overlaps it (its modify looks the flow up by packet key, not by its id).
    Measured with OVS 3.1 (bench/reorder.py, docs/reliability.md): after two steps of a chain
    were swapped, 1-5 of 32 flows kept going to the place the old table sent them - lost for as
    long as traffic kept that datapath flow alive (16 s, until the next change). Purging costs
    one upcall per active flow; nothing is lost (the userspace datapath handles the upcall of
    the packet that misses)."""
    local = _local_daemon(target)
    if local is None:
        return "remote switch"
    appctl, bridge = local
    run = runner or (lambda argv: run_subprocess(argv, timeout=30))
    try:
        rc, out, err = run(appctl + ["dpif/show"])
        if rc != 0:
            return "not purged: %s" % (err.strip() or out.strip() or "ovs-appctl dpif/show failed")
        kind = _datapath_type(out, bridge)
        if kind is None:
            return "not purged: ovs-appctl dpif/show lists no datapath with %s" % (bridge or target)
        if kind != "netdev":
            return "kernel datapath" if kind == "system" else "%s datapath" % kind
        rc, out, err = run(appctl + ["revalidator/purge"])
    except OfctlError as exc:
        return "not purged: %s" % exc.msg
    return "purged" if rc == 0 else "not purged: %s" % (err.strip() or out.strip())


# ---------------------------------------------------------------------------------------------
# The wrapper
# ---------------------------------------------------------------------------------------------

def concurrently(*calls):
    """Run independent read-only ovs-ofctl calls at once (2 cores: a dump and a parse overlap);
    their results in the order of the calls."""
    if len(calls) == 1:
        return [calls[0]()]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


class Ofctl:
    """ovs-ofctl bound to one switch, one OpenFlow version and one set of connection options.

    ``runner(argv, data=None) -> (rc, stdout, stderr)`` runs the tool; the default runs it as
    a subprocess.  Every command raises OfctlError on failure.
    """

    def __init__(self, target, version="OpenFlow14", timeout=60, private_key=None, certificate=None,
                 ca_cert=None, executable="ovs-ofctl", runner=None):
        if version not in OPENFLOW_VERSIONS:
            raise ValueError("unknown OpenFlow version %r (known: %s)" % (version, ", ".join(sorted(OPENFLOW_VERSIONS))))
        self.kind = check_target(target)
        self.target = target
        self.version = version
        self.timeout = int(timeout) if timeout else None
        self.private_key = private_key
        self.certificate = certificate
        self.ca_cert = ca_cert
        self.executable = executable
        self._runner = runner
        ssl_opts = [o for o in (private_key, certificate, ca_cert) if o]
        if self.kind == "ssl" and len(ssl_opts) != 3:
            raise ValueError("an ssl: target needs private_key, certificate and ca_cert "
                             "(the switch's CA, to verify the switch)")
        if self.kind != "ssl" and ssl_opts:
            raise ValueError("private_key, certificate and ca_cert apply only to ssl: targets, not %r" % target)

    # -- argv -------------------------------------------------------------------------------
    def argv(self, command, *args, **kw):
        """argv for a command that talks to the switch (target inserted after the command)."""
        argv = [self.executable, "-O", kw.get("version") or self.version, "--no-names"]
        if self.timeout:
            argv.append("--timeout=%d" % self.timeout)
        if self.kind == "ssl":
            argv += ["--private-key=%s" % self.private_key, "--certificate=%s" % self.certificate,
                     "--ca-cert=%s" % self.ca_cert]
        if kw.get("bundle"):
            argv.append("--bundle")
        argv.append(command)
        argv.append(self.target)
        argv.extend(args)
        return argv

    def offline_argv(self, command, *args):
        """argv for a command that only parses (never touches the switch)."""
        return [self.executable, "-O", self.version, "--no-names", command] + list(args)

    # -- running ----------------------------------------------------------------------------
    def run(self, argv, data=None):
        if self._runner is not None:
            rc, out, err = self._runner(argv, data)
        else:
            rc, out, err = run_subprocess(argv, data, timeout=(self.timeout + 10) if self.timeout else None)
        if rc != 0:
            raise map_error(argv, rc, err, self.target if command_talks_to_switch(argv) else "ovs-ofctl")
        return out

    # -- reads ------------------------------------------------------------------------------
    def dump_flows(self, cookie=None, cookie_mask=None, table=None):
        args = []
        if cookie is not None:
            args.append("cookie=0x%x/0x%x" % (cookie, cookie_mask if cookie_mask is not None else (1 << 64) - 1))
        if table is not None:
            args.append("table=%d" % table)
        if args:
            args = [",".join(args)]
        out = self.run(self.argv("dump-flows", *args))
        return parse_dump_flows(out)

    def dump_groups(self):
        out = self.run(self.argv("dump-groups"))
        return parse_dump_groups(out)

    def openflow15_group_props(self):
        """{group_id: 'selection_method=..,fields(..)'} for the groups whose OpenFlow 1.5-only
        properties a reply in this (older) version leaves out: a second dump-groups over OpenFlow
        1.5.  Empty at OpenFlow 1.5, and when the switch does not speak 1.5 (then nobody can have
        set them over it)."""
        if OPENFLOW_VERSIONS[self.version] >= OPENFLOW_VERSIONS["OpenFlow15"]:
            return {}
        try:
            out = self.run(self.argv("dump-groups", version="OpenFlow15"))
        except OfctlError as exc:
            if exc.kind == "version":
                return {}
            raise
        props = {}
        for g in parse_dump_groups(out):
            extra = openflow15_group_props(g.text)
            if extra:
                props[g.group_id] = extra
        return props

    def dump_groups_seen_fully(self):
        """dump_groups() with each group's OpenFlow 1.5-only properties attached (openflow15_only)."""
        groups, props = concurrently(self.dump_groups, self.openflow15_group_props)
        for g in groups:
            g.openflow15_only = props.get(g.group_id) or None
        return groups

    def dump_group_stats(self):
        out = self.run(self.argv("dump-group-stats"))
        return parse_group_stats(out)

    def dump_ports(self):
        out = self.run(self.argv("dump-ports-desc"))
        return parse_ports_desc(out)

    def dump_port_stats(self):
        """Live port counters (OpenFlow port statistics; OVSDB's copy lags by up to 5 s)."""
        return parse_port_stats(self.run(self.argv("dump-ports")))

    # -- offline canonicalisation -----------------------------------------------------------
    def parse_flows(self, lines, chunk=25000):
        """Canonicalise flows (ovs-ofctl syntax, one per item) with Open vSwitch's own parser.

        Returns one FlowEntry per input line, in order.  A syntax error raises OfctlError with
        kind 'parse' and ``line`` set to the 1-based index of the offending item.  Long lists
        are split into chunks parsed by concurrent ovs-ofctl processes.
        """
        if not lines:
            return []
        if len(lines) <= chunk or (os.cpu_count() or 1) < 2:
            return self._parse_flows(lines, 0)
        starts = list(range(0, len(lines), chunk))
        with ThreadPoolExecutor(max_workers=min(len(starts), os.cpu_count() or 2)) as pool:
            parts = list(pool.map(lambda s: self._parse_flows(lines[s:s + chunk], s), starts))
        return [f for part in parts for f in part]

    def _parse_flows(self, lines, offset):
        try:
            out = self.run(self.offline_argv("parse-flows", "-"), data="\n".join(lines) + "\n")
        except OfctlError as exc:
            if exc.line is not None:
                exc.line += offset
            raise
        flows = parse_parse_flows(out)
        if len(flows) != len(lines):
            raise OfctlError("ovs-ofctl parse-flows printed %d flows for %d input lines" % (len(flows), len(lines)),
                             kind="other")
        return flows

    def parse_group(self, text):
        out = self.run(self.offline_argv("parse-group", text))
        g = parse_parse_group(out)
        if g is None:
            raise OfctlError("ovs-ofctl parse-group printed no group for %r" % text, kind="other")
        return g

    # -- writes -----------------------------------------------------------------------------
    def bundle(self, lines):
        """Apply flow and group mods as ONE atomic OpenFlow bundle (``ovs-ofctl bundle``).

        ``lines`` are bundle-file lines: ``flow add ...``, ``flow delete_strict ...``,
        ``flow modify_strict ...``, ``group add ...``, ``group modify ...``, ``group delete ...``.
        Either every line takes effect or none does.
        """
        if not lines:
            return
        self.run(self.argv("bundle", "-"), data="\n".join(lines) + "\n")

    def bundle_flows(self, lines):
        """Flow mods only: ``--bundle add-flows`` (same atomicity, no group lines)."""
        if not lines:
            return
        self.run(self.argv("add-flows", "-", bundle=True), data="\n".join(lines) + "\n")

    def refresh_datapath(self):
        """``refresh_datapath`` for this switch, through this wrapper's runner."""
        runner = None if self._runner is None else (lambda argv: self._runner(argv, None))
        return refresh_datapath(self.target, runner=runner)

    def mod_port(self, port, action):
        """Change a port's OpenFlow configuration (``ovs-ofctl mod-port``): ``action`` is one of
        up, down, flood, no-flood, receive, no-receive, forward, no-forward, stp, no-stp. ``down``
        turns the port's link off (Open vSwitch also takes the netdev down)."""
        self.run(self.argv("mod-port", str(port), action))

    def packet_out(self, actions, packet_hex, in_port="controller"):
        """Send one packet through the switch's datapath (``ovs-ofctl packet-out``): ``packet_hex``
        is the whole Ethernet frame in hexadecimal, ``actions`` what to do with it (e.g.
        ``output:fs-web0a-l``)."""
        self.run(self.argv("packet-out", "in_port=%s,packet=%s,actions=%s" % (in_port, packet_hex, actions)))


def command_talks_to_switch(argv):
    return not any(a in ("parse-flows", "parse-group") for a in argv)


# ---------------------------------------------------------------------------------------------
# Shared by the modules: the connection options (documented in doc_fragments/openflow.py)
# ---------------------------------------------------------------------------------------------

def connection_argument_spec():
    return dict(
        switch=dict(type="str", required=True, aliases=["bridge"]),
        openflow_version=dict(type="str", default="OpenFlow14", choices=sorted(OPENFLOW_VERSIONS)),
        timeout=dict(type="int", default=60),
        # A path to the key file, not the key: nothing secret passes through module arguments.
        private_key=dict(type="path", no_log=False),
        certificate=dict(type="path"),
        ca_cert=dict(type="path"),
        executable=dict(type="str", default="ovs-ofctl"),
    )


def ofctl_from_params(params, find_binary=None):
    """Build Ofctl from module params; ``find_binary(name)`` resolves a bare executable name."""
    executable = params.get("executable") or "ovs-ofctl"
    if "/" not in executable and find_binary is not None:
        executable = find_binary(executable) or executable
    return Ofctl(
        params["switch"],
        version=params.get("openflow_version") or "OpenFlow14",
        timeout=params.get("timeout"),
        private_key=params.get("private_key"),
        certificate=params.get("certificate"),
        ca_cert=params.get("ca_cert"),
        executable=executable,
    )
