# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: platform
short_description: One Flowstream platform (switches, module hosts, spares, black boxes) as inventory
version_added: 0.1.0
author:
  - Flowstream Platform Maintainers (@flowstream)
description:
  - Reads a Flowstream platform description, a YAML file whose name ends in C(.flowstream.yml)
    or C(.flowstream.yaml), and turns it into inventory.
  - A platform is one or more OpenFlow switches, the module hosts that run processing modules,
    the spare module hosts that stand by for failover, and black-box hardware middleboxes on
    switch ports.
  - >-
    The whole description is validated before anything is added to the inventory. Every
    problem is reported at once, one line each, naming the file, the entity and the field,
    for example C(platform.flowstream.yml: module_hosts[1] 'mh2': capacity.memory must be a
    number of MiB, got '2G').
  - "Groups: C(flowstream_switches), C(flowstream_module_hosts), C(flowstream_spares) (a child
    of C(flowstream_module_hosts): a spare is a module host on standby),
    C(flowstream_blackboxes), and C(flowstream_failed) - empty in the inventory; at run time
    C(playbooks/gather_hosts.yml) puts into it the module hosts fenced after a failure that do
    not answer, and every play on module hosts leaves them out."
  - Every variable is prefixed C(flowstream_) except C(ansible_host), the management address
    of module hosts and spares, and C(ansible_connection=local) for switches and black boxes,
    which the controller reaches over OpenFlow. All values from the file are marked unsafe,
    so they are never templated.
  - The plugin does not set C(ansible_python_interpreter), C(ansible_user) or any credential;
    set them in C(group_vars/) next to the description. Power passwords go in the (vaulted)
    variable C(flowstream_power_password), never in the description.
  - The YAML files of C(group_vars/) and C(host_vars/) beside the description (the chains, the
    probe, credentials) are checked for syntax errors too, before Ansible reads them; each one
    is named with its line and column.
  - The full schema, with examples and the error messages, is in C(docs/platform-description.md)
    of the collection.
requirements:
  - netaddr (Python library, on the controller)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
notes:
  - Caching stores the validated description. A cached entry is used only while the
    description is unchanged, so editing the file never serves stale inventory.
  - Constructed features (O(compose), O(groups), O(keyed_groups)) run after the description
    has been validated and added; with O(strict=true) a failing expression stops the run.
