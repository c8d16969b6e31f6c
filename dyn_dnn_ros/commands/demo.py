"""``dyn-dnn-ros demo``: the system demo.

For now (until the translation runtime lands) it starts the resource monitor
node in this process, replays a short scenario on top of this machine's real
readings, and prints what a subscriber receives over DDS.
"""

import math
import os
import threading
import time

DEFAULT_SCENARIO = 'demo_core_drop'


def add_arguments(parser):
    parser.add_argument('--seconds', type=float, default=10.0,
                        help='how long to run (default: %(default)s)')
    parser.add_argument('--scenario', default=DEFAULT_SCENARIO,
                        help='scenario file or shipped name ("" for none; '
                             'default: %(default)s)')
    parser.add_argument('--rate', type=float, default=2.0, help='messages per second')


def _fmt(value, spec='.2f'):
    return '-' if math.isnan(value) else format(value, spec)


def run(args):
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        print(f'demo: --seconds must be a positive number, got {args.seconds}')
        return 2
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from dyn_dnn_ros.nodes.resource_monitor import ResourceMonitorNode
    from dyn_dnn_ros_interfaces.msg import HardwareAvailability

    rclpy.init()
    try:
        monitor = ResourceMonitorNode(parameter_overrides=[
            Parameter('scenario', value=args.scenario), Parameter('rate_hz', value=args.rate)])
    except ValueError as error:
        print(f'demo: {error}')
        rclpy.try_shutdown()
        return 2
    listener = rclpy.create_node('demo_listener')
    warned = set()

    def on_availability(msg):
        print(f'{time.monotonic() - started:6.1f}s  usable CPUs {_fmt(msg.usable_cpus):>5}  '
              f'threads {msg.usable_threads}  util {_fmt(msg.cpu_utilization_total)}  '
              f'mem {_fmt(msg.memory_available_mb / 1024, ".1f")} GB  '
              f'availability {_fmt(msg.availability)}  '
              f'overrides [{", ".join(msg.overrides)}]', flush=True)

    def on_diagnostics(array):
        for status in array.status:
            if status.level != b'\x00' and status.name not in warned:
                warned.add(status.name)
                print(f'  diagnostics {status.name}: {status.message}', flush=True)

    listener.create_subscription(HardwareAvailability, 'hardware_availability',
                                 on_availability, 10)
    listener.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    executor = MultiThreadedExecutor()
    executor.add_node(monitor)
    executor.add_node(listener)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    started = time.monotonic()
    print(f'resource monitor over DDS for {args.seconds:g} s, scenario '
          f'{args.scenario or "(none)"}; ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}')
    spinner.start()
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown(timeout_sec=2.0)
        monitor.destroy_node()
        listener.destroy_node()
        rclpy.try_shutdown()
    return 0
