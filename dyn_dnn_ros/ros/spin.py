"""The executable entry of a node: start, spin, shut down cleanly."""

import sys

import rclpy
from rclpy.executors import ExternalShutdownException


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
