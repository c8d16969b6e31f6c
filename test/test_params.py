import pytest
import rclpy
from ros_harness import set_parameters, wait_until

from dyn_dnn_ros.ros.params import ParameterSpec, ValidatedParameters

SPECS = [
    ParameterSpec('rate_hz', 1.0, 'publication rate', float_range=(0.01, 100.0)),
    ParameterSpec('mode', 'fixed', 'beam mode', choices=('fixed', 'dynamic')),
    ParameterSpec('depth', 4, 'queue depth', integer_range=(1, 64)),
    ParameterSpec('name', 'a', 'must not be empty',
                  check=lambda v: None if v else 'must not be empty'),
]


def test_spec_problems_name_the_rule():
    rate = SPECS[0]
    assert rate.problem(float('nan')) == 'must be finite, got nan'
    assert 'within' in rate.problem(-1.0)
    assert rate.problem(5.0) is None
    assert 'one of' in SPECS[1].problem('beam')
    assert SPECS[2].problem(True).startswith('must be an integer')
    assert SPECS[3].problem('') == 'must not be empty'


@pytest.mark.ros
def test_sets_are_checked_then_applied(ros, probe):
    applied = []
    node = ros.add(rclpy.create_node('params_subject', context=ros.context))
    try:
        def together(values):
            if values['mode'] == 'dynamic' and values['depth'] < 2:
                return 'depth: dynamic mode needs depth >= 2'
            return None

        params = ValidatedParameters(node, SPECS, apply=applied.append,
                                     check_together=together)
        assert params.startup_problems() == []

        results = set_parameters(probe, 'params_subject', {'rate_hz': float('nan')})
        assert not results[0].successful and 'rate_hz' in results[0].reason
        results = set_parameters(probe, 'params_subject', {'name': ''})
        assert not results[0].successful and results[0].reason == 'name: must not be empty'
        results = set_parameters(probe, 'params_subject', {'depth': 1, 'mode': 'dynamic'},
                                 atomically=True)
        assert not results[0].successful
        assert results[0].reason == 'depth: dynamic mode needs depth >= 2'
        assert params.value('mode') == 'fixed' and params.value('depth') == 4
        assert applied == []

        results = set_parameters(probe, 'params_subject', {'rate_hz': 20.0})
        assert results[0].successful
        wait_until(lambda: applied == [{'rate_hz': 20.0}], message='apply after set')

        # Parameters the node does not own (here rclpy's use_sim_time) pass through.
        results = set_parameters(probe, 'params_subject', {'use_sim_time': False})
        assert results[0].successful
    finally:
        ros.remove(node)
