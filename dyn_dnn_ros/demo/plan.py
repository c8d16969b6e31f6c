"""The demo's script: when budgets change and when a real CPU load arrives.

Budgets are derived from the operating points' latencies (measured per
request on the demo's sentences, or the library's), so the same script
exercises any trained model on any machine: a generous budget that the
best point meets with all threads but not on one core, and a tight budget
that needs a smaller point even with all threads.
"""

from dataclasses import dataclass
import math

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.validation import require_positive

EVENT_KINDS = ('budget', 'burn_start', 'burn_stop')


@dataclass(frozen=True)
class Event:
    at_s: float
    kind: str
    value: float = math.nan

    def describe(self):
        if self.kind == 'budget':
            return f'budget {self.value:.0f} ms'
        return 'CPU burner started' if self.kind == 'burn_start' else 'CPU burner stopped'


@dataclass(frozen=True)
class DemoPlan:
    duration_s: float
    request_rate_hz: float
    events: tuple

    def __post_init__(self):
        require_positive('duration_s', self.duration_s, 'seconds')
        require_positive('request_rate_hz', self.request_rate_hz)
        for event in self.events:
            if event.kind not in EVENT_KINDS:
                raise ValueError(f'event kind: must be one of {EVENT_KINDS}, got {event.kind}')
            if not 0 <= event.at_s < self.duration_s:
                raise ValueError(f'event at {event.at_s} s lies outside the '
                                 f'{self.duration_s} s run')
        if self.events[0].kind != 'budget' or self.events[0].at_s != 0:
            raise ValueError('the first event must set the budget at t=0')

    def budget_at(self, t):
        budget = math.nan
        for event in self.events:
            if event.kind == 'budget' and event.at_s <= t:
                budget = event.value
        return budget

    def burning_at(self, t):
        burning = False
        for event in self.events:
            if event.at_s <= t and event.kind in ('burn_start', 'burn_stop'):
                burning = event.kind == 'burn_start'
        return burning


def default_plan(library: OperatingPointLibrary, threads: int, duration_s=100.0,
                 request_rate_hz=None, safety_margin=0.9, latency_ms=None) -> DemoPlan:
    """Budget changes and a CPU burner placed over ``duration_s`` seconds.

    0-25 %: generous budget (the best point fits with ``threads`` threads);
    25-45 %: tight budget; 45-55 %: generous again; 55-80 %: a CPU burner
    takes one core; 80-100 %: recovered. ``latency_ms`` (point name -> ms)
    is what a request with each point takes (e.g. measured by
    ``calibration.tail_latencies``); by default the library's latency at
    ``threads``.
    """
    def latency(point):
        if latency_ms is not None:
            return latency_ms[point.name]
        return point.latency_at(threads)

    best = library.by_quality()[0]
    generous = latency(best) / safety_margin * 1.15
    fitting = sorted((latency(p) for p in library.points if latency(p) < latency(best)),
                     reverse=True)
    middle = fitting[len(fitting) // 2] if fitting else latency(best) / 2
    tight = middle / safety_margin * 1.1
    if request_rate_hz is None:
        # Leave the worker idle half the time at the generous budget.
        request_rate_hz = min(4.0, 500.0 / generous)
    d = duration_s
    return DemoPlan(d, request_rate_hz, (
        Event(0.0, 'budget', round(generous, 1)),
        Event(0.25 * d, 'budget', round(tight, 1)),
        Event(0.45 * d, 'budget', round(generous, 1)),
        Event(0.55 * d, 'burn_start'),
        Event(0.80 * d, 'burn_stop'),
    ))
