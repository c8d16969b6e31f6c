"""Truthful run time as a ROS host deploys it: every node in its own process.

Starts the system as launch/bringup.launch.py does (resource_monitor,
translation_node and dnn_manager, each its own process with the system
parameter file; perception_node too with ``--perception``), waits until all
are up, sets a latency budget through the manager's ``set_latency_budget``
service, and sends test-split sentences at a steady rate, each request
stamped with the current time. End-to-end time runs from that stamp to the
result's arrival here. Printed and written as JSON (``--out``):

- what happened to the requests sent (fractions adding up to 1, from
  ``dyn_dnn_ros.demo.metrics``): complete within the budget, late, cut at the
  deadline (partial), dropped or never answered, failed;
- the share of ``hardware_availability`` samples at each ``usable_threads``
  value and the share of results at each thread count;
- operating-point switches (consecutive results with different points);
- the deadline margin the translation node measured (``deadline_margin_ms``
  on its diagnostics, the last one reported);
- ``--burn S``: a CPU-burning process on one core for S seconds in the
  middle of the stream: how long until ``usable_threads`` dropped to 1 after
  it started, and how long until it came back after it stopped;
- ``--restart``: ``kill -9`` of the translation_node mid-stream, started
  again at once: how long until the manager's ``dnn_manager: translation``
  status on ``/diagnostics`` left OK, from the new process's start to its
  first heartbeat with ``serving: true``, whether the new instance's first
  answer already ran with the manager's operating point and budget, and how
  many requests sent while no worker listened got no answer.

A reaction that did not happen is reported as ``never``. Every node process
is stopped at the end (Ctrl-C, then SIGKILL), also on Ctrl-C to the bench.

    .venv/bin/python bench/system_processes.py --burn 15 --restart
"""

import argparse
from collections import Counter
import json
import math
import os
from pathlib import Path
import signal
import sys
import threading
import time

from dyn_dnn_ros.share import data_path, runs_path

DEFAULT_OUT = runs_path('bench', 'system_processes.json')
MANAGER_STATUS = 'dnn_manager: translation'
WORKER_STATUS = 'translation_node: translation'
LEVEL_NAMES = {0: 'OK', 1: 'WARN', 2: 'ERROR', 3: 'STALE'}
# Statuses of results the worker ran inference for (they carry a real point).
RAN = ('ok', 'truncated', 'partial')


# -- pure helpers (tested without ROS) ---------------------------------------------------
def shares(values):
    """{value: fraction of ``values``}, keys as strings in ascending order."""
    counts = Counter(values)
    total = sum(counts.values())
    return {str(key): counts[key] / total for key in sorted(counts)} if total else {}


def point_switches(results):
    """Consecutive results (in arrival order) that ran with different operating points."""
    ran = sorted((r for r in results if r.status in RAN), key=lambda r: r.received_s)
    return sum(1 for a, b in zip(ran, ran[1:], strict=False) if a.point != b.point)


def first_after(samples, start, predicate):
    """Time of the first ``(t, value)`` sample at or after ``start`` whose value matches."""
    return next((t for t, value in samples if t >= start and predicate(value)), None)


def delay(t_event, t_reaction):
    """Seconds from an event to its reaction, or 'never'."""
    return 'never' if t_reaction is None or t_event is None else t_reaction - t_event


def burn_reaction(availability, burn_start, burn_stop):
    """How ``usable_threads`` followed a burner running from ``burn_start`` to ``burn_stop``.

    ``availability``: ``(t, usable_threads)`` in arrival order. The value before
    the burn is the last sample before it started.
    """
    before = [u for t, u in availability if t < burn_start]
    baseline = before[-1] if before else None
    dropped = first_after(availability, burn_start, lambda u: u <= 1)
    during = [u for t, u in availability if burn_start <= t < burn_stop]
    back = None
    if baseline is not None and baseline > 1:
        back = first_after(availability, burn_stop, lambda u: u >= baseline)
    return {'usable_threads_before': baseline,
            'usable_threads_during': shares(during),
            'dropped_to_1_after_s': 'already 1' if baseline == 1 else
            delay(burn_start, dropped if dropped is not None and dropped < burn_stop else None),
            'back_after_stop_s': 'n/a' if baseline is not None and baseline <= 1 else
            delay(burn_stop, back)}


