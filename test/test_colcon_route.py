"""The ROS-host route: colcon builds both packages with the ROS prefix as underlay."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(sys.prefix)


def tracked_files():
    result = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if (ROOT / line).is_file()]


@pytest.mark.slow
def test_colcon_builds_and_installs_the_workspace(tmp_path):
    if shutil.which('colcon', path=str(PREFIX / 'bin')) is None:
        pytest.fail('colcon is not installed in the environment (requirements.txt has it)')
    # The repository as a workspace source, the way a ROS host checks it out.
    source = tmp_path / 'src' / 'dyn_dnn_ros'
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
    result = subprocess.run(
        [str(PREFIX / 'bin' / 'colcon'), 'build', '--base-paths', 'src',
         'src/dyn_dnn_ros/interfaces', '--event-handlers', 'console_cohesion-'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    install = tmp_path / 'install'
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
        cwd=tmp_path, capture_output=True, text=True,
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
