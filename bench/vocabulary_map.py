"""How much of the reference translations the vocabulary map's shortlist holds.

For each sentence of each split, one at a time as the node translates: the
target pieces the CTranslate2 engine may choose from (``vocabulary_map.shortlist``)
against the pieces of the reference. Printed per split: the share of
reference tokens in the shortlist, the share of sentences whose reference
fits it entirely, the shortlist's mean size, and how many of the missing
tokens occur in the source sentence itself (words the translation would copy).

    python bench/vocabulary_map.py --split data/corpus:test
"""

import argparse
import json
from pathlib import Path
import sys

from dyn_dnn_ros.share import data_path, runs_path
from dyn_dnn_ros.translation.model_file import default_spm_path, default_vocabulary_map_path
from dyn_dnn_ros.translation.outcome import read_split
from dyn_dnn_ros.translation.tokenizer import Tokenizer
from dyn_dnn_ros.translation.vocabulary_map import read_vocabulary_map, shortlist


def coverage(tokenizer, entries, sources, references) -> dict:
    tokens = missing = copies = covered = listed = 0
    for source, reference in zip(sources, references, strict=True):
        source_pieces = [tokenizer.id_to_piece(i) for i in tokenizer.encode(source)]
        allowed = shortlist(entries, source_pieces)
        wanted = [tokenizer.id_to_piece(i) for i in tokenizer.encode(reference)]
        lost = [piece for piece in wanted if piece not in allowed]
        tokens += len(wanted)
        missing += len(lost)
        copies += sum(piece in source_pieces for piece in lost)
        covered += not lost
        listed += len(allowed)
    return {'sentences': len(sources), 'reference_tokens_held': 1 - missing / max(tokens, 1),
            'sentences_held_entirely': covered / max(len(sources), 1),
            'mean_shortlist': listed / max(len(sources), 1),
            'missing_in_source': copies / max(missing, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--map', type=Path, default=default_vocabulary_map_path())
    parser.add_argument('--spm', type=Path, default=default_spm_path())
    parser.add_argument('--split', action='append', default=None, metavar='FOLDER:SPLIT',
                        help='a corpus folder and split (default: data/corpus:test); '
                             'may be repeated')
    parser.add_argument('--out', type=Path, default=runs_path('bench', 'vocabulary_map.json'))
    args = parser.parse_args(argv)
    tokenizer = Tokenizer(args.spm)
    entries = read_vocabulary_map(args.map, tokenizer.pieces())
    report = {}
    for spec in args.split or [f'{data_path("corpus")}:test']:
        folder, _, split = spec.rpartition(':')
        sources, references = read_split(folder, split)
        report[spec] = row = coverage(tokenizer, entries, sources, references)
        print(f'{spec}: {row["sentences"]} sentences, reference tokens in the shortlist '
              f'{row["reference_tokens_held"]:.1%}, references held entirely '
              f'{row["sentences_held_entirely"]:.1%}, mean shortlist '
              f'{row["mean_shortlist"]:.0f} pieces, missing tokens found in the source '
              f'{row["missing_in_source"]:.1%}')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