options:
  plugin:
    description: Marks this file as a Flowstream platform description. Use the full name.
    required: true
    type: str
    choices: [flowstream.platform.platform]
  platform:
    description: The platform as a whole.
    required: true
    type: dict
    suboptions:
      name:
        description: The platform's name, given to every host as C(flowstream_platform).
        required: true
        type: str
      management_network:
        description:
          - The module hosts' management network in CIDR notation, for example C(10.20.0.0/24).
          - Every module host's and spare's O(module_hosts[].management_address) must lie
            inside it.
        required: true
        type: str
  switches:
    description:
      - The OpenFlow switches. At least one.
      - Ports are given as a port name (at most 15 characters, OpenFlow's limit) or an
        OpenFlow port number from 1. A port is used once per switch, by an uplink, a module
        host's trunk or a black box.
    required: true
    type: list
    elements: dict
    suboptions:
      name:
        description: Inventory hostname of the switch.
        required: true
        type: str
      openflow_target:
        description:
          - How the controller reaches the switch, as C(ovs-ofctl) spells it -
            C(unix:/PATH), C(tcp:HOST:PORT) or C(ssl:HOST:PORT) (IPv6 in brackets).
        required: true
        type: str
      bridge:
        description:
          - The Open vSwitch bridge to program; for a hardware switch, the name of its
            OpenFlow datapath or instance.
        required: true
        type: str
      openflow_versions:
        description:
          - The OpenFlow versions to speak to the switch.
          - Must include C(OpenFlow14) or C(OpenFlow15) - flow tables are applied in
            OpenFlow 1.4 bundles, all-or-nothing.
        type: list
        elements: str
        choices: [OpenFlow10, OpenFlow11, OpenFlow12, OpenFlow13, OpenFlow14, OpenFlow15]
        default: [OpenFlow13, OpenFlow14, OpenFlow15]
      ssl:
        description:
          - Controller-side files for an C(ssl:) target, as absolute paths. Required for
            C(ssl:) targets and refused for any other.
        type: dict
        suboptions:
          private_key:
            description: The controller's private key (PEM).
            type: path
            required: true
          certificate:
            description: The controller's certificate (PEM).
            type: path
            required: true
          ca_cert:
            description: The CA certificate the switch's certificate is checked against.
            type: path
            required: true
      uplinks:
        description:
          - >-
            Named switch ports to the outside world, a mapping of uplink name to port, for
            example C({source: fsl-up-src, sink: 2}).
        type: dict
        default: {}
      management_address:
        description: The switch's own management IP address, if it has one.
        type: str
  module_host_defaults:
    description:
      - Values for every module host and spare. A host's own value wins; O(module_hosts[].capacity)
        and O(module_hosts[].power) are merged key by key.
      - Any key of O(module_hosts) except C(name), C(management_address) and C(trunk).
    type: dict
    default: {}
  module_hosts:
    description: The module hosts in service.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Inventory hostname of the module host.
        required: true
        type: str
      management_address:
        description:
          - The host's IP address on O(platform.management_network) (not its network or
            broadcast address); becomes C(ansible_host).
        required: true
        type: str
      switch:
        description:
          - The switch the host's trunk is plugged into.
          - May be left out when the platform has exactly one switch.
        type: str
      trunk:
        description:
          - The switch port the host's trunk is plugged into (port name or number).
        required: true
        type: raw
      host_bridge:
        description: The Open vSwitch bridge on the host (a Linux interface name, at most 15 characters).
        type: str
        default: fs-host
      port_type:
        description:
          - The Open vSwitch interface type of the ports the platform adds to
            O(module_hosts[].host_bridge) - the trunk and the legs of C(kernel), C(process)
            and C(click) instances. VM legs are created by libvirt and stay C(system).
          - C(system) is Open vSwitch's AF_PACKET socket, what C(ovs-vsctl add-port) gives.
          - C(afxdp-nonpmd) is an AF_XDP socket per port, polled by the main C(ovs-vswitchd)
            thread. The platform sets C(options:xdp-mode=generic) - native XDP on veth dropped
            every packet, and changing a live port's C(xdp-mode) crashed Open vSwitch 3.1.
            Each AF_XDP port costs about 70 MiB of C(ovs-vswitchd) memory for its buffers.
          - Given to the host as C(flowstream_port_type).
        type: str
        choices: [system, afxdp-nonpmd]
        default: system
      capacity:
        description: What the host offers to processing modules. Numbers, not strings.
        required: true
        type: dict
        suboptions:
          cpu:
            description: CPU cores (may be fractional).
            required: true
            type: float
          memory:
            description: Memory in MiB.
            required: true
            type: float
          pps:
            description:
              - Packets per second the host can forward. The planner counts each instance's packet
                rate, as the host's report measured it, against it when it places, moves and packs
                instances (consolidation keeps the headroom of it free too). Omitted, packet rates
                are not counted on this host.
            type: float
      kinds:
        description: The kinds of processing module the host can run.
        type: list
        elements: str
        choices: [vm, process, kernel, click]
        default: [process, kernel]
      power:
        description:
          - How the host is powered on and off.
          - C(ipmi) takes C(address) (required), C(username), C(port), C(interface)
            (C(lan) or C(lanplus)) and C(cipher_suite) (C(17), SHA-256, or C(3), SHA-1); C(redfish) takes C(address) (required), C(username),
            C(system_id) and C(validate_certs); C(wol) takes C(mac) (required) and
            C(broadcast); C(lab) and C(none) take nothing else.
          - Every driver takes C(idle_watts) - what the host draws idle, in watts - for the energy
            estimate of C(playbooks/power-down.yml).
          - A C(password) is refused - put it in the vaulted variable
            C(flowstream_power_password) of the host or its group.
        type: dict
        default: {driver: none}
        suboptions:
          driver:
            description: The power driver.
            type: str
            required: true
            choices: [lab, ipmi, redfish, wol, none]
  spares:
    description:
      - Module hosts on standby for failover. Same keys as O(module_hosts).
    type: list
    elements: dict
    default: []
  blackboxes:
    description: Hardware middleboxes on two switch ports each.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Inventory hostname of the box.
        required: true
        type: str
      switch:
        description: The switch the box is plugged into; may be left out when there is one.
        type: str
      ports:
        description:
          - C(left) and C(right), the switch ports traffic enters the box from and leaves it by.
        required: true
        type: dict
      description:
        description: What the box is.
        type: str
      capacity:
        description: C(pps), the packets per second the box can handle.
        type: dict
      health:
        description:
          - C(type) - how the box's health is judged, C(port_status) (both ports up; the
            default) or C(none).
        type: dict
