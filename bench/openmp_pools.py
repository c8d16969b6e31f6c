"""Why the CTranslate2 engine keeps its OpenMP pools within the CPUs: one point, five layouts.

A CTranslate2 model on ``t`` threads keeps a libgomp pool of ``t - 1``
threads, and libgomp stops spinning between parallel regions once the
process's pool threads (with its first thread) outnumber the CPUs
(``OpenMPPools`` in ``translation/engines/ctranslate2_engine.py``). The
library's middle point, at batch 1 on the library's timing sentences:

- ``one-thread``: on 1 thread;
- ``alone``: on 2 threads, as the engine holds it;
- ``second-model``: on 2 threads, with a second 2-thread model loaded and run
  beside it (the engine's limit lifted);
- ``caller-pool``: on 2 threads, after a 2-thread model was loaded on the
  calling thread, which keeps that load's pool (the engine loads on a
  passing thread instead);
- ``beside-torch``: on 2 threads, in a process where torch ran on 2 threads
  first (the one-process bringup, where the perception node runs torch):
  CTranslate2 then runs on torch's OpenMP runtime, whose pool threads count
  too.

libgomp's count lasts as long as the process, so each layout runs in a fresh
interpreter; rounds interleave the layouts, and the median per sentence over
rounds is printed with its ratio to ``alone``.

    python bench/openmp_pools.py --rounds 3
"""

import argparse
import json
from pathlib import Path
import statistics
import subprocess
import sys
import time

LAYOUTS = ('one-thread', 'alone', 'second-model', 'caller-pool', 'beside-torch')


def measure(layout, library_file, corpus_dir):
    """Runs in a fresh interpreter; prints milliseconds per sentence."""
    if layout == 'beside-torch':
        import torch
        torch.set_num_threads(2)
        torch.ones(512, 512) @ torch.ones(512, 512)
    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.translation.design.engine_library import library_timing_sentences
    from dyn_dnn_ros.translation.design_space import SubnetConfig
    from dyn_dnn_ros.translation.engines import create_library_engine
    from dyn_dnn_ros.translation.engines.ctranslate2_engine import OpenMPPools
    from dyn_dnn_ros.translation.outcome import read_split

    library = OperatingPointLibrary.load(library_file)
    ordered = sorted(library.points, key=lambda p: p.latency_ms[1])
    point, other = ordered[len(ordered) // 2], ordered[-1]
    valid, _ = read_split(corpus_dir, 'valid')
    sentences = library_timing_sentences(library, valid)
    engine = create_library_engine(library, where=str(library_file))
    subnet, width = SubnetConfig.from_dict(point.subnet), point.beam.width
    threads = 1 if layout == 'one-thread' else 2
    if layout == 'second-model':
        engine.pools = OpenMPPools(budget=1000)
        engine.translate(sentences[:2], SubnetConfig.from_dict(other.subnet),
                         other.beam.width, threads=2)
    if layout == 'caller-pool':
        import ctranslate2
        folder = engine.cache.model_dir(SubnetConfig.from_dict(other.subnet), engine.vocabulary)
        loaded_here = ctranslate2.Translator(str(folder), compute_type=engine.compute_type,
                                             intra_threads=2)
        del loaded_here  # the model goes; the pool its loading built on this thread stays
    engine.translate(sentences[:3], subnet, width, threads=threads)  # load, build the pool
    began = time.perf_counter()
    for sentence in sentences:
        engine.translate([sentence], subnet, width, threads=threads)
    ms = (time.perf_counter() - began) * 1000.0 / len(sentences)
    print(json.dumps({'point': point.name, 'ms': ms}))


def main(argv=None):
    from dyn_dnn_ros.share import data_path, library_path
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--library', type=Path, default=library_path('translation', 'cpu'))
    parser.add_argument('--corpus-dir', type=Path, default=data_path('corpus'),
                        help='valid split the library was timed on')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--measure', choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure, args.library, args.corpus_dir)
        return 0
    samples = {layout: [] for layout in LAYOUTS}
    point = None
    for r in range(args.rounds):
        order = LAYOUTS[r % len(LAYOUTS):] + LAYOUTS[:r % len(LAYOUTS)]
        for layout in order:
            done = subprocess.run(
                [sys.executable, __file__, '--measure', layout, '--library', str(args.library),
                 '--corpus-dir', str(args.corpus_dir)],
                capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            samples[layout].append(row['ms'])
            point = row['point']
    alone = statistics.median(samples['alone'])
    print(f'{point}, batch 1, median over {args.rounds} rounds:')
    for layout in LAYOUTS:
        ms = statistics.median(samples[layout])
        print(f'  {layout}: {ms:.2f} ms per sentence ({ms / alone:.2f}x alone)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
