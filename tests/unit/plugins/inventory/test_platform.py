# -*- coding: utf-8 -*-
# Copyright: flowstream.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The platform inventory plugin and the description model behind it.

Plugin tests parse real files written to tmp_path with Ansible's own InventoryManager (or the
plugin on a bare InventoryData where the raised error itself is under test); model tests call
``_description.parse_description`` directly.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.template import Templar

from ansible_collections.flowstream.platform.plugins.plugin_utils import _description as model

try:  # ansible-core 2.19+: a template written in a test must be trusted to be rendered
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - ansible-core < 2.19 renders every plain string
    def trust_as_template(value):
        return value


REPO = Path(__file__).resolve().parents[4]
LAB = REPO / 'inventory' / 'lab' / 'platform.flowstream.yml'
EXAMPLE = REPO / 'inventory' / 'example'
PLUGIN = 'flowstream.platform.platform'
GROUPS = {'flowstream_switches', 'flowstream_module_hosts', 'flowstream_spares',
          'flowstream_blackboxes', 'flowstream_failed'}
LAB_DATA = yaml.safe_load(LAB.read_text())


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def only_our_plugin(monkeypatch):
    """Parse with our plugin alone and fail on unparsed sources, whatever ansible.cfg says."""
    monkeypatch.setattr(C, 'INVENTORY_ENABLED', [PLUGIN])
    monkeypatch.setattr(C, 'INVENTORY_ANY_UNPARSED_IS_FAILED', True)
    monkeypatch.setattr(C, 'INVENTORY_UNPARSED_IS_FAILED', True)


def lab():
    return copy.deepcopy(LAB_DATA)


def write(tmp_path, data, name='platform.flowstream.yml'):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def manager(*sources):
    return InventoryManager(loader=DataLoader(), sources=[str(s) for s in sources])


def parse_direct(path, cache=True):
    """Run the plugin on a fresh InventoryData, letting its errors through unwrapped."""
    plugin = inventory_loader.get(PLUGIN)
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=cache)
    return plugin, inventory


def our_vars(host):
    """The variables the plugin set (InventoryData adds inventory_file and inventory_dir)."""
    return {k: v for k, v in host.vars.items() if k.startswith(('flowstream_', 'ansible_'))}


def members(inventory, group):
    """Hosts of a group, descendants included (as groups['...'] shows them to a play)."""
    return sorted(h.name for h in inventory.groups[group].get_hosts())


def assert_nothing_added(inventory):
    assert inventory.hosts == {}
    assert set(inventory.groups) == {'all', 'ungrouped'}


def error_lines(path, data):
    """Parse an invalid description with the plugin; return its message lines."""
    plugin = inventory_loader.get(PLUGIN)
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as info:
        plugin.parse(inventory, DataLoader(), str(path), cache=False)
    assert_nothing_added(inventory)
    message = info.value.message
    lines = message.splitlines()
    # One error per line, each naming the file.
    assert all(line.startswith(f'{path}: ') for line in lines), message
    return [line[len(f'{path}: '):] for line in lines]


# --------------------------------------------------------------------------------------------
# The lab and the example
# --------------------------------------------------------------------------------------------

def test_lab_groups_and_hosts():
    inventory = manager(LAB)
    assert GROUPS <= set(inventory.groups)
    assert members(inventory, 'flowstream_switches') == ['sw1']
    # A spare is a module host on standby: `ansible flowstream_module_hosts -m ping` reaches it.
    assert members(inventory, 'flowstream_module_hosts') == ['mh1', 'mh2', 'mh3', 'spare1']
    assert members(inventory, 'flowstream_spares') == ['spare1']
    # the lab's stand-in appliance (lab-up makes it; the guest chain goes through it)
    assert members(inventory, 'flowstream_blackboxes') == ['bb1']
    assert inventory.get_host('bb1').vars['flowstream_ports'] == {'left': 'fsl-bb1-l', 'right': 'fsl-bb1-r'}
    assert [h.name for h in inventory.get_hosts('flowstream_module_hosts:!flowstream_spares')] \
        == ['mh1', 'mh2', 'mh3']


def test_lab_module_host_vars():
    inventory = manager(LAB)
    assert our_vars(inventory.get_host('mh1')) == {
        'flowstream_platform': 'lab',
        'flowstream_role': 'module_host',
        'ansible_host': '198.18.0.11',
        'flowstream_management_address': '198.18.0.11',
        'flowstream_management_network': '198.18.0.0/24',
        'flowstream_switch': 'sw1',
        'flowstream_trunk': 'fsl-mh1-tr',
        'flowstream_host_bridge': 'fs-host',
        'flowstream_port_type': 'afxdp-nonpmd',
        'flowstream_leg_port_type': 'system',
        'flowstream_capacity': {'cpu': 3, 'memory': 1024},
        'flowstream_kinds': ['vm', 'process', 'kernel', 'click'],
        'flowstream_power': {'driver': 'lab', 'idle_watts': 90.0},
        'flowstream_spare': False,
        'flowstream_libvirt_uri': 'qemu+tcp://198.18.0.11/system',
    }
    spare = our_vars(inventory.get_host('spare1'))
    assert spare['flowstream_role'] == 'spare'
    assert spare['flowstream_spare'] is True
    assert spare['ansible_host'] == '198.18.0.21'
    assert spare['flowstream_trunk'] == 'fsl-spare1-tr'
    assert spare['flowstream_port_type'] == 'afxdp-nonpmd'


def test_lab_switch_vars():
    inventory = manager(LAB)
    assert our_vars(inventory.get_host('sw1')) == {
        'flowstream_platform': 'lab',
        'flowstream_role': 'switch',
        'ansible_connection': 'local',
        'flowstream_openflow_target': 'unix:/var/run/openvswitch/fsl-sw.mgmt',
        'flowstream_bridge': 'fsl-sw',
        'flowstream_openflow_versions': ['OpenFlow13', 'OpenFlow14', 'OpenFlow15'],
        'flowstream_uplinks': {'source': 'fsl-up-src', 'sink': 'fsl-up-sink'},
    }


