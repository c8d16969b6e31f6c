"""Translation node: English -> German with a switchable SubTransformer.

Subscribes ``translation_requests`` (TranslationRequest) and
``translation_requests_text`` (std_msgs/String, for quick use), publishes
``translation_results`` (TranslationResult, with the request's header). The
operating point and beam policy are parameters: the manager switches them
with a parameter set, which is checked in the on-set callback and applied
after it succeeded, between two requests (a result always names the point
that produced it). Inference runs on a worker thread behind a bounded queue;
when it is full the oldest waiting request is answered with STATUS_DROPPED.

The engine (``translation/engines``) is the library's: CTranslate2 for the
shipped CPU library (torch is then never imported), torch for the CUDA one.
A library made for another engine, compute type, device or vocabulary map is
refused at start.
"""

from dataclasses import dataclass
import math
import sys
import time

from rclpy.time import Time
from std_msgs.msg import String

from dyn_dnn_ros.resources.cpu import allowed_cpu_count
from dyn_dnn_ros.ros.diagnostics import ERROR, OK, WARN, Updater, guarded, text
from dyn_dnn_ros.ros.nodes.inference_node import InferenceNode
from dyn_dnn_ros.ros.params import ParameterSpec, ValidatedParameters
from dyn_dnn_ros.ros.spin import publish_while_running, run_node
from dyn_dnn_ros.ros.worker_presence import WAIT_FOR_SETTING
from dyn_dnn_ros.runtime.deadline_margin import DeadlineMargin
from dyn_dnn_ros.runtime.device import resolve_device
from dyn_dnn_ros.runtime.latency_window import LatencyWindow
from dyn_dnn_ros.runtime.policy import WORKER_BUDGET_MS_RANGE
from dyn_dnn_ros.runtime.worker import SHUTTING_DOWN, InferenceWorker
from dyn_dnn_ros.runtime.worker_library import WorkerSetting
from dyn_dnn_ros.runtime.worker_parameters import (
    BEAM_METRIC,
    BEAM_MODE,
    BEAM_WIDTH,
    BUDGET_MS,
    BW_MAX,
    BW_MIN,
    OPERATING_POINT,
    SIGMA_MAX,
    SIGMA_MIN,
    THREADS,
)
from dyn_dnn_ros.share import library_path
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.engines import ENGINES, create_library_engine
from dyn_dnn_ros_interfaces.msg import TranslationRequest, TranslationResult

NODE_NAME = 'translation_node'
STATUS = {'ok': TranslationResult.STATUS_OK, 'truncated': TranslationResult.STATUS_TRUNCATED,
          'empty': TranslationResult.STATUS_EMPTY}


@dataclass(frozen=True)
class Setting(WorkerSetting):
    """Everything one request is translated with; swapped whole, never edited."""

    subnet: object
    beam: BeamPolicy
    max_source_tokens: int
    stop_at_deadline: bool = False
    deadline_margin_ms: float = 0.0
    deadline_margin_auto: bool = False

    def deadline(self, origin, margin_ms):
        """When decoding must end for a request that started at ``origin`` (monotonic)."""
        if not self.stop_at_deadline or not self.budget_ms > 0:
            return None
        return origin + (self.budget_ms - margin_ms) / 1000.0


@dataclass(frozen=True)
class Request:
    header: object
    id: str
    text: str
    origin: float  # time.monotonic() when the request was sent (its stamp) or received


# BeamPolicy fields whose parameter has another name.
BEAM_FIELD_PARAMETERS = {'mode': BEAM_MODE, 'width': BEAM_WIDTH, 'metric': BEAM_METRIC}


