"""The demo: its plan and metrics on known records, and a short real run over DDS."""

import json
import math
import os
from pathlib import Path
import subprocess
import sys

import pytest
from translation_fixtures import SPM, write_tiny_model

from dyn_dnn_ros.demo.metrics import (
    ResultRecord,
    RunRecord,
    adaptation_results,
    summarize,
    switch_delays_ms,
)
from dyn_dnn_ros.demo.plan import DemoPlan, Event, default_plan
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary


def library():
    def point(name, quality, one, two):
        return OperatingPoint(name, 'translation', {}, {1: one, 2: two}, quality)
    return OperatingPointLibrary('translation', 'cpu', 'bleu', [
        point('large', 30.0, 200.0, 110.0), point('medium', 28.0, 100.0, 60.0),
        point('small', 25.0, 40.0, 25.0)])


def test_default_plan_budgets_follow_the_library():
    plan = default_plan(library(), threads=2, duration_s=100.0)
    budgets = [e.value for e in plan.events if e.kind == 'budget']
    generous, tight = budgets[0], budgets[1]
    assert 0.9 * generous >= 110.0           # the best point fits with 2 threads
    assert 0.9 * generous < 200.0            # ... but not on one core
    assert 0.9 * tight < 110.0               # the tight budget needs a smaller point
    assert [e.kind for e in plan.events] == ['budget', 'budget', 'budget', 'burn_start',
                                             'burn_stop']
    assert plan.burning_at(60.0) and not plan.burning_at(90.0)
    assert plan.budget_at(30.0) == tight and plan.budget_at(50.0) == generous


def test_plan_budgets_can_come_from_measured_latencies():
    measured = {'large': 150.0, 'medium': 80.0, 'small': 30.0}
    plan = default_plan(library(), threads=2, duration_s=100.0, latency_ms=measured)
    generous, tight = [e.value for e in plan.events if e.kind == 'budget'][:2]
    assert generous == pytest.approx(150.0 / 0.9 * 1.15, abs=0.05)
    assert tight == pytest.approx(30.0 / 0.9 * 1.1, abs=0.05)   # the middle of the faster two
    with pytest.raises(KeyError):
        default_plan(library(), threads=2, latency_ms={'large': 1.0})


def test_plan_validation():
    with pytest.raises(ValueError, match='first event'):
        DemoPlan(10.0, 1.0, (Event(1.0, 'budget', 5.0),))
    with pytest.raises(ValueError, match='outside'):
        DemoPlan(10.0, 1.0, (Event(0.0, 'budget', 5.0), Event(12.0, 'burn_start')))
    with pytest.raises(ValueError, match='request_rate_hz'):
        DemoPlan(10.0, math.nan, (Event(0.0, 'budget', 5.0),))


def record(rid, sent, received, point, latency, budget=100.0, status='ok'):
    sentence = 'die Datei wurde erfolgreich gespeichert'
    return ResultRecord(rid, sent, received, status, point, latency, 0.0, budget, sentence,
                        sentence)


def test_metrics_on_known_records():
    run = RunRecord('dynamic', results=[
        record('0', 0.0, 0.05, 'large', 45.0),            # hit
        record('1', 1.0, 1.20, 'large', 190.0),           # miss (200 ms > 100)
        record('2', 2.0, 2.06, 'medium', 55.0),           # hit, after the switch
        record('3', 3.0, 3.04, 'medium', 38.0),           # hit
        record('4', 4.0, math.nan, '', math.nan, status='lost'),
    ], budget_calls=[(1.5, 100.0, 'medium')])
    summary = summarize(run, burn_window=(1.0, 3.0))
    assert summary['requests'] == 5 and summary['complete'] == 4 and summary['lost_count'] == 1
    assert summary['complete_in_budget'] == pytest.approx(3 / 5)
    assert summary['late'] == pytest.approx(1 / 5) and summary['dropped'] == pytest.approx(1 / 5)
    assert summary['cut_at_deadline'] == 0.0 and summary['failed'] == 0.0
    assert summary['complete_in_budget_under_load'] == pytest.approx(1 / 2)
    assert summary['switches'] == 1 and summary['points_used'] == ['large', 'medium']
    assert summary['bleu_complete'] == pytest.approx(100.0)
    assert summary['dds_overhead_p50_ms'] == pytest.approx(5.0, abs=0.01)
    assert summary['transport_p50_ms'] == pytest.approx(5.0, abs=0.01)   # nothing queued
    # Event at 0.9 s: the 1st result after it misses, the 2nd and 3rd are on
    # time, the 4th is lost: with 2 in a row needed, back on time at result 2.
    assert adaptation_results(run, [0.0, 0.9], settled=2) == [1, 2]
    assert adaptation_results(run, [0.0, 0.9], settled=3) == [1, None]
    # The call came at 1.5 s with nothing waiting; the next request went at 2.0 s.
    assert switch_delays_ms(run) == pytest.approx([2060 - 2000 - 55.0])


def test_a_cut_answer_is_no_hit_however_fast():
    cut = record('1', 1.0, 1.03, 'large', 24.0, status='partial')
    cut.hypothesis = 'die Datei'
    run = RunRecord('dynamic', results=[record('0', 0.0, 0.05, 'large', 45.0), cut,
                                        record('2', 2.0, 2.05, 'large', 45.0, status='dropped')])
    summary = summarize(run)
    assert summary['complete_in_budget'] == pytest.approx(1 / 3)
    assert summary['cut_at_deadline'] == pytest.approx(1 / 3) and summary['cut_count'] == 1
    assert summary['dropped'] == pytest.approx(1 / 3)
    fractions = ('complete_in_budget', 'late', 'cut_at_deadline', 'dropped', 'failed')
    assert sum(summary[k] for k in fractions) == pytest.approx(1.0)
    assert summary['bleu_complete'] == pytest.approx(100.0)
    assert summary['bleu_all'] < summary['bleu_complete']   # the cut one is incomplete
    assert adaptation_results(run, [0.0], settled=2) == [None]


@pytest.mark.ros
@pytest.mark.slow
def test_a_short_demo_runs_end_to_end(tmp_path):
    model, library_path = write_tiny_model(tmp_path)
    report = tmp_path / 'report.json'
    result = subprocess.run(
        [sys.executable, '-m', 'dyn_dnn_ros.cli', 'demo', '--library', str(library_path),
         '--model', str(model), '--spm', str(SPM), '--duration', '4', '--rate', '6',
         '--calibrate', '3', '--out-dir', str(tmp_path), '--report', str(report)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert '| dynamic' in result.stdout and '| static' in result.stdout
    data = json.loads(report.read_text())
    assert set(data['plan']['calibrated_p90_ms']) == {'big', 'small'}   # budgets measured
    for name in ('dynamic', 'static'):
        summary = data['summaries'][name]
        assert summary['requests'] >= 20
        fractions = ('complete_in_budget', 'late', 'cut_at_deadline', 'dropped', 'failed')
        assert sum(summary[k] for k in fractions) == pytest.approx(1.0)
        assert 0.0 <= summary['complete_in_budget'] <= 1.0
    static = data['summaries']['static']
    assert static['points_used'] == ['big'] and static['switches'] == 0
    dynamic_run = next(r for r in data['runs'] if r['name'] == 'dynamic')
    assert dynamic_run['budget_calls'], 'budget changes went through the manager service'
    assert Path(tmp_path / 'timeline.png').read_bytes()[:4] == b'\x89PNG'
