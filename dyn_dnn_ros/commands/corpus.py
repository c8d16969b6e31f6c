"""``dyn-dnn-ros translation corpus``: build the English->German corpus."""

from pathlib import Path
import sys

from dyn_dnn_ros.translation.corpus import (
    DEFAULT_CONFIG_PATH,
    CorpusError,
    ParallelFiles,
    build_corpus,
    load_corpus_config,
    with_overrides,
)

HELP = 'build the English->German corpus from Debian catalogs'
SOURCE_FILE_HELD_OUT_RATIO = 0.025   # valid and test shares of plain parallel text


def add_arguments(parser):
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG_PATH,
                        help='corpus YAML file (default: %(default)s)')
    parser.add_argument('--packages', nargs='+', metavar='PKG',
                        help='training packages to download instead of the configured ones')
    parser.add_argument('--valid-packages', nargs='+', metavar='PKG',
                        help='packages held out whole as the valid split')
    parser.add_argument('--test-packages', nargs='+', metavar='PKG',
                        help='packages held out whole as the test split')
    parser.add_argument('--no-base-system', dest='base_system', action='store_false',
                        default=None, help="skip the installed packages' German catalogs")
    parser.add_argument('--source-file', type=Path, metavar='X.en',
                        help='plain English text, one sentence per line; replaces the '
                             'Debian sources (with --target-file), and valid and test are '
                             'drawn from it by a hash (--valid-ratio, --test-ratio)')
    parser.add_argument('--target-file', type=Path, metavar='X.de',
                        help='plain German text aligned line by line with --source-file')
    parser.add_argument('--cache-dir', type=Path, help='download/extract cache')
    parser.add_argument('--out-dir', type=Path,
                        help='where the split files go (default: the config\'s out_dir; the '
                             'shipped one says runs/translation/corpus)')
    parser.add_argument('--min-words', type=int)
    parser.add_argument('--max-words', type=int)
    parser.add_argument('--valid-ratio', type=float,
                        help='share of the training sources drawn into valid by a hash '
                             '(default: the config; 0.025 with --source-file)')
    parser.add_argument('--test-ratio', type=float,
                        help='share of the training sources drawn into test by a hash '
                             '(default: the config; 0.025 with --source-file)')
    parser.add_argument('--test-incatalog-ratio', type=float,
                        help='share of the training sources drawn into test_incatalog')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def built_corpus_dir() -> Path:
    """Where this command writes with the shipped config: the tokenizer's and training's input."""
    return load_corpus_config(DEFAULT_CONFIG_PATH).out_dir


def run(args) -> int:
    if (args.source_file is None) != (args.target_file is None):
        print('error: --source-file and --target-file go together', file=sys.stderr)
        return 2
    try:
        config = with_overrides(
            load_corpus_config(args.config),
            packages=args.packages, valid_packages=args.valid_packages,
            test_packages=args.test_packages, base_system=args.base_system,
            cache_dir=args.cache_dir, out_dir=args.out_dir, min_words=args.min_words,
            max_words=args.max_words, valid_ratio=args.valid_ratio, test_ratio=args.test_ratio,
            test_incatalog_ratio=args.test_incatalog_ratio)
        if args.source_file is not None:
            # Plain text has no packages to hold out: valid and test come from a hash.
            config = with_overrides(
                config, packages=(), valid_packages=(), test_packages=(), base_system=False,
                parallel=(ParallelFiles(args.source_file, args.target_file),),
                valid_ratio=_or(args.valid_ratio, SOURCE_FILE_HELD_OUT_RATIO),
                test_ratio=_or(args.test_ratio, SOURCE_FILE_HELD_OUT_RATIO),
                test_incatalog_ratio=_or(args.test_incatalog_ratio, 0.0))
        stats = build_corpus(config, progress=not args.quiet)
    except (ValueError, CorpusError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for name, count in stats.splits.items():
        print(f'{name}: {count} pairs')
    print(f'total: {stats.total} pairs in {stats.out_dir}')
    dropped = stats.to_dict()['dropped']
    print('dropped: ' + ', '.join(f'{reason}={n}' for reason, n in dropped.items()))
    if stats.excluded:
        print(f'excluded (never read): {", ".join(sorted(stats.excluded))}')
    for problem in stats.unreadable:
        print(f'warning: skipped {problem}', file=sys.stderr)
    return 0


def _or(value, default):
    return default if value is None else value
