"""What a demo run measured, and the figures it is judged by."""

from dataclasses import asdict, dataclass, field
import math

import numpy as np

ANSWERED = ('ok', 'truncated')


@dataclass
class ResultRecord:
    id: str
    sent_s: float          # seconds since the run started
    received_s: float
    status: str            # ok, truncated, empty, dropped, error, lost (never answered)
    point: str
    latency_ms: float      # inference time measured by the worker
    queue_ms: float
    budget_ms: float       # the budget in force when the request was sent
    hypothesis: str
    reference: str
    threads: int = 0
    stopped_at_deadline: bool = False

    @property
    def response_ms(self):
        return (self.received_s - self.sent_s) * 1000.0


@dataclass
class RunRecord:
    name: str
    results: list = field(default_factory=list)
    availability: list = field(default_factory=list)   # (t_s, usable_threads, availability)
    budget_calls: list = field(default_factory=list)   # (t_s, budget_ms, point chosen)
    events: list = field(default_factory=list)         # (t_s, description)


def _percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else math.nan


def adaptation_results(run, event_times, settled=3):
    """Per event: how many results it takes until deadlines are met again.

    The count is the position (1 = the first result sent after the event) of
    the first of ``settled`` consecutive on-time results within the phase;
    None when the phase never gets there (e.g. a static model under load).
    """
    counts = []
    ordered = sorted(run.results, key=lambda r: r.sent_s)
    bounds = list(event_times) + [math.inf]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        phase = [r for r in ordered if start <= r.sent_s < end]
        if not phase:
            continue
        on_time = [r.status in ANSWERED and r.response_ms <= r.budget_ms for r in phase]
        need = min(settled, len(phase))
        counts.append(next((i + 1 for i in range(len(phase) - need + 1)
                            if all(on_time[i:i + need])), None))
    return counts


def switch_delays_ms(run):
    """Budget service call -> first result made with the new point, minus its inference.

    The clock starts at the call, or at the request's sending when no request
    was waiting then (time with nothing to translate is not switching time).
    Time the request waited behind work with the old point counts.
    """
    delays = []
    answered = sorted((r for r in run.results if r.status in ANSWERED),
                      key=lambda r: r.received_s)
    for t_call, _, point in run.budget_calls:
        before = [r for r in answered if r.received_s < t_call]
        if before and before[-1].point == point:
            continue  # the call did not change the point
        first = next((r for r in answered if r.received_s >= t_call and r.point == point), None)
        if first is not None:
            delays.append((first.received_s - max(t_call, first.sent_s)) * 1000.0
                          - first.latency_ms)
    return delays


def summarize(run, burn_window=None):
    """The run's figures: deadline hits, quality, switches, latencies, adaptation."""
    import sacrebleu
    results = run.results
    answered = [r for r in results if r.status in ANSWERED]
    hits = [r for r in answered if r.response_ms <= r.budget_ms]
    summary = {
        'requests': len(results),
        'answered': len(answered),
        'dropped': sum(r.status == 'dropped' for r in results),
        'lost': sum(r.status == 'lost' for r in results),
        'deadline_hit_rate': len(hits) / len(results) if results else math.nan,
        'bleu': sacrebleu.corpus_bleu([r.hypothesis for r in answered],
                                      [[r.reference for r in answered]]).score
        if answered else math.nan,
        'switches': sum(1 for a, b in zip(answered, answered[1:], strict=False)
                        if a.point != b.point),
        'mean_latency_ms': float(np.mean([r.latency_ms for r in answered]))
        if answered else math.nan,
        'mean_response_ms': float(np.mean([r.response_ms for r in answered]))
        if answered else math.nan,
        # The definition: request published to result received, minus
        # inference; waiting behind an earlier request counts. Without the
        # queue it is the transport and executor cost alone.
        'dds_overhead_p50_ms': _percentile([r.response_ms - r.latency_ms for r in answered], 50),
        'transport_p50_ms': _percentile(
            [r.response_ms - r.latency_ms - r.queue_ms for r in answered], 50),
        'points_used': sorted({r.point for r in answered}),
        'stopped_at_deadline': sum(r.stopped_at_deadline for r in answered),
    }
    if burn_window is not None:
        start, end = burn_window
        during = [r for r in results if start <= r.sent_s < end]
        summary['deadline_hit_rate_under_load'] = (
            sum(r.status in ANSWERED and r.response_ms <= r.budget_ms for r in during)
            / len(during) if during else math.nan)
    delays = switch_delays_ms(run)
    summary['switch_to_result_ms_max'] = max(delays) if delays else math.nan
    summary['switch_to_result_ms_p50'] = _percentile(delays, 50)
    return summary


def run_to_dict(run):
    return {'name': run.name, 'results': [asdict(r) for r in run.results],
            'availability': run.availability, 'budget_calls': run.budget_calls,
            'events': run.events}
