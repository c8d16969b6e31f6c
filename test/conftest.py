"""Fixtures that run real nodes on real Fast DDS.

Each test session gets its own ROS domain (random id, discovery kept on
localhost), so parallel sessions and other ROS systems on the host do not
see each other. Nodes spin on ``NodeSpinner``, the executor of bringup, the
demo and the node processes, in a background thread; helpers wait for
messages, conditions and service responses with timeouts instead of
sleeping.
"""

import os
import random

# Before rclpy is imported anywhere: the domain and discovery range are read
# when the first context starts.
os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 200)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

from pathlib import Path  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from colcon_workspace import NICENESS, WorkspaceBuild, colcon_executable  # noqa: E402
import pytest  # noqa: E402
from ros_harness import RosHarness  # noqa: E402

# The colcon build of test_colcon_route.py, started once the tests are collected.
_workspace_builds = []


def pytest_configure(config):
    config.addinivalue_line('markers', 'ros: uses real ROS 2 nodes over DDS')
    config.addinivalue_line('markers', 'slow: takes more than ~20 s (colcon builds, training)')


@pytest.fixture(scope='session')
def ros():
    harness = RosHarness()
    yield harness
    harness.shutdown()


@pytest.fixture
def probe(ros):
    """A helper node; the test fails if any node callback raised while it ran."""
    errors_before = len(ros.callback_errors)
    node = ros.probe_node()
    yield node
    ros.remove(node)
    raised = ros.callback_errors[errors_before:]
    assert not raised, 'a node callback raised:\n' + '\n'.join(raised)


def pytest_collection_finish(session):
    """Start test_colcon_route.py's build now, beside the tests before it.

    See colcon_workspace.py; the build runs niced and is stopped at the session's end.
    """
    if session.config.option.collectonly or colcon_executable() is None:
        return
    if any(Path(str(item.fspath)).name == 'test_colcon_route.py' for item in session.items):
        folder = tempfile.mkdtemp(prefix='dyn_dnn_ros-colcon-')
        _workspace_builds.append(WorkspaceBuild(folder, niceness=NICENESS))


def pytest_sessionfinish(session):
    while _workspace_builds:   # still building if its test did not run to the end
        build = _workspace_builds.pop()
        build.stop()
        shutil.rmtree(build.folder, ignore_errors=True)


@pytest.fixture(scope='session')
def workspace_build(tmp_path_factory):
    """The colcon build started at collection, or one started now (None without colcon)."""
    if _workspace_builds:
        return _workspace_builds[0]
    if colcon_executable() is None:
        return None
    return WorkspaceBuild(tmp_path_factory.mktemp('colcon'))
