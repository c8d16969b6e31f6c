"""How the manager puts a target's decision in force on its worker (no ROS).

A decision becomes one atomic parameter set on the worker. ``DecisionApplication``
is that protocol for one target, as a state machine the manager node feeds
with events and whose outputs it carries out:

inputs
    ``decide`` (a new decision's parameter values), ``answered`` (the worker
    accepted or refused a set, with its reason), ``failed`` (the call broke,
    e.g. the worker went away mid-call), ``check`` (the periodic check: the
    answer timeout and whether the worker's parameter service is reachable),
    ``heartbeat`` (the worker's announcement: instance id, pid, point and
    threads in force) and ``result_seen`` (the point a result names).
outputs
    ``next_request`` (the set to send now, if any), ``in_force`` (the state
    diagnostics report), ``problem`` (the diagnostics summary it causes),
    ``service_remark`` (what a service answer adds), ``report`` (diagnostics
    values) and the ``Note`` an input returns for the log.

The rules:

- One set is in flight at a time. A newer decision waits for its answer and
  is sent when it comes, whatever it says.
- An accepted set is what the worker applied. A refused one is reported and
  not sent again until the decision changes: the worker would refuse it again.
- A call that broke is sent again at the next ``check``; one left unanswered
  for ``answer_timeout_s`` counts as failed, its late answer is ignored and
  it is sent again at once. While the worker announces that it is not
  serving yet (it waits for its setting after a start), the wait is
  ``waiting_answer_timeout_s``: a request written while DDS is still
  matching a new process's parameter service can be lost, and the worker
  serves its defaults once its own wait is over.
- A worker that restarted runs its own defaults, so whatever it applied or
  refused is void and the decision is sent again: when a heartbeat carries a
  new instance id, when its parameter service disappears and returns, or
  when ``results_before_reapply`` results in a row name a point other than
  the one applied.
- The decision is in force (``yes``) only when the worker accepted it and its
  heartbeat announces the same point and thread count; a worker silent for
  ``worker_timeout_s`` is lost.
"""

from dataclasses import dataclass
import enum
import math

from dyn_dnn_ros.formatting import text
from dyn_dnn_ros.runtime.worker_parameters import OPERATING_POINT, THREADS
from dyn_dnn_ros.validation import require_int, require_positive


class Severity(enum.Enum):
    INFO = 'info'
    WARNING = 'warning'
    ERROR = 'error'


# What ``in_force`` reports.
NO_DECISION = '(no decision)'
WORKER_LOST = 'no: worker lost'
PENDING = 'pending'
IN_FORCE = 'yes'


@dataclass(frozen=True)
class ApplicationConfig:
    worker_timeout_s: float = 1.5      # announcements stop this long: the worker is lost
    answer_timeout_s: float = 5.0      # a set unanswered this long failed and is sent again
    waiting_answer_timeout_s: float = 0.5   # the same, to a worker not serving yet
    results_before_reapply: int = 3    # results in a row from another point: worker reset

    def __post_init__(self):
        for name in ('worker_timeout_s', 'answer_timeout_s', 'waiting_answer_timeout_s'):
            require_positive(name, getattr(self, name), 'seconds')
        require_int('results_before_reapply', self.results_before_reapply, 1)


@dataclass(frozen=True)
class SetRequest:
    """One atomic parameter set to send to the worker; ``call`` tells its answer apart."""

    call: int
    values: dict


@dataclass(frozen=True)
class Announcement:
    """The worker's last heartbeat, as far as the protocol needs it."""

    instance_id: str
    pid: int
    point: str
    threads: int
    heard_at: float   # monotonic seconds
    serving: bool = True   # False: the worker waits for its setting before it serves


@dataclass(frozen=True)
class Note:
    """A line for the log or the diagnostics summary."""

    severity: Severity
    text: str