def beam_from(values):
    """The BeamPolicy the beam parameters describe (ValueError names the bad parameter).

    The policy is checked as a whole in every mode: a fixed-width policy keeps
    the dynamic parameters, and switching ``beam_mode`` alone would use them.
    """
    try:
        return BeamPolicy(mode=values[BEAM_MODE], width=values[BEAM_WIDTH],
                          bw_min=values[BW_MIN], bw_max=values[BW_MAX],
                          sigma_min=float(values[SIGMA_MIN]),
                          sigma_max=float(values[SIGMA_MAX]), metric=values[BEAM_METRIC])
    except ValueError as error:
        # BeamPolicy names its fields ("beam.width"); name the node's parameters.
        field, _, rest = str(error).partition(': ')
        field = field.removeprefix('beam.')
        raise ValueError(f'{BEAM_FIELD_PARAMETERS.get(field, field)}: {rest}') from None


class TranslationNode(InferenceNode):

    def __init__(self, engine=None, library=None, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.params = ValidatedParameters(self, [
            ParameterSpec(OPERATING_POINT, '', 'operating point of the library to run '
                          '("" = the best-quality point)', check=self.check_point),
            ParameterSpec(BEAM_MODE, 'fixed', 'beam search: fixed width or dynamic (dynamic: '
                          'torch engine only)',
                          choices=('fixed', 'dynamic')),
            ParameterSpec(BEAM_WIDTH, 5, 'fixed beam width', integer_range=(1, 16)),
            ParameterSpec(BW_MIN, 1, 'dynamic policy: narrowest beam', integer_range=(1, 16)),
            ParameterSpec(BW_MAX, 5, 'dynamic policy: widest beam', integer_range=(1, 16)),
            ParameterSpec(SIGMA_MIN, 0.5, 'dynamic policy: spread at or below which the '
                          'beam is widest', float_range=(0.0, 1000.0)),
            ParameterSpec(SIGMA_MAX, 2.0, 'dynamic policy: spread at or above which the '
                          'beam is narrowest', float_range=(0.0, 1000.0)),
            ParameterSpec(BEAM_METRIC, 'std', 'dynamic policy: spread of the top-k scores '
                          '(std) or gap between the best two (gap)', choices=('std', 'gap')),
            ParameterSpec('model_path', '', 'SuperTransformer safetensors ("" = shipped)',
                          read_only=True),
            ParameterSpec('spm_path', '', 'SentencePiece model ("" = shipped)', read_only=True),
            ParameterSpec('library_path', '', 'operating-point library YAML '
                          '("" = config/generated/operating_points_translation_<device>.yaml)',
                          read_only=True),
            ParameterSpec('device', 'cpu', 'inference device', choices=('cpu', 'cuda', 'auto'),
                          read_only=True),
            ParameterSpec('engine', '', 'inference engine: torch or ctranslate2 ("" = the '
                          "library's); a library made for another is refused",
                          choices=('', *ENGINES), read_only=True),
            ParameterSpec('model_cache_dir', '', 'folder of exported CTranslate2 models ("" = '
                          'the user cache folder)', read_only=True),
            ParameterSpec('vocabulary_map_path', '', 'CTranslate2 target shortlist, used when '
                          'the library was measured with one; it must be that map ("" = '
                          'shipped)', read_only=True),
            ParameterSpec(THREADS, 0, 'CPU threads of inference (the manager sets it); 0 = '
                          'the count the library measured fastest for the point in force, '
                          'within the usable CPUs', integer_range=(0, 256)),
            ParameterSpec('queue_depth', 8, 'requests waiting at most; the oldest is dropped '
                          'beyond', integer_range=(1, 10000)),
            ParameterSpec('max_source_tokens', 0, 'longer sources are truncated at a token '
                          'boundary (0 = the most the model was trained for)',
                          integer_range=(0, 4096)),
            ParameterSpec('qos_depth', 1000, 'history depth of the request and result topics: '
                          'deep enough that a burst is queued by DDS, not lost',
                          integer_range=(1, 100000), read_only=True),
            ParameterSpec(BUDGET_MS, 0.0, 'latency budget in force, reported with each '
                          'result and on diagnostics (0 = none)',
                          float_range=WORKER_BUDGET_MS_RANGE),
            ParameterSpec('stop_at_deadline', True, 'with a budget, stop decoding in time to '
                          'answer within it (counted from the request stamp) and return the '
                          'best hypothesis found by then'),
            WAIT_FOR_SETTING,
            ParameterSpec('deadline_margin_ms', 6.0, 'time kept back from the budget for '
                          'publishing the result and its transport (with deadline_margin_auto: '
                          'until it is measured)', float_range=(0.0, 1000.0)),
            ParameterSpec('deadline_margin_auto', True, 'measure that time from recent '
                          'requests: twice their transport plus publishing, 95th percentiles'),
        ], apply=self._apply, check_together=self._check_together)
        device = resolve_device(self.params.value('device'))
        self.load_library('translation', library_path('translation', device.split(':')[0]),
                          library)
        self.engine_name = self.params.value('engine') or self.library.engine
        self.worker_library.check_runs_on(self.engine_name, device.split(':')[0])
        self.refuse_bad_start_values()
        values = self.params.values()
        setting = self._setting(values)

        def load():
            loaded = engine
            if loaded is None:   # the library's engine (check_runs_on above), as measured
                loaded = create_library_engine(
                    self.library, values['vocabulary_map_path'],
                    where=self.worker_library.where, device=device,
                    model_path=values['model_path'] or None,
                    spm_path=values['spm_path'] or None,
                    cache_dir=values['model_cache_dir'] or None)
            else:
                self.library.check_vocabulary_map(loaded.vocabulary_map_sha256,
                                                  where=self.worker_library.where)
            # Every point is loaded (CTranslate2) and every thread count warmed
            # up now, not with a request's budget: a switch is then a lookup.
            threads = sorted(self._measured_threads() or {1})
            self.worker_library.check_points(   # every point must run on this model
                lambda point: loaded.prepare([point.subnet], beam=point.beam or setting.beam,
                                             threads=threads))
            loaded.prepare([setting.subnet], beam=setting.beam, threads=[setting.threads])
            return loaded
        self.window = LatencyWindow()
        self.received = 0
        self.published = 0
        self.deadline_stops = 0
        self.margin = DeadlineMargin()
        self.last_error = ''
        # The worker thread loads the model: inference is fastest on that thread.
        self.worker = InferenceWorker(self._translate, self._publish_finished,
                                      self._publish_dropped, values['queue_depth'],
                                      setting=setting, name='translation', setup=load)
        self.translator = self.worker.setup_result
        longest = self.translator.longest_source
        if values['max_source_tokens'] > longest:
            self.worker.stop()
            raise ValueError(f'max_source_tokens: the model has {longest} source positions, '
                             f'got {values["max_source_tokens"]}')
        self.publisher = self.create_publisher(TranslationResult, 'translation_results',
                                               self.params.value('qos_depth'))
        self.updater = Updater(self)
        self.updater.setHardwareID(f'{device} {self.engine_name} {self.library.compute_type}')
        self.updater.add('translation', guarded(self._diagnose))
        self.announce('translation', self._subscribe)

    def _subscribe(self):
        depth = self.params.value('qos_depth')
        self.create_subscription(TranslationRequest, 'translation_requests',
                                 self._on_request, depth)
        self.create_subscription(String, 'translation_requests_text', self._on_text, depth)

    # -- parameters -------------------------------------------------------------
    @staticmethod
    def _fastest_threads(point):
        """``point``'s fastest measured thread count within the usable CPUs, or None."""
        usable = allowed_cpu_count()
        measured = {int(t): ms for t, ms in point.latency_ms.items() if int(t) <= usable}
        return min(measured, key=measured.get) if measured else None

    def _measured_threads(self):
        """Thread counts the manager may choose: the fastest usable count of some point.

        The manager runs a point on its fastest thread count; a count slower
        for every point (CTranslate2 int8 on two threads of a small CPU) is
        loaded only if it is ever asked for, and its memory saved until then.
        """
        return {self._fastest_threads(point) for point in self.library.points} - {None}

    def _check_together(self, values):
        try:
            beam = beam_from(values)
        except ValueError as error:
            return str(error)
        engine = getattr(self, 'engine_name', 'torch')
        if beam.mode == 'dynamic' and engine != 'torch':
            return (f'{BEAM_MODE}: dynamic beam width is a feature of the torch engine; this '
                    f'node runs {engine} (fixed widths)')
        translator = getattr(self, 'translator', None)
        if translator is not None:
            longest = translator.longest_source
            if values['max_source_tokens'] > longest:
                return (f'max_source_tokens: the model has {longest} source positions, got '
                        f'{values["max_source_tokens"]}')
        return None

    def _setting(self, values):
        point = self.worker_library.point(values)
        # Threads 0 starts the point where the library measured it fastest: on
        # a small CPU, CTranslate2 on every core is slower than on one, and
        # loading a model on more threads than it needs costs start-up time.
        threads = values[THREADS] or self._fastest_threads(point) or 1
        return self.worker_library.setting(
            dict(values, **{THREADS: threads}), Setting,
            subnet=SubnetConfig.from_dict(point.subnet),
            beam=beam_from(values), max_source_tokens=values['max_source_tokens'],
            stop_at_deadline=values['stop_at_deadline'],
            deadline_margin_ms=float(values['deadline_margin_ms']),
            deadline_margin_auto=values['deadline_margin_auto'])

    def _margin(self, setting):
        """(Milliseconds to keep back from the budget now, whether they were measured)."""
        measured = self.margin.margin_ms() if setting.deadline_margin_auto else None
        return (setting.deadline_margin_ms, False) if measured is None else (measured, True)

    def _apply(self, changed):
        if 'queue_depth' in changed:
            self.worker.set_depth(changed['queue_depth'])
        # One new Setting from all current values: a point and its beam policy
        # set together in one atomic parameter set switch together.
        self.put_in_force(self._setting(self.params.values()))

    # -- requests -----------------------------------------------------------------
    def _on_request(self, msg, info):
        self.received += 1
        origin = time.monotonic()
        # The way in, from DDS's own stamps (the writer's clock when it was
        # sent): a header stamp may be a sensor's capture time, long before.
        self.margin.add_way_in((time.time_ns() - info['source_timestamp']) / 1e9)
        stamp = msg.header.stamp
        if stamp.sec or stamp.nanosec:
            # The budget runs from when the request was sent, not when it arrived.
            try:
                age = (self.get_clock().now() - Time.from_msg(stamp)).nanoseconds / 1e9
            except ValueError:      # a malformed stamp (negative seconds)
                age = -1.0
            if 0.0 <= age < 60.0:   # a stamp from another clock is ignored
                origin -= age
        self.worker.submit(Request(msg.header, msg.id, msg.text, origin))
        # Hand the GIL over now: the worker thread just woken starts at once
        # instead of waiting for this executor to rebuild its wait set.
        time.sleep(0)

    def _on_text(self, msg):
        self.received += 1
        request = TranslationRequest()
        request.header.stamp = self.get_clock().now().to_msg()
        self.worker.submit(Request(request.header, f'text-{self.received}', msg.data,
                                   time.monotonic()))

    def _translate(self, request, setting):
        """Runs on the worker thread, the only thread that touches the model."""
        started = time.perf_counter()
        outcome = self.translator.translate([request.text], subnet=setting.subnet,
                                            beam=setting.beam, threads=setting.threads,
                                            deadline=setting.deadline(
                                                request.origin, self._margin(setting)[0]),
                                            max_source_tokens=setting.max_source_tokens)[0]
        return outcome, (time.perf_counter() - started) * 1000.0

    def _result(self, request, setting):
        result = TranslationResult(header=request.header, id=request.id,
                                   operating_point=setting.point,
                                   budget_ms=setting.budget_ms or math.nan)
        result.decoder_layers = setting.subnet.decoder_layers
        result.threads = setting.threads
        return result

    def _publish_finished(self, finished):
        result = self._result(finished.job, finished.setting)
        result.queue_ms = finished.queued_s * 1000.0
        if finished.error:
            result.status = TranslationResult.STATUS_ERROR
            result.status_message = finished.error
            result.latency_ms = finished.run_s * 1000.0
            self.last_error = finished.error
            self.get_logger().error(f'request {finished.job.id!r} failed: {finished.error}')
        else:
            outcome, latency_ms = finished.output
            result.text = outcome.text
            result.status = STATUS[outcome.status]
            result.status_message = {
                'ok': '', 'empty': 'the request held no text',
                'truncated': f'source cut to {outcome.source_tokens} tokens'}[outcome.status]
            if outcome.cut:
                # An answer stopped at its deadline is incomplete: never OK.
                result.status = TranslationResult.STATUS_PARTIAL
                result.status_message = (
                    f'stopped at the {finished.setting.budget_ms:g} ms deadline: '
                    + ('incomplete translation' if outcome.text
                       else 'nothing translated yet, the text is empty')
                    + (f'; {result.status_message}' if result.status_message else ''))
            result.average_beam_width = float(outcome.avg_width)
            result.stopped_at_deadline = outcome.cut
            if outcome.cut:
                self.deadline_stops += 1
            result.latency_ms = latency_ms
            if outcome.status != 'empty':
                self.window.add(latency_ms, finished.setting.budget_ms, cut=outcome.cut)
        self._publish(result)

    def _publish_dropped(self, request, reason):
        result = self._result(request, self.worker.setting)
        result.status = TranslationResult.STATUS_DROPPED
        result.status_message = ('shutting down: the request was not translated'
                                 if reason == SHUTTING_DOWN else
                                 'request queue full: dropped the oldest waiting request')
        result.latency_ms = math.nan
        self._publish(result)

    def _publish(self, result):
        # Once the context is shut down there is nobody to tell: drop silently.
        began = time.perf_counter()
        if publish_while_running(self, self.publisher, result):
            self.margin.add_publish(time.perf_counter() - began)
            self.published += 1

    # -- diagnostics ----------------------------------------------------------------
    def _diagnose(self, stat):
        setting = self.worker.setting
        p95 = self.window.percentile(95)
        misses = self.window.misses()
        if self.last_error:
            stat.summary(ERROR, f'last request failed: {self.last_error}')
        elif misses:
            stat.summary(WARN, f'{misses} of the last {len(self.window.samples)} results '
                               f'over the {setting.budget_ms:g} ms budget or cut at it')
        else:
            stat.summary(OK, f'{setting.point}: p95 {p95:.1f} ms' if self.window.samples
                         else f'{setting.point}: waiting for requests')
        self.last_error = ''
        stat.add('engine', f'{self.engine_name} {self.library.compute_type}')
        digest = self.library.vocabulary_map_sha256
        stat.add('vocabulary_map', f'sha256 {digest[:12]}' if digest else 'whole vocabulary')
        stat.add('operating_point', str(setting.point))
        stat.add('decoder_layers', text(setting.subnet.decoder_layers))
        stat.add('beam', setting.beam.describe())
        stat.add('threads', text(setting.threads))
        stat.add('budget_ms', text(setting.budget_ms))
        margin_ms, measured = self._margin(setting)
        stat.add('deadline_margin_ms',
                 text(margin_ms) + (' (measured)' if measured else ' (fixed)'))
        self.window.report(stat)
        stat.add('queue_depth', text(self.worker.queue_depth))
        stat.add('received', text(self.received))
        stat.add('published', text(self.published))
        stat.add('dropped', text(self.worker.dropped))
        stat.add('stopped_at_deadline', text(self.deadline_stops))
        stat.add('errors', text(self.worker.errors))
        return stat


def main(args=None):
    return run_node(TranslationNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
