"""The translation engines side by side: CTranslate2 (int8, float32) against torch.

``ct2-int8`` is the default engine as the library runs it: int8 and, when the
library was made with one, the vocabulary map. ``ct2-int8-full`` and
``ct2-float32`` score the whole vocabulary, as torch does.

Same sub-networks (points of the CTranslate2 library: its fastest, middle and
slowest), same sentences (the test split, one at a time as the node
translates, and in batches), 1 and 2 threads, rounds interleaved so that a
slow phase of the machine hits every engine alike; a ratio is taken within
each round, then the median over rounds is printed. With several thread
counts free, ``up_to_N`` rows compare each engine at its faster count up to
N, which is what a node given N threads runs.

Also measured: BLEU of each CTranslate2 setting on the same sentences, the cost of a
switch between points (the lookup the worker does, and the first answer after
a switch against the same point's steady answers), and the resident memory
of a translation node process with the whole library loaded.

    python bench/engines.py --sentences 200 --rounds 3
"""

import argparse
import json
from pathlib import Path
import random
import statistics
import sys
import time

import numpy as np

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.share import data_path, library_path, runs_path
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine, create_library_engine
from dyn_dnn_ros.translation.outcome import read_split
from dyn_dnn_ros.translation.vocabulary_map import FULL

PARTS = ('engines', 'library', 'switch', 'node')


def ms_per_sentence(engine, subnet, width, threads, sources, batch):
    began = time.perf_counter()
    if batch == 1:
        for sentence in sources:
            engine.translate([sentence], subnet, width, threads=threads)
    else:
        engine.translate(sources, subnet, width, threads=threads, batch_size=batch)
    return (time.perf_counter() - began) * 1000.0 / len(sources)


def bleu(engine, subnet, width, sources, references):
    import sacrebleu
    outcomes = engine.translate(sources, subnet, width, threads=1)
    return sacrebleu.corpus_bleu([o.text for o in outcomes], [references]).score


def library_check(engine, library, sentences, rounds=5):
    """Each point timed again as the library was (same sentences, batch 1, its thread count).

    Two figures per point, medians over rounds:

    - ``measured/library``: against the library's figure alone;
    - ``measured/manager``: against what a manager that has just started
      assumes the moment it picks the point: the library's figure corrected by
      the results of the points run before it in the round (its
      ``LatencyModel``, fed exactly as the manager is, fresh every round).
      The first point of a round, which only has the library to go by, is left
      out of this figure. A whole machine running uniformly faster or slower
      than when the library was made moves the first figure, and the second
      only until the manager has seen a few results.
    """
    from dyn_dnn_ros.runtime.policy import LatencyModel
    from dyn_dnn_ros.translation.design.engine_library import time_per_sentence
    to_library = {p.name: [] for p in library.points}
    to_manager = {p.name: [] for p in library.points}
    for r in range(rounds):
        manager = LatencyModel(library)
        order = list(library.points)
        random.Random(100 + r).shuffle(order)
        for i, point in enumerate(order):
            subnet = SubnetConfig.from_dict(point.subnet)
            threads = min(point.latency_ms, key=point.latency_ms.get)
            assumed = manager.mean_ms(point.name, threads)
            ms = time_per_sentence(engine, subnet, point.beam.width, int(threads), sentences)
            manager.observe(point.name, ms, threads)
            to_library[point.name].append(ms / point.latency_at(threads))
            if i > 0:
                to_manager[point.name].append(ms / assumed)
    return {name: {'measured/library': statistics.median(to_library[name]),
                   'measured/manager': (statistics.median(to_manager[name])
                                        if to_manager[name] else None)}
            for name in to_library}


