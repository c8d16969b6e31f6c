"""Fixed vs dynamic beam width on the test split: the layout of Table 1 of Jahier Pagliari et al.

For each batch size (default 1 and 8), single-threaded, this decodes the test
split with fixed widths 1..5 and with dynamic policies whose thresholds come
from calibration on the validation split (std and gap metrics, with and
without patience), and reports per setting: average beam width, decode time
(absolute and relative to fixed width 1), BLEU, and the per-token perplexity
of the chosen outputs under the model.

It also measures the bookkeeping cost of the dynamic policy: a dynamic policy
whose range is a single width W (bw_min = bw_max = W) runs every piece of the
dynamic code but must choose exactly what fixed width W chooses; the ratio of
their median times over interleaved repeats is the overhead.

Writes a markdown table (``docs/beam_width_table.md``) and a plot
(``docs/beam_width.png``). Every measured setting is kept in a JSON state file,
so an interrupted run resumes where it stopped (``--fresh`` starts over).

    .venv/bin/python bench/beam_width.py --limit 300
"""

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time

import torch
from tqdm import tqdm

from dyn_dnn_ros.operating_points import BeamPolicy
from dyn_dnn_ros.translation.beam_policy import percentile_thresholds
from dyn_dnn_ros.translation.translator import Translator, default_model_path, read_split

ROOT = Path(__file__).resolve().parents[1]
CORPUS_DIR = ROOT / 'data' / 'corpus'
# Targets the dynamic policy should reach against fixed width 5.
TARGET_BLEU_DROP, TARGET_WIDTH, TARGET_TIME, TARGET_OVERHEAD = 0.1, 3.35, 0.8, 0.05


