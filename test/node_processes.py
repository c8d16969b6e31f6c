"""Start this package's nodes as separate processes, the way the launch file does."""

import os
from pathlib import Path
import signal
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SYSTEM_PARAMS = ROOT / 'config' / 'dyn_dnn_ros.yaml'
# The executable of each node, as launch/bringup.launch.py names them.
EXECUTABLES = {'resource_monitor': 'resource_monitor', 'translation_node': 'translation_node',
               'perception_node': 'perception_node', 'dnn_manager': 'dnn_manager'}
WORKERS = ('translation_node', 'perception_node')
# Message field types checked at construction, as a strict ROS host may run them.
STRICT_ENV = {'ROS_PYTHON_CHECK_FIELDS': '1'}


def node_command(name, params=SYSTEM_PARAMS, extra=()):
    """``<exe> --ros-args -r __node:=<name> --params-file <file>`` (+ device for workers)."""
    command = [str(BIN / EXECUTABLES[name]), '--ros-args', '-r', f'__node:={name}',
               '--params-file', str(params)]
    if name in WORKERS:
        command += ['-p', 'device:=cpu']
    return command + list(extra)


class NodeProcess:
    """One node in its own process; stdout and stderr kept together for assertions."""

    def __init__(self, name, command, env=None):
        self.name = name
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=dict(os.environ, **(env or {})))
        self.output = ''

    def interrupt(self):
        """Ctrl-C, as a terminal or ``ros2 launch`` sends it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout=30.0):
        """Exit code once the process ended; its output in ``self.output``."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            self.output += out
            raise
        self.output += out
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start_nodes(names, env=None, **command_kwargs):
    return [NodeProcess(name, node_command(name, **command_kwargs), env) for name in names]
