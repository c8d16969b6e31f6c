"""Resource monitor node: publishes what hardware the workers can use right now.

Publishes ``dyn_dnn_ros_interfaces/HardwareAvailability`` on
``hardware_availability`` at ``rate_hz``, from the real readers of
``dyn_dnn_ros.resources``, optionally with a scenario's timed overrides on top
(``scenario`` parameter: a YAML path, or a name under config/scenarios).
Missing readers are reported once in the log and as WARN on /diagnostics.

The workers' own CPU use is not load from other programs: the monitor
subscribes ``worker_heartbeat`` and counts the processes of the workers on
this host as its own, so availability is the same whether the nodes run in
one process or each in its own.
"""

from pathlib import Path
import sys
import time

from rclpy.node import Node

from dyn_dnn_ros.resources.sampler import ResourceSampler, SamplerConfig
from dyn_dnn_ros.resources.scenario import Scenario
from dyn_dnn_ros.ros.diagnostics import ERROR, OK, WARN, Updater, guarded, text
from dyn_dnn_ros.ros.params import ParameterSpec, ValidatedParameters
from dyn_dnn_ros.ros.spin import run_node
from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS, HEARTBEAT_TOPIC
from dyn_dnn_ros.share import config_path
from dyn_dnn_ros_interfaces.msg import HardwareAvailability, WorkerHeartbeat

NODE_NAME = 'resource_monitor'
# A worker silent for this many of its announcement periods has ended.
WORKER_GONE_PERIODS = 5.0


def resolve_scenario(value):
    """A scenario path, or a bare name of a file shipped in config/scenarios."""
    path = Path(value).expanduser()
    try:
        is_file = path.is_file()
    except OSError:      # e.g. a name too long: the loader says so, naming it
        is_file = True
    if is_file or path.is_absolute() or path.suffix in ('.yaml', '.yml'):
        return path
    return config_path('scenarios', f'{value}.yaml')


def load_scenario(value):
    """The Scenario named by a parameter value ('' for none); ValueError names file and field."""
    return Scenario.load(resolve_scenario(value)) if value else None


