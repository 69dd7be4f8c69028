# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Flowstream platform description: validation, normalisation and the model.

A platform description (``*.flowstream.yml``, see ``docs/platform-description.md``) names the
OpenFlow switches, the module hosts and spares, and the black-box middleboxes of ONE platform.
:func:`parse_description` checks a loaded description completely and either returns an
immutable :class:`PlatformDescription` or raises :class:`DescriptionError` listing EVERY problem
found, one line each, so that an operator fixes the file in one go.

This module is private to the collection and deliberately free of Ansible inventory objects: the
inventory plugin uses it, and so can controller-side code (planner, chain compiler) that needs
the platform as plain, validated data.  Everything it returns is built from plain ``str``,
``int``, ``float``, ``bool``, ``tuple``/``list`` and ``dict`` values, so it can be cached as JSON
and fed back through :func:`parse_description` unchanged (``as_dict()`` is a fixed point).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing as t
from collections.abc import Mapping

from ansible_collections.flowstream.platform.plugins.module_utils._ovsdb import PORT_TYPES

try:
    import netaddr
except ImportError as exc:  # pragma: no cover - exercised only where netaddr is missing
    netaddr = None
    NETADDR_IMPORT_ERROR: ImportError | None = exc
else:
    NETADDR_IMPORT_ERROR = None


# --------------------------------------------------------------------------------------------
# The vocabulary of the description
# --------------------------------------------------------------------------------------------

#: Top-level keys that make up the description itself (plugin options are added by the caller).
DESCRIPTION_KEYS = (
    'platform', 'switches', 'module_host_defaults', 'module_hosts', 'spares', 'blackboxes',
)
PLATFORM_KEYS = ('name', 'management_network')
SWITCH_KEYS = (
    'name', 'openflow_target', 'bridge', 'openflow_versions', 'ssl', 'uplinks',
    'management_address',
)
SSL_KEYS = ('private_key', 'certificate', 'ca_cert')
MODULE_HOST_KEYS = (
    'name', 'management_address', 'switch', 'trunk', 'host_bridge', 'port_type', 'leg_port_type',
    'capacity', 'kinds', 'power', 'libvirt_uri',
)
#: How the controller reaches a module host's libvirt (live migration of VM processing modules):
#: ``{address}`` and ``{name}`` are the host's management address and name.
DEFAULT_LIBVIRT_URI = 'qemu+ssh://root@{address}/system'
#: Keys that belong to one host only and therefore have no place in ``module_host_defaults``.
PER_HOST_KEYS = ('name', 'management_address', 'trunk')
DEFAULTABLE_KEYS = tuple(k for k in MODULE_HOST_KEYS if k not in PER_HOST_KEYS)
CAPACITY_KEYS = ('cpu', 'memory', 'pps')
BLACKBOX_KEYS = ('name', 'switch', 'ports', 'description', 'capacity', 'health')
BLACKBOX_PORT_KEYS = ('left', 'right')
BLACKBOX_CAPACITY_KEYS = ('pps',)
HEALTH_KEYS = ('type',)

OPENFLOW_VERSIONS = (
    'OpenFlow10', 'OpenFlow11', 'OpenFlow12', 'OpenFlow13', 'OpenFlow14', 'OpenFlow15',
)
DEFAULT_OPENFLOW_VERSIONS = ('OpenFlow13', 'OpenFlow14', 'OpenFlow15')
#: Flow tables are applied in OpenFlow bundles (all-or-nothing), which OpenFlow 1.4 introduced.
BUNDLE_OPENFLOW_VERSIONS = ('OpenFlow14', 'OpenFlow15')

MODULE_KINDS = ('vm', 'process', 'kernel', 'click')
#: What a host can run when the description does not say: needs nothing but Linux and OVS.
DEFAULT_KINDS = ('process', 'kernel')
DEFAULT_HOST_BRIDGE = 'fs-host'
#: PORT_TYPES (module_utils._ovsdb, the one list): interface types of the ports the platform adds
#: to a module host's bridge (the trunk and the legs of kernel, process and click instances).
DEFAULT_PORT_TYPE = 'system'

HEALTH_TYPES = ('none', 'port_status')
DEFAULT_HEALTH_TYPE = 'port_status'

#: Power drivers and the keys each accepts besides ``driver`` (required keys first).
#: ``idle_watts`` (what the host draws idle: the energy estimate of a power-down) goes with every driver.
POWER_DRIVERS: dict[str, dict[str, tuple[str, ...]]] = {
    'lab': {'required': (), 'optional': ('idle_watts',)},
    'ipmi': {'required': ('address',), 'optional': ('username', 'port', 'interface', 'cipher_suite', 'idle_watts')},
    'redfish': {'required': ('address',), 'optional': ('username', 'system_id', 'validate_certs', 'idle_watts')},
    'wol': {'required': ('mac',), 'optional': ('broadcast', 'idle_watts')},
    'none': {'required': (), 'optional': ('idle_watts',)},
}
DEFAULT_POWER_DRIVER = 'none'
#: The keys of the nested mappings ``module_host_defaults`` merges key-wise.
_SUBKEYS = {
    'capacity': CAPACITY_KEYS,
    'power': ('driver',) + tuple(dict.fromkeys(
        key for spec in POWER_DRIVERS.values() for key in spec['required'] + spec['optional'])),
}
IPMI_INTERFACES = ('lan', 'lanplus')
#: Where a power password goes instead: a (vaulted) host or group variable.
POWER_PASSWORD_VARIABLE = 'flowstream_power_password'
#: Keys that would put a secret into the description; all are refused the same way.
SECRET_KEYS = ('password', 'passwd', 'pass', 'secret')

#: OpenFlow's ofp_port.name is char[OFP_MAX_PORT_NAME_LEN = 16], NUL-terminated.
PORT_NAME_MAX_LENGTH = 15
#: OFPP_MAX in OpenFlow 1.1+: the highest number of a physical or logical port.
OFPP_MAX = 0xFFFFFF00
#: Reserved OpenFlow port names as ovs-ofctl spells them; never a trunk, uplink or box port.
RESERVED_PORT_NAMES = frozenset((
    'IN_PORT', 'TABLE', 'NORMAL', 'FLOOD', 'ALL', 'CONTROLLER', 'LOCAL', 'ANY', 'NONE', 'UNSET',
))
#: Linux interface names (the host bridge becomes one) are at most IFNAMSIZ - 1 characters.
IFNAME_MAX_LENGTH = 15

