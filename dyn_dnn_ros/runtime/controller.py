"""Per-target adaptation: when to switch operating points and thread counts.

Rules (the manager node feeds events in and applies the decisions):
- a new budget re-chooses at once and jumps straight to the chosen setting,
  not one step at a time; so does a change in usable threads, once it has
  been reported for ``drop_after_s`` (fewer) or ``rise_after_s`` (more): a
  core that looks busy or free for one sample would otherwise make the worker
  switch thread counts, and pay a cold first inference, twice a second;
- every result is folded into the latency model; one the worker stopped at
  its deadline is a miss, learnt as ``censored_factor`` x budget: a cut
  answer is incomplete, never on time; a miss that pushes the
  setting in force out of the budget switches at once, and
  ``step_down_after`` consecutive misses step down even if the model still
  believes the setting fits (a slow-down the statistics have not caught);
- stepping up needs ``step_up_after`` consecutive on-time results with the
  current setting, so a noisy measurement cannot make the worker oscillate;
- resource information older than ``stale_after_s`` falls back to the
  conservative assumption of a single thread;
- a forced point (experiments) overrides all of this until released;
  releasing returns to the automatic choice for the budget, or, with no
  budget set, to the best-quality point (nothing limits latency then);
- ``min_quality`` is a floor: points below it are never chosen, even when
  none above it fits the budget (the choice then does not fit, and says so).
"""

from dataclasses import dataclass
import math

from dyn_dnn_ros.runtime.policy import Choice, LatencyModel, check_budget
from dyn_dnn_ros.validation import require_finite, require_int, require_positive


@dataclass(frozen=True)
class ControllerConfig:
    step_up_after: int = 5
    step_down_after: int = 1
    stale_after_s: float = 3.0
    rise_after_s: float = 1.0
    drop_after_s: float = 0.3
    conservative_threads: int = 1

    def __post_init__(self):
        for name in ('step_up_after', 'step_down_after', 'conservative_threads'):
            require_int(name, getattr(self, name), 1)
        require_positive('stale_after_s', self.stale_after_s, 'seconds')
        require_finite('rise_after_s', self.rise_after_s, 0)
        require_finite('drop_after_s', self.drop_after_s, 0)


@dataclass(frozen=True)
class Decision:
    point: str
    threads: int
    expected_ms: float
    reason: str
    fits: bool = True


