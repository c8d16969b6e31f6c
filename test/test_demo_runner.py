"""The demo runner's steps, driven by doubles of its ROS side (no DDS, no nodes)."""

import math
import threading
import time
from types import SimpleNamespace

import pytest

from dyn_dnn_ros.demo import runner
from dyn_dnn_ros.demo.metrics import RunRecord
from dyn_dnn_ros.demo.plan import DemoPlan, Event
from dyn_dnn_ros.operating_points import OperatingPoint
from dyn_dnn_ros.translation.beam_policy import BeamPolicy


def config(plan=None, **overrides):
    plan = plan or DemoPlan(1.0, 10.0, (Event(0.0, 'budget', 120.0),))
    values = dict(plan=plan, library_path='lib.json', sentences=(('a', 'A'), ('b', 'B')),
                  threads=2)
    return runner.DemoConfig(**(values | overrides))


def best(latency_ms, beam=None):
    return OperatingPoint('big', 'translation', {}, latency_ms, 30.0, beam=beam)


def test_the_static_worker_runs_where_the_library_measured_it_fastest():
    point = best({1: 90.0, 2: 60.0, 4: 20.0})
    static = runner._worker_values('static', config(threads=2), point)
    assert static['threads'] == 2, 'a thread count beyond the demo was chosen'
    assert static['stop_at_deadline'] is False
    assert runner._worker_values('static', config(threads=2), best({1: 50.0, 2: 60.0})
                                 )['threads'] == 1
    assert runner._worker_values('static', config(threads=1), best({2: 60.0})
                                 )['threads'] == 1, 'no measurement: the demo count'


def test_the_dynamic_worker_starts_on_the_best_point_and_first_budget():
    point = best({1: 50.0, 2: 60.0}, beam=BeamPolicy('fixed', width=3))
    values = runner._worker_values('dynamic', config(threads=2, model_path='m.pt'), point)
    assert values['threads'] == 2 and values['stop_at_deadline'] is True
    assert values['operating_point'] == 'big' and values['budget_ms'] == 120.0
    assert values['beam_width'] == 3 and values['model_path'] == 'm.pt'
    assert 'spm_path' not in values


class Driver:
    """What the runner uses of ``_Driver``, answering the budget service at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.results, self.availability, self.published = {}, [], []
        self.start = time.monotonic()
        self.node = SimpleNamespace(get_clock=lambda: SimpleNamespace(
            now=lambda: SimpleNamespace(to_msg=lambda: 'stamp')))
        self.publisher = SimpleNamespace(publish=self.published.append)
        self.SetLatencyBudget = SimpleNamespace(Request=SimpleNamespace)
        self.budget_client = SimpleNamespace(call_async=self._call)

    def now(self):
        return time.monotonic() - self.start

    @staticmethod
    def Request(id, text):  # noqa: N802 (a message type on the real driver)
        return SimpleNamespace(id=id, text=text, header=SimpleNamespace())

    def _call(self, request):
        response = SimpleNamespace(success=True, operating_point=f'for {request.budget_ms:g}')
        return SimpleNamespace(
            add_done_callback=lambda done: done(SimpleNamespace(result=lambda: response)))


class Burner:
    running = False

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


def test_the_plan_is_played_at_its_rate_with_its_events():
    plan = DemoPlan(1.0, 5.0, (Event(0.0, 'budget', 100.0), Event(0.3, 'burn_start'),
                               Event(0.5, 'budget', 50.0), Event(0.7, 'burn_stop')))
    driver, burner, record, lines = Driver(), Burner(), RunRecord('dynamic'), []
    worker = SimpleNamespace(worker=SimpleNamespace(setting='big'))
    sent = runner._send_plan('dynamic', config(plan), driver, worker, burner, record,
                             lambda *line: lines.append(line))
    assert list(sent) == [f'dynamic-{i}' for i in range(5)]
    assert [m.text for m in driver.published] == ['a', 'b', 'a', 'b', 'a']
    assert all(m.header.stamp == 'stamp' and m.header.frame_id == 'demo'
               for m in driver.published)
    # Each request carries the budget in force when it was sent.
    budgets = [budget for _, _, budget in sent.values()]
    assert budgets[0] == 100.0 and budgets[-1] == 50.0
    assert budgets == sorted(budgets, reverse=True)
    assert [description for _, description in record.events] == [
        'budget 100 ms', 'CPU burner started', 'budget 50 ms', 'CPU burner stopped']
    assert [(budget, point) for _, budget, point in record.budget_calls] == [
        (100.0, 'for 100'), (50.0, 'for 50')]
    assert not burner.running
    assert lines and lines[0][0] == 'dynamic' and lines[0][5] == 'big'


def test_each_sent_request_has_a_result_or_is_lost():
    driver = Driver()
    driver.availability.append((0.1, 2, 1.0))
    answer = SimpleNamespace(status=1, operating_point='big', latency_ms=40.0, queue_ms=2.0,
                             text='A', threads=2, stopped_at_deadline=True)
    driver.results['s-0'] = (0.3, answer)
    sent = {'s-0': (0.2, 'A', 100.0), 's-1': (0.4, 'B', 100.0)}
    runner._drain(driver, len(sent), 0.05)  # one never comes: waits out the drain time
    record = RunRecord('static')
    runner._record_results(record, driver, sent)
    answered, lost = record.results
    assert (answered.status, answered.received_s, answered.hypothesis) == ('truncated', 0.3, 'A')
    assert answered.stopped_at_deadline and answered.threads == 2
    assert lost.status == 'lost' and math.isnan(lost.received_s) and lost.reference == 'B'
    assert record.availability == [(0.1, 2, 1.0)]


@pytest.mark.parametrize('count', [0, 1])
def test_draining_stops_once_every_result_is_in(count):
    driver = Driver()
    driver.results['s-0'] = (0.3, None)
    began = time.monotonic()
    runner._drain(driver, count, 10.0)
    assert time.monotonic() - began < 1.0
