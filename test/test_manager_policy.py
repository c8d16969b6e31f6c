import math

import pytest

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.runtime.controller import ControllerConfig, TargetController
from dyn_dnn_ros.runtime.policy import (
    BUDGET_MS_MAX,
    BUDGET_MS_MIN,
    WORKER_BUDGET_MS_RANGE,
    LatencyModel,
    PolicyConfig,
    check_budget,
)


def library():
    def point(name, quality, one, two):
        return OperatingPoint(name, 'translation', {}, {1: one, 2: two}, quality)
    return OperatingPointLibrary('translation', 'cpu', 'bleu', [
        point('large', 30.0, 200.0, 110.0),
        point('medium', 28.0, 100.0, 60.0),
        point('small', 25.0, 40.0, 25.0),
    ])


# Without a tail term the arithmetic of the choice is easy to follow.
MEAN_ONLY = dict(tail_z=0.0, prior_spread=0.0, tail_quantile=0.0)


def controller(policy=None, **config):
    policy = policy or dict(safety_margin=0.9, ewma_alpha=0.5, **MEAN_ONLY)
    model = LatencyModel(library(), PolicyConfig(**policy))
    ctl = TargetController(model, ControllerConfig(**config), initial_threads=2)
    ctl.on_availability(2, now=0.0)
    return ctl


def test_choose_best_quality_within_margin():
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9, **MEAN_ONLY))
    choice = model.choose(130.0, max_threads=2)
    assert (choice.point, choice.threads) == ('large', 2)        # 110 <= 117
    assert model.choose(120.0, max_threads=2).point == 'medium'   # 110 > 108
    choice = model.choose(120.0, max_threads=1)
    assert (choice.point, choice.threads) == ('medium', 1)        # 100 <= 108
    assert model.choose(100.0, max_threads=1).point == 'small'
    nothing = model.choose(10.0, max_threads=2)
    assert nothing.point == 'small' and not nothing.fits and 'no point fits' in nothing.reason
    # A minimum quality narrows the menu but never leaves it empty.
    assert model.choose(1000.0, max_threads=2, min_quality=29.0).point == 'large'


def test_the_choice_compares_a_tail_estimate_not_the_mean():
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9, tail_z=1.65,
                                                 prior_spread=0.1))
    # Before any result: 110 x (1 + 1.65 x 0.1) = 128.2 ms > 0.9 x 130.
    assert model.expected_ms('large', 2) == pytest.approx(128.15)
    assert model.choose(130.0, max_threads=2).point == 'medium'
    assert model.choose(145.0, max_threads=2).point == 'large'


def test_jittery_results_widen_the_estimate_steady_ones_narrow_it():
    steady = LatencyModel(library(), PolicyConfig(ewma_alpha=0.2, relax=0.0))
    jittery = LatencyModel(library(), PolicyConfig(ewma_alpha=0.2, relax=0.0))
    for i in range(60):
        steady.observe('medium', 60.0, threads=2)
        jittery.observe('medium', 36.0 if i % 2 else 84.0, threads=2)   # mean 60 ms
    assert steady.mean_ms('medium', 2) == pytest.approx(60.0, rel=0.01)
    assert jittery.mean_ms('medium', 2) == pytest.approx(60.0, rel=0.05)
    assert steady.expected_ms('medium', 2) == pytest.approx(60.0, rel=0.01)
    assert jittery.expected_ms('medium', 2) > 80.0
    assert steady.choose(70.0, max_threads=2).point == 'medium'
    assert jittery.choose(70.0, max_threads=2).point == 'small'


def test_measured_latency_corrects_the_expectation():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.5, relax=0.0, **MEAN_ONLY))
    model.observe('large', 220.0, threads=2)   # twice the library's 110 ms
    assert model.ratio('large', 2) == pytest.approx(1.5)
    model.observe('large', math.nan, threads=2)  # ignored
    model.observe('large', 50.0, threads=0)      # ignored: no such thread count
    model.observe('huge', 50.0, threads=2)       # ignored: no such point
    model.observe('large', 1e6, threads=2)       # clamped to the upper ratio bound (4)
    assert model.ratio('large', 2) == pytest.approx(2.75)
    assert model.mean_ms('large', 2) == pytest.approx(302.5)
    assert model.ratio('large', 1) == pytest.approx(1.0)   # one thread: nothing learnt


def test_slow_two_thread_results_move_the_choice_to_one_thread():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.3, **MEAN_ONLY))
    assert model.best_threads('large', 2) == 2
    for _ in range(10):
        model.observe('large', 250.0, threads=2)   # a busy process: 2 threads barely help
    assert model.best_threads('large', 2) == 1     # 200 ms on one thread beats ~250
    choice = model.choose(240.0, max_threads=2)
    assert (choice.point, choice.threads) == ('large', 1)


