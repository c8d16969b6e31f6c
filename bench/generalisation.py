"""How well the shipped weights translate text from packages they never saw.

BLEU and chrF (sacrebleu defaults) on the out-of-catalog test split (whole
Debian packages held out of training) and, for continuity, on the in-catalog
split (drawn from the training packages), for the largest and smallest
sub-networks (torch engine, beam 5) and for every point of the CTranslate2
library (its engine, compute type and beam width).

    python bench/generalisation.py
"""

import argparse
import json
from pathlib import Path
import sys

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.share import data_path, library_path, runs_path
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine, create_library_engine
from dyn_dnn_ros.translation.outcome import read_split


def scores(engine, subnet, width, sources, references, threads):
    import sacrebleu
    outcomes = engine.translate(sources, subnet, width, threads=threads, batch_size=16,
                                progress=True)
    hypotheses = [o.text for o in outcomes]
    return {'bleu': sacrebleu.corpus_bleu(hypotheses, [references]).score,
            'chrf': sacrebleu.corpus_chrf(hypotheses, [references]).score}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--library', type=Path, default=library_path('translation', 'cpu'))
    parser.add_argument('--corpus-dir', type=Path, default=data_path('corpus'))
    parser.add_argument('--splits', nargs='+', default=['test', 'test_incatalog'])
    parser.add_argument('--limit', type=int, default=None)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', type=Path,
                        default=runs_path('bench', 'generalisation.json'))
    args = parser.parse_args(argv)
    library = OperatingPointLibrary.load(args.library)
    splits = {name: read_split(args.corpus_dir, name, args.limit) for name in args.splits}
    torch_engine = create_engine(EngineConfig(engine='torch'))
    library_engine = create_library_engine(library, where=str(args.library))
    rows = [('largest', torch_engine, torch_engine.space.largest(), 5),
            ('smallest', torch_engine, torch_engine.space.smallest(), 5)]
    rows += [(p.name, library_engine, SubnetConfig.from_dict(p.subnet), p.beam.width)
             for p in library.points]
    report = {}
    for name, engine, subnet, width in rows:
        report[name] = {'key': subnet.key(), 'engine': f'{engine.name} {engine.compute_type}',
                        'beam': width}
        for split, (sources, references) in splits.items():
            # CTranslate2 int8 runs fastest on one thread on small CPUs (docs/results.md).
            threads = args.threads if engine.name == 'torch' else 1
            report[name][split] = scores(engine, subnet, width, sources, references, threads)
        print(name, json.dumps(report[name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({'splits': {k: len(v[0]) for k, v in splits.items()},
                                    'rows': report}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
