"""The translation node over real DDS, with a small random-weight model."""

import math
import threading

import pytest
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from ros_harness import MessageCollector, set_parameters, wait_until
from std_msgs.msg import String
from translation_fixtures import SPM, write_tiny_model

from dyn_dnn_ros.ros.diagnostics import DiagnosticStatusWrapper
from dyn_dnn_ros.ros.nodes.translation import TranslationNode
from dyn_dnn_ros_interfaces.msg import TranslationRequest, TranslationResult

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp('tiny'))


def start(ros, namespace, tiny_files, **parameters):
    model_path, library_path = tiny_files
    # Serving at once: the wait for the manager's setting has its own test.
    values = dict(model_path=str(model_path), spm_path=str(SPM),
                  library_path=str(library_path), threads=1, max_source_tokens=48,
                  wait_for_setting_s=0.0)
    values.update(parameters)
    return ros.add(TranslationNode(
        context=ros.context, namespace=namespace,
        parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))


def connect(probe, namespace, depth=10):
    """A result collector and a request publisher on ``namespace``, matched with the node."""
    results = MessageCollector(probe, TranslationResult, f'{namespace}/translation_results',
                               qos=depth)
    publisher = probe.create_publisher(TranslationRequest, f'{namespace}/translation_requests',
                                       depth)
    wait_until(lambda: publisher.get_subscription_count() > 0)
    return results, publisher


def request(probe, publisher, rid, text, frame='cam'):
    msg = TranslationRequest(id=rid, text=text)
    msg.header.stamp = probe.get_clock().now().to_msg()
    msg.header.frame_id = frame
    publisher.publish(msg)
    return msg


def test_results_carry_the_request_header_id_and_operating_point(ros, probe, tiny_files):
    # Deadline stops have their own tests; here a cold first translation on a
    # loaded machine must not be cut short (it would report a width of 1).
    node = start(ros, '/tr1', tiny_files, budget_ms=250.0, stop_at_deadline=False)
    try:
        results, publisher = connect(probe, '/tr1')
        sent = request(probe, publisher, 'r-1', 'Open the file')
        result = results.wait_for(lambda m: m.id == 'r-1', timeout=30)[0]
        assert result.header.stamp == sent.header.stamp and result.header.frame_id == 'cam'
        assert result.status == TranslationResult.STATUS_OK and not result.stopped_at_deadline
        assert result.operating_point == 'big'        # best quality by default
        assert result.decoder_layers == 2
        # The beam parameters are the policy in force (default fixed 5); the
        # manager sets a point's library beam policy together with the point.
        assert result.average_beam_width == pytest.approx(5.0)
        assert result.latency_ms > 0 and result.budget_ms == 250.0
        text_pub = probe.create_publisher(String, '/tr1/translation_requests_text', 10)
        wait_until(lambda: text_pub.get_subscription_count() > 0)
        text_pub.publish(String(data='Save the document'))
        plain = results.wait_for(lambda m: m.id.startswith('text-'), timeout=30)[0]
        assert plain.status == TranslationResult.STATUS_OK and plain.text
    finally:
        ros.remove(node)


def test_empty_and_huge_texts_get_a_status(ros, probe, tiny_files):
    node = start(ros, '/tr2', tiny_files)
    try:
        results, publisher = connect(probe, '/tr2')
        request(probe, publisher, 'empty', '   ')
        request(probe, publisher, 'huge', 'word ' * 20000)   # 100k characters
        empty = results.wait_for(lambda m: m.id == 'empty', timeout=30)[0]
        assert empty.status == TranslationResult.STATUS_EMPTY and empty.text == ''
        huge = results.wait_for(lambda m: m.id == 'huge', timeout=60)[0]
        assert huge.status == TranslationResult.STATUS_TRUNCATED
        assert '48 tokens' in huge.status_message
    finally:
        ros.remove(node)


def test_parameter_sets_are_checked_and_switch_between_requests(ros, probe, tiny_files):
    node = start(ros, '/tr3', tiny_files)
    target = 'tr3/translation_node'
    try:
        for values, expected in [
            ({'operating_point': 'huge'}, 'unknown operating point'),
            ({'sigma_min': math.nan}, 'sigma_min'),
            ({'beam_mode': 'dynamic', 'bw_min': 4, 'bw_max': 2}, 'bw_min'),
            ({'beam_mode': 'dynamic', 'sigma_min': 3.0, 'sigma_max': 1.0}, 'sigma_min'),
            ({'queue_depth': 0}, 'queue_depth'),
        ]:
            result = set_parameters(probe, target, values, atomically=True)[0]
            assert not result.successful and expected in result.reason, result.reason
        assert node.worker.setting.point == 'big' and node.worker.setting.beam.width == 5

        ok = set_parameters(probe, target, {'operating_point': 'small', 'beam_width': 1},
                            atomically=True)[0]
        assert ok.successful, ok.reason
        wait_until(lambda: node.worker.setting.point == 'small')
        results, publisher = connect(probe, '/tr3')
        request(probe, publisher, 'after', 'Close the window')
        result = results.wait_for(lambda m: m.id == 'after', timeout=30)[0]
        assert result.operating_point == 'small' and result.decoder_layers == 1
        assert result.average_beam_width == pytest.approx(1.0)
    finally:
        ros.remove(node)


