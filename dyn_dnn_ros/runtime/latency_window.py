"""The last N latencies of a worker, for p50/p95 and deadline misses on diagnostics."""

from collections import deque
import math

from dyn_dnn_ros.formatting import text


class LatencyWindow:

    def __init__(self, size=100):
        self.samples = deque(maxlen=size)   # (latency_ms, budget_ms, cut); budget 0 = none

    def add(self, latency_ms, budget_ms, cut=False):
        """One result; ``cut``: stopped at its deadline, a miss whatever its latency."""
        self.samples.append((latency_ms, budget_ms, cut))

    def percentile(self, q):
        values = sorted(latency for latency, _, _ in self.samples)
        if not values:
            return math.nan
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]

    def misses(self):
        return sum(1 for latency, budget, cut in self.samples
                   if cut or (budget > 0 and latency > budget))

    def report(self, stat):
        """Add the window's figures to a diagnostic status (anything with ``add``)."""
        stat.add('latency_p50_ms', text(self.percentile(50)))
        stat.add('latency_p95_ms', text(self.percentile(95)))
        stat.add('deadline_misses', text(self.misses()))
        stat.add('window', text(len(self.samples)))
