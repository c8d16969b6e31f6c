"""SuperTransformer benchmark: quality, latency, switch cost and memory of its sub-networks.

One run measures, side by side:

(a) BLEU and latency of sub-networks from the smallest to the largest. BLEU:
    sacrebleu corpus BLEU (detokenized, case-sensitive) on the test split at
    beam 5. Latency, HAT's protocol: one real test sentence of 30 tokens,
    batch 1, beam 5, 30 decoder steps with EOS forbidden (``--target-length
    0``: the real beam search, stopping at EOS), a warm-up, ``--repeats`` timed
    runs, the fastest and slowest 10 % dropped and the rest averaged; at 1
    thread and at all threads, on the super model after ``set_subnet`` (the
    run-time path). The timed runs are taken in ``--rounds`` interleaved
    rounds: each round visits every (sub-network, thread count) once, in a
    shuffled order, so the machine's drift over minutes falls on all of them alike
    instead of on whichever was timed during a slow spell; the largest /
    smallest ratio is also given per round.
(b) Switching: ``set_subnet`` times over random switches (p50, p99), the first
    inference after a switch relative to steady state, and ``materialize()``.
(c) Memory: process RSS with the super model serving every sub-network vs one
    compact (materialized) model, each in a fresh interpreter so the numbers
    do not mix, and the weight bytes of the super model and of each compact one.

Writes ``supertransformer_bench.md`` and ``subnet_bleu_latency.png`` under
``runs/bench/``; ``--out`` and ``--png`` naming those in ``docs/`` refresh the
shipped ones.
Every measurement is kept in a JSON state file, so an interrupted run resumes
where it stopped (``--fresh`` starts over).

    .venv/bin/python bench/supertransformer.py --limit 500
"""

import argparse
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
import json
import math
import os
from pathlib import Path
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.resources.cpu import allowed_cpu_count
from dyn_dnn_ros.share import data_path, runs_path
from dyn_dnn_ros.timing import trimmed_stats
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.beam_search import BeamSearchConfig, beam_search
from dyn_dnn_ros.translation.checkpoint import load_model, save_model
from dyn_dnn_ros.translation.design.measured_decoding import fixed_length_search
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.design_space import ladder as core_ladder
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.translator import (
    Translator,
    default_model_path,
    default_spm_path,
    read_split,
    subnet_from_spec,
)

CORPUS_DIR = data_path('corpus')
# The shipped report and plot (docs/supertransformer_bench.md,
# docs/subnet_bleu_latency.png) change only when --out and --png name them.
DEFAULT_OUT = runs_path('bench', 'supertransformer_bench.md')
DEFAULT_PNG = runs_path('bench', 'subnet_bleu_latency.png')
DEFAULT_STATE = runs_path('bench', 'supertransformer.json')
SECTIONS = ('bleu', 'latency', 'switch', 'memory')
SOURCE_TOKENS = 30  # HAT's latency workload: a 30-token source sentence
BEAM = 5
TARGET_LATENCY_RATIO = 4.0  # largest / smallest sub-network latency at beam 5
TARGET_FIRST_RATIO = 1.2  # first inference after a switch / steady state
FIRST_ROUNDS = 5  # switch-then-infer rounds per pair
MATERIALIZE_RUNS = 3
STATE_VERSION = 1  # bump when a measurement changes, so old states are not reused
PROBE_FLAG = '--memory-probe'  # internal: this file run as the fresh-interpreter RSS probe


