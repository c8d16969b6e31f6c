import math

from diagnostic_msgs.msg import DiagnosticArray
import pytest
import rclpy
from ros_harness import MessageCollector, set_parameters, wait_until

from dyn_dnn_ros.ros.diagnostics import (
    ERROR,
    OK,
    STALE,
    WARN,
    DiagnosticStatusWrapper,
    Updater,
    level_value,
)


def test_merge_summary_keeps_worst_level_and_joins_equal_messages():
    status = DiagnosticStatusWrapper()
    status.summary(OK, 'fine')
    status.mergeSummary(WARN, 'slow')
    assert level_value(status.level) == 1 and status.message == 'slow'
    status.mergeSummary(WARN, 'hot')
    assert status.message == 'slow; hot'
    status.mergeSummary(OK, 'ignored')
    assert level_value(status.level) == 1 and status.message == 'slow; hot'
    status.mergeSummary(STALE, 'old data')
    assert level_value(status.level) == 3 and status.message == 'slow; hot; old data'
    status.clearSummary()
    status.mergeSummary(ERROR, 'failed')
    assert level_value(status.level) == 2 and status.message == 'failed'


def test_add_formats_values():
    status = DiagnosticStatusWrapper()
    status.add('ratio', 0.123456789)
    status.add('missing', math.nan)
    status.add('count', 3)
    assert [(kv.key, kv.value) for kv in status.values] == [
        ('ratio', '0.123457'), ('missing', 'nan'), ('count', '3')]


@pytest.mark.ros
def test_updater_publishes_named_statuses_over_dds(ros, probe):
    node = ros.add(rclpy.create_node('diag_subject', context=ros.context))
    try:
        updater = Updater(node, period=0.1)
        updater.setHardwareID('test-host')

        def healthy(stat):
            stat.summary(OK, 'all good')
            stat.add('answer', 42)
            return stat

        def broken(stat):
            raise RuntimeError('sensor unplugged')

        updater.add('health', healthy)
        updater.add('broken', broken)
        collector = MessageCollector(probe, DiagnosticArray, '/diagnostics')

        def has(name, level):
            def match(array):
                return any(s.name == name and level_value(s.level) == level_value(level)
                           for s in array.status)
            return match

        arrays = collector.wait_for(has('diag_subject: health', OK))
        health = next(s for s in arrays[0].status if s.name == 'diag_subject: health')
        assert health.hardware_id == 'test-host'
        assert health.message == 'all good'
        assert ('answer', '42') in [(kv.key, kv.value) for kv in health.values]
        arrays = collector.wait_for(has('diag_subject: broken', ERROR))
        broken_status = next(s for s in arrays[0].status if s.name == 'diag_subject: broken')
        assert 'sensor unplugged' in broken_status.message

        # The period is a parameter: NaN and negative values are refused with a
        # reason; a valid change takes effect.
        bad = set_parameters(probe, 'diag_subject', {'diagnostic_updater.period': math.nan})
        assert not bad[0].successful and 'period' in bad[0].reason
        bad = set_parameters(probe, 'diag_subject', {'diagnostic_updater.period': -1.0})
        assert not bad[0].successful
        good = set_parameters(probe, 'diag_subject', {'diagnostic_updater.period': 0.5})
        assert good[0].successful
        wait_until(lambda: updater.period == 0.5, message='period applied')
    finally:
        ros.remove(node)