def test_plugin_sets_no_interpreter_or_credentials():
    inventory = manager(LAB, EXAMPLE / 'platform.flowstream.yml')
    for host in inventory.hosts.values():
        assert 'ansible_python_interpreter' not in host.vars
        assert 'ansible_user' not in host.vars
        assert not any('password' in key for key in host.vars)


def test_example_inventory():
    inventory = manager(EXAMPLE)
    assert members(inventory, 'flowstream_switches') == ['tor1']
    assert members(inventory, 'flowstream_module_hosts') == [
        'mh01', 'mh02', 'mh03', 'mh04', 'mh05', 'mh06', 'spare01', 'spare02']
    assert members(inventory, 'flowstream_spares') == ['spare01', 'spare02']
    assert members(inventory, 'flowstream_blackboxes') == ['ids1', 'scrubber1']

    tor1 = our_vars(inventory.get_host('tor1'))
    assert tor1['flowstream_openflow_target'] == 'ssl:10.20.0.2:6653'
    assert tor1['flowstream_ssl'] == {
        'private_key': '/etc/flowstream/pki/controller-privkey.pem',
        'certificate': '/etc/flowstream/pki/controller-cert.pem',
        'ca_cert': '/etc/flowstream/pki/switchca-cert.pem',
    }
    assert tor1['flowstream_management_address'] == '10.20.0.2'
    # power is merged key-wise with module_host_defaults (username), capacity replaced per key
    mh01 = our_vars(inventory.get_host('mh01'))
    assert mh01['flowstream_power'] == {'driver': 'ipmi', 'address': '10.20.1.11',
                                        'interface': 'lanplus', 'username': 'flowstream'}
    assert mh01['flowstream_capacity'] == {'cpu': 16, 'memory': 65536, 'pps': 3000000}
    mh05 = our_vars(inventory.get_host('mh05'))
    assert mh05['flowstream_power']['driver'] == 'redfish'
    assert mh05['flowstream_capacity'] == {'cpu': 32, 'memory': 196608, 'pps': 6000000}
    assert mh05['flowstream_trunk'] == 5
    ids1 = our_vars(inventory.get_host('ids1'))
    assert ids1 == {
        'flowstream_platform': 'dc1-edge',
        'flowstream_role': 'blackbox',
        'ansible_connection': 'local',
        'flowstream_switch': 'tor1',
        'flowstream_ports': {'left': 41, 'right': 42},
        'flowstream_health': {'type': 'port_status'},
        'flowstream_description': 'Vendor IDS appliance, inline mode, 10G',
        'flowstream_capacity': {'pps': 8000000},
    }


def test_example_group_vars_set_interpreter_for_every_host():
    """LAB.md: discovery is broken here, so every host of the example names its interpreter."""
    from ansible.vars.manager import VariableManager
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(EXAMPLE)])
    variables = VariableManager(loader=loader, inventory=inventory)
    for host in inventory.get_hosts():
        hostvars = variables.get_vars(host=host)
        assert 'ansible_python_interpreter' in hostvars, host.name
        assert 'ansible_user' in hostvars, host.name
    switch_vars = variables.get_vars(host=inventory.get_host('tor1'))
    assert switch_vars['ansible_python_interpreter'] == '{{ ansible_playbook_python }}'
    host_vars = variables.get_vars(host=inventory.get_host('mh01'))
    assert host_vars['ansible_python_interpreter'] == '/usr/bin/python3'


# --------------------------------------------------------------------------------------------
# verify_file, plugin name, file-level errors
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name, accepted', [
    ('platform.flowstream.yml', True),
    ('dc1.flowstream.yaml', True),
    ('platform.yml', False),
    ('flowstream.yml', False),
    ('platform.flowstream.yml.orig', False),
    ('platform.flowstream.json', False),
])
def test_verify_file(tmp_path, name, accepted):
    path = write(tmp_path, LAB_DATA, name)
    assert inventory_loader.get(PLUGIN).verify_file(str(path)) is accepted


def test_verify_file_rejects_missing_file(tmp_path):
    assert inventory_loader.get(PLUGIN).verify_file(str(tmp_path / 'x.flowstream.yml')) is False


def test_short_plugin_name_is_refused(tmp_path):
    data = lab()
    data['plugin'] = 'platform'
    path = write(tmp_path, data)
    assert error_lines(path, data) == ["plugin must be 'flowstream.platform.platform', got "
                                       "'platform'"]


def test_missing_plugin_key(tmp_path):
    data = lab()
    del data['plugin']
    path = write(tmp_path, data)
    assert error_lines(path, data) == ["plugin is required: 'plugin: flowstream.platform.platform'"]


def test_a_yaml_syntax_error_names_line_and_column(tmp_path):
    """A description that is not YAML at all: the file, the line and column where the parser
    stopped, what it expected, and where the construct it was in began; nothing is added."""
    text = yaml.safe_dump(lab(), sort_keys=False).replace("name: lab\n", "name: [lab\n", 1)
    path = write(tmp_path, text)
    broken = next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith("name: [lab"))
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as info:
        inventory_loader.get(PLUGIN).parse(inventory, DataLoader(), str(path), cache=False)
    assert_nothing_added(inventory)
    message = info.value.message
    assert message.startswith(f"{path}:{broken + 1}:") and "not valid YAML - expected ',' or ']'" in message, message
    assert f"while parsing a flow sequence that starts at line {broken}, column" in message, message


