"""Manager node: meets latency budgets by switching the workers' operating points.

Services (relative names, so they follow the namespace):
``set_latency_budget``, ``list_operating_points``, ``force_operating_point``.
Subscribes the resource monitor's ``hardware_availability`` and each
worker's results; decides with ``dyn_dnn_ros.runtime`` (closed-loop expected
latency, step down at once, step up after on-time results, conservative on
stale resource data) and applies a decision by setting the worker's
parameters atomically through its parameter service. The protocol of that
(answers, refusals, timeouts, restarts, what is in force) is
``dyn_dnn_ros.runtime.application``; this node carries out its requests
with a service client and feeds it the answers, heartbeats and results.

Service answers (docs/manager.md has the user's view): ``success``
is true when the request was valid and its decision is being put in force
(the worker's acceptance follows asynchronously and shows on diagnostics);
a budget or minimum quality no worker could take is refused with
``success`` false and changes nothing. ``message`` says what is in force,
prefixed with ``WARNING:`` when the choice is not expected to meet the
budget.
"""

import dataclasses
from dataclasses import dataclass
import math
import sys
import time

from diagnostic_msgs.msg import KeyValue
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.node import Node
from rclpy.parameter import Parameter

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.ros.diagnostics import ERROR, OK, STALE, WARN, Updater, guarded, text
from dyn_dnn_ros.ros.params import ParameterSpec, ValidatedParameters
from dyn_dnn_ros.ros.spin import run_node
from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS, HEARTBEAT_TOPIC
from dyn_dnn_ros.runtime.application import ApplicationConfig, DecisionApplication, Severity
from dyn_dnn_ros.runtime.controller import ControllerConfig, TargetController
from dyn_dnn_ros.runtime.policy import LatencyModel, PolicyConfig
from dyn_dnn_ros.runtime.worker_parameters import parameter_values
from dyn_dnn_ros.share import library_path
from dyn_dnn_ros_interfaces.msg import BeamPolicy as BeamPolicyMsg
from dyn_dnn_ros_interfaces.msg import (
    ClassificationResult,
    HardwareAvailability,
    TranslationResult,
    WorkerHeartbeat,
)
from dyn_dnn_ros_interfaces.msg import OperatingPoint as OperatingPointMsg
from dyn_dnn_ros_interfaces.srv import ForceOperatingPoint, ListOperatingPoints, SetLatencyBudget

NODE_NAME = 'dnn_manager'


@dataclass(frozen=True)
class TargetSpec:
    name: str
    library: str
    worker: str
    results_topic: str
    result_type: type
    ok_statuses: tuple


TARGETS = {
    'translation': TargetSpec('translation', '', 'translation_node',
                              'translation_results', TranslationResult,
                              (TranslationResult.STATUS_OK, TranslationResult.STATUS_TRUNCATED,
                               TranslationResult.STATUS_PARTIAL)),
    'perception': TargetSpec('perception', '',
                             'perception_node', 'classification_results', ClassificationResult,
                             (ClassificationResult.STATUS_OK,)),
}


def point_message(point, library):
    subnet = [KeyValue(key=k, value=str(v)) for k, v in point.subnet.items()]
    msg = OperatingPointMsg(name=point.name, target=library.target, subnet=subnet,
                            predicted_latency_ms=float(point.predicted_latency_ms),
                            quality=float(point.quality), quality_metric=library.quality_metric)
    threads = sorted(point.latency_ms)
    msg.measured_threads = threads
    msg.measured_latency_ms = [float(point.latency_ms[t]) for t in threads]
    if point.beam is not None:
        msg.has_beam_policy = True
        b = point.beam
        msg.beam_policy = BeamPolicyMsg(mode=b.mode, width=b.width, bw_min=b.bw_min,
                                        bw_max=b.bw_max, sigma_min=float(b.sigma_min),
                                        sigma_max=float(b.sigma_max), metric=b.metric)
    return msg


class Target:
    """One managed worker: its controller, the protocol applying its decisions, its client."""

    def __init__(self, node, spec, library, controller, application):
        self.spec = spec
        self.library = library
        self.controller = controller
        self.application = application
        self.worker = spec.worker
        self.client = node.create_client(SetParametersAtomically,
                                         f'{spec.worker}/set_parameters_atomically')
        self.pending = None      # (SetRequest, future) of the last call sent
        self.results = 0
        self.misses = 0
        self.deadline_stops = 0  # results the worker stopped at the deadline

    @property
    def rejected(self):
        """The worker's reason for refusing the decision ('' when it did not)."""
        return self.application.rejected

    @property
    def set_failures(self):
        return self.application.set_failures


