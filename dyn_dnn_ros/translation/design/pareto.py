"""Pareto fronts of the design-time pipeline: latency against quality, fastest first."""

import bisect
import math

from dyn_dnn_ros.validation import require_finite


def pareto_front(items, latency, quality) -> list:
    """Items no other item beats on both (lower ``latency(item)``, higher ``quality(item)``).

    Returned fastest first; of equally fast items only the best can be on it.
    """
    ordered = sorted(items, key=lambda i: (latency(i), -quality(i)))
    front, best = [], -math.inf
    for item in ordered:
        if quality(item) > best:
            front.append(item)
            best = quality(item)
    return front


def predicted_front(items, slack=0.0) -> list:
    """``(config, loss, predicted ms, ...)`` items no other beats on both, fastest first.

    With ``slack`` > 0, only an item at least ``1 + slack`` times faster and at
    least as good removes another (the front and a band behind it): the
    predictor errs by a few percent per sub-network, so an item that close
    behind the front may measure on it.
    """
    if not slack:
        return pareto_front(items, lambda f: f[2], lambda f: -f[1])
    require_finite('front slack', slack, 0)
    distinct = {}
    for f in items:  # an archive is offered the same parents again every iteration
        distinct.setdefault(f[0].key(), f)
    ordered = sorted(distinct.values(), key=lambda f: (f[2], f[1]))
    latencies = [f[2] for f in ordered]
    lowest, best = [], math.inf  # lowest loss among the first i + 1 items
    for f in ordered:
        best = min(best, f[1])
        lowest.append(best)
    kept = []
    for f in ordered:
        faster = bisect.bisect_right(latencies, f[2] / (1 + slack))
        if faster == 0 or lowest[faster - 1] > f[1]:
            kept.append(f)
    return kept


def dominated(point, front) -> bool:
    """Whether some front point is at least as fast and at least as good (lower loss)."""
    latency, loss = point
    return any(f_latency <= latency and f_loss <= loss for f_latency, f_loss in front)


def near_front(items, latency, quality, band) -> list:
    """``items`` that would be on the front (``pareto_front``) with ``1 + band`` less latency.

    The front's own items and those a latency error of ``band`` keeps off it.
    """
    items = list(items)
    points = [(latency(item), -quality(item)) for item in items]
    return [item for i, (item, (ms, loss)) in enumerate(zip(items, points, strict=True))
            if not dominated((ms / (1 + band), loss), points[:i] + points[i + 1:])]