#: Group names the inventory plugin creates; a host may not take one of them as its name.
RESERVED_HOST_NAMES = frozenset((
    'all', 'ungrouped', 'flowstream_switches', 'flowstream_module_hosts', 'flowstream_spares',
    'flowstream_blackboxes',
))

_NAME_RE = re.compile(r'^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$')
_DNS_LABEL_RE = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')
_PORT_NAME_RE = re.compile(r'^[^\s,=()"\'\\]+$')
_BRIDGE_RE = re.compile(r'^[^\s,=()"\'\\/:]+$')


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

Port = t.Union[int, str]
"""A switch port: an OpenFlow port number (>= 1) or a port name (at most 15 characters)."""


@dataclasses.dataclass(frozen=True)
class SslFiles:
    """Controller-side files for an ``ssl:`` OpenFlow connection."""

    private_key: str
    certificate: str
    ca_cert: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Switch:
    """An OpenFlow switch of the platform, programmed by the controller."""

    name: str
    openflow_target: str
    bridge: str
    openflow_versions: tuple[str, ...]
    uplinks: dict[str, Port]
    ssl: SslFiles | None = None
    management_address: str | None = None

    def as_dict(self) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {
            'name': self.name,
            'openflow_target': self.openflow_target,
            'bridge': self.bridge,
            'openflow_versions': list(self.openflow_versions),
            'uplinks': dict(self.uplinks),
        }
        if self.ssl is not None:
            result['ssl'] = self.ssl.as_dict()
        if self.management_address is not None:
            result['management_address'] = self.management_address
        return result


@dataclasses.dataclass(frozen=True)
class Capacity:
    """What a module host offers to processing modules: CPU cores, MiB of memory, packets/s."""

    cpu: int | float
    memory: int | float
    pps: int | float | None = None

    def as_dict(self) -> dict[str, int | float]:
        result = {'cpu': self.cpu, 'memory': self.memory}
        if self.pps is not None:
            result['pps'] = self.pps
        return result


@dataclasses.dataclass(frozen=True)
class ModuleHost:
    """A Linux server running processing modules; ``spare`` hosts stand by for failover."""

    name: str
    management_address: str
    switch: str
    trunk: Port
    host_bridge: str
    port_type: str
    capacity: Capacity
    kinds: tuple[str, ...]
    power: dict[str, t.Any]
    spare: bool = False
    libvirt_uri: str = ''
    leg_port_type: str = ''

    @property
    def role(self) -> str:
        return 'spare' if self.spare else 'module_host'

    def as_dict(self) -> dict[str, t.Any]:
        """The normalised description entry (without ``spare``: the list it sits in says that)."""
        return {
            'name': self.name,
            'management_address': self.management_address,
            'switch': self.switch,
            'trunk': self.trunk,
            'host_bridge': self.host_bridge,
            'port_type': self.port_type,
            'leg_port_type': self.leg_port_type or self.port_type,
            'capacity': self.capacity.as_dict(),
            'kinds': list(self.kinds),
            'power': dict(self.power),
            'libvirt_uri': self.libvirt_uri,
        }


@dataclasses.dataclass(frozen=True)
class Blackbox:
    """A hardware middlebox on two switch ports: traffic enters ``left`` and leaves ``right``."""

    name: str
    switch: str
    left: Port
    right: Port
    health: str = DEFAULT_HEALTH_TYPE
    description: str | None = None
    pps: int | float | None = None

    @property
    def ports(self) -> dict[str, Port]:
        return {'left': self.left, 'right': self.right}

    @property
    def capacity(self) -> dict[str, int | float] | None:
        return None if self.pps is None else {'pps': self.pps}

    def as_dict(self) -> dict[str, t.Any]:
        result: dict[str, t.Any] = {
            'name': self.name,
            'switch': self.switch,
            'ports': self.ports,
            'health': {'type': self.health},
        }
        if self.description is not None:
            result['description'] = self.description
        if self.pps is not None:
            result['capacity'] = self.capacity
        return result


@dataclasses.dataclass(frozen=True)
class PlatformDescription:
    """One validated Flowstream platform."""

    name: str
    management_network: str
    switches: tuple[Switch, ...]
    module_hosts: tuple[ModuleHost, ...]
    spares: tuple[ModuleHost, ...]
    blackboxes: tuple[Blackbox, ...]

    @property
    def all_module_hosts(self) -> tuple[ModuleHost, ...]:
        """Module hosts in service, then spares (a spare is a module host on standby)."""
        return self.module_hosts + self.spares

    def switch(self, name: str) -> Switch:
        for switch in self.switches:
            if switch.name == name:
                return switch
        raise KeyError(name)

    def as_dict(self) -> dict[str, t.Any]:
        """The normalised description: defaults merged in, every default filled, plain types.

        ``parse_description(d.as_dict())`` returns a description equal to ``d``.
        """
        return {
            'platform': {'name': self.name, 'management_network': self.management_network},
            'switches': [s.as_dict() for s in self.switches],
            'module_hosts': [h.as_dict() for h in self.module_hosts],
            'spares': [h.as_dict() for h in self.spares],
            'blackboxes': [b.as_dict() for b in self.blackboxes],
        }


