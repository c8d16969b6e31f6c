"""The perception node over real DDS with the shipped WeNet weights and real digits."""

import math

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import MessageCollector, set_parameters, wait_until
from sensor_msgs.msg import Image
from sklearn.datasets import load_digits

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.perception.wenet import load_model
from dyn_dnn_ros.ros.diagnostics import DiagnosticStatusWrapper
from dyn_dnn_ros.ros.nodes.perception import RATE_WINDOW_S, PerceptionNode
from dyn_dnn_ros.share import model_path
from dyn_dnn_ros_interfaces.msg import ClassificationResult

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def saved():
    return load_model(model_path('perception', 'wenet'))


def library(saved):
    space = saved.model.space
    full, small = space.full(), space.smallest()
    return OperatingPointLibrary('perception', 'cpu', 'accuracy', [
        OperatingPoint('full', 'perception', full.to_dict(), {1: 2.0}, 0.99),
        OperatingPoint('small', 'perception', small.to_dict(), {1: 0.5}, 0.9),
    ])


def start(ros, namespace, saved, **parameters):
    parameters.setdefault('wait_for_setting_s', 0.0)   # serve at once
    return ros.add(PerceptionNode(
        saved_model=saved, library=library(saved), context=ros.context, namespace=namespace,
        parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]))


def digit_image(index, encoding='mono8', frame='camera'):
    digits = load_digits()
    grey = (digits.images[index] / 16.0 * 255).astype(np.uint8)
    if encoding == 'mono8':
        pixels, step = grey, 8
    else:
        pixels, step = np.repeat(grey[..., None], 3, axis=2), 24
    msg = Image(height=8, width=8, encoding=encoding, step=step,
                data=pixels.tobytes())
    msg.header.frame_id = frame
    msg.header.stamp.sec = 100 + index
    return msg, int(digits.target[index])


def test_classifies_real_digits_in_each_encoding(ros, probe, saved):
    node = start(ros, '/p1', saved, budget_ms=50.0)
    try:
        results = MessageCollector(probe, ClassificationResult, '/p1/classification_results')
        images = probe.create_publisher(Image, '/p1/image', qos_profile_sensor_data)
        wait_until(lambda: images.get_subscription_count() > 0)
        correct = 0
        for index, encoding in [(0, 'mono8'), (1, 'rgb8'), (2, 'bgr8'), (3, 'mono8'),
                                (4, 'rgb8')]:
            msg, label = digit_image(index, encoding)
            images.publish(msg)
            result = results.wait_for(lambda m, s=msg.header.stamp.sec: m.header.stamp.sec == s,
                                      timeout=20)[0]
            assert result.status == ClassificationResult.STATUS_OK
            assert result.header.frame_id == 'camera'
            assert result.operating_point == 'full' and result.budget_ms == 50.0
            assert len(result.top_k_labels) == 3 and result.top_k_labels[0] == result.label
            assert 0.0 < result.score <= 1.0 and result.latency_ms > 0
            assert result.label_name == str(result.label)
            correct += result.label == label
        assert correct >= 4   # the shipped model is > 95 % accurate on digits

        # Images/s on diagnostics is a recent rate: five images just now, then
        # none once the window has passed (an average since start never drops).
        def diagnose():
            stat = node._diagnose(DiagnosticStatusWrapper(name='perception'))
            return {kv.key: kv.value for kv in stat.values}, stat.message

        values, message = diagnose()
        assert float(values['rate_hz']) > 0 and values['received'] == '5'
        later = node.rate.clock() + RATE_WINDOW_S + 1.0
        node.rate.clock = lambda: later
        values, message = diagnose()
        assert values['rate_hz'] == '0' and message.endswith(': 0.0 images/s')
    finally:
        ros.remove(node)


