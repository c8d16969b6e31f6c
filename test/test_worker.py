import threading
import time

import pytest

from dyn_dnn_ros.runtime.rate_window import RateWindow
from dyn_dnn_ros.runtime.worker import QUEUE_FULL, SHUTTING_DOWN, InferenceWorker


class Recorder:
    def __init__(self):
        self.finished, self.dropped, self.reasons = [], [], []

    def drop(self, job, reason):
        self.dropped.append(job)
        self.reasons.append(reason)

    def worker(self, process, depth, setting=None):
        return InferenceWorker(process, self.finished.append, self.drop, depth, setting)


def test_full_queue_drops_the_oldest_waiting_job():
    gate = threading.Event()
    rec = Recorder()
    worker = rec.worker(lambda job, setting: gate.wait(5) and job * 10, depth=2)
    try:
        worker.submit(1)                 # starts running, blocked on the gate
        time_limit = time.monotonic() + 5
        while not worker.busy and time.monotonic() < time_limit:
            time.sleep(0.001)
        for job in (2, 3, 4, 5):
            worker.submit(job)           # queue holds 2 -> drops 2, then 3
        assert rec.dropped == [2, 3] and worker.queue_depth == 2
        assert rec.reasons == [QUEUE_FULL, QUEUE_FULL]
        gate.set()
        assert worker.wait_idle(timeout=5)
        assert [f.job for f in rec.finished] == [1, 4, 5]
        assert [f.output for f in rec.finished] == [10, 40, 50]
        assert worker.processed == 3 and worker.dropped == 2
    finally:
        worker.stop()


def test_a_switch_applies_to_the_next_job_and_results_name_their_setting():
    gate = threading.Event()
    rec = Recorder()
    worker = rec.worker(lambda job, setting: gate.wait(5) and setting, depth=4, setting='a')
    try:
        worker.submit('first')
        while not worker.busy:
            time.sleep(0.001)
        worker.set_setting('b')          # mid-job: the running job keeps 'a'
        worker.submit('second')
        gate.set()
        assert worker.wait_idle(timeout=5)
        assert [(f.job, f.setting, f.output) for f in rec.finished] == [
            ('first', 'a', 'a'), ('second', 'b', 'b')]
    finally:
        worker.stop()


def test_a_failing_job_is_reported_and_the_worker_keeps_serving():
    rec = Recorder()

    def process(job, setting):
        if job == 'bad':
            raise RuntimeError('kaputt')
        return job.upper()

    worker = rec.worker(process, depth=4)
    try:
        for job in ('bad', 'ok'):
            worker.submit(job)
        assert worker.wait_idle(timeout=5)
        assert rec.finished[0].error == 'RuntimeError: kaputt' and rec.finished[0].output is None
        assert rec.finished[1].output == 'OK' and worker.errors == 1
    finally:
        worker.stop()


def test_stop_answers_waiting_jobs_as_dropped_and_refuses_new_ones():
    gate = threading.Event()
    rec = Recorder()
    worker = rec.worker(lambda job, setting: gate.wait(5), depth=8)
    worker.submit(1)
    while not worker.busy:
        time.sleep(0.001)
    worker.submit(2)
    worker.submit(4)
    assert worker.queue_depth == 2
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    while worker.queue_depth:      # stop() empties the queue at once ...
        time.sleep(0.001)
    assert stopper.is_alive()      # ... and waits for the running job
    gate.set()
    stopper.join(5)
    assert [f.job for f in rec.finished] == [1]
    worker.submit(3)
    assert rec.dropped == [2, 4, 3] and rec.reasons == [SHUTTING_DOWN] * 3
    assert worker.stop() is True   # again: nothing left, the thread has ended


def test_depth_is_validated_and_can_shrink():
    rec = Recorder()
    with pytest.raises(ValueError, match='depth'):
        rec.worker(lambda j, s: j, depth=0)
    gate = threading.Event()
    worker = rec.worker(lambda j, s: gate.wait(5), depth=4)
    try:
        worker.submit(0)
        while not worker.busy:
            time.sleep(0.001)
        for job in (1, 2, 3):
            worker.submit(job)
        worker.set_depth(1)
        assert rec.dropped == [1, 2] and worker.queue_depth == 1
    finally:
        gate.set()
        worker.stop()


def test_latency_window_percentiles_misses_and_report():
    import math

    from dyn_dnn_ros.runtime.latency_window import LatencyWindow

    window = LatencyWindow(size=4)
    assert math.isnan(window.percentile(50))
    for latency, budget in [(10.0, 20.0), (30.0, 20.0), (40.0, 0.0), (15.0, 20.0),
                            (25.0, 20.0)]:
        window.add(latency, budget)       # the oldest (10 ms) falls out
    assert window.percentile(50) == 30.0 and window.percentile(95) == 40.0
    assert window.misses() == 2           # 30 and 25 over 20 ms; 40 had no budget

    class Stat:
        def __init__(self):
            self.values = {}

        def add(self, key, value):
            self.values[key] = value

    stat = Stat()
    window.report(stat)
    assert stat.values == {'latency_p50_ms': '30', 'latency_p95_ms': '40',
                           'deadline_misses': '2', 'window': '4'}


def test_setup_runs_on_the_worker_thread_and_its_failure_is_raised():
    seen = {}

    def setup():
        seen['setup'] = threading.current_thread().name
        return 'model'

    def process(job, setting):
        seen['process'] = threading.current_thread().name
        return job

    rec = Recorder()
    worker = InferenceWorker(process, rec.finished.append, rec.drop, 1,
                             name='translation', setup=setup)
    try:
        assert worker.setup_result == 'model'
        worker.submit(1)
        assert worker.wait_idle(timeout=5)
        assert seen == {'setup': 'translation', 'process': 'translation'}
    finally:
        worker.stop()

    def broken():
        raise ValueError('model.safetensors: shape mismatch')

    with pytest.raises(ValueError, match='shape mismatch'):
        InferenceWorker(process, rec.finished.append, rec.drop, 1, setup=broken)


def test_rate_window_counts_only_recent_events():
    now = [100.0]
    window = RateWindow(seconds=5.0, clock=lambda: now[0])
    now[0] = 102.0
    for _ in range(10):
        window.tick()
    assert window.rate() == pytest.approx(5.0)      # 10 events in the 2 s since start
    now[0] = 106.0
    assert window.rate() == pytest.approx(2.0)      # the same 10 over the last 5 s
    now[0] = 107.5
    assert window.rate() == 0.0                     # all older than the window
    with pytest.raises(ValueError):
        RateWindow(seconds=0)
