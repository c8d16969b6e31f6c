"""Which operating point fits a latency budget on the hardware available now.

Expected latency of a point = its library latency at the usable thread count
x a correction ratio learnt online from the worker's measured results (an
exponentially weighted mean of measured / library latency, per point; the
ratios of points not in use drift toward the ratio seen across all points). The
seed papers choose open loop from the library alone; the correction closes
the loop, so a library measured on a quieter machine, a hotter board or a
longer input mix still leads to budgets being met.
"""

from dataclasses import dataclass
import math

from dyn_dnn_ros.operating_points import OperatingPointLibrary


@dataclass(frozen=True)
class PolicyConfig:
    safety_margin: float = 0.85   # a point fits when expected <= margin x budget
    ewma_alpha: float = 0.3       # weight of the newest measured/library ratio
    ratio_bounds: tuple = (0.25, 4.0)  # one outlier cannot teach an absurd ratio
    # Per observation, how far the ratios of the other points move toward the
    # ratio seen across all points: a point abandoned after a slow spell is
    # not judged by that spell forever.
    relax: float = 0.05

    def __post_init__(self):
        if not 0 < self.safety_margin <= 1:
            raise ValueError(f'safety_margin: must be in (0, 1], got {self.safety_margin}')
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError(f'ewma_alpha: must be in (0, 1], got {self.ewma_alpha}')
        if not 0 <= self.relax <= 1:
            raise ValueError(f'relax: must be in [0, 1], got {self.relax}')
        low, high = self.ratio_bounds
        if not 0 < low <= 1 <= high:
            raise ValueError(f'ratio_bounds: must satisfy 0 < low <= 1 <= high, got '
                             f'{self.ratio_bounds}')


@dataclass(frozen=True)
class Choice:
    point: str
    expected_ms: float
    fits: bool          # False: nothing fits, this is the fastest point
    reason: str


def check_budget(budget_ms):
    """Why a budget is unusable, or None."""
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)):
        return f'budget_ms: must be a number of milliseconds, got {budget_ms!r}'
    if not math.isfinite(budget_ms) or budget_ms <= 0:
        return f'budget_ms: must be a positive finite number of milliseconds, got {budget_ms}'
    return None


class LatencyModel:
    """Library latency corrected by what the worker actually measured."""

    def __init__(self, library: OperatingPointLibrary, config: PolicyConfig = PolicyConfig()):
        self.library = library
        self.config = config
        self.ratio = {point.name: 1.0 for point in library.points}
        self.global_ratio = 1.0

    def expected_ms(self, name, threads):
        return self.library.get(name).latency_at(threads) * self.ratio[name]

    def observe(self, name, measured_ms, threads):
        """Fold one measured latency into the point's correction ratio."""
        if name not in self.ratio or not math.isfinite(measured_ms) or measured_ms <= 0:
            return
        sample = measured_ms / self.library.get(name).latency_at(threads)
        low, high = self.config.ratio_bounds
        sample = min(max(sample, low), high)
        alpha, relax = self.config.ewma_alpha, self.config.relax
        self.ratio[name] = (1 - alpha) * self.ratio[name] + alpha * sample
        self.global_ratio = (1 - alpha) * self.global_ratio + alpha * sample
        for other in self.ratio:
            if other != name:
                self.ratio[other] += relax * (self.global_ratio - self.ratio[other])

    def choose(self, budget_ms, threads, min_quality=None, faster_than=None) -> Choice:
        """Best-quality point expected to fit ``margin x budget`` at ``threads``.

        ``faster_than`` restricts the choice to points expected to be faster
        than that point (used to step down when the current one missed).
        """
        problem = check_budget(budget_ms)
        if problem:
            raise ValueError(problem)
        limit = self.config.safety_margin * budget_ms
        expected = {p.name: self.expected_ms(p.name, threads) for p in self.library.points}
        candidates = self.library.by_quality()
        if faster_than is not None:
            candidates = [p for p in candidates if expected[p.name] < expected[faster_than]]
        if min_quality is not None and math.isfinite(min_quality):
            good_enough = [p for p in candidates if p.quality >= min_quality]
            candidates = good_enough or candidates
        for point in candidates:
            if expected[point.name] <= limit:
                return Choice(point.name, expected[point.name], True,
                              f'best quality ({point.quality:g}) expected within '
                              f'{self.config.safety_margin:.0%} of {budget_ms:g} ms at '
                              f'{threads} thread(s): {expected[point.name]:.1f} ms')
        fastest = min(self.library.points, key=lambda p: expected[p.name])
        return Choice(fastest.name, expected[fastest.name], False,
                      f'no point fits {budget_ms:g} ms at {threads} thread(s); fastest '
                      f'expected {expected[fastest.name]:.1f} ms')