def test_a_yaml_syntax_error_in_the_variable_files_beside_it_names_file_line_and_column(tmp_path):
    """group_vars/ and host_vars/ beside the description (the chains, the probe) are checked
    too: Ansible's own loader of those files names neither the file nor the line. Every broken
    file is named; other files there (JSON, hidden, editor backups) are Ansible's or nobody's."""
    path = write(tmp_path, lab())
    (tmp_path / 'group_vars' / 'all').mkdir(parents=True)
    (tmp_path / 'host_vars').mkdir()
    chains = tmp_path / 'group_vars' / 'all' / 'chains.yml'
    chains.write_text('flowstream_chains:\n  - name: web\n    steps: [\n      - name: fw\n')
    (tmp_path / 'group_vars' / 'all' / 'lab.yml').write_text('ansible_user: root\n')
    (tmp_path / 'host_vars' / 'mh1').write_text('a: {b: 1\n')
    for ignored in ('.hidden.yml', 'notes.json', 'chains.yml~'):
        (tmp_path / 'group_vars' / ignored).write_text('{[\n')
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as info:
        inventory_loader.get(PLUGIN).parse(inventory, DataLoader(), str(path), cache=False)
    assert_nothing_added(inventory)
    lines = info.value.message.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{chains}:4:") and "not valid YAML" in lines[0], lines
    assert "expected the node content, but found '-'" in lines[0], lines
    assert lines[1].startswith(f"{tmp_path / 'host_vars' / 'mh1'}:2:") and "not valid YAML" in lines[1], lines
    # mended, the description parses
    chains.write_text('flowstream_chains:\n  - name: web\n    steps: [{name: fw}]\n')
    (tmp_path / 'host_vars' / 'mh1').write_text('a: {b: 1}\n')
    assert 'mh1' in parse_direct(path, cache=False)[1].hosts


def test_inventory_manager_fails_on_bad_description(tmp_path):
    data = lab()
    data['module_hosts'][0]['capacity'] = {'cpu': 1, 'memory': '2G'}
    path = write(tmp_path, data)
    with pytest.raises(AnsibleError, match='Completely failed to parse inventory source'):
        manager(path)


# --------------------------------------------------------------------------------------------
# Bad descriptions: every error names the file, the entity and the field; nothing is added
# --------------------------------------------------------------------------------------------

def _set(data, dotted, value):
    """Set data[a][b]...[z] = value, making the mappings (and a first list item) on the way."""
    *parents, last = dotted
    target = data
    for key, following in zip(parents, dotted[1:]):
        if isinstance(target, list) and key == len(target):
            target.append({})
        elif isinstance(target, dict) and not isinstance(target.get(key), (dict, list)):
            target[key] = [] if isinstance(following, int) else {}
        target = target[key]
    if isinstance(target, list) and last == len(target):
        target.append(value)
    else:
        target[last] = value


def _unknown_key(data):
    data['module_hosts'][1]['trnk'] = data['module_hosts'][1].pop('trunk')


def _unknown_top_level_key(data):
    data['modul_hosts'] = data.pop('module_hosts')


def _duplicate_name(data):
    data['module_hosts'][1]['name'] = 'mh1'


def _duplicate_name_across_kinds(data):
    data['spares'][0]['name'] = 'sw1'


def _missing_trunk(data):
    del data['module_hosts'][2]['trunk']


def _address_outside(data):
    data['module_hosts'][0]['management_address'] = '198.18.1.11'


def _broadcast_address(data):
    data['spares'][0]['management_address'] = '198.18.0.255'


def _address_with_prefix(data):
    data['module_hosts'][0]['management_address'] = '198.18.0.11/24'


def _duplicate_address(data):
    data['module_hosts'][1]['management_address'] = '198.18.0.11'


def _capacity_string(data):
    data['module_hosts'][1]['capacity'] = {'memory': '2G'}


def _capacity_bool(data):
    data['module_hosts'][0]['capacity'] = {'cpu': True}


def _capacity_inherited(data):
    data['module_host_defaults']['capacity'] = {'cpu': 'four', 'memory': 1024}


def _no_capacity(data):
    del data['module_host_defaults']['capacity']


def _target(value):
    def mutate(data):
        data['switches'][0]['openflow_target'] = value
    return mutate


def _ssl_without_certs(data):
    data['switches'][0]['openflow_target'] = 'ssl:198.18.0.2:6653'


def _ssl_incomplete(data):
    data['switches'][0]['openflow_target'] = 'ssl:198.18.0.2:6653'
    data['switches'][0]['ssl'] = {'private_key': '/etc/pki/key.pem',
                                  'certificate': 'cert.pem'}


def _ssl_with_unix(data):
    data['switches'][0]['ssl'] = {'private_key': '/k', 'certificate': '/c', 'ca_cert': '/a'}


def _old_openflow(data):
    data['switches'][0]['openflow_versions'] = ['OpenFlow10', 'OpenFlow13']


def _password(data):
    data['module_hosts'][1]['power'] = {'driver': 'ipmi', 'address': '10.0.0.1',
                                        'password': 'hunter2'}


def _password_in_defaults(data):
    data['module_host_defaults']['power'] = {'driver': 'lab', 'password': 'hunter2'}


def _unknown_switch(data):
    data['module_hosts'][0]['switch'] = 'sw2'


def _switch_ambiguous(data):
    extra = copy.deepcopy(data['switches'][0])
    extra.update(name='sw2', bridge='fsl-sw2',
                 openflow_target='unix:/var/run/openvswitch/fsl-sw2.mgmt', uplinks={})
    data['switches'].append(extra)
    del data['module_host_defaults']['switch']


def _duplicate_trunk(data):
    data['module_hosts'][1]['trunk'] = 'fsl-mh1-tr'


def _trunk_on_uplink(data):
    data['spares'][0]['trunk'] = 'fsl-up-sink'


def _blackbox_on_trunk(data):
    data['blackboxes'] = [{'name': 'ids1', 'ports': {'left': 'fsl-mh2-tr', 'right': 'fsl-ids-r'}}]


def _reserved_port(data):
    data['module_hosts'][0]['trunk'] = 'LOCAL'


def _power_option_of_other_driver(data):
    data['module_hosts'][0]['power'] = {'driver': 'wol', 'mac': '52:54:00:12:34:56',
                                        'address': '10.0.0.1'}


