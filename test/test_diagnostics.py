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
    guarded,
    level_value,
    text,
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


def test_add_takes_only_strings_as_the_real_updater_needs():
    # The real DiagnosticStatusWrapper stores a value as given and the publish
    # then fails; the stand-in refuses it at once, naming the key.
    status = DiagnosticStatusWrapper()
    for value in (3, 0.5, math.nan, None, True):
        with pytest.raises(TypeError, match="'published'"):
            status.add('published', value)
    with pytest.raises(TypeError):
        status.summary(OK, 42)
    status.add('ratio', text(0.123456789))
    status.add('missing', text(math.nan))
    status.add('count', text(3))
    status.add('big', text(123456.7))
    status.add('flag', text(False))
    assert [(kv.key, kv.value) for kv in status.values] == [
        ('ratio', '0.1235'), ('missing', 'n/a'), ('count', '3'), ('big', '123457'),
        ('flag', 'no')]
    with pytest.raises(TypeError):
        text(object())


def test_a_raising_task_escapes_the_updater_unless_guarded():
    # As with the real updater, whose timer callback would end the node.
    def broken(stat):
        raise RuntimeError('sensor unplugged')

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('diag_strict', context=context)  # not spun: update by hand
        updater = Updater(node, period=60.0)
        updater.add('broken', broken)
        with pytest.raises(RuntimeError, match='sensor unplugged'):
            updater.update()
        updater.removeByName('broken')
        updater.add('broken', guarded(broken))
        updater.update()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    status = DiagnosticStatusWrapper(name='sensor', hardware_id='host')
    reported = guarded(broken)(status)
    assert level_value(reported.level) == level_value(ERROR)
    assert 'RuntimeError: sensor unplugged' in reported.message
    assert reported.name == 'sensor' and reported.hardware_id == 'host'

    def bad_value(stat):
        stat.summary(OK, 'fine')
        stat.add('count', 7)
        return stat

    reported = guarded(bad_value)(DiagnosticStatusWrapper(name='counter'))
    assert level_value(reported.level) == level_value(ERROR) and "'count'" in reported.message


@pytest.mark.ros
def test_updater_publishes_named_statuses_over_dds(ros, probe):
    node = ros.add(rclpy.create_node('diag_subject', context=ros.context))
    try:
        updater = Updater(node, period=0.1)
        updater.setHardwareID('test-host')

        def healthy(stat):
            stat.summary(OK, 'all good')
            stat.add('answer', text(42))
            return stat

        def broken(stat):
            raise RuntimeError('sensor unplugged')

        updater.add('health', healthy)
        updater.add('broken', guarded(broken))
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
