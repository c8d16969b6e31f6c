"""Perception node: image classification with a switchable WeNet.

Subscribes ``image`` (sensor_msgs/Image; SensorData QoS by default, the
``qos`` parameter changes it) and publishes ``classification_results`` with
the image's header. Encodings rgb8, bgr8 and mono8 are decoded; anything
else, and images whose size, step and data length disagree, get a status
instead of a label. One image waits at most: the latest image wins.
"""

from dataclasses import dataclass
import math
import sys
import time

import numpy as np
from sensor_msgs.msg import Image
import torch

from dyn_dnn_ros.perception.preprocess import to_model_input
from dyn_dnn_ros.perception.wenet import GroupConfig, load_model
from dyn_dnn_ros.ros.diagnostics import ERROR, OK, WARN, Updater, guarded, text
from dyn_dnn_ros.ros.nodes.inference_node import InferenceNode
from dyn_dnn_ros.ros.params import ParameterSpec, ValidatedParameters
from dyn_dnn_ros.ros.qos import QOS_CHOICES, qos_profile
from dyn_dnn_ros.ros.spin import publish_while_running, run_node
from dyn_dnn_ros.ros.worker_presence import WAIT_FOR_SETTING
from dyn_dnn_ros.runtime.device import resolve_device
from dyn_dnn_ros.runtime.latency_window import LatencyWindow
from dyn_dnn_ros.runtime.policy import WORKER_BUDGET_MS_RANGE
from dyn_dnn_ros.runtime.rate_window import RateWindow
from dyn_dnn_ros.runtime.worker import InferenceWorker
from dyn_dnn_ros.runtime.worker_library import WorkerSetting
from dyn_dnn_ros.runtime.worker_parameters import BUDGET_MS, OPERATING_POINT, THREADS
from dyn_dnn_ros.share import library_path, model_path
from dyn_dnn_ros_interfaces.msg import ClassificationResult

NODE_NAME = 'perception_node'
CHANNELS = {'rgb8': 3, 'bgr8': 3, 'mono8': 1}
RATE_WINDOW_S = 5.0   # images/s on diagnostics is over this many recent seconds


@dataclass(frozen=True)
class Setting(WorkerSetting):
    """What one image is classified with: the point's groups and the labels to report."""

    groups: GroupConfig
    top_k: int


def decode_image(msg):
    """HxW or HxWx3 uint8 RGB array from a sensor_msgs/Image, or (None, status, why)."""
    if msg.encoding not in CHANNELS:
        return None, ClassificationResult.STATUS_BAD_ENCODING, (
            f'unsupported encoding {msg.encoding!r}; supported: {", ".join(CHANNELS)}')
    channels = CHANNELS[msg.encoding]
    if msg.width == 0 or msg.height == 0:
        return None, ClassificationResult.STATUS_BAD_IMAGE, (
            f'empty image ({msg.width}x{msg.height})')
    if msg.step < msg.width * channels:
        return None, ClassificationResult.STATUS_BAD_IMAGE, (
            f'step {msg.step} is shorter than width x channels = {msg.width * channels}')
    if len(msg.data) != msg.step * msg.height:
        return None, ClassificationResult.STATUS_BAD_IMAGE, (
            f'data holds {len(msg.data)} bytes, step x height = {msg.step * msg.height}')
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :msg.width * channels]
    if channels == 1:
        return pixels.reshape(msg.height, msg.width), ClassificationResult.STATUS_OK, ''
    image = pixels.reshape(msg.height, msg.width, 3)
    if msg.encoding == 'bgr8':
        image = image[..., ::-1]
    return image, ClassificationResult.STATUS_OK, ''


