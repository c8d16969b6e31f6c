"""The core (models, decoding, search, latency, operating points, resources) imports no ROS.

Run in a fresh interpreter where importing rclpy or any ROS message package
fails, as on a machine that has only the Python dependencies.
"""

import subprocess
import sys
import textwrap

# Everything under these imports ROS on purpose: the adapters, the CLI's
# ROS commands, the demo that drives the nodes.
ROS_LAYERS = ('dyn_dnn_ros.ros', 'dyn_dnn_ros.commands', 'dyn_dnn_ros.demo', 'dyn_dnn_ros.cli')
BLOCKED = ('rclpy', 'rcl_interfaces', 'std_msgs', 'sensor_msgs', 'diagnostic_msgs',
           'builtin_interfaces', 'dyn_dnn_ros_interfaces', 'launch', 'launch_ros')


def test_every_core_module_imports_with_ros_blocked():
    script = textwrap.dedent(f'''
        import importlib, pkgutil, sys
        blocked = {BLOCKED!r}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in blocked:
                    raise ImportError(f'{{name}} is ROS: the core must not import it')
                return None

        sys.meta_path.insert(0, Block())
        import dyn_dnn_ros
        skipped = {ROS_LAYERS!r}
        imported = []
        for info in pkgutil.walk_packages(dyn_dnn_ros.__path__, 'dyn_dnn_ros.'):
            if info.name.startswith(skipped):
                continue
            importlib.import_module(info.name)
            imported.append(info.name)
        print(len(imported))
    ''')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # The core is most of the package: translation, its design pipeline,
    # perception, resources, the run-time core and the library format.
    assert int(result.stdout.split()[-1]) >= 50


def test_the_ros_layers_are_where_the_layout_says():
    import dyn_dnn_ros.ros.nodes.manager as manager
    import dyn_dnn_ros.runtime.controller as controller
    assert 'rclpy' in sys.modules and manager.TargetController is controller.TargetController
