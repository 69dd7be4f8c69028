# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make ``ansible_collections.flowstream.platform`` importable under plain pytest.

``ansible-test units`` installs Ansible's collection loader itself; plain ``pytest`` (run from
the checkout, as ``.venv/bin/pytest tests/unit``) does not, so install it here, pointed at the
tree that holds this checkout as ``ansible_collections/flowstream/platform``.
"""

from __future__ import annotations

from pathlib import Path

from ansible.utils.collection_loader import AnsibleCollectionConfig
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder


def _collections_path() -> Path:
    root = Path(__file__).resolve().parents[2]
    if root.parent.parent.name == 'ansible_collections':
        return root.parent.parent.parent  # checked out as .../ansible_collections/flowstream/platform
    return root / 'collections'  # scripts/setup.sh links the checkout there


if AnsibleCollectionConfig.collection_finder is None:
    _AnsibleCollectionFinder(paths=[str(_collections_path())])._install()
