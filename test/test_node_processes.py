"""The nodes as a ROS host runs them: one process each, stopped with Ctrl-C.

Each node starts as launch/bringup.launch.py starts it, is driven by rclpy
clients over DDS, and is interrupted while work is queued. Message fields are
type-checked (ROS_PYTHON_CHECK_FIELDS=1).
"""

import os
from pathlib import Path
import signal
import subprocess
import sys

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from ros_harness import MessageCollector, wait_until

from dyn_dnn_ros.demo.processes import EXECUTABLES, NodeProcess, node_command
from dyn_dnn_ros.ros.diagnostics import level_value
from dyn_dnn_ros_interfaces.msg import TranslationRequest, TranslationResult
from dyn_dnn_ros_interfaces.srv import SetLatencyBudget

ROOT = Path(__file__).resolve().parents[1]
# Message field types checked at construction, as a strict ROS host may run them.
STRICT_ENV = {'ROS_PYTHON_CHECK_FIELDS': '1'}
SENTENCE = ('The robot is moving to the kitchen, and when the battery is low it returns '
            'to the charging station by itself.')


def start_nodes(names, logs, extra=()):
    """Each node in its own process, as the launch file starts it; output in ``logs``."""
    return [NodeProcess(name, node_command(name, extra=extra), logs / f'{name}-{i}.log',
                        STRICT_ENV) for i, name in enumerate(names)]


def output(node):
    return node.output_tail(chars=20000)


def is_clean(output):
    return 'Traceback' not in output and 'terminate called' not in output


def send_requests(probe, publisher, prefix, count):
    ids = [f'{prefix}-{i}' for i in range(count)]
    for rid in ids:
        msg = TranslationRequest(id=rid, text=SENTENCE)
        msg.header.stamp = probe.get_clock().now().to_msg()
        publisher.publish(msg)
    return ids


@pytest.mark.ros
def test_each_node_in_its_own_process_reports_diagnostics_and_stops_cleanly(probe, tmp_path):
    diagnostics = MessageCollector(probe, DiagnosticArray, '/diagnostics', qos=100)
    results = MessageCollector(probe, TranslationResult, 'translation_results', qos=1000)
    publisher = probe.create_publisher(TranslationRequest, 'translation_requests', 1000)
    nodes = start_nodes(EXECUTABLES, tmp_path)
    try:
        # Every task of every node publishes a status, none of them a failed task
        # (a non-string value or an exception in a task would be one).
        wanted = {'resource_monitor: readers', 'resource_monitor: availability',
                  'translation_node: translation', 'perception_node: perception',
                  'dnn_manager: resources', 'dnn_manager: translation',
                  'dnn_manager: perception'}

        def reported():
            seen = {}
            for array in list(diagnostics.messages):
                for status in array.status:
                    if status.message != 'Node starting up':
                        seen[status.name] = status
            return seen

        wait_until(lambda: wanted <= set(reported()), timeout=60,
                   message='a status from every task of every node')
        for name, status in reported().items():
            assert 'diagnostic task failed' not in status.message, (name, status.message)
            assert all(isinstance(kv.value, str) for kv in status.values), name
        translation = reported()['translation_node: translation']
        assert level_value(translation.level) == 0, translation.message

        # The monitor counts the workers' processes as its own, not as other load.
        pids = {node.name: node.proc.pid for node in nodes}
        expected = (f'/perception_node (pid {pids["perception_node"]}), '
                    f'/translation_node (pid {pids["translation_node"]})')

        def workers_known():
            status = reported()['resource_monitor: availability']
            return {kv.key: kv.value for kv in status.values}.get('worker_processes')

        wait_until(lambda: workers_known() == expected, timeout=10,
                   message=f'worker_processes {expected}')

        # Ctrl-C to the translation node with requests queued: each request is
        # answered once (translated, or dropped because the node shuts down).
        wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30)
        ids = send_requests(probe, publisher, 'sigint', 8)
        results.wait_for(lambda m: m.id in ids, timeout=30)   # the first is running
        for node in nodes:
            node.interrupt()
        codes = {node.name: node.wait(timeout=30) for node in nodes}
        answers = results.wait_for(lambda m: m.id in ids, count=len(ids), timeout=10)
    finally:
        for node in nodes:
            node.kill9()
    for node in nodes:
        assert codes[node.name] == 0, f'{node.name} exited {codes[node.name]}:\n{output(node)}'
        assert is_clean(output(node)), f'{node.name}:\n{output(node)}'
    assert sorted(m.id for m in answers) == sorted(ids)
    statuses = {m.id: m.status for m in answers}
    assert set(statuses.values()) <= {TranslationResult.STATUS_OK,
                                      TranslationResult.STATUS_DROPPED}
    dropped = [m for m in answers if m.status == TranslationResult.STATUS_DROPPED]
    assert dropped, 'Ctrl-C came after every request was translated: nothing was queued'
    assert all(m.status_message.startswith('shutting down') for m in dropped)


