"""The manager node over real DDS with a real (small, random-weight) translation worker."""

import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest
from rclpy.parameter import Parameter
from ros_harness import MessageCollector, call_service, wait_until
from translation_fixtures import SPM, write_tiny_model

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.ros.diagnostics import level_value
from dyn_dnn_ros.ros.nodes.manager import ManagerNode
from dyn_dnn_ros.ros.nodes.translation import TranslationNode
from dyn_dnn_ros.runtime.policy import WORKER_BUDGET_MS_RANGE
from dyn_dnn_ros_interfaces.msg import HardwareAvailability, TranslationRequest, TranslationResult
from dyn_dnn_ros_interfaces.srv import ForceOperatingPoint, ListOperatingPoints, SetLatencyBudget

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def tiny_files(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp('tiny_manager'))


class System:
    """A manager, a translation worker and a stand-in resource monitor in one namespace."""

    def __init__(self, ros, probe, namespace, tiny_files, manager_library=None, **manager):
        self.ros, self.probe, self.ns = ros, probe, namespace
        self.model_path, self.library_path = tiny_files
        self.worker = self.start_worker()
        # The arithmetic of these tests: a prior spread of 0.1 (tail 1 + 1.65 x 0.1).
        values = dict(targets='translation', stale_after_s=1.0, prior_spread=0.1,
                      translation_library=str(manager_library or self.library_path))
        values.update(manager)
        self.manager = ros.add(ManagerNode(
            context=ros.context, namespace=namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        self.availability = probe.create_publisher(HardwareAvailability,
                                                   f'{namespace}/hardware_availability', 10)
        self.requests = probe.create_publisher(TranslationRequest,
                                               f'{namespace}/translation_requests', 10)
        self.results = MessageCollector(probe, TranslationResult,
                                        f'{namespace}/translation_results')
        wait_until(lambda: self.manager.targets['translation'].client.service_is_ready(),
                   message='worker parameter service')

    def start_worker(self):
        return self.ros.add(TranslationNode(
            context=self.ros.context, namespace=self.ns, parameter_overrides=[
                Parameter('model_path', value=str(self.model_path)),
                Parameter('spm_path', value=str(SPM)),
                Parameter('library_path', value=str(self.library_path)),
                Parameter('threads', value=1), Parameter('wait_for_setting_s', value=0.0)]))

    def publish_threads(self, threads):
        self.availability.publish(HardwareAvailability(usable_threads=threads,
                                                       usable_cpus=float(threads)))

    def budget(self, budget_ms, target='translation'):
        return call_service(self.probe, SetLatencyBudget, f'{self.ns}/set_latency_budget',
                            SetLatencyBudget.Request(target=target, budget_ms=budget_ms,
                                                     min_quality=math.nan))

    def translate(self, rid, text='Open the file'):
        wait_until(lambda: self.requests.get_subscription_count() > 0)
        self.requests.publish(TranslationRequest(id=rid, text=text))
        return self.results.wait_for(lambda m: m.id == rid, timeout=30)[0]

    def stop(self):
        for node in (self.manager, self.worker):
            self.ros.remove(node)


def test_budget_service_switches_the_worker_and_results_show_it(ros, probe, tiny_files):
    system = System(ros, probe, '/m1', tiny_files)
    try:
        system.publish_threads(2)
        # Before any result the tail estimate is the library's latency x (1 + 1.65 x 0.1):
        # only 'small' (5.8 ms at 2 threads) fits 0.9 x 7.
        answer = system.budget(7.0)
        assert answer.success and answer.operating_point == 'small', answer.message
        assert answer.expected_latency_ms == pytest.approx(5.0 * 1.165)
        wait_until(lambda: system.worker.worker.setting.point == 'small', message='switch')
        setting = system.worker.worker.setting
        assert setting.beam.width == 1 and setting.budget_ms == 7.0 and setting.threads == 2
        result = system.translate('after-budget')
        assert result.operating_point == 'small' and result.budget_ms == 7.0
        assert result.threads == 2

        answer = system.budget(1000.0)
        assert answer.operating_point == 'big'
        wait_until(lambda: system.worker.worker.setting.point == 'big')
        assert system.worker.worker.setting.beam.width == 3   # big's library beam policy

        listing = call_service(probe, ListOperatingPoints, '/m1/list_operating_points',
                               ListOperatingPoints.Request(target='translation'))
        assert listing.success and listing.current == 'big'
        assert [p.name for p in listing.points] == ['big', 'small']
        assert list(listing.points[1].measured_threads) == [1, 2]
    finally:
        system.stop()


@pytest.mark.parametrize('target, budget, expected', [
    ('translation', math.nan, 'budget_ms'),
    ('translation', -5.0, 'budget_ms'),
    ('translation', 0.0, 'budget_ms'),
    ('speech', 50.0, "unknown target 'speech'"),
])
def test_bad_budgets_and_targets_are_refused(ros, probe, tiny_files, target, budget, expected):
    system = System(ros, probe, '/m2', tiny_files)
    try:
        answer = system.budget(budget, target=target)
        assert not answer.success and expected in answer.message
        assert system.manager.targets['translation'].controller.current is None
        assert system.budget(50.0).success  # still serving
    finally:
        system.stop()


def test_force_and_release(ros, probe, tiny_files):
    system = System(ros, probe, '/m3', tiny_files)
    try:
        system.publish_threads(2)
        system.budget(6.0)
        force = call_service(probe, ForceOperatingPoint, '/m3/force_operating_point',
                             ForceOperatingPoint.Request(target='translation', name='huge'))
        assert not force.success and 'known: big, small' in force.message
        force = call_service(probe, ForceOperatingPoint, '/m3/force_operating_point',
                             ForceOperatingPoint.Request(target='translation', name='big'))
        assert force.success and force.operating_point == 'big'
        wait_until(lambda: system.worker.worker.setting.point == 'big')
        release = call_service(probe, ForceOperatingPoint, '/m3/force_operating_point',
                               ForceOperatingPoint.Request(target='translation', name=''))
        assert release.success and release.operating_point == 'small'
        wait_until(lambda: system.worker.worker.setting.point == 'small')
    finally:
        system.stop()


def test_losing_a_core_and_stale_resources_fall_back(ros, probe, tiny_files):
    system = System(ros, probe, '/m4', tiny_files, rise_after_s=0.5)
    try:
        system.publish_threads(2)
        assert system.budget(16.0).operating_point == 'big'     # 14 ms at 2 threads
        wait_until(lambda: system.worker.worker.setting.point == 'big')
        # big: 23.3 ms > 14.4 at 1 thread. A drop counts once it has held
        # drop_after_s (0.3 s): one report is not enough, a monitor's stream is.
        system.publish_threads(1)
        time.sleep(0.6)
        assert system.worker.worker.setting.point == 'big'
        give_up = time.monotonic() + 10.0
        while system.worker.worker.setting.point != 'small':
            assert time.monotonic() < give_up, 'drop'
            system.publish_threads(1)
            time.sleep(0.1)
        assert system.worker.worker.setting.threads == 1
        system.publish_threads(2)    # a core back counts once it has held rise_after_s
        time.sleep(0.6)
        assert system.worker.worker.setting.point == 'small'   # one report is not enough
        give_up = time.monotonic() + 10.0
        while system.worker.worker.setting.point != 'big':     # the monitor keeps reporting
            assert time.monotonic() < give_up, 'recover'
            system.publish_threads(2)
            time.sleep(0.2)
        # No availability for longer than stale_after_s: plan for one thread.
        collector = MessageCollector(probe, DiagnosticArray, '/diagnostics')
        wait_until(lambda: system.worker.worker.setting.threads == 1, timeout=10,
                   message='stale fallback')
        assert system.worker.worker.setting.point == 'small'
        collector.wait_for(lambda a: any(
            s.name == 'dnn_manager: resources' and level_value(s.level) == 3
            for s in a.status), timeout=10)
    finally:
        system.stop()


def test_refused_sets_are_reported_not_retried(ros, probe, tiny_files, tmp_path):
    # The manager's library has a point the worker's library does not know.
    library = OperatingPointLibrary.load(tiny_files[1])
    data = library.to_dict()
    data['points'][1]['name'] = 'ghost'
    path = tmp_path / 'manager_library.yaml'
    OperatingPointLibrary.from_dict(data).save(path)
    # Fresh resource data throughout: a stale fallback is a new decision, which is
    # rightly sent again, and would race the count below on a loaded machine.
    system = System(ros, probe, '/m5', tiny_files, manager_library=path, stale_after_s=60.0)
    try:
        system.publish_threads(2)
        assert system.budget(6.0).operating_point == 'ghost'
        target = system.manager.targets['translation']
        wait_until(lambda: target.rejected, message='refusal')
        assert 'unknown operating point' in target.rejected
        failures = target.set_failures
        time.sleep(1.0)                      # several control periods
        assert target.set_failures == failures == 1
        collector = MessageCollector(probe, DiagnosticArray, '/diagnostics')
        collector.wait_for(lambda a: any(
            s.name == 'dnn_manager: translation' and level_value(s.level) == 2 and
            'refused' in s.message for s in a.status), timeout=10)
        assert system.worker.worker.setting.point == 'big'   # worker state untouched
    finally:
        system.stop()


def test_a_restarted_worker_gets_the_choice_again(ros, probe, tiny_files):
    system = System(ros, probe, '/m6', tiny_files)
    try:
        system.publish_threads(2)
        system.budget(6.0)
        wait_until(lambda: system.worker.worker.setting.point == 'small')
        ros.remove(system.worker)
        wait_until(lambda: not system.manager.targets['translation'].client.service_is_ready(),
                   message='worker gone')
        system.worker = system.start_worker()     # comes back with its defaults ('big')
        wait_until(lambda: system.worker.worker.setting.point == 'small', timeout=10,
                   message='choice re-applied')
    finally:
        system.stop()


def force(probe, ns, name):
    return call_service(probe, ForceOperatingPoint, f'{ns}/force_operating_point',
                        ForceOperatingPoint.Request(target='translation', name=name))


def current(probe, ns):
    return call_service(probe, ListOperatingPoints, f'{ns}/list_operating_points',
                        ListOperatingPoints.Request(target='translation')).current


def test_releasing_without_a_budget_really_releases(ros, probe, tiny_files):
    system = System(ros, probe, '/m7', tiny_files)
    try:
        system.publish_threads(2)
        assert force(probe, '/m7', 'small').success
        wait_until(lambda: system.worker.worker.setting.point == 'small')
        assert current(probe, '/m7') == 'small'
        # No budget: nothing constrains latency, so the release goes back to the
        # best-quality point (what the worker starts with), and says so.
        release = force(probe, '/m7', '')
        assert release.success and release.operating_point == 'big', release.message
        assert 'no budget' in release.message and 'big' in release.message
        wait_until(lambda: system.worker.worker.setting.point == 'big', message='released')
        assert current(probe, '/m7') == 'big'
        assert system.manager.targets['translation'].controller.forced is None
        # With a budget, the release answer names the automatic choice in force.
        system.budget(7.0)
        force(probe, '/m7', 'big')
        release = force(probe, '/m7', '')
        assert release.operating_point == 'small' and '7 ms' in release.message
        wait_until(lambda: system.worker.worker.setting.point == 'small')
    finally:
        system.stop()


def budget(system, budget_ms, min_quality=math.nan):
    return call_service(system.probe, SetLatencyBudget, f'{system.ns}/set_latency_budget',
                        SetLatencyBudget.Request(target='translation', budget_ms=budget_ms,
                                                 min_quality=min_quality))


def test_min_quality_is_a_floor_that_wins_over_the_budget(ros, probe, tiny_files):
    system = System(ros, probe, '/m8', tiny_files, stale_after_s=60.0)
    try:
        system.publish_threads(2)
        # 10 ms (limit 9): small (5.8 ms, quality 5) fits; big (14 ms, quality 10) not.
        assert budget(system, 10.0).operating_point == 'small'
        answer = budget(system, 10.0, min_quality=4.0)       # both met
        assert answer.success and answer.operating_point == 'small'
        assert not answer.message.startswith('WARNING')
        # Only big reaches 8, and it does not fit: the minimum wins, and the
        # answer says the budget is expected to be missed (it chose small before).
        answer = budget(system, 10.0, min_quality=8.0)
        assert answer.success and answer.operating_point == 'big', answer.message
        assert answer.message.startswith('WARNING') and 'quality >= 8' in answer.message
        assert answer.expected_latency_ms > 10.0
        wait_until(lambda: system.worker.worker.setting.point == 'big')
        # A minimum no point reaches is refused, not ignored; nothing changes.
        answer = budget(system, 10.0, min_quality=11.0)
        assert not answer.success and 'min_quality' in answer.message
        assert 'big' in answer.message and answer.operating_point == ''
        ctl = system.manager.targets['translation'].controller
        assert ctl.current == 'big' and ctl.min_quality == 8.0
        # NaN, 0 and negative mean no minimum.
        for none in (math.nan, 0.0, -3.0):
            assert budget(system, 10.0, min_quality=none).operating_point == 'small'
    finally:
        system.stop()


def test_budgets_the_workers_cannot_take_are_refused(ros, probe, tiny_files):
    system = System(ros, probe, '/m9', tiny_files)
    try:
        system.publish_threads(2)
        # The manager refuses what the worker's budget_ms parameter would refuse
        # (it once answered success for 1e300 ms, which never came into force).
        limits = system.worker.describe_parameter('budget_ms').floating_point_range[0]
        assert (limits.from_value, limits.to_value) == WORKER_BUDGET_MS_RANGE
        for bad, words in [(1e300, 'at most'), (math.inf, 'positive'),
                           (-math.inf, 'positive'), (1e-300, 'below'), (-0.0, 'positive')]:
            answer = system.budget(bad)
            assert not answer.success and 'budget_ms' in answer.message and \
                words in answer.message, (bad, answer.message)
        assert system.manager.targets['translation'].controller.current is None
        answer = system.budget(WORKER_BUDGET_MS_RANGE[1])      # the largest is accepted
        assert answer.success and answer.operating_point == 'big'
        wait_until(lambda: system.worker.worker.setting.budget_ms == 1e6, message='in force')
        # Below every point is a valid request, answered with a warning.
        answer = system.budget(0.5)
        assert answer.success and answer.message.startswith('WARNING')
        wait_until(lambda: system.worker.worker.setting.budget_ms == 0.5, message='in force')
    finally:
        system.stop()


def test_diagnostics_warn_when_no_point_fits(ros, probe, tiny_files):
    system = System(ros, probe, '/m10', tiny_files, stale_after_s=60.0)
    try:
        system.publish_threads(2)
        collector = MessageCollector(probe, DiagnosticArray, '/diagnostics')
        answer = system.budget(2.0)                    # small needs 5.8 ms
        assert answer.message.startswith('WARNING')

        def translation(array):
            return [s for s in array.status if s.name == 'dnn_manager: translation' and
                    s.hardware_id == 'manager' and '2 ms' in s.message]

        array = collector.wait_for(lambda a: any(translation(a)), timeout=10)[0]
        status = translation(array)[0]
        values = {kv.key: kv.value for kv in status.values}
        assert level_value(status.level) == 1, status.message
        assert 'no point fits' in status.message and 'no point fits' in values['why']
        assert values['meets_budget'] == 'no'
        assert all(isinstance(kv.value, str) for kv in status.values)
    finally:
        system.stop()


def test_a_result_cut_at_the_deadline_is_a_miss_however_fast(ros, probe, tiny_files):
    # The worker stopped decoding at the deadline: the answer came quickly but
    # is incomplete. The manager counts it as a miss and switches at once to a
    # setting expected to fit (here big on one thread, never tried).
    system = System(ros, probe, '/m_cut', tiny_files)
    try:
        system.publish_threads(2)
        assert system.budget(30.0).operating_point == 'big'       # 14 ms x 1.165 <= 27
        wait_until(lambda: system.worker.worker.setting.point == 'big')
        results = probe.create_publisher(TranslationResult, '/m_cut/translation_results', 10)
        wait_until(lambda: results.get_subscription_count() >= 2)   # the manager and ours
        target = system.manager.targets['translation']
        cut = TranslationResult(id='cut', operating_point='big', threads=2, latency_ms=9.0,
                                budget_ms=30.0, status=TranslationResult.STATUS_PARTIAL,
                                stopped_at_deadline=True)
        results.publish(cut)
        wait_until(lambda: target.misses == 1, message='the cut result counted as a miss')
        assert target.deadline_stops == 1
        wait_until(lambda: (system.worker.worker.setting.point,
                            system.worker.worker.setting.threads) != ('big', 2),
                   message='a switch')
        assert target.controller.switches == 1
        assert 'cut at the 30 ms deadline' in target.controller.last_reason
    finally:
        system.stop()


def test_the_decision_protocol_is_driven_only_from_the_spinning_thread(ros, probe, tiny_files):
    """DecisionApplication has no lock: every call comes from the executor's thread.

    That includes the answers to the parameter sets (the futures' done-callbacks).
    """
    system = System(ros, probe, '/m_thread', tiny_files)
    try:
        application = system.manager.targets['translation'].application
        callers = []   # (method, thread) of each call from now on

        def recorded(name):
            method = getattr(application, name)

            def call(*args, **kwargs):
                callers.append((name, threading.current_thread()))
                return method(*args, **kwargs)
            return call

        for name in ('decide', 'next_request', 'answered', 'failed', 'check', 'heartbeat',
                     'result_seen', 'in_force', 'problem', 'service_remark', 'report'):
            setattr(application, name, recorded(name))
        system.publish_threads(2)
        assert system.budget(7.0).operating_point == 'small'
        wait_until(lambda: system.worker.worker.setting.point == 'small', message='switch')
        system.translate('after-switch')
        wait_until(lambda: {'answered', 'check', 'heartbeat', 'result_seen'} <=
                   {name for name, _ in list(callers)}, message='every kind of input')
        assert {thread for _, thread in list(callers)} == {ros.spinner._thread}, callers
    finally:
        system.stop()
