"""The number checks of dyn_dnn_ros/validation.py: what each accepts and the message it gives."""

import math

import pytest

from dyn_dnn_ros.validation import (
    is_finite_number,
    is_integer,
    is_number,
    require_finite,
    require_fraction,
    require_in_interval,
    require_int,
    require_ints,
    require_positive,
)


def test_a_bool_is_never_a_number():
    assert is_integer(3) and not is_integer(True) and not is_integer(3.0)
    assert is_number(2.5) and is_number(math.nan) and not is_number(False)
    assert not is_number('1')
    assert is_finite_number(-1) and not is_finite_number(math.inf)
    assert not is_finite_number(math.nan)


def test_require_int():
    assert require_int('n', 3, 1) == 3
    assert require_int('n', None, 1, none_allowed=True) is None
    for bad in (0, 2.0, True, None, math.nan):
        with pytest.raises(ValueError, match=rf'^n: must be an integer >= 1, got {bad!r}$'):
            require_int('n', bad, 1)
    with pytest.raises(ValueError, match='n: must be an integer >= 1 or None, got 0'):
        require_int('n', 0, 1, none_allowed=True)


def test_require_ints_gives_a_tuple_of_integers():
    assert require_ints('threads', [1, 2], 1) == (1, 2)
    assert require_ints('threads', range(1, 3), 1) == (1, 2)
    for bad in ([], [0, 1], [1, 2.0], [True], 3, '12', None):
        with pytest.raises(ValueError,
                           match=r'^threads: must be one or more integers >= 1, got '):
            require_ints('threads', bad, 1)
    with pytest.raises(ValueError, match=r'got \(1, 0\)$'):
        require_ints('threads', (t for t in (1, 0)), 1)   # a generator is shown as read


@pytest.mark.parametrize('value', [math.nan, math.inf, -math.inf, '1', None, True])
def test_require_finite_refuses_what_is_no_finite_number(value):
    with pytest.raises(ValueError, match=r'^x: must be a finite number, got '):
        require_finite('x', value)


def test_require_finite_names_the_bound_in_every_refusal():
    assert require_finite('x', 0, 0) == 0
    assert require_finite('x', 0.5, 0, strict=True) == 0.5
    with pytest.raises(ValueError, match=r'^x: must be a finite number >= 0, got -1$'):
        require_finite('x', -1, 0)
    with pytest.raises(ValueError, match=r'^x: must be a finite number >= 0, got nan$'):
        require_finite('x', math.nan, 0)
    with pytest.raises(ValueError, match=r'^x: must be a finite number > 0, got 0$'):
        require_finite('x', 0, 0, strict=True)


@pytest.mark.parametrize('value', [0, -1, math.nan, math.inf, True, 'a'])
def test_require_positive(value):
    with pytest.raises(ValueError, match=r'^t: must be a positive number of ms, got '):
        require_positive('t', value, 'ms')
    assert require_positive('t', 1e-9) == 1e-9


@pytest.mark.parametrize('interval, inside, outside', [
    ('(0, 1]', [1, 0.5], [0, 1.5, math.nan, math.inf]),
    ('[0, 1)', [0, 0.999], [1, -0.1, math.nan]),
    ('[0, 5]', [0, 5], [5.01, math.inf, -math.inf]),
])
def test_require_in_interval(interval, inside, outside):
    for value in inside:
        assert require_in_interval('v', value, interval) == value
    for value in outside:
        with pytest.raises(ValueError, match=rf'^v: must be in \{interval[0]}'):
            require_in_interval('v', value, interval)
    with pytest.raises(ValueError, match='v: must be in'):
        require_in_interval('v', True, interval)


def test_require_fraction_says_what_the_value_is():
    assert require_fraction('gap', 0.5) == 0.5
    with pytest.raises(ValueError, match=r'^gap: must be a fraction in \(0, 1\), got 1$'):
        require_fraction('gap', 1)
    with pytest.raises(ValueError, match='interval'):
        require_in_interval('v', 0, '0..1')
