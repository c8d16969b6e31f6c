"""Which operating point, on how many threads, fits a latency budget right now.

A budget is met per result, so the mean latency of a point is the wrong
thing to compare with it: sentences differ in length and a busy machine adds
jitter. The expected latency of a point here is a *tail* estimate:

    library latency at t threads x mean ratio x tail factor at t

where the ratio is measured / library latency, learnt online from the
worker's results as an exponentially weighted mean (and variance) per
(point, thread count). The tail factor is the ``tail_quantile`` of recent
results' latency relative to their own point's mean at their thread count,
pooled over points and thread counts: latency grows with the sentence, so
its spread is heavy tailed and alike for every setting (a spread kept per
thread count would let a count with few results look better than one
measured well). Until ``min_tail_samples`` results are in,
a normal approximation stands in (mean + ``tail_z`` standard deviations).
Points not in use drift toward what all points see at that thread count, so
a point abandoned after a slow spell is not judged by that spell forever,
and a point never tried starts from current conditions.

The thread count is part of the choice: with ``max_threads`` usable, every
count 1..max_threads is considered and the fastest expected one is used for
the chosen point. A library measured in a quiet process says two threads
beat one; if, inside a busy ROS process, two threads turn out slower, the
ratios learn it and the manager moves to one thread by itself.

The seed papers choose open loop from the library alone; the correction
closes the loop.
"""

from collections import deque
from dataclasses import dataclass
import math

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.validation import is_number, require_finite, require_in_interval, require_int


@dataclass(frozen=True)
class PolicyConfig:
    safety_margin: float = 0.9    # a point fits when its tail estimate <= margin x budget
    ewma_alpha: float = 0.2       # weight of the newest measured/library ratio
    tail_z: float = 1.65          # standard deviations above the mean (one-sided ~95 %)
    # The share of complete answers promised within the budget: the quantile of
    # recent latency relative to its point's mean (0: the normal approximation only).
    tail_quantile: float = 0.98
    tail_window: int = 100        # recent results the quantile is taken over
    min_tail_samples: int = 20
    # Spread of the ratio assumed before any result: sentence length alone makes
    # the slowest answers of a point about twice its mean: start that wide (a
    # tail of 1 + 1.65 x 0.6 = 2x) and step up as results show the real spread.
    prior_spread: float = 0.6
    ratio_bounds: tuple = (0.25, 4.0)  # one outlier cannot teach an absurd ratio
    # A result the worker cut at its deadline says only "longer than allowed":
    # it is learnt as this multiple of the budget, so the statistics steer
    # toward points whose complete answers fit. The cut is the worker's safety
    # net, not a way to meet a budget; 1 would learn a cut answer as on time.
    censored_factor: float = 1.5
    # Per observation, how far the other points' statistics at the same thread
    # count move toward what all points see at that count.
    relax: float = 0.05

    def __post_init__(self):
        require_in_interval('safety_margin', self.safety_margin, '(0, 1]')
        require_in_interval('ewma_alpha', self.ewma_alpha, '(0, 1]')
        require_in_interval('tail_z', self.tail_z, '[0, 5]')
        require_in_interval('tail_quantile', self.tail_quantile, '[0, 1)')
        require_int('tail_window', self.tail_window, 1)
        require_int('min_tail_samples', self.min_tail_samples, 1)
        if self.min_tail_samples > self.tail_window:
            raise ValueError(f'min_tail_samples: must be in [1, tail_window '
                             f'{self.tail_window}], got {self.min_tail_samples}')
        require_in_interval('prior_spread', self.prior_spread, '[0, 1]')
        require_finite('censored_factor', self.censored_factor, 1)
        require_in_interval('relax', self.relax, '[0, 1]')
        low, high = self.ratio_bounds   # 0 < low <= 1 <= high
        require_in_interval('ratio_bounds[0]', low, '(0, 1]')
        require_finite('ratio_bounds[1]', high, 1)


@dataclass(frozen=True)
class Choice:
    point: str
    threads: int
    expected_ms: float
    fits: bool          # False: nothing fits, this is the fastest setting
    reason: str


