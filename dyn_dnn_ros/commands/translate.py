"""``dyn-dnn-ros translate``: translate stdin to stdout, one sentence per line.

Also home of the model, sub-network and beam options that ``evaluate`` and
``calibrate-beam`` share.
"""

from dataclasses import dataclass
from pathlib import Path
import sys

HELP = 'translate stdin to stdout with a sub-network'
LIBRARY_FILE = 'config/generated/operating_points_translation_cpu.yaml'  # for help texts


@dataclass(frozen=True)
class TranslateOptions:
    model: Path | None
    spm: Path | None
    device: str
    threads: int | None
    batch_size: int
    engine: str = 'torch'
    compute_type: str = ''
    cache_dir: Path | None = None
    vocabulary_map: str = ''


def add_model_arguments(parser):
    parser.add_argument('--model', type=Path, default=None,
                        help='model file (default: the shipped models/translation/'
                             'supertransformer.safetensors)')
    parser.add_argument('--spm', type=Path, default=None,
                        help='SentencePiece model (default: the shipped models/translation/'
                             'spm.model)')
    parser.add_argument('--device', default='cpu', help='device (default: %(default)s)')
    parser.add_argument('--engine', choices=('torch', 'ctranslate2'), default=None,
                        help='ctranslate2 (compact exported models, fixed beam widths, '
                             'sub-networks whose decoder attends to the last encoder layer) '
                             'or torch (any sub-network, dynamic beam width); default: the '
                             "library's engine with --operating-point, else torch")
    parser.add_argument('--compute-type', default='',
                        help='ctranslate2: int8 (default), float32, ...')
    parser.add_argument('--model-cache-dir', type=Path, default=None,
                        help='ctranslate2: folder of exported models (default: the user '
                             'cache folder)')
    parser.add_argument('--vocabulary-map', default='', metavar='FILE|full',
                        help="ctranslate2: target shortlist scored per sentence, or 'full' for "
                             "the whole vocabulary (default: the shipped map; with "
                             "--operating-point, the library's choice)")
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (default: torch decides; ctranslate2: 1)')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='sentences per batch, grouped by length (default: %(default)s)')


def add_subnet_arguments(parser):
    parser.add_argument('--subnet', default=None,
                        help='largest, smallest or a YAML file with a sub-network '
                             '(default: largest, or the operating point\'s)')
    parser.add_argument('--operating-point', default=None, metavar='NAME',
                        help=f'use this point\'s sub-network and beam policy from the library '
                             f'({LIBRARY_FILE}); explicit options override it')
    parser.add_argument('--library', type=Path, default=None,
                        help=f'operating-point library (default: {LIBRARY_FILE})')


def add_beam_arguments(parser):
    parser.add_argument('--beam', type=int, default=None, metavar='N',
                        help='fixed beam width (default: 5, or the operating point\'s policy)')
    parser.add_argument('--beam-policy', choices=('fixed', 'dynamic'), default=None,
                        help='dynamic (torch engine only): width chosen per sentence and step '
                             'from the spread of the candidate scores (needs '
                             '--sigma-min/--sigma-max, see `dyn-dnn-ros calibrate-beam`)')
    parser.add_argument('--bw-min', type=int, default=1, help='dynamic: narrowest beam')
    parser.add_argument('--bw-max', type=int, default=5, help='dynamic: widest beam')
    parser.add_argument('--sigma-min', type=float, default=None,
                        help='dynamic: spread at or below which the beam is widest')
    parser.add_argument('--sigma-max', type=float, default=None,
                        help='dynamic: spread at or above which the beam is narrowest')
    parser.add_argument('--metric', choices=('std', 'gap'), default='std',
                        help='dynamic: std of the best bw-max candidate scores (paper) or the '
                             'gap between the best two (default: %(default)s)')
    parser.add_argument('--patience', type=float, default=1.0,
                        help='stop a sentence after patience x width finished hypotheses '
                             '(default: %(default)s, the standard stop)')


def add_arguments(parser):
    add_model_arguments(parser)
    add_subnet_arguments(parser)
    add_beam_arguments(parser)


def model_options(args) -> TranslateOptions:
    from dyn_dnn_ros.translation.vocabulary_map import engine_vocabulary_map
    from dyn_dnn_ros.validation import require_int
    require_int('--threads', args.threads, 1, none_allowed=True)
    engine = getattr(args, 'engine', None)
    point_library = library_of_point(args) if hasattr(args, 'operating_point') else None
    if engine is None:
        engine = point_library.engine if point_library is not None else 'torch'
    vocabulary_map = getattr(args, 'vocabulary_map', '')
    if point_library is not None and engine == 'ctranslate2':
        vocabulary_map = engine_vocabulary_map(point_library, vocabulary_map)
    return TranslateOptions(model=args.model, spm=args.spm, device=args.device,
                            threads=args.threads, batch_size=args.batch_size, engine=engine,
                            compute_type=getattr(args, 'compute_type', ''),
                            cache_dir=getattr(args, 'model_cache_dir', None),
                            vocabulary_map=vocabulary_map)


