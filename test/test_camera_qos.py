"""Camera frames of 640x480 reach the perception node with the shipped Fast DDS profile.

A camera publishing best effort (SensorData QoS) from another process loses
most 640x480 rgb8 frames with Fast DDS's default transports: the publisher's
0.5 MB shared-memory segment is overwritten before the node has read a
frame's fragments. config/fastdds/large_images.xml (a 16 MB segment) is what
the launch files and `dyn-dnn-ros bringup` load; the camera's process needs
it too. The DDS tests run bench/camera_qos.py's set-up: the node as its own
process (as the launch file starts it), the camera in another, 20 frames at
10 Hz, fresh processes per setting (Fast DDS reads its configuration once
per process). The node process takes about 3 s to match its subscription
(torch import, model load; it subscribes at once, no manager being there to
wait for); each setting runs in about 7 s.
"""

import ast
import os
from pathlib import Path
import xml.etree.ElementTree as ElementTree

from bench_scripts import load_bench
import pytest

from dyn_dnn_ros.commands.bringup import apply_transport_profile
from dyn_dnn_ros.ros.qos import (
    BUILTIN_TRANSPORTS_VARIABLE,
    PROFILES_FILE_VARIABLE,
    describe_transports,
    shipped_transport_profile,
    transport_environment,
)

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 20
SIZE = '640x480'
NAMESPACE = {'dds': 'http://www.eprosima.com'}


def test_the_shipped_profile_gives_shared_memory_a_large_segment_beside_udp():
    path = shipped_transport_profile()
    assert path == ROOT / 'config' / 'fastdds' / 'large_images.xml'
    root = ElementTree.parse(path).getroot()
    descriptors = {d.findtext('dds:transport_id', namespaces=NAMESPACE):
                   d for d in root.iterfind('.//dds:transport_descriptor', NAMESPACE)}
    types = {tid: d.findtext('dds:type', namespaces=NAMESPACE) for tid, d in descriptors.items()}
    assert sorted(types.values()) == ['SHM', 'UDPv4']   # Fast DDS's default pair, resized
    shm = next(d for d in descriptors.values() if d.findtext('dds:type', namespaces=NAMESPACE)
               == 'SHM')
    assert int(shm.findtext('dds:segment_size', namespaces=NAMESPACE)) >= 16 * 1024 * 1024
    participant = root.find('.//dds:participant', NAMESPACE)
    assert participant.get('is_default_profile') == 'true'   # rmw_fastrtps uses it
    used = [t.text for t in participant.iterfind('.//dds:userTransports/dds:transport_id',
                                                 NAMESPACE)]
    assert sorted(used) == sorted(descriptors)
    assert participant.findtext('.//dds:useBuiltinTransports', namespaces=NAMESPACE) == 'false'
    # Only transports: no publisher/subscriber QoS that would override the code's.
    assert root.find('.//dds:data_writer', NAMESPACE) is None
    assert root.find('.//dds:data_reader', NAMESPACE) is None


@pytest.mark.parametrize('environ, profile, expected', [
    ({}, None, {PROFILES_FILE_VARIABLE: 'SHIPPED'}),
    ({PROFILES_FILE_VARIABLE: '/etc/mine.xml'}, None, {}),           # the user's file wins
    ({BUILTIN_TRANSPORTS_VARIABLE: 'LARGE_DATA'}, None, {}),         # the user's choice wins
    ({PROFILES_FILE_VARIABLE: ''}, None, {PROFILES_FILE_VARIABLE: 'SHIPPED'}),   # empty = unset
    ({}, '', {}),                                                    # asked for nothing
    ({PROFILES_FILE_VARIABLE: '/etc/mine.xml'}, '/x.xml', {PROFILES_FILE_VARIABLE: '/x.xml'}),
])
def test_transport_environment_respects_a_setting_already_made(environ, profile, expected):
    shipped = str(shipped_transport_profile())
    expected = {k: shipped if v == 'SHIPPED' else v for k, v in expected.items()}
    assert transport_environment(environ, profile) == expected