@dataclass(frozen=True)
class Protocol:
    """How one latency sample is taken and how samples are summarised."""

    width: int = BEAM
    target_length: int = SOURCE_TOKENS  # decoder steps with EOS forbidden; 0: stop at EOS
    repeats: int = 50
    warmup: int = 5
    trim: float = 0.1  # fraction of the samples dropped at each end
    rounds: int = 10  # interleaved rounds the repeats are spread over

    def __post_init__(self):
        for name, low in (('width', 1), ('target_length', 0), ('repeats', 1), ('warmup', 0),
                          ('rounds', 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'{name}: must be an integer >= {low}, got {value!r}')
        if not 0 <= self.trim < 0.5:
            raise ValueError(f'trim: must be in [0, 0.5), got {self.trim!r}')
        if self.rounds > self.repeats:
            raise ValueError(f'rounds: at most repeats ({self.repeats}), got {self.rounds}')

    def runs_in_round(self, index) -> int:
        """Timed runs of round ``index``: the repeats spread evenly, earlier rounds first."""
        return self.repeats // self.rounds + (index < self.repeats % self.rounds)

    def describe(self):
        steps = (f'{self.target_length} decoder steps (EOS forbidden)' if self.target_length
                 else 'beam search until EOS')
        return (f'batch 1, beam {self.width}, {steps}, {self.warmup} warm-up + {self.repeats} '
                f'timed runs in {self.rounds} interleaved rounds (each visit: switch, one '
                f'untimed run, then the timed ones), fastest and slowest {self.trim:.0%} '
                f'dropped, mean of the rest')


@dataclass(frozen=True)
class NamedSubnet:
    name: str
    config: SubnetConfig


# -- choosing the sub-networks ------------------------------------------------------


def ladder(space, count) -> list[NamedSubnet]:
    """The core ladder (``design_space.ladder``), named smallest, step 2, ..., largest."""
    configs = core_ladder(space, count)
    last = len(configs) - 1
    return [NamedSubnet('smallest' if i == 0 else 'largest' if i == last else f'step {i + 1}',
                        subnet) for i, subnet in enumerate(configs)]


def library_subnets(path, space) -> list[NamedSubnet]:
    library = OperatingPointLibrary.load(path)
    if library.target != 'translation':
        raise ValueError(f'{path}: library target is {library.target!r}, expected translation')
    subnets = []
    for point in library.points:
        try:
            subnets.append(NamedSubnet(point.name,
                                       space.validate(SubnetConfig.from_dict(point.subnet))))
        except (TypeError, ValueError) as err:
            raise ValueError(f'{path}: point {point.name!r}: {err}') from None
    return subnets


def subnet_origin(specs, library) -> str:
    if library is not None:
        return f'the points of `{library}` (their own beam policies unused: all at beam {BEAM})'
    if len(specs) == 1 and specs[0].isdigit():
        return f'a {specs[0]}-step ladder of the design space'
    return ', '.join(specs)


def choose_subnets(specs, library, model) -> list[NamedSubnet]:
    """The benchmarked sub-networks, distinct and sorted from the fewest parameters up.

    ``library``: an operating-point YAML; else ``specs``: one integer (a ladder
    of that many steps) or sub-network specs ('smallest', 'largest', YAML files).
    """
    space = model.space
    if library is not None:
        subnets = library_subnets(library, space)
    elif len(specs) == 1 and specs[0].isdigit():
        subnets = ladder(space, int(specs[0]))
    else:
        subnets = [NamedSubnet(spec if spec in ('smallest', 'largest') else Path(spec).stem,
                               subnet_from_spec(spec, space)) for spec in specs]
    distinct = list({s.config: s for s in reversed(subnets)}.values())[::-1]
    if len(distinct) < 2:
        raise ValueError(f'subnets: need at least 2 distinct sub-networks, got {len(distinct)}')
    return sorted(distinct, key=lambda s: model.count_parameters(s.config))


@dataclass(frozen=True)
class LatencySource:
    ids: list  # token ids, no EOS
    text: str  # the detokenized ids
    origin: str  # test.en line number and whether it was cut


def latency_source(tokenizer, corpus_dir, length=SOURCE_TOKENS) -> LatencySource:
    """The first test sentence of exactly ``length`` tokens, else the first longer one, cut."""
    sources, _ = read_split(corpus_dir, 'test')
    encoded = tokenizer.encode_batch(sources)
    for line, ids in enumerate(encoded, 1):
        if len(ids) == length:
            return LatencySource(ids, tokenizer.decode(ids), f'test.en line {line}')
    for line, ids in enumerate(encoded, 1):
        if len(ids) > length:
            return LatencySource(ids[:length], tokenizer.decode(ids[:length]),
                                 f'test.en line {line}, first {length} of {len(ids)} tokens')
    raise ValueError(f'{corpus_dir}/test.en: no sentence has {length} or more tokens')


# -- measuring ------------------------------------------------------------------------


@contextmanager
def torch_threads(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def translate_once(model, src, protocol: Protocol):
    """One latency workload: translate ``src`` ``[1, S]`` with the active sub-network."""
    if protocol.target_length:
        fixed_length_search(model, src, protocol.width, protocol.target_length)
    else:
        beam_search(model, src, BeamSearchConfig(beam=protocol.width))


def timed_ms(run, count) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def weight_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def measure_bleu(translator, subnet, sources, references) -> dict:
    result = translator.evaluate(sources, references, subnet, BeamPolicy('fixed', width=BEAM),
                                 progress=True)
    return {'bleu': result.bleu, 'seconds': result.seconds, 'sentences': result.sentences}


def latency_jobs(subnets, threads) -> list[tuple[int, NamedSubnet]]:
    return [(t, sub) for t in threads for sub in subnets]


def job_key(threads, sub) -> str:
    return f'{sub.config.key()} threads={threads}'


def warm_up_latency(model, jobs, src, protocol: Protocol):
    """``protocol.warmup`` untimed runs of every job, before the first round."""
    for threads, sub in jobs:
        model.set_subnet(sub.config)
        with torch_threads(threads):
            for _ in range(protocol.warmup):
                translate_once(model, src, protocol)


def measure_latency_round(model, jobs, src, protocol: Protocol, index, seed) -> dict:
    """Round ``index``: every job once, in a seeded shuffled order; timed runs by job key."""
    order = list(jobs)
    random.Random(f'{seed}-{index}').shuffle(order)
    samples = {}
    for threads, sub in order:
        model.set_subnet(sub.config)
        with torch_threads(threads):
            translate_once(model, src, protocol)  # the switch's first run is not steady state
            samples[job_key(threads, sub)] = timed_ms(
                lambda: translate_once(model, src, protocol), protocol.runs_in_round(index))
    return samples


def summarise_latency(rounds, key, protocol: Protocol) -> dict:
    """HAT's summary of one job's samples from all rounds, and its mean per round."""
    samples = [ms for r in rounds for ms in r[key]]
    mean, std, kept = trimmed_stats(samples, protocol.trim)
    return {'ms': mean, 'std_ms': std, 'kept': kept, 'min_ms': min(samples),
            'max_ms': max(samples), 'round_ms': [statistics.fmean(r[key]) for r in rounds]}


def measure_switches(model, cfgs, count, seed) -> dict:
    """``set_subnet`` times over ``count`` random switches, each to a different sub-network."""
    rng = random.Random(seed)
    order, current = [], 0
    for _ in range(count):  # drawn before timing, so the timings hold only the switch
        current = rng.choice([i for i in range(len(cfgs)) if i != current])
        order.append(current)
    model.set_subnet(cfgs[0])
    samples = []
    for i in order:
        start = time.perf_counter_ns()
        model.set_subnet(cfgs[i])
        samples.append((time.perf_counter_ns() - start) / 1e3)
    p50, p99 = np.percentile(samples, [50, 99])
    return {'switches': count, 'p50_us': float(p50), 'p99_us': float(p99),
            'mean_us': statistics.fmean(samples), 'max_us': max(samples)}


def measure_first_inference(model, pairs, src, protocol: Protocol, threads) -> list[dict]:
    """First inference after switching ``a -> b`` against steady-state inferences of ``b``.

    Each round runs ``a``, switches to ``b``, times one inference, then times
    steady ones; both sub-networks run once beforehand so that what is left is
    the cost of the switch, not of a process's very first inference.
    """
    steady_per_round = max(2, protocol.repeats // FIRST_ROUNDS)
    rows = []
    with torch_threads(threads):
        for a, b in pairs:
            for sub in (a, b):
                model.set_subnet(sub.config)
                translate_once(model, src, protocol)
            firsts, steady = [], []
            for _ in range(FIRST_ROUNDS):
                model.set_subnet(a.config)
                translate_once(model, src, protocol)
                model.set_subnet(b.config)
                firsts += timed_ms(lambda: translate_once(model, src, protocol), 1)
                steady += timed_ms(lambda: translate_once(model, src, protocol),
                                   steady_per_round)
            steady_ms = trimmed_stats(steady, protocol.trim)[0]
            first_ms = statistics.median(firsts)
            rows.append({'from': a.config.key(), 'to': b.config.key(), 'first_ms': first_ms,
                         'worst_first_ms': max(firsts), 'steady_ms': steady_ms,
                         'ratio': first_ms / steady_ms, 'worst_ratio': max(firsts) / steady_ms,
                         'rounds': FIRST_ROUNDS, 'steady_samples': len(steady)})
    return rows


def first_inference_pairs(subnets) -> list[tuple[NamedSubnet, NamedSubnet]]:
    """A few switches: both ways between the extremes, and between the middle and each end."""
    small, mid, large = subnets[0], subnets[len(subnets) // 2], subnets[-1]
    pairs = [(large, small), (small, large), (large, mid), (small, mid)]
    return [(a, b) for a, b in dict.fromkeys(pairs) if a != b]


def measure_materialize(model, subnet) -> dict:
    model.set_subnet(subnet)
    times = []
    for _ in range(MATERIALIZE_RUNS):
        start = time.perf_counter_ns()
        compact = model.materialize()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return {'ms': statistics.median(times), 'weight_bytes': weight_bytes(compact)}


# -- memory, in fresh interpreters ------------------------------------------------------


def process_memory() -> tuple[float, float]:
    """Current and peak resident set size, MiB (peak only where ``/proc`` reports it)."""
    status = Path('/proc/self/status')
    if status.is_file():
        fields = dict(line.split(':', 1) for line in status.read_text().splitlines()
                      if ':' in line)
        return int(fields['VmRSS'].split()[0]) / 1024, int(fields['VmHWM'].split()[0]) / 1024
    import psutil
    return psutil.Process().memory_info().rss / 2 ** 20, math.nan


def exercise_code_paths(protocol: Protocol):
    """Save, load and run a throwaway 16-token model once.

    Torch imports much of itself lazily on the first model load (about 80 MiB
    of modules here); doing that first puts it in the baseline, so what a real
    load adds over the baseline is its weights and buffers.
    """
    space = DesignSpace(encoder_embed_dim=8, decoder_embed_dim=8, ffn_dim=8, heads=1,
                        encoder_layers=1, decoder_layers=1, ende=1, head_dim=4)
    with tempfile.TemporaryDirectory(prefix='st-bench-') as folder:
        path = Path(folder) / 'throwaway.safetensors'
        save_model(path, SuperTransformer(space, 16, 0, 2, 3, dropout=0.0))
        model = load_model(path)
    translate_once(model, encode_sources([[5] * SOURCE_TOKENS], 0, 3), protocol)


def memory_probe(request) -> dict:
    """In a fresh interpreter: load a model file, run each named sub-network once, report RSS."""
    torch.set_num_threads(request['threads'])
    protocol = Protocol(**request['protocol'])
    exercise_code_paths(protocol)
    baseline, _ = process_memory()
    model = load_model(request['model'])
    loaded, _ = process_memory()
    src = encode_sources([request['source']], model.pad_id, model.eos_id)
    for subnet in request['subnets']:
        model.set_subnet(SubnetConfig.from_dict(subnet))
        translate_once(model, src, protocol)
    after, peak = process_memory()
    return {'baseline_mb': baseline, 'loaded_mb': loaded, 'after_mb': after, 'peak_mb': peak,
            'weight_bytes': weight_bytes(model), 'points': len(request['subnets'])}


def run_probe(request) -> dict:
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), PROBE_FLAG],
                            input=json.dumps(request), capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f'memory probe of {request["model"]} failed:\n{result.stderr}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_memory(model, model_path, subnets, source, protocol: Protocol) -> dict:
    """RSS of the super model serving every point vs compact models of the extremes.

    A compact model is what a deployment without weight sharing would load: the
    materialized sub-network saved as its own file, read by a fresh process.
    """
    common = {'source': source.ids, 'threads': 1, 'protocol': asdict(protocol)}
    jobs = [('super', model_path, subnets)]
    with tempfile.TemporaryDirectory(prefix='st-bench-') as folder:
        for sub in (subnets[0], subnets[-1]):
            model.set_subnet(sub.config)
            path = Path(folder) / f'compact-{sub.config.key()}.safetensors'
            save_model(path, model.materialize())
            jobs.append(('compact', path, [sub]))
        # The probes run side by side: each reports its own process's RSS, which the
        # others do not change, and their interpreter start-ups overlap.
        requests = [{**common, 'model': str(path), 'subnets': [p.config.to_dict() for p in points]}
                    for _, path, points in jobs]
        print(f'memory probes: {len(jobs)} processes', file=sys.stderr, flush=True)
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            probes = list(pool.map(run_probe, requests))
        rows = [{'kind': kind, 'keys': [p.config.key() for p in points], **probe}
                for (kind, _, points), probe in zip(jobs, probes, strict=True)]
    return {'rows': rows, 'super_bytes': weight_bytes(model)}


# -- resumable state ------------------------------------------------------------------


class State:
    """Measurements by key in a JSON file, rewritten atomically after each one."""

    def __init__(self, path, run_key, fresh):
        self.path = Path(path)
        data = {}
        if self.path.is_file() and not fresh:
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f'{self.path}: corrupt state file ({err}); use --fresh') \
                    from None
        self.data = data if data.get('run') == run_key else {'run': run_key}

    def __contains__(self, key):
        return key in self.data

    def get_or_measure(self, key, measure):
        if key not in self.data:
            self.data[key] = measure()
            write_atomic(self.path, json.dumps(self.data, indent=1).encode())
        return self.data[key]


def file_identity(path) -> dict:
    stat = Path(path).stat()
    return {'path': str(Path(path).resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime}


# -- the report -------------------------------------------------------------------------


def _mb(n_bytes):
    return n_bytes / 2 ** 20


def latency_ratios(rows, threads) -> dict:
    """Largest / smallest latency per thread count: of the summaries, and per round."""
    small, large = rows[0]['latency'], rows[-1]['latency']
    ratios = {}
    for t in threads:
        if t in small and t in large:
            per_round = [a / b for a, b in zip(large[t]['round_ms'], small[t]['round_ms'],
                                               strict=True)]
            ratios[t] = {'ratio': large[t]['ms'] / small[t]['ms'], 'rounds': per_round}
    return ratios


def _ratio_text(threads, ratio):
    per_round = ratio['rounds']
    below = '' if ratio['ratio'] >= TARGET_LATENCY_RATIO else ' (below target)'
    return (f'{ratio["ratio"]:.2f}x at {threads} thread(s){below}, per round median '
            f'{statistics.median(per_round):.2f}x ({min(per_round):.2f}-{max(per_round):.2f}x '
            f'over {len(per_round)} rounds)')


def markdown(report) -> str:
    meta, rows, threads = report['meta'], report['rows'], report['threads']
    name = {row['subnet'].key(): row['name'] for row in rows}
    lines = ['# SuperTransformer benchmark', '',
             f'Command: `{meta["command"]}`', '',
             f'Host: {meta["host"]}; torch {meta["torch"]}; torch threads by default '
             f'{meta["default_threads"]}, measured at {", ".join(map(str, threads))}; load '
             f'average at start {meta["load"]}; {meta["date"]}.', '',
             f'Model `{meta["model"]}` ({meta["super_params"] / 1e6:.2f} M parameters), '
             f'tokenizer `{meta["spm"]}`. Sub-networks: {meta["subnets"]}.']
    if 'note' in meta:
        lines += ['', f'**{meta["note"]}**']

    lines += ['', '## Sub-networks: BLEU and latency']
    if report['bleu_sentences'] or report['latency_measured']:
        lines.append('')
    if report['bleu_sentences']:
        lines.append(f'BLEU: sacrebleu corpus BLEU (13a, detokenized, case-sensitive), '
                     f'{report["bleu_sentences"]} test sentences, beam {BEAM}.')
    if report['latency_measured']:
        lines.append(f'Latency ({report["protocol"]}) on the super model after `set_subnet`; '
                     f'source ({report["source"].origin}): "{report["source"].text}".')
    head = ['#', 'name', 'sub-network', 'params (M)', 'BLEU'] + [
        f'ms @{t} thr' for t in threads]
    lines += ['', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for i, row in enumerate(rows, 1):
        subnet = row['subnet']
        shape = (f'enc {subnet.encoder_embed_dim}x{subnet.encoder_layers}, dec '
                 f'{subnet.decoder_embed_dim}x{subnet.decoder_layers}, ffn '
                 f'{max(subnet.decoder_ffn)}, heads {max(subnet.decoder_self_heads)}, ende '
                 f'{max(subnet.decoder_ende)} (`{subnet.key()}`)')
        bleu = f'{row["bleu"]:.2f}' if 'bleu' in row else '-'
        times = [f'{row["latency"][t]["ms"]:.1f} ± {row["latency"][t]["std_ms"]:.1f}'
                 if t in row.get('latency', {}) else '-' for t in threads]
        lines.append(f'| {i} | {row["name"]} | {shape} | {row["params"] / 1e6:.2f} | {bleu} | '
                     + ' | '.join(times) + ' |')
    ratios = latency_ratios(rows, threads) if report['latency_measured'] else {}
    if ratios:
        lines += ['', f'Largest / smallest latency (target >= {TARGET_LATENCY_RATIO:g}x): '
                  + ', '.join(_ratio_text(t, r) for t, r in ratios.items()) + '.']

    if 'switch' in report:
        s = report['switch']
        lines += ['', '## Switching', '',
                  f'`set_subnet` on the super model, {s["switches"]} random switches between '
                  f'the sub-networks above (`time.perf_counter_ns`): p50 {s["p50_us"]:.1f} us, '
                  f'p99 {s["p99_us"]:.1f} us, mean {s["mean_us"]:.1f} us, max '
                  f'{s["max_us"]:.1f} us.', '',
                  f'First inference after a switch vs steady state of the target sub-network, '
                  f'{report["switch_threads"]} thread(s): median (and worst) of '
                  f'{FIRST_ROUNDS} switch-then-infer rounds over the trimmed mean of steady '
                  f'runs (target <= {TARGET_FIRST_RATIO:g}x).', '',
                  '| switch | steady (ms) | first (ms) | first / steady | worst / steady |',
                  '|---|---|---|---|---|']
        for f in report['first']:
            lines.append(f'| {name[f["from"]]} -> {name[f["to"]]} | {f["steady_ms"]:.1f} | '
                         f'{f["first_ms"]:.1f} | {f["ratio"]:.2f}x | {f["worst_ratio"]:.2f}x |')
        lines += ['', f'`materialize()` for reference (median of {MATERIALIZE_RUNS}):', '',
                  '| sub-network | materialize (ms) |', '|---|---|']
        for row in rows:
            lines.append(f'| {row["name"]} | {row["materialize"]["ms"]:.1f} |')

    if 'memory' in report:
        m = report['memory']
        super_row = m['rows'][0]
        lines += ['', '## Memory', '',
                  'Process RSS in a fresh interpreter (1 thread) per setting: the baseline '
                  '(python, torch and this script imported, and torch\'s lazily imported '
                  'modules loaded by a throwaway model), after loading the model file, and after '
                  'one inference of each point it serves; peak is VmHWM. fp32 weights.', '',
                  '| setting | points | weights (MiB) | baseline (MiB) | loaded (MiB) | after '
                  'inference (MiB) | peak (MiB) | over baseline (MiB) | super / this: RSS | '
                  'super / this: over baseline |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        super_over = super_row['after_mb'] - super_row['baseline_mb']
        for r in m['rows']:
            over = r['after_mb'] - r['baseline_mb']
            label = ('super model, all points' if r['kind'] == 'super'
                     else f'compact {name[r["keys"][0]]}')
            lines.append(f'| {label} | {r["points"]} | {_mb(r["weight_bytes"]):.1f} | '
                         f'{r["baseline_mb"]:.0f} | {r["loaded_mb"]:.0f} | {r["after_mb"]:.0f} | '
                         f'{r["peak_mb"]:.0f} | {over:.1f} | '
                         f'{super_row["after_mb"] / r["after_mb"]:.2f}x | '
                         f'{super_over / over:.2f}x |')
        compact_total = sum(row['materialize']['weight_bytes'] for row in rows)
        lines += ['', f'Weight bytes (sum of parameter sizes): super model '
                  f'{_mb(m["super_bytes"]):.1f} MiB serves all {len(rows)} points; as separate '
                  f'compact models they would take {_mb(compact_total):.1f} MiB '
                  f'({m["super_bytes"] / compact_total:.2f}x of that).', '',
                  '| sub-network | compact weights (MiB) | super / compact |', '|---|---|---|']
        for row in rows:
            size = row['materialize']['weight_bytes']
            lines.append(f'| {row["name"]} | {_mb(size):.1f} | {m["super_bytes"] / size:.2f}x |')
    return '\n'.join(lines) + '\n'


def plot(rows, threads, path, note=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axis = plt.subplots(figsize=(6.5, 4.5))
    for t, marker in zip(threads, ('o-', 's--', '^:', 'd-.'), strict=False):
        measured = [r for r in rows if t in r.get('latency', {}) and 'bleu' in r]
        axis.plot([r['latency'][t]['ms'] for r in measured], [r['bleu'] for r in measured],
                  marker, label=f'{t} thread(s)')
        if t == threads[0]:
            for r in measured:
                axis.annotate(r['name'], (r['latency'][t]['ms'], r['bleu']), fontsize=7,
                              xytext=(4, -10), textcoords='offset points')
    axis.set_xlabel(f'latency (ms), batch 1, beam {BEAM}')
    axis.set_ylabel('BLEU (test)')
    axis.set_title('SuperTransformer sub-networks' + (f'\n({note})' if note else ''), fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- command line ---------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', type=Path, default=None, help='default: the shipped model')
    parser.add_argument('--spm', type=Path, default=None, help='default: the shipped one')
    parser.add_argument('--subnets', nargs='+', default=['6'],
                        help='a number of ladder steps from the smallest to the largest, or '
                        'sub-network specs: smallest, largest, YAML files (default: 6)')
    parser.add_argument('--library', type=Path, default=None,
                        help='take the sub-networks from this operating-point library YAML')
    parser.add_argument('--limit', type=int, default=None, help='test sentences for BLEU '
                        '(default: all)')
    parser.add_argument('--repeats', type=int, default=50,
                        help='timed runs per latency (default: %(default)s)')
    parser.add_argument('--warmup', type=int, default=5,
                        help='untimed runs of each sub-network and thread count before the '
                        'first latency round (default: %(default)s)')
    parser.add_argument('--rounds', type=int, default=10,
                        help='interleaved rounds the timed runs are spread over (default: '
                        '%(default)s)')
    parser.add_argument('--target-length', type=int, default=SOURCE_TOKENS,
                        help='decoder steps per timed run, EOS forbidden; 0: stop at EOS '
                        '(default: %(default)s)')
    parser.add_argument('--switches', type=int, default=1000,
                        help='random set_subnet switches timed (default: %(default)s)')
    parser.add_argument('--threads', type=int, nargs='+', default=None,
                        help='CPU thread counts for latency (default: 1 and all usable)')
    parser.add_argument('--skip', nargs='+', action='extend', default=[], choices=SECTIONS,
                        help='sections to leave out')
    parser.add_argument('--seed', type=int, default=0, help='for the random switches')
    parser.add_argument('--note', default=None, help='a line printed in bold under the header '
                        '(e.g. "random weights, timings not meaningful")')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT,
                        help='Markdown report to write (default: %(default)s; the shipped '
                        'one: docs/supertransformer_bench.md)')
    parser.add_argument('--png', type=Path, default=DEFAULT_PNG,
                        help='plot to write (default: %(default)s; the shipped one: '
                        'docs/subnet_bleu_latency.png)')
    parser.add_argument('--state', type=Path, default=DEFAULT_STATE)
    parser.add_argument('--fresh', action='store_true', help='ignore earlier measurements')
    args = parser.parse_args(argv)
    for name in ('limit', 'repeats', 'switches', 'rounds'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name}: must be >= 1, got {value}')
    for name in ('warmup', 'target_length'):
        if getattr(args, name) < 0:
            parser.error(f'--{name.replace("_", "-")}: must be >= 0, got {getattr(args, name)}')
    args.threads = sorted(set(args.threads or [1, allowed_cpu_count()]))
    if args.threads[0] < 1:
        parser.error(f'--threads: counts must be >= 1, got {args.threads}')
    return args


def host_description():
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.is_file():
        names = [line.split(':', 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith('model name')]
        cpu = names[0] if names else cpu
    return (f'{platform.node()}, {cpu}, {allowed_cpu_count()} usable of {os.cpu_count()} CPUs, '
            f'{platform.system()} {platform.release()}')


def benchmark(args, command) -> dict:
    """Measure what ``args`` asks for (resuming from the state file); return the report."""
    default_threads = torch.get_num_threads()
    translator = Translator.load(args.model, args.spm)
    model = translator.model
    model_path = args.model if args.model is not None else default_model_path()
    spm_path = args.spm if args.spm is not None else default_spm_path()
    subnets = choose_subnets(args.subnets, args.library, model)
    source = latency_source(translator.tokenizer, CORPUS_DIR)
    protocol = Protocol(target_length=args.target_length, repeats=args.repeats,
                        warmup=args.warmup, rounds=args.rounds)
    src = encode_sources([source.ids], model.pad_id, model.eos_id)
    run_key = json.dumps({'version': STATE_VERSION, 'model': file_identity(model_path),
                          'spm': file_identity(spm_path),
                          'host': platform.node(), 'torch': torch.__version__})
    state = State(args.state, run_key, args.fresh)
    skip = set(args.skip)
    rows = [{'name': s.name, 'subnet': s.config, 'params': model.count_parameters(s.config)}
            for s in subnets]

    sentences = 0
    if 'bleu' not in skip:
        sources, references = read_split(CORPUS_DIR, 'test', args.limit)
        sentences = len(sources)
        with torch_threads(max(args.threads)):
            for sub, row in zip(tqdm(subnets, desc='BLEU', unit='subnet'), rows, strict=True):
                row.update(state.get_or_measure(
                    f'bleu {sub.config.key()} limit={args.limit}',
                    lambda sub=sub: measure_bleu(translator, sub.config, sources, references)))

    if 'latency' not in skip:
        jobs = latency_jobs(subnets, args.threads)
        jobs_id = (f'{json.dumps(asdict(protocol))} seed={args.seed} '
                   + ','.join(job_key(t, sub) for t, sub in jobs))
        warmed, rounds = False, []
        for index in tqdm(range(protocol.rounds), desc='latency', unit='round'):
            key = f'latency round {index} {jobs_id}'
            if key not in state and not warmed:
                warm_up_latency(model, jobs, src, protocol)
                warmed = True
            rounds.append(state.get_or_measure(
                key, lambda index=index: measure_latency_round(model, jobs, src, protocol, index,
                                                               args.seed)))
        for threads in args.threads:
            for sub, row in zip(subnets, rows, strict=True):
                row.setdefault('latency', {})[threads] = summarise_latency(
                    rounds, job_key(threads, sub), protocol)

    report = {'rows': rows, 'threads': args.threads, 'source': source,
              'protocol': protocol.describe(), 'bleu_sentences': sentences,
              'latency_measured': 'latency' not in skip}
    if 'switch' not in skip or 'memory' not in skip:
        for sub, row in zip(subnets, rows, strict=True):
            row['materialize'] = state.get_or_measure(
                f'materialize {sub.config.key()}', lambda sub=sub: measure_materialize(model,
                                                                                    sub.config))
    if 'switch' not in skip:
        cfgs = [s.config for s in subnets]
        keys = ','.join(c.key() for c in cfgs)
        report['switch'] = state.get_or_measure(
            f'switch n={args.switches} seed={args.seed} {keys}',
            lambda: measure_switches(model, cfgs, args.switches, args.seed))
        report['switch_threads'] = args.threads[0]
        report['first'] = state.get_or_measure(
            f'first threads={args.threads[0]} {json.dumps(asdict(protocol))} {keys}',
            lambda: measure_first_inference(model, first_inference_pairs(subnets), src,
                                            protocol, args.threads[0]))
    if 'memory' not in skip:
        report['memory'] = state.get_or_measure(
            f'memory {",".join(s.config.key() for s in subnets)} {json.dumps(asdict(protocol))}',
            lambda: measure_memory(model, model_path, subnets, source, protocol))

    report['meta'] = {
        'command': command, 'host': host_description(), 'torch': torch.__version__,
        'default_threads': default_threads, 'date': time.strftime('%Y-%m-%d %H:%M'),
        'load': ' / '.join(f'{x:.1f}' for x in os.getloadavg()),
        'model': Path(model_path).name, 'spm': Path(spm_path).name,
        'super_params': sum(p.numel() for p in model.parameters()),
        'subnets': subnet_origin(args.subnets, args.library)}
    if args.note:
        report['meta']['note'] = args.note
    return report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [PROBE_FLAG]:
        print(json.dumps(memory_probe(json.loads(sys.stdin.read()))))
        return 0
    args = parse_args(argv)
    command = shlex.join(['python', 'bench/supertransformer.py', *argv])
    try:
        report = benchmark(args, command)
    except ValueError as err:
        print(f'supertransformer: {err}', file=sys.stderr)
        return 2
    table = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(table)
    wrote = [str(args.out)]
    if report['bleu_sentences'] and report['latency_measured']:
        plot(report['rows'], args.threads, args.png, args.note)
        wrote.append(str(args.png))
    print('wrote ' + ' and '.join(wrote))
    return 0


if __name__ == '__main__':
    sys.exit(main())
