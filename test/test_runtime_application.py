"""The decision-application protocol, one transition at a time, without ROS.

The manager node over DDS (test_manager_node.py) shows the protocol working
with a real worker; these tests pin down each rule: what is sent, when, and
what diagnostics say about it.
"""

import pytest

from dyn_dnn_ros.operating_points import OperatingPoint
from dyn_dnn_ros.runtime.application import (
    IN_FORCE,
    NO_DECISION,
    PENDING,
    WORKER_LOST,
    ApplicationConfig,
    DecisionApplication,
    Severity,
)
from dyn_dnn_ros.runtime.controller import Decision
from dyn_dnn_ros.runtime.worker_parameters import (
    BEAM_METRIC,
    BEAM_MODE,
    BEAM_PARAMETERS,
    BEAM_WIDTH,
    BUDGET_MS,
    BW_MAX,
    BW_MIN,
    OPERATING_POINT,
    SIGMA_MAX,
    SIGMA_MIN,
    THREADS,
    parameter_values,
)
from dyn_dnn_ros.translation.beam_policy import BeamPolicy

BIG = {OPERATING_POINT: 'big', THREADS: 2, BUDGET_MS: 50.0}
SMALL = {OPERATING_POINT: 'small', THREADS: 1, BUDGET_MS: 10.0}


class Stat:
    """Collects what a diagnostics task adds, like DiagnosticStatusWrapper."""

    def __init__(self):
        self.values = {}

    def add(self, key, value):
        assert isinstance(value, str), (key, value)
        self.values[key] = value


def reachable_worker(config=ApplicationConfig()):
    """A protocol whose worker's parameter service is up and has announced itself."""
    app = DecisionApplication('translation', 'translation_node', config)
    app.check(True, now=0.0)
    app.heartbeat('first', 100, 'big', 4, now=0.0)
    return app


def accepted(app, values, now=0.0):
    """Decide ``values``, send them and have the worker accept and announce them."""
    app.decide(values)
    request = app.next_request(True, now)
    assert request is not None and request.values == values
    app.answered(request, accepted=True)
    app.heartbeat(app.announcement.instance_id, 100, values[OPERATING_POINT],
                  values[THREADS], now)
    assert app.in_force(now) == IN_FORCE
    return request


# -- sending -------------------------------------------------------------------------------
def test_nothing_is_sent_before_a_decision():
    app = reachable_worker()
    assert app.next_request(True, 0.0) is None
    assert app.in_force(0.0) == NO_DECISION


def test_a_decision_is_sent_once_and_is_in_force_when_accepted_and_announced():
    app = reachable_worker()
    app.decide(BIG)
    request = app.next_request(True, 0.0)
    assert request.values == BIG
    assert app.next_request(True, 0.0) is None      # one set in flight at a time
    assert app.in_force(0.0) == PENDING
    note = app.answered(request, accepted=True)
    assert note.severity is Severity.INFO and 'big with 2 thread(s) in force' in note.text
    assert app.applied == BIG and app.set_failures == 0
    # Accepted, but the worker still announces its defaults (big on 4 threads).
    assert app.in_force(0.0) == PENDING
    app.heartbeat('first', 100, 'big', 2, now=0.1)
    assert app.in_force(0.1) == IN_FORCE
    assert app.next_request(True, 0.1) is None      # nothing more to send


def test_the_same_decision_again_sends_nothing():
    app = reachable_worker()
    accepted(app, BIG)
    app.decide(dict(BIG))
    assert app.next_request(True, 0.0) is None


def test_an_unreachable_worker_gets_the_decision_when_it_appears():
    app = DecisionApplication('translation', 'translation_node')
    app.decide(BIG)
    assert app.next_request(False, 0.0) is None
    app.check(False, 0.25)
    assert app.problem(0.25).text == 'worker translation_node not reachable'
    assert app.service_remark(False) == (' (worker translation_node not reachable: applied '
                                         'when it appears)')
    assert app.service_remark(True) == ''
    app.check(True, 0.5)
    assert app.problem(0.5) is None
    assert app.next_request(True, 0.5).values == BIG


def test_a_worker_is_unreachable_until_the_first_check():
    app = DecisionApplication('translation', 'translation_node')
    assert app.problem(0.0).text == 'worker translation_node not reachable'


