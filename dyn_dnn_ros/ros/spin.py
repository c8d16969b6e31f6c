"""The executable entry of a node: start, spin, and stop cleanly on Ctrl-C or SIGTERM.

rclpy's own signal handler shuts the context down the moment Ctrl-C arrives,
while a worker thread may still be publishing a result: that publish fails
("publisher's context is invalid") and the process aborts. Here the signal
only asks the spin loop to stop; the nodes' inference threads are then
stopped and joined (queued requests answered as dropped while the publishers
still work), and only after that are the nodes destroyed and the context shut
down. ``ros2 launch`` sends SIGINT, and SIGTERM after a grace period;
systemd and container runtimes send SIGTERM: both stop the same way.
"""

import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

# rclpy's MultiThreadedExecutor (ros2/rclpy#1452, fixed upstream after the Kilted
# release pinned here) yields a task again while it waits in the thread pool
# unstarted, so spin_once returns at once and the spinning thread can keep the GIL
# from the workers, and timers fire far below their rate (docs/results.md,
# "Executor pause"). Sleeping this long after each turn lets a worker start it.
WORKER_TURN_S = 0.0005
# How often the spin loop looks at the stop request: the longest a signal waits.
STOP_POLL_S = 0.1


def spin_once_sharing(executor, timeout_sec):
    """``executor.spin_once(timeout_sec)``, then a pause that lets its worker threads run."""
    executor.spin_once(timeout_sec=timeout_sec)
    time.sleep(WORKER_TURN_S)


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
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            while not stop and rclpy.ok():
                executor.spin_once(timeout_sec=STOP_POLL_S)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            stop_work([node])
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
    return 0
