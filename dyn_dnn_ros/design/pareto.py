"""Pareto fronts of the design-time pipeline: latency against quality, fastest first."""

import math


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


def predicted_front(items) -> list:
    """``(config, loss, predicted ms, ...)`` items no other beats on both, fastest first."""
    return pareto_front(items, lambda f: f[2], lambda f: -f[1])


def dominated(point, front) -> bool:
    """Whether some front point is at least as fast and at least as good (lower loss)."""
    latency, loss = point
    return any(f_latency <= latency and f_loss <= loss for f_latency, f_loss in front)