@dataclass(frozen=True)
class Setting:
    label: str
    beam: BeamPolicy
    patience: float = 1.0

    def key(self):
        return json.dumps([self.beam.to_dict(), self.patience], sort_keys=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--limit', type=int, default=None, help='test sentences (default: all)')
    parser.add_argument('--calib-limit', type=int, default=500,
                        help='validation sentences for calibration (default: %(default)s)')
    parser.add_argument('--model', type=Path, default=None, help='default: the shipped model')
    parser.add_argument('--spm', type=Path, default=None, help='default: the shipped one')
    parser.add_argument('--subnet', default='largest',
                        help='largest, smallest or a sub-network YAML (default: %(default)s)')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--overhead-widths', type=int, nargs='*', default=[3, 5])
    parser.add_argument('--overhead-limit', type=int, default=100,
                        help='test sentences timed for the overhead (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='interleaved repeats per overhead timing (default: %(default)s)')
    parser.add_argument('--state', type=Path, default=ROOT / 'runs' / 'bench' / 'beam_width.json')
    parser.add_argument('--fresh', action='store_true', help='ignore earlier measurements')
    parser.add_argument('--table', type=Path, default=ROOT / 'docs' / 'beam_width_table.md')
    parser.add_argument('--png', type=Path, default=ROOT / 'docs' / 'beam_width.png')
    args = parser.parse_args(argv)
    for name in ('limit', 'calib_limit', 'threads', 'overhead_limit', 'repeats'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")}: must be >= 1, got {value}')
    if any(b < 1 for b in args.batch_sizes) or any(w < 1 for w in args.overhead_widths):
        parser.error('--batch-sizes and --overhead-widths must be >= 1')
    return args


class State:
    """Measurements by key in a JSON file, rewritten atomically after each one."""

    def __init__(self, path, run_key, fresh):
        self.path = Path(path)
        data = {}
        if self.path.is_file() and not fresh:
            data = json.loads(self.path.read_text())
        self.data = data if data.get('run') == run_key else {'run': run_key}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + '.tmp')
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def run_key(args, translator, model_path):
    stat = model_path.stat()
    return json.dumps({'model': str(model_path), 'size': stat.st_size, 'mtime': stat.st_mtime,
                       'subnet': translator.model.subnet.key(), 'limit': args.limit,
                       'calib_limit': args.calib_limit, 'threads': args.threads})


def calibrate(translator, state, args):
    """Per-step spreads of fixed width 5 on validation data -> percentile thresholds."""
    cached = state.get('calibration')
    if cached is None:
        sources, _ = read_split(CORPUS_DIR, 'valid', args.calib_limit)
        translator.batch_size = 8
        values = translator.step_metrics(sources, None, width=5, progress=True)
        cached = {}
        for metric, metric_values in values.items():
            for low, high in ((5, 50), (10, 75)):
                cached[f'{metric} p{low}/p{high}'] = percentile_thresholds(metric_values, low,
                                                                           high)
        cached['steps'] = len(values['std'])
        state.put('calibration', cached)
    return cached


def settings(thresholds):
    def dynamic(name, bw_min=1, bw_max=5, patience=1.0):
        metric = name.split()[0]
        low, high = thresholds[name]
        label = f'dyn {name} bw {bw_min}-{bw_max}' + (f' pat {patience:g}'
                                                      if patience != 1.0 else '')
        return Setting(label, BeamPolicy('dynamic', bw_min=bw_min, bw_max=bw_max,
                                         sigma_min=max(low, 0.0), sigma_max=high,
                                         metric=metric), patience)

    rows = [Setting(f'fixed {w}', BeamPolicy('fixed', width=w)) for w in range(1, 6)]
    rows += [dynamic('std p5/p50'), dynamic('std p10/p75'), dynamic('std p5/p50', bw_min=2),
             dynamic('gap p5/p50'), dynamic('gap p10/p75'),
             dynamic('std p5/p50', patience=0.5), dynamic('gap p5/p50', patience=0.5),
             dynamic('std p5/p50', patience=2.0)]
    return rows


def measure(translator, sources, references, setting, batch_size):
    translator.batch_size = batch_size
    result = translator.evaluate(sources, references, None, setting.beam, setting.patience)
    return {'bleu': result.bleu, 'avg_width': result.avg_width, 'seconds': result.seconds,
            'perplexity': result.perplexity}


def overhead(translator, sources, width, repeats):
    """Median time of fixed ``width`` and of a dynamic policy pinned to ``width``, batch 1."""
    translator.batch_size = 1
    fixed = BeamPolicy('fixed', width=width)
    pinned = BeamPolicy('dynamic', bw_min=width, bw_max=width, sigma_min=0.0, sigma_max=1.0)
    times = {'fixed': [], 'dynamic': []}
    outputs = {}
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        for name, policy in (('fixed', fixed), ('dynamic', pinned)):
            began = time.perf_counter()
            outcomes = translator.translate(sources, None, policy)
            times[name].append(time.perf_counter() - began)
            outputs[name] = [o.tokens for o in outcomes]
    if outputs['fixed'] != outputs['dynamic']:
        raise RuntimeError(f'dynamic policy pinned to width {width} chose other translations '
                           'than fixed width: the overhead comparison is void')
    fixed_s, dynamic_s = statistics.median(times['fixed']), statistics.median(times['dynamic'])
    return {'width': width, 'fixed_s': fixed_s, 'dynamic_s': dynamic_s,
            'ratio': dynamic_s / fixed_s}


def targets_met(rows):
    """Dynamic rows reaching the BLEU, width and time targets against fixed 5."""
    base = next(r for r in rows if r['label'] == 'fixed 5')
    return [r['label'] for r in rows if r['label'].startswith('dyn')
            and r['bleu'] >= base['bleu'] - TARGET_BLEU_DROP
            and r['avg_width'] <= TARGET_WIDTH
            and r['seconds'] <= TARGET_TIME * base['seconds']]


def markdown(results, calibration, overheads, meta):
    lines = ['# Fixed vs dynamic beam width', '',
             f'Model `{meta["model"]}`, sub-network `{meta["subnet"]}`, {meta["sentences"]} test '
             f'sentences, {meta["threads"]} thread(s), {meta["host"]}, torch '
             f'{meta["torch"]}, {meta["date"]}. Command: `{meta["command"]}`.', '',
             f'Thresholds from {calibration["steps"]} decoding steps at fixed width 5 on '
             f'validation data: ' + ', '.join(
                 f'{k} = {v[0]:.3f}..{v[1]:.3f}' for k, v in calibration.items()
                 if k != 'steps') + '.', '',
             'Time: wall time to translate the split (tokenization included), and relative to '
             'fixed width 1 at the same batch size. Perplexity: exp(-mean log-prob per token, '
             'EOS included) of the chosen translations under the model. Average width: active '
             'beams per decoding step, pooled over all steps after the first of all sentences.']
    for batch_size, rows in results.items():
        base = next(r for r in rows if r['label'] == 'fixed 1')['seconds']
        lines += ['', f'## Batch size {batch_size}', '',
                  '| setting | sigma range | patience | avg width | time (s) | time / fixed 1 '
                  '| BLEU | perplexity |',
                  '|---|---|---|---|---|---|---|---|']
        for r in rows:
            sigma = (f'{r["beam"]["sigma_min"]:.3f}..{r["beam"]["sigma_max"]:.3f}'
                     if r['beam']['mode'] == 'dynamic' else '-')
            lines.append(f'| {r["label"]} | {sigma} | {r["patience"]:g} | {r["avg_width"]:.2f} '
                         f'| {r["seconds"]:.2f} | {r["seconds"] / base:.2f} | {r["bleu"]:.2f} '
                         f'| {r["perplexity"]:.3f} |')
        met = targets_met(rows)
        lines += ['', f'Targets (BLEU >= fixed 5 - {TARGET_BLEU_DROP}, avg width <= '
                  f'{TARGET_WIDTH}, time <= {TARGET_TIME} x fixed 5): '
                  + (', '.join(met) if met else 'not met by any dynamic setting') + '.']
    if overheads:
        lines += ['', '## Bookkeeping overhead of the dynamic policy', '',
                  'Dynamic policy pinned to one width (bw_min = bw_max = W) vs fixed W, batch 1, '
                  f'median of interleaved repeats (target: <= {TARGET_OVERHEAD:.0%}).', '',
                  '| W | fixed (s) | dynamic pinned (s) | overhead |', '|---|---|---|---|']
        for o in overheads:
            lines.append(f'| {o["width"]} | {o["fixed_s"]:.3f} | {o["dynamic_s"]:.3f} | '
                         f'{o["ratio"] - 1:+.1%} |')
    return '\n'.join(lines) + '\n'


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (by_time, by_width) = plt.subplots(1, 2, figsize=(11, 4.2))
    for batch_size, rows in results.items():
        base = next(r for r in rows if r['label'] == 'fixed 1')['seconds']
        for kind, marker in (('fixed', 'o-'), ('dyn', 's')):
            subset = [r for r in rows if r['label'].startswith(kind)]
            label = f'{kind} (batch {batch_size})'
            by_time.plot([r['seconds'] / base for r in subset], [r['bleu'] for r in subset],
                         marker, label=label)
            by_width.plot([r['avg_width'] for r in subset], [r['bleu'] for r in subset], marker,
                          label=label)
    by_time.set_xlabel('decode time / fixed width 1')
    by_width.set_xlabel('average beam width')
    for axis in (by_time, by_width):
        axis.set_ylabel('BLEU')
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle('Fixed vs dynamic beam width (test split)')
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        translator = Translator.load(args.model, args.spm)
        translator.model.set_subnet(translator.subnet(args.subnet))
        sources, references = read_split(CORPUS_DIR, 'test', args.limit)
    except ValueError as err:
        print(f'beam_width: {err}', file=sys.stderr)
        return 2
    model_path = Path(args.model) if args.model is not None else default_model_path()
    state = State(args.state, run_key(args, translator, model_path), args.fresh)
    calibration = calibrate(translator, state, args)
    rows = settings(calibration)

    results = {}
    jobs = [(b, s) for b in args.batch_sizes for s in rows]
    for batch_size, setting in tqdm(jobs, desc='settings', unit='setting'):
        key = f'result {batch_size} {setting.key()}'
        measured = state.get(key)
        if measured is None:
            measured = measure(translator, sources, references, setting, batch_size)
            state.put(key, measured)
        results.setdefault(batch_size, []).append(
            {'label': setting.label, 'beam': setting.beam.to_dict(),
             'patience': setting.patience, **measured})

    overheads = []
    for width in args.overhead_widths:
        key = f'overhead {width} {args.overhead_limit} {args.repeats}'
        measured = state.get(key)
        if measured is None:
            measured = overhead(translator, sources[:args.overhead_limit], width, args.repeats)
            state.put(key, measured)
        overheads.append(measured)

    meta = {'model': model_path.name, 'subnet': translator.model.subnet.key(),
            'sentences': len(sources), 'threads': args.threads,
            'host': f'{platform.machine()} {os.cpu_count()} CPUs', 'torch': torch.__version__,
            'date': time.strftime('%Y-%m-%d'),
            'command': ' '.join(['bench/beam_width.py', *(argv or sys.argv[1:])])}
    table = markdown(results, calibration, overheads, meta)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(table)
    plot(results, args.png)
    print(table)
    print(f'wrote {args.table} and {args.png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
