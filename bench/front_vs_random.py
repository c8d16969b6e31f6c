"""Operating-point libraries' sub-networks against random ones, timed in the same rounds.

The check "the searched front dominates 1,000 random sub-networks measured
the same way", run on existing libraries without redoing the sweep:
the distinct sub-networks of one or more libraries (at the deployment beam)
and ``--random`` uniformly drawn ones (the sweep's seed and sampling) are
timed in the same rounds (``time_with_random``), so both share every round
and every drift probe, and each is scored with the sweep's fitness (teacher-forced
validation loss). A random sub-network is dominated when a library
sub-network is at least as fast and at least as good. A library holds only
the searched sub-networks that made the measured BLEU front, a subset of
the sweep's winners, so this count is a lower bound of the sweep's own;
``--searches`` adds every winner of a sweep run folder, ``--candidates
RUN/random.csv`` every sub-network it timed (a sweep run with ``--random 0``
leaves the comparison to this bench).

One pass of 10 samples leaves a standard error at the fast end about as large
as the gap between random and searched sub-networks there; so a second pass
takes every comparison whose verdict a ``--refine-band`` latency difference
could flip, both the random sub-network and its searched rivals, to the first ``--refine-repeats``
count in further shared rounds of the same sample log (the first pass's
samples kept), again while re-timing brings new comparisons into doubt.
Each further count does the same for what is still in doubt after the one
before, with the band narrowed as that count's standard error is (by
sqrt(10 / previous count)): at 30 samples the verdicts left undecided are
a few percent apart, within one or two standard errors. Prints the one-pass
count and the count after each pass, how the undominated ones split by
decoder depth, how much slower the fastest better searched one is than
each, and the count when a library sub-network may be up to 2 / 5 / 10 %
slower; writes a PNG (under runs/bench/ unless ``--plot`` names another
path). Timings and fitness values are kept in the run folder,
so an interrupted run resumes (``--fresh`` starts over).

    .venv/bin/python bench/front_vs_random.py
"""

import argparse
from collections import Counter
import dataclasses
import itertools
import json
import math
from pathlib import Path
import shutil
import sys
import time

from tqdm import tqdm

from dyn_dnn_ros.operating_points import load_timed_libraries
from dyn_dnn_ros.share import data_path, library_path, runs_path
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.fitness import make_fitness
from dyn_dnn_ros.translation.design.latency_csv import read_latency_csv
from dyn_dnn_ros.translation.design.latency_dataset import load_model_and_tokenizer, measure_pairs
from dyn_dnn_ros.translation.design.plots import loss_plot
from dyn_dnn_ros.translation.design.sample_log import samples_beside
from dyn_dnn_ros.translation.design.sweep import (
    CloudComparison,
    dominated,
    random_subnets,
    time_with_random,
)
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
from dyn_dnn_ros.translation.design.workload import load_workload
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.translator import default_model_path

SLACKS = (0.02, 0.05, 0.10)
SAVE_EVERY = 50  # fitness evaluations between cache writes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--library', type=Path, nargs='+',
                        default=[library_path('translation', 'cpu', 'torch')],
                        help='one or more libraries whose sub-networks form the front '
                             '(default: %(default)s)')
    parser.add_argument('--searches', type=Path, nargs='*', default=[],
                        help='sweep searches.json files whose winners join the front, '
                             'also those that missed the BLEU front')
    parser.add_argument('--candidates', type=Path, nargs='*', default=[],
                        help='latency CSVs whose sub-networks join the front, less the '
                             'random ones this bench draws: the RUN/random.csv of a sweep '
                             'run with --random 0 holds every candidate it timed (winners, '
                             'finalists, anchors)')
    parser.add_argument('--random', type=int, default=1000, help='random sub-networks')
    parser.add_argument('--random-seed', type=int, default=1,
                        help='the sweep\'s --random-seed (default: %(default)s, as in the '
                             'Makefile)')
    parser.add_argument('--run-dir', type=Path, default=runs_path('front_vs_random'))
    parser.add_argument('--corpus-dir', type=Path, default=data_path('corpus'))
    parser.add_argument('--fitness-sentences', type=int, default=100)
    parser.add_argument('--fitness-seed', type=int, default=0)
    parser.add_argument('--cache', type=Path, default=None,
                        help='fitness cache JSON (default: RUN/fitness_cache.json)')
    parser.add_argument('--plot', type=Path,
                        default=runs_path('bench', 'front_vs_random_cpu.png'),
                        help='plot to write (default: %(default)s; the shipped one, which '
                             '`make design-cpu-check` writes: docs/front_vs_random_cpu.png)')
    parser.add_argument('--refine-band', type=float, default=0.05,
                        help='second pass: random sub-networks whose verdict a latency '
                             'difference within this fraction could flip, and their searched '
                             'rivals (default: %(default)s; 0: no second pass)')
    parser.add_argument('--refine-repeats', type=int, nargs='+', default=[30, 100],
                        help='samples per sub-network after each further pass, the '
                             'earlier ones\' included, rising (default: %(default)s)')
    parser.add_argument('--fresh', action='store_true', help='forget earlier timings')
    args = parser.parse_args(argv)
    if not 0 <= args.refine_band < 1:  # NaN fails too
        parser.error(f'--refine-band: must be a fraction in [0, 1), got {args.refine_band}')
    one_pass = LatencyProtocol().repeats
    counts = [one_pass, *args.refine_repeats]
    if args.refine_band > 0 and any(b <= a for a, b in itertools.pairwise(counts)):
        parser.error(f'--refine-repeats: each pass adds samples to the one before, starting '
                     f'from the first pass\'s {one_pass}, so the counts must rise above it, '
                     f'got {args.refine_repeats} (--refine-band 0 turns the passes off)')
    return args


