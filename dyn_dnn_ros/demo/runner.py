"""Runs the demo scenario against the real nodes over DDS (a ROS client, not core).

Each run brings up its own system in one process (resource monitor,
translation node, and for the dynamic run the manager), sends test-split
sentences at a steady rate, changes the budget through the manager's
service (or, for the static run, only records it on the worker), starts
and stops a real CPU-burning process, and records every result.
"""

from dataclasses import dataclass
import random
import threading
import time

from dyn_dnn_ros.demo.burner import CpuBurner
from dyn_dnn_ros.demo.metrics import ResultRecord, RunRecord
from dyn_dnn_ros.resources.cpu import allowed_cpu_count

STARTUP_AVAILABILITY_SAMPLES = 3
STATUS_NAMES = {0: 'ok', 1: 'truncated', 2: 'empty', 3: 'dropped', 4: 'error', 5: 'partial'}


@dataclass(frozen=True)
class DemoConfig:
    plan: object
    library_path: str
    sentences: tuple            # (source, reference) pairs, in sending order
    model_path: str = ''
    spm_path: str = ''
    threads: int = 2
    namespace: str = '/demo'
    monitor_rate_hz: float = 8.0  # a lost core is seen within half a request interval
    drain_s: float = 10.0       # how long to wait for the last results


def load_sentences(corpus_dir, split='test', seed=0, limit=None):
    from pathlib import Path
    corpus_dir = Path(corpus_dir)
    sources = (corpus_dir / f'{split}.en').read_text(encoding='utf-8').splitlines()
    references = (corpus_dir / f'{split}.de').read_text(encoding='utf-8').splitlines()
    if len(sources) != len(references) or not sources:
        raise ValueError(f'{corpus_dir}: {split}.en and {split}.de must be non-empty and '
                         'aligned')
    pairs = list(zip(sources, references, strict=True))
    random.Random(seed).shuffle(pairs)
    return tuple(pairs[:limit] if limit else pairs)


class _Driver:
    """The demo's own node: sends requests, records results and availability."""

    def __init__(self, node, namespace):
        from dyn_dnn_ros_interfaces.msg import (
            HardwareAvailability,
            TranslationRequest,
            TranslationResult,
        )
        from dyn_dnn_ros_interfaces.srv import SetLatencyBudget
        self.node = node
        self.lock = threading.Lock()
        self.results = {}
        self.availability = []
        self.start = time.monotonic()
        self.Request = TranslationRequest
        self.publisher = node.create_publisher(TranslationRequest,
                                               f'{namespace}/translation_requests', 1000)
        node.create_subscription(TranslationResult, f'{namespace}/translation_results',
                                 self._on_result, 1000)
        node.create_subscription(HardwareAvailability, f'{namespace}/hardware_availability',
                                 self._on_availability, 10)
        self.budget_client = node.create_client(SetLatencyBudget,
                                                f'{namespace}/set_latency_budget')
        self.SetLatencyBudget = SetLatencyBudget

    def now(self):
        return time.monotonic() - self.start

    def _on_result(self, msg):
        with self.lock:
            self.results[msg.id] = (self.now(), msg)

    def _on_availability(self, msg):
        with self.lock:
            self.availability.append((self.now(), int(msg.usable_threads),
                                      float(msg.availability)))


def run_once(mode, config, progress=None):
    """One run ('dynamic' or 'static') of the plan; returns its RunRecord."""
    import rclpy

    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.ros.spin import NodeSpinner

    if mode not in ('dynamic', 'static'):
        raise ValueError(f'mode: dynamic or static, got {mode!r}')
    library = OperatingPointLibrary.load(config.library_path)
    best = library.by_quality()[0]
    context = rclpy.Context()
    rclpy.init(context=context, args=[])
    record = RunRecord(mode)
    nodes = []
    burner = CpuBurner()
    # The nodes spin as in `dyn-dnn-ros bringup`; this thread only sends requests.
    spinner = NodeSpinner(context=context).start()
    try:
        worker, driver = _start_nodes(mode, config, best, context, spinner, nodes)
        _wait_until_up(mode, driver)
        sent = _send_plan(mode, config, driver, worker, burner, record, progress)
        burner.stop()  # the load ends with the plan, not with the last answers
        _drain(driver, len(sent), config.drain_s)
        _record_results(record, driver, sent)
        return record
    finally:
        burner.stop()
        spinner.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _static_threads(best, config):
    """The thread count (up to the demo's) where the library measured ``best`` fastest."""
    measured = {int(t): ms for t, ms in best.latency_ms.items() if int(t) <= config.threads}
    return min(measured, key=measured.get) if measured else config.threads


def _worker_values(mode, config, best):
    """The translation node's parameters for this run."""
    # The static baseline is the plain model: no manager, no deadline-aware decoding,
    # on the thread count where the library measured it fastest.
    threads = _static_threads(best, config) if mode == 'static' else config.threads
    # The worker starts with its setting (the best point, the first budget), so it
    # serves at once instead of waiting for the manager's (worker_presence).
    values = dict(library_path=str(config.library_path), threads=threads,
                  queue_depth=4, operating_point=best.name,
                  budget_ms=float(config.plan.events[0].value),
                  stop_at_deadline=mode == 'dynamic', wait_for_setting_s=0.0)
    if config.model_path:
        values['model_path'] = str(config.model_path)
    if config.spm_path:
        values['spm_path'] = str(config.spm_path)
    if best.beam is not None and best.beam.mode == 'fixed':
        values['beam_width'] = best.beam.width
    return values