"""

EXAMPLES = r"""
# Two descriptions, each in a file of its own (*.flowstream.yml), as YAML documents.
---
# inventory/lab/platform.flowstream.yml: one Open vSwitch switch, three module hosts and a spare.
plugin: flowstream.platform.platform
platform:
  name: lab
  management_network: 198.18.0.0/24
switches:
  - name: sw1
    bridge: fsl-sw
    openflow_target: unix:/var/run/openvswitch/fsl-sw.mgmt
    uplinks: {source: fsl-up-src, sink: fsl-up-sink}
module_host_defaults:
  capacity: {cpu: 1, memory: 1024}
  kinds: [vm, process, kernel, click]
  power: {driver: lab}
module_hosts:
  - {name: mh1, management_address: 198.18.0.11, trunk: fsl-mh1-tr}
  - {name: mh2, management_address: 198.18.0.12, trunk: fsl-mh2-tr}
spares:
  - {name: spare1, management_address: 198.18.0.21, trunk: fsl-spare1-tr}

---
# A hardware switch over TLS, hosts powered by IPMI, a black box, and constructed groups.
plugin: flowstream.platform.platform
platform: {name: dc1, management_network: 10.20.0.0/24}
switches:
  - name: tor1
    bridge: br0
    openflow_target: ssl:10.20.0.2:6653
    openflow_versions: [OpenFlow14, OpenFlow15]
    ssl:
      private_key: /etc/flowstream/pki/controller-key.pem
      certificate: /etc/flowstream/pki/controller-cert.pem
      ca_cert: /etc/flowstream/pki/switch-ca.pem
    uplinks: {internet: 49, core: 50}
module_host_defaults:
  capacity: {cpu: 32, memory: 131072, pps: 4000000}
  kinds: [vm, process, kernel]
  power: {driver: ipmi, username: flowstream}
module_hosts:
  - name: mh01
    management_address: 10.20.0.11
    trunk: 1
    power: {address: 10.20.1.11}
blackboxes:
  - name: ids1
    description: vendor IDS appliance
    ports: {left: 33, right: 34}
keyed_groups:
  # flowstream_switch_tor1, ...
  - key: flowstream_switch
    prefix: flowstream_switch
compose:
  # switches and black boxes have no cpu: with strict=false (the default) they are skipped
  flowstream_cores: flowstream_capacity.cpu
groups:
  flowstream_vm_hosts: "'vm' in (flowstream_kinds | default([]))"
