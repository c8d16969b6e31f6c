"""The nodes as separate processes, started the way launch/bringup.launch.py starts them.

``<exe> --ros-args -r __node:=<name> --params-file config/dyn_dnn_ros.yaml``,
with ``-p device:=cpu`` for the workers. Each process writes its output to a
log file (a pipe nobody reads would stall a node once it filled up) and runs
in its own process group, so a Ctrl-C at the terminal reaches the driver alone,
which then stops its nodes in order: SIGINT, and SIGKILL after a grace period.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from dyn_dnn_ros.share import config_path

# The executable of each node, as launch/bringup.launch.py names them.
EXECUTABLES = {'resource_monitor': 'resource_monitor', 'translation_node': 'translation_node',
               'perception_node': 'perception_node', 'dnn_manager': 'dnn_manager'}
WORKERS = ('translation_node', 'perception_node')


def executable(name):
    """The entry point beside this interpreter (a venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / EXECUTABLES[name]
    if beside.is_file():
        return str(beside)
    found = shutil.which(EXECUTABLES[name])
    if found is None:
        raise FileNotFoundError(f'{EXECUTABLES[name]}: not installed beside {sys.executable} '
                                'nor on PATH (pip install -e . installs the node entry points)')
    return found


def node_command(name, params=None, namespace='', device='cpu', extra=()):
    """The command line of node ``name`` as the launch file runs it."""
    params = params or config_path('dyn_dnn_ros.yaml')
    command = [executable(name), '--ros-args', '-r', f'__node:={name}',
               '--params-file', str(params)]
    if namespace:
        command += ['-r', f'__ns:={namespace}']
    if name in WORKERS:
        command += ['-p', f'device:={device}']
    return command + list(extra)


class NodeProcess:
    """One node in its own process, its output in ``log_path``."""

    def __init__(self, name, command, log_path, env=None):
        self.name = name
        self.command = list(command)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, 'wb') as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, process_group=0,
                                         env=dict(os.environ, **(env or {})))

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc.poll() is None

    def kill9(self):
        """SIGKILL: the process ends at once, with no chance to answer or say goodbye."""
        if self.running:
            self.proc.kill()
        self.proc.wait()

    def interrupt(self):
        if self.running:
            self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout=30.0):
        """The exit code once the process has ended; SIGKILL after ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    def output_tail(self, chars=2000):
        try:
            return self.log_path.read_text(errors='replace')[-chars:]
        except OSError:
            return ''


def stop_all(processes, grace_s=10.0):
    """Ctrl-C to every process, SIGKILL to those still running after ``grace_s``.

    Returns {name: exit code}; never raises, so it is safe in a ``finally``.
    """
    for process in processes:
        try:
            process.interrupt()
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    codes = {}
    for process in processes:
        try:
            process.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()
        codes[f'{process.name}:{process.pid}'] = process.proc.returncode
    return codes
