"""Declared, validated ROS parameters with a check-then-apply split.

ROS 2 runs on-set callbacks before a parameter changes and may reject the
change with a reason; post-set callbacks run after it succeeded. Nodes list
their parameters once as ``ParameterSpec``s; ``ValidatedParameters``
declares them with descriptors and ranges, rejects bad values in the on-set
callback (reason names the parameter), lets unknown names through, and calls
the node's ``apply`` only after a set succeeded, so heavy work (loading a
scenario, switching a sub-network) never happens for a rejected value.

Types: rclpy refuses a value of the wrong type before any callback runs,
with "Wrong parameter type, expected 'Type.INTEGER' got 'Type.STRING'".
The parameters are therefore declared with ``dynamic_typing`` and the
declared type in the descriptor: the type check here says it in words
("beam_width: must be an integer, got a string 'five'") and still refuses
every other type, and the descriptor's ``type`` is put back after each set
(rclpy overwrites it with the type of whatever was offered), so
``ros2 param describe`` keeps showing the declared type.

Several parameters at once: rclpy's ``set_parameters`` service sets the
parameters of a request one at a time (one on-set callback per parameter),
so a rule between parameters sees only those set so far, and a request can
be applied in part, or refused although it is valid as a whole (bw_min 7,
bw_max 9 from 1..5). ``ValidatedParameters`` answers that service itself:
the node's own writable parameters in one request are set with one atomic
set, all or nothing, and each gets that result; other parameters (not the
node's, or read-only) are set one at a time as rclpy does.
``set_parameters_atomically`` is all or nothing anyway.

A check that raises refuses the set with the exception's text: bad input
never takes the node down.
"""

from dataclasses import dataclass
import math
from typing import Any, Callable

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_parameters

# What a parameter of each Python type must be, in words.
KINDS = {float: 'a floating-point number', int: 'an integer', str: 'a string',
         bool: 'true or false'}
EXCERPT_CHARS = 40


def _excerpt(text):
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + '...'


def describe_value(value):
    """A parameter value with its type in words: "a string 'five'", "an integer 3"."""
    if value is None:
        return 'no value'
    if isinstance(value, bool):
        return f'the boolean {"true" if value else "false"}'
    if isinstance(value, int):
        return f'an integer {value}'
    if isinstance(value, float):
        return f'a floating-point number {value:g}'
    if isinstance(value, str):
        return f'a string {_excerpt(repr(value))}'
    if isinstance(value, bytes):
        return f'a byte array {_excerpt(repr(value))}'
    items = list(value)
    kind = {bool: 'a boolean array', int: 'an integer array', float: 'a floating-point array',
            str: 'a string array'}.get(type(items[0]), 'an array') if items else 'an empty array'
    return f'{kind} {_excerpt(repr(items))}' if items else kind


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    float_range: tuple | None = None     # (min, max), inclusive
    integer_range: tuple | None = None   # (min, max), inclusive
    choices: tuple | None = None         # allowed string values
    read_only: bool = False
    check: Callable[[Any], str | None] | None = None  # returns an error, or None

    @property
    def parameter_type(self):
        """The declared ROS parameter type (``ParameterType`` value) of the default."""
        return Parameter.Type.from_parameter_value(self.default).value

    def descriptor(self):
        # dynamic_typing lets a wrong type reach problem(), which refuses it
        # in words; the type stays in the descriptor for `ros2 param describe`.
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only,
                                         type=self.parameter_type, dynamic_typing=True)
        if self.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(self.float_range[0]),
                                   to_value=float(self.float_range[1]))]
        if self.integer_range is not None:
            descriptor.integer_range = [
                IntegerRange(from_value=int(self.integer_range[0]),
                             to_value=int(self.integer_range[1]))]
        if self.choices:
            descriptor.additional_constraints = 'one of: ' + ', '.join(self.choices)
        return descriptor

    def problem(self, value):
        """Why ``value`` is unacceptable, or None."""
        expected = type(self.default)
        if type(value) is not expected:   # bool is no int here, nor int a float
            problem = f'must be {KINDS[expected]}, got {describe_value(value)}'
            if expected is float and type(value) is int:
                problem += f' (write {value}.0)'
            return problem
        if expected is float and not math.isfinite(value):
            return f'must be finite, got {value!r}'
        for bounds in (self.float_range, self.integer_range):
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                return f'must be within [{bounds[0]}, {bounds[1]}], got {value!r}'
        if self.choices and value not in self.choices:
            return f'must be one of {", ".join(self.choices)}; got {value!r}'
        if self.check is not None:
            return self.check(value)
        return None


