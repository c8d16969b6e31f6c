"""``dyn-dnn-ros corpus``: build the English->German corpus."""

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


def add_arguments(parser):
    parser.add_argument('--config', type=Path, default=DEFAULT_CONFIG_PATH,
                        help='corpus YAML file (default: %(default)s)')
    parser.add_argument('--packages', nargs='+', metavar='PKG',
                        help='Debian packages to download instead of the configured ones')
    parser.add_argument('--no-base-system', dest='base_system', action='store_false',
                        default=None, help="skip the installed packages' German catalogs")
    parser.add_argument('--source-file', type=Path, metavar='X.en',
                        help='plain English text, one sentence per line; replaces the '
                             'Debian sources (with --target-file)')
    parser.add_argument('--target-file', type=Path, metavar='X.de',
                        help='plain German text aligned line by line with --source-file')
    parser.add_argument('--cache-dir', type=Path, help='download/extract cache')
    parser.add_argument('--out-dir', type=Path, help='where the split files go')
    parser.add_argument('--min-words', type=int)
    parser.add_argument('--max-words', type=int)
    parser.add_argument('--valid-ratio', type=float)
    parser.add_argument('--test-ratio', type=float)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')


def run(args) -> int:
    if (args.source_file is None) != (args.target_file is None):
        print('error: --source-file and --target-file go together', file=sys.stderr)
        return 2
    try:
        config = with_overrides(
            load_corpus_config(args.config),
            packages=args.packages, base_system=args.base_system, cache_dir=args.cache_dir,
            out_dir=args.out_dir, min_words=args.min_words, max_words=args.max_words,
            valid_ratio=args.valid_ratio, test_ratio=args.test_ratio)
        if args.source_file is not None:
            config = with_overrides(config, packages=(), base_system=False,
                                    parallel=(ParallelFiles(args.source_file, args.target_file),))
        stats = build_corpus(config, progress=not args.quiet)
    except (ValueError, CorpusError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for name, count in stats.splits.items():
        print(f'{name}: {count} pairs')
    print(f'total: {stats.total} pairs in {stats.out_dir}')
    dropped = stats.to_dict()['dropped']
    print('dropped: ' + ', '.join(f'{reason}={n}' for reason, n in dropped.items()))
    for problem in stats.unreadable:
        print(f'warning: skipped {problem}', file=sys.stderr)
    return 0
