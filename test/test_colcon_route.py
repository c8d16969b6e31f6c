"""The ROS-host route: colcon builds both packages with the ROS prefix as underlay.

The build (colcon_workspace.py) starts when the session's tests are collected and
runs beside the tests before this one; the test waits for it and checks the result.
"""

import os
from pathlib import Path
import subprocess
import sys

from colcon_workspace import PREFIX, colcon_executable
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_colcon_builds_and_installs_the_workspace(workspace_build):
    if colcon_executable() is None:
        pytest.fail('colcon is not installed in the environment (requirements.txt has it)')
    returncode, stdout, stderr = workspace_build.wait()
    assert returncode == 0, stdout[-4000:] + stderr[-4000:]
    workspace = workspace_build.workspace
    install = workspace / 'install'
    assert (install / 'dyn_dnn_ros' / 'lib' / 'dyn_dnn_ros' / 'resource_monitor').is_file()
    assert (install / 'dyn_dnn_ros' / 'lib' / 'dyn_dnn_ros' / 'dyn-dnn-ros').is_file()
    share = install / 'dyn_dnn_ros' / 'share' / 'dyn_dnn_ros'
    assert (share / 'package.xml').is_file()
    assert sorted(p.name for p in (share / 'launch').glob('*.py')) == \
        sorted(p.name for p in (ROOT / 'launch').glob('*.py'))
    assert {p.name for p in (ROOT / 'config').glob('*.yaml')} <= \
        {p.name for p in (share / 'config').glob('*.yaml')}
    assert {p.name for p in (ROOT / 'config' / 'generated').glob('*.yaml')} <= \
        {p.name for p in (share / 'config' / 'generated').glob('*.yaml')}
    index = install / 'dyn_dnn_ros' / 'share' / 'ament_index' / 'resource_index' / 'packages'
    assert (index / 'dyn_dnn_ros').is_file()

    # The installed interfaces and package import from the install space alone.
    site = 'lib/python3.11/site-packages'
    check = subprocess.run(
        [sys.executable, '-c',
         'import dyn_dnn_ros_interfaces.msg as m, dyn_dnn_ros.share as s;'
         'print(m.HardwareAvailability().__class__.__name__, s.share_dir(),'
         's.library_path("translation", "cpu").is_file())'],
        cwd=workspace, capture_output=True, text=True,
        env=dict(os.environ,
                 PYTHONPATH=f'{install / "dyn_dnn_ros_interfaces" / site}:'
                            f'{install / "dyn_dnn_ros" / site}',
                 AMENT_PREFIX_PATH=f'{install / "dyn_dnn_ros"}:{PREFIX}',
                 LD_LIBRARY_PATH=f'{install / "dyn_dnn_ros_interfaces" / "lib"}:'
                                 f'{os.environ.get("LD_LIBRARY_PATH", "")}'))
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[0] == 'HardwareAvailability'
    assert Path(check.stdout.split()[1]) == share
    assert check.stdout.split()[2] == 'True'   # the default library, in config/generated
