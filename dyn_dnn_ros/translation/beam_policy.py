"""The dynamic beam-width policy (Jahier Pagliari et al., GLSVLSI 2019) and its calibration.

At every decoding step the search looks at the best ``bw_max`` candidate
scores of a sentence. When they are spread out (high standard deviation), the
best continuation clearly dominates and a narrow beam is enough; when they are
close together, the search keeps the full width. The width follows a
piece-wise linear map of the spread::

    width = bw_max                      spread <= sigma_min
    width = bw_min                      spread >= sigma_max
    linear in between, rounded to the nearest integer (halves round up)

Two spread metrics are offered: ``std``, the paper's standard deviation of
the candidate scores, and ``gap``, the margin between the best and the
second-best candidate (a log-probability difference, i.e. the log of their
probability ratio). ``BeamPolicy`` holds a policy's parameters and validates
them; an operating-point library stores one per point.

Calibration follows the paper: decode validation data at the fixed width
``bw_max``, collect the per-step metric, and take two percentiles of its
distribution (the paper uses the 5th and the 50th) as ``sigma_min`` and
``sigma_max``.
"""

from dataclasses import dataclass

import numpy as np

from dyn_dnn_ros.validation import require_finite, require_in_interval, require_int

BEAM_MODES = ('fixed', 'dynamic')
METRICS = ('std', 'gap')


@dataclass(frozen=True)
class BeamPolicy:
    """How wide the decoder searches: a fixed width or the dynamic policy."""

    mode: str = 'fixed'
    width: int = 5
    bw_min: int = 1
    bw_max: int = 5
    sigma_min: float = 0.0
    sigma_max: float = 1.0
    metric: str = 'std'

    def __post_init__(self):
        validate_beam_policy(self)

    def to_dict(self):
        if self.mode == 'fixed':
            return {'mode': 'fixed', 'width': self.width}
        return {'mode': 'dynamic', 'bw_min': self.bw_min, 'bw_max': self.bw_max,
                'sigma_min': self.sigma_min, 'sigma_max': self.sigma_max,
                'metric': self.metric}

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'beam: expected a mapping, got {data!r}')
        unknown = set(data) - {'mode', 'width', 'bw_min', 'bw_max', 'sigma_min', 'sigma_max',
                               'metric'}
        if unknown:
            raise ValueError(f'beam: unknown field(s) {sorted(unknown)}')
        return cls(**data)

    def describe(self):
        if self.mode == 'fixed':
            return f'fixed width {self.width}'
        return (f'dynamic {self.metric} bw {self.bw_min}..{self.bw_max} '
                f'sigma {self.sigma_min:g}..{self.sigma_max:g}')


def validate_beam_policy(policy):
    """Raise ValueError naming the parameter when a beam policy is unusable.

    The whole policy is checked in every mode: a fixed policy does not use
    the dynamic fields, but a worker keeps them, and switching its mode alone
    would put them in force.
    """
    if policy.mode not in BEAM_MODES:
        raise ValueError(f'beam.mode: must be one of {BEAM_MODES}, got {policy.mode!r}')
    for name in ('width', 'bw_min', 'bw_max'):
        require_int(f'beam.{name}', getattr(policy, name), 1)
    for name in ('sigma_min', 'sigma_max'):
        require_finite(f'beam.{name}', getattr(policy, name), 0)
    if policy.bw_min > policy.bw_max:
        raise ValueError(f'beam.bw_min: {policy.bw_min} must not exceed bw_max {policy.bw_max}')
    if policy.sigma_min >= policy.sigma_max:
        raise ValueError(f'beam.sigma_min: {policy.sigma_min:g} must be below '
                         f'sigma_max {policy.sigma_max:g}')
    if policy.metric not in METRICS:
        raise ValueError(f"beam.metric: must be 'std' or 'gap', got {policy.metric!r}")



PAPER_PERCENTILES = (5.0, 50.0)
# Percentile pairs a calibration table offers besides the paper's.
CANDIDATE_PERCENTILES = ((5.0, 50.0), (10.0, 50.0), (5.0, 75.0), (10.0, 75.0), (25.0, 75.0),
                         (5.0, 90.0))


