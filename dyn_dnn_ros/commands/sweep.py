"""``dyn-dnn-ros design sweep``: searches over a range of constraints -> the library."""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.latency import (
    RUN_DIR,
    add_protocol_arguments,
    protocol_from_args,
)
from dyn_dnn_ros.commands.search import (
    add_evolution_arguments,
    add_fitness_arguments,
    add_model_arguments,
    evolution_from_args,
    load_search_inputs,
)

HELP = 'search a range of latency constraints and write the operating-point library'
# The shipped library (config/generated/) and plot (docs/) change only when asked for by
# --library and --plot, as `make design-cpu` does.


def _dynamic_policy(text):
    """``BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX[:METRIC]`` -> a dynamic BeamPolicy."""
    from dyn_dnn_ros.translation.beam_policy import BeamPolicy
    parts = text.split(':')
    try:
        if len(parts) not in (4, 5):
            raise ValueError
        metric = parts[4] if len(parts) == 5 else 'std'
        return BeamPolicy(mode='dynamic', bw_min=int(parts[0]), bw_max=int(parts[1]),
                          sigma_min=float(parts[2]), sigma_max=float(parts[3]), metric=metric)
    except ValueError as err:
        raise ValueError(f'--dynamic: {text!r} is not BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX'
                         f'[:METRIC] ({err or "wrong number of fields"})') from None


