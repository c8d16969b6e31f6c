"""The latency dataset: random sub-networks timed on this machine, one CSV row per thread count.

Workload (Parry et al., Fig. 2 step 2, at deployment settings): one source
sentence at a time (batch 1), translated by the real beam search at the
deployment width on the super model after ``set_subnet`` (no weight copy, as
at run time). The sentences are a fixed, seeded set of K validation sentences
shared by every config. By default each is decoded for exactly as many tokens
as its reference translation has (EOS banned before, forced there): the
lengths follow real sentences, and every sub-network does the same number of
decoder steps, so the latency is a property of the architecture the
predictor can learn. Letting each sub-network stop at its own EOS
(``eos``) makes the latency follow output lengths that no architecture
feature predicts; the paper's fixed 30 steps (``fixed``) is also offered.

Protocol, built for a machine whose speed drifts (a shared virtual machine): a *sample* is
the mean time per sentence of one pass over the K sentences, after a warm-up
translation (every sample follows a sub-network switch, as at run time).
Samples are taken in R rounds; each round visits every (config, thread count)
once, in a seeded shuffled order, so slow phases of the machine spread over
all configs instead of landing on a few. A drift probe, the largest
sub-network at the deployment beam whatever beam the configs are timed with
(one gauge of the machine's speed), is timed again after every
``reference_every`` samples of a thread count; each sample is scaled by a
reference divided by the probe's time at that moment (interpolated), which
divides out the machine's slow drift. The reference is the probe's median
when the first row of its thread count is computed; it is then written to
the log and kept, so later runs appending to the log (the sweep's winners
and random cloud) land on the same scale instead of moving it under rows
written earlier. The fastest and slowest 10 % of a config's scaled
samples are dropped and the rest averaged (the paper's trimmed mean).

Every config is timed at every CPU thread count 1..N, because the run-time
manager must know what happens when cores disappear. Every sample is appended
to a JSON-lines log beside the CSV as it is taken, so an interrupted run
resumes at the next sample; a config's CSV row is written once all its rounds
are done, and a rerun skips the (config, thread count, beam) combinations the
CSV already has.
"""

import csv
from dataclasses import dataclass, field
from datetime import datetime, timezone
import json
import math
import os
from pathlib import Path
import random
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm
import yaml

from dyn_dnn_ros.resources.hardware import hardware_description
from dyn_dnn_ros.share import share_dir
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.beam_search import BeamSearchConfig, beam_search, top_candidates
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.eval_mode import evaluating

DEVICES = ('cpu', 'cuda')
MODES = ('reference', 'eos', 'fixed')
CSV_COLUMNS = ('key', 'config', 'device', 'threads', 'beam', 'workload', 'torch_version', 'host',
               'latency_ms', 'std_ms', 'n', 'decoder_steps', 'timestamp')
# Dimensions a sampling bias may weight; per-layer ones weight every layer alike.
BIAS_DIMENSIONS = ('encoder_embed_dim', 'decoder_embed_dim', 'ffn_dim', 'heads',
                   'encoder_layers', 'decoder_layers', 'ende')


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_device(device) -> str:
    if device not in DEVICES:
        raise ValueError(f'device: must be one of {DEVICES}, got {device!r}')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device: cuda requested but CUDA is not available on this machine')
    return device


def default_threads(device) -> tuple[int, ...]:
    """Every count 1..N on CPU; on CUDA the host threads matter little, so only N."""
    n = usable_cpus()
    return tuple(range(1, n + 1)) if device == 'cpu' else (n,)


