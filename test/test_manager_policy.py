import math

import pytest

from dyn_dnn_ros.manager.controller import ControllerConfig, TargetController
from dyn_dnn_ros.manager.policy import LatencyModel, PolicyConfig
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary


def library():
    def point(name, quality, one, two):
        return OperatingPoint(name, 'translation', {}, {1: one, 2: two}, quality)
    return OperatingPointLibrary('translation', 'cpu', 'bleu', [
        point('large', 30.0, 200.0, 110.0),
        point('medium', 28.0, 100.0, 60.0),
        point('small', 25.0, 40.0, 25.0),
    ])


def controller(**config):
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9, ewma_alpha=0.5))
    ctl = TargetController(model, ControllerConfig(**config), initial_threads=2)
    ctl.on_availability(2, now=0.0)
    return ctl


def test_choose_best_quality_within_margin():
    model = LatencyModel(library(), PolicyConfig(safety_margin=0.9))
    assert model.choose(130.0, threads=2).point == 'large'    # 110 <= 117
    assert model.choose(120.0, threads=2).point == 'medium'   # 110 > 108
    assert model.choose(120.0, threads=1).point == 'medium'   # 100 <= 108
    assert model.choose(100.0, threads=1).point == 'small'
    nothing = model.choose(10.0, threads=2)
    assert nothing.point == 'small' and not nothing.fits and 'no point fits' in nothing.reason
    # A minimum quality narrows the menu but never leaves it empty.
    assert model.choose(1000.0, threads=2, min_quality=29.0).point == 'large'


@pytest.mark.parametrize('budget', [math.nan, -5.0, 0.0, math.inf, 'fast', True])
def test_unusable_budgets_are_refused(budget):
    with pytest.raises(ValueError, match='budget_ms'):
        LatencyModel(library()).choose(budget, threads=1)
    with pytest.raises(ValueError, match='budget_ms'):
        controller().set_budget(budget, now=1.0)


def test_measured_latency_corrects_the_expectation():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.5, relax=0.0))
    model.observe('large', 220.0, threads=2)   # twice the library's 110 ms
    assert model.ratio['large'] == pytest.approx(1.5)
    model.observe('large', math.nan, threads=2)  # ignored
    model.observe('large', 1e6, threads=2)       # clamped to the upper ratio bound (4)
    assert model.ratio['large'] == pytest.approx(2.75)
    assert model.expected_ms('large', 2) == pytest.approx(302.5)


def test_budget_change_jumps_directly_to_the_chosen_point():
    ctl = controller()
    assert ctl.set_budget(30.0, now=1.0).point == 'small'
    decision = ctl.set_budget(500.0, now=2.0)
    assert decision.point == 'large' and decision.threads == 2
    assert ctl.switches == 1


def test_a_miss_steps_down_at_once_and_step_up_waits_for_on_time_results():
    ctl = controller(step_up_after=3)
    ctl.set_budget(125.0, now=1.0)
    assert ctl.current == 'large'
    decision = ctl.on_result('large', 140.0, threads=2, now=1.1)
    assert decision.point == 'medium' and 'missed' in decision.reason
    # The learnt ratio of 'large' decays only through its own results, so
    # stepping back up needs on-time results and a point that then fits.
    assert ctl.on_result('medium', 50.0, threads=2, now=1.2) is None
    assert ctl.on_result('medium', 50.0, threads=2, now=1.3) is None
    assert ctl.on_result('medium', 50.0, threads=2, now=1.4) is None  # large still 'slow'
    assert ctl.current == 'medium'
    # A result produced before the switch is learnt from but decides nothing.
    assert ctl.on_result('large', 400.0, threads=2, now=1.5) is None


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
    decision = ctl.on_availability(1, now=1.5)
    assert decision.point == 'medium' and decision.threads == 1  # 100 ms <= 112.5
    assert ctl.on_availability(1, now=2.0) is None  # nothing changed
    assert ctl.on_availability(2, now=3.0).point == 'large'


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
    with pytest.raises(ValueError, match='step_up_after'):
        ControllerConfig(step_up_after=0)


def test_ratios_of_abandoned_points_relax_toward_current_conditions():
    model = LatencyModel(library(), PolicyConfig(ewma_alpha=0.5, relax=0.1))
    for _ in range(5):
        model.observe('large', 330.0, threads=2)       # a slow spell: 3x the library
    slow = model.ratio['large']
    assert slow > 2.5
    for _ in range(40):
        model.observe('small', 25.0, threads=2)        # now as the library says
    assert model.ratio['small'] == pytest.approx(1.0, abs=0.01)
    assert model.global_ratio == pytest.approx(1.0, abs=0.01)
    assert 1.0 < model.ratio['large'] < 1.1           # no longer judged by the spell
    assert model.choose(140.0, threads=2).point == 'large'
