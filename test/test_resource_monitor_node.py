"""The resource monitor over real DDS: real readings, scenario overrides, diagnostics."""

import math
import os
from pathlib import Path
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.parameter import Parameter
from ros_harness import MessageCollector, set_parameters

from dyn_dnn_ros.ros.diagnostics import level_value
from dyn_dnn_ros.ros.nodes.resource_monitor import ResourceMonitorNode
from dyn_dnn_ros_interfaces.msg import HardwareAvailability

pytestmark = pytest.mark.ros


def start_monitor(ros, namespace, **parameters):
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    return ros.add(ResourceMonitorNode(context=ros.context, namespace=namespace,
                                       parameter_overrides=overrides))


def test_publishes_this_machines_cpus_and_utilisation(ros, probe):
    node = start_monitor(ros, '/real', rate_hz=10.0)
    try:
        collector = MessageCollector(probe, HardwareAvailability, '/real/hardware_availability')
        msg = collector.wait_for(count=3, timeout=10.0)[-1]
        assert msg.cpu_count_online == os.cpu_count()
        assert msg.cpu_count_allowed == len(os.sched_getaffinity(0))
        assert len(msg.cpu_utilization) == os.cpu_count()
        assert all(0.0 <= u <= 1.0 for u in msg.cpu_utilization)
        assert 0.0 <= msg.cpu_utilization_total <= 1.0
        assert 0 < msg.memory_available_mb <= msg.memory_total_mb
        assert 1 <= msg.usable_threads <= os.cpu_count()
        assert 0.0 < msg.availability <= 1.0
        assert msg.header.frame_id == msg.hostname and msg.header.stamp.sec > 0
        # Unreadable sources are marked, never reported as zero.
        if not Path('/sys/devices/system/cpu/cpu0/cpufreq').exists():
            assert 'cpufreq' in msg.unavailable and len(msg.cpu_freq_current_mhz) == 0
        if not msg.gpu_present:
            assert math.isnan(msg.gpu_utilization)
            assert math.isnan(msg.gpu_memory_total_mb)
    finally:
        ros.remove(node)


def test_scenario_override_changes_availability_at_the_scripted_time(ros, probe, tmp_path):
    scenario = tmp_path / 'drop.yaml'
    scenario.write_text('name: drop\nsteps:\n  - at: 1.5\n    set: {cpus: 1}\n'
                        '  - at: 3.0\n    clear: [cpus]\n')
    collector = MessageCollector(probe, HardwareAvailability, '/scn/hardware_availability')
    started = time.monotonic()
    node = start_monitor(ros, '/scn', rate_hz=20.0, scenario=str(scenario))
    arrivals = []
    try:
        dropped = collector.wait_for(lambda m: 'cpus=1' in m.overrides, timeout=10.0)
        arrivals.append(time.monotonic() - started)
        assert dropped[0].usable_threads == 1 and dropped[0].usable_cpus <= 1.0
        before = [m for m in collector.messages if not m.overrides]
        assert before, 'messages before the scripted time carry no override'
        # Published at the scripted time: not before 1.5 s, and within a few periods.
        assert 1.5 <= arrivals[0] < 1.5 + 1.0
        collector.wait_for(lambda m: not m.overrides and m.header.stamp.sec > 0 and
                           collector.messages.index(m) > collector.messages.index(dropped[0]),
                           timeout=10.0)
    finally:
        ros.remove(node)