def test_a_burst_of_500_requests_is_fully_answered(ros, probe, tiny_files):
    node = start(ros, '/tr4', tiny_files, queue_depth=4)
    try:
        results, publisher = connect(probe, '/tr4', depth=1000)
        done = threading.Event()

        def burst():
            for i in range(500):
                request(probe, publisher, f'b{i}', f'Item number {i}')
            done.set()

        threading.Thread(target=burst).start()
        assert done.wait(30)
        answered = results.wait_for(count=500, timeout=120)
        ids = {m.id for m in answered}
        assert ids == {f'b{i}' for i in range(500)}
        dropped = [m for m in answered if m.status == TranslationResult.STATUS_DROPPED]
        assert dropped and all('queue full' in m.status_message for m in dropped)
        assert node.worker.dropped == len(dropped)
        # Still serving afterwards.
        request(probe, publisher, 'later', 'Print')
        results.wait_for(lambda m: m.id == 'later', timeout=30)
    finally:
        ros.remove(node)


def test_with_a_budget_decoding_stops_at_the_deadline(ros, probe, tiny_files):
    # A 5 ms budget (less the margin kept for publishing): a request stamped
    # 50 ms ago is already past its deadline, so the search ends at its first step.
    node = start(ros, '/tr5', tiny_files, budget_ms=5.0)
    try:
        results, publisher = connect(probe, '/tr5')
        late = TranslationRequest(id='late', text='Open the file and save it again')
        late.header.stamp = (probe.get_clock().now() - Duration(seconds=0.05)).to_msg()
        publisher.publish(late)
        result = results.wait_for(lambda m: m.id == 'late', timeout=30)[0]
        # A cut answer is not an on-time answer: its own status, and it says so.
        assert result.status == TranslationResult.STATUS_PARTIAL and result.stopped_at_deadline
        assert result.text == ''            # nothing could be decoded in time
        assert result.status_message == ('stopped at the 5 ms deadline: nothing translated '
                                          'yet, the text is empty')
        assert node.deadline_stops == 1 and node.window.misses() == 1
        # Switched off, the same request is decoded in full.
        answer = set_parameters(probe, '/tr5/translation_node', {'stop_at_deadline': False})
        assert answer[0].successful
        wait_until(lambda: not node.worker.setting.stop_at_deadline)
        late.id = 'late-again'
        publisher.publish(late)
        result = results.wait_for(lambda m: m.id == 'late-again', timeout=30)[0]
        assert not result.stopped_at_deadline and result.text != ''
        # A malformed stamp (negative seconds) is ignored, not fatal.
        broken = TranslationRequest(id='bad-stamp', text='Open the file')
        broken.header.stamp.sec = -5
        publisher.publish(broken)
        result = results.wait_for(lambda m: m.id == 'bad-stamp', timeout=30)[0]
        assert result.status == TranslationResult.STATUS_OK
    finally:
        ros.remove(node)


def test_the_deadline_margin_is_measured_from_the_requests_transport(ros, probe, tiny_files):
    node = start(ros, '/tr6', tiny_files, budget_ms=2000.0)
    try:
        def margin_on_diagnostics():
            stat = node._diagnose(DiagnosticStatusWrapper(name='translation'))
            return {kv.key: kv.value for kv in stat.values}['deadline_margin_ms']

        assert margin_on_diagnostics() == '6 (fixed)'   # nothing timed yet
        results, publisher = connect(probe, '/tr6')
        # Stamped half a second before they are sent, as a sensor's capture
        # time may be: the budget runs from the stamp, but the margin measures
        # the transport alone (counting the stamp's age would make it > 1 s).
        for i in range(25):
            sent = TranslationRequest(id=f'm{i}', text='Open the file')
            sent.header.stamp = (probe.get_clock().now() - Duration(seconds=0.5)).to_msg()
            publisher.publish(sent)
        answers = results.wait_for(lambda m: m.id == 'm24', timeout=60)
        assert answers[0].status == TranslationResult.STATUS_OK
        measured = node.margin.margin_ms()
        assert measured is not None and 0.5 <= measured < 500.0
        assert margin_on_diagnostics().endswith(' (measured)')
        answer = set_parameters(probe, '/tr6/translation_node', {'deadline_margin_auto': False,
                                                                  'deadline_margin_ms': 4.0})
        assert answer[0].successful
        wait_until(lambda: not node.worker.setting.deadline_margin_auto)
        assert margin_on_diagnostics() == '4 (fixed)'
    finally:
        ros.remove(node)