@pytest.mark.parametrize('budget', [math.nan, -5.0, 0.0, math.inf, 'fast', True])
def test_unusable_budgets_are_refused(budget):
    with pytest.raises(ValueError, match='budget_ms'):
        LatencyModel(library()).choose(budget, max_threads=1)
    with pytest.raises(ValueError, match='budget_ms'):
        controller().set_budget(budget, now=1.0)


def test_budget_change_jumps_directly_to_the_chosen_point():
    ctl = controller()
    assert ctl.set_budget(30.0, now=1.0).point == 'small'
    decision = ctl.set_budget(500.0, now=2.0)
    assert decision.point == 'large' and decision.threads == 2
    assert ctl.switches == 1


def test_a_miss_that_breaks_the_estimate_steps_down_at_once():
    ctl = controller(step_up_after=3)
    ctl.set_budget(125.0, now=1.0)
    assert ctl.current == 'large'
    decision = ctl.on_result('large', 140.0, threads=2, now=1.1)   # ratio 1.14 -> 125 ms
    assert decision.point == 'medium' and 'missed' in decision.reason
    # The learnt ratio of 'large' decays only through its own results, so
    # stepping back up needs on-time results and a point that then fits.
    for now in (1.2, 1.3, 1.4):
        assert ctl.on_result('medium', 50.0, threads=2, now=now) is None
    assert ctl.current == 'medium'
    # A result produced before the switch is learnt from but decides nothing.
    assert ctl.on_result('large', 400.0, threads=2, now=1.5) is None


def test_a_small_miss_waits_for_a_second_one():
    ctl = controller(step_down_after=2)
    ctl.set_budget(130.0, now=1.0)     # large: 110 ms <= 117
    assert ctl.current == 'large'
    # With a slow-moving mean, well past its first results, a result just over
    # the budget leaves the estimate (112 ms) under 0.9 x 130: one such miss
    # keeps the point.
    ctl.model.config = PolicyConfig(safety_margin=0.9, ewma_alpha=0.1, **MEAN_ONLY)
    for k in range(10):
        assert ctl.on_result('large', 110.0, threads=2, now=1.0 + 0.001 * k) is None
    assert ctl.on_result('large', 131.0, threads=2, now=1.1) is None   # 112 ms expected
    decision = ctl.on_result('large', 131.0, threads=2, now=1.2)
    assert decision.point == 'medium' and '2 results in a row' in decision.reason


def test_step_up_after_hysteresis_when_a_better_point_fits_again():
    ctl = controller(step_up_after=2)
    ctl.set_budget(70.0, now=1.0)
    assert ctl.current == 'medium'
    ctl.on_result('medium', 90.0, threads=2, now=1.1)  # miss -> small
    assert ctl.current == 'small'
    # medium's ratio grew to 1.25 (75 ms > 63): fast small results alone keep small.
    assert ctl.on_result('small', 20.0, threads=2, now=1.2) is None
    assert ctl.on_result('small', 20.0, threads=2, now=1.3) is None
    assert ctl.current == 'small'
    ctl.set_budget(100.0, now=1.4)   # now medium (75) fits 90 again: jump at once
    assert ctl.current == 'medium'


def test_losing_a_core_jumps_to_the_point_for_one_thread():
    ctl = controller()
    ctl.set_budget(125.0, now=1.0)
    assert ctl.current == 'large'
    # A drop counts once every report for drop_after_s (0.3 s) has shown it.
    assert ctl.on_availability(1, now=1.5) is None
    decision = ctl.on_availability(1, now=1.8)
    assert decision.point == 'medium' and decision.threads == 1  # 100 ms <= 112.5
    assert ctl.on_availability(1, now=2.0) is None  # nothing changed
    # The core must stay free for rise_after_s (1 s) before it is planned with.
    assert ctl.on_availability(2, now=3.0) is None
    assert ctl.on_availability(2, now=3.5) is None
    decision = ctl.on_availability(2, now=4.0)
    assert decision.point == 'large' and decision.threads == 2