def add_arguments(parser):
    from dyn_dnn_ros.translation.design.sweep import SWEEP_EVOLUTION, SweepConfig
    d = SweepConfig(run_dir=RUN_DIR, library_path=RUN_DIR)
    parser.add_argument('--run-dir', type=Path, default=None,
                        help='folder for searches, measurements and BLEU, for resuming '
                             f'(default: {RUN_DIR}/sweep_DEVICE)')
    parser.add_argument('--library', type=Path, default=None,
                        help=f'library to write (default: {RUN_DIR}/'
                             'operating_points_translation_DEVICE_torch.yaml; the shipped one '
                             'is config/generated/operating_points_translation_DEVICE.yaml, '
                             '_cpu_torch.yaml on the CPU)')
    parser.add_argument('--plot', type=Path, default=None,
                        help=f'Pareto plot PNG (default: {RUN_DIR}/pareto_DEVICE.png)')
    parser.add_argument('--constraints', type=float, nargs='+', default=None, metavar='MS',
                        help='latency constraints (default: geometric between the smallest '
                             'and largest sub-network\'s predicted latency)')
    parser.add_argument('--count', type=int, default=d.constraint_count,
                        help='number of geometric constraints (default: %(default)s)')
    parser.add_argument('--rank-threads', type=int, default=None,
                        help='thread count of the constraints and the Pareto front (default: '
                             'the largest the predictor was fitted for)')
    parser.add_argument('--threads', type=int, nargs='+', default=None,
                        help='thread counts the winners are measured at (default: 1..usable '
                             'CPUs)')
    parser.add_argument('--beams', type=int, nargs='*', default=[],
                        help='joint points: also measure every winner with these fixed widths')
    parser.add_argument('--dynamic', nargs='*', default=[], metavar='POLICY',
                        help='joint points with dynamic beams BW_MIN:BW_MAX:SIGMA_MIN:SIGMA_MAX'
                             '[:METRIC] (see `dyn-dnn-ros translation calibrate-beam`)')
    parser.add_argument('--no-anchors', dest='anchors', action='store_false',
                        help='do not measure the space\'s smallest and largest sub-networks '
                             'alongside the winners')
    parser.add_argument('--winners-only', dest='finalists', action='store_false',
                        help='measure only each search\'s winner, not the other sub-networks '
                             'the searches scored that lie on the predicted front (finalists)')
    parser.add_argument('--max-finalists', type=int, default=d.finalist_limit, metavar='N',
                        help='measure at most N finalists, those leaving the most of the '
                             'predicted front\'s area (default: all)')
    parser.add_argument('--gap', type=float, default=d.gap, metavar='FRACTION',
                        help='neighbouring predicted-front points further apart than this '
                             'fraction of latency make a gap (default: %(default)s)')
    parser.add_argument('--per-gap', type=int, default=d.per_gap, metavar='N',
                        help='also measure N sub-networks from just behind each gap, spread '
                             'over their losses (default: %(default)s; 0: none)')
    parser.add_argument('--fill-searches', type=int, default=d.fill_searches, metavar='N',
                        help='after the searches, up to N more inside the predicted front\'s '
                             'largest holes, one each (default: %(default)s)')
    parser.add_argument('--fill-gap', type=float, default=d.fill_gap, metavar='FRACTION',
                        help='neighbouring predicted-front points further apart than this '
                             'fraction of latency make a hole (default: %(default)s)')
    parser.add_argument('--fill-iterations', type=int, default=d.fill_iterations,
                        metavar='N', help='iterations of each of those searches, which start '
                                          'from the best sub-networks scored below the hole\'s '
                                          'middle (default: --iterations)')
    parser.add_argument('--refine-band', type=float, default=d.refine_band, metavar='FRACTION',
                        help='time again the candidates the measured front could take or lose '
                             'at this fraction less latency (default: %(default)s; 0: none)')
    parser.add_argument('--refine-repeats', type=int, default=d.refine_repeats, metavar='N',
                        help='samples each of them gets in all (default: %(default)s)')
    parser.add_argument('--bleu-split', choices=('test', 'valid'), default=d.bleu_split)
    parser.add_argument('--bleu-sentences', type=int, default=d.bleu_sentences,
                        help='first N sentences of the split for BLEU (default: %(default)s; '
                             '0: all)')
    parser.add_argument('--bleu-batch-size', type=int, default=d.bleu_batch_size,
                        help='sentences translated together for BLEU; larger suits a GPU '
                             '(default: %(default)s)')
    parser.add_argument('--random', type=int, default=d.random_count, metavar='N',
                        help='random sub-networks measured for the plot (default: '
                             '%(default)s; 0: none)')
    parser.add_argument('--random-seed', type=int, default=d.random_seed)
    parser.add_argument('--random-csv', type=Path, default=None,
                        help='CSV of the random and the searched sub-networks, timed '
                             'together (default: RUN/random.csv); rows already there are '
                             'reused, so not a CSV timed at another moment')
    parser.add_argument('--samples-log', type=Path, default=None,
                        help='JSON-lines log of timing samples and drift probes; give the '
                             'latency dataset\'s (LATENCY_CSV.samples.jsonl) to put all '
                             'latencies on one scale (default: RUN/samples.jsonl)')
    parser.add_argument('--torch-threads', type=int, default=None,
                        help='torch CPU threads for the fitness and BLEU (default: torch '
                             'decides)')
    add_model_arguments(parser)
    add_fitness_arguments(parser)
    add_protocol_arguments(parser)
    add_evolution_arguments(parser, SWEEP_EVOLUTION)


