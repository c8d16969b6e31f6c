"""Operating-point libraries: the measured menu a worker can switch between.

A library is one YAML file per target and device (for example
``config/generated/operating_points_translation_cpu.yaml``). Each point names
a sub-network (and, for translation, a beam policy), its measured latency at
each CPU thread count, its predicted latency and its quality. The design-time tools write
libraries; the manager reads them to pick a point that fits a budget.

File layout::

    target: translation          # or perception
    device: cpu                  # cpu | cuda
    engine: ctranslate2          # torch | ctranslate2 (translation); absent: torch
    compute_type: int8           # what the engine computes in; absent: float32
    vocabulary_map_sha256: ...   # ctranslate2: the map the points were measured with;
                                 # absent: the whole vocabulary was scored
    quality_metric: bleu         # bleu | accuracy
    meta: {host: ..., torch_version: ..., created: ..., source: ...}
    points:
      - name: tr_cpu_a
        subnet: {encoder_embed_dim: 256, ...}   # plain key/values
        beam: {mode: fixed, width: 5}           # translation only
        latency_ms: {1: 80.1, 2: 47.9}           # measured, by thread count
        predicted_latency_ms: 46.0
        quality: 27.4
        metrics: {val_loss: 3.1, params: 14200000}
"""

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Any

import yaml

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.validation import is_finite_number, is_number, require_finite, require_int

TARGETS = ('translation', 'perception')
DEVICES = ('cpu', 'cuda')
# What runs a library's points. Latencies measured on one engine say nothing of
# another (CTranslate2 runs the same sub-network several times faster), so a
# library records its engine and a worker refuses a library made for another.
ENGINES = ('torch', 'ctranslate2')


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    target: str
    subnet: dict
    latency_ms: dict  # thread count -> measured milliseconds
    quality: float
    predicted_latency_ms: float = math.nan
    beam: BeamPolicy | None = None
    metrics: dict = field(default_factory=dict)

    def latency_at(self, threads):
        """Measured latency with ``threads`` CPU threads.

        An unmeasured count falls back to the nearest measured count below it
        (fewer threads is the pessimistic side); below the smallest measured
        count, the smallest one scaled linearly, as if work were perfectly
        parallel, which again over- rather than under-estimates.
        """
        require_int('threads', threads, 1)
        if threads in self.latency_ms:
            return self.latency_ms[threads]
        lower = [t for t in self.latency_ms if t < threads]
        if lower:
            return self.latency_ms[max(lower)]
        smallest = min(self.latency_ms)
        return self.latency_ms[smallest] * smallest / threads

    def to_dict(self):
        data = {'name': self.name, 'subnet': dict(self.subnet)}
        if self.beam is not None:
            data['beam'] = self.beam.to_dict()
        data['latency_ms'] = {int(t): float(ms) for t, ms in sorted(self.latency_ms.items())}
        data['predicted_latency_ms'] = float(self.predicted_latency_ms)
        data['quality'] = float(self.quality)
        if self.metrics:
            data['metrics'] = dict(self.metrics)
        return data


def _point_from_dict(data, target, where):
    if not isinstance(data, dict):
        raise ValueError(f'{where}: expected a mapping, got {type(data).__name__}')
    for key in ('name', 'subnet', 'latency_ms', 'quality'):
        if key not in data:
            raise ValueError(f'{where}: missing field {key!r}')
    name = data['name']
    if not isinstance(name, str) or not name:
        raise ValueError(f'{where}.name: must be a non-empty string, got {name!r}')
    if not isinstance(data['subnet'], dict):
        raise ValueError(f'{where}.subnet: expected a mapping')
    latency = data['latency_ms']
    if not isinstance(latency, dict) or not latency:
        raise ValueError(f'{where}.latency_ms: expected a non-empty mapping thread count -> ms')
    parsed_latency = {}
    for threads, ms in latency.items():
        try:
            threads = int(threads)
        except (TypeError, ValueError):
            raise ValueError(f'{where}.latency_ms: thread count {threads!r} is not an integer') \
                from None
        if threads < 1 or not is_finite_number(ms) or ms <= 0:
            raise ValueError(f'{where}.latency_ms[{threads}]: must be a positive number of '
                             f'milliseconds at >= 1 thread, got {ms!r}')
        parsed_latency[threads] = float(ms)
    quality = data['quality']
    require_finite(f'{where}.quality', quality)
    predicted = data.get('predicted_latency_ms', math.nan)
    if predicted is None:
        predicted = math.nan
    if not is_number(predicted):
        raise ValueError(f'{where}.predicted_latency_ms: must be a number, got {predicted!r}')
    beam = None
    if data.get('beam') is not None:
        try:
            beam = BeamPolicy.from_dict(data['beam'])
        except (TypeError, ValueError) as error:
            raise ValueError(f'{where}.{error}') from None
    metrics = data.get('metrics') or {}
    if not isinstance(metrics, dict):
        raise ValueError(f'{where}.metrics: expected a mapping')
    unknown = set(data) - {'name', 'subnet', 'beam', 'latency_ms', 'predicted_latency_ms',
                           'quality', 'metrics'}
    if unknown:
        raise ValueError(f'{where}: unknown field(s) {sorted(unknown)}')
    return OperatingPoint(name=name, target=target, subnet=dict(data['subnet']),
                          latency_ms=parsed_latency, quality=float(quality),
                          predicted_latency_ms=float(predicted), beam=beam,
                          metrics=dict(metrics))


def _map_words(digest):
    if not digest:
        return 'scoring the whole vocabulary'
    return f'with vocabulary map sha256 {digest[:12]}'