def test_a_core_free_for_one_sample_at_a_time_is_not_planned_with():
    ctl = controller(rise_after_s=1.0)
    ctl.set_budget(125.0, now=1.0)
    assert ctl.on_availability(1, now=1.0) is None
    assert ctl.on_availability(1, now=1.3).threads == 1    # a drop lasting 0.3 s counts
    for k in range(8):  # free, busy, free, busy, ... every 0.25 s
        now = 1.5 + 0.25 * k
        assert ctl.on_availability(2 if k % 2 == 0 else 1, now=now) is None
    assert ctl.threads == 1 and ctl.switches == 1
    with pytest.raises(ValueError, match='rise_after_s'):
        ControllerConfig(rise_after_s=math.nan)


def test_stale_resource_information_falls_back_to_one_thread():
    ctl = controller(stale_after_s=2.0)
    ctl.set_budget(125.0, now=1.0)
    assert ctl.on_stale(now=1.5) is None
    decision = ctl.on_stale(now=2.5)
    assert decision.threads == 1 and decision.point == 'medium'
    assert 'stale' in decision.reason
    assert ctl.on_stale(now=3.0) is None   # falls back once
    # Fresh data with the same thread count: stepping up waits for results.
    assert ctl.on_availability(2, now=3.1) is None


def test_force_and_release():
    ctl = controller()
    ctl.set_budget(30.0, now=1.0)
    assert ctl.force('large', now=1.1).point == 'large'
    assert ctl.on_result('large', 500.0, threads=2, now=1.2) is None  # pinned
    with pytest.raises(KeyError, match='known: large, medium, small'):
        ctl.force('huge', now=1.3)
    assert ctl.forced == 'large'
    assert ctl.release(now=1.4).point == 'small'


def test_invalid_configs_name_the_field():
    with pytest.raises(ValueError, match='safety_margin'):
        PolicyConfig(safety_margin=1.5)
    with pytest.raises(ValueError, match='tail_z'):
        PolicyConfig(tail_z=math.nan)
    with pytest.raises(ValueError, match='prior_spread'):
        PolicyConfig(prior_spread=-0.1)
    with pytest.raises(ValueError, match='step_up_after'):
        ControllerConfig(step_up_after=0)
    with pytest.raises(ValueError, match='step_down_after'):
        ControllerConfig(step_down_after=0)


def test_abandoned_points_relax_toward_current_conditions():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.5, relax=0.1, **MEAN_ONLY))
    for _ in range(5):
        model.observe('large', 330.0, threads=2)       # a slow spell: 3x the library
    slow = model.ratio('large', 2)
    assert slow > 2.5
    for _ in range(40):
        model.observe('small', 25.0, threads=2)        # now as the library says
    assert model.ratio('small', 2) == pytest.approx(1.0, abs=0.01)
    assert 1.0 < model.ratio('large', 2) < 1.1          # no longer judged by the spell
    assert model.choose(140.0, max_threads=2).point == 'large'


def test_a_result_stopped_at_the_deadline_is_learnt_at_the_budget_or_beyond():
    ctl = controller(policy=dict(safety_margin=0.9, ewma_alpha=0.5, censored_factor=1.25,
                                 **MEAN_ONLY))
    ctl.set_budget(125.0, now=1.0)
    assert ctl.current == 'large'
    # Cut at the deadline, the worker reports ~120 ms: on time by the clock,
    # but the search was not finished; learnt as 1.25 x 125 ms, a miss.
    decision = ctl.on_result('large', 120.0, threads=2, now=1.1, cut=True)
    assert decision is not None and decision.point == 'medium'
    assert ctl.model.mean_ms('large', 2) == pytest.approx(110.0 * (1 + 0.5 * (156.25 / 110 - 1)))
    # The same latency uncut is simply on time.
    fresh = controller()
    fresh.set_budget(125.0, now=1.0)
    assert fresh.on_result('large', 100.0, threads=2, now=1.1) is None
    # A cut answer is incomplete: a miss whatever the factor, even 1 (learnt
    # at the budget), and whatever its latency.
    assert PolicyConfig().censored_factor > 1
    lenient = controller(policy=dict(safety_margin=0.9, censored_factor=1.0, **MEAN_ONLY))
    lenient.set_budget(125.0, now=1.0)
    decision = lenient.on_result('large', 30.0, threads=2, now=1.1, cut=True)
    assert decision is not None and decision.point == 'medium'
    assert 'cut at the 125 ms deadline' in decision.reason
    assert lenient.misses_in_row == 0 and lenient.switches == 1
    with pytest.raises(ValueError, match='censored_factor'):
        PolicyConfig(censored_factor=0.5)