# -- the protocol ------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyProtocol:
    beam: int = 5  # deployment beam width
    sentences: int = 3  # K: fixed validation sentences per sample
    sentence_seed: int = 0
    warmup: int = 1  # untimed translations of one workload sentence before every sample
    repeats: int = 10  # R: samples per (config, thread count), one per round
    trim: float = 0.1  # fraction of the samples dropped at each end
    # 'reference': reference-length decoding; 'eos': the model decides the length;
    # 'fixed': fixed_length steps with EOS banned (the paper)
    mode: str = 'reference'
    fixed_length: int = 30
    reference_every: int = 10  # drift probe after this many samples of a thread count; 0: off

    def __post_init__(self):
        for name, low in (('beam', 1), ('sentences', 1), ('warmup', 0), ('repeats', 1),
                          ('fixed_length', 1), ('reference_every', 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'latency.{name}: must be an integer >= {low}, got {value!r}')
        if not isinstance(self.trim, (int, float)) or not 0 <= self.trim < 0.5:
            raise ValueError(f'latency.trim: must be in [0, 0.5), got {self.trim!r}')
        if self.mode not in MODES:
            raise ValueError(f'latency.mode: must be one of {MODES}, got {self.mode!r}')

    @property
    def workload(self) -> str:
        """What was timed and how, as recorded in the CSV: rows of one file must agree on it."""
        length = {'reference': 'ref', 'eos': 'eos'}.get(self.mode, f'fixed{self.fixed_length}')
        drift = f'-probe{self.reference_every}' if self.reference_every else ''
        return f'{length}-k{self.sentences}-seed{self.sentence_seed}{drift}'


def trimmed_stats(samples, trim) -> tuple[float, float, int]:
    """Mean, standard deviation and count of ``samples`` without the extreme ``trim`` fractions."""
    values = sorted(samples)
    if not values:
        raise ValueError('samples: need at least one timing')
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f'samples: timings must be finite and >= 0, got {values}')
    cut = int(len(values) * trim)
    kept = values[cut:len(values) - cut]
    return statistics.fmean(kept), statistics.pstdev(kept), len(kept)


@dataclass(frozen=True)
class Timing:
    latency_ms: float  # trimmed mean time per sentence
    std_ms: float
    n: int  # samples kept
    decoder_steps: float  # mean decoder steps per sentence


@dataclass(frozen=True)
class Sample:
    ms: float  # mean time per sentence of one pass over the workload
    steps: float  # mean decoder steps per sentence


@dataclass(frozen=True)
class Workload:
    """The sentences every sub-network translates when timed, and their reference lengths."""

    sources: tuple  # token-id lists
    target_lengths: tuple  # tokens of each reference translation, EOS excluded

    def __post_init__(self):
        if not self.sources:
            raise ValueError('workload: need at least one sentence')
        if len(self.target_lengths) != len(self.sources):
            raise ValueError(f'workload: {len(self.sources)} sentences but '
                             f'{len(self.target_lengths)} target lengths')


@torch.no_grad()
def fixed_length_search(model, src, width, length) -> int:
    """Beam search of exactly ``length`` steps with EOS forbidden (the paper's protocol)."""
    with evaluating(model):
        device = src.device
        state = model.start_decoding(model.encode(src), beams_per_sentence=width)
        tokens = torch.full((1, width), model.bos_id, dtype=torch.long, device=device)
        # Only the first slot is live at the start, as if the search began with one beam.
        scores = torch.full((1, width), -math.inf, device=device)
        scores[0, 0] = 0.0
        for _ in range(length):
            log_probs = model.decode_step(tokens, state)
            log_probs[:, :, model.eos_id] = -math.inf
            scores, parent, tokens = top_candidates(scores, log_probs, width)
            state.reorder(parent)
    return length


def _searcher(model, protocol, beam):
    """A function (``[1, S]`` source, reference length) -> decoder steps, for the mode."""
    if protocol.mode == 'fixed':
        if beam.mode != 'fixed':
            raise ValueError('latency.mode: fixed-length timing needs a fixed beam width, '
                             f'got {beam.describe()}')
        return lambda src, _: fixed_length_search(model, src, beam.width, protocol.fixed_length)
    config = BeamSearchConfig(beam=beam)
    if protocol.mode == 'reference':
        return lambda src, length: beam_search(model, src, config,
                                               target_lengths=[length])[0].steps
    return lambda src, _: beam_search(model, src, config)[0].steps


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def take_sample(model, cfg: SubnetConfig, sources, protocol: LatencyProtocol, threads,
                beam: BeamPolicy) -> Sample:
    """One sample of ``cfg``: switch to it, warm up, time one pass over ``sources``.

    ``sources``: ``([1, S] tensor, reference length)`` pairs on the model's device.
    """
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f'threads: must be an integer >= 1, got {threads!r}')
    if not sources:
        raise ValueError('sources: need at least one workload sentence')
    model.set_subnet(cfg)
    search = _searcher(model, protocol, beam)
    device = sources[0][0].device
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(protocol.warmup):
            search(*sources[0])
        _sync(device)
        start = time.perf_counter()
        steps = [search(src, length) for src, length in sources]
        _sync(device)
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return Sample(elapsed * 1e3 / len(sources), statistics.fmean(steps))