def test_diagnostics_carry_status_and_warn_for_missing_readers(ros, probe):
    collector = MessageCollector(probe, DiagnosticArray, '/diagnostics')
    node = start_monitor(ros, '/diag', rate_hz=5.0)
    try:
        def find(name):
            def match(array):
                return any(s.name == f'resource_monitor: {name}' and
                           s.message != 'Node starting up' for s in array.status)
            return match

        array = collector.wait_for(find('readers'), timeout=10.0)[0]
        readers = next(s for s in array.status if s.name == 'resource_monitor: readers')
        values = {kv.key: kv.value for kv in readers.values}
        assert values['cpu'] == 'available' and values['memory'] == 'available'
        missing = [k for k, v in values.items() if v != 'available']
        if missing:  # a machine without cpufreq, thermal, RAPL, NVML or a Jetson
            assert level_value(readers.level) == 1
            assert all(name in readers.message for name in missing)
        if not Path('/sys/class/thermal').exists():
            assert 'thermal' in missing
        assert readers.hardware_id
        array = collector.wait_for(
            lambda a: any(s.name == 'resource_monitor: availability' and
                          'usable CPUs' in s.message for s in a.status), timeout=10.0)[0]
        status = next(s for s in array.status if s.name == 'resource_monitor: availability')
        assert level_value(status.level) == 0
        assert int({kv.key: kv.value for kv in status.values}['published']) >= 1
    finally:
        ros.remove(node)


def test_bad_parameter_sets_are_refused_and_the_node_keeps_publishing(ros, probe, tmp_path):
    malformed = tmp_path / 'malformed.yaml'
    malformed.write_text('steps: [at: 1\n')
    unknown_field = tmp_path / 'unknown.yaml'
    unknown_field.write_text('steps:\n  - at: 1.0\n    set: {cores: 1}\n')
    node = start_monitor(ros, '/bad', rate_hz=10.0)
    try:
        for name, value, expected in [
            ('rate_hz', math.nan, 'rate_hz'),
            ('rate_hz', -1.0, 'rate_hz'),
            ('scenario', '/nonexistent/scenario.yaml', 'scenario.yaml'),
            ('scenario', str(malformed), 'malformed.yaml'),
            ('scenario', str(unknown_field), 'set.cores'),
        ]:
            result = set_parameters(probe, 'bad/resource_monitor', {name: value})[0]
            assert not result.successful, (name, value)
            assert expected in result.reason, result.reason
        assert node.params.value('rate_hz') == 10.0 and node.params.value('scenario') == ''
        collector = MessageCollector(probe, HardwareAvailability, '/bad/hardware_availability')
        collector.wait_for(count=2, timeout=5.0)
        # A valid shipped scenario by name is accepted.
        result = set_parameters(probe, 'bad/resource_monitor', {'scenario': 'core_drop'})[0]
        assert result.successful, result.reason
    finally:
        ros.remove(node)


def test_bad_scenario_at_startup_exits_with_one_line_naming_file_and_field(tmp_path):
    bad = tmp_path / 'negative.yaml'
    bad.write_text('steps:\n  - at: 1.0\n    set: {cpus: -2}\n')
    result = subprocess.run(
        [sys.executable, '-m', 'dyn_dnn_ros.ros.nodes.resource_monitor', '--ros-args',
         '-p', f'scenario:={bad}'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert 'negative.yaml' in lines[0] and 'cpus' in lines[0]


def test_a_file_that_is_no_scenario_is_named_not_echoed(ros, probe, tmp_path):
    # Like a scenario set to the system's password file: the refusal names the
    # file and the first problem, with a short excerpt, not the file's contents.
    secret = tmp_path / 'passwd'
    secret.write_text(''.join(f'user{i}:x:{1000 + i}:{1000 + i}::/home/user{i}:/bin/sh\n'
                              for i in range(200)))
    node = start_monitor(ros, '/secret', rate_hz=5.0)
    try:
        for value, expected in [
            (str(secret), f'{secret}: top level: must be a mapping'),
            ('/' + 'a' * 5000, 'File name too long'),      # once an uncaught OSError
        ]:
            result = set_parameters(probe, 'secret/resource_monitor', {'scenario': value})[0]
            assert not result.successful and expected in result.reason, result.reason
            assert len(result.reason) < 400 and 'user199' not in result.reason
        assert node.params.value('scenario') == ''
        collector = MessageCollector(probe, HardwareAvailability,
                                     '/secret/hardware_availability')
        collector.wait_for(count=1, timeout=5.0)
    finally:
        ros.remove(node)
