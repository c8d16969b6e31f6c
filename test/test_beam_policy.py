"""The dynamic beam-width policy: spread metrics, the piece-wise linear map, calibration."""

import math

import numpy as np
import pytest
import torch

from dyn_dnn_ros.translation.beam_policy import (
    BeamPolicy,
    calibrate,
    candidate_metric,
    max_width,
    percentile_thresholds,
    policy_widths,
    width_for,
)
from dyn_dnn_ros.translation.beam_search import BeamSearchConfig


def dynamic(**kwargs):
    settings = dict(mode='dynamic', bw_min=1, bw_max=5, sigma_min=0.0, sigma_max=4.0)
    settings.update(kwargs)
    return BeamPolicy(**settings)


@pytest.mark.parametrize('value, width', [
    (-1.0, 5), (0.0, 5),  # at or below sigma_min: widest
    (0.5, 5),  # 4.5 rounds up
    (1.0, 4), (1.5, 4), (2.0, 3), (2.5, 3), (3.0, 2), (3.5, 2), (3.9, 1),
    (4.0, 1), (100.0, 1),  # at or above sigma_max: narrowest
])
def test_piecewise_linear_map_and_rounding(value, width):
    assert width_for(value, dynamic()) == width


def test_map_with_offset_thresholds_and_narrow_range():
    policy = dynamic(bw_min=2, bw_max=4, sigma_min=1.0, sigma_max=3.0)
    assert [width_for(v, policy) for v in (0.5, 1.0, 1.49, 1.5, 2.0, 2.5, 2.51, 3.0, 9.0)] == \
        [4, 4, 4, 4, 3, 3, 2, 2, 2]
    sweep = policy_widths(np.linspace(0, 4, 401), policy)
    assert (sweep[1:] <= sweep[:-1]).all()  # never widens as the spread grows
    assert set(sweep.tolist()) == {2, 3, 4}


def test_unmeasurable_spread_keeps_the_full_width():
    widths = policy_widths([math.nan, math.inf, -math.inf], dynamic())
    assert widths.tolist() == [5, 5, 5]


def test_policy_widths_needs_a_dynamic_policy():
    with pytest.raises(ValueError, match='beam.mode'):
        policy_widths([1.0], BeamPolicy(mode='fixed', width=3))
    assert max_width(BeamPolicy(mode='fixed', width=3)) == 3
    assert max_width(dynamic(bw_max=7)) == 7


def test_candidate_metrics():
    top = np.array([[0.0, -1.0, -2.0, -3.0], [-1.0, -1.0, -1.0, -1.0]])
    np.testing.assert_allclose(candidate_metric(top, 'std'),
                               [math.sqrt(1.25), 0.0])  # population std
    np.testing.assert_array_equal(candidate_metric(top, 'gap'), [1.0, 0.0])
    dead = np.array([[-1.0, -math.inf, -math.inf]])
    assert not np.isfinite(candidate_metric(dead, 'std')).any()
    assert not np.isfinite(candidate_metric(dead, 'gap')).any()
    scores = np.sort(np.random.default_rng(0).normal(-5, 2, (1000, 5)), axis=1)[:, ::-1]
    np.testing.assert_allclose(candidate_metric(scores, 'std'), np.std(scores, axis=1),
                               rtol=1e-12)
    as_tensor = candidate_metric(torch.from_numpy(scores.copy()), 'std')  # tensors are accepted
    np.testing.assert_array_equal(as_tensor, candidate_metric(scores, 'std'))
    with pytest.raises(ValueError, match='metric'):
        candidate_metric(top, 'entropy')
    with pytest.raises(ValueError, match='top_scores'):
        candidate_metric(top[:, :1], 'std')


def test_gap_policy_maps_the_margin():
    policy = dynamic(metric='gap', sigma_min=0.5, sigma_max=2.5)
    top = np.array([[-0.1, -0.3, -5.0], [-0.1, -3.0, -4.0], [-0.1, -1.6, -9.0]])
    assert policy_widths(candidate_metric(top, 'gap'), policy).tolist() == [5, 1, 3]


@pytest.mark.parametrize('kwargs, name', [
    (dict(bw_min=0), 'beam.bw_min'),
    (dict(bw_min=6, bw_max=5), 'beam.bw_min'),
    (dict(sigma_min=2.0, sigma_max=2.0), 'beam.sigma_min'),
    (dict(sigma_min=3.0, sigma_max=2.0), 'beam.sigma_min'),
    (dict(sigma_min=math.nan), 'beam.sigma_min'),
    (dict(sigma_max=math.nan), 'beam.sigma_max'),
    (dict(bw_max=math.nan), 'beam.bw_max'),
    (dict(metric='entropy'), 'beam.metric'),
])
def test_bad_dynamic_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BeamSearchConfig(beam=dynamic(**kwargs))


def test_percentile_thresholds():
    values = np.arange(101, dtype=float)
    assert percentile_thresholds(values, 5, 50) == (5.0, 50.0)
    assert percentile_thresholds(np.append(values, [math.nan, math.inf]), 5, 50) == (5.0, 50.0)
    with pytest.raises(ValueError, match='low percentile'):
        percentile_thresholds(values, 50, 5)
    with pytest.raises(ValueError, match='high percentile'):
        percentile_thresholds(values, 5, 101)
    with pytest.raises(ValueError, match='no finite'):
        percentile_thresholds([math.nan], 5, 50)


def test_calibrate_builds_valid_policies_and_skips_flat_pairs():
    rng = np.random.default_rng(0)
    values = {'std': rng.gamma(2.0, 0.5, 1000), 'gap': np.r_[np.zeros(800), np.ones(200)]}
    candidates = calibrate(values, 2, 5, [(5, 50), (10, 90)])
    labels = [c.label for c in candidates]
    # gap's 5th, 10th and 50th percentiles are all 0: only p10/p90 gives a ramp
    assert labels == ['std p5/p50', 'std p10/p90', 'gap p10/p90']
    paper = candidates[0].policy
    assert (paper.bw_min, paper.bw_max, paper.metric) == (2, 5, 'std')
    assert paper.sigma_min == pytest.approx(np.percentile(values['std'], 5))
    assert paper.sigma_max == pytest.approx(np.percentile(values['std'], 50))
    with pytest.raises(ValueError, match='metric'):
        calibrate({'entropy': [1.0, 2.0]}, 1, 5)
