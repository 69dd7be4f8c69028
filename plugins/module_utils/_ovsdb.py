# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wrapper for ``ovs-vsctl`` (OVSDB configuration of bridges and ports)."""

from __future__ import annotations

import json
import time

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run


#: Open vSwitch interface types of the ports the platform adds to a host bridge (trunk, legs)
PORT_TYPES = ("system", "afxdp-nonpmd")


def port_settings(port_type):
    """The Interface columns of a port of ``port_type`` (None or "system": none)."""
    if port_type == "afxdp-nonpmd":
        # generic XDP: native XDP on veth dropped every packet here, and changing a live port's
        # xdp-mode crashed Open vSwitch 3.1 - so the mode is set once, when the port is added
        return {"type": "afxdp-nonpmd", "options:xdp-mode": "generic"}
    if port_type not in (None, "system"):
        raise ValueError("port type %r is not one of %s" % (port_type, ", ".join(PORT_TYPES)))
    return {}


class OVSDB:
    """``ovs-vsctl`` against the local database, optionally inside another host's
    namespaces (``wrap`` is an argv prefix such as ``nsenter --mount=... --net=...``)."""

    def __init__(self, wrap=(), run=_run, timeout=10, db=None):
        self.wrap = list(wrap)
        self._run = run
        self.timeout = timeout
        self.db = db  # another database than the local one, e.g. tcp:192.0.2.1:6640

    def vsctl(self, *args, **kwargs):
        argv = self.wrap + ["ovs-vsctl", "--timeout=%d" % self.timeout] + (["--db=%s" % self.db] if self.db else []) \
            + [str(a) for a in args]
        return self._run(argv, **kwargs)

    def reachable(self):
        return self.vsctl("show", check=False).rc == 0

    def bridges(self):
        return self.vsctl("list-br").stdout.split()

    def bridge_exists(self, bridge):
        return self.vsctl("br-exists", bridge, check=False).rc == 0

    def add_bridge(self, bridge, datapath_type=None, settings=None):
        """Create ``bridge`` in ONE transaction with its settings, e.g. datapath_type=netdev
        (a separate ``set`` would first try, and fail, to open a kernel datapath)."""
        args = ["--may-exist", "add-br", bridge]
        pairs = dict(settings or {})
        if datapath_type:
            pairs["datapath_type"] = datapath_type
        if pairs:
            args += ["--", "set", "bridge", bridge] + ["%s=%s" % kv for kv in sorted(pairs.items())]
        self.vsctl(*args)

    def del_bridge(self, bridge):
        self.vsctl("--if-exists", "del-br", bridge)

    def ports(self, bridge):
        return self.vsctl("list-ports", bridge).stdout.split()

    def port_bridge(self, port):
        """The bridge ``port`` belongs to, or None."""
        res = self.vsctl("port-to-br", port, check=False)
        return res.stdout.strip() if res.rc == 0 else None

    def add_port(self, bridge, port, external_ids=None, tag=None, iface_settings=None, port_type=None, replace=False):
        """Add ``port`` to ``bridge`` in one transaction: an access port when ``tag`` is given,
        with the Interface columns of ``port_type`` (PORT_TYPES); ``replace`` deletes a port of
        that name in the same transaction (a port changes its type by being re-created, never
        in place)."""
        args = ["--", "--if-exists", "del-port", port, "--", "add-port", bridge, port] if replace else \
            ["--may-exist", "add-port", bridge, port]
        if tag is not None:
            args.append("tag=%d" % int(tag))
        iface = ["external_ids:%s=%s" % (k, quote_value(v)) for k, v in sorted((external_ids or {}).items())]
        iface += ["%s=%s" % kv for kv in sorted(dict(port_settings(port_type), **(iface_settings or {})).items())]
        if iface:
            args += ["--", "set", "interface", port] + iface
        self.vsctl(*args)

    def port_type(self, port):
        """The interface type of ``port`` as PORT_TYPES name it ("" in OVSDB is "system")."""
        return (self.list_table("Interface", ["type"], [port]) or [{}])[0].get("type") or "system"

    def del_port(self, port, bridge=None):
        args = ["--if-exists", "del-port"]
        if bridge:
            args.append(bridge)
        self.vsctl(*(args + [port]))

    def get(self, table, record, column, key=None):
        col = column if key is None else "%s:%s" % (column, key)
        res = self.vsctl("--if-exists", "get", table, record, col, check=False)
        return res.stdout.strip() if res.rc == 0 else None

    def list_table(self, table, columns, records=()):
        """Rows of ``table`` as dicts of Python values (OVSDB maps -> dict, sets -> list,
        uuids -> str); ``records`` limits the listing to those names."""
        args = ["--format=json", "--data=json", "--columns=%s" % ",".join(columns), "list", table]
        res = self.vsctl(*(args + list(records)), check=not records)
        if res.rc != 0:
            return []
        data = json.loads(res.stdout or '{"headings": [], "data": []}')
        return [dict(zip(data["headings"], (decode_datum(v) for v in row))) for row in data["data"]]

    def set_external_ids(self, table, record, ids):
        if ids:
            self.vsctl("set", table, record,
                       *["external_ids:%s=%s" % (k, quote_value(v)) for k, v in sorted(ids.items())])

    def write_mark(self, table, record, key, state, reason=None):
        """A platform mark in ``record``'s external_ids: ``key`` = ``state`` with ``key-since``
        (UTC, now) and ``key-reason``, in one transaction; ``state`` None takes it away."""
        if state is None:
            self.vsctl("remove", table, record, "external_ids", key, key + "-since", key + "-reason")
            return
        ids = {key: state, key + "-since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if reason:
            ids[key + "-reason"] = reason
        args = ["set", table, record] + ["external_ids:%s=%s" % (k, quote_value(v)) for k, v in sorted(ids.items())]
        if not reason:
            args += ["--", "remove", table, record, "external_ids", key + "-reason"]
        self.vsctl(*args)

    def interface_error(self, iface):
        value = self.get("Interface", iface, "error")
        return None if value in (None, "[]", "") else value.strip('"')


def read_mark(external_ids, key, states):
    """{state, since, reason} of a mark written by OVSDB.write_mark, or None (no mark, or a state
    not in ``states``)."""
    ext = external_ids or {}
    if ext.get(key) not in states:
        return None
    return {"state": ext[key], "since": ext.get(key + "-since"), "reason": ext.get(key + "-reason") or None}


def decode_datum(value):
    """Decode OVSDB JSON: ["map", [[k, v], ...]] -> dict, ["set", [...]] -> list,
    ["uuid", u] -> u; an empty set (OVSDB's "unset") -> None for scalar columns."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, inner = value
        if kind == "map":
            return {decode_datum(k): decode_datum(v) for k, v in inner}
        if kind == "set":
            items = [decode_datum(v) for v in inner]
            return items if items else None
        if kind in ("uuid", "named-uuid"):
            return inner
    return value


def quote_value(value):
    """Quote a value for ovs-vsctl's set syntax (strings with special characters)."""
    text = str(value)
    if text and all(c.isalnum() or c in "-_./" for c in text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