def load_workload(corpus_dir, tokenizer, count, seed, max_positions) -> Workload:
    """``count`` validation pairs drawn with ``seed``: every config's workload."""
    from dyn_dnn_ros.translation.translator import read_split
    sources, references = read_split(corpus_dir, 'valid')
    encoded = zip(map(tokenizer.encode, sources), map(tokenizer.encode, references), strict=True)
    pairs = [(src, len(ref)) for src, ref in encoded
             if 0 < len(src) < max_positions and 0 < len(ref) < max_positions - 1]
    if len(pairs) < count:
        raise ValueError(f'{corpus_dir}: valid split has {len(pairs)} usable sentence pairs, '
                         f'fewer than the {count} the workload needs')
    chosen = random.Random(seed).sample(pairs, count)
    return Workload(tuple(src for src, _ in chosen), tuple(length for _, length in chosen))


def source_tensors(model, workload: Workload, device) -> list[tuple[torch.Tensor, int]]:
    """``([1, S] tensor, reference length)`` per workload sentence, on ``device``."""
    return [(encode_sources([ids], model.pad_id, model.eos_id).to(device), length)
            for ids, length in zip(workload.sources, workload.target_lengths, strict=True)]


# -- sampling the design space, per device ----------------------------------------------


@dataclass(frozen=True)
class SamplingBias:
    """Relative weights of design-space choices for one device; unlisted choices weigh 1.

    The Dynamic-DNN poster's observation (GPUs prefer shallow and wide, CPUs
    deep and narrow) argues for sampling each device's dataset separately,
    denser where that device's good sub-networks lie.
    """

    weights: dict  # dimension -> {choice: weight}

    def check(self, space: DesignSpace, where='bias'):
        if not isinstance(self.weights, dict):
            raise ValueError(f'{where}: expected a mapping dimension -> {{choice: weight}}')
        for dim, table in self.weights.items():
            if dim not in BIAS_DIMENSIONS:
                raise ValueError(f'{where}: unknown dimension {dim!r}; expected one of '
                                 f'{BIAS_DIMENSIONS}')
            if not isinstance(table, dict) or not table:
                raise ValueError(f'{where}.{dim}: expected a mapping choice -> weight')
            for choice, weight in table.items():
                if choice not in getattr(space, dim):
                    raise ValueError(f'{where}.{dim}: choice {choice!r} not in the design space '
                                     f'{list(getattr(space, dim))}')
                if (not isinstance(weight, (int, float)) or isinstance(weight, bool)
                        or not math.isfinite(weight) or weight < 0):
                    raise ValueError(f'{where}.{dim}[{choice}]: weight must be a finite number '
                                     f'>= 0, got {weight!r}')
            if not any(self.weight(dim, c) > 0 for c in getattr(space, dim)):
                raise ValueError(f'{where}.{dim}: every choice has weight 0')
        return self

    def weight(self, dim, choice) -> float:
        return float(self.weights.get(dim, {}).get(choice, 1.0))