def _bad_watts(data):
    data['module_hosts'][0]['power'] = {'driver': 'lab', 'idle_watts': -5}


def _bad_mac(data):
    data['module_hosts'][0]['power'] = {'driver': 'wol', 'mac': '52:54:00:12:34'}


def _bad_kind(data):
    data['module_hosts'][0]['kinds'] = ['vm', 'proces']


def _bad_port_type(data):
    data['module_hosts'][1]['port_type'] = 'afxdp-nopmd'


def _port_type_inherited(data):
    data['module_host_defaults']['port_type'] = 'afxdp'


def _per_host_key_in_defaults(data):
    data['module_host_defaults']['trunk'] = 7


def _network_host_bits(data):
    data['platform']['management_network'] = '198.18.0.1/24'


def _no_switches(data):
    data['switches'] = []


BAD = [
    ('unknown key', _unknown_key, [
        "module_hosts[1] 'mh2': unknown key 'trnk', did you mean 'trunk'?",
        "module_hosts[1] 'mh2': trunk is required: the switch port this host's trunk is plugged "
        "into (a port name or an OpenFlow port number)",
    ]),
    ('unknown top-level key', _unknown_top_level_key, [
        "unknown key 'modul_hosts', did you mean 'module_hosts'?",
    ]),
    ('duplicate name', _duplicate_name, [
        "module_hosts[1] 'mh1': name 'mh1' is already used by module_hosts[0] 'mh1': names are "
        "inventory hostnames and must be unique across switches, module hosts, spares and black "
        "boxes",
    ]),
    ('duplicate name across kinds', _duplicate_name_across_kinds, [
        "spares[0] 'sw1': name 'sw1' is already used by switches[0] 'sw1': names are inventory "
        "hostnames and must be unique across switches, module hosts, spares and black boxes",
    ]),
    ('missing trunk', _missing_trunk, [
        "module_hosts[2] 'mh3': trunk is required: the switch port this host's trunk is plugged "
        "into (a port name or an OpenFlow port number)",
    ]),
    ('address outside network', _address_outside, [
        "module_hosts[0] 'mh1': management_address 198.18.1.11 is outside "
        "platform.management_network 198.18.0.0/24",
    ]),
    ('broadcast address', _broadcast_address, [
        "spares[0] 'spare1': management_address 198.18.0.255 is the broadcast address of "
        "198.18.0.0/24, not a host address",
    ]),
    ('address with prefix', _address_with_prefix, [
        "module_hosts[0] 'mh1': management_address must be a plain IP address without a prefix "
        "length, got '198.18.0.11/24'",
    ]),
    ('duplicate address', _duplicate_address, [
        "module_hosts[1] 'mh2': management_address 198.18.0.11 is already used by "
        "module_hosts[0] 'mh1'",
    ]),
    ('capacity not a number', _capacity_string, [
        "module_hosts[1] 'mh2': capacity.memory must be a number of MiB, got '2G'",
    ]),
    ('capacity bool', _capacity_bool, [
        "module_hosts[0] 'mh1': capacity.cpu must be a number of CPU cores, got true",
    ]),
    ('capacity inherited, reported once', _capacity_inherited, [
        "module_host_defaults: capacity.cpu must be a number of CPU cores, got 'four'",
    ]),
    ('no capacity', _no_capacity, [
        f"{label}: capacity is required (cpu cores and memory MiB; set it here or in "
        f"module_host_defaults)"
        for label in ("module_hosts[0] 'mh1'", "module_hosts[1] 'mh2'", "module_hosts[2] 'mh3'",
                      "spares[0] 'spare1'")
    ]),
    ('target without port', _target('tcp:198.18.0.2'), [
        "switches[0] 'sw1': openflow_target 'tcp:198.18.0.2' must be tcp:HOST:PORT, with the "
        "port (OpenFlow uses 6653)",
    ]),
    ('target port 0', _target('tcp:198.18.0.2:0'), [
        "switches[0] 'sw1': openflow_target 'tcp:198.18.0.2:0': the port must be a number from "
        "1 to 65535, got '0'",
    ]),
    ('target port too high', _target('ssl:switch.example.net:65536'), [
        "switches[0] 'sw1': openflow_target 'ssl:switch.example.net:65536': the port must be a "
        "number from 1 to 65535, got '65536'",
    ]),
    ('target scheme', _target('udp:198.18.0.2:6653'), [
        "switches[0] 'sw1': openflow_target 'udp:198.18.0.2:6653' must be unix:/PATH, "
        "tcp:HOST:PORT or ssl:HOST:PORT (the controller connects to the switch; passive "
        "ptcp:/pssl: targets are not supported)",
    ]),
    ('target relative socket', _target('unix:fsl-sw.mgmt'), [
        "switches[0] 'sw1': openflow_target 'unix:fsl-sw.mgmt' must name an absolute socket "
        "path (unix:/var/run/openvswitch/BRIDGE.mgmt)",
    ]),
    ('target IPv6 without brackets', _target('tcp:2001:db8::1:6653'), [
        "switches[0] 'sw1': openflow_target 'tcp:2001:db8::1:6653': write an IPv6 address in "
        "brackets, e.g. tcp:[2001:db8::1]:6653",
    ]),
    ('target bad host', _target('tcp:198.18.0.300:6653'), [
        "switches[0] 'sw1': openflow_target 'tcp:198.18.0.300:6653': '198.18.0.300' is not an "
        "IP address or a DNS name",
    ]),
    ('ssl without certs', _ssl_without_certs, [
        "switches[0] 'sw1': ssl is required for an ssl: openflow_target: a mapping with "
        "private_key, certificate and ca_cert (paths on the controller)",
    ]),
    ('ssl incomplete', _ssl_incomplete, [
        "switches[0] 'sw1': ssl.certificate must be an absolute path on the controller, got "
        "'cert.pem'",
        "switches[0] 'sw1': ssl.ca_cert is required (a path on the controller)",
    ]),
    ('ssl with unix target', _ssl_with_unix, [
        "switches[0] 'sw1': ssl is only used with an ssl: openflow_target, this switch connects "
        "over unix: (remove ssl or use ssl:HOST:PORT)",
    ]),
    ('openflow before 1.4', _old_openflow, [
        "switches[0] 'sw1': openflow_versions must include OpenFlow14 or OpenFlow15: flow "
        "tables are applied in OpenFlow 1.4 bundles (all-or-nothing), which OpenFlow10, "
        "OpenFlow13 cannot carry",
    ]),
    ('password in power', _password, [
        "module_hosts[1] 'mh2': power.password must not be in the platform description: put "
        "the password in the vault variable flowstream_power_password for host 'mh2', e.g. in "
        "host_vars/mh2.yml (encrypted with ansible-vault)",
    ]),
    ('password in defaults', _password_in_defaults, [
        "module_host_defaults: power.password must not be in the platform description: put the "
        "password in the vault variable flowstream_power_password for the module hosts in a "
        "group variables file, e.g. group_vars/flowstream_module_hosts.yml (encrypted with "
        "ansible-vault)",
    ]),
    ('unknown switch', _unknown_switch, [
        "module_hosts[0] 'mh1': switch 'sw2' is not a switch of this platform, did you mean "
        "'sw1'? (known: sw1)",
    ]),
    ('switch needed with two switches', _switch_ambiguous, [
        f"{label}: switch is required when the platform has more than one switch (known: sw1, "
        f"sw2)"
        for label in ("module_hosts[0] 'mh1'", "module_hosts[1] 'mh2'", "module_hosts[2] 'mh3'",
                      "spares[0] 'spare1'")
    ]),
    ('duplicate trunk', _duplicate_trunk, [
        "module_hosts[1] 'mh2': trunk 'fsl-mh1-tr' on switch 'sw1' is already used by "
        "module_hosts[0] 'mh1' (trunk)",
    ]),
    ('trunk on an uplink', _trunk_on_uplink, [
        "spares[0] 'spare1': trunk 'fsl-up-sink' on switch 'sw1' is already used by "
        "switches[0] 'sw1' (uplinks.sink)",
    ]),
    ('black box on a trunk', _blackbox_on_trunk, [
        "blackboxes[0] 'ids1': ports.left 'fsl-mh2-tr' on switch 'sw1' is already used by "
        "module_hosts[1] 'mh2' (trunk)",
    ]),
    ('reserved port', _reserved_port, [
        "module_hosts[0] 'mh1': trunk 'LOCAL' is a reserved OpenFlow port, not a switch port",
    ]),
    ('power option of another driver', _power_option_of_other_driver, [
        "module_hosts[0] 'mh1': power.address is not an option of power driver 'wol' (its "
        "options: mac, broadcast, idle_watts)",
    ]),
    ('bad idle watts', _bad_watts, [
        "module_hosts[0] 'mh1': power.idle_watts must be what the host draws idle, in watts (a number above 0, "
        "e.g. 120), got -5",
    ]),
    ('bad mac', _bad_mac, [
        "module_hosts[0] 'mh1': power.mac must be a MAC address such as 52:54:00:12:34:56, got "
        "'52:54:00:12:34'",
    ]),
    ('bad kind', _bad_kind, [
        "module_hosts[0] 'mh1': kinds[1] must be one of vm, process, kernel, click, got "
        "'proces', did you mean 'process'?",
    ]),
    ('bad port type', _bad_port_type, [
        "module_hosts[1] 'mh2': port_type must be one of system, afxdp-nonpmd, got "
        "'afxdp-nopmd', did you mean 'afxdp-nonpmd'?",
    ]),
    ('port type inherited, reported once', _port_type_inherited, [
        "module_host_defaults: port_type must be one of system, afxdp-nonpmd, got 'afxdp'",
    ]),
    ('per-host key in defaults', _per_host_key_in_defaults, [
        'module_host_defaults: trunk cannot be set in module_host_defaults: every module host '
        'has its own',
    ]),
    ('network with host bits', _network_host_bits, [
        "platform: management_network '198.18.0.1/24' has host bits set, did you mean "
        "'198.18.0.0/24'?",
    ]),
    ('no switches', _no_switches, [
        'switches must list at least one OpenFlow switch',
    ]),
]


