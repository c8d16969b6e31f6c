"""Spinning nodes, and the executable entry of a node: start, spin, stop on Ctrl-C or SIGTERM.

``NodeSpinner`` is the one executor set-up of the package: node processes,
``dyn-dnn-ros bringup``, the demo and the test harness spin with it.

rclpy's own signal handler shuts the context down the moment Ctrl-C arrives,
while a worker thread may still be publishing a result: that publish fails
("publisher's context is invalid") and the process aborts. Here the signal
only asks the spin loop to stop; the nodes' inference threads are then
stopped and joined (queued requests answered as dropped while the publishers
still work), and only after that are the nodes destroyed and the context shut
down. ``ros2 launch`` sends SIGINT, and SIGTERM after a grace period;
systemd and container runtimes send SIGTERM: both stop the same way.
"""

import math
import signal
import sys
import threading
import time
import traceback

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import (
    ConditionReachedException,
    ExternalShutdownException,
    ShutdownException,
    SingleThreadedExecutor,
    TimeoutException,
)
from rclpy.logging import get_logger
from rclpy.signals import SignalHandlerOptions

# How long one turn waits for work: the longest a stop request waits.
STOP_POLL_S = 0.1
# The longest ``NodeSpinner.remove`` waits for a callback of the node to return.
REMOVE_WAIT_S = 5.0


class NodeSpinner:
    """Every node of a process on one ``SingleThreadedExecutor``.

    Node processes, ``dyn-dnn-ros bringup``, the demo and the test harness
    all spin through this class, so the tests run the path users run. One
    thread is enough: the nodes use no callback groups, their callbacks only
    decode a message and queue a job, and inference runs on threads of its
    own. (rclpy's ``MultiThreadedExecutor`` in the pinned Kilted release has
    ros2/rclpy#1452: a callback queued in its pool is handed out again, so
    its spinning thread loops without waiting and starves the inference
    threads of the GIL.)

    A callback that raises does not stop the others: the exception is logged
    with its traceback on the node's logger, passed to ``on_callback_error``
    (node name, traceback text) when given, and spinning goes on.
    """

    def __init__(self, context=None, on_callback_error=None):
        self.executor = SingleThreadedExecutor(context=context)
        self.context = self.executor.context
        self.on_callback_error = on_callback_error
        self._thread = None            # the thread of ``start``
        self._spinning_thread = None   # the thread in ``spin``
        # The node whose callback runs now; guarded so that a removal either
        # comes before the spinner picks a callback or waits for it to return.
        self._running_node = None
        self._running_changed = threading.Condition()

    def add(self, node):
        self.executor.add_node(node)
        return node

    def remove(self, node):
        """Stop spinning ``node`` and destroy it, once a callback of it in progress returned."""
        with self._running_changed:
            self.executor.remove_node(node)
            if threading.current_thread() is not self._spinning_thread:
                self._running_changed.wait_for(lambda: self._running_node is not node,
                                               timeout=REMOVE_WAIT_S)
        node.destroy_node()

    def spin_once(self, timeout_sec=STOP_POLL_S):
        """Run at most one ready callback; raises ShutdownException once shut down."""
        try:
            handler, _entity, node = self.executor.wait_for_ready_callbacks(
                timeout_sec=timeout_sec)
        except (TimeoutException, ConditionReachedException):
            return
        except InvalidHandle:
            # An entity was destroyed while its wait set was read; the next
            # wait is built without it.
            return
        with self._running_changed:
            if node is not None and node not in self.executor.get_nodes():
                handler.cancel()   # removed since the wait: its handles may be gone
                return
            self._running_node = node
        try:
            handler()
        finally:
            with self._running_changed:
                self._running_node = None
                self._running_changed.notify_all()
        error = handler.exception()
        if error is not None:
            self._report(node, error)

    def spin(self, until=lambda: False, seconds=math.inf):
        """Spin until ``until()`` is true, ``seconds`` passed, or the context or executor ends."""
        deadline = time.monotonic() + seconds
        self._spinning_thread = threading.current_thread()
        try:
            while self.context.ok() and not until() and time.monotonic() < deadline:
                self.spin_once(min(STOP_POLL_S, max(0.0, deadline - time.monotonic())))
        except (ShutdownException, ExternalShutdownException):
            pass
        finally:
            self._spinning_thread = None

    def start(self):
        """Spin on a daemon thread until ``shutdown``."""
        self._thread = threading.Thread(target=self.spin, name='node_spinner', daemon=True)
        self._thread.start()
        return self

    def shutdown(self, timeout_sec=2.0):
        """Stop spinning; the nodes are left to the caller."""
        self.executor.shutdown(timeout_sec=timeout_sec)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_sec)

    def _report(self, node, error):
        text = ''.join(traceback.format_exception(error))
        name = node.get_name() if node is not None else 'executor'
        logger = node.get_logger() if node is not None else get_logger(name)
        logger.error(f'a callback raised; the other callbacks go on:\n{text}')
        if self.on_callback_error is not None:
            self.on_callback_error(name, text)


def init_without_signal_handlers(args=None):
    """``rclpy.init`` that leaves SIGINT and SIGTERM to ``StopRequest``."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


class StopRequest:
    """Set by the first SIGINT or SIGTERM; a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._event = threading.Event()
        self._previous = {}

    def __enter__(self):
        for number in self.SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False

    def _on_signal(self, number, frame):
        if self._event.is_set() and number == signal.SIGINT:
            raise KeyboardInterrupt
        self._event.set()

    def __bool__(self):
        return self._event.is_set()


def stop_work(nodes):
    """Stop and join the nodes' inference threads while the context is still valid."""
    for node in nodes:
        stop = getattr(node, 'stop_work', None)
        if stop is not None:
            stop()


def publish_while_running(node, publisher, msg):
    """Publish unless the context is already shut down; then drop ``msg`` silently."""
    if not node.context.ok():
        return False
    try:
        publisher.publish(msg)
    except Exception:  # the context went down between the check and the publish
        if node.context.ok():
            raise
        return False
    return True


def run_node(factory, node_name, args=None):
    """Spin the node ``factory()`` builds; a refused configuration exits 2 with one line."""
    init_without_signal_handlers(args)
    with StopRequest() as stop:   # a Ctrl-C while the model loads stops it cleanly too
        try:
            node = factory()
        except (ValueError, KeyError, OSError) as error:
            print(f'{node_name}: {error}', file=sys.stderr)
            rclpy.try_shutdown()
            return 2
        spinner = NodeSpinner()
        spinner.add(node)
        try:
            spinner.spin(until=stop.__bool__)
        except KeyboardInterrupt:
            pass
        finally:
            stop_work([node])
            spinner.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
    return 0