def json_ready(value):
    """NaN and infinities as None (strict JSON), tuples as lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


class CpuAccount:
    """CPUs kept busy on the machine, by our processes and by everything else."""

    def __init__(self):
        self.hz = os.sysconf('SC_CLK_TCK')
        self.pid_ticks = {}   # pid -> (first ticks seen, last ticks seen)
        self.start = self._machine()
        self.last = self.start

    @staticmethod
    def _machine():
        with open('/proc/stat') as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return time.monotonic(), sum(fields[:8]) - idle

    def _ticks(self, pid):
        try:
            with open(f'/proc/{pid}/stat') as stat:
                fields = stat.read().rpartition(')')[2].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None

    def sample(self, pids):
        for pid in pids:
            ticks = self._ticks(pid)
            if ticks is not None:
                first, _ = self.pid_ticks.get(pid, (ticks, ticks))
                self.pid_ticks[pid] = (first, ticks)
        self.last = self._machine()

    def summary(self):
        from dyn_dnn_ros.resources.cpu import allowed_cpu_count
        seconds = self.last[0] - self.start[0]
        if seconds <= 0:
            return {}
        machine = (self.last[1] - self.start[1]) / self.hz / seconds
        ours = sum(last - first for first, last in self.pid_ticks.values()) / self.hz / seconds
        return {'cpus': allowed_cpu_count(), 'machine_busy_cpus': machine,
                'bench_processes_cpus': ours, 'other_processes_cpus': max(0.0, machine - ours),
                'loadavg_1min_end': os.getloadavg()[0]}


# -- the observer: requests out, everything else in ---------------------------------------
class Observer:
    """The bench's own node: requests out; results, availability, heartbeats and diagnostics in.

    Everything received is kept with its wall-clock arrival time.
    """

    def __init__(self, namespace):
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        from dyn_dnn_ros.ros.spin import NodeSpinner
        from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS, HEARTBEAT_TOPIC
        from dyn_dnn_ros_interfaces.msg import (
            HardwareAvailability,
            TranslationRequest,
            TranslationResult,
            WorkerHeartbeat,
        )
        from dyn_dnn_ros_interfaces.srv import SetLatencyBudget

        self.rclpy = rclpy
        self.context = rclpy.Context()
        # Ctrl-C stays with the bench: it must stop the node processes first.
        rclpy.init(context=self.context, args=[],
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node('bench_system_processes', namespace=namespace or '/',
                                      context=self.context, start_parameter_services=False)
        self.lock = threading.Lock()
        self.results = {}       # id -> (t, msg)
        self.availability = []  # (t, usable_threads, usable_cpus, availability)
        self.heartbeats = []    # (t, dict)
        self.diagnostics = []   # (t, level, message, point, threads) of MANAGER_STATUS
        self.deadline_margin = None   # the worker's last reported deadline_margin_ms
        self.Request = TranslationRequest
        self.SetLatencyBudget = SetLatencyBudget
        node = self.node
        self.publisher = node.create_publisher(TranslationRequest, 'translation_requests', 1000)
        node.create_subscription(TranslationResult, 'translation_results', self._on_result,
                                 1000)
        node.create_subscription(HardwareAvailability, 'hardware_availability',
                                 self._on_availability, 100)
        node.create_subscription(WorkerHeartbeat, HEARTBEAT_TOPIC, self._on_heartbeat,
                                 HEARTBEAT_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 100)
        self.budget_client = node.create_client(SetLatencyBudget, 'set_latency_budget')
        self.spinner = NodeSpinner(context=self.context)
        self.spinner.add(node)
        self.spinner.start()

    def _on_result(self, msg):
        t = time.time()
        with self.lock:
            self.results.setdefault(msg.id, (t, msg))

    def _on_availability(self, msg):
        with self.lock:
            self.availability.append((time.time(), int(msg.usable_threads),
                                      float(msg.usable_cpus), float(msg.availability)))

    def _on_heartbeat(self, msg):
        beat = {'node': msg.node, 'instance_id': msg.instance_id, 'pid': int(msg.pid),
                'target': msg.target, 'operating_point': msg.operating_point,
                'threads': int(msg.threads), 'budget_ms': float(msg.budget_ms),
                'serving': bool(msg.serving)}
        with self.lock:
            self.heartbeats.append((time.time(), beat))

    def _on_diagnostics(self, msg):
        from dyn_dnn_ros.ros.diagnostics import level_value
        t = time.time()
        with self.lock:
            for status in msg.status:
                if status.name == WORKER_STATUS:
                    values = {kv.key: kv.value for kv in status.values}
                    self.deadline_margin = values.get('deadline_margin_ms',
                                                      self.deadline_margin)
                if status.name == MANAGER_STATUS:
                    values = {kv.key: kv.value for kv in status.values}
                    self.diagnostics.append((t, level_value(status.level), status.message,
                                             values.get('operating_point'),
                                             values.get('threads')))

    def publish(self, rid, text):
        msg = self.Request(id=rid, text=text)
        stamp = self.node.get_clock().now()
        msg.header.stamp = stamp.to_msg()
        msg.header.frame_id = 'bench'
        self.publisher.publish(msg)
        return stamp.nanoseconds / 1e9

    def snapshot(self):
        with self.lock:
            return (dict(self.results), list(self.availability), list(self.heartbeats),
                    list(self.diagnostics))

    def set_budget(self, budget_ms, timeout=10.0):
        request = self.SetLatencyBudget.Request(target='translation', budget_ms=float(budget_ms),
                                                min_quality=math.nan)
        called = time.time()
        future = self.budget_client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f'set_latency_budget gave no answer within {timeout:g} s')
            time.sleep(0.01)
        return called, future.result()

    def close(self):
        try:
            self.spinner.shutdown(timeout_sec=2.0)
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.context)


# -- the run --------------------------------------------------------------------------------
def wait_for(condition, timeout, what, processes=()):
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            if not process.running:
                raise RuntimeError(f'{process.name} exited with {process.proc.returncode} '
                                   f'while waiting for {what}:\n{process.output_tail()}')
        if time.monotonic() > deadline:
            raise RuntimeError(f'{what}: not within {timeout:g} s')
        time.sleep(0.05)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args):
    """Brings the system up, drives it, stops it; returns the raw record of what happened."""
    from dyn_dnn_ros.demo.burner import CpuBurner
    from dyn_dnn_ros.demo.processes import NodeProcess, node_command, stop_all
    from dyn_dnn_ros.demo.runner import load_sentences

    sentences = load_sentences(data_path('corpus'))
    logs = args.out.parent / (args.out.stem + '_logs')
    names = ['resource_monitor', 'translation_node'] + \
        (['perception_node'] if args.perception else []) + ['dnn_manager']
    commands = {name: node_command(name, namespace=args.namespace) for name in names}
    raw = {'settings': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           'commands': {name: ' '.join(command[1:]) for name, command in commands.items()},
           'loadavg_1min_start': os.getloadavg()[0], 'pids': [], 'events': {}}
    processes = {}
    started = []   # every process ever started, for the final stop
    burner = CpuBurner()
    observer = None
    cpu = None

    def start(name, instance=0):
        process = NodeProcess(name, commands[name], logs / f'{name}-{instance}.log')
        started.append(process)
        processes[name] = process
        raw['pids'].append(process.pid)
        return process

    try:
        observer = Observer(args.namespace)
        t_up = time.time()
        for name in names:
            start(name)
        live = lambda: list(processes.values())  # noqa: E731

        def translation_serving(pid):
            return any(b['pid'] == pid and b['serving'] and b['target'] == 'translation'
                       for _, b in observer.snapshot()[2])

        wait_for(lambda: observer.snapshot()[1], args.startup_timeout,
                 'hardware_availability samples', live())
        wait_for(observer.budget_client.service_is_ready, args.startup_timeout,
                 'the manager\'s set_latency_budget service', live())
        wait_for(lambda: translation_serving(processes['translation_node'].pid),
                 args.startup_timeout, 'a serving heartbeat of translation_node', live())
        wait_for(lambda: observer.publisher.get_subscription_count() > 0, 10,
                 'translation_node subscribed to requests', live())
        raw['startup_s'] = time.time() - t_up
        print('up: ' + ', '.join(f'{p.name} (pid {p.pid})' for p in live()), file=sys.stderr,
              flush=True)

        t_call, response = observer.set_budget(args.budget)
        raw['budget_response'] = {'success': bool(response.success),
                                  'operating_point': response.operating_point,
                                  'expected_latency_ms': float(response.expected_latency_ms),
                                  'message': response.message}
        if not response.success:
            raise RuntimeError(f'set_latency_budget refused {args.budget} ms: '
                               f'{response.message}')

        def budget_in_force():
            pid = processes['translation_node'].pid
            beats = [b for _, b in observer.snapshot()[2] if b['pid'] == pid]
            return beats and abs(beats[-1]['budget_ms'] - args.budget) <= 1e-3 * args.budget
        try:
            wait_for(budget_in_force, 10, 'the budget in force on the worker', live())
            raw['budget_in_force_after_s'] = time.time() - t_call
        except RuntimeError:
            raw['budget_in_force_after_s'] = 'never'

        # -- the stream ----------------------------------------------------------------
        t0 = time.time()
        raw['t0'] = t0
        raw['budget_call_s'] = t_call - t0
        cpu = CpuAccount()
        interval = 1.0 / args.rate
        burn_at = args.burn_at if args.burn_at is not None else max(0.0, 0.3 * args.seconds)
        restart_at = args.restart_at if args.restart_at is not None else 0.75 * args.seconds
        pending = []
        if args.burn > 0:
            pending += [(burn_at, 'burn_start'), (burn_at + args.burn, 'burn_stop')]
        if args.restart:
            pending.append((restart_at, 'restart'))
        pending.sort()
        sent = []   # (id, sent_s, reference)
        index = 0
        end = args.seconds
        next_cpu = 0.0
        new_pid = None

        def new_instance_answered():
            first = raw['events'].get('new_first_heartbeat')
            return first is not None and any(
                received - t0 >= first for received, _ in observer.snapshot()[0].values())

        print(f'stream: {args.rate:g} requests/s for {args.seconds:g} s under '
              f'{args.budget:g} ms', file=sys.stderr, flush=True)
        while True:
            t = time.time() - t0
            if t >= end:
                # A restart late in the stream: keep sending until the new
                # instance answered (or the wait ran out), so that it is measured.
                if new_pid is None or new_instance_answered() or \
                        t >= args.seconds + args.restart_wait:
                    break
                end = t + interval
            while pending and pending[0][0] <= t:
                _, kind = pending.pop(0)
                if kind == 'burn_start':
                    burner.start()
                    raw['events']['burn_start'] = time.time() - t0
                    raw['pids'].append(burner.process.pid)
                elif kind == 'burn_stop':
                    burner.stop()
                    raw['events']['burn_stop'] = time.time() - t0
                else:
                    old = processes['translation_node']
                    raw['events']['old_pid'] = old.pid
                    old.kill9()
                    raw['events']['kill'] = time.time() - t0
                    raw['events']['new_start'] = time.time() - t0
                    new_pid = start('translation_node', 1).pid
                    raw['events']['new_pid'] = new_pid
            if new_pid is not None and 'new_first_heartbeat' not in raw['events']:
                beats = [bt for bt, b in observer.snapshot()[2] if b['pid'] == new_pid]
                if beats:
                    raw['events']['new_first_heartbeat'] = beats[0] - t0
            if index * interval <= t:
                source, reference = sentences[index % len(sentences)]
                rid = f'r{index}'
                stamp = observer.publish(rid, source)
                sent.append((rid, stamp - t0, reference))
                index += 1
            if t >= next_cpu:
                cpu.sample([os.getpid()] + [p.pid for p in live()] +
                           ([burner.process.pid] if burner.running else []))
                next_cpu = t + 1.0
            due = [index * interval, next_cpu, end] + [at for at, _ in pending[:1]]
            time.sleep(max(0.0, min(min(due) - (time.time() - t0), 0.05)))
        raw['stream_s'] = time.time() - t0
        raw['stream_extended_s'] = max(0.0, end - args.seconds)
        burner.stop()
        cpu.sample([os.getpid()] + [p.pid for p in live()])
        drain_until = time.monotonic() + args.drain
        while time.monotonic() < drain_until:
            results = observer.snapshot()[0]
            if all(rid in results for rid, _, _ in sent):
                break
            time.sleep(0.05)
        raw['sent'] = sent
        raw['cpu'] = cpu.summary()
    finally:
        # A second Ctrl-C must not leave nodes behind: the stop is bounded anyway.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            burner.stop()
            raw['exit_codes'] = stop_all(started, grace_s=args.stop_grace)
            if observer is not None:
                snapshot = observer.snapshot()
                raw['deadline_margin'] = observer.deadline_margin
                observer.close()
                raw['results'], raw['availability'], raw['heartbeats'], \
                    raw['diagnostics'] = snapshot
        finally:
            signal.signal(signal.SIGINT, previous)
    return raw


def analyse(raw, args):
    """The figures of one run, from its raw record."""
    from dyn_dnn_ros.demo.metrics import ResultRecord, RunRecord, summarize
    from dyn_dnn_ros.demo.runner import STATUS_NAMES

    t0 = raw['t0']
    records = []
    for rid, sent_s, reference in raw['sent']:
        if rid in raw['results']:
            t, msg = raw['results'][rid]
            records.append(ResultRecord(
                rid, sent_s, t - t0, STATUS_NAMES.get(msg.status, 'error'), msg.operating_point,
                float(msg.latency_ms), float(msg.queue_ms), float(args.budget), msg.text,
                reference, int(msg.threads), bool(msg.stopped_at_deadline)))
        else:
            records.append(ResultRecord(rid, sent_s, math.nan, 'lost', '', math.nan, math.nan,
                                        float(args.budget), '', reference))
    result_budget = {rid: float(msg.budget_ms) for rid, (_, msg) in raw['results'].items()}
    events = raw['events']
    availability = [(t - t0, u) for t, u, _, _ in raw['availability']]
    in_stream = [u for t, u in availability if 0.0 <= t <= raw['stream_s']]
    run = RunRecord('system_processes', records,
                    availability=[(t - t0, u, a) for t, u, _, a in raw['availability']],
                    budget_calls=[(raw['budget_call_s'], args.budget,
                                   raw['budget_response']['operating_point'])])
    burn_window = (events['burn_start'], events['burn_stop']) if 'burn_stop' in events else None
    summary = summarize(run, burn_window)
    figures = {
        'requests_sent': len(records),
        'outcomes': {key: summary[key] for key in ('complete_in_budget', 'cut_at_deadline',
                                                   'late', 'dropped', 'failed')},
        'counts': {key: summary[key] for key in ('complete', 'cut_count', 'dropped_count',
                                                 'lost_count')},
        'usable_threads_share': shares(in_stream),
        'availability_samples': len(in_stream),
        'result_threads_share': shares([r.threads for r in records if r.status in RAN]),
        'operating_point_switches': point_switches(records),
        'switches_complete_answers': summary['switches'],
        'points_used': summary['points_used'],
        'point_share': shares([r.point for r in records if r.status in RAN]),
        'mean_latency_ms': summary['mean_latency_ms'],
        'mean_response_ms': summary['mean_response_ms'],
        'response_p50_ms': _percentile([r.response_ms for r in records if r.status in RAN], 50),
        'response_p95_ms': _percentile([r.response_ms for r in records if r.status in RAN], 95),
        'bleu_complete': summary['bleu_complete'],
        'bleu_all': summary['bleu_all'],
        'startup_s': raw['startup_s'],
        'budget_ms': args.budget,
        'budget_response': raw['budget_response'],
        'budget_in_force_after_s': raw['budget_in_force_after_s'],
        'deadline_margin': raw.get('deadline_margin'),
        'stream_s': raw['stream_s'],
        'stream_extended_s': raw['stream_extended_s'],
        'load': {'loadavg_1min_start': raw['loadavg_1min_start'], **raw['cpu']},
        'exit_codes': raw['exit_codes'],
        'pids': raw['pids'],
    }
    if burn_window is not None:
        figures['burn'] = {'start_s': burn_window[0], 'stop_s': burn_window[1],
                           **burn_reaction(availability, *burn_window),
                           'complete_in_budget_under_load':
                           summary.get('complete_in_budget_under_load')}
    if 'kill' in events:
        figures['restart'] = restart_figures(raw, records, result_budget, args)
    return figures


def _percentile(values, q):
    import numpy as np
    return float(np.percentile(values, q)) if values else math.nan


def restart_figures(raw, records, result_budget, args):
    """What the kill -9 and the new start of translation_node did, as seen from outside."""
    t0 = raw['t0']
    events = raw['events']
    t_kill, t_new = events['kill'], events['new_start']
    new_pid, old_pid = events['new_pid'], events['old_pid']
    heartbeats = [(t - t0, b) for t, b in raw['heartbeats']]
    old_instances = {b['instance_id'] for _, b in heartbeats if b['pid'] == old_pid}
    new_beats = [(t, b) for t, b in heartbeats
                 if b['pid'] == new_pid and b['instance_id'] not in old_instances]
    first_beat = new_beats[0][0] if new_beats else None
    serving = next(((t, b) for t, b in new_beats if b['serving']), None)
    t_serving = serving[0] if serving else None

    diagnostics = [(t - t0, level, message) for t, level, message, *_ in raw['diagnostics']]
    # What the manager reported in force over time: (t, point, threads).
    in_force = [(t - t0, point, threads) for t, _, _, point, threads in raw['diagnostics']
                if point and point != '(none)']
    before = [(level, message) for t, level, message in diagnostics if t < t_kill]
    left_ok = next(((t, level, message) for t, level, message in diagnostics
                    if t >= t_kill and level != 0), None)
    back_ok = None
    if left_ok is not None:
        back_ok = next((t for t, level, _ in diagnostics if t > left_ok[0] and level == 0),
                       None)

    # The manager's choice when the new instance served: what its diagnostics
    # last reported before then (it may have changed while the worker was down:
    # a new process loading its model looks like load from another program);
    # without such a report, the point of the last result before the kill, else
    # its answer to the budget call.
    ran_before = sorted((r for r in records if r.status in RAN and r.received_s < t_kill),
                        key=lambda r: r.received_s)
    manager_point = (ran_before[-1].point if ran_before else
                     raw['budget_response']['operating_point'])
    manager_threads = ran_before[-1].threads if ran_before else None
    reported = [(point, threads) for t, point, threads in in_force
                if t_serving is not None and t <= t_serving]
    if reported:
        manager_point, threads = reported[-1]
        manager_threads = int(threads) if threads.isdigit() else manager_threads
    # Results of the new instance: those arriving after its first announcement
    # (the killed process can publish nothing after the kill).
    after = sorted((r for r in records if r.status != 'lost' and first_beat is not None
                    and r.received_s >= first_beat), key=lambda r: r.received_s)
    first = after[0] if after else None
    first_ran = next((r for r in after if r.status in RAN), None)

    def describe(r):
        if r is None:
            return None
        budget = result_budget.get(r.id, math.nan)
        return {'id': r.id, 'status': r.status, 'operating_point': r.point,
                'budget_ms': budget, 'threads': r.threads,
                'received_after_kill_s': r.received_s - t_kill,
                'point_is_managers': r.point == manager_point,
                'threads_are_managers_last': r.threads == manager_threads,
                'budget_is_managers': math.isfinite(budget) and abs(budget - args.budget) < 1e-3}

    gap_end = t_serving if t_serving is not None else math.inf
    in_gap = [r for r in records if t_kill <= r.sent_s < gap_end]
    lost_before_kill = [r for r in records if r.sent_s < t_kill and r.status == 'lost']
    level_at_kill = before[-1][0] if before else None
    # With a status that was not OK at the kill already, its first change tells more.
    changed = next(((t, level, message) for t, level, message in diagnostics
                    if t >= t_kill and before and (level, message) != before[-1]), None)
    return {
        'kill_s': t_kill,
        'old_pid': old_pid, 'new_pid': new_pid,
        'manager_status_at_kill': LEVEL_NAMES.get(level_at_kill, level_at_kill),
        'manager_status_left_ok_after_s': delay(t_kill, left_ok[0] if left_ok else None),
        'manager_status_after_kill': (f'{LEVEL_NAMES.get(left_ok[1], left_ok[1])}: {left_ok[2]}'
                                      if left_ok else None),
        'manager_status_ok_again_after_kill_s': delay(t_kill, back_ok),
        'manager_status_first_change_after_kill_s': delay(t_kill, changed[0] if changed
                                                          else None),
        'manager_status_first_change': (f'{LEVEL_NAMES.get(changed[1], changed[1])}: '
                                        f'{changed[2]}' if changed else None),
        'new_first_heartbeat_after_start_s': delay(t_new, first_beat),
        'new_serving_after_start_s': delay(t_new, t_serving),
        'new_serving_heartbeat': serving[1] if serving else None,
        'manager_point': manager_point,
        'manager_budget_ms': args.budget,
        'manager_threads_before_kill': manager_threads,
        'first_new_result': describe(first),
        'first_new_inference': describe(first_ran),
        'first_new_inference_at_managers_setting':
        bool(first_ran is not None and describe(first_ran)['point_is_managers']
             and describe(first_ran)['budget_is_managers']),
        # Answers of the new instance before the first one with the manager's point and budget.
        'new_results_before_managers_setting': next(
            (i for i, r in enumerate(r for r in after if r.status in RAN)
             if describe(r)['point_is_managers'] and describe(r)['budget_is_managers']),
            'never'),
        'sent_while_no_worker_listened': len(in_gap),
        'unanswered_while_no_worker_listened': sum(r.status == 'lost' for r in in_gap),
        'unanswered_sent_before_kill': len(lost_before_kill),
    }


# -- output ---------------------------------------------------------------------------------
def _fmt(value, unit='', digits=2):
    if isinstance(value, str) or value is None:
        return str(value)
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float) and not math.isfinite(value):
        return 'n/a'
    return f'{value:.{digits}f}{unit}' if isinstance(value, float) else f'{value}{unit}'


def _top(share, count=4):
    ranked = sorted(share.items(), key=lambda item: -item[1])
    text = ', '.join(f'{k}: {100 * v:.0f} %' for k, v in ranked[:count])
    rest = sum(v for _, v in ranked[count:])
    return text + (f', {len(ranked) - count} others: {100 * rest:.0f} %' if rest else '')


def table(figures):
    """The compact table printed after a run."""
    out = figures['outcomes']
    load = figures['load']
    lines = [
        f'{figures["requests_sent"]} requests in {figures["stream_s"]:.1f} s under '
        f'{figures["budget_ms"]:g} ms; {load.get("cpus")} CPUs, busy '
        f'{_fmt(load.get("machine_busy_cpus"))} (bench {_fmt(load.get("bench_processes_cpus"))}'
        f', others {_fmt(load.get("other_processes_cpus"))}), load average '
        f'{_fmt(load["loadavg_1min_start"])} at start',
        '',
        '| figure | value |', '| --- | --- |',
        *(f'| {key} | {100 * value:.1f} % |' if isinstance(value, float) and
          math.isfinite(value) else f'| {key} | {_fmt(value)} |' for key, value in out.items()),
        f'| response p50 / p95 | {_fmt(figures["response_p50_ms"], " ms", 1)} / '
        f'{_fmt(figures["response_p95_ms"], " ms", 1)} |',
        f'| mean inference | {_fmt(figures["mean_latency_ms"], " ms", 1)} |',
        '| usable_threads samples | ' + ', '.join(
            f'{k}: {100 * v:.0f} %' for k, v in figures['usable_threads_share'].items()) + ' |',
        '| results by threads | ' + ', '.join(
            f'{k}: {100 * v:.0f} %' for k, v in figures['result_threads_share'].items()) + ' |',
        f'| operating-point switches | {figures["operating_point_switches"]} |',
        f'| points (most used) | {_top(figures["point_share"])} |',
        f'| startup / budget in force | {_fmt(figures["startup_s"], " s", 1)} / '
        f'{_fmt(figures["budget_in_force_after_s"], " s")} |',
        f'| deadline margin at the end (ms) | {figures["deadline_margin"] or "not reported"} |',
    ]
    burn = figures.get('burn')
    if burn:
        lines += [
            f'| burn {burn["start_s"]:.1f}-{burn["stop_s"]:.1f} s: usable_threads before | '
            f'{burn["usable_threads_before"]} |',
            f'| burn: dropped to 1 after | {_fmt(burn["dropped_to_1_after_s"], " s")} |',
            f'| burn: back after stop | {_fmt(burn["back_after_stop_s"], " s")} |',
            f'| burn: complete_in_budget under load | '
            f'{_fmt(100 * burn["complete_in_budget_under_load"], " %", 1)} |'
            if isinstance(burn['complete_in_budget_under_load'], float) else '',
        ]
    restart = figures.get('restart')
    if restart:
        first = restart['first_new_inference'] or {}
        lines += [
            f'| restart at {restart["kill_s"]:.1f} s: manager status at kill | '
            f'{restart["manager_status_at_kill"]} |',
            f'| restart: manager status left OK after | '
            f'{_fmt(restart["manager_status_left_ok_after_s"], " s")} '
            f'({restart["manager_status_after_kill"]}) |',
            f'| restart: start -> serving heartbeat | '
            f'{_fmt(restart["new_serving_after_start_s"], " s")} |',
            f'| restart: first new answer ran with | {first.get("operating_point")} '
            f'{_fmt(first.get("budget_ms"), " ms", 0)} (manager: {restart["manager_point"]} '
            f'{restart["manager_budget_ms"]:g} ms): '
            f'{"matches" if restart["first_new_inference_at_managers_setting"] else "differs"}'
            ' |',
            f'| restart: unanswered while no worker listened | '
            f'{restart["unanswered_while_no_worker_listened"]} of '
            f'{restart["sent_while_no_worker_listened"]} '
            f'(+{restart["unanswered_sent_before_kill"]} sent before the kill) |',
        ]
    return '\n'.join(line for line in lines if line)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=60.0, help='length of the stream')
    parser.add_argument('--rate', type=float, default=4.0, help='requests per second')
    parser.add_argument('--budget', type=float, default=80.0, help='latency budget, ms')
    parser.add_argument('--perception', action='store_true',
                        help='start perception_node too (off: the CPU stays with translation)')
    parser.add_argument('--burn', type=float, default=0.0,
                        help='seconds of a CPU burner on one core (0: none)')
    parser.add_argument('--burn-at', type=float, default=None,
                        help='when the burner starts, s into the stream (default 30 %%)')
    parser.add_argument('--restart', action='store_true',
                        help='kill -9 translation_node mid-stream and start it again at once')
    parser.add_argument('--restart-at', type=float, default=None,
                        help='when, s into the stream (default 75 %%)')
    parser.add_argument('--restart-wait', type=float, default=30.0,
                        help='longest the stream goes on past its end for the new instance '
                             'to answer')
    parser.add_argument('--drain', type=float, default=10.0,
                        help='longest wait for the last results, s')
    parser.add_argument('--startup-timeout', type=float, default=120.0)
    parser.add_argument('--stop-grace', type=float, default=10.0,
                        help='seconds from Ctrl-C to SIGKILL for the nodes at the end')
    parser.add_argument('--namespace', default='', help='namespace of every node and topic')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='JSON written here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        raw = run(args)
    except KeyboardInterrupt:
        print('interrupted: every node process stopped', file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    figures = analyse(raw, args)
    record = {'figures': figures,
              'availability': [(t - raw['t0'], u, c, a) for t, u, c, a in raw['availability']],
              'diagnostics': [(t - raw['t0'], level, message)
                              for t, level, message, *_ in raw['diagnostics']],
              'heartbeats': [(t - raw['t0'], b) for t, b in raw['heartbeats']],
              'events': raw['events'], 'commands': raw['commands'],
              'settings': raw['settings']}
    results = analyse_results(raw, args)
    record['results'] = results
    args.out.write_text(json.dumps(json_ready(record), indent=1) + '\n')
    print(table(figures))
    print(f'\nwritten: {args.out}')
    return 0


def analyse_results(raw, args):
    """Every request with what came back, for the JSON."""
    t0 = raw['t0']
    rows = []
    for rid, sent_s, _ in raw['sent']:
        row = {'id': rid, 'sent_s': sent_s}
        if rid in raw['results']:
            t, msg = raw['results'][rid]
            from dyn_dnn_ros.demo.runner import STATUS_NAMES
            row.update(received_s=t - t0, response_ms=(t - t0 - sent_s) * 1000.0,
                       status=STATUS_NAMES.get(msg.status, 'error'),
                       operating_point=msg.operating_point, threads=int(msg.threads),
                       latency_ms=float(msg.latency_ms), queue_ms=float(msg.queue_ms),
                       budget_ms=float(msg.budget_ms))
        else:
            row['status'] = 'lost'
        rows.append(row)
    return rows


if __name__ == '__main__':
    sys.exit(main())
