"""Batched dynamic beam search: decoding only the active beams vs the whole grid.

In a batch, each sentence's dynamic width differs. The search keeps scores in
a ``[sentence, slot]`` grid cut to the widest sentence; the decoder runs only
on the rows of the slots that hold a beam (``DecoderState.active``) rather
than on every slot of the cut grid. This runs both, side by side, on the same
chunks of test sentences:

- ``active``: the search as shipped;
- ``grid``: the same search with the active-slot mask dropped before each
  step, so the decoder computes every slot of the cut grid (the inactive ones
  score ``-inf`` and are never chosen, so the translations are the same).

Chunks take turns, and within a chunk the (setting, layout) runs go in a
shuffled order, so the machine's drift falls on both layouts alike. Reported per
setting: total seconds of each layout, their ratio, and the median of the
per-chunk ratios; plus how many translations differ between the layouts.

    .venv/bin/python bench/active_rows.py --sentences 240 --batch 8 --passes 2
"""

import argparse
from contextlib import contextmanager
import random
import statistics
import sys
import time

import torch

from dyn_dnn_ros.share import data_path
from dyn_dnn_ros.translation import beam_search
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.translator import Translator, read_split

LAYOUTS = ('active', 'grid')
# std-metric thresholds of the shipped model, calibrated on validation data
# by bench/beam_width.py (docs/beam_width_table.md): p5/p50 and p10/p75.
DEFAULT_SETTINGS = ('3:5:0.211:0.709', '2:5:0.290:1.121')


def parse_setting(text, metric):
    """``BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX`` -> a dynamic ``BeamPolicy``."""
    try:
        bw_min, bw_max, sigma_min, sigma_max = text.split(':')
        return BeamPolicy(mode='dynamic', bw_min=int(bw_min), bw_max=int(bw_max),
                          sigma_min=float(sigma_min), sigma_max=float(sigma_max), metric=metric)
    except ValueError as err:
        raise ValueError(f'setting {text!r}: expected BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX '
                         f'({err})') from err


@contextmanager
def layout(name):
    """Run the search with the given decoder layout (``grid`` wraps ``_advance``)."""
    if name not in LAYOUTS:
        raise ValueError(f'layout {name!r}: expected one of {LAYOUTS}')
    advance = beam_search._advance
    if name == 'grid':
        beam_search._advance = lambda state, rows, parent, active: advance(state, rows, parent,
                                                                           None)
    try:
        yield
    finally:
        beam_search._advance = advance


def ratio_summary(seconds_active, seconds_grid) -> dict:
    """Totals, their ratio and the median per-chunk ratio (active / grid)."""
    if len(seconds_active) != len(seconds_grid) or not seconds_active:
        raise ValueError('ratio_summary: need the same, non-zero number of runs per layout')
    return {'active_s': sum(seconds_active), 'grid_s': sum(seconds_grid),
            'ratio': sum(seconds_active) / sum(seconds_grid),
            'median_ratio': statistics.median(a / g for a, g in
                                              zip(seconds_active, seconds_grid, strict=True))}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sentences', type=int, default=240, help='first N test sentences')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--chunk', type=int, default=40, help='sentences per timed run')
    parser.add_argument('--passes', type=int, default=2, help='times over all chunks')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--subnet', default='largest')
    parser.add_argument('--metric', choices=('std', 'gap'), default='std')
    parser.add_argument('--settings', nargs='+', default=list(DEFAULT_SETTINGS),
                        help='BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX per dynamic setting')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    for name in ('sentences', 'batch', 'chunk', 'passes', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        policies = [parse_setting(text, args.metric) for text in args.settings]
    except ValueError as err:
        print(f'active_rows: {err}', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    translator = Translator.load()
    subnet = translator.subnet(args.subnet)
    translator.model.set_subnet(subnet)
    translator.batch_size = args.batch
    sources, _ = read_split(data_path('corpus'), 'test', args.sentences)
    chunks = [sources[i:i + args.chunk] for i in range(0, len(sources), args.chunk)]
    translator.translate(chunks[0], None, policies[0])  # warm-up

    rng = random.Random(args.seed)
    seconds = {(p, lay): [] for p in range(len(policies)) for lay in LAYOUTS}
    texts = {key: [] for key in seconds}
    for _ in range(args.passes):
        for chunk in chunks:
            runs = list(seconds)
            rng.shuffle(runs)
            for index, name in runs:
                with layout(name):
                    began = time.perf_counter()
                    outcomes = translator.translate(chunk, None, policies[index])
                    seconds[index, name].append(time.perf_counter() - began)
                texts[index, name].extend(o.text for o in outcomes)

    print(f'{len(sources)} test sentences in chunks of {args.chunk}, batch {args.batch}, '
          f'{args.threads} thread(s), {args.passes} pass(es), sub-network {subnet.key()}')
    print('| setting | active (s) | grid (s) | active / grid | median chunk ratio '
          '| translations that differ |')
    print('|---|---|---|---|---|---|')
    for index, policy in enumerate(policies):
        summary = ratio_summary(seconds[index, 'active'], seconds[index, 'grid'])
        differ = sum(a != g for a, g in zip(texts[index, 'active'], texts[index, 'grid'],
                                            strict=True))
        print(f'| {policy.describe()} | {summary["active_s"]:.2f} | {summary["grid_s"]:.2f} '
              f'| {summary["ratio"]:.3f} | {summary["median_ratio"]:.3f} '
              f'| {differ} of {len(texts[index, "active"])} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