# The largest budget: the upper end of the ``budget_ms`` parameter the
# workers declare (``WORKER_BUDGET_MS_RANGE``, 0 = no budget). The manager
# refuses what a worker would refuse, so an accepted budget can come into force.
BUDGET_MS_MAX = 1e6
WORKER_BUDGET_MS_RANGE = (0.0, BUDGET_MS_MAX)
# The smallest budget: 1 us. No answer carried over ROS can take less (a
# message alone takes longer on one host), so a smaller number is a mistake
# (1e-300, a unit conversion gone wrong), not a request. Budgets between this
# and the fastest operating point are valid: they are answered with a
# warning, because load and threads change what fits.
BUDGET_MS_MIN = 1e-3


def check_budget(budget_ms):
    """Why a budget is unusable, or None."""
    if not is_number(budget_ms):
        return f'budget_ms: must be a number of milliseconds, got {budget_ms!r}'
    if not math.isfinite(budget_ms) or budget_ms <= 0:
        return f'budget_ms: must be a positive finite number of milliseconds, got {budget_ms}'
    if budget_ms < BUDGET_MS_MIN:
        return (f'budget_ms: {budget_ms:g} ms is below {BUDGET_MS_MIN:g} ms (1 us), less than '
                f'any answer over ROS can take: refused as a mistake')
    if budget_ms > BUDGET_MS_MAX:
        return (f'budget_ms: must be at most {BUDGET_MS_MAX:g} ms (what the workers accept), '
                f'got {budget_ms:g}')
    return None


class RatioStats:
    """Exponentially weighted mean and variance of measured / library latency."""

    __slots__ = ('mean', 'var', 'count')

    def __init__(self, mean=1.0, var=0.0, count=0):
        self.mean, self.var, self.count = mean, var, count

    def add(self, sample, alpha):
        # The mean starts as a running mean with the prior as one sample (weights
        # 1/2, 1/3, ...) until that falls to alpha: a library measured on another
        # machine is corrected within a few results, not after dozens.
        diff = sample - self.mean
        self.mean += max(alpha, 1.0 / (self.count + 2)) * diff
        self.var = (1 - alpha) * (self.var + alpha * diff * diff)
        self.count += 1

    def pull_toward(self, other, weight):
        self.mean += weight * (other.mean - self.mean)
        self.var += weight * (other.var - self.var)

    def tail(self, z):
        return self.mean + z * math.sqrt(max(self.var, 0.0))


