# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wrapper for iproute2 (``ip``): argv building and JSON output parsing."""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run

NETNS_DIR = "/run/netns"


class IPRoute:
    """``ip`` in the root network namespace, or in ``netns`` (``ip -n NETNS``)."""

    def __init__(self, netns=None, run=_run):
        self.netns = netns
        self._run = run

    def _argv(self, *args, json_out=False):
        argv = ["ip"]
        if json_out:
            argv += ["-j", "-d"]
        if self.netns:
            argv += ["-n", self.netns]
        return argv + [str(a) for a in args]

    def ip(self, *args, **kwargs):
        return self._run(self._argv(*args), **kwargs)

    def _json(self, *args):
        res = self._run(self._argv(*args, json_out=True), check=False)
        if res.rc != 0:
            return []
        text = res.stdout.strip()
        return json.loads(text) if text else []

    # links --------------------------------------------------------------------------
    def links(self):
        """All links, by name: the parsed ``ip -j -d link show`` entries."""
        return {link["ifname"]: link for link in self._json("link", "show")}

    def link(self, name):
        found = self._json("link", "show", "dev", name)
        return found[0] if found else None

    def add_veth(self, name, peer, peer_netns=None, address=None, peer_address=None):
        args = ["link", "add", name]
        if address:
            args += ["address", address]
        args += ["type", "veth", "peer", "name", peer]
        if peer_address:
            args += ["address", peer_address]
        if peer_netns:
            args += ["netns", peer_netns]
        self.ip(*args)

    def add_bridge(self, name):
        self.ip("link", "add", name, "type", "bridge")

    # "dev NAME" always: a bare name can read as a keyword ("a" is short for "address")
    def delete_link(self, name):
        self.ip("link", "del", "dev", name)

    def set_up(self, name):
        self.ip("link", "set", "dev", name, "up")

    def set_down(self, name):
        self.ip("link", "set", "dev", name, "down")

    def set_master(self, name, master):
        self.ip("link", "set", "dev", name, "master", master)

    # addresses ----------------------------------------------------------------------
    def addresses(self, name, family="inet"):
        """Global addresses of ``name`` as ``["a.b.c.d/len", ...]``."""
        out = []
        for entry in self._json("-f", family, "addr", "show", "dev", name):
            for info in entry.get("addr_info", []):
                if info.get("scope") == "global":
                    out.append("%s/%s" % (info["local"], info["prefixlen"]))
        return out

    def add_address(self, name, cidr):
        self.ip("addr", "add", cidr, "dev", name)

    def del_address(self, name, cidr):
        self.ip("addr", "del", cidr, "dev", name)

    # network namespaces (always managed from the root namespace) -----------------------
    def netns_list(self):
        return sorted(entry["name"] for entry in self._json("netns", "list"))

    def netns_add(self, name):
        self.ip("netns", "add", name)

    def netns_delete(self, name):
        self.ip("netns", "del", name)


def stable_mac(*seed):
    """A locally administered unicast MAC derived from ``seed``: a link re-created with the
    same name gets the same address, so neighbours' ARP caches stay right (as a real host's
    NIC keeps its MAC across reboots)."""
    digest = hashlib.sha256("/".join(str(s) for s in seed).encode()).digest()
    return ":".join("%02x" % b for b in (0x02,) + tuple(digest[:5]))


def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def link_is_up(link):
    return link is not None and "UP" in link.get("flags", [])
