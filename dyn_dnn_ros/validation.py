"""Checks of the numbers a configuration holds, each with the one error message it gives.

Every message starts with the name of the checked field, as the config
classes report it (``sweep.gap: must be a fraction in (0, 1), got 2``).
A bool is never a number here: YAML reads ``yes`` as True, which Python
would otherwise take for 1.
"""

import math


def is_integer(value) -> bool:
    """An ``int`` that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """An ``int`` or ``float`` that is not a bool; NaN and infinities included."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    return is_number(value) and math.isfinite(value)


def require_int(name, value, minimum, *, none_allowed=False):
    """``value``, an integer >= ``minimum`` (or None where ``none_allowed``)."""
    if none_allowed and value is None:
        return value
    if not is_integer(value) or value < minimum:
        alternative = ' or None' if none_allowed else ''
        raise ValueError(f'{name}: must be an integer >= {minimum}{alternative}, got {value!r}')
    return value


def require_ints(name, values, minimum):
    """``values`` as a tuple: one or more integers, each >= ``minimum`` (thread counts, widths)."""
    items = None if isinstance(values, (str, bytes)) else _tuple_or_none(values)
    if not items or any(not is_integer(v) or v < minimum for v in items):
        shown = values if items is None else items
        raise ValueError(f'{name}: must be one or more integers >= {minimum}, got {shown!r}')
    return items


def require_finite(name, value, minimum=None, *, strict=False):
    """``value``, a finite number, at least ``minimum`` (above it when ``strict``)."""
    below = minimum is not None and is_finite_number(value) and (
        value < minimum or (strict and value == minimum))
    if not is_finite_number(value) or below:
        bound = '' if minimum is None else f' {">" if strict else ">="} {minimum}'
        raise ValueError(f'{name}: must be a finite number{bound}, got {value!r}')
    return value


def require_positive(name, value, unit=None):
    """``value``, a finite number > 0; ``unit`` (``'ms'``) names what it counts."""
    if not is_finite_number(value) or value <= 0:
        of_unit = f' of {unit}' if unit else ''
        raise ValueError(f'{name}: must be a positive number{of_unit}, got {value!r}')
    return value


def require_in_interval(name, value, interval, *, noun=None):
    """``value``, a number inside ``interval``, written as in mathematics: ``'[0, 0.5)'``.

    ``noun`` says what the value is in the message: ``'a fraction'`` gives
    "must be a fraction in [0, 1)".
    """
    low, high, low_closed, high_closed = _bounds(interval)
    inside = is_number(value) and (low <= value if low_closed else low < value) and (
        value <= high if high_closed else value < high)   # NaN compares false: outside
    if not inside:
        what = f'{noun} in' if noun else 'in'
        raise ValueError(f'{name}: must be {what} {interval}, got {value!r}')
    return value


def require_fraction(name, value, interval='(0, 1)'):
    """``value``, a fraction inside ``interval`` (open at both ends unless told)."""
    return require_in_interval(name, value, interval, noun='a fraction')


def _tuple_or_none(values):
    try:
        return tuple(values)
    except TypeError:   # not iterable: a lone number
        return None


def _bounds(interval) -> tuple[float, float, bool, bool]:
    """Low and high end of ``'[a, b)'`` and whether each end is included."""
    ends = interval[1:-1].split(',')
    if interval[:1] not in '[(' or interval[-1:] not in '])' or len(ends) != 2:
        raise ValueError(f'interval: expected "[a, b]", "(a, b)" or a mix, got {interval!r}')
    return float(ends[0]), float(ends[1]), interval[0] == '[', interval[-1] == ']'