class DescriptionError(ValueError):
    """A platform description is invalid; ``errors`` holds one line per problem."""

    def __init__(self, errors: t.Sequence[str], source: str | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        super().__init__(self.message)

    @property
    def message(self) -> str:
        prefix = f'{self.source}: ' if self.source else ''
        return '\n'.join(prefix + error for error in self.errors)

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

class _Invalid:
    """Marks a value that failed validation (its error has been reported)."""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return '<invalid>'


INVALID: t.Any = _Invalid()


def _show(value: t.Any) -> str:
    """Render a value from the file the way the operator wrote it (YAML spelling)."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return 'a mapping'
    if isinstance(value, (list, tuple)):
        return 'a list'
    return f'a value of type {type(value).__name__}'


def _suggest(word: str, candidates: t.Iterable[str]) -> str:
    """', did you mean 'x'?' for the closest candidate, or '' when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f", did you mean '{matches[0]}'?" if matches else ''


def _suggest_key(key: str, allowed: t.Sequence[str], prefix: str = '') -> str:
    matches = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if matches:
        return f", did you mean '{prefix}{matches[0]}'?"
    return f' (known keys: {_known(allowed)})'


def _known(candidates: t.Iterable[str]) -> str:
    return ', '.join(candidates)


def _is_number(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Report:
    """Collects error lines in order, without repeating one (inherited defaults would)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, where: str | None, message: str) -> None:
        line = f'{where}: {message}' if where else message
        if line not in self.errors:
            self.errors.append(line)


class _Entity:
    """Reports errors about one entity of the description.

    Values a module host inherits from ``module_host_defaults`` are reported against the
    defaults (once), values of its own against the host: ``inherited`` holds the inherited field
    paths (``switch``, ``capacity.cpu``, ...).
    """

    def __init__(self, report: _Report, label: str | None, defaults_label: str | None = None,
                 inherited: t.AbstractSet[str] = frozenset(), name: str | None = None) -> None:
        self.report = report
        self.label = label
        self.name = name
        self.defaults_label = defaults_label
        self.inherited = inherited

    def is_inherited(self, field: str) -> bool:
        return field in self.inherited or field.split('.', 1)[0] in self.inherited

    def _where(self, field: str | None) -> str | None:
        if field and self.defaults_label and self.is_inherited(field):
            return self.defaults_label
        return self.label

    def error(self, field: str | None, message: str, own: bool = False) -> None:
        """Report ``message`` (which names the field itself) about ``field``.

        ``own`` reports against the entity even when the field is inherited: a value that is
        missing, or that does not fit this entity's other values, is the entity's problem.
        """
        self.report.add(self.label if own else self._where(field), message)

    def check_keys(self, mapping: Mapping, allowed: t.Sequence[str], prefix: str = '',
                   explain: t.Mapping[str, str] | None = None) -> None:
        """Report keys of ``mapping`` that are not in ``allowed``, with a suggestion."""
        for key in mapping:
            if not isinstance(key, str):
                self.error(None, f'{prefix}{_show(key)} is not a valid key: keys are strings')
                continue
            if key in allowed:
                continue
            field = prefix + key
            if prefix == 'power.' and key in SECRET_KEYS:
                self.error(field, _secret_message(field, self))
            elif explain and key in explain:
                self.error(field, explain[key])
            else:
                self.error(field, f"unknown key {_show(field)}{_suggest_key(key, allowed, prefix)}")

    def mapping(self, field: str, value: t.Any, allow_none: bool = True) -> Mapping | None:
        """``value`` as a mapping; ``None`` (an empty YAML key) counts as empty when allowed."""
        if value is None and allow_none:
            return {}
        if isinstance(value, Mapping):
            return value
        self.error(field, f'{field} must be a mapping, got {_show(value)}')
        return None


def _secret_message(field: str, entity: _Entity) -> str:
    if entity._where(field) == 'module_host_defaults':
        target = ('for the module hosts in a group variables file, e.g. '
                  'group_vars/flowstream_module_hosts.yml')
    elif entity.name:
        target = f"for host '{entity.name}', e.g. in host_vars/{entity.name}.yml"
    else:
        target = 'for this host in its host_vars'
    return (f'{field} must not be in the platform description: put the password in the vault '
            f'variable {POWER_PASSWORD_VARIABLE} {target} (encrypted with ansible-vault)')


def _label(kind: str, index: int, item: t.Any) -> str:
    name = item.get('name') if isinstance(item, Mapping) else None
    if isinstance(name, str) and name:
        return f"{kind}[{index}] {_show(name)}"
    return f'{kind}[{index}]'


def _check_name(entity: _Entity, field: str, value: t.Any) -> str:
    if value is None:
        entity.error(field, f'{field} is required')
        return INVALID
    if not isinstance(value, str) or not _NAME_RE.match(value):
        entity.error(field, f'{field} must be a name of letters, digits, "_", "." and "-" '
                            f'(an inventory hostname), got {_show(value)}')
        return INVALID
    return str(value)


def _check_str(entity: _Entity, field: str, value: t.Any, what: str = 'a string') -> str:
    if not isinstance(value, str) or not value.strip():
        entity.error(field, f'{field} must be {what}, got {_show(value)}')
        return INVALID
    return str(value)


def _check_port(entity: _Entity, field: str, value: t.Any) -> Port:
    """A switch port: an OpenFlow port number >= 1 or a port name (digits-only names are
    numbers, as ovs-ofctl reads them)."""
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if _is_number(value):
        if isinstance(value, float) or value < 1:
            entity.error(field, f'{field} must be a port name or an OpenFlow port number >= 1, '
                                f'got {_show(value)}')
            return INVALID
        if value > OFPP_MAX:
            entity.error(field, f'{field} {value} is above the highest OpenFlow port number '
                                f'({OFPP_MAX}, OFPP_MAX)')
            return INVALID
        return int(value)
    if not isinstance(value, str) or not value:
        entity.error(field, f'{field} must be a port name or an OpenFlow port number >= 1, '
                            f'got {_show(value)}')
        return INVALID
    if value.upper() in RESERVED_PORT_NAMES:
        entity.error(field, f"{field} '{value}' is a reserved OpenFlow port, not a switch port")
        return INVALID
    if not _PORT_NAME_RE.match(value):
        entity.error(field, f'{field} {_show(value)} is not a valid port name: no spaces, '
                            f'quotes, commas, "=" or parentheses')
        return INVALID
    if len(value) > PORT_NAME_MAX_LENGTH:
        entity.error(field, f"{field} '{value}' is longer than OpenFlow's "
                            f'{PORT_NAME_MAX_LENGTH}-character port names')
        return INVALID
    return str(value)


def _check_number(entity: _Entity, field: str, value: t.Any, unit: str) -> int | float:
    if not _is_number(value) or not math.isfinite(value):
        entity.error(field, f'{field} must be a number of {unit}, got {_show(value)}')
        return INVALID
    if value <= 0:
        entity.error(field, f'{field} must be a number of {unit} greater than 0, '
                            f'got {_show(value)}')
        return INVALID
    return _plain_number(value)


def _plain_number(value: int | float) -> int | float:
    """A plain int or float (loaders may hand over subclasses that carry tags)."""
    return int(value) if isinstance(value, int) else float(value)


def _check_hostname(value: str) -> bool:
    """A DNS name or an IPv4 address (an all-numeric name must be a valid address)."""
    if len(value) > 253:
        return False
    labels = value.rstrip('.').split('.')
    if all(label.isdigit() for label in labels):
        return _parse_ip(value, version=4) is not None
    return all(_DNS_LABEL_RE.match(label) for label in labels)


def _parse_ip(value: str, version: int | None = None) -> t.Any:
    """netaddr.IPAddress for a plain address (inet_pton rules), else None."""
    try:
        address = netaddr.IPAddress(value, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return None
    if version is not None and address.version != version:
        return None
    return address


def _check_ip(entity: _Entity, field: str, value: t.Any) -> t.Any:
    """A plain IP address (no prefix length): netaddr.IPAddress, or INVALID."""
    if not isinstance(value, str):
        entity.error(field, f'{field} must be an IP address, got {_show(value)}')
        return INVALID
    if '/' in value:
        entity.error(field, f"{field} must be a plain IP address without a prefix length, "
                            f"got {_show(value)}")
        return INVALID
    address = _parse_ip(value)
    if address is None:
        entity.error(field, f"{field} must be an IP address, got {_show(value)}")
        return INVALID
    return address


def _check_host_or_ip(entity: _Entity, field: str, value: t.Any) -> str:
    """An IP address or a DNS name (a BMC, a switch's OpenFlow endpoint)."""
    if isinstance(value, str) and value:
        address = _parse_ip(value)
        if address is not None:
            return str(address)
        if _check_hostname(value):
            return str(value)
    entity.error(field, f'{field} must be an IP address or a DNS name, got {_show(value)}')
    return INVALID


def _check_abs_path(entity: _Entity, field: str, value: t.Any) -> str:
    if not isinstance(value, str) or not value.startswith('/'):
        entity.error(field, f'{field} must be an absolute path on the controller, '
                            f'got {_show(value)}')
        return INVALID
    return str(value)


def _check_bridge(entity: _Entity, field: str, value: t.Any, ifname: bool) -> str:
    if not isinstance(value, str) or not value or not _BRIDGE_RE.match(value):
        entity.error(field, f'{field} must be a bridge name without spaces, quotes, "/", ":", '
                            f'"," or "=", got {_show(value)}')
        return INVALID
    if ifname and len(value) > IFNAME_MAX_LENGTH:
        entity.error(field, f"{field} '{value}' is longer than the {IFNAME_MAX_LENGTH} characters "
                            f'a Linux interface name may have')
        return INVALID
    return str(value)


class _PartialNames(list):
    """The names of the valid switches when some switch failed validation."""


def _check_switch_ref(entity: _Entity, field: str, value: t.Any,
                      switch_names: t.Sequence[str]) -> str:
    """The switch an entity is plugged into; may be omitted when there is only one."""
    if value is None:
        if len(switch_names) == 1:
            return switch_names[0]
        if not switch_names:
            return INVALID  # "at least one switch" is reported at the top level
        entity.error(field, f'{field} is required when the platform has more than one switch '
                            f'(known: {_known(switch_names)})')
        return INVALID
    if not isinstance(value, str):
        entity.error(field, f'{field} must be the name of a switch, got {_show(value)}')
        return INVALID
    if value not in switch_names:
        if isinstance(switch_names, _PartialNames):
            return INVALID  # a switch is itself invalid: its errors say what to fix first
        hint = _suggest(value, switch_names)
        entity.error(field, f"{field} {_show(value)} is not a switch of this platform"
                            f"{hint or ''} (known: {_known(switch_names) or 'none'})")
        return INVALID
    return str(value)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

def _check_platform(report: _Report, value: t.Any) -> tuple[str, t.Any]:
    entity = _Entity(report, 'platform')
    if value is None:
        report.add(None, "platform is required: a mapping with 'name' and 'management_network'")
        return INVALID, INVALID
    if not isinstance(value, Mapping):
        report.add(None, f'platform must be a mapping, got {_show(value)}')
        return INVALID, INVALID
    entity.check_keys(value, PLATFORM_KEYS)
    name = _check_name(entity, 'name', value.get('name'))

    network = INVALID
    raw = value.get('management_network')
    if raw is None:
        entity.error('management_network', 'management_network is required (a CIDR such as '
                                           '10.20.0.0/24)')
    elif not isinstance(raw, str) or '/' not in raw:
        entity.error('management_network', f'management_network must be a network in CIDR '
                                           f'notation such as 10.20.0.0/24, got {_show(raw)}')
    else:
        try:
            candidate = netaddr.IPNetwork(raw)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            entity.error('management_network', f'management_network must be a network in CIDR '
                                               f"notation such as 10.20.0.0/24, got {_show(raw)}")
        else:
            if candidate.ip != candidate.network:
                entity.error('management_network',
                             f"management_network '{raw}' has host bits set, did you mean "
                             f"'{candidate.cidr}'?")
            else:
                network = candidate.cidr
    return name, network


def _check_openflow_target(entity: _Entity, value: t.Any) -> tuple[str, str]:
    """Returns (normalised target, scheme)."""
    field = 'openflow_target'
    forms = 'unix:/PATH, tcp:HOST:PORT or ssl:HOST:PORT'
    if value is None:
        entity.error(field, f'{field} is required ({forms})')
        return INVALID, INVALID
    if not isinstance(value, str) or ':' not in value:
        entity.error(field, f'{field} must be {forms}, got {_show(value)}')
        return INVALID, INVALID
    scheme, rest = value.split(':', 1)
    if scheme == 'unix':
        if not rest.startswith('/'):
            entity.error(field, f"{field} {_show(value)} must name an absolute socket path "
                                f'(unix:/var/run/openvswitch/BRIDGE.mgmt)')
            return INVALID, INVALID
        return str(value), scheme
    if scheme not in ('tcp', 'ssl'):
        entity.error(field, f"{field} {_show(value)} must be {forms} (the controller connects to the "
                            f"switch; passive ptcp:/pssl: targets are not supported)")
        return INVALID, INVALID
    match = re.match(r'^\[([^\]]+)\]:([^:]*)$', rest)
    if match:
        host, port = match.groups()
        host_ok = _parse_ip(host, version=6) is not None
    elif rest.count(':') == 1:
        host, port = rest.split(':')
        host_ok = bool(host) and _check_hostname(host)
    elif rest.count(':') > 1:
        entity.error(field, f"{field} {_show(value)}: write an IPv6 address in brackets, e.g. "
                            f'{scheme}:[2001:db8::1]:6653')
        return INVALID, INVALID
    else:
        entity.error(field, f"{field} {_show(value)} must be {scheme}:HOST:PORT, with the port "
                            f'(OpenFlow uses 6653)')
        return INVALID, INVALID
    if not host_ok:
        entity.error(field, f"{field} {_show(value)}: {_show(host)} is not an IP address or a DNS name")
        return INVALID, INVALID
    if not (port.isdigit() and port.isascii() and 1 <= int(port) <= 65535):
        entity.error(field, f"{field} {_show(value)}: the port must be a number from 1 to 65535, "
                            f"got {_show(port)}")
        return INVALID, INVALID
    return str(value), scheme


def _check_openflow_versions(entity: _Entity, value: t.Any) -> tuple[str, ...]:
    field = 'openflow_versions'
    if value is None:
        return DEFAULT_OPENFLOW_VERSIONS
    if not isinstance(value, (list, tuple)) or not value:
        entity.error(field, f'{field} must be a non-empty list of {_known(OPENFLOW_VERSIONS)}, '
                            f'got {_show(value)}')
        return INVALID
    versions: list[str] = []
    ok = True
    for index, item in enumerate(value):
        if item not in OPENFLOW_VERSIONS:
            hint = _suggest(str(item), OPENFLOW_VERSIONS) if isinstance(item, str) else ''
            entity.error(field, f'{field}[{index}] must be one of {_known(OPENFLOW_VERSIONS)}, '
                                f'got {_show(item)}{hint}')
            ok = False
        elif item in versions:
            entity.error(field, f'{field}[{index}] repeats {item}')
            ok = False
        else:
            versions.append(str(item))
    if not ok:
        return INVALID
    if not any(v in BUNDLE_OPENFLOW_VERSIONS for v in versions):
        entity.error(field, f'{field} must include OpenFlow14 or OpenFlow15: flow tables are '
                            f'applied in OpenFlow 1.4 bundles (all-or-nothing), which '
                            f'{", ".join(versions)} cannot carry')
        return INVALID
    return tuple(v for v in OPENFLOW_VERSIONS if v in versions)


def _check_ssl(entity: _Entity, value: t.Any, scheme: t.Any) -> SslFiles | None:
    if scheme is INVALID:
        # The target is already reported; judge ssl on its own.
        if value is None:
            return None
    elif scheme != 'ssl':
        if value is not None:
            entity.error('ssl', f'ssl is only used with an ssl: openflow_target, this switch '
                                f'connects over {scheme}: (remove ssl or use ssl:HOST:PORT)')
            return INVALID
        return None
    elif value is None:
        entity.error('ssl', 'ssl is required for an ssl: openflow_target: a mapping with '
                            'private_key, certificate and ca_cert (paths on the controller)')
        return INVALID
    mapping = entity.mapping('ssl', value, allow_none=False)
    if mapping is None:
        return INVALID
    entity.check_keys(mapping, SSL_KEYS, prefix='ssl.')
    files = {}
    for key in SSL_KEYS:
        if mapping.get(key) is None:
            entity.error(f'ssl.{key}', f'ssl.{key} is required (a path on the controller)')
            files[key] = INVALID
        else:
            files[key] = _check_abs_path(entity, f'ssl.{key}', mapping[key])
    if INVALID in files.values():
        return INVALID
    return SslFiles(**files)


def _check_switch(report: _Report, index: int, item: t.Any) -> dict[str, t.Any] | None:
    label = _label('switches', index, item)
    entity = _Entity(report, label)
    if not isinstance(item, Mapping):
        report.add(label, f'a switch must be a mapping, got {_show(item)}')
        return None
    entity.check_keys(item, SWITCH_KEYS)
    result: dict[str, t.Any] = {'name': _check_name(entity, 'name', item.get('name'))}
    result['openflow_target'], scheme = _check_openflow_target(entity, item.get('openflow_target'))
    if item.get('bridge') is None:
        entity.error('bridge', 'bridge is required (the OpenFlow bridge or datapath to program)')
        result['bridge'] = INVALID
    else:
        result['bridge'] = _check_bridge(entity, 'bridge', item['bridge'], ifname=False)
    result['openflow_versions'] = _check_openflow_versions(entity, item.get('openflow_versions'))
    result['ssl'] = _check_ssl(entity, item.get('ssl'), scheme)

    uplinks: dict[str, Port] = {}
    raw = entity.mapping('uplinks', item.get('uplinks'))
    if raw is None:
        uplinks = INVALID
    else:
        for name, port in raw.items():
            if not isinstance(name, str) or not _NAME_RE.match(name):
                entity.error('uplinks', f'uplinks: {_show(name)} is not a valid uplink name '
                                        f'(letters, digits, "_", "." and "-")')
                uplinks = INVALID
                continue
            checked = _check_port(entity, f'uplinks.{name}', port)
            if checked is INVALID or uplinks is INVALID:
                uplinks = INVALID
            else:
                uplinks[str(name)] = checked
    result['uplinks'] = uplinks

    address = item.get('management_address')
    if address is not None:
        address = _check_ip(entity, 'management_address', address)
    result['management_address'] = address
    return result


def _merge_defaults(defaults: Mapping, host: Mapping) -> tuple[dict[str, t.Any], set[str]]:
    """Merge ``module_host_defaults`` under a host: per key, ``capacity`` and ``power`` key-wise.

    Returns the merged mapping and the field paths whose value came from the defaults.
    """
    merged = {key: value for key, value in host.items() if key in MODULE_HOST_KEYS}
    inherited: set[str] = set()
    for key, value in defaults.items():
        if key not in DEFAULTABLE_KEYS:
            continue
        if key in _SUBKEYS and isinstance(value, Mapping):
            # Unknown keys and secrets in the defaults are reported once, by _check_defaults.
            value = {sub: v for sub, v in value.items() if sub in _SUBKEYS[key]}
        if key not in merged:
            merged[key] = value
            inherited.add(key)
        elif key in ('capacity', 'power') and isinstance(value, Mapping) \
                and isinstance(merged[key], Mapping):
            combined = dict(value)
            combined.update(merged[key])
            inherited.update(f'{key}.{sub}' for sub in value if sub not in merged[key])
            merged[key] = combined
    return merged, inherited


def _check_port_type(entity: _Entity, value: t.Any, field: str = 'port_type', default: str = DEFAULT_PORT_TYPE) -> str:
    if value is None:
        return default
    if value not in PORT_TYPES:
        hint = _suggest(value, PORT_TYPES) if isinstance(value, str) else ''
        entity.error(field, f'{field} must be one of {_known(PORT_TYPES)}, '
                            f'got {_show(value)}{hint}')
        return INVALID
    return str(value)


def _check_capacity(entity: _Entity, value: t.Any) -> Capacity:
    if value is None:
        entity.error('capacity', 'capacity is required (cpu cores and memory MiB; set it here or '
                                 'in module_host_defaults)', own=True)
        return INVALID
    mapping = entity.mapping('capacity', value, allow_none=False)
    if mapping is None:
        return INVALID
    entity.check_keys(mapping, CAPACITY_KEYS, prefix='capacity.')
    units = {'cpu': 'CPU cores', 'memory': 'MiB', 'pps': 'packets per second'}
    values = {}
    for key in CAPACITY_KEYS:
        if mapping.get(key) is None:
            if key != 'pps':
                entity.error(f'capacity.{key}', f'capacity.{key} is required (a number of '
                                                f'{units[key]})', own=True)
                values[key] = INVALID
            continue
        values[key] = _check_number(entity, f'capacity.{key}', mapping[key], units[key])
    if INVALID in values.values():
        return INVALID
    return Capacity(**values)


def _check_kinds(entity: _Entity, value: t.Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_KINDS
    if not isinstance(value, (list, tuple)) or not value:
        entity.error('kinds', f'kinds must be a non-empty list of {_known(MODULE_KINDS)}, '
                              f'got {_show(value)}')
        return INVALID
    kinds: list[str] = []
    ok = True
    for index, item in enumerate(value):
        if item not in MODULE_KINDS:
            hint = _suggest(str(item), MODULE_KINDS) if isinstance(item, str) else ''
            entity.error('kinds', f'kinds[{index}] must be one of {_known(MODULE_KINDS)}, '
                                  f'got {_show(item)}{hint}')
            ok = False
        elif item in kinds:
            entity.error('kinds', f'kinds[{index}] repeats {item}')
            ok = False
        else:
            kinds.append(str(item))
    return tuple(kinds) if ok else INVALID


def _check_power(entity: _Entity, value: t.Any) -> dict[str, t.Any]:
    if value is None:
        return {'driver': DEFAULT_POWER_DRIVER}
    mapping = entity.mapping('power', value, allow_none=False)
    if mapping is None:
        return INVALID
    driver = mapping.get('driver')
    if driver is None:
        entity.error('power.driver', f'power.driver is required (one of '
                                     f'{_known(POWER_DRIVERS)})', own=True)
        # Still refuse secrets and judge the keys every driver shares.
        entity.check_keys(mapping, _SUBKEYS['power'], prefix='power.')
        return INVALID
    if not isinstance(driver, str) or driver not in POWER_DRIVERS:
        hint = _suggest(str(driver), POWER_DRIVERS) if isinstance(driver, str) else ''
        entity.error('power.driver', f'power.driver must be one of {_known(POWER_DRIVERS)}, '
                                     f'got {_show(driver)}{hint}')
        entity.check_keys(mapping, _SUBKEYS['power'], prefix='power.')
        return INVALID
    spec = POWER_DRIVERS[driver]
    allowed = ('driver',) + spec['required'] + spec['optional']
    for key in mapping:
        field = f'power.{key}'
        if key in _SUBKEYS['power'] and key not in allowed:
            # A real option of another driver: this host's driver does not fit it.
            note = ' (inherited from module_host_defaults)' if entity.is_inherited(field) else ''
            entity.error(field, f"{field}{note} is not an option of power driver '{driver}' "
                                f"(its options: {_known(allowed[1:]) or 'none'})", own=True)
    entity.check_keys({k: v for k, v in mapping.items() if k not in _SUBKEYS['power']},
                      allowed, prefix='power.')
    result: dict[str, t.Any] = {'driver': str(driver)}
    ok = True
    for key in spec['required']:
        if mapping.get(key) is None:
            entity.error(f'power.{key}', f"power.{key} is required for power driver '{driver}'",
                         own=True)
            ok = False
    for key in spec['required'] + spec['optional']:
        raw = mapping.get(key)
        if raw is None:
            continue
        field = f'power.{key}'
        if key == 'address':
            checked = _check_host_or_ip(entity, field, raw)
        elif key == 'username' or key == 'system_id':
            checked = _check_str(entity, field, raw)
        elif key == 'port':
            if _is_number(raw) and isinstance(raw, int) and 1 <= raw <= 65535:
                checked = int(raw)
            else:
                entity.error(field, f'{field} must be a UDP port number from 1 to 65535, '
                                    f'got {_show(raw)}')
                checked = INVALID
        elif key == 'interface':
            if raw in IPMI_INTERFACES:
                checked = str(raw)
            else:
                entity.error(field, f'{field} must be one of {_known(IPMI_INTERFACES)}, '
                                    f'got {_show(raw)}')
                checked = INVALID
        elif key == 'validate_certs':
            if isinstance(raw, bool):
                checked = bool(raw)
            else:
                entity.error(field, f'{field} must be true or false, got {_show(raw)}')
                checked = INVALID
        elif key == 'cipher_suite':
            if raw in (3, 17) and not isinstance(raw, bool):
                checked = int(raw)
            else:
                entity.error(field, f'{field} must be 17 (SHA-256) or 3 (SHA-1), got {_show(raw)}')
                checked = INVALID
        elif key == 'idle_watts':
            if _is_number(raw) and 0 < raw <= 100000:
                checked = float(raw)
            else:
                entity.error(field, f'{field} must be what the host draws idle, in watts (a number above 0, '
                                    f'e.g. 120), got {_show(raw)}')
                checked = INVALID
        elif key == 'mac':
            checked = _check_mac(entity, field, raw)
        elif key == 'broadcast':
            address = _check_ip(entity, field, raw)
            checked = INVALID if address is INVALID else str(address)
        else:  # pragma: no cover - every driver key is handled above
            raise AssertionError(key)
        if checked is INVALID:
            ok = False
        else:
            result[key] = checked
    return result if ok else INVALID


def _check_mac(entity: _Entity, field: str, value: t.Any) -> str:
    if isinstance(value, str):
        try:
            mac = netaddr.EUI(value)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            mac = None
        if mac is not None and mac.version == 48:
            mac.dialect = netaddr.mac_unix_expanded
            return str(mac).lower()
    entity.error(field, f'{field} must be a MAC address such as 52:54:00:12:34:56, '
                        f'got {_show(value)}')
    return INVALID


def _check_defaults(report: _Report, value: t.Any) -> Mapping:
    """``module_host_defaults``: keys are judged here, values where a host inherits them."""
    if value is None:
        return {}
    entity = _Entity(report, 'module_host_defaults')
    if not isinstance(value, Mapping):
        report.add(None, f'module_host_defaults must be a mapping, got {_show(value)}')
        return {}
    explain = {key: f"{key} cannot be set in module_host_defaults: every module host has its "
                    f"own" for key in PER_HOST_KEYS}
    entity.check_keys(value, DEFAULTABLE_KEYS, explain=explain)
    for key, known in _SUBKEYS.items():
        if value.get(key) is None:
            continue
        if isinstance(value[key], Mapping):
            entity.check_keys(value[key], known, prefix=f'{key}.')
        else:
            entity.error(key, f'{key} must be a mapping, got {_show(value[key])}')
    return value


def _check_module_host(report: _Report, kind: str, index: int, item: t.Any, defaults: Mapping,
                       switch_names: t.Sequence[str], network: t.Any) -> dict[str, t.Any] | None:
    label = _label(kind, index, item)
    if not isinstance(item, Mapping):
        report.add(label, f'a module host must be a mapping, got {_show(item)}')
        return None
    _Entity(report, label).check_keys(item, MODULE_HOST_KEYS)
    merged, inherited = _merge_defaults(defaults, item)
    name = item.get('name')
    name = name if isinstance(name, str) and _NAME_RE.match(name) else None
    entity = _Entity(report, label, 'module_host_defaults', inherited, name=name)

    result: dict[str, t.Any] = {'name': _check_name(entity, 'name', merged.get('name'))}

    address = merged.get('management_address')
    if address is None:
        entity.error('management_address', "management_address is required (the host's IP "
                                           'address on the management network)', own=True)
        address = INVALID
    else:
        address = _check_ip(entity, 'management_address', address)
    if address is not INVALID and network is not INVALID:
        if address.version != network.version or address not in network:
            entity.error('management_address', f'management_address {address} is outside '
                                               f'platform.management_network {network}')
            address = INVALID
        elif network.version == 4 and network.prefixlen < 31 \
                and address in (network.network, network.broadcast):
            what = 'network' if address == network.network else 'broadcast'
            entity.error('management_address', f'management_address {address} is the {what} '
                                               f'address of {network}, not a host address')
            address = INVALID
        elif network.version == 6 and network.prefixlen < 127 and address == network.network:
            entity.error('management_address', f'management_address {address} is the '
                                               f'subnet-router anycast address of {network}, '
                                               f'not a host address')
            address = INVALID
    result['management_address'] = address

    result['switch'] = _check_switch_ref(entity, 'switch', merged.get('switch'), switch_names)
    if merged.get('trunk') is None:
        entity.error('trunk', "trunk is required: the switch port this host's trunk is plugged "
                              'into (a port name or an OpenFlow port number)', own=True)
        result['trunk'] = INVALID
    else:
        result['trunk'] = _check_port(entity, 'trunk', merged['trunk'])
    host_bridge = merged.get('host_bridge')
    result['host_bridge'] = (DEFAULT_HOST_BRIDGE if host_bridge is None else
                             _check_bridge(entity, 'host_bridge', host_bridge, ifname=True))
    result['port_type'] = _check_port_type(entity, merged.get('port_type'))
    result['leg_port_type'] = _check_port_type(entity, merged.get('leg_port_type'), 'leg_port_type', result['port_type'])
    result['capacity'] = _check_capacity(entity, merged.get('capacity'))
    result['kinds'] = _check_kinds(entity, merged.get('kinds'))
    result['power'] = _check_power(entity, merged.get('power'))
    result['libvirt_uri'] = _check_libvirt_uri(entity, merged.get('libvirt_uri'), result.get('name'), address)
    result['spare'] = kind == 'spares'
    return result


def _check_libvirt_uri(entity: _Entity, value: t.Any, name: t.Any, address: t.Any) -> str:
    template = DEFAULT_LIBVIRT_URI if value is None else value
    if not isinstance(template, str) or '://' not in template or not template.startswith('qemu'):
        entity.error('libvirt_uri', f'libvirt_uri must be a libvirt URI of the QEMU driver such as '
                                    f'{DEFAULT_LIBVIRT_URI!r} ({{address}} and {{name}} are the host\'s), '
                                    f'got {_show(value)}')
        return INVALID
    try:
        return template.format(address=address if address is not INVALID else '', name=name if isinstance(name, str) else '')
    except (KeyError, IndexError, ValueError) as exc:
        entity.error('libvirt_uri', f'libvirt_uri {template!r}: unknown placeholder {exc} (known: {{address}}, {{name}})')
        return INVALID


def _check_blackbox(report: _Report, index: int, item: t.Any,
                    switch_names: t.Sequence[str]) -> dict[str, t.Any] | None:
    label = _label('blackboxes', index, item)
    if not isinstance(item, Mapping):
        report.add(label, f'a black box must be a mapping, got {_show(item)}')
        return None
    entity = _Entity(report, label)
    entity.check_keys(item, BLACKBOX_KEYS)
    result: dict[str, t.Any] = {'name': _check_name(entity, 'name', item.get('name'))}
    result['switch'] = _check_switch_ref(entity, 'switch', item.get('switch'), switch_names)

    ports = item.get('ports')
    result['left'] = result['right'] = INVALID
    if ports is None:
        entity.error('ports', 'ports is required: a mapping with the left and right switch ports')
    else:
        mapping = entity.mapping('ports', ports, allow_none=False)
        if mapping is not None:
            entity.check_keys(mapping, BLACKBOX_PORT_KEYS, prefix='ports.')
            for key in BLACKBOX_PORT_KEYS:
                if mapping.get(key) is None:
                    entity.error(f'ports.{key}', f'ports.{key} is required (the switch port the '
                                                 f"box's {key} side is plugged into)")
                else:
                    result[key] = _check_port(entity, f'ports.{key}', mapping[key])
            if result['left'] is not INVALID and result['left'] == result['right']:
                entity.error('ports.right', f"ports.left and ports.right are the same port "
                                            f"{_show(result['left'])}")
                result['right'] = INVALID

    description = item.get('description')
    result['description'] = (None if description is None
                             else _check_str(entity, 'description', description))

    result['pps'] = None
    capacity = item.get('capacity')
    if capacity is not None:
        mapping = entity.mapping('capacity', capacity, allow_none=False)
        if mapping is not None:
            entity.check_keys(mapping, BLACKBOX_CAPACITY_KEYS, prefix='capacity.')
            if mapping.get('pps') is not None:
                result['pps'] = _check_number(entity, 'capacity.pps', mapping['pps'],
                                              'packets per second')
        else:
            result['pps'] = INVALID

    result['health'] = DEFAULT_HEALTH_TYPE
    health = entity.mapping('health', item.get('health'))
    if health is None:
        result['health'] = INVALID
    else:
        entity.check_keys(health, HEALTH_KEYS, prefix='health.')
        kind = health.get('type')
        if kind is not None:
            if kind in HEALTH_TYPES:
                result['health'] = str(kind)
            else:
                hint = _suggest(str(kind), HEALTH_TYPES) if isinstance(kind, str) else ''
                entity.error('health.type', f'health.type must be one of {_known(HEALTH_TYPES)}, '
                                            f'got {_show(kind)}{hint}')
                result['health'] = INVALID
    return result


def _as_list(report: _Report, key: str, value: t.Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    report.add(None, f'{key} must be a list, got {_show(value)}')
    return []


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def parse_description(data: t.Any, *, source: str | None = None, plugin: str | None = None,
                      option_keys: t.Iterable[str] = ()) -> PlatformDescription:
    """Validate and normalise a loaded platform description.

    :arg data: the description as loaded from YAML (a mapping).
    :arg source: names the file in error messages (every line starts with ``source: ``).
    :arg plugin: when given, the ``plugin`` key is required and must equal it.
    :arg option_keys: further top-level keys that are allowed (an inventory plugin's options,
        e.g. ``compose`` or ``cache``); they are not examined here.
    :raises DescriptionError: listing every problem found, one per line.
    :raises RuntimeError: when netaddr is not installed.
    """
    if netaddr is None:
        raise RuntimeError('the Python library netaddr is required to read a Flowstream platform '
                           f'description: {NETADDR_IMPORT_ERROR}')
    report = _Report()
    if not isinstance(data, Mapping):
        raise DescriptionError([f'a platform description must be a mapping, got {_show(data)}'],
                               source)

    extra_keys = tuple(k for k in option_keys if k not in DESCRIPTION_KEYS and k != 'plugin')
    allowed = ('plugin',) + DESCRIPTION_KEYS + extra_keys
    _Entity(report, None).check_keys(data, allowed)
    if plugin is not None and data.get('plugin') != plugin:
        if data.get('plugin') is None:
            report.add(None, f"plugin is required: 'plugin: {plugin}'")
        else:
            report.add(None, f"plugin must be '{plugin}', got {_show(data.get('plugin'))}")

    platform_name, network = _check_platform(report, data.get('platform'))

    raw_switches = _as_list(report, 'switches', data.get('switches'))
    if data.get('switches') is None:
        report.add(None, 'switches is required: list at least one OpenFlow switch')
    elif isinstance(data['switches'], (list, tuple)) and not raw_switches:
        report.add(None, 'switches must list at least one OpenFlow switch')
    switches = [s for s in (_check_switch(report, i, item) for i, item in enumerate(raw_switches))
                if s is not None]
    switch_names = [s['name'] for s in switches if s['name'] is not INVALID]
    if not raw_switches or len(switch_names) != len(raw_switches):
        switch_names = _PartialNames(switch_names)

    defaults = _check_defaults(report, data.get('module_host_defaults'))
    hosts = []
    for kind in ('module_hosts', 'spares'):
        for index, item in enumerate(_as_list(report, kind, data.get(kind))):
            checked = _check_module_host(report, kind, index, item, defaults, switch_names,
                                         network)
            if checked is not None:
                hosts.append((f'{_label(kind, index, item)}', checked))
    blackboxes = []
    for index, item in enumerate(_as_list(report, 'blackboxes', data.get('blackboxes'))):
        checked = _check_blackbox(report, index, item, switch_names)
        if checked is not None:
            blackboxes.append((_label('blackboxes', index, item), checked))

    labelled_switches = [(_label('switches', i, raw_switches[i]), s)
                         for i, s in enumerate(switches)]
    _check_unique_names(report, labelled_switches + hosts + blackboxes)
    _check_unique_addresses(report, labelled_switches + hosts)
    _check_ports(report, labelled_switches, hosts, blackboxes)

    if report.errors:
        raise DescriptionError(report.errors, source)

    def build_host(entry: dict[str, t.Any]) -> ModuleHost:
        return ModuleHost(
            name=entry['name'], management_address=str(entry['management_address']),
            switch=entry['switch'], trunk=entry['trunk'], host_bridge=entry['host_bridge'],
            port_type=entry['port_type'], leg_port_type=entry['leg_port_type'], capacity=entry['capacity'], kinds=entry['kinds'],
            power=entry['power'], spare=entry['spare'], libvirt_uri=entry['libvirt_uri'],
        )

    return PlatformDescription(
        name=platform_name,
        management_network=str(network),
        switches=tuple(
            Switch(name=s['name'], openflow_target=s['openflow_target'], bridge=s['bridge'],
                   openflow_versions=s['openflow_versions'], uplinks=s['uplinks'], ssl=s['ssl'],
                   management_address=(None if s['management_address'] is None
                                       else str(s['management_address'])))
            for _label_, s in labelled_switches),
        module_hosts=tuple(build_host(h) for _label_, h in hosts if not h['spare']),
        spares=tuple(build_host(h) for _label_, h in hosts if h['spare']),
        blackboxes=tuple(
            Blackbox(name=b['name'], switch=b['switch'], left=b['left'], right=b['right'],
                     health=b['health'], description=b['description'], pps=b['pps'])
            for _label_, b in blackboxes),
    )


def _check_unique_names(report: _Report, entities: list[tuple[str, dict[str, t.Any]]]) -> None:
    seen: dict[str, str] = {}
    for label, entry in entities:
        name = entry['name']
        if name is INVALID:
            continue
        if name in RESERVED_HOST_NAMES:
            report.add(label, f"name '{name}' is reserved (an inventory group of that name "
                              f"exists); choose another")
        elif name in seen:
            report.add(label, f"name '{name}' is already used by {seen[name]}: names are "
                              f"inventory hostnames and must be unique across switches, "
                              f"module hosts, spares and black boxes")
        else:
            seen[name] = label


def _check_unique_addresses(report: _Report,
                            entities: list[tuple[str, dict[str, t.Any]]]) -> None:
    seen: dict[t.Any, str] = {}
    for label, entry in entities:
        address = entry.get('management_address')
        if address is None or address is INVALID:
            continue
        if address in seen:
            report.add(label, f'management_address {address} is already used by {seen[address]}')
        else:
            seen[address] = label


def _check_ports(report: _Report, switches: list, hosts: list, blackboxes: list) -> None:
    """No switch port is used twice: uplinks, trunks and black-box ports, per switch."""
    used: dict[tuple[str, Port], str] = {}

    def claim(label: str, switch: t.Any, field: str, port: t.Any) -> None:
        if switch is INVALID or port is INVALID:
            return
        key = (switch, port)
        if key in used:
            report.add(label, f'{field} {_show(port)} on switch \'{switch}\' is already used by '
                              f'{used[key]}')
        else:
            used[key] = f'{label} ({field})'

    for label, switch in switches:
        if switch['name'] is INVALID or switch['uplinks'] is INVALID:
            continue
        for name, port in switch['uplinks'].items():
            claim(label, switch['name'], f'uplinks.{name}', port)
    for label, host in hosts:
        claim(label, host['switch'], 'trunk', host['trunk'])
    for label, box in blackboxes:
        claim(label, box['switch'], 'ports.left', box['left'])
        claim(label, box['switch'], 'ports.right', box['right'])