@pytest.mark.ros
def test_bringup_stops_cleanly_on_ctrl_c_with_requests_queued(probe):
    # An idle bringup stopped with Ctrl-C: test_bringup.py.
    namespace = '/bringup_sigint'
    results = MessageCollector(probe, TranslationResult, f'{namespace}/translation_results',
                               qos=1000)
    publisher = probe.create_publisher(TranslationRequest,
                                       f'{namespace}/translation_requests', 1000)
    bringup = subprocess.Popen(
        [sys.executable, '-m', 'dyn_dnn_ros.cli', 'bringup', '--namespace', namespace,
         '--device', 'cpu'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, **STRICT_ENV), cwd=ROOT)
    try:
        # The manager starts last: once its service answers, every node runs.
        budget = probe.create_client(SetLatencyBudget, f'{namespace}/set_latency_budget')
        assert budget.wait_for_service(timeout_sec=60), 'bringup did not start'
        wait_until(lambda: publisher.get_subscription_count() > 0, timeout=30)
        ids = send_requests(probe, publisher, 'bringup', 8)
        results.wait_for(lambda m: m.id in ids, timeout=30)
        bringup.send_signal(signal.SIGINT)
        output, _ = bringup.communicate(timeout=30)
    finally:
        if bringup.poll() is None:
            bringup.kill()
            bringup.communicate()
    assert bringup.returncode == 0, output
    assert is_clean(output), output
    answers = results.wait_for(lambda m: m.id in ids, count=len(ids), timeout=10)
    assert sorted(m.id for m in answers) == sorted(ids)


@pytest.mark.ros
def test_ctrl_c_while_the_model_loads_exits_cleanly(probe, tmp_path):
    node = start_nodes(['translation_node'], tmp_path, extra=['-r', '__ns:=/loading'])[0]
    try:
        # The node joins the graph before its worker thread loads the model.
        wait_until(lambda: ('translation_node', '/loading') in
                   probe.get_node_names_and_namespaces(), timeout=30, interval=0.01)
        node.interrupt()
        code = node.wait(timeout=60)
    finally:
        node.kill9()
    assert code == 0 and is_clean(output(node)), output(node)


@pytest.mark.ros
def test_a_killed_and_restarted_worker_is_noticed_at_once(probe, tmp_path):
    import time

    from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS
    from dyn_dnn_ros_interfaces.msg import WorkerHeartbeat
    namespace = ['-r', '__ns:=/restart']
    beats = MessageCollector(probe, WorkerHeartbeat, '/restart/worker_heartbeat',
                             qos=HEARTBEAT_QOS)
    diagnostics = MessageCollector(probe, DiagnosticArray, '/diagnostics', qos=100)
    results = MessageCollector(probe, TranslationResult, '/restart/translation_results',
                               qos=100)
    manager = start_nodes(['dnn_manager'], tmp_path,
                          extra=namespace + ['-p', 'targets:=translation'])[0]
    worker = start_nodes(['translation_node'], tmp_path / 'first', extra=namespace)[0]
    try:
        budget = probe.create_client(SetLatencyBudget, '/restart/set_latency_budget')
        assert budget.wait_for_service(timeout_sec=30)
        first = beats.wait_for(timeout=30)[0]
        future = budget.call_async(SetLatencyBudget.Request(
            target='translation', budget_ms=70.0, min_quality=float('nan')))
        wait_until(future.done, timeout=10)
        chosen = future.result().operating_point
        assert future.result().success and chosen
        beats.wait_for(lambda m: m.instance_id == first.instance_id and m.serving and
                       m.operating_point == chosen and m.budget_ms == 70.0, timeout=10)

        # kill -9: the manager reports the worker lost within 3 s.
        worker.kill9()
        killed = time.monotonic()
        worker.wait(timeout=10)

        def lost(array):
            return any(s.name == 'dnn_manager: translation' and level_value(s.level) == 1
                       and 'lost' in s.message for s in array.status)

        diagnostics.wait_for(lost, timeout=5)
        assert time.monotonic() - killed <= 3.5

        # A new instance gets the manager's setting before it serves requests.
        worker = start_nodes(['translation_node'], tmp_path / 'second', extra=namespace)[0]
        serving = beats.wait_for(lambda m: m.instance_id != first.instance_id and m.serving,
                                 timeout=30)[0]
        assert (serving.operating_point, serving.budget_ms) == (chosen, 70.0)
        publisher = probe.create_publisher(TranslationRequest, '/restart/translation_requests',
                                           10)
        wait_until(lambda: publisher.get_subscription_count() > 0, timeout=10)
        send_requests(probe, publisher, 'after-restart', 1)
        result = results.wait_for(lambda m: m.id == 'after-restart-0', timeout=30)[0]
        assert (result.operating_point, result.budget_ms) == (chosen, 70.0)
    finally:
        manager.kill9()
        worker.kill9()
