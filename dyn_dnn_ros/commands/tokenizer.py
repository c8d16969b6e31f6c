"""``dyn-dnn-ros translation tokenizer``: train the joint SentencePiece model on the corpus."""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.corpus import built_corpus_dir
from dyn_dnn_ros.share import runs_path
from dyn_dnn_ros.translation.tokenizer import (
    Tokenizer,
    TokenizerConfig,
    tokenizer_stats,
    train_tokenizer,
)

HELP = 'train the joint SentencePiece model'
_DEFAULTS = TokenizerConfig()
# Not the shipped models/translation/spm.model, which the shipped model needs.
DEFAULT_MODEL = runs_path('translation', 'spm.model')


def add_arguments(parser):
    parser.add_argument('--corpus-dir', type=Path, default=None,
                        help='folder with train.en/train.de (default: where `dyn-dnn-ros '
                             'translation corpus` writes, the out_dir of config/corpus.yaml)')
    parser.add_argument('--model', type=Path, default=DEFAULT_MODEL,
                        help='output .model path; .vocab goes beside it (default: %(default)s; '
                             'the shipped one is models/translation/spm.model)')
    parser.add_argument('--vocab-size', type=int, default=_DEFAULTS.vocab_size)
    parser.add_argument('--character-coverage', type=float,
                        default=_DEFAULTS.character_coverage)
    parser.add_argument('--placeholder-min-count', type=int,
                        default=_DEFAULTS.placeholder_min_count,
                        help='make a placeholder seen this often one token (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=_DEFAULTS.num_threads)


def run(args) -> int:
    try:
        config = TokenizerConfig(
            corpus_dir=args.corpus_dir or built_corpus_dir(), model_path=args.model,
            vocab_size=args.vocab_size,
            character_coverage=args.character_coverage,
            placeholder_min_count=args.placeholder_min_count, num_threads=args.threads)
        print(f'training a {config.vocab_size}-piece BPE model on {config.corpus_dir} ...',
              flush=True)
        path = train_tokenizer(config)
        stats = tokenizer_stats(Tokenizer(path), config.corpus_dir, 'test')
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'wrote {path} and {path.with_suffix(".vocab")}')
    print(f'vocab size: {stats["vocab_size"]}')
    for lang in ('en', 'de'):
        side = stats[lang]
        print(f'test.{lang}: {side["sentences"]} sentences, '
              f'{side["tokens_per_sentence"]:.2f} tokens/sentence, '
              f'unk rate {side["unk_rate"]:.5%}')
    return 0