def switch_costs(engine, points, sentence, threads=1, switches=300, seed=0):
    """Lookup time of a switch and the first answer's extra time after one (ms)."""
    rng = random.Random(seed)
    subnets = [SubnetConfig.from_dict(p.subnet) for p in points]
    widths = [p.beam.width for p in points]
    steady = {}
    for i, subnet in enumerate(subnets):
        engine.translate([sentence], subnet, widths[i], threads=threads)
        times = []
        for _ in range(20):
            began = time.perf_counter()
            engine.translate([sentence], subnet, widths[i], threads=threads)
            times.append(time.perf_counter() - began)
        steady[i] = statistics.median(times)
    lookups, extra = [], []
    current = 0
    for _ in range(switches):
        nxt = rng.choice([i for i in range(len(subnets)) if i != current])
        began = time.perf_counter()
        engine.model(subnets[nxt], threads)
        lookups.append(time.perf_counter() - began)
        began = time.perf_counter()
        engine.translate([sentence], subnets[nxt], widths[nxt], threads=threads)
        extra.append(time.perf_counter() - began - steady[nxt])
        current = nxt
    return {'lookup_p99_ms': float(np.percentile(lookups, 99) * 1000),
            'first_answer_extra_p50_ms': float(np.percentile(extra, 50) * 1000),
            'first_answer_extra_p99_ms': float(np.percentile(extra, 99) * 1000)}