class ValidatedParameters:
    """Declares specs on a node and enforces them on every set."""

    def __init__(self, node, specs, apply: Callable[[dict], None] | None = None,
                 check_together: Callable[[dict], str | None] | None = None):
        self._node = node
        self._specs = {spec.name: spec for spec in specs}
        self._apply = apply
        self._check_together = check_together
        for spec in specs:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        # A start value of the wrong type (from YAML or the command line) is
        # kept for startup_problems() to name; the declared type stays.
        self._restore_types()
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._post_set)
        self._answer_plain_sets()

    def value(self, name):
        return self._node.get_parameter(name).value

    def values(self):
        return {name: self.value(name) for name in self._specs}

    def startup_problems(self):
        """Problems with the values the node started with (from YAML or CLI)."""
        problems = [f'{name}: {problem}' for name, spec in self._specs.items()
                    if (problem := self._problem(spec, self.value(name)))]
        if not problems and self._check_together is not None:
            together = self._together(self.values())
            if together:
                problems.append(together)
        return problems

    # -- checks ---------------------------------------------------------------------
    @staticmethod
    def _problem(spec, value):
        try:
            return spec.problem(value)
        except Exception as error:  # a faulty check refuses; it never kills the node
            return f'cannot be checked: {type(error).__name__}: {error}'

    def _together(self, values):
        try:
            return self._check_together(values)
        except Exception as error:
            return f'parameters cannot be checked together: {type(error).__name__}: {error}'

    def _restore_types(self):
        """Put the declared types back into the descriptors (rclpy overwrites them)."""
        for name, spec in self._specs.items():
            self._node.describe_parameter(name).type = spec.parameter_type

    def _on_set(self, parameters):
        try:
            return self._check(parameters)
        finally:
            self._restore_types()

    def _check(self, parameters):
        proposed = self.values()
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue  # not ours (e.g. use_sim_time, the updater's period): let through
            problem = self._problem(spec, parameter.value)
            if problem:
                return SetParametersResult(successful=False,
                                           reason=f'{parameter.name}: {problem}')
            proposed[parameter.name] = parameter.value
        if self._check_together is not None:
            problem = self._together(proposed)
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        return SetParametersResult(successful=True)

    def _post_set(self, parameters):
        changed = {p.name: p.value for p in parameters if p.name in self._specs}
        if changed and self._apply is not None:
            try:
                self._apply(changed)
            except Exception as error:  # applying must never kill the node
                self._node.get_logger().error(
                    f'applying {sorted(changed)} failed: {type(error).__name__}: {error}')

    # -- the plain set_parameters service -------------------------------------------
    def _answer_plain_sets(self):
        """Serve ``set_parameters`` in place of rclpy's (when the node has one)."""
        node = self._node
        name = f'{node.get_fully_qualified_name()}/set_parameters'.replace('//', '/')
        for service in list(node.services):
            if service.srv_type is SetParameters and service.service_name == name:
                node.destroy_service(service)
                node.create_service(SetParameters, f'{node.get_name()}/set_parameters',
                                    self._set_plain, qos_profile=qos_profile_parameters)
                return

    def _set_one_batch(self, parameters):
        try:
            return self._node.set_parameters_atomically(parameters)
        except Exception as error:  # e.g. an undeclared name
            return SetParametersResult(successful=False,
                                       reason=str(error) or type(error).__name__)

    def _set_plain(self, request, response):
        """Own writable parameters of the request all or nothing; the rest one at a time."""
        try:
            parameters = [Parameter.from_parameter_msg(p) for p in request.parameters]
        except Exception as error:
            reason = f'malformed request: {type(error).__name__}: {error}'
            response.results = [SetParametersResult(successful=False, reason=reason)
                                for _ in request.parameters]
            return response
        own = [p for p in parameters
               if p.name in self._specs and not self._specs[p.name].read_only]
        together = None
        if len(own) > 1:
            together = self._set_one_batch(own)
            if not together.successful:
                names = ', '.join(dict.fromkeys(p.name for p in own))
                together.reason += f' (set together with {names}: none of them was set)'
        for parameter in parameters:
            if together is not None and any(parameter is p for p in own):
                response.results.append(SetParametersResult(successful=together.successful,
                                                            reason=together.reason))
            else:
                response.results.append(self._set_one_batch([parameter]))
        return response
