"""``dyn-dnn-ros translation export``: CTranslate2 models of a library's points or of sub-networks.

By default the models go into the model cache the translation node reads
(so a node starts without exporting anything); ``--out`` writes plain model
folders elsewhere instead, one per point or sub-network, for use outside this
package (``ctranslate2.Translator(folder)`` with the SentencePiece model).
"""

from pathlib import Path
import sys
import time

HELP = 'write CTranslate2 models of operating points or sub-networks'


def add_arguments(parser):
    from dyn_dnn_ros.commands.translate import LIBRARY_FILE
    parser.add_argument('--library', type=Path, default=None,
                        help=f'export every point of this library (default: '
                             f'{LIBRARY_FILE}, unless --subnet is given)')
    parser.add_argument('--subnet', action='append', default=[], metavar='SPEC',
                        help='also (or only) this sub-network: smallest, largest or a YAML '
                             'file; may be repeated')
    parser.add_argument('--compute-type', default='',
                        help="quantization of the weights (default: the library's, else int8)")
    parser.add_argument('--heads', choices=('pad', 'uniform'), default='pad',
                        help='narrower attentions zero-padded to the widest of their stack, or '
                             'refused (default: %(default)s)')
    parser.add_argument('--model', type=Path, default=None, help='SuperTransformer weights '
                        '(default: the shipped ones)')
    parser.add_argument('--spm', type=Path, default=None, help='SentencePiece model '
                        '(default: the shipped one)')
    parser.add_argument('--model-cache-dir', type=Path, default=None,
                        help='model cache (default: the user cache folder)')
    parser.add_argument('--vocabulary-map', default='', metavar='FILE|full',
                        help="target shortlist copied into each model as vmap.txt, or 'full' "
                             "for none (default: the library's choice, else the shipped map)")
    parser.add_argument('--out', type=Path, default=None,
                        help='write plain model folders here instead of the cache')


def _folder_mb(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob('*') if f.is_file()) / 1e6


def run(args) -> int:
    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.share import library_path
    from dyn_dnn_ros.translation.engines import EngineConfig
    from dyn_dnn_ros.translation.engines.ctranslate2_engine import CTranslate2Engine
    from dyn_dnn_ros.translation.vocabulary_map import engine_vocabulary_map
    try:
        named = []
        compute_type, vocabulary_map = args.compute_type, args.vocabulary_map
        if args.library is not None or not args.subnet:
            path = args.library or library_path('translation', 'cpu')
            library = OperatingPointLibrary.load(path)
            if library.target != 'translation':
                raise ValueError(f'{path}: a {library.target} library, not a translation one')
            compute_type = compute_type or (library.compute_type
                                            if library.engine == 'ctranslate2' else '')
            named += [(point.name, point.subnet) for point in library.points]
            if library.engine == 'ctranslate2':
                vocabulary_map = engine_vocabulary_map(library, vocabulary_map)
        cache_dir = args.out if args.out is not None else args.model_cache_dir
        engine = CTranslate2Engine(EngineConfig(
            engine='ctranslate2', compute_type=compute_type, model_path=args.model,
            spm_path=args.spm, cache_dir=cache_dir, heads=args.heads,
            vocabulary_map=vocabulary_map))
        named += [(str(spec), spec) for spec in args.subnet]
        subnets = [(name, engine.check_subnet(spec)) for name, spec in named]
    except ValueError as err:
        print(f'dyn-dnn-ros translation export: {err}', file=sys.stderr)
        return 2
    total = 0.0
    for name, subnet in subnets:
        began = time.perf_counter()
        folder = engine.cache.model_dir(subnet, engine.vocabulary)
        size = _folder_mb(folder)
        total += size
        print(f'{name}: {folder} ({size:.1f} MB, {engine.compute_type}, '
              f'{time.perf_counter() - began:.2f} s)')
    print(f'{len(subnets)} models, {total:.1f} MB; {engine.cache.exports} exported, '
          f'{len(subnets) - engine.cache.exports} already current')
    if engine.use_vmap:
        print('each holds the vocabulary map (vmap.txt): translate with use_vmap=True to '
              'decode as the library was measured')
    return 0