def node_memory(library_path, timeout=180.0):
    """RSS of a translation node process once it serves with every point loaded."""
    import rclpy

    from dyn_dnn_ros.demo.processes import NodeProcess, node_command, stop_all
    from dyn_dnn_ros.ros.worker_presence import HEARTBEAT_QOS, HEARTBEAT_TOPIC
    from dyn_dnn_ros_interfaces.msg import WorkerHeartbeat
    log = runs_path('bench', 'engines_node.log')
    process = NodeProcess('translation_node', node_command(
        'translation_node', extra=['-p', f'library_path:={library_path}',
                                   '-p', 'wait_for_setting_s:=0.0']), log)
    rclpy.init()
    node = rclpy.create_node('engines_bench')
    serving = []
    node.create_subscription(WorkerHeartbeat, HEARTBEAT_TOPIC,
                             lambda m: serving.append(m.serving), HEARTBEAT_QOS)
    deadline = time.monotonic() + timeout
    try:
        while not any(serving) and time.monotonic() < deadline and process.running:
            rclpy.spin_once(node, timeout_sec=0.2)
        if not any(serving):
            raise RuntimeError(f'translation node did not serve: {process.output_tail()}')
        status = Path(f'/proc/{process.pid}/status').read_text()
        maps = Path(f'/proc/{process.pid}/maps').read_text()
        field = {line.split(':')[0]: line.split(':')[1].strip() for line in status.splitlines()}
        return {'rss_mb': int(field['VmRSS'].split()[0]) / 1024,
                'peak_rss_mb': int(field['VmHWM'].split()[0]) / 1024,
                'torch_loaded': 'libtorch' in maps}
    finally:
        stop_all([process])
        node.destroy_node()
        rclpy.shutdown()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--library', type=Path, default=library_path('translation', 'cpu'))
    parser.add_argument('--sentences', type=int, default=200)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--library-rounds', type=int, default=5,
                        help='shuffled rounds of the library check (default: %(default)s)')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--bleu-sentences', type=int, default=500)
    parser.add_argument('--corpus-dir', type=Path, default=data_path('corpus'),
                        help='test and valid splits: those the library was made with')
    parser.add_argument('--parts', nargs='+', default=list(PARTS), choices=PARTS,
                        help='what to measure (default: all)')
    parser.add_argument('--out', type=Path, default=runs_path('bench', 'engines.json'))
    args = parser.parse_args(argv)

    library = OperatingPointLibrary.load(args.library)
    library.check_runs_on('ctranslate2', 'cpu', where=str(args.library))
    ordered = sorted(library.points, key=lambda p: p.latency_ms[1])
    chosen = [ordered[0], ordered[len(ordered) // 2], ordered[-1]]
    sources, references = read_split(args.corpus_dir, 'test', args.bleu_sentences)
    timed = sources[:args.sentences]
    engines = {'ct2-int8': create_library_engine(library, where=str(args.library))}
    if 'engines' in args.parts:
        engines = {
            'torch': create_engine(EngineConfig(engine='torch')),
            'ct2-float32': create_engine(EngineConfig(engine='ctranslate2',
                                                      compute_type='float32',
                                                      vocabulary_map=FULL)),
            **engines}
        if engines['ct2-int8'].use_vmap:
            engines['ct2-int8-full'] = create_engine(EngineConfig(
                engine='ctranslate2', compute_type='int8', vocabulary_map=FULL))
    report = {'library': str(args.library), 'sentences': len(timed), 'rounds': args.rounds,
              'points': {}}
    for point in chosen if 'engines' in args.parts else ():
        subnet, width = SubnetConfig.from_dict(point.subnet), point.beam.width
        cells = [(e, t, b) for e in engines for t in args.threads for b in (1, args.batch)]
        for name, threads, batch in cells:  # warm-up: load, thread pools
            ms_per_sentence(engines[name], subnet, width, threads, timed[:5], batch)
        rounds = []
        for r in range(args.rounds):
            order = cells[:]
            random.Random(r).shuffle(order)
            rounds.append({c: ms_per_sentence(engines[c[0]], subnet, width, c[1], timed, c[2])
                           for c in order})
        rows = {}
        for threads in args.threads:
            for batch in (1, args.batch):
                row = {}
                for name in engines:
                    row[f'{name}_ms'] = statistics.median(r[(name, threads, batch)]
                                                          for r in rounds)
                    row[f'torch/{name}'] = statistics.median(
                        r[('torch', threads, batch)] / r[(name, threads, batch)]
                        for r in rounds)
                rows[f'threads{threads}_batch{batch}'] = row
        # What a user with this many threads free gets: each engine at its faster
        # thread count (the library runs CTranslate2 int8 on one where two are slower).
        for threads in sorted(args.threads)[1:]:
            counts = [t for t in args.threads if t <= threads]
            for batch in (1, args.batch):
                row = {}
                best = [{name: min(r[(name, t, batch)] for t in counts) for name in engines}
                        for r in rounds]
                for name in engines:
                    row[f'{name}_ms'] = statistics.median(b[name] for b in best)
                    row[f'torch/{name}'] = statistics.median(b['torch'] / b[name] for b in best)
                rows[f'up_to_{threads}threads_batch{batch}'] = row
        compact = [name for name in engines if name != 'torch']
        quality = {name: bleu(engines[name], subnet, width, sources, references)
                   for name in compact}
        report['points'][point.name] = {'key': subnet.key(), 'beam': width,
                                        'library_ms_1thread': point.latency_ms[1],
                                        'timings': rows, 'bleu': quality}
        print(f'{point.name} {subnet.key()} beam {width}: library {point.latency_ms[1]:.2f} ms; '
              'BLEU ' + ', '.join(f'{name} {quality[name]:.2f}' for name in compact))
        for cell, row in rows.items():
            print(f'  {cell}: torch {row["torch_ms"]:.2f} ms, ' + ', '.join(
                f'{name} {row[f"{name}_ms"]:.2f} ms ({row[f"torch/{name}"]:.2f}x)'
                for name in compact))
    if 'library' in args.parts:
        from dyn_dnn_ros.translation.design.engine_library import library_timing_sentences
        valid, _ = read_split(args.corpus_dir, 'valid')
        ratios = library_check(engines['ct2-int8'], library,
                               library_timing_sentences(library, valid), args.library_rounds)
        report['library_check'] = ratios
        print('per point, measured / library latency and measured / what the manager assumes:')
        for name, row in ratios.items():
            manager = row['measured/manager']
            print(f'  {name}: {row["measured/library"]:.3f}, '
                  + ('first in every round' if manager is None else f'{manager:.3f}'))
        worst = max(abs(row['measured/manager'] - 1) for row in ratios.values()
                    if row['measured/manager'] is not None)
        print(f'largest gap to the manager\'s assumption: {worst:.1%}')
    if 'switch' in args.parts:
        report['switch'] = switch_costs(engines['ct2-int8'], library.points, timed[0])
        print('switch:', json.dumps(report['switch']))
    if 'node' in args.parts:
        report['node'] = node_memory(args.library)
        print('translation node with the whole library loaded:', json.dumps(report['node']))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