class DecisionApplication:
    """The parameter-set protocol between the manager and one worker.

    Not thread-safe, and it needs no lock: one thread owns it, the thread
    spinning the manager node. The node calls it (and its target's
    ``TargetController``) only from callbacks of its executor: the control
    timer (``check``), the services (``decide``, ``next_request``), the
    subscriptions (heartbeats, results, availability), the parameter callback
    that replaces ``config`` and the done-callbacks of its parameter-set
    futures (``answered``, ``failed``). rclpy completes a client's future in
    the executor that took the response and hands the future's done-callbacks
    to that executor as tasks, so they run on the spinning thread too; the
    manager has no thread of its own, and every process spins its nodes on one
    ``SingleThreadedExecutor`` (``ros/spin.py``). Other threads (tests,
    diagnostics readers) only read. Calling it from another thread, or
    spinning the manager on a multi-threaded executor, would need a lock
    around every input and output (or marshalling the calls into the executor).
    """

    def __init__(self, target, worker, config=ApplicationConfig()):
        self.target = target          # 'translation' or 'perception', for log lines
        self.worker = worker          # the worker's node name
        self.config = config
        self.wanted = None            # parameter values that should be in force
        self.applied = None           # values the worker accepted last
        self.rejected = ''            # the worker's reason for refusing `wanted`
        self.reachable = None         # the parameter service at the last check; None before
        self.announcement = None      # the worker's last heartbeat (Announcement)
        self.set_failures = 0         # sets refused, broken or unanswered
        self.restarts = 0             # new worker instances seen after the first
        self._in_flight = None        # the SetRequest awaiting its answer
        self._sent_at = math.nan
        self._calls = 0
        self._retry_at_check = False  # a broken call waits for the next check
        self._foreign_results = 0     # results in a row from a point not applied

    @property
    def awaiting(self):
        """The set whose answer counts now, or None."""
        return self._in_flight

    # -- inputs -------------------------------------------------------------------
    def decide(self, values):
        """The controller's decision, as worker parameter values."""
        if values != self.wanted:
            self.wanted = dict(values)
            self.rejected = ''   # a new decision may be acceptable

    def next_request(self, reachable, now):
        """The set to send now, or None; ``reachable``: the worker's service is ready."""
        if self.wanted is None or self._in_flight is not None or self.wanted == self.applied:
            return None
        if self.rejected or not reachable or self._retry_at_check:
            return None   # refused sets wait for a new decision; a missing worker for its return
        self._calls += 1
        self._in_flight = SetRequest(self._calls, dict(self.wanted))
        self._sent_at = now
        return self._in_flight

    def answered(self, request, accepted, reason=''):
        """The worker's answer to ``request``; returns the Note to log, or None."""
        if request is not self._in_flight:
            return None   # asked of a replaced instance, or given up on
        self._in_flight = None
        if accepted:
            self.applied = request.values
            return Note(Severity.INFO, f'{self.target}: {request.values[OPERATING_POINT]} '
                        f'with {request.values[THREADS]} thread(s) in force')
        self.set_failures += 1
        if request.values == self.wanted:
            self.rejected = reason or 'refused without a reason'
        return Note(Severity.ERROR, f'{self.worker} refused {request.values}: {reason}')

    def failed(self, request, error):
        """The call for ``request`` broke without an answer; sent again at the next check."""
        if request is not self._in_flight:
            return None
        self._in_flight = None
        self.set_failures += 1
        self._retry_at_check = True
        return Note(Severity.WARNING, f'setting {self.worker} failed: {error}')

    def check(self, reachable, now):
        """The periodic check; ``reachable``: the worker's parameter service is ready now."""
        self._retry_at_check = False
        note = None
        timeout = self.config.answer_timeout_s
        if self.announcement is not None and not self.announcement.serving:
            timeout = min(timeout, self.config.waiting_answer_timeout_s)
        if self._in_flight is not None and now - self._sent_at > timeout:
            self._in_flight = None   # a late answer to it is ignored
            self.set_failures += 1
            note = Note(Severity.WARNING, f'{self.worker} did not answer a parameter set '
                        f'within {timeout:g} s: sending it again')
        if reachable and self.reachable is False:
            self._worker_reset()   # the service came back: a restarted worker runs defaults
        self.reachable = reachable
        return note

    def heartbeat(self, instance_id, pid, point, threads, now, serving=True):
        """The worker's announcement; a new instance id means it restarted."""
        known = self.announcement
        self.announcement = Announcement(instance_id, pid, point, threads, now, serving)
        if known is None or known.instance_id == instance_id:
            return None
        self.restarts += 1
        self._worker_reset()
        self._in_flight = None   # an answer from the old instance says nothing of this one
        return Note(Severity.WARNING, f'{self.worker} restarted (pid {pid}): putting the '
                    'decision in force again')

    def result_seen(self, point):
        """A result of the worker that names ``point`` (a point of the library)."""
        if self.applied is None or self._in_flight is not None or \
                point == self.applied[OPERATING_POINT]:
            self._foreign_results = 0
            return None
        # Queued work can finish with the previous point, but a run of such
        # results means the worker lost our setting (e.g. it restarted).
        self._foreign_results += 1
        if self._foreign_results < self.config.results_before_reapply:
            return None
        self._foreign_results = 0
        self.applied = None
        return Note(Severity.WARNING, f'{self.worker}: {self.config.results_before_reapply} '
                    f'results in a row from {point}, not {self.wanted[OPERATING_POINT]}: '
                    'putting the decision in force again')

    def _worker_reset(self):
        self.applied = None
        self.rejected = ''

    # -- outputs ------------------------------------------------------------------
    def lost(self, now):
        """Whether the worker announced itself once and then fell silent."""
        return self.announcement is not None and \
            now - self.announcement.heard_at > self.config.worker_timeout_s

    def in_force(self, now):
        """'yes' only when the worker accepted the decision and announces it."""
        if self.wanted is None:
            return NO_DECISION
        if self.lost(now):
            return WORKER_LOST
        if self.applied != self.wanted:
            return PENDING
        beat = self.announcement
        if beat is not None and (beat.point, beat.threads) != (
                self.wanted[OPERATING_POINT], self.wanted[THREADS]):
            return PENDING   # accepted; the worker's announcement has not caught up
        return IN_FORCE

    def problem(self, now):
        """What keeps decisions from the worker, as a Note for diagnostics, or None."""
        if self.rejected:
            return Note(Severity.ERROR, f'{self.worker} refused the last set: {self.rejected}')
        if self.lost(now):
            return Note(Severity.WARNING, f'worker {self.worker} lost: no announcement for '
                        f'{now - self.announcement.heard_at:.1f} s; requests are not answered')
        if not self.reachable:
            return Note(Severity.WARNING, f'worker {self.worker} not reachable')
        return None

    def service_remark(self, reachable):
        """What a service answer adds about delivery: '' when the worker is reachable."""
        if reachable:
            return ''
        return f' (worker {self.worker} not reachable: applied when it appears)'

    def report(self, stat, now):
        """Add the protocol's figures to a diagnostic status (anything with ``add``)."""
        stat.add('set_failures', text(self.set_failures))
        stat.add('in_force', self.in_force(now))
        stat.add('worker_restarts', text(self.restarts))
        if self.announcement is not None:
            stat.add('worker_last_heard_s', text(now - self.announcement.heard_at))
            stat.add('worker_pid', text(self.announcement.pid))
