# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type of processing-module instances: names the instance and the field."""

from __future__ import annotations


class InstanceError(Exception):
    """A request about instance ``instance`` is wrong or cannot be carried out; ``field`` names
    the parameter at fault (``vlans.left``, ``params.rules[2]``, ``memory`` ...)."""

    def __init__(self, instance, field, message):
        self.instance = instance
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self):
        where = "instance %s" % self.instance if self.instance else "instance"
        if self.field:
            where += ": %s" % self.field
        return "%s: %s" % (where, self.message)
