"""``dyn-dnn-ros bringup``: the whole system in one process.

All nodes share one single-threaded executor, ``NodeSpinner`` (messages
between them still go through the ROS middleware); a callback that raises is
logged with its traceback and the nodes go on. Parameters come from
``ros__parameters`` YAML files, exactly as ``ros2 launch`` would pass them;
on a ROS host ``launch/bringup.launch.py`` starts the same nodes as separate
processes.
"""

import math
import os
import sys

NODES = ('resource_monitor', 'translation_node', 'perception_node', 'dnn_manager')


def add_arguments(parser):
    parser.add_argument('--params-file', action='append', default=None, metavar='YAML',
                        help='ros__parameters file (repeatable; default: '
                             'config/dyn_dnn_ros.yaml)')
    parser.add_argument('--nodes', default=','.join(NODES),
                        help='comma-separated nodes to start (default: %(default)s)')
    parser.add_argument('--namespace', default='', help='namespace for every node')
    parser.add_argument('--device', choices=('cpu', 'cuda', 'auto'),
                        help='device of the worker nodes (overrides the files)')
    parser.add_argument('--scenario', help='resource scenario for the monitor')
    parser.add_argument('--seconds', type=float, default=0.0,
                        help='stop after this long (0 = until Ctrl-C)')
    parser.add_argument('--fastdds-profile', default=None, metavar='XML',
                        help='Fast DDS profile to load (FASTDDS_DEFAULT_PROFILES_FILE); default: '
                             'config/fastdds/large_images.xml unless the environment sets '
                             "FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS; '' = "
                             'leave the environment as it is')


def create_nodes(names, context=None, namespace='', overrides=None):
    """Instantiate the named nodes; a node that cannot start is reported, not fatal."""
    from dyn_dnn_ros.ros.nodes.manager import ManagerNode
    from dyn_dnn_ros.ros.nodes.resource_monitor import ResourceMonitorNode
    from dyn_dnn_ros.ros.nodes.translation import TranslationNode
    factories = {'resource_monitor': ResourceMonitorNode, 'translation_node': TranslationNode,
                 'dnn_manager': ManagerNode}
    try:
        from dyn_dnn_ros.ros.nodes.perception import PerceptionNode
        factories['perception_node'] = PerceptionNode
    except ImportError:
        pass
    nodes, failures = [], {}
    for name in names:
        if name not in factories:
            failures[name] = 'not available in this installation' if name in NODES \
                else f'unknown node; known: {", ".join(NODES)}'
            continue
        try:
            nodes.append(factories[name](context=context, namespace=namespace,
                                         parameter_overrides=(overrides or {}).get(name, [])))
        except (ValueError, KeyError, OSError) as error:
            failures[name] = str(error)
    return nodes, failures


def apply_transport_profile(profile=None, environ=None):
    """Point Fast DDS at a transport profile; must run before the first ROS context starts.

    ``profile`` None: the shipped large-image transports, unless ``environ``
    already sets FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS
    (the user's setting wins); '': nothing; a path: that file. Returns the
    variables set.
    """
    from dyn_dnn_ros.ros.qos import describe_transports, transport_environment
    environ = os.environ if environ is None else environ
    added = transport_environment(environ, profile)
    environ.update(added)
    for path in added.values():
        if not os.path.isfile(path):
            print(f'bringup: Fast DDS profile not found: {path}', file=sys.stderr)
    print(f'bringup: Fast DDS transports: {describe_transports(environ)}', flush=True)
    return added


def run(args):
    apply_transport_profile(getattr(args, 'fastdds_profile', None))
    from dyn_dnn_ros.share import config_path
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    import rclpy
    from rclpy.parameter import Parameter

    from dyn_dnn_ros.ros.spin import (
        NodeSpinner,
        StopRequest,
        init_without_signal_handlers,
        stop_work,
    )

    files = args.params_file or [str(config_path('dyn_dnn_ros.yaml'))]
    for path in files:
        if not os.path.isfile(path):
            print(f'bringup: parameter file not found: {path}', file=sys.stderr)
            return 2
    ros_args = ['--ros-args']
    for path in files:
        ros_args += ['--params-file', path]
    overrides = {}
    if args.device:
        for name in ('translation_node', 'perception_node'):
            overrides[name] = [Parameter('device', value=args.device)]
    if args.scenario is not None:
        overrides['resource_monitor'] = [Parameter('scenario', value=args.scenario)]
    names = [n.strip() for n in args.nodes.split(',') if n.strip()]

    init_without_signal_handlers(ros_args)
    with StopRequest() as stop:   # a Ctrl-C while the models load stops cleanly too
        nodes, failures = create_nodes(names, namespace=args.namespace, overrides=overrides)
        for name, reason in failures.items():
            print(f'bringup: {name} not started: {reason}', file=sys.stderr)
        if not nodes:
            rclpy.try_shutdown()
            return 2
        spinner = NodeSpinner()
        for node in nodes:
            spinner.add(node)
        print(f'bringup: {", ".join(n.get_name() for n in nodes)} running '
              f'(ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}); Ctrl-C to stop',
              flush=True)
        try:
            spinner.spin(until=stop.__bool__,
                         seconds=args.seconds if args.seconds > 0 else math.inf)
        except KeyboardInterrupt:
            pass
        finally:
            # Inference threads first, while their results can still be published.
            stop_work(nodes)
            spinner.shutdown()
            for node in nodes:
                node.destroy_node()
            rclpy.try_shutdown()
    return 0 if not failures else 1
