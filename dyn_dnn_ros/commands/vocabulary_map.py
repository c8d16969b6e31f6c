"""``dyn-dnn-ros translation vocabulary-map``: the CTranslate2 engine's target shortlist.

Counts the training corpus's sentence pairs and writes the vocabulary map
(``translation/vocabulary_map.py``) that the CTranslate2 engine uses to score
a shortlist of target tokens instead of the whole vocabulary. The shipped map
is ``models/translation/vocabulary_map.txt``; a library made with a map records
its digest, so after writing a new one re-make the library
(``dyn-dnn-ros design ctranslate2-library``).
"""

from pathlib import Path
import sys

from dyn_dnn_ros.share import runs_path
from dyn_dnn_ros.translation.outcome import read_split
from dyn_dnn_ros.translation.vocabulary_map import FILE_NAME, VocabularyMapConfig

HELP = "write the CTranslate2 engine's vocabulary map from the training corpus"
_DEFAULTS = VocabularyMapConfig()
# Not the shipped models/translation/vocabulary_map.txt: the shipped libraries were
# measured with that one.
DEFAULT_OUT = runs_path('translation', FILE_NAME)


def add_arguments(parser):
    parser.add_argument('--corpus-dir', type=Path, default=None,
                        help='folder with train.en/train.de (default: where `dyn-dnn-ros '
                             'translation corpus` writes)')
    parser.add_argument('--held-out', type=Path, action='append', default=[], metavar='DIR',
                        help='a corpus folder whose valid and test sentences are measured '
                             'on: their pairs are not counted (may be repeated; the corpus '
                             "folder's own valid and test splits are always held out)")
    parser.add_argument('--spm', type=Path, default=None,
                        help='SentencePiece model the map is for (default: the shipped one)')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT,
                        help='map file to write (default: %(default)s; the shipped one is '
                             f'models/translation/{FILE_NAME})')
    parser.add_argument('--always', type=int, default=_DEFAULTS.always,
                        help='most frequent target tokens offered to every sentence '
                             '(default: %(default)s)')
    parser.add_argument('--per-source', type=int, default=_DEFAULTS.per_source,
                        help='candidates listed per source token (default: %(default)s)')
    parser.add_argument('--max-pairs', type=int, default=None,
                        help='count only the first N training pairs (default: all)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def held_out_texts(folders) -> set:
    """Every sentence, both languages, of the evaluation splits found in ``folders``."""
    texts = set()
    for folder in folders:
        splits = [split for split in ('valid', 'test', 'test_incatalog')
                  if (Path(folder) / f'{split}.en').is_file()]
        if not splits:
            raise ValueError(f'{folder}: no valid.en or test.en to hold out')
        for split in splits:
            sources, references = read_split(folder, split)
            texts.update(sources, references)
    return texts


def run(args) -> int:
    from dyn_dnn_ros.commands.corpus import built_corpus_dir
    from dyn_dnn_ros.translation.model_file import default_spm_path
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    from dyn_dnn_ros.translation.vocabulary_map import build_vocabulary_map, write_vocabulary_map
    try:
        config = VocabularyMapConfig(always=args.always, per_source=args.per_source,
                                     max_pairs=args.max_pairs)
        tokenizer = Tokenizer(args.spm or default_spm_path())
        corpus = args.corpus_dir or built_corpus_dir()
        sources, targets = read_split(corpus, 'train')
        held_out = held_out_texts([corpus, *args.held_out])
        lines = build_vocabulary_map(tokenizer, sources, targets, config, held_out,
                                     progress=not args.no_progress)
        digest = write_vocabulary_map(lines, args.out)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    listed = sum(len(line.split('\t', 1)[1].split()) for line in lines[1:])
    print(f'wrote {args.out}: {len(lines[0].split())} tokens always offered, '
          f'{len(lines) - 1} source tokens with {listed / max(len(lines) - 1, 1):.1f} '
          f'candidates each on average (sha256 {digest[:12]})')
    return 0