def test_one_noisy_sample_does_not_switch_threads_but_a_real_loss_does_quickly():
    ctl = controller(drop_after_s=0.3)
    ctl.set_budget(125.0, now=1.0)
    assert ctl.on_availability(2, now=1.0) is None
    # 8 Hz samples: one at 1 thread amid 2s is noise.
    for k, threads in enumerate([2, 1, 2, 2, 1, 2, 2]):
        assert ctl.on_availability(threads, now=1.0 + 0.125 * (k + 1)) is None
    assert ctl.threads == 2 and ctl.switches == 0
    # A core taken for good: acted on at the 4th sample, 0.375 s after the first.
    start = 2.0
    decisions = [ctl.on_availability(1, now=start + 0.125 * k) for k in range(5)]
    assert decisions[:3] == [None, None, None] and decisions[3].threads == 1
    assert '1 usable thread' in decisions[3].reason
    with pytest.raises(ValueError, match='drop_after_s'):
        ControllerConfig(drop_after_s=-1.0)


# -- min_quality: the best point meeting both the budget and the minimum ------------


def test_min_quality_chooses_the_best_point_meeting_both():
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9, **MEAN_ONLY))
    # 70 ms (limit 63): medium (60 ms, 28) fits, large (110 ms, 30) does not.
    assert model.choose(70.0, max_threads=2).point == 'medium'
    both = model.choose(70.0, max_threads=2, min_quality=26.0)
    assert both.point == 'medium' and both.fits
    assert model.choose(200.0, max_threads=2, min_quality=29.0).point == 'large'


def test_when_no_point_meets_both_the_minimum_quality_wins():
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9, **MEAN_ONLY))
    # Only large reaches 29; it does not fit 70 ms. Asking for more quality must
    # never give less (the old fallback took the fastest point of all: small, 25).
    choice = model.choose(70.0, max_threads=2, min_quality=29.0)
    assert (choice.point, choice.threads) == ('large', 2) and not choice.fits
    assert 'quality >= 29' in choice.reason and '70 ms' in choice.reason
    assert 'medium' in choice.reason          # says what would have fitted the budget
    # Among points meeting the minimum, the fastest one when none fits.
    choice = model.choose(50.0, max_threads=2, min_quality=27.0)
    assert choice.point == 'medium' and not choice.fits
    # Nothing at all fits: the plain message, still within the minimum.
    choice = model.choose(10.0, max_threads=2, min_quality=27.0)
    assert choice.point == 'medium' and 'no point' in choice.reason


@pytest.mark.parametrize('minimum', [30.5, math.inf])
def test_an_unreachable_minimum_quality_is_refused_not_ignored(minimum):
    model = LatencyModel(library(), PolicyConfig(**MEAN_ONLY))
    assert model.check_min_quality(30.0) is None
    problem = model.check_min_quality(minimum)
    assert problem.startswith('min_quality') and 'large' in problem and '30' in problem
    with pytest.raises(ValueError, match='min_quality'):
        model.choose(100.0, max_threads=2, min_quality=minimum)
    ctl = controller()
    ctl.set_budget(500.0, now=1.0)
    with pytest.raises(ValueError, match='min_quality'):
        ctl.set_budget(30.0, now=2.0, min_quality=minimum)
    assert ctl.budget_ms == 500.0 and ctl.current == 'large'   # nothing changed


def test_step_downs_keep_to_the_minimum_quality():
    ctl = controller()
    decision = ctl.set_budget(130.0, now=1.0, min_quality=27.0)   # large fits 117
    assert decision.point == 'large' and decision.fits
    # A slow result on two threads: points never run there start from what two
    # threads show now, so medium (28, still meeting the minimum) on one thread.
    decision = ctl.on_result('large', 300.0, threads=2, now=1.1)
    assert (decision.point, decision.threads) == ('medium', 1) and decision.fits
    # Slow on one thread too: medium on two threads still fits (112 ms <= 117).
    decision = ctl.on_result('medium', 300.0, threads=1, now=1.2)
    assert (decision.point, decision.threads) == ('medium', 2) and decision.fits
    # And slow there: nothing meeting the minimum fits any more, and small
    # (25), which would, is below it: the fastest setting of medium, the one
    # in force, stays, now known not to fit.
    assert ctl.on_result('medium', 300.0, threads=2, now=1.3) is None
    assert (ctl.current, ctl.threads) == ('medium', 2) and not ctl.fits
    assert 'min_quality wins' in ctl.last_reason and 'small' in ctl.last_reason


# -- budgets the workers cannot take -------------------------------------------------


@pytest.mark.parametrize('budget, words', [
    (1e300, 'at most'), (BUDGET_MS_MAX * 1.0001, 'at most'), (1e-300, 'below'),
    (1e-4, 'below'), (-math.inf, 'positive'),
])
def test_budgets_outside_what_workers_accept_are_refused(budget, words):
    with pytest.raises(ValueError, match=f'budget_ms: .*{words}'):
        controller().set_budget(budget, now=1.0)
    assert check_budget(budget).startswith('budget_ms')