def test_a_request_holds_a_copy_of_the_decision():
    app = reachable_worker()
    values = dict(BIG)
    app.decide(values)
    values[THREADS] = 1
    assert app.next_request(True, 0.0).values == BIG


# -- refusals ------------------------------------------------------------------------------
def test_a_refused_set_is_reported_and_not_sent_again_until_the_decision_changes():
    app = reachable_worker()
    app.decide(SMALL)
    request = app.next_request(True, 0.0)
    note = app.answered(request, accepted=False, reason='operating_point: unknown point')
    assert note.severity is Severity.ERROR and 'refused' in note.text
    assert app.rejected == 'operating_point: unknown point' and app.set_failures == 1
    problem = app.problem(0.0)
    assert problem.severity is Severity.ERROR
    assert problem.text == ('translation_node refused the last set: '
                            'operating_point: unknown point')
    for now in (0.25, 0.5, 0.75):                  # checks do not retry it
        app.check(True, now)
        assert app.next_request(True, now) is None
    app.decide(dict(SMALL))                         # the same decision: still refused
    assert app.next_request(True, 1.0) is None
    assert app.in_force(1.0) == PENDING
    app.decide(BIG)                                 # a new decision may be acceptable
    assert app.rejected == '' and app.problem(1.0) is None
    assert app.next_request(True, 1.0).values == BIG


def test_a_refusal_without_a_reason_still_stops_retries():
    app = reachable_worker()
    app.decide(SMALL)
    app.answered(app.next_request(True, 0.0), accepted=False, reason='')
    assert app.rejected
    assert app.next_request(True, 0.0) is None


def test_a_refused_set_that_was_superseded_does_not_block_the_newer_decision():
    app = reachable_worker()
    app.decide(SMALL)
    first = app.next_request(True, 0.0)
    app.decide(BIG)
    app.answered(first, accepted=False, reason='busy')
    assert app.rejected == '' and app.set_failures == 1
    assert app.next_request(True, 0.0).values == BIG


# -- a newer decision while one is in flight --------------------------------------------------
def test_a_newer_decision_waits_for_the_answer_in_flight_then_is_sent():
    app = reachable_worker()
    app.decide(BIG)
    first = app.next_request(True, 0.0)
    app.decide(SMALL)
    assert app.next_request(True, 0.0) is None     # the first is still in flight
    app.answered(first, accepted=True)
    assert app.applied == BIG
    assert app.in_force(0.0) == PENDING           # BIG applied, SMALL wanted
    second = app.next_request(True, 0.0)
    assert second.values == SMALL and second.call > first.call
    app.answered(second, accepted=True)
    app.heartbeat('first', 100, 'small', 1, now=0.1)
    assert app.in_force(0.1) == IN_FORCE


def test_an_answer_to_a_request_no_longer_awaited_is_ignored():
    app = reachable_worker()
    app.decide(BIG)
    first = app.next_request(True, 0.0)
    app.answered(first, accepted=True)
    assert app.answered(first, accepted=False, reason='twice') is None
    assert app.applied == BIG and app.set_failures == 0 and app.rejected == ''


# -- calls that break or time out -------------------------------------------------------------
def test_a_broken_call_is_sent_again_at_the_next_check():
    app = reachable_worker()
    app.decide(BIG)
    request = app.next_request(True, 0.0)
    note = app.failed(request, 'the worker went away')
    assert note.severity is Severity.WARNING and 'the worker went away' in note.text
    assert app.set_failures == 1 and app.rejected == ''
    assert app.next_request(True, 0.1) is None      # not at once
    app.check(True, 0.25)
    assert app.next_request(True, 0.25).values == BIG


def test_an_unanswered_set_times_out_is_sent_again_and_its_late_answer_is_ignored():
    app = reachable_worker(ApplicationConfig(answer_timeout_s=2.0))
    app.decide(BIG)
    first = app.next_request(True, 10.0)
    assert app.check(True, 11.9) is None           # still within the timeout
    assert app.awaiting is first
    note = app.check(True, 12.1)
    assert note.severity is Severity.WARNING and 'within 2 s' in note.text
    assert app.set_failures == 1 and app.awaiting is None
    second = app.next_request(True, 12.1)           # sent again at once
    assert second.values == BIG and second is not first
    assert app.answered(first, accepted=False, reason='late') is None
    assert app.rejected == '' and app.awaiting is second
    app.answered(second, accepted=True)
    assert app.applied == BIG


