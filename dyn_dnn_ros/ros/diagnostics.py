"""Diagnostics on ``/diagnostics`` in the shape of ROS 2's ``diagnostic_updater``.

ROS hosts get ``diagnostic_updater`` from their distribution; it is not
installable here, so this module provides the same API (``Updater`` with
``add``, ``removeByName``, ``setHardwareID``, ``update``, ``force_update``,
``broadcast``, the ``diagnostic_updater.period`` parameter; and
``DiagnosticStatusWrapper`` with ``summary``, ``clearSummary``,
``mergeSummary``, ``add``) and behaviour (one status per task, named
``<node name>: <task name>``). Where the real package is importable it is
used instead, so nodes written against this module run unchanged on a ROS
host.

The stand-in is as strict as the real package where a node could go wrong:
``add`` takes only strings (the real wrapper stores any value and the
publish then fails, taking the node down), and an exception raised by a task
propagates out of the update, as it does out of the real updater's timer.
Nodes therefore format every value with ``text`` and register their tasks
through ``guarded``, which turns an exception into an ERROR status.
"""

import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult

from dyn_dnn_ros.formatting import text  # noqa: F401 (re-exported for the nodes)
from dyn_dnn_ros.validation import is_finite_number

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR
STALE = DiagnosticStatus.STALE

PERIOD_PARAMETER = 'diagnostic_updater.period'


def level_value(level):
    """Diagnostic levels are single bytes in ROS 2 messages; compare them as ints."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


def as_level(level):
    return bytes([level_value(level)])


def guarded(task):
    """``task(stat)`` that reports an exception as ERROR instead of raising it.

    The real updater lets a task's exception escape its timer callback, which
    ends the node; a diagnostics task must never do that.
    """
    def run(stat):
        try:
            return task(stat) or stat
        except Exception as error:
            failed = DiagnosticStatusWrapper(name=stat.name, hardware_id=stat.hardware_id)
            failed.summary(ERROR, f'diagnostic task failed: {type(error).__name__}: {error}')
            return failed
    return run


class DiagnosticStatusWrapper(DiagnosticStatus):
    """A DiagnosticStatus with helpers to set the summary and add values."""

    def summary(self, *args):
        """``summary(level, message)`` or ``summary(other_status)``."""
        if len(args) == 1:
            level, message = args[0].level, args[0].message
        else:
            level, message = args
        if not isinstance(message, str):
            raise TypeError(f'diagnostics message must be str, got {type(message).__name__}')
        self.level = as_level(level)
        self.message = message

    def clearSummary(self):  # noqa: N802 (diagnostic_updater's name)
        self.summary(OK, '')

    def mergeSummary(self, *args):  # noqa: N802
        """Keep the worst level; join messages of equally bad statuses with '; '."""
        if len(args) == 1:
            level, message = args[0].level, args[0].message
        else:
            level, message = args
        new, old = level_value(level), level_value(self.level)
        if (new > 0) == (old > 0):
            if self.message and message:
                self.message = f'{self.message}; {message}'
            else:
                self.message = self.message or str(message)
        elif new > old:
            self.message = str(message)
        self.level = as_level(max(new, old))

    def add(self, key, value):
        # The real wrapper stores the value as given and the publish fails on a
        # non-string; refusing it here names the key while the tests run.
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f'diagnostics value {key!r}: keys and values must be str, got '
                            f'{type(value).__name__} {value!r} (format it with text())')
        self.values.append(KeyValue(key=key, value=value))


class DiagnosticTask:
    def __init__(self, name):
        self.name = name

    def getName(self):  # noqa: N802
        return self.name

    def run(self, stat):
        return stat


class FunctionDiagnosticTask(DiagnosticTask):
    def __init__(self, name, fn):
        super().__init__(name)
        self.fn = fn

    def run(self, stat):
        return self.fn(stat)


class Updater:
    """Runs diagnostic tasks every period and publishes their statuses."""

    def __init__(self, node, period=1.0):
        self.node = node
        self.hwid = ''
        self._tasks = []  # (name, fn)
        self._lock = threading.Lock()
        self.publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        if not node.has_parameter(PERIOD_PARAMETER):
            node.declare_parameter(
                PERIOD_PARAMETER, float(period),
                ParameterDescriptor(
                    description='seconds between diagnostics publications',
                    floating_point_range=[FloatingPointRange(from_value=0.01, to_value=3600.0)]))
        self._period = float(node.get_parameter(PERIOD_PARAMETER).value)
        node.add_on_set_parameters_callback(self._check_period)
        node.add_post_set_parameters_callback(self._apply_period)
        self._timer = node.create_timer(self._period, self.update)

    @property
    def period(self):
        return self._period

    @period.setter
    def period(self, period):
        self._period = float(period)
        self.node.destroy_timer(self._timer)
        self._timer = self.node.create_timer(self._period, self.update)

    def _check_period(self, parameters):
        for parameter in parameters:
            if parameter.name != PERIOD_PARAMETER:
                continue
            value = parameter.value
            if not is_finite_number(value) or value <= 0:
                return SetParametersResult(
                    successful=False,
                    reason=f'{PERIOD_PARAMETER} must be a positive number of seconds, '
                           f'got {value!r}')
        return SetParametersResult(successful=True)

    def _apply_period(self, parameters):
        for parameter in parameters:
            if parameter.name == PERIOD_PARAMETER and float(parameter.value) != self._period:
                self.period = parameter.value

    def setHardwareID(self, hwid):  # noqa: N802
        self.hwid = str(hwid)

    def add(self, *args):
        """``add(task)`` with a DiagnosticTask, or ``add(name, fn)``."""
        if len(args) == 1:
            name, fn = args[0].getName(), args[0].run
        else:
            name, fn = args
        with self._lock:
            self._tasks.append((name, fn))
        starting = DiagnosticStatusWrapper(name=name, hardware_id=self.hwid)
        starting.summary(OK, 'Node starting up')
        self.publish(starting)

    def removeByName(self, name):  # noqa: N802
        with self._lock:
            for index, (task_name, _) in enumerate(self._tasks):
                if task_name == name:
                    del self._tasks[index]
                    return True
        return False

    def update(self):
        with self._lock:
            tasks = list(self._tasks)
        statuses = []
        for name, fn in tasks:
            status = DiagnosticStatusWrapper(name=name, hardware_id=self.hwid)
            status.summary(ERROR, 'No message was set')
            # As in the real updater, an exception escapes: tasks use guarded().
            statuses.append(fn(status) or status)
        self.publish(statuses)

    def force_update(self):
        self.update()

    def broadcast(self, level, message):
        with self._lock:
            names = [name for name, _ in self._tasks]
        statuses = []
        for name in names:
            status = DiagnosticStatusWrapper(name=name, hardware_id=self.hwid)
            status.summary(level, message)
            statuses.append(status)
        self.publish(statuses)

    def publish(self, statuses):
        if not isinstance(statuses, list):
            statuses = [statuses]
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        for status in statuses:
            array.status.append(DiagnosticStatus(
                level=as_level(status.level), name=f'{self.node.get_name()}: {status.name}',
                message=status.message, hardware_id=status.hardware_id or self.hwid,
                values=list(status.values)))
        self.publisher.publish(array)


try:  # a ROS host's own diagnostic_updater, where installed
    from diagnostic_updater import DiagnosticStatusWrapper, Updater  # noqa: F811,F401
    USING_ROS_DIAGNOSTIC_UPDATER = True
except ImportError:
    USING_ROS_DIAGNOSTIC_UPDATER = False