class TargetController:

    def __init__(self, model: LatencyModel, config: ControllerConfig = ControllerConfig(),
                 initial_threads: int = 1):
        self.model = model
        self.config = config
        self.budget_ms = math.nan
        self.min_quality = None
        self.available_threads = max(1, int(initial_threads))
        self.last_availability = -math.inf
        self.change_since = None     # when a thread count other than planned was first seen
        self.current = None          # the point in force
        self.threads = None          # the thread count in force
        self.forced = None
        self.fits = True             # whether the setting in force is expected to fit
        self.on_time = 0
        self.misses_in_row = 0
        self.switches = 0
        self.last_reason = 'no budget yet'

    # -- what the choice is based on ----------------------------------------
    def is_stale(self, now):
        return now - self.last_availability > self.config.stale_after_s

    def planning_threads(self, now):
        if self.is_stale(now):
            return min(self.config.conservative_threads, self.available_threads)
        return self.available_threads

    # -- events ---------------------------------------------------------------
    def set_budget(self, budget_ms, now, min_quality=None) -> Decision:
        """A new budget (and floor); ValueError leaves everything as it was."""
        problem = check_budget(budget_ms) or self.model.check_min_quality(min_quality)
        if problem:
            raise ValueError(problem)
        self.budget_ms = float(budget_ms)
        self.min_quality = min_quality
        return self._switch(self._choose(now), now)

    def on_availability(self, usable_threads, now) -> Decision | None:
        was_stale = self.is_stale(now)
        reported = max(1, int(usable_threads))
        threads = reported
        first_report = self.last_availability == -math.inf
        if reported != self.available_threads and not first_report:
            # A change counts once every report for long enough has shown it.
            self.change_since = now if self.change_since is None else self.change_since
            wait = (self.config.rise_after_s if reported > self.available_threads
                    else self.config.drop_after_s)
            if now - self.change_since < wait:
                threads = self.available_threads  # not yet: keep planning as before
        if threads == reported:
            self.change_since = None
        changed = threads != self.available_threads
        self.available_threads = threads
        self.last_availability = now
        if self.current is None or not (changed or was_stale):
            return None
        choice = self._choose(now)
        if self._better(choice) and not changed:
            return None  # fresh data again, same threads: stepping up waits for results
        # A real change in threads jumps straight to the point chosen for it.
        return self._switch(choice, now, why=f'{threads} usable thread(s)')

    def on_result(self, point, latency_ms, threads, now, cut=False) -> Decision | None:
        """Fold one result in; maybe switch.

        ``cut``: the worker stopped this result at its deadline, so its true
        latency is unknown but longer than the budget allowed.
        """
        spread_ms = latency_ms
        if cut and math.isfinite(self.budget_ms):
            spread_ms = max(latency_ms, self.budget_ms)
            latency_ms = spread_ms * self.model.config.censored_factor
        self.model.observe(point, latency_ms, threads, spread_ms=spread_ms)
        if math.isnan(self.budget_ms) or point != self.current or threads != self.threads:
            return None  # a result produced before the last switch says nothing new
        if cut or latency_ms > self.budget_ms:
            self.on_time = 0
            self.misses_in_row += 1
            if self.forced is not None:
                return None
            why = (f'result cut at the {self.budget_ms:g} ms deadline' if cut else
                   f'result {latency_ms:.1f} ms missed {self.budget_ms:g} ms')
            choice = self._choose(now)
            if self._same(choice) and self.misses_in_row >= self.config.step_down_after \
                    and self._has_faster(now):
                # The statistics still say the setting fits, but misses keep coming.
                choice = self.model.choose(self.budget_ms, self.planning_threads(now),
                                           self.min_quality,
                                           faster_than=(self.current, self.threads))
                why = f'{self.misses_in_row} results in a row missed {self.budget_ms:g} ms'
            if self._same(choice):
                # Nothing better to switch to; what is in force may no longer fit.
                self.fits = choice.fits
                self.last_reason = f'{why}: {choice.reason}'
                return None
            return self._switch(choice, now, why=why)
        self.misses_in_row = 0
        self.on_time += 1
        if self.on_time < self.config.step_up_after:
            return None
        self.on_time = 0
        choice = self._choose(now)
        if not self._same(choice) and self._better(choice):
            return self._switch(choice, now, why=f'{self.config.step_up_after} results on time')
        return None

    def on_stale(self, now) -> Decision | None:
        """Called periodically; falls back once when resource data goes stale."""
        if self.current is None or not self.is_stale(now):
            return None
        choice = self._choose(now)
        if self._same(choice):
            return None
        return self._switch(choice, now, why='resource information is stale')

    def force(self, name, now) -> Decision:
        self.model.library.get(name)  # KeyError names the known points
        self.forced = name
        return self._switch(self._choose(now), now)

    def release(self, now) -> Decision:
        """Back to automatic selection; with no budget, to the best-quality point."""
        self.forced = None
        return self._switch(self._choose(now), now, why='released')

    # -- internals --------------------------------------------------------------
    def _choose(self, now) -> Choice:
        max_threads = self.planning_threads(now)
        model = self.model
        if self.forced is not None:
            threads = model.best_threads(self.forced, max_threads)
            expected = model.expected_ms(self.forced, threads)
            if math.isnan(self.budget_ms):
                return Choice(self.forced, threads, expected, True, 'forced')
            limit = model.config.safety_margin * self.budget_ms
            fits = expected <= limit
            return Choice(self.forced, threads, expected, fits,
                          f'forced: expected {expected:.1f} ms on {threads} thread(s), '
                          f'{"within" if fits else "beyond"} {model.config.safety_margin:.0%} '
                          f'of {self.budget_ms:g} ms')
        if math.isnan(self.budget_ms):
            # Nothing limits latency: the best quality, as a worker starts by itself.
            best = model.library.by_quality()[0]
            threads = model.best_threads(best.name, max_threads)
            return Choice(best.name, threads, model.expected_ms(best.name, threads), True,
                          f'no budget: best-quality point ({best.quality:g}) on {threads} '
                          f'thread(s)')
        return model.choose(self.budget_ms, max_threads, self.min_quality)

    def _same(self, choice):
        return choice.point == self.current and choice.threads == self.threads

    def _has_faster(self, now):
        max_threads = self.planning_threads(now)
        current = self.model.expected_ms(self.current, self.threads)
        return any(self.model.expected_ms(p.name, t) < current
                   for p in self.model.library.points for t in range(1, max_threads + 1))

    def _better(self, choice):
        if self.current is None:
            return True
        library = self.model.library
        return library.get(choice.point).quality > library.get(self.current).quality

    def _switch(self, choice, now, why=None) -> Decision:
        if not self._same(choice):
            self.switches += 1 if self.current is not None else 0
            self.on_time = 0
            self.misses_in_row = 0
        self.current, self.threads = choice.point, choice.threads
        self.fits = choice.fits
        self.last_reason = f'{why}: {choice.reason}' if why else choice.reason
        return Decision(choice.point, choice.threads, choice.expected_ms, self.last_reason,
                        choice.fits)

