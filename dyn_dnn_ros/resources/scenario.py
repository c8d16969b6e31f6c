"""Scripted overrides on top of real readings ("one core from t=10 s"), for tests and demos.

A scenario file is YAML::

    name: core_drop
    steps:
      - at: 10.0                  # seconds after the scenario starts
        set: {cpus: 1, power_mode: 5W}
      - at: 40.0
        clear: [cpus]             # back to real readings for these fields

Steps apply in time order; each ``set`` adds or replaces overrides and each
``clear`` removes them, so the overrides in force at ``t`` are the fold of
all steps with ``at <= t``.
"""

from dataclasses import dataclass
import math
from pathlib import Path
import stat

from dyn_dnn_ros.resources.capacity import CapacityConfig, estimate
from dyn_dnn_ros.resources.snapshot import ResourceSnapshot
from dyn_dnn_ros.validation import is_finite_number, is_integer, is_number


class _Invalid(Exception):
    """A bad value; the loader adds the file and field to the message."""


# A refusal names the file and the first problem; what it quotes of the file
# is cut to this many characters (a scenario parameter pointed at the wrong
# file, say the system's password file, must not echo it back to whoever set it).
EXCERPT_CHARS = 40
# Scenario files are a few lines; larger ones (or devices, pipes) are refused unread.
MAX_FILE_BYTES = 1 << 20


def excerpt(value, limit=EXCERPT_CHARS) -> str:
    """``repr(value)`` on one line, cut to about ``limit`` characters."""
    return _cut(repr(value), limit)


def _key(key, limit=EXCERPT_CHARS) -> str:
    """A mapping key as written in a field path (``steps[0].set.cores``), cut like a value."""
    return _cut(str(key), limit)


