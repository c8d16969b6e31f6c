"""The colcon workspace build of test_colcon_route.py, started before its test runs.

The repository is copied into ``<folder>/ws/src`` the way a ROS host checks it
out, and ``colcon build`` builds both packages there with this environment's
prefix as underlay. Building the interfaces package compiles about 150
generated C and C++ files, most of the test's time, while pytest itself keeps
about one core busy: ``conftest.py`` therefore starts the build as soon as the
session's tests are collected, at a lower priority (``NICENESS``), and the test
waits for it before checking what it built. Run on its own, the test starts it
itself.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(sys.prefix)
# Ahead of its test the build only takes CPU that the tests leave idle: below their
# priority, above a nice-19 background job's.
NICENESS = 10


def colcon_executable():
    """``colcon`` of this environment, or None where it is not installed."""
    return shutil.which('colcon', path=str(PREFIX / 'bin'))


def tracked_files():
    result = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if (ROOT / line).is_file()]


class WorkspaceBuild:
    """``colcon build`` of a copy of the repository in ``folder``/ws, in the background."""

    def __init__(self, folder, niceness=0):
        self.folder = Path(folder)
        self.workspace = self.folder / 'ws'
        # The repository as a workspace source, the way a ROS host checks it out.
        source = self.workspace / 'src' / 'dyn_dnn_ros'
        for name in tracked_files():
            if name.startswith(('data/', 'runs/')):
                continue
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
        env = dict(os.environ, AMENT_PREFIX_PATH=str(PREFIX), CMAKE_PREFIX_PATH=str(PREFIX),
                   PATH=f'{PREFIX / "bin"}:{os.environ["PATH"]}')
        # colcon does not look inside a package folder, so the nested interfaces
        # package is named as a second base path.
        command = [colcon_executable(), 'build', '--base-paths', 'src',
                   'src/dyn_dnn_ros/interfaces', '--event-handlers', 'console_cohesion-']
        if niceness and shutil.which('nice'):
            command = ['nice', '-n', str(niceness)] + command
        self.stdout_path = self.folder / 'colcon.stdout'
        self.stderr_path = self.folder / 'colcon.stderr'
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            self.process = subprocess.Popen(command, cwd=self.workspace, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            start_new_session=True)

    def wait(self, timeout=900):
        """``(returncode, stdout, stderr)`` once the build has ended; stopped after ``timeout``."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return (code, self.stdout_path.read_text(errors='replace'),
                self.stderr_path.read_text(errors='replace'))

    def stop(self):
        """End the build and every process it started (its own session)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
