"""How much of a request's budget a worker keeps back for getting the answer to its reader.

A budget runs from the request's stamp to the answer's arrival, but a worker
can only stop its own inference: the answer still has to be published and
carried back. A fixed margin is either too small on a busy host or, with
budgets of a few milliseconds, most of the budget (6 ms of a 10 ms budget
left a fast CTranslate2 point under 2 ms, and cut most of its answers).

So the margin is measured: the way back is taken to cost what the way in
did (the same transport between the same two processes), and the worker
times its own publishing. Margin = way in + way back + publishing, each at a
high quantile of recent requests, so that an answer stopped at its deadline
still arrives in budget in most cases. Until enough requests have been
timed there is no measured margin, and the worker keeps its fixed one.
"""

from collections import deque
from dataclasses import dataclass
import math
import threading

from dyn_dnn_ros.validation import require_in_interval, require_int


@dataclass(frozen=True)
class DeadlineMarginConfig:
    quantile: float = 0.95      # of the way in and of publishing, over the window
    window: int = 200           # recent requests measured
    min_samples: int = 20
    floor_ms: float = 0.5       # never promise the transport is free

    def __post_init__(self):
        require_in_interval('quantile', self.quantile, '(0, 1]')
        require_int('window', self.window, 1)
        require_int('min_samples', self.min_samples, 1)
        require_in_interval('floor_ms', self.floor_ms, '[0, 1000]')


class DeadlineMargin:
    """Recent transport and publishing times of one worker; thread-safe."""

    def __init__(self, config: DeadlineMarginConfig = DeadlineMarginConfig()):
        self.config = config
        self._lock = threading.Lock()
        self._way_in = deque(maxlen=config.window)    # seconds, stamp to arrival
        self._publish = deque(maxlen=config.window)   # seconds, one publish call

    def add_way_in(self, seconds):
        """A request arrived ``seconds`` after it was sent.

        Outside [0, 1) s the clocks of the two hosts disagree: not counted.
        """
        if math.isfinite(seconds) and 0 <= seconds < 1.0:
            with self._lock:
                self._way_in.append(seconds)

    def add_publish(self, seconds):
        """Publishing one answer took ``seconds``."""
        if math.isfinite(seconds) and seconds >= 0:
            with self._lock:
                self._publish.append(seconds)

    def _quantile(self, samples):
        ordered = sorted(samples)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(self.config.quantile * len(ordered)))]

    def margin_ms(self):
        """Milliseconds to keep back from a budget now; None until enough requests were timed."""
        with self._lock:
            if len(self._way_in) < self.config.min_samples:
                return None
            way = self._quantile(self._way_in)
            publish = self._quantile(self._publish)
        return max(self.config.floor_ms, (2.0 * way + publish) * 1000.0)