class ManagerNode(Node):

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self.params = ValidatedParameters(self, [
            ParameterSpec('targets', 'translation,perception', 'comma-separated targets to '
                          'manage', read_only=True, check=self._check_targets),
            ParameterSpec('translation_library', '', 'translation operating-point library '
                          '("" = config/generated/operating_points_translation_cpu.yaml)',
                          read_only=True),
            ParameterSpec('translation_worker', 'translation_node', 'translation node name '
                          '(relative to this namespace, or absolute)', read_only=True),
            ParameterSpec('perception_library', '', 'perception operating-point library '
                          '("" = config/generated/operating_points_perception_cpu.yaml)',
                          read_only=True),
            ParameterSpec('perception_worker', 'perception_node', 'perception node name',
                          read_only=True),
            ParameterSpec('safety_margin', 0.9, 'a point fits when its tail latency estimate '
                          'is at most this fraction of the budget', float_range=(0.05, 1.0)),
            ParameterSpec('ewma_alpha', 0.2, 'weight of the newest measured/library latency '
                          'ratio', float_range=(0.01, 1.0)),
            ParameterSpec('prior_spread', PolicyConfig.prior_spread, 'spread of the '
                          'measured/library latency ratio assumed before results come in',
                          float_range=(0.0, 1.0)),
            ParameterSpec('tail_quantile', PolicyConfig.tail_quantile, 'share of complete '
                          'answers a chosen point should deliver within the budget: the '
                          'quantile of recent latency spread planned with (0 = use tail_z)',
                          float_range=(0.0, 0.999)),
            ParameterSpec('tail_z', 1.65, 'standard deviations of the latency ratio above its '
                          'mean planned with until enough results are in',
                          float_range=(0.0, 5.0)),
            ParameterSpec('censored_factor', PolicyConfig.censored_factor, 'a result the '
                          'worker stopped at its deadline (a miss) is learnt as this multiple '
                          'of the budget', float_range=(1.0, 10.0)),
            ParameterSpec('step_up_after', 5, 'on-time results before stepping up',
                          integer_range=(1, 1000)),
            ParameterSpec('step_down_after', 1, 'misses in a row that step down even when the '
                          'statistics say the point fits', integer_range=(1, 1000)),
            ParameterSpec('stale_after_s', 3.0, 'resource information older than this is '
                          'stale', float_range=(0.1, 3600.0)),
            ParameterSpec('rise_after_s', 1.0, 'more usable threads are planned with once '
                          'reported this long', float_range=(0.0, 3600.0)),
            ParameterSpec('drop_after_s', 0.3, 'fewer usable threads are planned with once '
                          'reported this long (one noisy sample does not switch)',
                          float_range=(0.0, 60.0)),
            ParameterSpec('worker_timeout_s', 1.5, 'a worker whose announcements stop for '
                          'this long is reported lost', float_range=(0.1, 3600.0)),
            ParameterSpec('control_period_s', 0.25, 'seconds between staleness and worker '
                          'checks', float_range=(0.01, 60.0), read_only=True),
        ], apply=self._apply_tuning)
        problems = self.params.startup_problems()
        if problems:
            raise ValueError('; '.join(problems))

        self.targets = {}
        self.disabled = {}
        for name in [t.strip() for t in self.params.value('targets').split(',') if t.strip()]:
            spec = TARGETS[name]
            spec = TargetSpec(name, self.params.value(f'{name}_library') or
                              str(library_path(name, 'cpu')),
                              self.params.value(f'{name}_worker'), spec.results_topic,
                              spec.result_type, spec.ok_statuses)
            try:
                library = OperatingPointLibrary.load(spec.library)
                if library.target != name:
                    raise ValueError(f'{spec.library}: is a {library.target} library')
            except ValueError as error:
                self.disabled[name] = str(error)
                self.get_logger().warning(f'{name} not managed: {error}')
                continue
            target = Target(self, spec, library, self._controller(library),
                            DecisionApplication(name, spec.worker, self._application_config()))
            self.targets[name] = target
            self.create_subscription(spec.result_type, spec.results_topic,
                                     lambda msg, t=target: self._on_result(t, msg), 100)

        self.availability = None
        self.availability_time = math.nan
        self.create_subscription(WorkerHeartbeat, HEARTBEAT_TOPIC, self._on_heartbeat,
                                 HEARTBEAT_QOS)
        self.create_subscription(HardwareAvailability, 'hardware_availability',
                                 self._on_availability, 10)
        self.create_service(SetLatencyBudget, 'set_latency_budget', self._set_budget)
        self.create_service(ListOperatingPoints, 'list_operating_points', self._list_points)
        self.create_service(ForceOperatingPoint, 'force_operating_point', self._force_point)
        self.create_timer(self.params.value('control_period_s'), self._tick)
        self.updater = Updater(self)
        self.updater.setHardwareID('manager')
        self.updater.add('resources', guarded(self._diagnose_resources))
        for name in list(self.targets) + list(self.disabled):
            self.updater.add(name, guarded(lambda stat, n=name: self._diagnose_target(n, stat)))

    # -- configuration --------------------------------------------------------------
    @staticmethod
    def _check_targets(value):
        names = [t.strip() for t in value.split(',') if t.strip()]
        unknown = [n for n in names if n not in TARGETS]
        if unknown:
            return f'unknown target(s) {unknown}; known: {", ".join(TARGETS)}'
        return None

    def _configs(self):
        values = self.params.values()
        policy = PolicyConfig(safety_margin=values['safety_margin'],
                              ewma_alpha=values['ewma_alpha'], tail_z=values['tail_z'],
                              tail_quantile=values['tail_quantile'],
                              prior_spread=values['prior_spread'],
                              censored_factor=values['censored_factor'])
        control = ControllerConfig(step_up_after=values['step_up_after'],
                                   step_down_after=values['step_down_after'],
                                   stale_after_s=values['stale_after_s'],
                                   rise_after_s=values['rise_after_s'],
                                   drop_after_s=values['drop_after_s'])
        return policy, control

    def _application_config(self):
        return ApplicationConfig(worker_timeout_s=self.params.value('worker_timeout_s'))

    def _controller(self, library):
        policy, control = self._configs()
        return TargetController(LatencyModel(library, policy), control)

    def _apply_tuning(self, changed):
        policy, control = self._configs()
        application = self._application_config()
        for target in self.targets.values():
            target.controller.model.config = policy
            target.controller.config = control
            target.application.config = application

    # -- inputs -----------------------------------------------------------------------
    def _target(self, name):
        if name in self.targets:
            return self.targets[name], ''
        if name in self.disabled:
            return None, f'target {name!r} is not managed: {self.disabled[name]}'
        return None, f'unknown target {name!r}; known: {", ".join(self.targets) or "(none)"}'

    def _on_availability(self, msg):
        now = time.monotonic()
        self.availability, self.availability_time = msg, now
        for target in self.targets.values():
            decision = target.controller.on_availability(msg.usable_threads, now)
            if decision is not None:
                self._put_in_force(target, decision)

    def _worker_name(self, target):
        if target.worker.startswith('/'):
            return target.worker
        return f'{self.get_namespace().rstrip("/")}/{target.worker}'

    def _on_heartbeat(self, msg):
        target = next((t for t in self.targets.values()
                       if self._worker_name(t) == msg.node), None)
        if target is None:
            return
        self._log(target.application.heartbeat(msg.instance_id, msg.pid, msg.operating_point,
                                               msg.threads, time.monotonic(),
                                               serving=msg.serving))
        self._drop_void_call(target)
        # The first word from a worker, or a restarted one: it may be waiting for
        # its setting, so send it at once.
        self._send(target)

    def _on_result(self, target, msg):
        if msg.status not in target.spec.ok_statuses or not math.isfinite(msg.latency_ms):
            return
        target.results += 1
        ctl = target.controller
        cut = msg.status == TranslationResult.STATUS_PARTIAL if \
            target.spec.result_type is TranslationResult else False
        cut = cut or bool(getattr(msg, 'stopped_at_deadline', False))
        if math.isfinite(ctl.budget_ms) and (cut or msg.latency_ms > ctl.budget_ms):
            target.misses += 1  # a cut answer is incomplete: a miss however fast
        if msg.operating_point not in target.library.names:
            return
        self._log(target.application.result_seen(msg.operating_point))
        self._send(target)
        # Workers report the threads each result ran with; 0 is an older worker.
        threads = int(msg.threads) or ctl.threads or ctl.available_threads
        if cut:
            target.deadline_stops += 1
        decision = ctl.on_result(msg.operating_point, msg.latency_ms, threads, time.monotonic(),
                                 cut=cut)
        if decision is not None:
            self._put_in_force(target, decision)

    # -- services ---------------------------------------------------------------------
    def _set_budget(self, request, response):
        target, problem = self._target(request.target)
        if target is None:
            response.success, response.message = False, problem
            return response
        min_quality = request.min_quality
        if math.isnan(min_quality) or min_quality <= 0:
            min_quality = None   # NaN or <= 0: no minimum (see the .srv)
        try:
            decision = target.controller.set_budget(request.budget_ms, time.monotonic(),
                                                    min_quality)
        except ValueError as error:
            response.success, response.message = False, f'{error}; nothing changed'
            return response
        self._put_in_force(target, decision)
        response.success = True
        response.operating_point = decision.point
        response.expected_latency_ms = float(decision.expected_ms)
        response.message = self._answer(target, decision)
        return response

    def _answer(self, target, decision):
        """What is in force, for a service answer: a warning first when it will not fit."""
        message = decision.reason if decision.fits else f'WARNING: {decision.reason}'
        return message + target.application.service_remark(target.client.service_is_ready())

    def _list_points(self, request, response):
        target, problem = self._target(request.target)
        if target is None:
            response.success, response.message = False, problem
            return response
        response.success = True
        response.current = target.controller.current or ''
        response.message = ('no decision yet: the worker runs its own default'
                            if target.controller.current is None else
                            target.controller.last_reason)
        response.points = [point_message(p, target.library) for p in target.library.points]
        return response

    def _force_point(self, request, response):
        target, problem = self._target(request.target)
        if target is None:
            response.success, response.message = False, problem
            return response
        now = time.monotonic()
        ctl = target.controller
        if not request.name:
            # Back to automatic selection for the budget; with none, to the
            # best-quality point (what a worker runs when nothing limits latency).
            decision = ctl.release(now)
            if math.isfinite(ctl.budget_ms):
                decision_text = (f'released: automatic selection for {ctl.budget_ms:g} ms put '
                                 f'{decision.point} in force; '
                                 f'{decision.reason.removeprefix("released: ")}')
            else:
                quality = target.library.get(decision.point).quality
                decision_text = (f'released: no budget is set, so the best-quality point '
                                 f'{decision.point} ({quality:g}) is in force on '
                                 f'{decision.threads} thread(s); set a budget for automatic '
                                 f'selection')
        else:
            try:
                decision = ctl.force(request.name, now)
            except KeyError as error:
                response.success, response.message = False, str(error.args[0])
                return response
            if math.isfinite(ctl.budget_ms):
                decision_text = (f'forced {decision.point} until released: '
                                 f'{decision.reason.removeprefix("forced: ")}')
            else:
                decision_text = (f'forced {decision.point} on {decision.threads} thread(s) '
                                 f'until released (no budget set)')
        self._put_in_force(target, decision)
        response.success, response.operating_point = True, decision.point
        response.message = self._answer(
            target, dataclasses.replace(decision, reason=decision_text))
        return response

    # -- applying decisions ---------------------------------------------------------------
    def _put_in_force(self, target, decision):
        point = target.library.get(decision.point)
        target.application.decide(parameter_values(decision, point, target.controller.budget_ms))
        self._send(target)

    def _send(self, target):
        """Send the parameter set the protocol asks for now, if any."""
        request = target.application.next_request(target.client.service_is_ready(),
                                                  time.monotonic())
        if request is None:
            return
        message = SetParametersAtomically.Request()
        message.parameters = [Parameter(k, value=v).to_parameter_msg()
                              for k, v in request.values.items()]
        future = target.client.call_async(message)
        target.pending = (request, future)
        # Run by the executor as a task, on the spinning thread like every other
        # input of the protocol: DecisionApplication needs no lock (its docstring).
        future.add_done_callback(lambda f: self._answered(target, request, f))

    def _answered(self, target, request, future):
        try:
            result = future.result().result
        except Exception as error:  # worker went away mid-call
            self._log(target.application.failed(request, error))
            return
        self._log(target.application.answered(request, result.successful, result.reason))
        self._send(target)  # a newer decision may have arrived meanwhile

    def _drop_void_call(self, target):
        """Forget a call whose answer no longer counts (timed out, or asked of a dead worker)."""
        if target.pending is None or target.pending[0] is target.application.awaiting:
            return
        target.client.remove_pending_request(target.pending[1])
        target.pending = None

    def _log(self, note):
        if note is None:
            return
        # One logging call per severity: rclpy ties a call site to one severity.
        logger = self.get_logger()
        if note.severity is Severity.ERROR:
            logger.error(note.text)
        elif note.severity is Severity.WARNING:
            logger.warning(note.text)
        else:
            logger.info(note.text)

    def _tick(self):
        now = time.monotonic()
        for target in self.targets.values():
            decision = target.controller.on_stale(now)
            if decision is not None:
                self._put_in_force(target, decision)
            self._log(target.application.check(target.client.service_is_ready(), now))
            self._drop_void_call(target)
            self._send(target)

    # -- diagnostics ------------------------------------------------------------------------
    def _diagnose_resources(self, stat):
        msg = self.availability
        if msg is None:
            stat.summary(STALE, 'no hardware availability received yet')
            return stat
        age = time.monotonic() - self.availability_time
        stale = any(t.controller.is_stale(time.monotonic()) for t in self.targets.values())
        stat.summary(STALE if stale else OK,
                     f'resource data {age:.1f} s old' + (': planning for one thread'
                                                          if stale else ''))
        stat.add('seconds_since_update', text(age))
        stat.add('usable_threads', text(msg.usable_threads))
        stat.add('usable_cpus', text(msg.usable_cpus))
        stat.add('availability', text(msg.availability))
        stat.add('overrides', ', '.join(msg.overrides) or '(none)')
        return stat

    def _diagnose_target(self, name, stat):
        if name in self.disabled:
            stat.summary(WARN, f'not managed: {self.disabled[name]}')
            return stat
        target = self.targets[name]
        ctl = target.controller
        now = time.monotonic()
        problem = target.application.problem(now)
        if problem is not None:
            stat.summary(ERROR if problem.severity is Severity.ERROR else WARN, problem.text)
        elif ctl.is_stale(now) and math.isfinite(ctl.budget_ms):
            stat.summary(WARN, f'{ctl.current}: resource data stale, conservative choice')
        elif ctl.current is None:
            stat.summary(OK, 'no budget set')
        elif not ctl.fits:   # its own `why` says the budget is not expected to be met
            stat.summary(WARN, f'{ctl.current} for {ctl.budget_ms:g} ms: {ctl.last_reason}')
        elif not math.isfinite(ctl.budget_ms):
            stat.summary(OK, f'{ctl.current}: no budget set' +
                         (' (forced)' if ctl.forced else ''))
        else:
            stat.summary(OK, f'{ctl.current} for {ctl.budget_ms:g} ms' +
                         (' (forced)' if ctl.forced else ''))
        stat.add('budget_ms', text(ctl.budget_ms))
        stat.add('min_quality', text(ctl.min_quality) if ctl.min_quality is not None
                 else '(none)')
        stat.add('meets_budget', text(ctl.fits) if math.isfinite(ctl.budget_ms) else '(no budget)')
        stat.add('operating_point', ctl.current or '(none)')
        stat.add('forced', ctl.forced or '(no)')
        stat.add('threads', text(ctl.threads if ctl.threads is not None else '(none)'))
        stat.add('why', ctl.last_reason)
        if ctl.current is not None:
            stat.add('expected_latency_ms', text(ctl.model.expected_ms(ctl.current, ctl.threads)))
            stat.add('mean_latency_ms', text(ctl.model.mean_ms(ctl.current, ctl.threads)))
            stat.add('correction_ratio', text(ctl.model.ratio(ctl.current, ctl.threads)))
        stat.add('switches', text(ctl.switches))
        stat.add('results', text(target.results))
        stat.add('deadline_misses', text(target.misses))
        stat.add('stopped_at_deadline', text(target.deadline_stops))
        target.application.report(stat, now)
        return stat


def main(args=None):
    return run_node(ManagerNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
