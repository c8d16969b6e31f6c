"""Numbers as people read them, for diagnostics values and log lines."""

import math


def text(value):
    """``value`` as a short string: '12.35', '3', 'yes', 'n/a' for NaN; strings pass through."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'n/a'
        return f'{value:.4g}' if abs(value) < 1e4 else f'{value:.0f}'
    raise TypeError(f'no text form for a {type(value).__name__}: {value!r}')