# -- worker restarts ---------------------------------------------------------------------------
def test_a_new_instance_id_puts_the_decision_in_force_again():
    app = reachable_worker()
    accepted(app, SMALL)
    note = app.heartbeat('second', 200, 'big', 4, now=1.0)   # restarted with its defaults
    assert note.severity is Severity.WARNING and 'restarted (pid 200)' in note.text
    assert app.restarts == 1 and app.applied is None
    assert app.in_force(1.0) == PENDING
    request = app.next_request(True, 1.0)
    assert request.values == SMALL
    app.answered(request, accepted=True)
    app.heartbeat('second', 200, 'small', 1, now=1.1)
    assert app.in_force(1.1) == IN_FORCE


def test_a_worker_waiting_for_its_setting_gets_an_unanswered_set_again_soon():
    # Just restarted, the worker waits for its setting before it serves; a set
    # written before DDS matched its new parameter service never arrives.
    app = reachable_worker(ApplicationConfig(answer_timeout_s=5.0,
                                             waiting_answer_timeout_s=0.5))
    app.decide(SMALL)
    app.heartbeat('second', 200, 'big', 4, now=1.0, serving=False)
    lost = app.next_request(True, 1.0)
    assert app.check(True, 1.4) is None                      # within the short wait
    note = app.check(True, 1.6)
    assert note is not None and 'within 0.5 s' in note.text
    again = app.next_request(True, 1.6)
    assert again is not lost and again.values == SMALL
    # Once the worker serves, the usual answer timeout holds.
    app.heartbeat('second', 200, 'big', 4, now=1.7, serving=True)
    assert app.check(True, 2.5) is None and app.awaiting is again


def test_the_first_heartbeat_and_repeats_are_no_restart():
    app = DecisionApplication('translation', 'translation_node')
    assert app.heartbeat('first', 100, 'big', 4, now=0.0) is None
    assert app.heartbeat('first', 100, 'big', 4, now=0.5) is None
    assert app.restarts == 0


def test_a_restart_voids_the_set_in_flight_and_a_refusal_of_the_old_instance():
    app = reachable_worker()
    app.decide(SMALL)
    old = app.answered(app.next_request(True, 0.0), accepted=False, reason='old rules')
    assert old is not None and app.rejected
    app.heartbeat('second', 200, 'big', 4, now=1.0)
    assert app.rejected == ''                      # the new instance may accept it
    in_flight = app.next_request(True, 1.0)
    app.heartbeat('third', 300, 'big', 4, now=2.0)   # restarted again mid-call
    assert app.awaiting is None
    assert app.answered(in_flight, accepted=True) is None   # its answer says nothing now
    assert app.applied is None
    assert app.next_request(True, 2.0).values == SMALL


def test_a_parameter_service_that_disappears_and_returns_gets_the_decision_again():
    app = reachable_worker()
    accepted(app, SMALL)
    app.check(False, 1.0)
    assert app.next_request(False, 1.0) is None
    app.check(True, 1.25)
    assert app.applied is None
    assert app.next_request(True, 1.25).values == SMALL


def test_results_from_another_point_put_the_decision_in_force_again():
    app = reachable_worker()
    accepted(app, SMALL)
    assert app.result_seen('big') is None          # queued work of the previous point
    assert app.result_seen('big') is None
    assert app.result_seen('small') is None        # ours again: the run starts over
    assert app.result_seen('big') is None
    assert app.result_seen('big') is None
    note = app.result_seen('big')                  # three in a row: the worker lost it
    assert note.severity is Severity.WARNING and '3 results in a row from big' in note.text
    assert app.applied is None
    assert app.next_request(True, 0.0).values == SMALL


def test_results_while_a_set_is_in_flight_do_not_count_as_foreign():
    app = reachable_worker(ApplicationConfig(results_before_reapply=1))
    accepted(app, BIG)
    app.decide(SMALL)
    app.next_request(True, 0.0)
    assert app.result_seen('big') is None          # the switch has not happened yet
    assert app.applied == BIG