def load_sampling_bias(path, device, space: DesignSpace) -> SamplingBias | None:
    """The ``device`` section of a bias YAML (``cpu: {decoder_layers: {6: 3}, ...}``), if any."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f'{path}: cannot read sampling bias: {err}') from None
    if not isinstance(data, dict) or set(data) - set(DEVICES):
        raise ValueError(f'{path}: expected sections among {DEVICES}, got '
                         f'{sorted(data) if isinstance(data, dict) else type(data).__name__}')
    section = data.get(device)
    if section is None:
        return None
    return SamplingBias(section).check(space, where=f'{path}:{device}')


def sample_config(space: DesignSpace, rng: random.Random,
                  bias: SamplingBias | None = None) -> SubnetConfig:
    """One random sub-network: HAT's uniform sampling, or weighted by ``bias``."""
    if bias is None:
        return space.sample(rng)

    def pick(dim):
        choices = getattr(space, dim)
        return rng.choices(choices, weights=[bias.weight(dim, c) for c in choices])[0]

    el, dl = pick('encoder_layers'), pick('decoder_layers')
    ende = [e for e in space.ende if e <= el]
    ende_weights = [bias.weight('ende', e) for e in ende]
    if not any(ende_weights):  # the bias weighted only spans this encoder depth cannot use
        ende_weights = [1.0] * len(ende)
    return SubnetConfig(
        encoder_embed_dim=pick('encoder_embed_dim'), decoder_embed_dim=pick('decoder_embed_dim'),
        encoder_layers=el, decoder_layers=dl,
        encoder_ffn=tuple(pick('ffn_dim') for _ in range(el)),
        encoder_heads=tuple(pick('heads') for _ in range(el)),
        decoder_ffn=tuple(pick('ffn_dim') for _ in range(dl)),
        decoder_self_heads=tuple(pick('heads') for _ in range(dl)),
        decoder_cross_heads=tuple(pick('heads') for _ in range(dl)),
        decoder_ende=tuple(rng.choices(ende, weights=ende_weights)[0] for _ in range(dl)))


def dataset_configs(space: DesignSpace, count, seed, bias=None) -> list[SubnetConfig]:
    """The smallest and largest sub-networks, then distinct random ones: ``count`` in all.

    Deterministic in ``seed``, so a resumed run measures the same list. The two
    extremes anchor the predictor at both ends of the latency range.
    """
    if not isinstance(count, int) or count < 2:
        raise ValueError(f'samples: must be an integer >= 2, got {count!r}')
    rng = random.Random(seed)
    configs = {c.key(): c for c in (space.smallest(), space.largest())}
    attempts = 0
    while len(configs) < count and attempts < 100 * count:
        cfg = sample_config(space, rng, bias)
        configs.setdefault(cfg.key(), cfg)
        attempts += 1
    return list(configs.values())


# -- the CSV -----------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyRow:
    config: SubnetConfig
    device: str
    threads: int
    beam: BeamPolicy
    workload: str
    latency_ms: float
    std_ms: float
    n: int
    decoder_steps: float
    torch_version: str = str(torch.__version__)
    host: str = field(default_factory=hardware_description)
    timestamp: str = ''

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def beam_json(self) -> str:
        return json.dumps(self.beam.to_dict(), sort_keys=True)

    def to_record(self) -> dict:
        return {
            'key': self.key, 'config': json.dumps(self.config.to_dict(), sort_keys=True),
            'device': self.device, 'threads': self.threads, 'beam': self.beam_json,
            'workload': self.workload, 'torch_version': self.torch_version, 'host': self.host,
            'latency_ms': f'{self.latency_ms:.4f}', 'std_ms': f'{self.std_ms:.4f}',
            'n': self.n, 'decoder_steps': f'{self.decoder_steps:.3f}',
            'timestamp': self.timestamp,
        }


def _number(record, name, where, kind=float, minimum=0.0, strict=False):
    text = record.get(name)
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: {name}={text!r} is not a number') from None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = '>' if strict else '>='
        raise ValueError(f'{where}: {name}={text!r} must be finite and {relation} {minimum}')
    return value


def _row_from_record(record, where, space=None) -> LatencyRow:
    try:
        config = SubnetConfig.from_dict(json.loads(record['config']))
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: bad config {record.get("config")!r}: {err}') from None
    if space is not None:
        try:
            space.validate(config)
        except ValueError as err:
            raise ValueError(f'{where}: config {config.key()} is outside the design space: '
                             f'{err}') from None
    if record['key'] != config.key():
        raise ValueError(f'{where}: key {record["key"]!r} does not match its config '
                         f'({config.key()})')
    if record['device'] not in DEVICES:
        raise ValueError(f'{where}: device {record["device"]!r} not in {DEVICES}')
    try:
        beam = BeamPolicy.from_dict(json.loads(record['beam']))
    except (TypeError, ValueError) as err:
        raise ValueError(f'{where}: bad beam {record.get("beam")!r}: {err}') from None
    return LatencyRow(
        config=config, device=record['device'],
        threads=_number(record, 'threads', where, int, 1), beam=beam,
        workload=record['workload'],
        latency_ms=_number(record, 'latency_ms', where, strict=True),
        std_ms=_number(record, 'std_ms', where),
        n=_number(record, 'n', where, int, 1),
        decoder_steps=_number(record, 'decoder_steps', where, strict=True),
        torch_version=record['torch_version'], host=record['host'],
        timestamp=record['timestamp'])


