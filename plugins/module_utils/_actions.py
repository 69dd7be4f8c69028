# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recording what a module does, so check mode and diff come from the same code path."""

from __future__ import annotations


class ActionLog:
    """Every change goes through :meth:`act`: it is recorded, and performed unless in check
    mode. ``changed`` is simply whether anything was recorded."""

    def __init__(self, check_mode=False):
        self.check_mode = check_mode
        self.actions = []

    def act(self, what, func=None, *args, **kwargs):
        self.actions.append(what)
        if func is not None and not self.check_mode:
            return func(*args, **kwargs)
        return None

    def note(self, what):
        """Record something that changes nothing by itself (e.g. a decision)."""
        self.actions.append(what)

    @property
    def changed(self):
        return bool(self.actions)