def escalation(band, one_pass, counts) -> list[tuple[int, float]]:
    """(samples, band) of each pass after the first: the band shrinks with the standard error.

    A pass picks the comparisons that the previous count's noise could flip;
    that noise falls as 1 / sqrt(samples), so a fixed band would keep
    re-timing verdicts already settled. Empty when ``band`` is 0.
    """
    if band == 0:
        return []
    previous = [one_pass, *counts[:-1]]
    return [(n, band * math.sqrt(one_pass / before))
            for n, before in zip(counts, previous, strict=True)]


def main(argv=None):
    args = parse_args(argv)
    began = time.perf_counter()
    protocol = LatencyProtocol()
    try:
        libraries = load_timed_libraries(args.library, protocol.workload)
    except ValueError as err:
        sys.exit(str(err))
    settings = {(int(lib.meta['rank_threads']), str(lib.meta['deployment_beam']))
                for lib in libraries}
    if len(settings) != 1:
        sys.exit(f'libraries ranked at different thread counts or beams: {sorted(settings)}')
    threads = int(libraries[0].meta['rank_threads'])
    deployment = BeamPolicy.from_dict(libraries[0].meta['deployment_beam'])
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    args.run_dir.mkdir(parents=True, exist_ok=True)

    model, tokenizer = load_model_and_tokenizer(None, None, 'cpu')
    fitness = make_fitness(model, tokenizer, args.corpus_dir, args.fitness_sentences,
                           args.fitness_seed, args.cache or args.run_dir / 'fitness_cache.json',
                           default_model_path(), 'cpu')
    workload = load_workload(args.corpus_dir, tokenizer, protocol.sentences,
                             protocol.sentence_seed, model.space.max_positions)
    front = {p.metrics['key']: SubnetConfig.from_dict(p.subnet)
             for library in libraries for p in library.points}
    for path in args.searches:
        for search in json.loads(path.read_text()):
            front.setdefault(search['key'], SubnetConfig.from_dict(search['subnet']))
    randoms = random_subnets(model.space, args.random, args.random_seed)
    drawn = {cfg.key() for cfg in randoms}
    for path in args.candidates:  # a sweep with this --random-seed timed the drawn ones too
        for row in read_latency_csv(path, model.space):
            if row.config.key() not in drawn:
                front.setdefault(row.config.key(), row.config)
    front_configs = list(front.values())
    first_csv = args.run_dir / 'latency.csv'
    timed = time_with_random(model, front_configs, randoms, workload, protocol, threads,
                             first_csv, device='cpu', beam=deployment)
    losses = {}
    for i, cfg in enumerate(tqdm(front_configs + randoms, desc='fitness', unit='sub-network')):
        losses[cfg.key()] = fitness(cfg)
        if i % SAVE_EVERY == SAVE_EVERY - 1:  # ~1 s each: an interrupted scoring resumes
            fitness.save()
    comparison = CloudComparison(
        [(timed[cfg.key()][threads].latency_ms, losses[cfg.key()]) for cfg in front_configs],
        [(timed[cfg.key()][threads].latency_ms, losses[cfg.key()]) for cfg in randoms])
    fitness.save()
    first_pass = comparison.dominated
    latest = {}  # key -> latency at the most samples taken
    passes = []  # (samples, band, sub-networks timed again, dominated after)
    for repeats, band in escalation(args.refine_band, protocol.repeats, args.refine_repeats):
        timed_again = set()
        while True:
            cloud_doubt, front_doubt = comparison.in_doubt(band)
            pairs = [(cfg, threads) for cfg in ([front_configs[j] for j in front_doubt]
                                                + [randoms[i] for i in cloud_doubt])
                     if cfg.key() not in timed_again]
            if not pairs:  # re-timing moves points, so doubt can reach new ones: until none
                break
            # Same sample log: earlier rounds are kept, later rounds added to them.
            rows = measure_pairs(model, pairs, workload,
                                 dataclasses.replace(protocol, repeats=repeats),
                                 args.run_dir / f'refined_{repeats}.csv', 'cpu', deployment,
                                 desc=f'comparisons within {band:.1%}, to {repeats} samples',
                                 samples_path=samples_beside(first_csv))
            timed_again.update(row.config.key() for row in rows)
            latest.update((row.config.key(), row.latency_ms) for row in rows)
            comparison = CloudComparison(
                [(latest.get(cfg.key(), ms), loss)
                 for cfg, (ms, loss) in zip(front_configs, comparison.front, strict=True)],
                [(latest.get(cfg.key(), ms), loss)
                 for cfg, (ms, loss) in zip(randoms, comparison.cloud, strict=True)])
        passes.append((repeats, band, timed_again, comparison.dominated))

    print(f'{len(front_configs)} searched sub-networks and {len(randoms)} random ones, timed '
          f'together at {threads} threads, {deployment.describe()}, workload '
          f'{protocol.workload}')
    for cfg, (ms, loss) in sorted(zip(front_configs, comparison.front, strict=True),
                                  key=lambda item: item[1][0]):
        print(f'  {cfg.key():<40} {ms:7.2f} ms  val loss {loss:.4f}')
    cloud_ms = [ms for ms, _ in comparison.cloud]
    print(f'random: {min(cloud_ms):.2f} .. {max(cloud_ms):.2f} ms')
    undominated = [(point, cfg) for point, cfg in zip(comparison.cloud, randoms, strict=True)
                   if not dominated(point, comparison.front)]
    print(f'one pass ({protocol.repeats} samples each): {first_pass} of '
          f'{len(comparison.cloud)} dominated')
    random_keys = {cfg.key() for cfg in randoms}
    for repeats, band, keys, count in passes:
        again = len(keys & random_keys)
        print(f'  within {band:.1%} of a verdict, to {repeats} samples: {again} random and '
              f'{len(keys) - again} searched sub-networks; {count} dominated')
    print(f'dominated by the searched ones: {len(comparison.cloud) - len(undominated)} of '
          f'{len(comparison.cloud)}')
    depth = Counter(cfg.decoder_layers for _, cfg in undominated)
    print('not dominated, by decoder layers: '
          + (', '.join(f'{k}: {v}' for k, v in sorted(depth.items())) or 'none'))
    for (ms, loss), cfg in sorted(undominated, key=lambda item: item[0][0]):
        better = [f_ms for f_ms, f_loss in comparison.front if f_loss <= loss]
        rival = (f'the fastest better searched one {min(better) / ms - 1:.1%} slower'
                 if better else 'better than every searched one')
        print(f'  {cfg.key():<40} {ms:7.2f} ms  val loss {loss:.4f}  {rival}')
    for slack in SLACKS:
        relaxed = [(ms / (1 + slack), loss) for ms, loss in comparison.front]
        count = sum(dominated(p, relaxed) for p in comparison.cloud)
        print(f'dominated with {slack:.0%} latency slack: {count} of {len(comparison.cloud)}')
    loss_plot(args.plot, comparison.cloud, comparison.front,
              f'measured latency, ms (cpu, {threads} threads, batch 1, '
              f'{deployment.describe()})', f'searched sub-networks ({len(front_configs)})',
              'Searched vs random sub-networks, timed in the same rounds',
              [p for p, _ in undominated])
    print(f'wrote {args.plot} in {time.perf_counter() - began:.0f} s')


if __name__ == '__main__':
    main()
