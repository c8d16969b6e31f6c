"""``dyn-dnn-ros design predictor``: fit per-thread-count latency predictors to a latency CSV."""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.latency import RUN_DIR
from dyn_dnn_ros.share import config_path

HELP = 'fit the latency predictor to a latency dataset'
DEFAULT_SPACE = config_path('design_space.yaml')


def add_arguments(parser):
    from dyn_dnn_ros.translation.design.predictor import KINDS, PredictorConfig
    d = PredictorConfig()
    parser.add_argument('--data', type=Path, default=RUN_DIR / 'latency_cpu.csv',
                        help='latency CSV (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=None,
                        help='predictor file (default: the CSV\'s name with '
                             '.predictor.safetensors)')
    parser.add_argument('--space', type=Path, default=DEFAULT_SPACE,
                        help='design space the configs must lie in (default: %(default)s)')
    parser.add_argument('--kinds', nargs='+', choices=KINDS, default=list(KINDS),
                        help='candidate models; the better on validation is kept')
    parser.add_argument('--seed', type=int, default=d.seed, help='split and MLP seed')
    parser.add_argument('--epochs', type=int, default=d.epochs, help='MLP training steps')
    parser.add_argument('--hidden', type=int, default=d.hidden, help='MLP hidden units')
    parser.add_argument('--no-hat', action='store_true',
                        help='skip HAT\'s averaged-feature baseline')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads for fitting (default: torch decides)')


def run(args) -> int:
    import torch

    from dyn_dnn_ros.translation.design.latency_csv import read_latency_csv
    from dyn_dnn_ros.translation.design.predictor import PredictorConfig, fit_predictor
    from dyn_dnn_ros.translation.design_space import DesignSpace
    from dyn_dnn_ros.validation import require_int
    out = args.out or args.data.with_suffix('.predictor.safetensors')
    try:
        if args.threads is not None:
            require_int('--threads', args.threads, 1)
            torch.set_num_threads(args.threads)
        config = PredictorConfig(seed=args.seed, epochs=args.epochs, hidden=args.hidden,
                                 kinds=tuple(args.kinds), hat_baseline=not args.no_hat)
        space = DesignSpace.from_yaml(args.space)
        rows = read_latency_csv(args.data, space)
        predictor, report = fit_predictor(rows, space, config)
        predictor.save(out)
    except ValueError as err:
        print(f'dyn-dnn-ros predictor: {err}', file=sys.stderr)
        return 2
    print(f'{len(rows)} rows, {report.train_configs} training and {report.test_configs} '
          f'held-out configs ({args.data})')
    print('held-out errors, MAPE % / largest %:')
    print(f'{"threads":>7}  {"chosen":<9}' + ''.join(
        f'{name:>17}' for name in ('additive', 'mlp', 'HAT baseline')))
    for threads, results in report.test.items():
        cells = ''.join(
            f'{results[k]["mape"]:9.2f} /{results[k]["max_pct"]:6.1f}' if k in results
            else f'{"-":>17}' for k in ('additive', 'mlp', 'hat'))
        print(f'{threads:>7}  {report.chosen[threads]:<9}{cells}')
    s = report.steps
    print(f'decoder steps model: MAPE {s["mape"]:.2f} %, max {s["max_pct"]:.1f} % on held-out')
    print(f'saved {out}')
    return 0