@dataclass
class OperatingPointLibrary:
    target: str
    device: str
    quality_metric: str
    points: list
    meta: dict = field(default_factory=dict)
    engine: str = 'torch'
    compute_type: str = 'float32'
    vocabulary_map_sha256: str = ''   # '': measured scoring the whole vocabulary

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f'target: must be one of {TARGETS}, got {self.target!r}')
        if self.device not in DEVICES:
            raise ValueError(f'device: must be one of {DEVICES}, got {self.device!r}')
        if self.engine not in ENGINES:
            raise ValueError(f'engine: must be one of {ENGINES}, got {self.engine!r}')
        if not isinstance(self.compute_type, str) or not self.compute_type:
            raise ValueError(f'compute_type: must be a name, got {self.compute_type!r}')
        digest = self.vocabulary_map_sha256
        if not isinstance(digest, str) or (digest and (
                len(digest) != 64 or digest.strip('0123456789abcdef'))):
            raise ValueError(f'vocabulary_map_sha256: must be a SHA-256 in hex, got {digest!r}')
        if digest and self.engine != 'ctranslate2':
            raise ValueError(f'vocabulary_map_sha256: a vocabulary map is for the ctranslate2 '
                             f'engine, this library is for {self.engine}')
        names = [p.name for p in self.points]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f'points: duplicate name(s) {duplicates}')

    @property
    def names(self):
        return [p.name for p in self.points]

    def get(self, name):
        for point in self.points:
            if point.name == name:
                return point
        raise KeyError(f'unknown operating point {name!r} for {self.target}; '
                       f'known: {", ".join(self.names) or "(none)"}')

    def by_quality(self):
        """Points from best to worst quality (ties: faster first)."""
        return sorted(self.points, key=lambda p: (-p.quality, min(p.latency_ms.values())))

    def fastest(self, threads=1):
        return min(self.points, key=lambda p: p.latency_at(threads))

    def check_runs_on(self, engine, device, compute_type=None, where='library'):
        """Refuse, naming both sides, a library measured on another engine or device."""
        made = f'{self.engine} {self.compute_type} on {self.device}'
        if self.engine != engine or self.device != device or (
                compute_type is not None and self.compute_type != compute_type):
            wanted = f'{engine} {compute_type or ""} on {device}'.replace('  ', ' ')
            raise ValueError(f'{where}: made for {made}, this worker runs {wanted}; its '
                             'latencies do not hold here: give the library made for it')

    def check_vocabulary_map(self, digest, where='library'):
        """Refuse, naming both, a library measured with another vocabulary map (or none)."""
        if digest != self.vocabulary_map_sha256:
            raise ValueError(f'{where}: measured {_map_words(self.vocabulary_map_sha256)}, this '
                             f'worker runs {_map_words(digest)}; its latencies and qualities do '
                             'not hold here: give the map it was made with, or re-make it')

    def to_dict(self):
        data = {'target': self.target, 'device': self.device, 'engine': self.engine,
                'compute_type': self.compute_type}
        if self.vocabulary_map_sha256:
            data['vocabulary_map_sha256'] = self.vocabulary_map_sha256
        return {**data, 'quality_metric': self.quality_metric, 'meta': dict(self.meta),
                'points': [p.to_dict() for p in self.points]}

    @classmethod
    def from_dict(cls, data, where='library'):
        if not isinstance(data, dict):
            raise ValueError(f'{where}: expected a mapping at the top level')
        for key in ('target', 'device', 'quality_metric', 'points'):
            if key not in data:
                raise ValueError(f'{where}: missing field {key!r}')
        if not isinstance(data['points'], list) or not data['points']:
            raise ValueError(f'{where}.points: expected a non-empty list')
        target = data['target']
        if target not in TARGETS:
            raise ValueError(f'{where}.target: must be one of {TARGETS}, got {target!r}')
        points = [_point_from_dict(p, target, f'{where}.points[{i}]')
                  for i, p in enumerate(data['points'])]
        try:
            return cls(target=target, device=data['device'],
                       quality_metric=str(data['quality_metric']), points=points,
                       meta=dict(data.get('meta') or {}),
                       engine=data.get('engine', 'torch'),
                       compute_type=data.get('compute_type', 'float32'),
                       vocabulary_map_sha256=data.get('vocabulary_map_sha256', ''))
        except ValueError as error:
            raise ValueError(f'{where}.{error}') from None

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            text = path.read_text(encoding='utf-8')
        except OSError as error:
            raise ValueError(f'{path}: cannot read operating-point library ({error.strerror})') \
                from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f'{path}: malformed YAML ({error})'.replace('\n', ' ')) from None
        return cls.from_dict(data, where=path.name)

    def save(self, path):
        """Write atomically: a reader never sees a half-written library."""
        write_yaml_atomic(path, self.to_dict())


def load_timed_libraries(paths, workload) -> list:
    """The libraries at ``paths``, each refused unless timed with the latency ``workload``.

    Latencies of different workloads (sentences, lengths, drift probe) do not
    compare, so a bench that times points again must use the libraries' own.
    """
    libraries = [OperatingPointLibrary.load(path) for path in paths]
    for path, library in zip(paths, libraries, strict=True):
        if library.meta.get('workload') != workload:
            raise ValueError(f'{path}: measured with workload {library.meta.get("workload")!r}, '
                             f'this times {workload!r}')
    return libraries


def write_yaml_atomic(path, data: Any):
    write_atomic(path, yaml.safe_dump(data, sort_keys=False,
                                      default_flow_style=None).encode('utf-8'))
