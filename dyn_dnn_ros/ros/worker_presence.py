"""A worker's presence: announcements on ``worker_heartbeat`` and when it starts serving.

Each worker node publishes a ``WorkerHeartbeat`` at start, after every change
of its setting, and every ``period_s``. The QoS is reliable and transient
local with depth 1, so a manager or monitor that starts later still gets each
worker's last one; a new ``instance_id`` tells the manager that the worker
restarted with its defaults, and the manager sets it again at once.

A restarted worker should not translate with its defaults while the manager's
setting is on its way: it subscribes to requests only once a parameter set
has arrived, or ``wait_s`` after start when none does (no manager, or no
budget set). Requests published before a worker subscribes are not delivered
to it; the announcement's ``serving`` flag tells clients when it listens.
"""

import math
import os
import socket
import time
import uuid

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dyn_dnn_ros.ros.params import ParameterSpec
from dyn_dnn_ros.ros.spin import publish_while_running
from dyn_dnn_ros_interfaces.msg import WorkerHeartbeat

HEARTBEAT_TOPIC = 'worker_heartbeat'
HEARTBEAT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
HOSTNAME = socket.gethostname()
# The worker parameter that sets ``wait_s``.
WAIT_FOR_SETTING = ParameterSpec(
    'wait_for_setting_s', 2.0, 'after start, subscribe to input once a parameter set (the '
    'manager\'s setting) arrived, or after this long (0 = at once)', float_range=(0.0, 60.0),
    read_only=True)
# How often a waiting worker checks whether its wait for a setting is over.
GATE_POLL_S = 0.05


class WorkerPresence:
    """Announces a worker and opens its request subscriptions at the right time."""

    def __init__(self, node, target, state, subscribe, wait_s=2.0, period_s=0.5):
        """``state()`` -> (operating_point, threads, budget_ms); ``subscribe()`` opens input."""
        self.node = node
        self.target = target
        self.state = state
        self.period_s = period_s
        self.instance_id = uuid.uuid4().hex
        self.serving = False
        self._subscribe = subscribe
        self._serve_at = time.monotonic() + wait_s
        self.publisher = node.create_publisher(WorkerHeartbeat, HEARTBEAT_TOPIC, HEARTBEAT_QOS)
        self.timer = node.create_timer(period_s, self.publish)
        self._gate = None
        if wait_s > 0:
            self._gate = node.create_timer(GATE_POLL_S, self._serve_when_due)
        else:
            self.serve()
        self.publish()

    def setting_changed(self):
        """A parameter set arrived: serve from now on, and say what is in force."""
        self.serve()
        self.publish()

    def serve(self):
        if self.serving:
            return
        if self._gate is not None:
            self.node.destroy_timer(self._gate)
            self._gate = None
        self._subscribe()
        self.serving = True
        self.publish()

    def _serve_when_due(self):
        if time.monotonic() >= self._serve_at:
            self.serve()

    def publish(self):
        point, threads, budget_ms = self.state()
        msg = WorkerHeartbeat(node=self.node.get_fully_qualified_name(),
                              instance_id=self.instance_id, pid=os.getpid(),
                              target=self.target, operating_point=point, threads=threads,
                              budget_ms=float(budget_ms) if budget_ms > 0 else math.nan,
                              serving=self.serving, period_s=float(self.period_s))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = HOSTNAME
        publish_while_running(self.node, self.publisher, msg)
