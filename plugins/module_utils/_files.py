# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files a module keeps on a host: compared before written, written atomically."""

from __future__ import annotations

import os


def holds(path, content):
    """Whether ``path`` exists and holds exactly ``content``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read() == content
    except OSError:
        return False


def write_atomic(path, content, mode=0o644):
    """Write ``content`` to ``path`` through a temporary file and a rename (never half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_if_changed(path, content, mode=0o644):
    """Write ``content`` to ``path`` unless it already holds exactly that. True if written."""
    if holds(path, content):
        return False
    write_atomic(path, content, mode)
    return True
