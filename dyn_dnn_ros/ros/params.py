"""Declared, validated ROS parameters with a check-then-apply split.

ROS 2 runs on-set callbacks before a parameter changes and may reject the
change with a reason; post-set callbacks run after it succeeded. Nodes list
their parameters once as ``ParameterSpec``s; ``ValidatedParameters``
declares them with descriptors and ranges, rejects bad values in the on-set
callback (reason names the parameter), lets unknown names through, and calls
the node's ``apply`` only after a set succeeded, so heavy work (loading a
scenario, switching a sub-network) never happens for a rejected value.
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

    def descriptor(self):
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
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
        if expected is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return f'must be a number, got {value!r}'
            if not math.isfinite(value):
                return f'must be finite, got {value!r}'
        elif expected is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f'must be an integer, got {value!r}'
        elif expected is str and not isinstance(value, str):
            return f'must be a string, got {value!r}'
        elif expected is bool and not isinstance(value, bool):
            return f'must be true or false, got {value!r}'
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
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._post_set)

    def value(self, name):
        return self._node.get_parameter(name).value

    def values(self):
        return {name: self.value(name) for name in self._specs}

    def startup_problems(self):
        """Problems with the values the node started with (from YAML or CLI)."""
        problems = [f'{name}: {problem}' for name, spec in self._specs.items()
                    if (problem := spec.problem(self.value(name)))]
        if not problems and self._check_together is not None:
            together = self._check_together(self.values())
            if together:
                problems.append(together)
        return problems

    def _on_set(self, parameters):
        proposed = self.values()
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is None:
                continue  # not ours (e.g. use_sim_time, the updater's period): let through
            problem = spec.problem(parameter.value)
            if problem:
                return SetParametersResult(successful=False,
                                           reason=f'{parameter.name}: {problem}')
            proposed[parameter.name] = parameter.value
        if self._check_together is not None:
            problem = self._check_together(proposed)
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