"""

import hashlib
import json
import os

import yaml

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    # ansible-core provides no make_unsafe; wrap_var is the same thing (deprecated from 2.23).
    # Before 2.19 it wraps strings as AnsibleUnsafe; from 2.19 on it removes template trust.
    from ansible.utils.unsafe_proxy import wrap_var as make_unsafe
except ImportError:  # pragma: no cover - later ansible-core
    def make_unsafe(value):
        # Data tagging: untagged values are never templated, and every value handed to the
        # inventory below is a fresh, untagged copy made by the description parser.
        return value

from ansible_collections.flowstream.platform.plugins.plugin_utils._description import (
    NETADDR_IMPORT_ERROR,
    DescriptionError,
    parse_description,
)
from ansible_collections.flowstream.platform.plugins.module_utils._hostvars import (
    GROUP_BLACKBOXES,
    GROUP_FAILED,
    GROUP_MODULE_HOSTS,
    GROUP_SPARES,
    GROUP_SWITCHES,
    blackbox_vars,
    module_host_vars,
    switch_vars,
)

SUFFIXES = ('.flowstream.yml', '.flowstream.yaml')

#: Version of what this plugin writes to the inventory cache; bump when the format changes.
CACHE_FORMAT = 1


def yaml_syntax_error(path, fast=False):
    """``<path>:<line>:<column>: not valid YAML - <what>`` when the file is not YAML (a syntax
    error: the file is only parsed, tags are not resolved), else None. ``fast``: parse with
    libyaml first when it is there, and again in Python only for the message of an error."""
    if fast and hasattr(yaml, 'CSafeLoader'):
        try:
            with open(path, encoding="utf-8") as handle:
                yaml.compose(handle, Loader=yaml.CSafeLoader)
            return None
        except (OSError, UnicodeDecodeError):
            return None
        except yaml.YAMLError:
            pass
    try:
        with open(path, encoding="utf-8") as handle:
            yaml.compose(handle, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = err.problem or err.context or "a syntax error"
        if err.context and err.problem:
            start = err.context_mark
            what += f" ({err.context}" + (f" that starts at line {start.line + 1}, column {start.column + 1}" if start else "") + ")"
        return f"{where}: not valid YAML - {what}"
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return None


#: Where Ansible's host_group_vars plugin reads the variables beside an inventory source, and
#: the names it reads there (no extension, .yml, .yaml; JSON is left to Ansible).
VARS_DIRS = ('group_vars', 'host_vars')
VARS_SUFFIXES = ('.yml', '.yaml')


def vars_files_syntax_errors(path):
    """``<file>:<line>:<column>: not valid YAML - <what>`` for each file of ``group_vars/`` and
    ``host_vars/`` beside the description ``path`` (the chains, the probe, credentials) that is
    not YAML. Ansible's own loader of those files (ansible-core 2.19) says only what the
    parser expected, with neither the file nor the line."""
    top = os.path.dirname(os.path.abspath(path))
    errors = []
    for sub in VARS_DIRS:
        for root, dirs, files in os.walk(os.path.join(top, sub)):
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            for name in sorted(files):
                stem, ext = os.path.splitext(name)
                if name.startswith('.') or (ext and ext not in VARS_SUFFIXES) or not stem:
                    continue
                located = yaml_syntax_error(os.path.join(root, name), fast=True)
                if located:
                    errors.append(located)
    return errors


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Inventory from a Flowstream platform description (``*.flowstream.yml``)."""

    NAME = 'flowstream.platform.platform'

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        if path.endswith(SUFFIXES):
            return True
        self.display.vvv(f'Skipping {path}: a Flowstream platform description is named '
                         f'*{SUFFIXES[0]} or *{SUFFIXES[1]}')
        return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        if NETADDR_IMPORT_ERROR is not None:
            raise AnsibleParserError(
                f'{path}: the {self.NAME} inventory plugin needs the Python library netaddr on '
                f'the controller (pip install netaddr): {NETADDR_IMPORT_ERROR}')
        config = self._read_description_config(path)
        # the variable files beside the description are read later, by Ansible, whose message
        # for a syntax error there names no file: ours names file, line and column, now
        broken = vars_files_syntax_errors(path)
        if broken:
            raise AnsibleParserError('\n'.join(broken))
        description = self._get_description(path, config, cache)
        # Everything is validated: from here on nothing can fail half-way but constructed
        # expressions under strict=true, which is the constructed contract.
        hosts = self._host_entries(description)
        self._populate(hosts)

    # -- reading and validating ---------------------------------------------------------------

    def _read_description_config(self, path):
        """Load the file and set the plugin options; report description errors our way."""
        try:
            return self._read_config_data(path)
        except AnsibleError as exc:
            # not YAML at all: Ansible's message names the file only; ours the line and column
            located = yaml_syntax_error(path)
            if located:
                raise AnsibleParserError(located) from None
            # Ansible's own option checks failed (no 'platform', a mapping where a list
            # belongs, a wrong 'plugin'...). Our validation names the file, entity and field,
            # and finds every other problem too; fall back to Ansible's message if it passes.
            try:
                data = self.loader.load_from_file(path, cache='none')
            except Exception:
                raise exc from None
            self._validate(data, path)
            raise AnsibleParserError(f'{path}: {to_native(exc)}', orig_exc=exc) from exc

    def _option_keys(self):
        """Top-level keys that are plugin options (constructed and cache fragments included)."""
        definitions = C.config.get_configuration_definitions('inventory', self._load_name) or {}
        return tuple(definitions) or tuple(self._options)

    def _validate(self, data, path):
        try:
            return parse_description(data, source=path, plugin=self.NAME,
                                     option_keys=self._option_keys())
        except DescriptionError as exc:
            # The message is complete; a chained cause would only print it twice.
            raise AnsibleParserError(exc.message) from None
        except RuntimeError as exc:  # netaddr missing
            raise AnsibleParserError(f'{path}: {to_native(exc)}') from None

    def _get_description(self, path, config, cache):
        """The validated description, from the inventory cache when it holds this file's."""
        fingerprint = _fingerprint(config)
        cache_key = self.get_cache_key(path)
        user_cache_setting = self.get_option('cache')
        attempt_to_read_cache = user_cache_setting and cache
        cache_needs_update = user_cache_setting and not cache

        description = None
        if attempt_to_read_cache:
            try:
                entry = self._cache[cache_key]
            except KeyError:
                cache_needs_update = True
            else:
                description = self._from_cache_entry(entry, fingerprint)
                if description is None:
                    cache_needs_update = True

        if description is None:
            description = self._validate(config, path)

        if cache_needs_update and fingerprint is not None:
            self._cache[cache_key] = {
                'format': CACHE_FORMAT,
                'fingerprint': fingerprint,
                'description': description.as_dict(),
            }
        return description

    def _from_cache_entry(self, entry, fingerprint):
        """The cached description if it is current and still valid, else None."""
        if not isinstance(entry, dict) or entry.get('format') != CACHE_FORMAT \
                or fingerprint is None or entry.get('fingerprint') != fingerprint:
            self.display.vvv('flowstream platform cache entry is stale; reading the description')
            return None
        try:
            return parse_description(entry.get('description'))
        except (DescriptionError, RuntimeError) as exc:
            self.display.vvv(f'flowstream platform cache entry is unusable ({to_native(exc)}); '
                             f'reading the description')
            return None

    # -- populating -----------------------------------------------------------------------------

    @staticmethod
    def _host_entries(description):
        """(hostname, group, hostvars) for every host: the hostvar contract (module_utils/_hostvars)."""
        entries = [(switch.name, GROUP_SWITCHES, switch_vars(description.name, switch)) for switch in description.switches]
        entries += [(host.name, GROUP_SPARES if host.spare else GROUP_MODULE_HOSTS,
                     module_host_vars(description.name, description.management_network, host))
                    for host in description.all_module_hosts]
        entries += [(box.name, GROUP_BLACKBOXES, blackbox_vars(description.name, box)) for box in description.blackboxes]
        return entries

    def _populate(self, entries):
        # flowstream_failed stays empty here: gather_hosts.yml puts the fenced hosts that do not
        # answer into it at run time, and every play on module hosts leaves them out
        for group in (GROUP_SWITCHES, GROUP_MODULE_HOSTS, GROUP_SPARES, GROUP_BLACKBOXES, GROUP_FAILED):
            self.inventory.add_group(group)
        # A spare is a module host on standby: it is in flowstream_module_hosts through this.
        self.inventory.add_child(GROUP_MODULE_HOSTS, GROUP_SPARES)

        for name, group, hostvars in entries:
            self.inventory.add_host(name, group=group)
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, make_unsafe(value))

        strict = self.get_option('strict')
        for name, _group, _hostvars in entries:
            variables = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option('compose'), variables, name, strict=strict)
            variables = self.inventory.get_host(name).get_vars()
            self._add_host_to_composed_groups(self.get_option('groups'), variables, name,
                                              strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), variables, name,
                                           strict=strict)


def _fingerprint(config):
    """A digest of the loaded file, so a cached description is used only for the same file."""
    try:
        text = json.dumps(config, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None  # keys of mixed types: the description is invalid anyway, do not cache
    return hashlib.sha256(text.encode('utf-8')).hexdigest()
