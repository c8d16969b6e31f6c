"""``dyn-dnn-ros evaluate``: BLEU of a sub-network and beam policy on a corpus split."""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.translate import (
    add_beam_arguments,
    add_model_arguments,
    add_subnet_arguments,
    load_engine,
    model_options,
    subnet_and_beam,
)
from dyn_dnn_ros.share import data_path

HELP = 'BLEU of a sub-network on the test split'
# Corpus files are data, not shipped with the package: they stay in the checkout.
DEFAULT_CORPUS_DIR = data_path('corpus')


def add_arguments(parser):
    parser.add_argument('--split', choices=('test', 'valid', 'test_incatalog'), default='test',
                        help='corpus split (default: %(default)s)')
    parser.add_argument('--limit', type=int, default=None, metavar='N',
                        help='only the first N sentences')
    parser.add_argument('--corpus-dir', type=Path, default=DEFAULT_CORPUS_DIR,
                        help='folder with {test,valid}.{en,de} (default: %(default)s)')
    add_model_arguments(parser)
    add_subnet_arguments(parser)
    add_beam_arguments(parser)


def run(args) -> int:
    from dyn_dnn_ros.translation.engines import evaluate
    from dyn_dnn_ros.translation.outcome import read_split
    try:
        options = model_options(args)
        subnet, beam = subnet_and_beam(args, options.engine)
        sources, references = read_split(args.corpus_dir, args.split, args.limit)
        engine = load_engine(options)
        subnet = engine.check_subnet(subnet)
        result = evaluate(engine, sources, references, subnet, beam, threads=options.threads,
                          progress=True, patience=args.patience)
    except ValueError as err:
        print(f'dyn-dnn-ros evaluate: {err}', file=sys.stderr)
        return 2
    shortlist = engine.vocabulary_map_sha256
    print(f'{args.split}: {result.sentences} sentences, sub-network {subnet.key()} on '
          f'{options.engine} {engine.compute_type}'
          + (f' with vocabulary map sha256 {shortlist[:12]}' if shortlist else '')
          + f', {beam.describe()}')
    print(f'BLEU {result.bleu:.2f}  average beam width {result.avg_width:.2f}  '
          f'perplexity {result.perplexity:.2f}  time {result.seconds:.2f} s')
    return 0
