"""``dyn-dnn-ros perception dse``: greedy design-space exploration of a trained WeNet."""

from dataclasses import replace
from pathlib import Path

from dyn_dnn_ros.share import config_path, model_path, runs_path

HELP = 'greedy design-space exploration of WeNet'

DEFAULT_CONFIG = config_path('wenet.yaml')
DEFAULT_MODEL = model_path('perception', 'wenet')
# Outputs go under runs/; the shipped library (config/generated/), plot and ablation
# table (docs/) and the shipped model's calibrations (models/) change only when
# named, as `make design-perception` does.
RUN_DIR = runs_path('perception')
DEFAULT_MODEL_OUT = RUN_DIR / 'wenet'
DEFAULT_LIBRARY = RUN_DIR / 'operating_points_perception_cpu.yaml'
DEFAULT_PLOT = RUN_DIR / 'perception_pareto.png'
DEFAULT_ABLATION_MODEL = model_path('perception', 'wenet_noshuffle')
ABLATION_TABLE = RUN_DIR / 'perception_ablation.md'


def add_arguments(parser):
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG,
                        help='YAML with a dse section (default: %(default)s)')
    parser.add_argument('--model', type=Path, default=DEFAULT_MODEL,
                        help='trained model directory, read only unless --model-out names '
                             'it (default: %(default)s)')
    parser.add_argument('--model-out', type=Path, default=DEFAULT_MODEL_OUT,
                        help='model directory that receives the calibrations of the points '
                             'found (calibration.safetensors, with a copy of the weights '
                             'when it is not --model); the library names it. Name --model '
                             'to rewrite its calibrations in place (default: %(default)s)')
    parser.add_argument('--threshold', type=float,
                        help='override dse.threshold: lowest validation accuracy to accept')
    parser.add_argument('--out', type=Path, default=DEFAULT_LIBRARY,
                        help='operating-point library to write (default: %(default)s)')
    parser.add_argument('--plot', type=Path, nargs='?', const=DEFAULT_PLOT,
                        help=f'write the accuracy/latency/MACs plot (default: {DEFAULT_PLOT})')
    parser.add_argument('--ablation', type=Path, nargs='?', const=DEFAULT_ABLATION_MODEL,
                        help='model trained with the other shuffle setting: print and save '
                             f'the shuffle ablation (default: {DEFAULT_ABLATION_MODEL}, '
                             f'table: {ABLATION_TABLE})')
    parser.add_argument('--ablation-table', type=Path, default=ABLATION_TABLE,
                        help='where --ablation writes its Markdown table (default: '
                             '%(default)s)')


def run(args):
    from dyn_dnn_ros.perception.dse import DSEConfig, run_dse
    from dyn_dnn_ros.perception.training import read_config_file

    try:
        config = DSEConfig.from_dict(read_config_file(args.config).get('dse', {}))
        if args.threshold is not None:
            config = replace(config, threshold=args.threshold)
        summary = run_dse(args.model, config, args.out, args.plot, args.ablation,
                          args.ablation_table if args.ablation else None,
                          model_out=args.model_out)
    except (TypeError, ValueError) as error:
        print(f'wenet-dse: {error}')
        return 2
    result, library = summary['result'], summary['library']
    print(f'visited {len(result.visited)} configurations, {len(result.trajectory)} accepted '
          f'steps, {len(summary["pareto"])} on the Pareto front; wrote '
          f'{len(library.points)} operating points to {args.out}')
    threads = sorted(config.library_threads)
    print('point     MMACs  MACs%  ' + '  '.join(f'{t}thr ms' for t in threads)
          + '  val acc  test acc')
    for point in library.points:
        m = point.metrics
        print(f'{point.name:8s} {m["macs"] / 1e6:6.1f} {100 * m["flops_fraction"]:5.1f}%  '
              + '  '.join(f'{point.latency_ms[t]:7.3f}' for t in threads)
              + f'  {m["val_accuracy"]:.4f}   {point.quality:.4f}   {m["key"]}')
    print('uniform baselines:')
    for row in summary['uniform']:
        print(f'  1/{row["groups"]:<2d} {row["macs"] / 1e6:6.1f} MMACs  '
              + '  '.join(f'{row["latency_ms"][t]:7.3f}' for t in threads)
              + f'  test acc {row["test_accuracy"]:.4f}')
    s = summary['switching_us']
    print(f'switching: wall p50 {s["p50"]:.1f} us, p99 {s["p99"]:.1f} us; '
          f'cpu p99 {s["cpu_p99"]:.1f} us over {s["count"]} random switches')
    if config.calibrate:
        print(f'wrote the model with the calibrations of the points to {args.model_out} '
              f'(perception_node: model_dir:={args.model_out} with this library)')
    if args.plot:
        print(f'wrote {args.plot}')
    if 'ablation' in summary:
        print(summary['ablation'], end='')
        print(f'wrote {args.ablation_table}')
    return 0