class LatencyModel:
    """Library latency corrected by what the worker actually measured."""

    def __init__(self, library: OperatingPointLibrary, config: PolicyConfig = PolicyConfig()):
        self.library = library
        self.config = config
        self._stats = {}     # (point, threads) -> RatioStats
        self._overall = {}   # threads -> RatioStats over every point
        self._relative = deque(maxlen=config.tail_window)  # ratios / their setting's mean

    def _prior(self):
        return RatioStats(1.0, self.config.prior_spread ** 2)

    def overall(self, threads):
        if threads not in self._overall:
            self._overall[threads] = self._prior()
        return self._overall[threads]

    def stats(self, name, threads):
        key = (name, threads)
        if key not in self._stats:
            base = self.overall(threads)
            self._stats[key] = RatioStats(base.mean, base.var)
        return self._stats[key]

    def ratio(self, name, threads):
        """Mean measured / library latency of a point at a thread count."""
        return self.stats(name, threads).mean

    def mean_ms(self, name, threads):
        return self.library.get(name).latency_at(threads) * self.ratio(name, threads)

    def tail_factor(self, name, threads):
        """How far above its mean a point's latency goes at the promised quantile."""
        recent = self._relative
        config = self.config
        if config.tail_quantile > 0 and len(recent) >= config.min_tail_samples:
            ordered = sorted(recent)
            return max(1.0, ordered[min(len(ordered) - 1,
                                        int(config.tail_quantile * len(ordered)))])
        stats = self.stats(name, threads)
        return stats.tail(config.tail_z) / stats.mean

    def expected_ms(self, name, threads):
        """Tail estimate: the latency a result should stay under."""
        return self.mean_ms(name, threads) * self.tail_factor(name, threads)

    def observe(self, name, measured_ms, threads, spread_ms=None):
        """Fold one measured latency into the statistics of (point, threads).

        ``spread_ms`` (default ``measured_ms``) is what the tail window keeps:
        for a result cut at its deadline the mean learns a penalty, while the
        spread learns only what is known, that it took the whole budget.
        """
        if name not in self.library.names or not math.isfinite(measured_ms) or \
                measured_ms <= 0 or not isinstance(threads, int) or threads < 1:
            return
        sample = measured_ms / self.library.get(name).latency_at(threads)
        low, high = self.config.ratio_bounds
        sample = min(max(sample, low), high)
        alpha, relax = self.config.ewma_alpha, self.config.relax
        stats = self.stats(name, threads)
        spread = sample if spread_ms is None else min(max(
            spread_ms / self.library.get(name).latency_at(threads), low), high)
        self._relative.append(spread / stats.mean)
        stats.add(sample, alpha)
        overall = self.overall(threads)
        overall.add(sample, alpha)
        # Points never run at this thread count start from current conditions;
        # the others drift toward them slowly, so one slow spell is not held
        # against a point forever. Other thread counts keep what they learnt
        # (or the library's word): if this count turns out slow, another is tried.
        for (point, count), other in self._stats.items():
            if count != threads or point == name:
                continue
            if other.count == 0:
                other.mean, other.var = overall.mean, overall.var
            else:
                other.pull_toward(overall, relax)

    def check_min_quality(self, min_quality):
        """Why ``min_quality`` (None: no minimum) cannot be met by any point, or None.

        Quality is a property of the point and does not change with load, so
        a minimum above every point is a mistake (for example a percentage
        for an accuracy measured as a fraction), never a request to wait for.
        """
        if min_quality is None:
            return None
        best = self.library.by_quality()[0]
        if not min_quality <= best.quality:   # NaN lands here too
            return (f'min_quality: {min_quality:g} is above every {self.library.target} '
                    f'operating point (best: {best.name}, {self.library.quality_metric} '
                    f'{best.quality:g})')
        return None

    def best_threads(self, name, max_threads):
        """The thread count in 1..max_threads with the lowest tail estimate (fewer on ties)."""
        return min(range(1, max(1, int(max_threads)) + 1),
                   key=lambda t: (round(self.expected_ms(name, t), 6), t))

    def choose(self, budget_ms, max_threads, min_quality=None, faster_than=None) -> Choice:
        """Best-quality point whose tail estimate fits ``margin x budget``.

        ``min_quality`` (None: no minimum) is a floor: only points of at least
        that quality are chosen. When none of them fits the budget, the floor
        wins: the fastest of them is chosen and the choice does not fit (a
        point below the floor that would fit is named in the reason).
        ``faster_than`` (a point name and thread count) restricts the choice
        to settings expected to be faster than that one.
        """
        problem = check_budget(budget_ms) or self.check_min_quality(min_quality)
        if problem:
            raise ValueError(problem)
        limit = self.config.safety_margin * budget_ms
        setting = {}
        for point in self.library.points:
            threads = self.best_threads(point.name, max_threads)
            setting[point.name] = (threads, self.expected_ms(point.name, threads))
        ranked = self.library.by_quality()
        floor = [p for p in ranked if min_quality is None or p.quality >= min_quality]
        candidates = floor
        if faster_than is not None:
            ceiling = self.expected_ms(*faster_than)
            candidates = [p for p in floor if setting[p.name][1] < ceiling]
        for point in candidates:
            threads, expected = setting[point.name]
            if expected <= limit:
                return Choice(point.name, threads, expected, True,
                              f'best quality ({point.quality:g}) expected within '
                              f'{self.config.safety_margin:.0%} of {budget_ms:g} ms: '
                              f'{expected:.1f} ms on {threads} of {max_threads} thread(s)')
        fastest = min(candidates or floor, key=lambda p: setting[p.name][1])
        threads, expected = setting[fastest.name]
        below = [p for p in ranked if p not in floor and setting[p.name][1] <= limit]
        if below:
            return Choice(fastest.name, threads, expected, False,
                          f'no point of quality >= {min_quality:g} fits {budget_ms:g} ms with '
                          f'up to {max_threads} thread(s) ({below[0].name}, quality '
                          f'{below[0].quality:g}, would); min_quality wins: {fastest.name} '
                          f'expected {expected:.1f} ms on {threads}')
        return Choice(fastest.name, threads, expected, False,
                      f'no point fits {budget_ms:g} ms with up to {max_threads} thread(s); '
                      f'fastest expected {expected:.1f} ms on {threads}' +
                      (f' (quality >= {min_quality:g})' if min_quality is not None else ''))
