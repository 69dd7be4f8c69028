# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Waiting until an old copy of a moving instance is quiet (the operations engine)."""

    DOCUMENTATION = r"""
options:
  quiesce:
    description:
      - First wait until an instance's legs have passed no packet for O(quiesce.quiet_ms) (live
        Open vSwitch counters), at most O(quiesce.timeout) seconds per instance. A make-before-break
        move does this with its old copy once the switch has sent the traffic elsewhere - the
        packets still inside it go on their way, and the state read then is final.
      - M(flowstream.platform.module_host_info) waits before it reads the state of the instances of
        C(export_state); M(flowstream.platform.processing_module) waits before it removes an instance
        (C(state=absent)), and removes it all the same after the timeout.
    type: dict
    suboptions:
      quiet_ms:
        description: How long the legs must be still.
        type: int
        default: 200
      timeout:
        description: Seconds to wait at most per instance.
        type: float
        default: 10
"""