@pytest.mark.parametrize('mutate, expected', [pytest.param(m, e, id=i) for i, m, e in BAD])
def test_bad_description(tmp_path, mutate, expected):
    data = lab()
    mutate(data)
    path = write(tmp_path, data)
    assert error_lines(path, data) == expected


def test_all_errors_reported_at_once(tmp_path):
    data = lab()
    for mutate in (_capacity_string, _ssl_without_certs, _bad_kind, _network_host_bits):
        mutate(data)
    data['modul_hosts'] = []
    path = write(tmp_path, data)
    lines = error_lines(path, data)
    assert len(lines) == 5, lines
    assert any('modul_hosts' in line for line in lines)
    assert any('capacity.memory' in line for line in lines)
    assert any('ssl is required' in line for line in lines)
    assert any('kinds[1]' in line for line in lines)
    assert any('host bits' in line for line in lines)


def test_port_type_hostvar(tmp_path):
    data = lab()
    data['module_host_defaults']['port_type'] = 'afxdp-nonpmd'
    data['module_hosts'][1]['port_type'] = 'system'
    path = write(tmp_path, data)
    inventory = manager(path)
    assert {name: inventory.get_host(name).vars['flowstream_port_type']
            for name in members(inventory, 'flowstream_module_hosts')} == {
        'mh1': 'afxdp-nonpmd', 'mh2': 'system', 'mh3': 'afxdp-nonpmd', 'spare1': 'afxdp-nonpmd'}
    assert 'flowstream_port_type' not in inventory.get_host('sw1').vars