def test_the_beam_policy_is_checked_as_a_whole_in_every_mode(ros, probe, tiny_files):
    node = start(ros, '/tr6', tiny_files)           # fixed 5, dynamic values 1..5, 0.5..2
    target = 'tr6/translation_node'
    try:
        # Fixed mode does not use these, but keeps them: switching to dynamic
        # mode later would put a broken policy in force.
        for values, expected in [
            ({'bw_min': 6}, 'bw_min: 6 must not exceed bw_max 5'),
            ({'sigma_min': 3.0}, 'sigma_min: 3 must be below sigma_max 2'),
            ({'beam_width': 'five'}, "beam_width: must be an integer, got a string 'five'"),
        ]:
            for atomically in (True, False):
                result = set_parameters(probe, target, values, atomically=atomically)[0]
                assert not result.successful and expected in result.reason, result.reason
        # rclpy's plain set_parameters would set these one at a time: beam_mode,
        # then bw_min 4 (fits under bw_max 5), then refuse bw_max 2, leaving a
        # dynamic 4..5 policy nobody asked for. Here the request is refused whole.
        results = set_parameters(probe, target, {'beam_mode': 'dynamic', 'bw_min': 4,
                                                 'bw_max': 2})
        assert [r.successful for r in results] == [False, False, False]
        assert all('bw_min: 4 must not exceed bw_max 2' in r.reason for r in results)
        values = node.params.values()
        assert (values['beam_mode'], values['bw_min'], values['bw_max']) == ('fixed', 1, 5)
        assert node.worker.setting.beam.mode == 'fixed'
        # A valid policy whose parameters, one at a time, would pass through an
        # invalid one (bw_min 7 > bw_max 5) is set whole, through either service.
        results = set_parameters(probe, target, {'beam_mode': 'dynamic', 'bw_min': 7,
                                                 'bw_max': 9})
        assert all(r.successful for r in results), [r.reason for r in results]
        wait_until(lambda: node.worker.setting.beam.mode == 'dynamic')
        beam = node.worker.setting.beam
        assert (beam.bw_min, beam.bw_max) == (7, 9)
    finally:
        ros.remove(node)


def test_a_starting_worker_announces_itself_and_serves_once_set(ros, probe, tiny_files):
    # A restarted worker must not translate with its defaults while the
    # manager's setting is on its way: it subscribes once a set arrived.
    import os

    from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS
    from dyn_dnn_ros_interfaces.msg import WorkerHeartbeat
    beats = MessageCollector(probe, WorkerHeartbeat, '/tr_gate/worker_heartbeat',
                             qos=HEARTBEAT_QOS)
    node = start(ros, '/tr_gate', tiny_files, wait_for_setting_s=60.0)
    try:
        first = beats.wait_for(timeout=10)[0]
        assert first.node == '/tr_gate/translation_node' and first.pid == os.getpid()
        assert first.target == 'translation' and not first.serving
        assert first.operating_point == 'big' and math.isnan(first.budget_ms)
        publisher = probe.create_publisher(TranslationRequest, '/tr_gate/translation_requests',
                                           10)
        with pytest.raises(TimeoutError):
            wait_until(lambda: publisher.get_subscription_count() > 0, timeout=1.0)
        assert set_parameters(probe, '/tr_gate/translation_node',
                              {'operating_point': 'small', 'budget_ms': 80.0},
                              atomically=True)[0].successful
        serving = beats.wait_for(lambda m: m.serving, timeout=10)[0]
        assert (serving.operating_point, serving.budget_ms) == ('small', 80.0)
        assert serving.instance_id == first.instance_id
        wait_until(lambda: publisher.get_subscription_count() > 0, timeout=10)
    finally:
        ros.remove(node)
    # Without any set, a worker serves on its own after the wait.
    node = start(ros, '/tr_gate2', tiny_files, wait_for_setting_s=0.5)
    try:
        connect(probe, '/tr_gate2')
        assert node.presence.serving
        assert node.presence.instance_id != first.instance_id
    finally:
        ros.remove(node)