def run(args) -> int:
    import time

    import torch

    from dyn_dnn_ros.share import library_path, portable_path
    from dyn_dnn_ros.translation.beam_policy import BeamPolicy
    from dyn_dnn_ros.translation.design.sweep import SweepConfig, run_sweep
    from dyn_dnn_ros.translation.design.workload import load_workload
    began = time.perf_counter()
    args.run_dir = args.run_dir or RUN_DIR / f'sweep_{args.device}'
    try:
        if args.torch_threads is not None:
            torch.set_num_threads(max(1, args.torch_threads))
        protocol = protocol_from_args(args)
        beams = tuple(BeamPolicy('fixed', width=w) for w in args.beams)
        beams += tuple(_dynamic_policy(text) for text in args.dynamic)
        config = SweepConfig(
            run_dir=args.run_dir,
            library_path=args.library or RUN_DIR / library_path('translation', args.device,
                                                                'torch').name,
            plot_path=args.plot or RUN_DIR / f'pareto_{args.device}.png',
            device=args.device, rank_threads=args.rank_threads,
            measure_threads=tuple(args.threads) if args.threads else None,
            constraints_ms=tuple(args.constraints or ()), constraint_count=args.count,
            evolution=evolution_from_args(args), protocol=protocol, extra_beams=beams,
            bleu_split=args.bleu_split, bleu_sentences=args.bleu_sentences or None,
            bleu_batch_size=args.bleu_batch_size,
            anchors=args.anchors, finalists=args.finalists,
            finalist_limit=args.max_finalists, gap=args.gap, per_gap=args.per_gap,
            refine_band=args.refine_band, refine_repeats=args.refine_repeats,
            fill_searches=args.fill_searches, fill_gap=args.fill_gap,
            fill_iterations=args.fill_iterations,
            random_count=args.random,
            random_seed=args.random_seed, random_csv=args.random_csv,
            samples_path=args.samples_log)
        model, tokenizer, predictor, fitness = load_search_inputs(args, args.run_dir)
        if predictor.meta.get('workload') != protocol.workload:
            raise ValueError(f'{args.predictor}: fitted on workload '
                             f'{predictor.meta.get("workload")!r}, the sweep would time '
                             f'{protocol.workload!r}; pass the latency run\'s options')
        workload = load_workload(args.corpus_dir, tokenizer, protocol.sentences,
                                 protocol.sentence_seed, model.space.max_positions)
        meta = {'predictor': str(portable_path(args.predictor))}
        summary = run_sweep(config, model, tokenizer, predictor, fitness, workload,
                            args.corpus_dir, meta=meta)
    except ValueError as err:
        print(f'dyn-dnn-ros sweep: {err}', file=sys.stderr)
        return 2
    library, rank = summary.library, summary.library.meta['rank_threads']
    fills = sum(bool(s.get('fill')) for s in summary.searches)
    print(f'{len(summary.constraints_ms)} constraints '
          f'({", ".join(f"{c:.1f}" for c in summary.constraints_ms)} ms at {rank} threads'
          + (f'; the last {fills} inside holes of the predicted front' if fills else '')
          + '), '
          f'{len({s["key"] for s in summary.searches})} distinct winners, '
          f'{len({c.key for c in summary.candidates if c.finalist})} finalists, '
          f'{len({c.key for c in summary.candidates if c.constraint_ms is None})} anchors, '
          f'{len(summary.candidates)} measured candidates, {summary.evaluations} new fitness '
          f'evaluations')
    threads = sorted(library.points[0].latency_ms)
    print(f'{"point":<12} {"beam":<34}  BLEU  val loss  predicted  '
          + '  '.join(f'{t} thr ms' for t in threads) + '  measured/predicted at '
          + ', '.join(map(str, threads)) + ' threads')
    for p in library.points:
        # Joint points with another beam have no prediction: the predictor knows the
        # deployment beam only.
        predicted = p.metrics.get('predicted_latency_ms_by_threads', {})
        ratios = [p.latency_ms[t] / predicted[t] for t in threads if predicted.get(t, 0) > 0]
        print(f'{p.name:<12} {p.beam.describe():<34} {p.quality:5.2f}  '
              f'{p.metrics["val_loss"]:8.4f}  {p.predicted_latency_ms:9.2f}  '
              + '  '.join(f'{p.latency_ms[t]:8.2f}' for t in threads)
              + ('  ' + ', '.join(f'{r:.3f}' for r in ratios) if ratios else '  -'))
    for t in threads:
        ms = sorted(p.latency_ms[t] for p in library.points)
        print(f'library span at {t} threads: x{ms[-1] / ms[0]:.2f} ({ms[0]:.1f} .. '
              f'{ms[-1]:.1f} ms)' + (' (ranking count)' if t == rank else ''))
    if summary.cloud:
        print(f'random sub-networks dominated by the searched front (latency and validation '
              f'loss): {summary.cloud_dominated} of {len(summary.cloud)}')
    print(f'wrote {config.plot_path}')
    print(f'wrote {config.library_path} in {time.perf_counter() - began:.0f} s')
    return 0
