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


def describe(probe, node_name, names):
    from rcl_interfaces.srv import DescribeParameters
    from ros_harness import call_service
    return call_service(probe, DescribeParameters, f'{node_name}/describe_parameters',
                        DescribeParameters.Request(names=names)).descriptors


@pytest.mark.ros
def test_rclpy_plain_set_parameters_calls_the_callbacks_one_parameter_at_a_time(ros, probe):
    """What a node with joint rules is up against (verified on the rclpy in use).

    rclpy's ``set_parameters`` service calls ``set_parameters_atomically([p])``
    once per parameter of the request: an on-set callback sees one parameter
    at a time and cannot know the rest of the request, so a rule between
    parameters is checked against the values set so far and a request can
    be applied in part. ``set_parameters_atomically`` calls it once with all.
    """
    from rcl_interfaces.msg import SetParametersResult
    node = ros.add(rclpy.create_node('plain_rclpy_subject', context=ros.context))
    seen = []
    try:
        node.declare_parameter('a', 1)
        node.declare_parameter('b', 2)
        node.add_on_set_parameters_callback(
            lambda params: seen.append(sorted(p.name for p in params)) or
            SetParametersResult(successful=True))
        assert all(r.successful for r in set_parameters(probe, 'plain_rclpy_subject',
                                                         {'a': 3, 'b': 4}))
        assert seen == [['a'], ['b']]
        seen.clear()
        set_parameters(probe, 'plain_rclpy_subject', {'a': 5, 'b': 6}, atomically=True)
        assert seen == [['a', 'b']]
    finally:
        ros.remove(node)


@pytest.mark.ros
def test_a_plain_set_of_several_own_parameters_is_all_or_nothing(ros, probe):
    """ValidatedParameters answers the plain service itself.

    The node's own writable parameters in one request are set with one
    atomic set, so the joint check sees the whole request and none of it or
    all of it is applied. Parameters that are not the node's, or are
    read-only, are set one at a time, as rclpy does.
    """
    applied = []
    node = ros.add(rclpy.create_node('plain_subject', context=ros.context))
    try:
        def together(values):
            if values['mode'] == 'dynamic' and values['depth'] < 2:
                return 'depth: dynamic mode needs depth >= 2'
            return None

        specs = SPECS + [ParameterSpec('fixed_path', '', 'read-only', read_only=True)]
        params = ValidatedParameters(node, specs, apply=applied.append,
                                     check_together=together)
        assert set_parameters(probe, 'plain_subject', {'depth': 1})[0].successful
        wait_until(lambda: applied == [{'depth': 1}])
        # One at a time, 'mode' would be refused (depth 1) and 'depth' then set:
        # refused as a whole instead ...
        results = set_parameters(probe, 'plain_subject', {'mode': 'dynamic', 'depth': 1})
        assert [r.successful for r in results] == [False, False]
        assert all('depth: dynamic mode needs depth >= 2' in r.reason for r in results)
        assert params.value('mode') == 'fixed'
        # ... and a request valid as a whole is applied although its first
        # parameter alone would break the rule: together, in one apply.
        results = set_parameters(probe, 'plain_subject',
                                 {'mode': 'dynamic', 'depth': 3, 'use_sim_time': False,
                                  'fixed_path': 'x'})
        assert [r.successful for r in results] == [True, True, True, False]
        assert 'read-only' in results[3].reason
        wait_until(lambda: applied[-1] == {'mode': 'dynamic', 'depth': 3})
        assert len(applied) == 2
        assert params.value('mode') == 'dynamic' and params.value('depth') == 3
    finally:
        ros.remove(node)


@pytest.mark.ros
def test_wrong_types_are_refused_in_words_and_keep_the_declared_type(ros, probe):
    from rcl_interfaces.msg import ParameterType
    node = ros.add(rclpy.create_node('typed_subject', context=ros.context))
    try:
        params = ValidatedParameters(node, SPECS)
        for values, reason in [
            ({'depth': 'five'}, "depth: must be an integer, got a string 'five'"),
            ({'depth': 2.5}, 'depth: must be an integer, got a floating-point number 2.5'),
            ({'rate_hz': 3}, 'rate_hz: must be a floating-point number, got an integer 3 '
                             '(write 3.0)'),
            ({'mode': True}, 'mode: must be a string, got the boolean true'),
            ({'name': [1, 2]}, 'name: must be a string, got an integer array [1, 2]'),
        ]:
            result = set_parameters(probe, 'typed_subject', values)[0]
            assert not result.successful and result.reason == reason, result.reason
        assert params.value('depth') == 4 and params.value('rate_hz') == 1.0
        types = [d.type for d in describe(probe, 'typed_subject',
                                          ['rate_hz', 'mode', 'depth', 'name'])]
        assert types == [ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_STRING,
                         ParameterType.PARAMETER_INTEGER, ParameterType.PARAMETER_STRING]
        assert set_parameters(probe, 'typed_subject', {'depth': 7})[0].successful
    finally:
        ros.remove(node)


@pytest.mark.ros
def test_a_wrong_type_at_startup_is_a_problem_in_words(ros):
    from rclpy.parameter import Parameter
    node = rclpy.create_node('typed_startup', context=ros.context,
                             parameter_overrides=[Parameter('depth', value='five')])
    try:
        params = ValidatedParameters(node, SPECS)
        assert params.startup_problems() == ["depth: must be an integer, got a string 'five'"]
        assert node.describe_parameter('depth').type == Parameter.Type.INTEGER.value
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_a_check_that_raises_refuses_the_set_and_the_node_lives(ros, probe):
    def broken(value):
        raise RuntimeError('bug in a check')

    node = ros.add(rclpy.create_node('broken_subject', context=ros.context))
    try:
        ValidatedParameters(node, [ParameterSpec('x', 1, 'broken check', check=broken)])
        result = set_parameters(probe, 'broken_subject', {'x': 2})[0]
        assert not result.successful and 'RuntimeError: bug in a check' in result.reason
        assert set_parameters(probe, 'broken_subject', {'use_sim_time': False})[0].successful
    finally:
        ros.remove(node)
