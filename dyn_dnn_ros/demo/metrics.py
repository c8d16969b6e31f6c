"""What a demo run measured, and the figures it is judged by."""

from dataclasses import asdict, dataclass, field
import math

import numpy as np

# Complete answers: translated in full (a long source may have been cut to the
# model's limit). A 'partial' answer was stopped at its deadline: not complete.
ANSWERED = ('ok', 'truncated')


@dataclass
class ResultRecord:
    id: str
    sent_s: float          # seconds since the run started
    received_s: float
    status: str            # ok, truncated, partial, empty, dropped, error, lost (no answer)
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

    @property
    def complete_in_budget(self):
        """A complete answer that arrived within the budget, counted from the request's stamp."""
        return self.status in ANSWERED and self.response_ms <= self.budget_ms


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
        on_time = [r.complete_in_budget for r in phase]
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


def _bleu(records):
    import sacrebleu
    if not records:
        return math.nan
    return sacrebleu.corpus_bleu([r.hypothesis for r in records],
                                 [[r.reference for r in records]]).score


def outcome_fractions(results):
    """What happened to the requests sent, as fractions of them (they add up to 1).

    ``complete_in_budget``: complete and within the budget end to end;
    ``late``: complete but over it; ``cut_at_deadline``: stopped at the
    deadline (partial); ``dropped``: not translated (queue full, shutting
    down) or never answered; ``failed``: empty requests and errors.
    """
    sent = len(results)
    if not sent:
        return {key: math.nan for key in ('complete_in_budget', 'late', 'cut_at_deadline',
                                          'dropped', 'failed')}
    complete = [r for r in results if r.status in ANSWERED]
    in_budget = sum(r.complete_in_budget for r in complete)
    cut = sum(r.status == 'partial' for r in results)
    dropped = sum(r.status in ('dropped', 'lost') for r in results)
    return {'complete_in_budget': in_budget / sent, 'late': (len(complete) - in_budget) / sent,
            'cut_at_deadline': cut / sent, 'dropped': dropped / sent,
            'failed': (sent - len(complete) - cut - dropped) / sent}


def summarize(run, burn_window=None):
    """The run's figures: outcomes of the requests sent, quality, switches, latencies."""
    results = run.results
    answered = [r for r in results if r.status in ANSWERED]
    with_text = [r for r in results if r.status in ANSWERED + ('partial',)]
    summary = {
        'requests': len(results),
        **outcome_fractions(results),
        'complete': len(answered),
        'cut_count': sum(r.status == 'partial' for r in results),
        'dropped_count': sum(r.status == 'dropped' for r in results),
        'lost_count': sum(r.status == 'lost' for r in results),
        # BLEU of what a user got: the complete answers alone, and every answer
        # with text (cut ones included).
        'bleu_complete': _bleu(answered),
        'bleu_all': _bleu(with_text),
        'switches': sum(1 for a, b in zip(answered, answered[1:], strict=False)
                        if a.point != b.point),
        'mean_latency_ms': float(np.mean([r.latency_ms for r in answered]))
        if answered else math.nan,
        'mean_response_ms': float(np.mean([r.response_ms for r in answered]))
        if answered else math.nan,
        # Request published to result received, minus inference; waiting
        # behind an earlier request counts. Without the
        # queue it is the transport and executor cost alone.
        'dds_overhead_p50_ms': _percentile([r.response_ms - r.latency_ms for r in answered], 50),
        'transport_p50_ms': _percentile(
            [r.response_ms - r.latency_ms - r.queue_ms for r in answered], 50),
        'points_used': sorted({r.point for r in answered}),
    }
    if burn_window is not None:
        start, end = burn_window
        during = [r for r in results if start <= r.sent_s < end]
        summary['complete_in_budget_under_load'] = outcome_fractions(during)[
            'complete_in_budget']
    delays = switch_delays_ms(run)
    summary['switch_to_result_ms_max'] = max(delays) if delays else math.nan
    summary['switch_to_result_ms_p50'] = _percentile(delays, 50)
    return summary


def run_to_dict(run):
    return {'name': run.name, 'results': [asdict(r) for r in run.results],
            'availability': run.availability, 'budget_calls': run.budget_calls,
            'events': run.events}