def load_engine(options: TranslateOptions):
    """The translation engine the options name (``translation/engines``)."""
    from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
    if options.engine == 'torch' and options.threads is not None:
        import torch
        torch.set_num_threads(options.threads)
    return create_engine(EngineConfig(engine=options.engine, device=options.device,
                                      compute_type=options.compute_type,
                                      model_path=options.model, spm_path=options.spm,
                                      cache_dir=options.cache_dir,
                                      batch_size=options.batch_size,
                                      vocabulary_map=options.vocabulary_map))


def load_translator(options: TranslateOptions):
    import torch

    from dyn_dnn_ros.translation.translator import Translator
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    return Translator.load(options.model, options.spm, device=options.device,
                           batch_size=options.batch_size)


def operating_point(args):
    """The named point of the translation library, or None without --operating-point."""
    if args.operating_point is None:
        return None
    library = operating_point_library(args)
    try:
        return library.get(args.operating_point)
    except KeyError as err:
        raise ValueError(f'--operating-point: {err.args[0]}') from None


def operating_point_library(args):
    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    if args.library is not None:
        path = args.library
    else:
        from dyn_dnn_ros.share import library_path
        path = library_path('translation', 'cpu')
    if not Path(path).is_file():
        raise ValueError(f'--operating-point: library {path} does not exist yet; measure one '
                         'first or pass --library')
    library = OperatingPointLibrary.load(path)
    if library.target != 'translation':
        raise ValueError(f'{path}: a {library.target} library, not a translation one')
    return library


def library_of_point(args):
    """The library ``--operating-point`` is taken from, or None without one (or unreadable)."""
    if args.operating_point is None:
        return None
    try:
        return operating_point_library(args)
    except ValueError:
        return None  # reported with its reason by operating_point()


def subnet_and_beam(args, engine='torch'):
    """``(subnet spec, BeamPolicy)`` from the options; explicit ones beat the operating point."""
    from dyn_dnn_ros.translation.beam_policy import BeamPolicy
    point = operating_point(args)
    subnet = args.subnet or (point.subnet if point is not None else 'largest')
    if args.beam_policy == 'dynamic':
        if args.sigma_min is None or args.sigma_max is None:
            raise ValueError('--beam-policy dynamic needs --sigma-min and --sigma-max '
                             '(`dyn-dnn-ros calibrate-beam` proposes them)')
        beam = BeamPolicy(mode='dynamic', bw_min=args.bw_min, bw_max=args.bw_max,
                          sigma_min=args.sigma_min, sigma_max=args.sigma_max,
                          metric=args.metric)
    elif args.beam is not None or args.beam_policy == 'fixed':
        beam = BeamPolicy(mode='fixed', width=5 if args.beam is None else args.beam)
    elif point is not None and point.beam is not None:
        beam = point.beam
    else:
        beam = BeamPolicy(mode='fixed', width=5)
    return subnet, beam


def run(args) -> int:
    import time

    from dyn_dnn_ros.translation.outcome import pooled_width
    try:
        options = model_options(args)
        subnet, beam = subnet_and_beam(args, options.engine)
        engine = load_engine(options)
        subnet = engine.check_subnet(subnet)
        # Iterating splits on newlines only, so every input line gives one output line.
        lines = [line.rstrip('\n') for line in sys.stdin]
        began = time.perf_counter()
        outcomes = engine.translate(lines, subnet, beam, threads=options.threads,
                                   patience=args.patience)
        seconds = time.perf_counter() - began
    except ValueError as err:
        print(f'dyn-dnn-ros translate: {err}', file=sys.stderr)
        return 2
    for outcome in outcomes:
        print(outcome.text.replace('\n', ' '))
    sys.stdout.flush()
    done = [o for o in outcomes if o.status != 'empty']
    truncated = sum(o.status == 'truncated' for o in outcomes)
    print(f'translated {len(done)} of {len(outcomes)} lines ({truncated} truncated) in '
          f'{seconds:.2f} s with {subnet.key()} on {options.engine} '
          f'{engine.compute_type}, {beam.describe()}: average beam width '
          f'{pooled_width(done):.2f}', file=sys.stderr)
    return 0
