"""The reader interface and the small file helpers every reader shares.

A reader fills some fields of a :class:`ResourceSnapshot`. ``available()``
probes the host once (cached) and ``reason`` says why a reader cannot read;
``read(snapshot)`` may raise, and the sampler turns that into "unavailable
for this sample" rather than a crash.
"""

import math
from pathlib import Path


class Reader:
    """Base class: subclasses set ``name`` and implement ``probe`` and ``read``."""

    name = ''

    def __init__(self):
        self._probe_reason = None
        self.error = ''  # the last read's exception, '' when it succeeded

    def probe(self) -> str:
        """Return '' when this host can be read, else a one-line reason."""
        return ''

    def read(self, snapshot) -> None:
        raise NotImplementedError

    def available(self) -> bool:
        if self._probe_reason is None:
            try:
                self._probe_reason = self.probe()
            except Exception as exc:  # a probe must never take the sampler down
                self._probe_reason = f'probe failed: {type(exc).__name__}: {exc}'
        return not self._probe_reason

    @property
    def reason(self) -> str:
        """Why the reader is unavailable ('' when it is available)."""
        self.available()
        return self._probe_reason

    def close(self) -> None:
        """Release handles (libraries, subprocess connections); default: none."""


def read_text(path: Path) -> str:
    return Path(path).read_text().strip()


def read_float(path: Path) -> float:
    """Read a one-number sysfs file; ValueError names the file when it is not one."""
    text = read_text(path)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f'{path}: expected a number, got {text!r}') from None


def try_float(path: Path) -> float:
    """Like :func:`read_float`, NaN when the file is missing or unreadable."""
    try:
        return read_float(path)
    except (OSError, ValueError):
        return math.nan


def parse_cpu_list(text: str) -> list[int]:
    """CPU ids from the kernel's list format, e.g. ``'0-3,6'`` -> [0, 1, 2, 3, 6]."""
    cpus = []
    for part in text.strip().split(','):
        if not part:
            continue
        first, _, last = part.partition('-')
        try:
            start, end = int(first), int(last or first)
        except ValueError:
            raise ValueError(f'bad CPU list {text!r}') from None
        if end < start:
            raise ValueError(f'bad CPU list {text!r}')
        cpus.extend(range(start, end + 1))
    return cpus


def unique_name(name: str, taken: list[str]) -> str:
    """``name``, or ``name#2``, ``name#3``... when it is already in ``taken``."""
    if name not in taken:
        return name
    n = 2
    while f'{name}#{n}' in taken:
        n += 1
    return f'{name}#{n}'