def test_the_budget_range_is_the_workers_parameter_range():
    assert WORKER_BUDGET_MS_RANGE == (0.0, BUDGET_MS_MAX)
    assert check_budget(BUDGET_MS_MAX) is None and check_budget(BUDGET_MS_MIN) is None
    # A budget below every operating point is still a valid request (answered
    # with a warning): load and threads change what fits.
    decision = controller().set_budget(0.5, now=1.0)
    assert not decision.fits and decision.point == 'small'


# -- releasing and diagnostics' view of a decision ---------------------------------


def test_release_without_a_budget_returns_to_the_best_quality_point():
    ctl = controller()
    assert ctl.force('small', now=1.0).point == 'small'
    decision = ctl.release(now=1.1)
    assert decision is not None and decision.point == 'large' and decision.threads == 2
    assert ctl.current == 'large' and ctl.forced is None
    assert 'no budget' in decision.reason


def test_the_controller_remembers_whether_the_choice_fits():
    ctl = controller()
    assert ctl.set_budget(5.0, now=1.0).fits is False and ctl.fits is False
    assert ctl.set_budget(500.0, now=1.1).fits is True and ctl.fits is True
    # A forced point that does not fit the budget is reported as not fitting.
    ctl.set_budget(30.0, now=1.2)
    forced = ctl.force('large', now=1.3)
    assert forced.point == 'large' and not forced.fits and not ctl.fits
    assert 'forced' in forced.reason


def test_the_tail_is_the_promised_quantile_of_recent_results_once_enough_are_in():
    # Long sentences take longer with every point: one result in ten at 2x the
    # usual latency. A normal approximation of that spread promises too much.
    config = PolicyConfig(safety_margin=1.0, ewma_alpha=0.05, tail_quantile=0.95,
                          min_tail_samples=20, prior_spread=0.0)
    model = LatencyModel(library(), config)
    assert model.tail_factor('small', 2) == 1.0           # no results: the prior
    for i in range(19):
        model.observe('small', 50.0 if i % 10 == 0 else 25.0, threads=2)
    assert model.tail_factor('small', 2) < 1.5             # 19 results: still the normal one
    for i in range(19, 100):
        model.observe('small', 50.0 if i % 10 == 0 else 25.0, threads=2)
    factor = model.tail_factor('small', 2)
    assert 1.7 < factor < 2.0                               # 2x, relative to a mean a bit above 1
    # Pooled over points: the medium point, never run, gets the same spread.
    assert model.tail_factor('medium', 2) == factor
    assert model.expected_ms('medium', 2) == pytest.approx(model.mean_ms('medium', 2) * factor)
    # 95 % of small's results fit about 50 ms, not the 25 ms of most of them.
    assert model.expected_ms('small', 2) > 45.0
    with pytest.raises(ValueError, match='tail_quantile'):
        PolicyConfig(tail_quantile=1.0)
    with pytest.raises(ValueError, match='min_tail_samples'):
        PolicyConfig(tail_window=10, min_tail_samples=20)


def test_a_cut_result_teaches_the_tail_only_that_it_took_the_whole_budget():
    ctl = controller(policy=dict(safety_margin=0.9, ewma_alpha=0.5, tail_quantile=0.95,
                                 min_tail_samples=1, prior_spread=0.0))
    ctl.set_budget(125.0, now=1.0)
    ctl.on_result('large', 120.0, threads=2, now=1.1, cut=True)
    # The mean learns the penalty (1.5 x 125 ms); the spread keeps 125 ms / 110 ms.
    assert ctl.model.mean_ms('large', 2) == pytest.approx(110.0 * (1 + 0.5 * (187.5 / 110 - 1)))
    assert ctl.model.tail_factor('large', 2) == pytest.approx(125.0 / 110.0)


def test_the_first_results_correct_a_library_made_elsewhere_quickly():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.2, **MEAN_ONLY))
    for _ in range(3):              # this machine is 1.5x slower than the library's
        model.observe('large', 165.0, threads=2)
    # Weights 1/2, 1/3, 1/4 (a running mean with the prior as one sample): 1.375.
    assert model.ratio('large', 2) == pytest.approx(1.375)
    for _ in range(20):             # then alpha: the prior's weight has worn off
        model.observe('large', 165.0, threads=2)
    assert model.ratio('large', 2) == pytest.approx(1.5, abs=0.01)