def _start_nodes(mode, config, best, context, spinner, nodes):
    """Bring up the run's nodes on ``spinner``, each added to ``nodes``.

    Returns the translation node and the driver.
    """
    import rclpy
    from rclpy.parameter import Parameter

    from dyn_dnn_ros.ros.nodes.manager import ManagerNode
    from dyn_dnn_ros.ros.nodes.resource_monitor import ResourceMonitorNode
    from dyn_dnn_ros.ros.nodes.translation import TranslationNode

    def make(cls, **values):
        node = cls(context=context, namespace=config.namespace,
                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        nodes.append(spinner.add(node))
        return node

    make(ResourceMonitorNode, rate_hz=config.monitor_rate_hz)
    worker = make(TranslationNode, **_worker_values(mode, config, best))
    if mode == 'dynamic':
        make(ManagerNode, targets='translation', translation_library=str(config.library_path))
    driver_node = spinner.add(rclpy.create_node('demo_driver', context=context,
                                                start_parameter_services=False))
    nodes.append(driver_node)
    return worker, _Driver(driver_node, config.namespace)


def _wait_until_up(mode, driver, timeout_s=20):
    """Wait until the system is up, so that the clock starts on a running system.

    Up: the worker listens, the manager serves, and a few availability samples are in.
    """
    deadline = time.monotonic() + timeout_s
    while driver.publisher.get_subscription_count() == 0 or (
            mode == 'dynamic' and not driver.budget_client.service_is_ready()) or \
            len(driver.availability) < STARTUP_AVAILABILITY_SAMPLES:
        if time.monotonic() > deadline:
            raise RuntimeError(f'demo: the nodes did not come up within {timeout_s} s')
        time.sleep(0.05)


def _send_plan(mode, config, driver, worker, burner, record, progress):
    """Play the plan from now: its events and requests at the plan's rate.

    Returns ``{request id: (time sent, reference, budget in force)}``.
    """
    plan = config.plan
    driver.start = time.monotonic()
    sent = {}
    pending_events = list(plan.events)
    interval = 1.0 / plan.request_rate_hz
    index = 0
    last_progress = -1.0
    while True:
        t = driver.now()
        if t >= plan.duration_s:
            break
        while pending_events and pending_events[0].at_s <= t:
            event = pending_events.pop(0)
            record.events.append((t, event.describe()))
            _apply_event(mode, event, driver, worker, burner, record)
        if index * interval <= t:
            _send_request(mode, config, driver, index, t, sent)
            index += 1
        if progress is not None and t - last_progress >= 0.5:
            last_progress = t
            with driver.lock:
                answered = len(driver.results)
            progress(mode, t, plan.duration_s, len(sent), answered, worker.worker.setting,
                     burner.running)
        # Sleep until the next request, event or progress line: a polling
        # loop would wake up and compete for the GIL with the nodes.
        due = [index * interval, last_progress + 0.5, plan.duration_s]
        if pending_events:
            due.append(pending_events[0].at_s)
        time.sleep(max(0.0, min(due) - driver.now()))
    return sent


def _send_request(mode, config, driver, index, t, sent):
    """Publish the plan's request ``index`` (at run time ``t``) and note it in ``sent``."""
    source, reference = config.sentences[index % len(config.sentences)]
    rid = f'{mode}-{index}'
    msg = driver.Request(id=rid, text=source)
    msg.header.stamp = driver.node.get_clock().now().to_msg()
    msg.header.frame_id = 'demo'
    # The clock starts when the request is published, as the stamp says.
    sent[rid] = (driver.now(), reference, config.plan.budget_at(t))
    driver.publisher.publish(msg)


def _drain(driver, count, drain_s):
    """Wait up to ``drain_s`` for ``count`` results in all."""
    drain_until = time.monotonic() + drain_s
    while time.monotonic() < drain_until:
        with driver.lock:
            if len(driver.results) >= count:
                break
        time.sleep(0.05)


def _record_results(record, driver, sent):
    """Add the availability samples and one result per sent request (lost if none came)."""
    with driver.lock:
        results = dict(driver.results)
        record.availability = list(driver.availability)
    for rid, (t_sent, reference, budget) in sent.items():
        if rid in results:
            t_received, msg = results[rid]
            record.results.append(ResultRecord(
                rid, t_sent, t_received, STATUS_NAMES.get(msg.status, 'error'),
                msg.operating_point, float(msg.latency_ms), float(msg.queue_ms), budget,
                msg.text, reference, int(msg.threads), bool(msg.stopped_at_deadline)))
        else:
            record.results.append(ResultRecord(rid, t_sent, float('nan'), 'lost', '',
                                               float('nan'), float('nan'), budget, '',
                                               reference))


def _apply_event(mode, event, driver, worker, burner, record):
    from rclpy.parameter import Parameter
    if event.kind == 'burn_start':
        burner.start()
    elif event.kind == 'burn_stop':
        burner.stop()
    elif mode == 'dynamic':
        request = driver.SetLatencyBudget.Request(target='translation',
                                                  budget_ms=float(event.value),
                                                  min_quality=float('nan'))
        called = driver.now()
        future = driver.budget_client.call_async(request)

        def done(f, t=called, budget=event.value):
            response = f.result()
            if response is not None and response.success:
                record.budget_calls.append((t, budget, response.operating_point))
        future.add_done_callback(done)
    else:
        # The static model ignores budgets; the worker only reports the one in force.
        worker.set_parameters([Parameter('budget_ms', value=float(event.value))])


def default_threads():
    return allowed_cpu_count()