def test_ansible_option_errors_name_the_file(tmp_path):
    """A description that is valid but a bad constructed option: Ansible's message, our file."""
    data = lab()
    data['keyed_groups'] = 3
    path = write(tmp_path, data)
    inventory = InventoryData()
    with pytest.raises(AnsibleParserError) as info:
        inventory_loader.get(PLUGIN).parse(inventory, DataLoader(), str(path))
    assert info.value.message.startswith(f'{path}: ')
    assert 'keyed_groups' in info.value.message
    assert_nothing_added(inventory)


def test_wrong_type_for_a_section_gets_our_message(tmp_path):
    """Ansible's option checks see `switches` is no list first; the operator sees ours."""
    data = lab()
    data['switches'] = data['switches'][0]
    path = write(tmp_path, data)
    lines = error_lines(path, data)
    assert lines[0] == 'switches must be a list, got a mapping'


# --------------------------------------------------------------------------------------------
# Constructed, caching, unsafe
# --------------------------------------------------------------------------------------------

def test_compose_groups_and_keyed_groups(tmp_path):
    data = lab()
    data['compose'] = {'flowstream_memory_gib': 'flowstream_capacity.memory // 1024'}
    data['groups'] = {'vm_hosts': "'vm' in (flowstream_kinds | default([]))"}
    data['keyed_groups'] = [{'key': 'flowstream_switch', 'prefix': 'on'},
                            {'key': 'flowstream_role', 'prefix': 'role'}]
    path = write(tmp_path, data)
    inventory = manager(path)
    assert members(inventory, 'on_sw1') == ['bb1', 'mh1', 'mh2', 'mh3', 'spare1']
    assert members(inventory, 'role_blackbox') == ['bb1']
    assert members(inventory, 'role_switch') == ['sw1']
    assert members(inventory, 'role_spare') == ['spare1']
    assert members(inventory, 'vm_hosts') == ['mh1', 'mh2', 'mh3', 'spare1']
    assert inventory.get_host('mh2').vars['flowstream_memory_gib'] == 1
    # without strict, a host the expression does not fit (the switch has no capacity) is skipped
    assert 'flowstream_memory_gib' not in inventory.get_host('sw1').vars


def test_strict_constructed_error_fails(tmp_path):
    data = lab()
    data['strict'] = True
    data['compose'] = {'flowstream_memory_gib': 'flowstream_capacity.memory // 1024'}
    path = write(tmp_path, data)
    with pytest.raises(AnsibleError):
        parse_direct(path)


def _read_cache_file(path):
    """The entry in a jsonfile cache file (ansible-core 2.19 wraps it in a JSON __payload__)."""
    raw = json.loads(path.read_text())
    return json.loads(raw['__payload__']) if '__payload__' in raw else raw


def _write_cache_file(path, entry):
    raw = json.loads(path.read_text())
    payload = {'__payload__': json.dumps(entry)} if '__payload__' in raw else entry
    path.write_text(json.dumps(payload))


def _cache_options(tmp_path):
    return {'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile',
            'cache_connection': str(tmp_path / 'cache'), 'cache_timeout': 3600}


def test_cache_round_trip(tmp_path, monkeypatch):
    data = dict(lab(), **_cache_options(tmp_path))
    path = write(tmp_path, data)
    plugin, inventory = parse_direct(path)
    plugin.update_cache_if_changed()
    (cache_file,) = (tmp_path / 'cache').iterdir()
    entry = _read_cache_file(cache_file)
    assert entry['description'] == model.parse_description(LAB_DATA).as_dict()
    expected = {name: our_vars(host) for name, host in inventory.hosts.items()}

    # A second run is served from the cache: it does not validate the file again.
    calls = []
    original = type(plugin)._validate

    def counting_validate(self, config, source):
        calls.append(source)
        return original(self, config, source)

    monkeypatch.setattr(type(plugin), '_validate', counting_validate)
    plugin, inventory = parse_direct(path)
    assert calls == []
    assert {name: our_vars(host) for name, host in inventory.hosts.items()} == expected

    # --flush-cache (cache=False) validates again and refreshes the entry.
    parse_direct(path, cache=False)
    assert calls == [str(path)]

    # An edited description is never served from the stale entry.
    data['module_hosts'][0]['capacity'] = {'cpu': 2, 'memory': 4096}
    write(tmp_path, data)
    plugin, inventory = parse_direct(path)
    assert calls == [str(path)] * 2
    assert inventory.get_host('mh1').vars['flowstream_capacity'] == {'cpu': 2, 'memory': 4096}


def test_corrupt_cache_entry_is_ignored(tmp_path):
    data = dict(lab(), **_cache_options(tmp_path))
    path = write(tmp_path, data)
    plugin, _inventory = parse_direct(path)
    plugin.update_cache_if_changed()
    (cache_file,) = (tmp_path / 'cache').iterdir()
    entry = _read_cache_file(cache_file)
    entry['description']['module_hosts'][0]['capacity'] = {'cpu': 'lots'}
    _write_cache_file(cache_file, entry)
    _plugin, inventory = parse_direct(path)
    assert inventory.get_host('mh1').vars['flowstream_capacity'] == {'cpu': 3, 'memory': 1024}


def test_values_are_never_templated(tmp_path):
    data = lab()
    data['blackboxes'] = [{'name': 'ids1', 'description': '{{ 6 * 7 }}',
                           'ports': {'left': 'fsl-ids-l', 'right': 'fsl-ids-r'}}]
    path = write(tmp_path, data)
    inventory = manager(path)
    host = inventory.get_host('ids1')
    templar = Templar(loader=DataLoader(), variables=host.vars)
    assert templar.template(trust_as_template('{{ flowstream_description }}')) == '{{ 6 * 7 }}'
    # ...whereas a trusted value would have been rendered: the test can fail.
    templar = Templar(loader=DataLoader(),
                      variables={'v': trust_as_template('{{ 6 * 7 }}')})
    assert templar.template(trust_as_template('{{ v }}')) in (42, '42')


# --------------------------------------------------------------------------------------------
# The model, directly
# --------------------------------------------------------------------------------------------