def read_latency_csv(path, space: DesignSpace | None = None, allow_empty=False):
    """Rows of a latency CSV, validated (and checked against ``space`` when given)."""
    path = Path(path)
    try:
        with open(path, newline='', encoding='utf-8') as stream:
            reader = csv.DictReader(stream)
            columns = reader.fieldnames
            if not columns:
                raise ValueError(f'{path}: empty file, no CSV header')
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise ValueError(f'{path}: not a latency CSV, missing column(s) {missing}')
            rows = []
            for line, record in enumerate(reader, start=2):
                if None in record or any(record[c] is None for c in CSV_COLUMNS):
                    raise ValueError(f'{path}:{line}: malformed row (wrong number of fields)')
                rows.append(_row_from_record(record, f'{path}:{line}', space))
    except OSError as err:
        raise ValueError(f'{path}: cannot read latency CSV ({err.strerror})') from None
    if not rows and not allow_empty:
        raise ValueError(f'{path}: no measurements')
    return rows


class LatencyCsv:
    """An append-only latency CSV: what is measured already, and where new rows go."""

    def __init__(self, path, device, workload):
        self.path, self.device, self.workload = Path(path), device, workload
        self.rows = read_latency_csv(self.path, allow_empty=True) if self.path.is_file() else []
        for i, row in enumerate(self.rows):
            if (row.device, row.workload) != (device, workload):
                raise ValueError(f'{self.path}: row {i + 2} was measured on {row.device} with '
                                 f'workload {row.workload!r}, this run is {device} with '
                                 f'{workload!r}; write to another file')
        self._index = {(r.key, r.threads, r.beam_json): r for r in self.rows}

    def get(self, cfg, threads, beam: BeamPolicy):
        return self._index.get((cfg.key(), threads, json.dumps(beam.to_dict(), sort_keys=True)))

    def append(self, row: LatencyRow):
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a', newline='', encoding='utf-8') as stream:
            writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row.to_record())
        self.rows.append(row)
        self._index[(row.key, row.threads, row.beam_json)] = row