def max_width(policy: BeamPolicy) -> int:
    """The widest beam the policy can ask for: the tensor width the search allocates."""
    return policy.width if policy.mode == 'fixed' else policy.bw_max


def candidate_metric(top_scores, metric: str) -> np.ndarray:
    """Spread ``[B]`` (float64) of each row of ``top_scores`` ``[B, k]`` (best first, k >= 2).

    ``std`` is the population standard deviation of the k scores; ``gap`` is
    ``top_scores[:, 0] - top_scores[:, 1]``. A row holding ``-inf`` (fewer
    live candidates than k) gives a non-finite value; ``policy_widths`` maps
    that to the full width. NumPy, not PyTorch: the search calls this once per
    step on a handful of numbers, where a PyTorch operator's dispatch costs
    more than its arithmetic.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: must be one of {METRICS}, got {metric!r}")
    top_scores = np.asarray(top_scores, dtype=np.float64)
    if top_scores.ndim != 2 or top_scores.shape[1] < 2:
        raise ValueError(f'top_scores: need shape [B, k>=2], got {top_scores.shape}')
    with np.errstate(invalid='ignore'):  # -inf - -inf: an unmeasurable row, kept as NaN
        if metric == 'gap':
            return top_scores[:, 0] - top_scores[:, 1]
        deviation = top_scores - top_scores.mean(axis=1, keepdims=True)
        return np.sqrt((deviation * deviation).mean(axis=1))


def policy_widths(values, policy: BeamPolicy) -> np.ndarray:
    """Beam widths ``[B]`` (int64) for metric ``values`` ``[B]`` under a dynamic ``policy``."""
    if policy.mode != 'dynamic':
        raise ValueError(f"beam.mode: policy_widths needs a dynamic policy, got {policy.mode!r}")
    values = np.asarray(values, dtype=np.float64)
    # A non-finite spread means the candidates could not be measured (e.g. only
    # EOS was allowed); keeping the full width is the safe choice.
    values = np.where(np.isfinite(values), values, 0.0)
    fraction = np.clip((values - policy.sigma_min) / (policy.sigma_max - policy.sigma_min),
                       0.0, 1.0)
    width = policy.bw_max - fraction * (policy.bw_max - policy.bw_min)
    return np.floor(width + 0.5).astype(np.int64)


def width_for(value: float, policy: BeamPolicy) -> int:
    """``policy_widths`` for one scalar: the policy's curve, for tables and tests."""
    return int(policy_widths([float(value)], policy)[0])


# -- calibration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One calibrated dynamic policy: which percentiles of which metric gave its thresholds."""

    metric: str
    low_percentile: float
    high_percentile: float
    policy: BeamPolicy

    @property
    def label(self):
        return f'{self.metric} p{self.low_percentile:g}/p{self.high_percentile:g}'


def percentile_thresholds(values, low: float, high: float) -> tuple[float, float]:
    """``(sigma_min, sigma_max)``: the ``low`` and ``high`` percentiles of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError('values: no finite metric values to calibrate from')
    for name, pct in (('low', low), ('high', high)):
        require_in_interval(f'{name} percentile', pct, '[0, 100]')
    if low >= high:
        raise ValueError(f'low percentile {low} must be below high percentile {high}')
    sigma_min, sigma_max = np.percentile(values, [low, high])
    return float(sigma_min), float(sigma_max)


def calibrate(values_by_metric: dict, bw_min: int, bw_max: int,
              percentiles=CANDIDATE_PERCENTILES) -> list[Candidate]:
    """Dynamic policies from each metric's percentile pairs.

    A pair whose two percentiles coincide (a metric that is mostly one value)
    cannot define a ramp and is left out rather than nudged.
    """
    candidates = []
    for metric, values in values_by_metric.items():
        if metric not in METRICS:
            raise ValueError(f'metric: must be one of {METRICS}, got {metric!r}')
        for low, high in percentiles:
            sigma_min, sigma_max = percentile_thresholds(values, low, high)
            if not sigma_max > sigma_min:
                continue
            policy = BeamPolicy(mode='dynamic', bw_min=bw_min, bw_max=bw_max,
                                sigma_min=max(sigma_min, 0.0), sigma_max=sigma_max,
                                metric=metric)
            candidates.append(Candidate(metric, low, high, policy))
    return candidates