class PerceptionNode(InferenceNode):

    def __init__(self, saved_model=None, library=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.params = ValidatedParameters(self, [
            ParameterSpec(OPERATING_POINT, '', 'operating point of the library to run '
                          '("" = the best-quality point)', check=self.check_point),
            ParameterSpec('model_dir', '', 'trained WeNet folder ("" = shipped)',
                          read_only=True),
            ParameterSpec('library_path', '', 'operating-point library YAML '
                          '("" = config/generated/operating_points_perception_cpu.yaml)',
                          read_only=True),
            ParameterSpec('device', 'cpu', 'torch device', choices=('cpu', 'cuda', 'auto'),
                          read_only=True),
            ParameterSpec(THREADS, 1, 'torch CPU threads', integer_range=(1, 256)),
            ParameterSpec('qos', 'sensor_data', 'QoS of the image subscription',
                          choices=QOS_CHOICES, read_only=True),
            ParameterSpec('top_k', 3, 'labels reported per image', integer_range=(1, 100)),
            ParameterSpec(BUDGET_MS, 0.0, 'latency budget in force, reported with each '
                          'result and on diagnostics (0 = none)',
                          float_range=WORKER_BUDGET_MS_RANGE),
            WAIT_FOR_SETTING,
        ], apply=self._apply)
        self.load_library('perception', library_path('perception', 'cpu'), library)
        self.refuse_bad_start_values()
        self.device = torch.device(resolve_device(self.params.value('device')))
        model_dir = self.params.value('model_dir') or model_path('perception', 'wenet')

        def load():
            saved = saved_model if saved_model is not None else load_model(model_dir)
            saved.model.to(self.device).eval()
            self.worker_library.check_points(   # every point must run on this model
                lambda point: saved.model.space.validate(GroupConfig.from_dict(point.subnet)))
            return saved

        self.window = LatencyWindow()
        self.received = 0
        self.bad_images = 0
        self.last_error = ''
        self.rate = RateWindow(seconds=RATE_WINDOW_S)   # images received per second
        # The worker thread loads the model: inference is fastest on that thread.
        self.worker = InferenceWorker(self._classify, self._publish_finished,
                                      self._publish_dropped, depth=1,
                                      setting=self._setting(), name='perception', setup=load)
        self.saved = self.worker.setup_result
        self.model = self.saved.model
        self.publisher = self.create_publisher(ClassificationResult,
                                               'classification_results', 10)
        self.updater = Updater(self)
        self.updater.setHardwareID(str(self.device))
        self.updater.add('perception', guarded(self._diagnose))
        self.announce('perception', self._subscribe)

    def _subscribe(self):
        self.create_subscription(Image, 'image', self._on_image,
                                 qos_profile(self.params.value('qos')))

    # -- parameters -------------------------------------------------------------
    def _setting(self):
        values = self.params.values()
        point = self.worker_library.point(values)
        return self.worker_library.setting(values, Setting,
                                           groups=GroupConfig.from_dict(point.subnet),
                                           top_k=values['top_k'])

    def _apply(self, changed):
        self.put_in_force(self._setting())

    # -- images -------------------------------------------------------------------
    def _result(self, header, setting):
        return ClassificationResult(header=header, operating_point=setting.point, label=-1,
                                    budget_ms=setting.budget_ms or math.nan,
                                    threads=setting.threads)

    def _on_image(self, msg):
        self.received += 1
        self.rate.tick()
        image, status, why = decode_image(msg)
        if image is None:
            self.bad_images += 1
            result = self._result(msg.header, self.worker.setting)
            result.status, result.status_message = status, why
            result.latency_ms = math.nan
            self.publisher.publish(result)
            return
        self.worker.submit((msg.header, image))

    def _classify(self, job, setting):
        """Runs on the worker thread, the only thread that touches the model."""
        _, image = job
        if torch.get_num_threads() != setting.threads:
            torch.set_num_threads(setting.threads)
        started = time.perf_counter()
        if self.model.groups != setting.groups:
            self.model.set_groups(setting.groups)
        x = to_model_input(image, self.saved.preprocess).to(self.device)
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(x)[0], dim=-1)
        k = min(setting.top_k, probabilities.numel())
        scores, labels = probabilities.topk(k)
        return scores.tolist(), labels.tolist(), (time.perf_counter() - started) * 1000.0

    def _publish_finished(self, finished):
        header, _ = finished.job
        result = self._result(header, finished.setting)
        if finished.error:
            result.status = ClassificationResult.STATUS_ERROR
            result.status_message = finished.error
            result.latency_ms = finished.run_s * 1000.0
            self.last_error = finished.error
        else:
            scores, labels, latency_ms = finished.output
            result.status = ClassificationResult.STATUS_OK
            result.label, result.score = labels[0], scores[0]
            result.label_name = self.saved.classes[labels[0]]
            result.top_k_labels, result.top_k_scores = labels, scores
            result.latency_ms = latency_ms
            self.window.add(latency_ms, finished.setting.budget_ms)
        publish_while_running(self, self.publisher, result)

    def _publish_dropped(self, job, reason):
        pass  # latest image wins: a superseded camera frame needs no answer

    # -- diagnostics ----------------------------------------------------------------
    def _diagnose(self, stat):
        setting = self.worker.setting
        misses = self.window.misses()
        rate = self.rate.rate()
        if self.last_error:
            stat.summary(ERROR, f'last image failed: {self.last_error}')
        elif misses:
            stat.summary(WARN, f'{misses} of the last {len(self.window.samples)} results '
                               f'over the {setting.budget_ms:g} ms budget')
        else:
            stat.summary(OK, f'{setting.point}: {rate:.1f} images/s')
        self.last_error = ''
        stat.add('operating_point', str(setting.point))
        stat.add('groups', setting.groups.key())
        stat.add('threads', text(setting.threads))
        stat.add('budget_ms', text(setting.budget_ms))
        stat.add('rate_hz', text(rate))
        self.window.report(stat)
        stat.add('received', text(self.received))
        stat.add('superseded', text(self.worker.dropped))
        stat.add('bad_images', text(self.bad_images))
        stat.add('errors', text(self.worker.errors))
        return stat


def main(args=None):
    return run_node(PerceptionNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
