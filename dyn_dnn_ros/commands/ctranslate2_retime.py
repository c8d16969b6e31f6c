"""``dyn-dnn-ros design ctranslate2-retime``: a CTranslate2 library's latencies measured here.

See ``translation/design/engine_retime.py``. Writes the re-timed library to
``RUN/operating_points_translation_cpu.yaml`` unless ``--out`` names another
file (naming the ``--library`` file replaces it).
"""

from pathlib import Path
import sys

from dyn_dnn_ros.share import runs_path

HELP = "a CTranslate2 library's points timed again on this machine"


def add_arguments(parser):
    from dyn_dnn_ros.share import library_path
    parser.add_argument('--library', type=Path, default=library_path('translation', 'cpu'),
                        help='library to time again (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=None,
                        help='library to write (default: RUN/operating_points_translation_cpu'
                             '.yaml)')
    parser.add_argument('--run-dir', type=Path, default=runs_path('retime_ctranslate2'),
                        help='timing samples, kept as they are taken (default: %(default)s)')
    parser.add_argument('--rounds', type=int, default=12,
                        help='shuffled rounds per thread count (default: %(default)s)')
    parser.add_argument('--trim', type=float, default=0.2,
                        help='share of rounds dropped at each end (default: %(default)s)')
    parser.add_argument('--corpus-dir', type=Path, default=None,
                        help='folder whose valid split gives the sentences timed, drawn as '
                             'the library was (default: data/corpus)')
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--spm', type=Path, default=None)
    parser.add_argument('--vocabulary-map', type=Path, default=None,
                        help='the map the library was made with (default: the shipped one)')


def run(args) -> int:
    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.share import data_path, library_path
    from dyn_dnn_ros.translation.design.engine_library import library_timing_sentences
    from dyn_dnn_ros.translation.design.engine_retime import retime_library
    from dyn_dnn_ros.translation.engines import create_library_engine
    from dyn_dnn_ros.translation.outcome import read_split
    try:
        library = OperatingPointLibrary.load(args.library)
        library.check_runs_on('ctranslate2', 'cpu', where=str(args.library))
        valid, _ = read_split(args.corpus_dir or data_path('corpus'), 'valid')
        sentences = library_timing_sentences(library, valid)
        # A fresh engine holds only the library's models, as the translation node does.
        engine = create_library_engine(library, args.vocabulary_map or '',
                                       where=str(args.library), model_path=args.model,
                                       spm_path=args.spm)
        retimed = retime_library(library, engine, sentences, args.run_dir, rounds=args.rounds,
                                 trim=args.trim)
    except ValueError as err:
        print(f'dyn-dnn-ros design ctranslate2-retime: {err}', file=sys.stderr)
        return 2
    out = args.out or args.run_dir / library_path('translation', 'cpu').name
    retimed.save(out)
    kept = {point.name: point for point in retimed.points}
    print(f'{out}: {len(library.points)} points timed again, {len(kept)} kept')
    for before in library.points:
        after = kept.get(before.name)
        if after is None:
            print(f'  {before.name}: dropped, now slower than a better point')
            continue
        print(f'  {after.name}: ' + ', '.join(
            f'{t} thread(s) {before.latency_ms[t]:.2f} -> {ms:.2f} ms'
            for t, ms in sorted(after.latency_ms.items())))
    return 0