class ResourceMonitorNode(Node):

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self._pending_scenario = None
        self.params = ValidatedParameters(self, [
            ParameterSpec('rate_hz', 2.0, 'availability messages per second',
                          float_range=(0.01, 100.0)),
            ParameterSpec('scenario', '', 'YAML file (or name in config/scenarios) of timed '
                          'resource overrides replayed on top of real readings; "" for none',
                          check=self._check_scenario),
            ParameterSpec('frame_id', '', 'header frame_id of the messages ("" = hostname)'),
        ], apply=self._apply)
        problems = self.params.startup_problems()
        if problems:
            raise ValueError('; '.join(problems))
        self.sampler = ResourceSampler(SamplerConfig(), scenario=self._take_pending_scenario())
        self.publisher = self.create_publisher(HardwareAvailability, 'hardware_availability', 10)
        self.published = 0
        self.last_snapshot = None
        self.last_error = ''
        self.workers = {}   # node name -> (pid, monotonic time it is forgotten)
        self.create_subscription(WorkerHeartbeat, HEARTBEAT_TOPIC, self._on_heartbeat,
                                 HEARTBEAT_QOS)

        self.updater = Updater(self)
        self.updater.setHardwareID(self.sampler.hostname)
        self.updater.add('readers', guarded(self._diagnose_readers))
        self.updater.add('availability', guarded(self._diagnose_availability))
        missing = self._missing_readers()
        if missing:
            self.get_logger().warning(
                'readers unavailable on this host (reported as NaN/empty): ' +
                ', '.join(f'{name} ({why})' if why else name for name, why in missing))
        self.timer = self.create_timer(1.0 / self.params.value('rate_hz'), self._publish)

    # -- parameters ---------------------------------------------------------
    def _check_scenario(self, value):
        # The reason names the file and its first problem, quoting at most a
        # short excerpt of it (never its contents: think of the password file).
        try:
            self._pending_scenario = load_scenario(value)
        except (ValueError, OSError) as error:
            return str(error)
        return None

    def _take_pending_scenario(self):
        scenario, self._pending_scenario = self._pending_scenario, None
        return scenario

    def _apply(self, changed):
        if 'scenario' in changed:
            # The scenario's clock starts when it is set.
            self.sampler.scenario = self._take_pending_scenario()
            self.sampler.start = time.monotonic()
            self.get_logger().info(f'scenario set to {changed["scenario"]!r}')
        if 'rate_hz' in changed:
            self.destroy_timer(self.timer)
            self.timer = self.create_timer(1.0 / changed['rate_hz'], self._publish)

    # -- workers --------------------------------------------------------------
    def _on_heartbeat(self, msg):
        if msg.header.frame_id != self.sampler.hostname or msg.pid <= 0:
            return  # a worker on another host loads that host, not this one
        period = msg.period_s if 0 < msg.period_s < 60 else 1.0
        # Taken up by the next sample: only the timer's thread touches the sampler.
        self.workers[msg.node] = (msg.pid, time.monotonic() + WORKER_GONE_PERIODS * period)

    def _update_worker_pids(self):
        now = time.monotonic()
        self.workers = {node: seen for node, seen in self.workers.items() if seen[1] > now}
        self.sampler.set_worker_pids(pid for pid, _ in self.workers.values())

    # -- publishing ---------------------------------------------------------
    def _publish(self):
        try:
            self._update_worker_pids()
            snapshot = self.sampler.sample()
            msg = HardwareAvailability(**snapshot.message_fields())
        except Exception as error:  # keep publishing on the next tick
            self.last_error = f'{type(error).__name__}: {error}'
            self.get_logger().error(f'sampling failed: {self.last_error}',
                                    throttle_duration_sec=10.0)
            return
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params.value('frame_id') or snapshot.hostname
        self.publisher.publish(msg)
        self.last_snapshot = snapshot
        self.last_error = ''
        self.published += 1

    # -- diagnostics --------------------------------------------------------
    def _missing_readers(self):
        return [(name, why) for name, (ok, why) in self.sampler.reader_status().items()
                if not ok]

    def _diagnose_readers(self, stat):
        missing = self._missing_readers()
        if missing:
            stat.summary(WARN, 'unavailable here: ' + ', '.join(name for name, _ in missing))
        else:
            stat.summary(OK, 'all readers available')
        for name, (ok, why) in self.sampler.reader_status().items():
            stat.add(name, 'available' if ok else f'unavailable: {why}' if why else 'unavailable')
        return stat

    def _diagnose_availability(self, stat):
        snapshot = self.last_snapshot
        if self.last_error:
            stat.summary(ERROR, f'sampling failed: {self.last_error}')
        elif snapshot is None:
            stat.summary(WARN, 'no sample yet')
        else:
            stat.summary(OK, f'{snapshot.usable_cpus:.2f} usable CPUs, '
                             f'{snapshot.usable_threads} threads, '
                             f'availability {snapshot.availability:.2f}')
        stat.add('published', text(self.published))
        stat.add('rate_hz', text(self.params.value('rate_hz')))
        stat.add('worker_processes', ', '.join(f'{node} (pid {pid})' for node, (pid, _)
                                               in sorted(self.workers.items())) or '(none)')
        stat.add('scenario', self.params.value('scenario') or '(none)')
        if snapshot is not None:
            stat.add('usable_cpus', text(snapshot.usable_cpus))
            stat.add('usable_threads', text(snapshot.usable_threads))
            stat.add('availability', text(snapshot.availability))
            stat.add('cpu_utilization_total', text(snapshot.cpu_utilization_total))
            stat.add('memory_available_mb', text(snapshot.memory_available_mb))
            stat.add('overrides', ', '.join(snapshot.overrides) or '(none)')
        return stat

    def destroy_node(self):
        # Also reached for a node whose constructor refused its parameters.
        if getattr(self, 'sampler', None) is not None:
            self.sampler.close()
        return super().destroy_node()


def main(args=None):
    return run_node(ResourceMonitorNode, NODE_NAME, args)


if __name__ == '__main__':
    sys.exit(main())