def test_bringup_sets_the_profile_only_where_the_environment_has_none(capsys):
    environ = {'ROS_DOMAIN_ID': '5'}
    assert apply_transport_profile(None, environ) == \
        {PROFILES_FILE_VARIABLE: str(shipped_transport_profile())}
    assert environ[PROFILES_FILE_VARIABLE] == str(shipped_transport_profile())
    assert 'large_images.xml' in capsys.readouterr().out
    mine = {BUILTIN_TRANSPORTS_VARIABLE: 'UDPv4'}
    assert apply_transport_profile(None, mine) == {}
    assert mine == {BUILTIN_TRANSPORTS_VARIABLE: 'UDPv4'}
    assert describe_transports(mine) == 'FASTDDS_BUILTIN_TRANSPORTS=UDPv4'
    assert apply_transport_profile('', {}) == {}


def launch_default_profile(path, environ, monkeypatch):
    """Run the launch file's default_fastdds_profile(config) with ``environ`` (no `launch`)."""
    tree = ast.parse(path.read_text())
    wanted = [n for n in tree.body if (isinstance(n, ast.FunctionDef)
                                       and n.name == 'default_fastdds_profile')
              or (isinstance(n, ast.Assign)
                  and getattr(n.targets[0], 'id', None) == 'TRANSPORT_VARIABLES')]
    namespace = {'os': os, 'PathJoinSubstitution': lambda parts: parts}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), str(path), 'exec'), namespace)
    for name in (PROFILES_FILE_VARIABLE, BUILTIN_TRANSPORTS_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return namespace['default_fastdds_profile']('CONFIG')


@pytest.mark.parametrize('path', sorted((ROOT / 'launch').glob('*.launch.py')),
                         ids=lambda p: p.name)
def test_launch_files_default_to_the_shipped_profile_unless_the_environment_chose(
        path, monkeypatch):
    assert launch_default_profile(path, {}, monkeypatch) == \
        ['CONFIG', 'fastdds', 'large_images.xml']
    assert launch_default_profile(path, {PROFILES_FILE_VARIABLE: '/etc/mine.xml'},
                                  monkeypatch) == ''
    assert launch_default_profile(path, {BUILTIN_TRANSPORTS_VARIABLE: 'LARGE_DATA'},
                                  monkeypatch) == ''


@pytest.fixture(scope='module')
def bench():
    return load_bench('camera_qos')


def run_camera(bench, setting):
    report = bench.run_setting(setting, [SIZE], FRAMES, 10.0, int(os.environ['ROS_DOMAIN_ID']),
                               shipped_transport_profile(), settle_s=1.0, ready_timeout=60.0)
    assert 'error' not in report, report
    return report['rows'][0]


@pytest.mark.ros
def test_640x480_frames_reach_the_node_with_the_shipped_profile(bench):
    row = run_camera(bench, 'shipped')
    assert row['classified'] >= 0.95 * FRAMES, row
    # Every frame received was classified or superseded by a newer one; none failed.
    assert row['received'] == row['classified'] + row['superseded'], row


@pytest.mark.ros
def test_without_the_profile_most_640x480_frames_are_lost(bench):
    """The failure the profile fixes, so that the test above can tell the difference.

    Should this fail, Fast DDS's defaults now deliver such frames and the
    shipped profile may no longer be needed.
    """
    row = run_camera(bench, 'none')
    assert row['classified'] < 0.95 * FRAMES, row
    assert row['received'] < 0.95 * FRAMES, row   # lost in transport, not superseded


def test_bench_settings_give_each_process_its_transports(bench):
    profile = 'P.xml'
    expected = {  # setting -> (node's, camera's) variables
        'none': ({}, {}),
        'node_only': ({PROFILES_FILE_VARIABLE: profile}, {}),
        'camera_only': ({}, {PROFILES_FILE_VARIABLE: profile}),
        'shipped': ({PROFILES_FILE_VARIABLE: profile}, {PROFILES_FILE_VARIABLE: profile}),
        'large_data': ({BUILTIN_TRANSPORTS_VARIABLE: 'LARGE_DATA'},
                       {BUILTIN_TRANSPORTS_VARIABLE: 'LARGE_DATA'}),
    }
    assert set(expected) == set(bench.SETTINGS)
    for setting, (node, camera) in expected.items():
        assert bench.transport_env(setting, 'node', profile) == node, setting
        assert bench.transport_env(setting, 'camera', profile) == camera, setting
    # The runs start from Fast DDS's defaults whatever this shell exports.
    assert PROFILES_FILE_VARIABLE not in bench.base_env(7)
