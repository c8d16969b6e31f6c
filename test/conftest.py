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
# pytest-xdist's workers inherit the session's domain: each takes the next ones,
# so that two workers' nodes never meet (ids above 232 do not work on Linux).
_worker = os.environ.get('PYTEST_XDIST_WORKER', '')
if _worker.startswith('gw'):
    os.environ['ROS_DOMAIN_ID'] = str((int(os.environ['ROS_DOMAIN_ID']) + 1
                                       + int(_worker[2:])) % 230)
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import pytest  # noqa: E402
from ros_harness import RosHarness  # noqa: E402


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
