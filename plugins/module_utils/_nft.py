# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wrapper for nftables (``nft``): check, apply atomically, list."""

from __future__ import annotations

import json
import re

from ansible_collections.flowstream.platform.plugins.module_utils._cmd import run as _run

_ERROR_LINE = re.compile(r"^[^:\s]*:(\d+):\d+(?:-\d+)?: Error: (.*)$", re.M)


class Nft:
    """``nft`` in the current network namespace, or in ``netns`` (``ip netns exec``)."""

    def __init__(self, netns=None, run=_run):
        self.netns = netns
        self._run = run

    def _argv(self, *args):
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return prefix + ["nft"] + list(args)

    def check(self, text):
        """``nft -c``: parse and evaluate against the kernel without committing. Raises
        CommandError carrying nft's own words."""
        self._run(self._argv("-c", "-f", "/dev/stdin"), data=text)

    def apply(self, text):
        """``nft -f``: one transaction; all of it or nothing."""
        self._run(self._argv("-f", "/dev/stdin"), data=text)

    def list_table(self, family, table, stateless=False):
        args = (["-s"] if stateless else []) + ["list", "table", family, table]
        res = self._run(self._argv(*args), check=False)
        return res.stdout if res.rc == 0 else None

    def list_json(self, family, table):
        res = self._run(self._argv("-j", "list", "table", family, table), check=False)
        if res.rc != 0 or not res.stdout.strip():
            return []
        return json.loads(res.stdout).get("nftables", [])


def error_lines(words):
    """nft's errors as [(line number, message)], from 'file:LINE:COL-COL: Error: message'."""
    return [(int(n), msg) for n, msg in _ERROR_LINE.findall(words or "")]