def samples_beside(csv_path) -> Path:
    """The sample log a latency CSV keeps unless told otherwise: beside it, named after it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + '.samples.jsonl')


class SampleLog:
    """Every sample of a measurement run, one JSON line each, appended as it is taken.

    Holds the samples of configs (per config, thread count, beam and round) and
    of the drift probe (per thread count and the probe's beam), each with its
    wall-clock time, so a resumed run can still interpolate the probe across
    both runs, and the probe's frozen reference per thread count and beam.
    """

    def __init__(self, path, device, workload):
        self.path, self.device, self.workload = Path(path), device, workload
        self.cells, self.probes, self.references = {}, {}, {}
        if self.path.is_file() and self.path.stat().st_size:
            self._read()
        else:
            self._write({'device': device, 'workload': workload})

    def _read(self):
        text = self.path.read_text(encoding='utf-8')
        if not text.endswith('\n'):  # a run killed mid-write: drop the partial line
            text = text[:text.rfind('\n') + 1]
            self.path.write_text(text, encoding='utf-8')
        if not text:
            self._write({'device': self.device, 'workload': self.workload})
            return
        lines = text.splitlines()
        try:
            header = json.loads(lines[0])
            records = [json.loads(line) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, IndexError) as err:
            raise ValueError(f'{self.path}: not a latency sample log ({err})') from None
        if header != {'device': self.device, 'workload': self.workload}:
            raise ValueError(f'{self.path}: samples of {header}, this run is {self.device} with '
                             f'workload {self.workload!r}; write to another file')
        for record in records:
            self._remember(record)

    def _remember(self, record):
        series = (record['threads'], record['beam'])
        if record['kind'] == 'reference':
            self.references.setdefault(series, record['ms'])
            return
        entry = (record['time'], record['ms'], record['steps'])
        if record['kind'] == 'probe':
            self.probes.setdefault(series, []).append(entry[:2])
        else:
            self.cells.setdefault((record['key'], *series), {})[record['round']] = entry

    def _write(self, record):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, 'a', encoding='utf-8') as stream:
            stream.write(json.dumps(record, sort_keys=True) + '\n')

    def add(self, kind, key, threads, beam_json, round_, sample: Sample):
        record = {'kind': kind, 'key': key, 'threads': threads, 'beam': beam_json,
                  'round': round_, 'time': time.time(), 'ms': sample.ms, 'steps': sample.steps}
        self._write(record)
        self._remember(record)

    def has(self, key, threads, beam_json, round_) -> bool:
        return round_ in self.cells.get((key, threads, beam_json), {})

    def reference(self, threads, beam_json) -> float:
        """The probe time all samples of a series are scaled to, frozen at first use.

        The median of the probes so far, written to the log the first time it is
        asked for: a median of *all* probes would move whenever a later run
        appends some, and rows computed before and after would disagree.
        """
        series = (threads, beam_json)
        if series not in self.references:
            probe_ms = [ms for _, ms in self.probes[series]]
            self._write({'kind': 'reference', 'threads': threads, 'beam': beam_json,
                         'ms': float(np.median(probe_ms)), 'probes': len(probe_ms),
                         'time': time.time()})
            self.references[series] = float(np.median(probe_ms))
        return self.references[series]

    def start_beside(self, path) -> 'SampleLog':
        """A log at ``path`` with samples of its own on this log's scale.

        A config this log holds is timed again there, in that log's rounds,
        while this log's frozen probe references are copied over (where that
        log has none yet), so its latencies land on the same scale.
        """
        log = SampleLog(path, self.device, self.workload)
        for (threads, beam_json), ms in self.references.items():
            if (threads, beam_json) not in log.references:
                log._write({'kind': 'reference', 'threads': threads, 'beam': beam_json,
                            'ms': ms, 'copied_from': str(self.path), 'time': time.time()})
                log.references[(threads, beam_json)] = ms
        return log

    def timing(self, key, threads, beam_json, trim, probe_beam_json=None) -> Timing:
        """The trimmed mean of a config's samples, each scaled by the drift probe.

        ``probe_beam_json``: the beam the probe ran with (default: the config's).
        """
        samples = self.cells[(key, threads, beam_json)].values()
        times = [t for t, _, _ in samples]
        ms = np.array([m for _, m, _ in samples])
        probe_beam_json = probe_beam_json or beam_json
        probes = sorted(self.probes.get((threads, probe_beam_json), []))
        if probes:
            probe_times, probe_ms = zip(*probes, strict=True)
            reference = self.reference(threads, probe_beam_json)
            ms = ms * reference / np.interp(times, probe_times, probe_ms)
        mean, std, n = trimmed_stats(ms.tolist(), trim)
        return Timing(mean, std, n, statistics.fmean(steps for _, _, steps in samples))


def measure_configs(model, configs, workload: Workload, protocol: LatencyProtocol, threads,
                    csv_path, device='cpu', beam: BeamPolicy | None = None, progress=True,
                    desc='latency', samples_path=None) -> list[LatencyRow]:
    """Time every config at every thread count into ``csv_path``, skipping measured ones.

    The protocol of the module docstring: ``protocol.repeats`` rounds, each over
    all (config, thread count) pairs in a seeded order, with the drift probe
    (the largest sub-network at the deployment beam) timed per thread count.
    Samples go to ``samples_path`` (default: beside the CSV); calls that share
    it share the probe's frozen reference, so their latencies are on one
    scale. The model must already be on ``device``. Returns the rows of
    ``configs`` x ``threads`` (old and new), in that order.
    """
    threads = _check_threads(threads)
    return measure_pairs(model, [(c, t) for c in configs for t in threads], workload, protocol,
                         csv_path, device, beam, progress, desc, samples_path)


def _check_threads(threads) -> tuple:
    threads = tuple(threads)
    if not threads or any(not isinstance(t, int) or isinstance(t, bool) or t < 1
                          for t in threads):
        raise ValueError(f'threads: must be integers >= 1, got {threads!r}')
    return threads


def measure_pairs(model, pairs, workload: Workload, protocol: LatencyProtocol, csv_path,
                  device='cpu', beam: BeamPolicy | None = None, progress=True,
                  desc='latency', samples_path=None) -> list[LatencyRow]:
    """``measure_configs`` for (config, thread count) pairs: each config at its own counts.

    All pairs share the rounds and the probes, so a set timed at every thread
    count and a set timed at one are on one scale. Returns the pairs' rows in
    their order.
    """
    check_device(device)
    pairs = list(pairs)
    _check_threads([t for _, t in pairs] or [1])
    beam = BeamPolicy('fixed', protocol.beam) if beam is None else beam
    beam_json = json.dumps(beam.to_dict(), sort_keys=True)
    probe_beam = BeamPolicy('fixed', protocol.beam)
    csv_path = Path(csv_path)
    table = LatencyCsv(csv_path, device, protocol.workload)
    todo = list({(c.key(), t): (c, t) for c, t in pairs
                 if table.get(c, t, beam) is None}.values())
    if todo:
        log = SampleLog(samples_path or samples_beside(csv_path),
                        device, protocol.workload)
        tensors = source_tensors(model, workload, torch.device(device))
        _take_rounds(model, todo, tensors, protocol, beam, probe_beam, log, progress, desc)
        for cfg, t in todo:
            timing = log.timing(cfg.key(), t, beam_json, protocol.trim,
                                json.dumps(probe_beam.to_dict(), sort_keys=True))
            table.append(LatencyRow(
                config=cfg, device=device, threads=t, beam=beam, workload=protocol.workload,
                # Rounded as the CSV stores them, so fresh and resumed rows are alike.
                latency_ms=round(timing.latency_ms, 4), std_ms=round(timing.std_ms, 4),
                n=timing.n, decoder_steps=round(timing.decoder_steps, 3),
                timestamp=datetime.now(timezone.utc).isoformat(timespec='seconds')))
    return [table.get(c, t, beam) for c, t in pairs]


def _take_rounds(model, todo, sources, protocol, beam, probe_beam, log, progress, desc):
    beam_json = json.dumps(beam.to_dict(), sort_keys=True)
    probe_beam_json = json.dumps(probe_beam.to_dict(), sort_keys=True)
    probe = model.space.largest()
    # A (re)started run probes each thread count before its first sample.
    since_probe = {t: protocol.reference_every for _, t in todo}

    def probe_if_due(t, force=False):
        if protocol.reference_every and (force or since_probe[t] >= protocol.reference_every):
            log.add('probe', probe.key(), t, probe_beam_json, None,
                    take_sample(model, probe, sources, protocol, t, probe_beam))
            since_probe[t] = 0

    done = sum(log.has(c.key(), t, beam_json, r) for c, t in todo
               for r in range(protocol.repeats))
    with tqdm(total=len(todo) * protocol.repeats, initial=done, desc=desc, unit='sample',
              disable=not progress, dynamic_ncols=True) as bar:
        for round_ in range(protocol.repeats):
            order = list(todo)
            random.Random(round_).shuffle(order)  # seeded: a resumed run keeps the order
            for cfg, t in order:
                if log.has(cfg.key(), t, beam_json, round_):
                    continue
                probe_if_due(t)
                log.add('config', cfg.key(), t, beam_json, round_,
                        take_sample(model, cfg, sources, protocol, t, beam))
                since_probe[t] += 1
                bar.update()
        if done < len(todo) * protocol.repeats:  # bracket the last samples
            for t in sorted(since_probe):
                probe_if_due(t, force=True)


# -- the whole step -----------------------------------------------------------------------


def _check_budget(budget_s):
    if not isinstance(budget_s, (int, float)) or not math.isfinite(budget_s) or budget_s <= 0:
        raise ValueError(f'budget: must be a positive number of seconds, got {budget_s!r}')


def affordable_count(model, workload: Workload, protocol: LatencyProtocol, threads, budget_s,
                     upper, device='cpu') -> int:
    """How many sub-networks a dataset at ``threads`` can time in about ``budget_s`` seconds.

    The smallest and the largest sub-network are timed as the dataset times them
    (a switch, the warm-up and a pass over the workload, by the wall clock), two
    samples each per thread count after an untimed one; their mean is one
    sample's cost. A config costs ``repeats`` samples per thread count, plus its
    share of the drift probes (the largest sub-network). At most ``upper``.
    A budget that cannot pay for the two extremes is refused, naming the cost.
    """
    _check_budget(budget_s)
    threads = _check_threads(threads)
    sources = source_tensors(model, workload, torch.device(device))
    beam = BeamPolicy('fixed', protocol.beam)
    cost, probe_cost = 0.0, 0.0
    for t in threads:
        walls = {}
        for cfg in (model.space.smallest(), model.space.largest()):
            take_sample(model, cfg, sources, protocol, t, beam)
            began = time.perf_counter()
            for _ in range(2):
                take_sample(model, cfg, sources, protocol, t, beam)
            walls[cfg.key()] = (time.perf_counter() - began) / 2
        cost += statistics.fmean(walls.values())
        probe_cost += walls[model.space.largest().key()]
    per_config = protocol.repeats * (
        cost + (probe_cost / protocol.reference_every if protocol.reference_every else 0.0))
    count = min(upper, int(budget_s / per_config))
    if count < 2:
        raise ValueError(f'budget: {budget_s:.0f} s pays for {count} sub-network(s); one costs '
                         f'{per_config:.1f} s here and the dataset needs at least 2')
    return count


@dataclass(frozen=True)
class LatencyDatasetConfig:
    out: Path = share_dir() / 'runs' / 'design' / 'latency_cpu.csv'
    model_path: Path | None = None  # None: the shipped model
    spm_path: Path | None = None
    corpus_dir: Path = share_dir() / 'data' / 'corpus'
    device: str = 'cpu'
    samples: int = 300
    seed: int = 1
    threads: tuple | None = None  # None: default_threads(device)
    bias_path: Path | None = None
    protocol: LatencyProtocol = LatencyProtocol()
    # Seconds the timing may take: ``samples`` becomes an upper limit and the count is
    # what a calibration says fits (``affordable_count``). None: exactly ``samples``.
    budget_s: float | None = None


def load_model_and_tokenizer(model_path, spm_path, device):
    """The SuperTransformer (eval mode, on ``device``) and its tokenizer."""
    from dyn_dnn_ros.translation.checkpoint import load_model
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    from dyn_dnn_ros.translation.translator import default_model_path, default_spm_path
    tokenizer = Tokenizer(spm_path or default_spm_path())
    model = load_model(model_path or default_model_path(), device=device)
    for name in ('vocab_size', 'pad_id', 'bos_id', 'eos_id'):
        if getattr(model, name) != getattr(tokenizer, name):
            raise ValueError(f'tokenizer {name}={getattr(tokenizer, name)} does not match the '
                             f'model ({getattr(model, name)})')
    return model, tokenizer


def build_latency_dataset(config: LatencyDatasetConfig, progress=True) -> list[LatencyRow]:
    """Measure ``config.samples`` sub-networks at every thread count into ``config.out``."""
    device = check_device(config.device)
    if config.budget_s is not None:  # before the model is loaded
        _check_budget(config.budget_s)
    threads = config.threads or default_threads(device)
    model, tokenizer = load_model_and_tokenizer(config.model_path, config.spm_path, device)
    bias = (load_sampling_bias(config.bias_path, device, model.space)
            if config.bias_path is not None else None)
    p = config.protocol
    workload = load_workload(config.corpus_dir, tokenizer, p.sentences, p.sentence_seed,
                             model.space.max_positions)
    count = config.samples
    if config.budget_s is not None:
        count = affordable_count(model, workload, p, threads, config.budget_s, config.samples,
                                 device)
        if progress:
            print(f'latency: {count} sub-networks fit a budget of {config.budget_s:.0f} s '
                  f'(at most {config.samples})', flush=True)
    # A prefix of the same seeded list, so a budget run resumed with another count
    # keeps the sub-networks it has timed.
    configs = dataset_configs(model.space, count, config.seed, bias)
    return measure_configs(model, configs, workload, p, threads, config.out, device,
                           progress=progress)
