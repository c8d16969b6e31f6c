"""`dyn-dnn-ros bringup` starts every node in one process from ros__parameters files.

Its nodes spin on ``NodeSpinner`` (ros/spin.py), tested here too: a callback
that raises is reported and every node goes on.
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParametersAtomically
from ros_harness import MessageCollector, call_service, wait_until
from translation_fixtures import SPM, write_tiny_model
import yaml

from dyn_dnn_ros_interfaces.msg import (
    HardwareAvailability,
    TranslationRequest,
    TranslationResult,
)
from dyn_dnn_ros_interfaces.srv import ListOperatingPoints

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = '/bringup_test'
# Message field types checked at construction, as a strict ROS host may run them.
STRICT_ENV = {'ROS_PYTHON_CHECK_FIELDS': '1'}


def malformed_parameter_set():
    """A value type no rclpy knows: rclpy's set_parameters_atomically callback raises on it."""
    request = SetParametersAtomically.Request()
    bad = ParameterMsg(name='rate_hz')
    bad.value.type = 99
    request.parameters = [bad]
    return request


@pytest.mark.ros
def test_bringup_runs_all_nodes_in_one_process_survives_a_raising_callback_and_stops(
        tmp_path, probe):
    model, library = write_tiny_model(tmp_path)
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({
        '/**/translation_node': {'ros__parameters': {
            'model_path': str(model), 'spm_path': str(SPM), 'library_path': str(library)}},
        '/**/dnn_manager': {'ros__parameters': {'translation_library': str(library)}},
    }))
    stdout, stderr = tmp_path / 'stdout.txt', tmp_path / 'stderr.txt'
    with open(stdout, 'w') as out, open(stderr, 'w') as err:
        bringup = subprocess.Popen(
            [sys.executable, '-m', 'dyn_dnn_ros.cli', 'bringup', '--params-file',
             str(ROOT / 'config' / 'dyn_dnn_ros.yaml'), '--params-file', str(params),
             '--namespace', NAMESPACE],
            stdout=out, stderr=err, text=True,
            env=dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', **STRICT_ENV))
    try:
        wait_until(lambda: 'running' in stdout.read_text() or bringup.poll() is not None,
                   timeout=120, message='bringup running')
        assert bringup.poll() is None, stderr.read_text()
        running = next(line for line in stdout.read_text().splitlines() if 'running' in line)
        for node in ('resource_monitor', 'translation_node', 'dnn_manager'):
            assert node in running
        # The perception node starts when its library has been built (see the README).
        all_started = 'perception_node' in running
        if not all_started:
            assert 'perception_node not started' in stderr.read_text()

        # A client's malformed parameter set makes the monitor's service callback raise.
        client = probe.create_client(SetParametersAtomically,
                                     f'{NAMESPACE}/resource_monitor/set_parameters_atomically')
        assert client.wait_for_service(timeout_sec=30)
        client.call_async(malformed_parameter_set())
        wait_until(lambda: 'a callback raised' in stderr.read_text(), timeout=30,
                   message='the callback error in the log')
        log = stderr.read_text()
        assert 'Traceback' in log and 'ValueError' in log and 'resource_monitor' in log

        # Every node goes on: the raising one and the others.
        availability = MessageCollector(probe, HardwareAvailability,
                                        f'{NAMESPACE}/hardware_availability')
        availability.wait_for(count=2, timeout=30)
        listing = call_service(probe, ListOperatingPoints, f'{NAMESPACE}/list_operating_points',
                               ListOperatingPoints.Request(target='translation'), timeout=30)
        assert listing.success and listing.points
        results = MessageCollector(probe, TranslationResult, f'{NAMESPACE}/translation_results')
        publisher = probe.create_publisher(TranslationRequest,
                                           f'{NAMESPACE}/translation_requests', 10)
        wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30)
        publisher.publish(TranslationRequest(id='after-raise', text='Open the file'))
        assert results.wait_for(lambda m: m.id == 'after-raise', timeout=60)
        assert bringup.poll() is None

        # Idle, Ctrl-C: a clean stop, exit code 1 only for a node that did not start.
        logged_before_stop = len(stderr.read_text())
        bringup.send_signal(signal.SIGINT)
        code = bringup.wait(timeout=30)
    finally:
        if bringup.poll() is None:
            bringup.kill()
            bringup.wait()
    assert code == (0 if all_started else 1), stderr.read_text()
    stop_log = stderr.read_text()[logged_before_stop:]
    assert 'Traceback' not in stop_log and 'terminate called' not in stop_log, stop_log


def test_bringup_reports_a_missing_parameter_file(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'dyn_dnn_ros.cli', 'bringup', '--params-file',
         str(tmp_path / 'nope.yaml'), '--seconds', '1'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'nope.yaml' in result.stderr


@pytest.fixture
def own_context():
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_the_spinner_reports_a_raising_callback_and_keeps_serving_every_node(own_context):
    import rclpy

    from dyn_dnn_ros.ros.spin import NodeSpinner
    errors, ticks = [], []
    spinner = NodeSpinner(context=own_context,
                          on_callback_error=lambda name, text: errors.append((name, text)))
    raising = spinner.add(rclpy.create_node('raising', context=own_context))
    counting = spinner.add(rclpy.create_node('counting', context=own_context))

    def fail():
        raise RuntimeError('on purpose')
    raising.create_timer(0.02, fail)
    counting.create_timer(0.02, lambda: ticks.append(len(errors)))
    try:
        started = time.monotonic()
        spinner.spin(seconds=0.6)
        elapsed = time.monotonic() - started
    finally:
        spinner.shutdown()
        raising.destroy_node()
        counting.destroy_node()
    assert 0.6 <= elapsed < 0.6 + 1.0
    assert len(errors) >= 3, errors          # the raising timer went on raising ...
    assert {name for name, _ in errors} == {'raising'}
    assert 'Traceback' in errors[0][1] and 'RuntimeError: on purpose' in errors[0][1]
    assert ticks and ticks[-1] >= 3          # ... and the other node ticked after its errors


@pytest.mark.ros
def test_removing_a_node_waits_for_its_running_callback(own_context):
    import rclpy

    from dyn_dnn_ros.ros.spin import NodeSpinner
    spinner = NodeSpinner(context=own_context).start()
    started, ended = threading.Event(), threading.Event()

    def slow():
        started.set()
        time.sleep(0.3)
        ended.set()
    node = spinner.add(rclpy.create_node('slow', context=own_context))
    node.create_timer(0.01, slow)
    try:
        assert started.wait(timeout=10)
        spinner.remove(node)      # destroys the node once the callback has returned
        assert ended.is_set()
    finally:
        spinner.shutdown()
