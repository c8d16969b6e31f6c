"""``dyn-dnn-ros perception train``: train the WeNet CNN (all sub-networks at once)."""

from dataclasses import replace
from pathlib import Path

from dyn_dnn_ros.share import config_path, runs_path

HELP = 'train the WeNet CNN on handwritten digits'

DEFAULT_CONFIG = config_path('wenet.yaml')
CHECKPOINT_DIR = runs_path('perception')
# Not models/perception/wenet: a new model replaces the shipped one only when named.
DEFAULT_OUT = CHECKPOINT_DIR / 'wenet'


def add_arguments(parser):
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG,
                        help='YAML with model/data/train sections (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT,
                        help='model directory to write (default: %(default)s; the '
                             'shipped model is models/perception/wenet)')
    parser.add_argument('--epochs', type=int, help='override train.epochs')
    parser.add_argument('--subnets-per-step', type=int,
                        help='override train.subnets_per_step (full + smallest + random)')
    parser.add_argument('--no-distill', action='store_true',
                        help='train sub-networks on labels, not the full network\'s output')
    parser.add_argument('--no-shuffle', action='store_true',
                        help='no channel shuffle between grouped layers (ablation)')
    parser.add_argument('--threads', type=int, help='override train.threads (CPU threads)')
    parser.add_argument('--checkpoint', type=Path,
                        help='checkpoint file (default: runs/perception/<out name>.pt)')
    parser.add_argument('--resume', action='store_true',
                        help='continue from the checkpoint of an interrupted run')


def run(args):
    from dyn_dnn_ros.perception.datasets import DataConfig
    from dyn_dnn_ros.perception.training import TrainConfig, read_config_file, train_and_save
    from dyn_dnn_ros.perception.wenet import WeNetConfig

    try:
        sections = read_config_file(args.config)
        model_config = WeNetConfig.from_dict(sections.get('model', {}))
        data_config = DataConfig(**sections.get('data', {}))
        train_config = TrainConfig.from_dict(sections.get('train', {}))
        if args.no_shuffle:
            model_config = replace(model_config, shuffle=False)
        overrides = {'epochs': args.epochs, 'subnets_per_step': args.subnets_per_step,
                     'threads': args.threads}
        if args.no_distill:
            overrides['distill'] = False
        train_config = replace(train_config,
                               **{k: v for k, v in overrides.items() if v is not None})
        checkpoint = args.checkpoint or CHECKPOINT_DIR / f'{args.out.name}.pt'
        _, summary = train_and_save(model_config, data_config, train_config, args.out,
                                    checkpoint, args.resume)
    except (TypeError, ValueError) as error:
        print(f'wenet-train: {error}')
        return 2
    print(f'wrote {args.out} after {summary["train_seconds"]:.0f} s of training '
          f'({summary["epochs"]} epochs)')
    print('test accuracy, all layers at n groups: per-pattern BN statistics / calibrated')
    for n, accuracy in summary['test_accuracy'].items():
        print(f'  n={n:<2d} {accuracy["per_pattern_bn"]:.4f} / {accuracy["calibrated_bn"]:.4f}')
    return 0