def test_model_of_the_lab():
    platform = model.parse_description(LAB_DATA, plugin=PLUGIN)
    assert platform.name == 'lab'
    assert platform.management_network == '198.18.0.0/24'
    assert [h.name for h in platform.all_module_hosts] == ['mh1', 'mh2', 'mh3', 'spare1']
    assert platform.switch('sw1').uplinks == {'source': 'fsl-up-src', 'sink': 'fsl-up-sink'}
    assert platform.module_hosts[0].capacity == model.Capacity(cpu=3, memory=1024)
    assert platform.spares[0].spare and platform.spares[0].role == 'spare'


def test_as_dict_is_a_fixed_point():
    platform = model.parse_description(LAB_DATA)
    again = model.parse_description(platform.as_dict())
    assert again == platform
    assert again.as_dict() == platform.as_dict()


def test_defaults_filled_and_merged():
    data = {
        'platform': {'name': 'p', 'management_network': '10.0.0.0/24'},
        'switches': [{'name': 's', 'bridge': 'br0', 'openflow_target': 'tcp:10.0.0.2:6653'}],
        'module_host_defaults': {'capacity': {'cpu': 8, 'memory': 16384, 'pps': 1e6},
                                 'power': {'driver': 'ipmi', 'username': 'admin'}},
        'module_hosts': [
            {'name': 'h1', 'management_address': '10.0.0.11', 'trunk': '7',
             'capacity': {'memory': 32768}, 'power': {'address': 'bmc-h1.example.net'}},
        ],
    }
    platform = model.parse_description(data)
    host = platform.module_hosts[0]
    assert host.switch == 's'                      # the only switch
    assert host.trunk == 7                         # digit strings are port numbers
    assert host.host_bridge == 'fs-host'
    assert host.port_type == 'system'
    assert host.kinds == ('process', 'kernel')
    assert host.capacity == model.Capacity(cpu=8, memory=32768, pps=1e6)
    assert host.power == {'driver': 'ipmi', 'username': 'admin', 'address': 'bmc-h1.example.net'}
    assert platform.switches[0].openflow_versions == ('OpenFlow13', 'OpenFlow14', 'OpenFlow15')
    assert platform.switches[0].uplinks == {}
    assert platform.spares == () and platform.blackboxes == ()


def test_port_type_from_defaults_and_per_host():
    data = copy.deepcopy(LAB_DATA)
    data['module_host_defaults']['port_type'] = 'afxdp-nonpmd'
    platform = model.parse_description(data)
    assert [h.port_type for h in platform.all_module_hosts] == ['afxdp-nonpmd'] * 4
    data['module_hosts'][2]['port_type'] = 'system'
    platform = model.parse_description(data)
    assert [(h.name, h.port_type) for h in platform.all_module_hosts] == [
        ('mh1', 'afxdp-nonpmd'), ('mh2', 'afxdp-nonpmd'), ('mh3', 'system'),
        ('spare1', 'afxdp-nonpmd')]
    assert platform.as_dict()['module_hosts'][0]['port_type'] == 'afxdp-nonpmd'
    assert platform.as_dict()['module_hosts'][2]['port_type'] == 'system'
    assert model.parse_description(platform.as_dict()) == platform


def test_port_type_error_names_the_host_and_the_choices():
    data = copy.deepcopy(LAB_DATA)
    data['spares'][0]['port_type'] = ['system']
    with pytest.raises(model.DescriptionError) as info:
        model.parse_description(data)
    assert info.value.errors == (
        "spares[0] 'spare1': port_type must be one of system, afxdp-nonpmd, got a list",
    )


def test_normalisation():
    data = copy.deepcopy(LAB_DATA)
    data['platform']['management_network'] = '2001:DB8:0:0::/64'
    for index, host in enumerate(data['module_hosts'] + data['spares']):
        host['management_address'] = f'2001:DB8::{index + 1:X}'
    data['switches'][0]['openflow_versions'] = ['OpenFlow15', 'OpenFlow13']
    data['module_hosts'][0]['power'] = {'driver': 'wol', 'mac': '52-54-00-AB-CD-EF'}
    platform = model.parse_description(data)
    assert platform.management_network == '2001:db8::/64'
    assert platform.module_hosts[0].management_address == '2001:db8::1'
    # idle_watts comes from module_host_defaults (every driver takes it)
    assert platform.module_hosts[0].power == {'driver': 'wol', 'mac': '52:54:00:ab:cd:ef', 'idle_watts': 90.0}
    assert platform.switches[0].openflow_versions == ('OpenFlow13', 'OpenFlow15')


def test_description_error_lists_every_line():
    data = copy.deepcopy(LAB_DATA)
    data['module_hosts'][0]['capacity'] = {'cpu': float('nan'), 'memory': -1}
    with pytest.raises(model.DescriptionError) as info:
        model.parse_description(data, source='x.flowstream.yml')
    assert info.value.errors == (
        "module_hosts[0] 'mh1': capacity.cpu must be a number of CPU cores, got nan",
        "module_hosts[0] 'mh1': capacity.memory must be a number of MiB greater than 0, got -1",
    )
    assert str(info.value) == '\n'.join('x.flowstream.yml: ' + e for e in info.value.errors)


def _assert_plain(value, where='description'):
    # Exact types on purpose: a tagged str/int subclass from the loader must not pass.
    # pylint: disable=unidiomatic-typecheck
    if isinstance(value, dict):
        assert type(value) is dict, where
        for key, item in value.items():
            assert type(key) is str, where
            _assert_plain(item, f'{where}.{key}')
    elif isinstance(value, list):
        assert type(value) is list, where
        for index, item in enumerate(value):
            _assert_plain(item, f'{where}[{index}]')
    else:
        assert type(value) in (str, int, float, bool), (where, type(value))


