"""Events per second over the last few seconds, for rates on diagnostics.

An average since start hides a camera that stopped a minute ago; the rate of
a recent window shows it within that window.
"""

from collections import deque
import time

from dyn_dnn_ros.validation import require_positive


class RateWindow:

    def __init__(self, seconds=5.0, clock=time.monotonic):
        require_positive('seconds', seconds)
        self.seconds = seconds
        self.clock = clock
        self.started = clock()
        self._times = deque()

    def tick(self):
        """Count one event now."""
        self._times.append(self.clock())

    def rate(self):
        """Events per second over the last ``seconds`` (or since start, when sooner)."""
        now = self.clock()
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()
        span = min(self.seconds, now - self.started)
        return len(self._times) / span if span > 0 else 0.0
