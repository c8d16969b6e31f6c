"""A bounded inference queue served by one background thread.

Nodes hand jobs in from executor callbacks (which must stay quick) and get
results back through callbacks. When the queue is full the oldest waiting job
is dropped and reported, so fresh requests are never starved by stale ones
(with depth 1 this is "latest image wins"). The setting a job runs with (an
operating point) is read once when the job starts, so every result says
exactly which setting produced it, and a switch never lands mid-job.

The model should be loaded by ``setup`` on the worker thread itself: with
PyTorch's OpenMP backend, two-thread inference on a thread other than the one
that loaded the model runs much slower than on the loading thread
(``bench/worker_thread.py`` measures it; docs/results.md has the figure).
"""

from collections import deque
from dataclasses import dataclass
import threading
import time
from typing import Any, Callable

from dyn_dnn_ros.validation import require_int

# Why a job was dropped, handed to ``on_dropped`` with it.
QUEUE_FULL = 'queue full'
SHUTTING_DOWN = 'shutting down'


@dataclass(frozen=True)
class Finished:
    job: Any
    setting: Any
    output: Any
    error: str          # '' when the job succeeded
    queued_s: float     # time spent waiting in the queue
    run_s: float        # time spent processing


class InferenceWorker:

    def __init__(self, process: Callable[[Any, Any], Any], on_finished: Callable[[Finished], None],
                 on_dropped: Callable[[Any, str], None], depth: int, setting: Any = None,
                 name: str = 'inference', setup: Callable[[], Any] | None = None):
        """Start the worker thread; ``setup`` runs on it first.

        ``on_dropped(job, reason)`` hears of every job that will not run, with
        ``QUEUE_FULL`` or ``SHUTTING_DOWN``.

        The result of ``setup`` becomes ``setup_result``; an exception it
        raises is raised here, with the thread stopped.
        """
        require_int('depth', depth, 1)
        self._process = process
        self._on_finished = on_finished
        self._on_dropped = on_dropped
        self._queue = deque()
        self._depth = depth
        self._setting = setting
        self._condition = threading.Condition()
        self._running = True
        self._busy = False
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.setup_result = None
        self._setup = setup
        self._setup_error = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._setup_error is not None:
            self._thread.join()
            raise self._setup_error

    # -- called from any thread ---------------------------------------------
    def submit(self, job):
        dropped = []
        with self._condition:
            running = self._running
            if not running:
                dropped.append(job)
            else:
                self._queue.append((job, time.monotonic()))
                while len(self._queue) > self._depth:
                    dropped.append(self._queue.popleft()[0])
                self._condition.notify()
            self.dropped += len(dropped)
        for old in dropped:
            self._on_dropped(old, QUEUE_FULL if running else SHUTTING_DOWN)

    @property
    def setting(self):
        with self._condition:
            return self._setting

    def set_setting(self, setting):
        """Takes effect for the next job that starts."""
        with self._condition:
            self._setting = setting

    def set_depth(self, depth):
        require_int('depth', depth, 1)
        dropped = []
        with self._condition:
            self._depth = depth
            while len(self._queue) > depth:
                dropped.append(self._queue.popleft()[0])
            self.dropped += len(dropped)
        for old in dropped:
            self._on_dropped(old, QUEUE_FULL)

    @property
    def queue_depth(self):
        with self._condition:
            return len(self._queue)

    @property
    def busy(self):
        with self._condition:
            return self._busy

    def wait_idle(self, timeout=None):
        """True once nothing is queued or running (tests, shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True

    def stop(self, timeout=5.0):
        """Answer the queued jobs as dropped, let the running one finish, join the thread.

        Returns whether the thread ended within ``timeout``. Safe to call again.
        """
        with self._condition:
            self._running = False
            leftover = [job for job, _ in self._queue]
            self._queue.clear()
            self.dropped += len(leftover)
            self._condition.notify_all()
        for job in leftover:
            self._on_dropped(job, SHUTTING_DOWN)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the worker thread --------------------------------------------------
    def _serve(self):
        try:
            if self._setup is not None:
                self.setup_result = self._setup()
        except BaseException as error:  # handed to the constructor, which raises it
            self._setup_error = error
            return
        finally:
            self._ready.set()
        while True:
            with self._condition:
                while self._running and not self._queue:
                    self._condition.wait()
                if not self._running:
                    return
                job, queued_at = self._queue.popleft()
                setting = self._setting
                self._busy = True
            started = time.monotonic()
            output, error = None, ''
            try:
                output = self._process(job, setting)
            except Exception as exc:  # one bad job must not stop the worker
                error = f'{type(exc).__name__}: {exc}'
                self.errors += 1
            finished = Finished(job, setting, output, error, started - queued_at,
                                time.monotonic() - started)
            self.processed += 1
            try:
                self._on_finished(finished)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
