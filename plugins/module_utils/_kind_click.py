# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processing modules as Click configurations (the Click modular router, userlevel driver).

The configuration is given verbatim (a type's ``click.config``) or generated from an element
graph (``click.elements`` + ``click.connections``), or for the built-in ``wire`` type generated
here. It runs as ``click CONFIG`` under the same supervision as the process kind, in the
instance namespace, with ``left`` and ``right`` as its devices.

Click is not packaged for Debian 12 nor on PyPI. When the binary is missing the request fails,
saying so and how to provide it; nothing is started and nothing pretends to run.
"""

from __future__ import annotations

import os
import re
import shutil

from ansible_collections.flowstream.platform.plugins.module_utils._instance import instance_dir
from ansible_collections.flowstream.platform.plugins.module_utils._instance_errors import InstanceError
from ansible_collections.flowstream.platform.plugins.module_utils._files import holds, write_atomic
from ansible_collections.flowstream.platform.plugins.module_utils._kind_process import ProcessKind

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_@/]*$")
MISSING = ("the click binary (Click modular router, userlevel driver) is not installed on this host: Click is "
           "not packaged for Debian 12 or PyPI. Build it from source (https://github.com/kohler/click: "
           "./configure --disable-linuxmodule && make && make install, which installs /usr/local/bin/click), "
           "or give its path in the click_binary option (inventory variable flowstream_click_binary)")


def wire_config():
    """A bump in the wire: every frame from one leg out of the other, both ways."""
    return "\n".join([
        "// flowstream built-in type 'wire' for kind click",
        "FromDevice(left, SNIFFER false, PROMISC true) -> Queue(1024) -> ToDevice(right);",
        "FromDevice(right, SNIFFER false, PROMISC true) -> Queue(1024) -> ToDevice(left);",
    ]) + "\n"


def graph_config(instance, graph):
    """Click language from an element graph: ``elements`` {name: "Class(args)"} and
    ``connections`` [[from, to] or [from, out_port, in_port, to]]."""
    elements = graph.get("elements") or {}
    connections = graph.get("connections") or []
    if not isinstance(elements, dict) or not elements:
        raise InstanceError(instance, "click.elements", "needs at least one element: {name: 'Class(args)'}")
    lines = []
    for name, decl in sorted(elements.items()):
        if not _NAME.match(str(name)):
            raise InstanceError(instance, "click.elements.%s" % name, "is not a valid Click element name")
        if not isinstance(decl, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_@/]*(\(.*\))?$", decl.strip(), re.S):
            raise InstanceError(instance, "click.elements.%s" % name, "must be 'Class(arguments)', got %r" % (decl,))
        lines.append("%s :: %s;" % (name, decl.strip()))
    for index, conn in enumerate(connections):
        if not isinstance(conn, list) or len(conn) not in (2, 4):
            raise InstanceError(instance, "click.connections[%d]" % index, "must be [from, to] or [from, out, in, to]")
        src, dst = conn[0], conn[-1]
        for end in (src, dst):
            if end not in elements:
                raise InstanceError(instance, "click.connections[%d]" % index,
                                    "names element '%s', which click.elements does not define" % end)
        if len(conn) == 2:
            lines.append("%s -> %s;" % (src, dst))
        else:
            lines.append("%s [%d] -> [%d] %s;" % (src, int(conn[1]), int(conn[2]), dst))
    return "\n".join(lines) + "\n"


def config_for(spec):
    click = spec.definition.get("click") or {}
    if click.get("config"):
        return str(click["config"]).rstrip("\n") + "\n"
    if click.get("elements"):
        return graph_config(spec.id, click)
    if spec.type == "wire":
        return wire_config()
    raise InstanceError(spec.id, "type", "type '%s' has no Click configuration" % spec.type)


def config_path(instance):
    return "%s/config.click" % instance_dir(instance)


class ClickKind(ProcessKind):
    name = "click"

    def __init__(self, log, run=None, python=None, binary=None):
        kwargs = {"python": python}
        if run is not None:
            kwargs["run"] = run
        super().__init__(log, **kwargs)
        self.binary = binary

    def find_binary(self):
        if self.binary:
            return self.binary if os.access(self.binary, os.X_OK) else None
        return shutil.which("click")

    def argv(self, spec):
        return [self.find_binary() or "click", config_path(spec.id)]

    def validate(self, spec):
        config_for(spec)
        if not self.find_binary():
            raise InstanceError(spec.id, "kind", MISSING)

    def ensure(self, spec, argv=None):
        self.validate(spec)
        text = config_for(spec)
        path = config_path(spec.id)
        same = holds(path, text)
        if not same:
            if not os.path.isdir(instance_dir(spec.id)):
                self.log.act("created %s" % instance_dir(spec.id), os.makedirs, instance_dir(spec.id), 0o755, True)
            self.log.act("wrote the Click configuration %s" % path, write_atomic, path, text, 0o644)
            if self.status(spec.id)["running"]:
                # same argv, new configuration: the running click must start again to read it
                self.log.act("stopped click of %s for its new configuration" % spec.id, self.stop, spec.id)
        super().ensure(spec, argv=self.argv(spec))
