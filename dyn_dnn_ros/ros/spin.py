"""The executable entry of a node: start, spin, shut down cleanly."""

import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException

# rclpy's MultiThreadedExecutor (ros2/rclpy#1452, fixed upstream after the Kilted
# release pinned here) yields a task again while it waits in the thread pool
# unstarted, so spin_once returns at once and the spinning thread can keep the GIL
# from the workers: on a 2-core VM a 20 Hz timer beside a subscription fired about
# 2 times a second. Sleeping this long after each turn lets a worker start it.
WORKER_TURN_S = 0.0005


def spin_once_sharing(executor, timeout_sec):
    """``executor.spin_once(timeout_sec)``, then a pause that lets its worker threads run."""
    executor.spin_once(timeout_sec=timeout_sec)
    time.sleep(WORKER_TURN_S)


def run_node(factory, node_name, args=None):
    """Spin the node ``factory()`` builds; a refused configuration exits 2 with one line."""
    rclpy.init(args=args)
    try:
        node = factory()
    except (ValueError, KeyError, OSError) as error:
        print(f'{node_name}: {error}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