def test_model_is_plain_data_whatever_the_loader_hands_over():
    """Ansible's loader tags values (origin, trust); the model must carry none of that."""
    try:
        data = DataLoader().load_from_file(str(LAB), trusted_as_template=True)
    except TypeError:  # pragma: no cover - ansible-core < 2.19 has no data tagging
        data = DataLoader().load_from_file(str(LAB))
    data['module_hosts'][0]['power'] = {'driver': 'ipmi', 'address': '10.0.0.1', 'port': 623}
    data['blackboxes'] = [{'name': 'ids1', 'ports': {'left': 7, 'right': 8},
                           'capacity': {'pps': 1.5e6}}]
    platform = model.parse_description(data)
    _assert_plain(platform.as_dict())


def test_not_a_mapping():
    with pytest.raises(model.DescriptionError, match='must be a mapping, got a list'):
        model.parse_description([])


# Anything YAML can produce, in any field: the validator either accepts it or reports it, and
# never fails with anything but DescriptionError.
# Keys of the schema, so that generated mappings reach past the unknown-key checks.
_KEYS = sorted(set(
    model.DESCRIPTION_KEYS + model.PLATFORM_KEYS + model.SWITCH_KEYS + model.SSL_KEYS
    + model.MODULE_HOST_KEYS + model.CAPACITY_KEYS + model.BLACKBOX_KEYS + ('left', 'right')
    + ('driver', 'address', 'username', 'port', 'interface', 'system_id', 'validate_certs', 'mac',
       'broadcast', 'type', 'password')))
_yamlish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(['OpenFlow14', 'ipmi', 'vm', 'sw1', '198.18.0.30', 'tcp:1.2.3.4:6653',
                       'afxdp-nonpmd']),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8) | st.integers(), inner,
                      max_size=4),
    max_leaves=8,
)
_FIELDS = [
    ('platform',), ('platform', 'name'), ('platform', 'management_network'),
    ('switches',), ('switches', 0), ('switches', 0, 'name'), ('switches', 0, 'openflow_target'),
    ('switches', 0, 'openflow_versions'), ('switches', 0, 'ssl'), ('switches', 0, 'uplinks'),
    ('switches', 0, 'bridge'), ('switches', 0, 'management_address'),
    ('module_host_defaults',), ('module_host_defaults', 'capacity'),
    ('module_host_defaults', 'power'), ('module_host_defaults', 'switch'),
    ('module_hosts',), ('module_hosts', 0), ('module_hosts', 0, 'name'),
    ('module_hosts', 0, 'management_address'), ('module_hosts', 0, 'trunk'),
    ('module_hosts', 0, 'capacity'), ('module_hosts', 0, 'kinds'), ('module_hosts', 0, 'power'),
    ('module_hosts', 0, 'host_bridge'), ('module_hosts', 0, 'switch'), ('spares',),
    ('module_hosts', 0, 'port_type'), ('module_host_defaults', 'port_type'),
    ('blackboxes',), ('plugin',),
    ('module_hosts', 1, 'power', 'driver'), ('module_hosts', 1, 'power', 'address'),
    ('module_hosts', 1, 'power', 'port'), ('module_hosts', 1, 'power', 'mac'),
    ('module_hosts', 1, 'capacity', 'cpu'), ('module_hosts', 1, 'capacity', 'pps'),
    ('module_host_defaults', 'power', 'driver'), ('module_host_defaults', 'capacity', 'memory'),
    ('switches', 0, 'uplinks', 'source'), ('switches', 0, 'ssl', 'ca_cert'),
    ('blackboxes', 0), ('blackboxes', 0, 'ports'), ('blackboxes', 0, 'health'),
    ('blackboxes', 0, 'ports', 'left'), ('blackboxes', 0, 'capacity', 'pps'),
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), value=_yamlish)
def test_any_value_is_accepted_or_reported(field, value):
    data = copy.deepcopy(LAB_DATA)
    _set(data, field, value)
    try:
        platform = model.parse_description(data, plugin=PLUGIN)
    except model.DescriptionError as exc:
        assert exc.errors
        assert all(isinstance(line, str) and '\n' not in line for line in exc.errors)
    else:
        assert model.parse_description(platform.as_dict()) == platform


@settings(max_examples=100, deadline=None)
@given(hosts=st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=model.OFPP_MAX),
        st.one_of(st.integers(min_value=1, max_value=512),
                  st.floats(min_value=0.1, max_value=512, allow_nan=False)),
        st.integers(min_value=1, max_value=1 << 22),
    ),
    max_size=12, unique_by=lambda host: host[0]))
def test_generated_platforms_round_trip(hosts):
    data = {
        'platform': {'name': 'gen', 'management_network': '10.0.0.0/16'},
        'switches': [{'name': 's', 'bridge': 'br0', 'openflow_target': 'tcp:10.0.0.2:6653'}],
        'module_hosts': [
            {'name': f'h{i}', 'management_address': f'10.0.1.{i + 1}', 'trunk': trunk,
             'capacity': {'cpu': cpu, 'memory': memory}}
            for i, (trunk, cpu, memory) in enumerate(hosts)
        ],
    }
    platform = model.parse_description(data)
    assert [(h.trunk, h.capacity.cpu, h.capacity.memory) for h in platform.module_hosts] == hosts
    assert model.parse_description(platform.as_dict()) == platform


def test_leg_port_type_defaults_to_port_type_and_is_checked():
    data = copy.deepcopy(LAB_DATA)
    del data['module_host_defaults']['leg_port_type']
    platform = model.parse_description(data, plugin=PLUGIN)
    assert [(h.port_type, h.leg_port_type) for h in platform.module_hosts] == [('afxdp-nonpmd', 'afxdp-nonpmd')] * 3
    data['module_hosts'][1]['leg_port_type'] = 'afxdp'
    with pytest.raises(model.DescriptionError) as err:
        model.parse_description(data, plugin=PLUGIN)
    assert "module_hosts[1] 'mh2': leg_port_type must be one of system, afxdp-nonpmd, got 'afxdp'" in str(err.value)
