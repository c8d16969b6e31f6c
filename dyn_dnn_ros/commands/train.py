"""``dyn-dnn-ros train``: train the SuperTransformer (HAT random sub-networks or sandwich rule).

Rerunning the same command continues the run in ``--out`` where it stopped;
Ctrl-C (or SIGTERM) finishes the step, saves a checkpoint and exits 0.
"""

from pathlib import Path
import sys

HELP = 'train the SuperTransformer (HAT + sandwich rule)'


def add_arguments(parser):
    from dyn_dnn_ros.translation.training import MODES, TrainConfig
    d = TrainConfig()
    parser.add_argument('--corpus-dir', type=Path, default=None,
                        help='folder with {train,valid}.{en,de} (default: where `dyn-dnn-ros '
                             'translation corpus` writes, the out_dir of config/corpus.yaml)')
    parser.add_argument('--spm', type=Path, default=d.spm_path,
                        help='SentencePiece model (default: %(default)s)')
    parser.add_argument('--space', type=Path, default=d.space_path,
                        help='design space YAML (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=d.run_dir,
                        help='run folder: checkpoint, snapshots, history, learning curve, '
                             'exported model (default: %(default)s)')
    parser.add_argument('--mode', choices=MODES, default=d.mode,
                        help='sandwich: largest + smallest + random sub-networks per step with '
                             'in-place distillation; random: one random sub-network per step '
                             '(HAT); largest: only the largest (default: %(default)s)')
    parser.add_argument('--random-subnets', type=int, default=d.random_subnets,
                        help='sandwich mode: random sub-networks per step (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=d.epochs,
                        help='most epochs (default: %(default)s)')
    parser.add_argument('--max-tokens', type=int, default=d.max_tokens,
                        help='padded tokens per micro-batch (default: %(default)s)')
    parser.add_argument('--lr', type=float, default=d.lr, help='peak learning rate')
    parser.add_argument('--warmup', type=int, default=d.warmup, help='warm-up steps')
    parser.add_argument('--accum', type=int, default=d.accum,
                        help='micro-batches per optimiser step (default: %(default)s)')
    parser.add_argument('--device', choices=('cpu', 'cuda', 'auto'), default=d.device)
    parser.add_argument('--no-amp', action='store_true', help='no bf16 autocast on CUDA')
    parser.add_argument('--threads', type=int, default=d.threads,
                        help='torch CPU threads (default: torch decides)')
    parser.add_argument('--seed', type=int, default=d.seed)
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument('--resume', dest='resume', action='store_const', const='require',
                        default=d.resume,
                        help='require OUT/checkpoint_last.pt (without this option a run '
                             'continues from it when it exists)')
    resume.add_argument('--no-resume', dest='resume', action='store_const', const='never',
                        help='refuse to start when OUT already holds a checkpoint')
    parser.add_argument('--init-from', type=Path, default=None,
                        help='start a new run from these model weights (fresh optimiser), e.g. '
                             'the shipped models/translation/supertransformer.safetensors')
    parser.add_argument('--export', type=Path, default=None,
                        help='final fp16 model file (default: OUT/model.safetensors)')
    parser.add_argument('--max-steps', type=int, default=None,
                        help='stop after this many optimiser steps in all')
    parser.add_argument('--max-minutes', type=float, default=None,
                        help='stop after this much wall time in all, resumed runs included')
    parser.add_argument('--patience', type=int, default=d.patience,
                        help='stop after this many validations without a better mean BLEU of '
                             'the largest and smallest; 0 never stops early '
                             '(default: %(default)s)')
    parser.add_argument('--average', type=int, default=d.average,
                        help='best validated snapshots averaged into the exported model; 1: '
                             'the best one; 0: the last weights (default: %(default)s)')
    parser.add_argument('--valid-every', type=int, default=d.valid_every,
                        help='optimiser steps between validations; 0: after every epoch '
                             '(default: %(default)s)')
    parser.add_argument('--valid-sentences', type=int, default=d.valid_sentences,
                        help='validation sentences for greedy BLEU (default: %(default)s)')
    parser.add_argument('--checkpoint-every', type=int, default=d.checkpoint_every,
                        help='optimiser steps between checkpoints (default: %(default)s)')
    parser.add_argument('--checkpoint-minutes', type=float, default=d.checkpoint_minutes,
                        help='minutes between checkpoints (default: %(default)s)')
    parser.add_argument('--log-every', type=int, default=d.log_every,
                        help='optimiser steps between log records (default: %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def run(args):
    from dyn_dnn_ros.translation.training import TrainConfig, train
    config = TrainConfig(
        run_dir=args.out, corpus_dir=args.corpus_dir, spm_path=args.spm, space_path=args.space,
        mode=args.mode, random_subnets=args.random_subnets, epochs=args.epochs,
        max_tokens=args.max_tokens, lr=args.lr, warmup=args.warmup, accum=args.accum,
        device=args.device, amp=not args.no_amp, threads=args.threads, seed=args.seed,
        resume=args.resume, init_from=args.init_from, export_path=args.export,
        max_steps=args.max_steps, max_minutes=args.max_minutes, patience=args.patience,
        average=args.average, valid_every=args.valid_every,
        valid_sentences=args.valid_sentences, checkpoint_every=args.checkpoint_every,
        checkpoint_minutes=args.checkpoint_minutes, log_every=args.log_every,
        progress_bar=not args.no_progress)
    try:
        summary = train(config)
    except ValueError as err:
        print(f'dyn-dnn-ros train: {err}', file=sys.stderr)
        return 2
    if summary.stopped_by is not None:
        print(f'stopped by {summary.stopped_by} at step {summary.step}; the checkpoint is in '
              f'{args.out}: run the same command again to continue')
    elif summary.export_path is not None:
        print(f'trained {summary.step} steps ({summary.epoch} epochs, finished by '
              f'{summary.finished}); model saved to {summary.export_path}')
    return 0