def shown_path(path, limit=200) -> str:
    """A file name for a message: control characters escaped, cut when absurdly long."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    return _cut(text, limit)


def _cut(text, limit):
    if len(text) > limit:
        text = text[:limit] + f'... ({len(text)} characters)'
    return text


def _number(value) -> float:
    if not is_number(value) or math.isnan(value):
        raise _Invalid(f'must be a number, got {excerpt(value)}')
    return float(value)


def _positive_int(value):
    if not is_integer(value) or value < 1:
        raise _Invalid(f'must be a positive integer, got {excerpt(value)}')
    return value


def _fraction(value):
    value = _number(value)
    if not 0 <= value <= 1:
        raise _Invalid(f'must be between 0 and 1, got {value:g}')
    return value


def _scale(value):
    value = _number(value)
    if not 0 < value <= 1:
        raise _Invalid(f'must be in (0, 1], got {value:g}')
    return value


def _mode_name(value):
    # nvpmodel modes have names ("MAXN", "15W") and ids; YAML reads an id as int.
    if isinstance(value, bool) or not isinstance(value, str | int) or str(value).strip() == '':
        raise _Invalid(f'must be a non-empty string, got {excerpt(value)}')
    return str(value).strip()


def _flag(value):
    if not isinstance(value, bool):
        raise _Invalid(f'must be true or false, got {excerpt(value)}')
    return value


def _megabytes(value):
    value = _number(value)
    if not 0 <= value < math.inf:
        raise _Invalid(f'must be a finite number >= 0, got {value:g}')
    return value


# Overridable field -> validator returning the normalised value.
FIELDS = {
    'cpus': _positive_int,              # caps allowed (and so usable) CPUs
    'cpu_utilization': _fraction,       # extra load from "other programs" on every CPU
    'freq_scale': _scale,               # multiplies current frequency / availability
    'power_mode': _mode_name,
    'gpu_available': _flag,             # false hides the GPU; true keeps real readings
    'memory_available_mb': _megabytes,
}


@dataclass(frozen=True)
class Step:
    at: float
    values: dict
    clear: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    source: str = '<scenario>'

    @classmethod
    def load(cls, path) -> 'Scenario':
        """Read and validate a scenario file; ValueError names the file and the field."""
        import yaml  # only scenario users need PyYAML

        path = Path(path)
        name = shown_path(path)
        raw = None
        try:
            if stat.S_ISREG(path.stat().st_mode):   # never read a device or a pipe
                with path.open('rb') as stream:
                    raw = stream.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise ValueError(f'{name}: scenario file not found') from None
        except OSError as exc:
            raise ValueError(f'{name}: cannot read scenario file: {exc.strerror}') from None
        except ValueError as exc:   # e.g. an embedded null byte
            raise ValueError(f'{name}: not a usable file name ({exc})') from None
        if raw is None:
            raise ValueError(f'{name}: not a regular file')
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f'{name}: too large for a scenario file (over {MAX_FILE_BYTES} '
                             f'bytes)')
        try:
            text = raw.decode('utf-8')
        except UnicodeDecodeError as exc:
            raise ValueError(f'{name}: not a text file (byte {exc.start} is not UTF-8)') \
                from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, 'problem_mark', None)
            where = f' at line {mark.line + 1}' if mark is not None else ''
            problem = getattr(exc, 'problem', None) or type(exc).__name__
            raise ValueError(f'{name}: malformed YAML: {problem}{where}') from None
        return cls.from_dict(data, source=name, default_name=path.stem)

    @classmethod
    def from_dict(cls, data, source='<scenario>', default_name='scenario') -> 'Scenario':
        def fail(where, message):
            raise ValueError(f'{source}: {where}: {message}')

        if not isinstance(data, dict):
            fail('top level',
                 f'must be a mapping with "name" and "steps", got {excerpt(data)}')
        unknown = sorted(set(data) - {'name', 'description', 'steps'})
        if unknown:
            fail(_key(unknown[0]), 'unknown key; expected name, description, steps')
        name = data.get('name', default_name)
        if not isinstance(name, str) or not name:
            fail('name', f'must be a non-empty string, got {excerpt(name)}')
        raw_steps = data.get('steps')
        if not isinstance(raw_steps, list) or not raw_steps:
            fail('steps', f'must be a non-empty list, got {excerpt(raw_steps)}')

        steps = []
        for i, raw in enumerate(raw_steps):
            where = f'steps[{i}]'
            if not isinstance(raw, dict):
                fail(where,
                     f'must be a mapping with "at" and "set"/"clear", got {excerpt(raw)}')
            unknown = sorted(set(raw) - {'at', 'set', 'clear'})
            if unknown:
                fail(f'{where}.{_key(unknown[0])}', 'unknown key; expected at, set, clear')
            if 'at' not in raw:
                fail(f'{where}.at', 'missing')
            at = raw['at']
            if not is_finite_number(at) or at < 0:
                fail(f'{where}.at',
                     f'must be a finite number of seconds >= 0, got {excerpt(at)}')
            if steps and at < steps[-1].at:
                fail(f'{where}.at', f'steps must be in time order, {at:g} s comes after '
                                    f'{steps[-1].at:g} s')
            if 'set' not in raw and 'clear' not in raw:
                fail(where, 'needs "set" and/or "clear"')
            values = raw.get('set', {})
            if not isinstance(values, dict):
                fail(f'{where}.set',
                     f'must be a mapping of field: value, got {excerpt(values)}')
            checked = {}
            for key, value in values.items():
                if key not in FIELDS:
                    fail(f'{where}.set.{_key(key)}',
                         f'unknown field; known: {", ".join(FIELDS)}')
                try:
                    checked[key] = FIELDS[key](value)
                except _Invalid as exc:
                    fail(f'{where}.set.{key}', str(exc))
            clear = raw.get('clear', [])
            if not isinstance(clear, list):
                fail(f'{where}.clear', f'must be a list of field names, got {excerpt(clear)}')
            for j, key in enumerate(clear):
                if key not in FIELDS:
                    fail(f'{where}.clear[{j}]',
                         f'unknown field {excerpt(key)}; known: {", ".join(FIELDS)}')
            steps.append(Step(float(at), checked, tuple(clear)))
        return cls(name, tuple(steps), source)

    @property
    def duration(self) -> float:
        """Time of the last step, in seconds."""
        return self.steps[-1].at

    def overrides_at(self, t: float) -> dict:
        """Return the overrides in force ``t`` seconds after the scenario started."""
        if math.isnan(t):
            raise ValueError('t: must be a number of seconds, got nan')
        overrides = {}
        for step in self.steps:
            if step.at > t:
                break
            for key in step.clear:
                overrides.pop(key, None)
            overrides.update(step.values)
        return overrides

    def apply(self, snapshot: ResourceSnapshot, t: float,
              capacity: CapacityConfig = CapacityConfig()) -> ResourceSnapshot:
        """Return ``snapshot`` with the overrides at ``t``, usable CPUs recomputed."""
        return apply_overrides(snapshot, self.overrides_at(t), capacity)


def _describe(key, value) -> str:
    if isinstance(value, bool):
        value = 'true' if value else 'false'
    elif isinstance(value, float):
        value = f'{value:g}'
    return f'{key}={value}'


def apply_overrides(snapshot: ResourceSnapshot, overrides: dict,
                    capacity: CapacityConfig = CapacityConfig()) -> ResourceSnapshot:
    """Return a copy of ``snapshot`` with ``overrides`` and usable/availability redone."""
    snap = snapshot.copy()
    freq_scale = 1.0
    if 'cpus' in overrides:
        cap = overrides['cpus']
        snap.cpu_count_allowed = min(snap.cpu_count_allowed, cap) if (
            snap.cpu_count_allowed > 0) else cap
    if 'cpu_utilization' in overrides:
        extra = overrides['cpu_utilization']
        snap.cpu_utilization = [min(1.0, (0.0 if math.isnan(u) else u) + extra)
                                for u in snap.cpu_utilization]
        total = snap.cpu_utilization_total
        snap.cpu_utilization_total = min(1.0, (0.0 if math.isnan(total) else total) + extra)
    if 'freq_scale' in overrides:
        scale = overrides['freq_scale']
        if snap.cpu_freq_current_mhz:
            snap.cpu_freq_current_mhz = [f * scale for f in snap.cpu_freq_current_mhz]
        else:
            freq_scale = scale  # no frequencies to scale: scale availability itself
    if 'power_mode' in overrides:
        snap.power_mode = overrides['power_mode']
    if overrides.get('gpu_available') is False:
        snap.gpu_present, snap.gpu_name = False, ''
        for name in ('gpu_utilization', 'gpu_freq_mhz', 'gpu_freq_max_mhz',
                     'gpu_memory_used_mb', 'gpu_memory_total_mb'):
            setattr(snap, name, math.nan)
    if 'memory_available_mb' in overrides:
        value = overrides['memory_available_mb']
        total = snap.memory_total_mb
        snap.memory_available_mb = value if math.isnan(total) else min(value, total)
    snap.overrides = [_describe(k, overrides[k]) for k in FIELDS if k in overrides]
    return estimate(snap, capacity, freq_scale)