@pytest.mark.parametrize('change, status, words', [
    (dict(encoding='16UC1'), ClassificationResult.STATUS_BAD_ENCODING, 'unsupported encoding'),
    (dict(data=b'\x00' * 10), ClassificationResult.STATUS_BAD_IMAGE, 'data holds 10 bytes'),
    (dict(width=0, height=0, step=0, data=b''), ClassificationResult.STATUS_BAD_IMAGE, 'empty'),
    (dict(step=4), ClassificationResult.STATUS_BAD_IMAGE, 'step 4'),
])
def test_bad_images_get_a_status_and_the_node_keeps_serving(ros, probe, saved, change, status,
                                                            words):
    node = start(ros, '/p2', saved)
    try:
        results = MessageCollector(probe, ClassificationResult, '/p2/classification_results')
        images = probe.create_publisher(Image, '/p2/image', qos_profile_sensor_data)
        wait_until(lambda: images.get_subscription_count() > 0)
        bad, _ = digit_image(5, frame='bad')
        for key, value in change.items():
            setattr(bad, key, value)
        images.publish(bad)
        result = results.wait_for(lambda m: m.header.frame_id == 'bad', timeout=20)[0]
        assert result.status == status and words in result.status_message
        assert result.label == -1 and math.isnan(result.latency_ms)
        good, _ = digit_image(6, frame='good')
        images.publish(good)
        assert results.wait_for(lambda m: m.header.frame_id == 'good',
                                timeout=20)[0].status == ClassificationResult.STATUS_OK
        assert node.bad_images == 1
    finally:
        ros.remove(node)


def test_operating_point_parameter_switches_and_rejects_unknown(ros, probe, saved):
    node = start(ros, '/p3', saved)
    try:
        result = set_parameters(probe, 'p3/perception_node', {'operating_point': 'tiny'})[0]
        assert not result.successful and 'known: full, small' in result.reason
        assert set_parameters(probe, 'p3/perception_node',
                              {'operating_point': 'small'})[0].successful
        wait_until(lambda: node.worker.setting.point == 'small')
        results = MessageCollector(probe, ClassificationResult, '/p3/classification_results')
        images = probe.create_publisher(Image, '/p3/image', qos_profile_sensor_data)
        wait_until(lambda: images.get_subscription_count() > 0)
        msg, _ = digit_image(7, frame='after')
        images.publish(msg)
        result = results.wait_for(lambda m: m.header.frame_id == 'after', timeout=20)[0]
        assert result.operating_point == 'small'
        assert node.model.groups == saved.model.space.smallest()
    finally:
        ros.remove(node)


def test_the_manager_switches_the_perception_worker(ros, probe, saved, tmp_path):
    from ros_harness import call_service

    from dyn_dnn_ros.ros.nodes.manager import ManagerNode
    from dyn_dnn_ros_interfaces.msg import HardwareAvailability
    from dyn_dnn_ros_interfaces.srv import SetLatencyBudget

    library_path = tmp_path / 'perception_library.yaml'
    library(saved).save(library_path)
    node = start(ros, '/p4', saved)
    manager = ros.add(ManagerNode(context=ros.context, namespace='/p4', parameter_overrides=[
        Parameter('targets', value='perception'),
        Parameter('perception_library', value=str(library_path))]))
    try:
        availability = probe.create_publisher(HardwareAvailability, '/p4/hardware_availability',
                                              10)
        wait_until(lambda: manager.targets['perception'].client.service_is_ready())
        availability.publish(HardwareAvailability(usable_threads=1, usable_cpus=1.0))

        def budget(ms):
            return call_service(probe, SetLatencyBudget, '/p4/set_latency_budget',
                                SetLatencyBudget.Request(target='perception', budget_ms=ms,
                                                         min_quality=math.nan))

        answer = budget(1.0)      # only 'small' (0.5 ms) fits 0.85 ms
        assert answer.success and answer.operating_point == 'small'
        wait_until(lambda: node.worker.setting.point == 'small')
        assert node.worker.setting.budget_ms == 1.0
        assert budget(10.0).operating_point == 'full'
        wait_until(lambda: node.worker.setting.point == 'full')
        refused = budget(-1.0)
        assert not refused.success and 'budget_ms' in refused.message
        assert node.worker.setting.point == 'full'
    finally:
        ros.remove(manager)
        ros.remove(node)