# -- heartbeats --------------------------------------------------------------------------------
def test_a_heartbeat_disagreeing_with_what_was_applied_leaves_the_decision_pending():
    app = reachable_worker()
    accepted(app, SMALL)
    app.heartbeat('first', 100, 'small', 2, now=0.5)   # another thread count
    assert app.in_force(0.5) == PENDING
    app.heartbeat('first', 100, 'big', 1, now=0.6)     # another point
    assert app.in_force(0.6) == PENDING
    assert app.next_request(True, 0.6) is None         # accepted already: nothing to send
    app.heartbeat('first', 100, 'small', 1, now=0.7)
    assert app.in_force(0.7) == IN_FORCE


def test_a_silent_worker_is_lost():
    app = reachable_worker(ApplicationConfig(worker_timeout_s=1.5))
    accepted(app, SMALL, now=0.0)
    assert not app.lost(1.5) and app.in_force(1.5) == IN_FORCE
    assert app.lost(1.6) and app.in_force(1.6) == WORKER_LOST
    problem = app.problem(1.6)
    assert problem.severity is Severity.WARNING
    assert problem.text == ('worker translation_node lost: no announcement for 1.6 s; '
                            'requests are not answered')
    app.heartbeat('first', 100, 'small', 1, now=2.0)
    assert not app.lost(2.0) and app.in_force(2.0) == IN_FORCE


def test_a_worker_never_heard_is_not_lost():
    app = DecisionApplication('translation', 'translation_node')
    assert not app.lost(1e6)


def test_a_refusal_outranks_a_lost_worker_on_diagnostics():
    app = reachable_worker()
    app.decide(SMALL)
    app.answered(app.next_request(True, 0.0), accepted=False, reason='no')
    assert app.problem(100.0).severity is Severity.ERROR


# -- diagnostics values ------------------------------------------------------------------------
def test_report_adds_the_protocol_figures_as_text():
    app = reachable_worker()
    stat = Stat()
    app.report(stat, now=0.5)
    assert stat.values == {'set_failures': '0', 'in_force': NO_DECISION,
                           'worker_restarts': '0', 'worker_last_heard_s': '0.5',
                           'worker_pid': '100'}
    unheard = Stat()
    DecisionApplication('perception', 'perception_node').report(unheard, now=0.0)
    assert 'worker_pid' not in unheard.values and 'worker_last_heard_s' not in unheard.values


@pytest.mark.parametrize('changes', [dict(worker_timeout_s=0.0), dict(answer_timeout_s=-1.0),
                                     dict(answer_timeout_s=float('nan')),
                                     dict(waiting_answer_timeout_s=0.0),
                                     dict(results_before_reapply=0)])
def test_config_refuses_meaningless_values(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        ApplicationConfig(**changes)


# -- the parameter values of a decision --------------------------------------------------------
def point(beam):
    return OperatingPoint('p', 'translation', {}, {1: 10.0}, 20.0, beam=beam)


def test_parameter_values_of_a_fixed_beam_point():
    values = parameter_values(Decision('p', 2, 9.0, 'why'), point(BeamPolicy('fixed', 3)), 40)
    assert values == {OPERATING_POINT: 'p', THREADS: 2, BUDGET_MS: 40.0, BEAM_MODE: 'fixed',
                      BEAM_WIDTH: 3}


def test_parameter_values_of_a_dynamic_beam_point_and_no_budget():
    beam = BeamPolicy('dynamic', bw_min=1, bw_max=4, sigma_min=0.5, sigma_max=2.0, metric='gap')
    values = parameter_values(Decision('p', 1, 9.0, 'why'), point(beam), float('nan'))
    assert values[BUDGET_MS] == 0.0                      # the workers' "no budget"
    assert values[BEAM_MODE] == 'dynamic' and BEAM_WIDTH not in values
    assert (values[BW_MIN], values[BW_MAX], values[SIGMA_MIN], values[SIGMA_MAX],
            values[BEAM_METRIC]) == (1, 4, 0.5, 2.0, 'gap')
    assert set(values) <= {OPERATING_POINT, THREADS, BUDGET_MS, *BEAM_PARAMETERS}


def test_a_point_without_a_beam_policy_sets_point_threads_and_budget_only():
    values = parameter_values(Decision('p', 1, 9.0, 'why'), point(None), 25.0)
    assert values == {OPERATING_POINT: 'p', THREADS: 1, BUDGET_MS: 25.0}
