"""``dyn-dnn-ros train``: train the SuperTransformer (HAT random sub-networks or sandwich rule)."""

from pathlib import Path
import sys

HELP = 'train the SuperTransformer (HAT + sandwich rule)'


def add_arguments(parser):
    from dyn_dnn_ros.translation.training import MODES, TrainConfig
    d = TrainConfig()
    parser.add_argument('--corpus-dir', type=Path, default=d.corpus_dir,
                        help='folder with {train,valid}.{en,de} (default: %(default)s)')
    parser.add_argument('--spm', type=Path, default=d.spm_path,
                        help='SentencePiece model (default: %(default)s)')
    parser.add_argument('--space', type=Path, default=d.space_path,
                        help='design space YAML (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=d.run_dir,
                        help='run directory for checkpoints and logs (default: %(default)s)')
    parser.add_argument('--mode', choices=MODES, default=d.mode,
                        help='sandwich: largest + smallest + random sub-networks per step with '
                             'in-place distillation; random: one random sub-network per step '
                             '(HAT); largest: only the largest (default: %(default)s)')
    parser.add_argument('--random-subnets', type=int, default=d.random_subnets,
                        help='sandwich mode: random sub-networks per step (default: %(default)s)')
    parser.add_argument('--epochs', type=int, default=d.epochs)
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
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUT/checkpoint_last.pt')
    parser.add_argument('--init-from', type=Path, default=None,
                        help='start from these model weights (fresh optimiser), e.g. the '
                             'shipped models/translation/supertransformer.safetensors')
    parser.add_argument('--export', type=Path, default=None,
                        help='final fp16 model file (default: OUT/model.safetensors)')
    parser.add_argument('--max-steps', type=int, default=None,
                        help='stop after this many optimiser steps (smoke runs)')
    parser.add_argument('--checkpoint-every', type=int, default=d.checkpoint_every,
                        help='optimiser steps between checkpoints (default: %(default)s)')
    parser.add_argument('--log-every', type=int, default=d.log_every,
                        help='optimiser steps between log records (default: %(default)s)')
    parser.add_argument('--valid-sentences', type=int, default=d.valid_sentences,
                        help='validation sentences for BLEU (default: %(default)s)')


def run(args):
    from dyn_dnn_ros.translation.training import TrainConfig, train
    config = TrainConfig(
        run_dir=args.out, corpus_dir=args.corpus_dir, spm_path=args.spm, space_path=args.space,
        mode=args.mode, random_subnets=args.random_subnets, epochs=args.epochs,
        max_tokens=args.max_tokens, lr=args.lr, warmup=args.warmup, accum=args.accum,
        device=args.device, amp=not args.no_amp, threads=args.threads, seed=args.seed,
        resume=args.resume, init_from=args.init_from, export_path=args.export,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
        valid_sentences=args.valid_sentences)
    try:
        summary = train(config)
    except ValueError as err:
        print(f'dyn-dnn-ros train: {err}', file=sys.stderr)
        return 2
    if summary.export_path is not None:
        print(f'trained {summary.step} steps ({summary.epoch} epochs); '
              f'model saved to {summary.export_path}')
    return 0
