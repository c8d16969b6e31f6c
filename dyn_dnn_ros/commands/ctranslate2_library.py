"""``dyn-dnn-ros design ctranslate2-library``: an operating-point library timed on CTranslate2.

See ``translation/design/engine_library.py`` for the steps. Writes the library
to ``RUN/operating_points_translation_cpu.yaml`` unless ``--library`` names another file
(``make design-ctranslate2`` refreshes the shipped one,
``config/generated/operating_points_translation_cpu.yaml``).
"""

from pathlib import Path
import sys

HELP = 'library for the CTranslate2 engine, timed on it'


def add_arguments(parser):
    from dyn_dnn_ros.translation.design.engine_library import QUALITY_SPLITS, EngineLibraryConfig
    d = EngineLibraryConfig()
    parser.add_argument('--run-dir', type=Path, default=d.run_dir,
                        help='measurements and exported models (default: %(default)s)')
    parser.add_argument('--library', type=Path, default=None,
                        help='library to write '
                             '(default: RUN/operating_points_translation_cpu.yaml)')
    parser.add_argument('--compute-type', default=d.compute_type)
    parser.add_argument('--vocabulary-map', default=d.vocabulary_map, metavar='FILE|full',
                        help="target shortlist the engine scores: a map file, or 'full' for "
                             'the whole vocabulary (default: the shipped map)')
    parser.add_argument('--candidates', type=int, default=d.candidates)
    parser.add_argument('--beams', type=int, nargs='+', default=list(d.beams))
    parser.add_argument('--threads', type=int, nargs='+', default=list(d.threads))
    parser.add_argument('--timing-sentences', type=int, default=d.timing_sentences)
    parser.add_argument('--rounds', type=int, default=d.rounds)
    parser.add_argument('--max-finalists', type=int, default=d.max_finalists)
    parser.add_argument('--bleu-sentences', type=int, default=d.bleu_sentences)
    parser.add_argument('--quality-split', choices=QUALITY_SPLITS, default=d.quality_split,
                        help='split whose BLEU picks the points (default: %(default)s; '
                             'the test split is then left for reporting)')
    parser.add_argument('--fitness-sentences', type=int, default=d.fitness_sentences)
    parser.add_argument('--seed', type=int, default=d.seed)
    parser.add_argument('--corpus-dir', type=Path, default=None,
                        help='folder with {valid,test}.{en,de} (default: data/corpus)')
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--spm', type=Path, default=None)


def run(args) -> int:
    import torch

    from dyn_dnn_ros.share import data_path, library_path
    from dyn_dnn_ros.translation.design.engine_library import (
        EngineLibraryConfig,
        design_engine_library,
        draw_timing_sentences,
    )
    from dyn_dnn_ros.translation.design.fitness import make_fitness
    from dyn_dnn_ros.translation.design.latency_dataset import load_model_and_tokenizer
    from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
    from dyn_dnn_ros.translation.model_file import default_model_path
    from dyn_dnn_ros.translation.outcome import read_split
    try:
        config = EngineLibraryConfig(
            run_dir=args.run_dir, compute_type=args.compute_type,
            vocabulary_map=args.vocabulary_map, candidates=args.candidates,
            beams=tuple(args.beams), threads=tuple(args.threads),
            timing_sentences=args.timing_sentences, rounds=args.rounds,
            max_finalists=args.max_finalists, bleu_sentences=args.bleu_sentences,
            quality_split=args.quality_split, fitness_sentences=args.fitness_sentences,
            seed=args.seed)
        corpus = args.corpus_dir or data_path('corpus')
        # Fitness runs on torch: pin it to one thread so it leaves the other CPU idle.
        torch.set_num_threads(1)
        model, tokenizer = load_model_and_tokenizer(args.model, args.spm, 'cpu')
        fitness = make_fitness(model, tokenizer, corpus, config.fitness_sentences, config.seed,
                               config.run_dir / 'fitness_cache.json',
                               args.model or default_model_path())
        engine_config = EngineConfig(engine='ctranslate2', compute_type=config.compute_type,
                                     model_path=args.model, spm_path=args.spm,
                                     cache_dir=config.run_dir / 'models', batch_size=16,
                                     vocabulary_map=config.vocabulary_map)
        engine = create_engine(engine_config)
        final_engine = create_engine(engine_config)   # holds only the winners, as the node
        valid, _ = read_split(corpus, 'valid')
        timing = draw_timing_sentences(valid, config.timing_sentences, config.seed)
        sources, references = read_split(corpus, config.quality_split, config.bleu_sentences)
        result = design_engine_library(config, engine, fitness, timing, sources, references,
                                       final_engine=final_engine)
    except ValueError as err:
        print(f'dyn-dnn-ros design ctranslate2-library: {err}', file=sys.stderr)
        return 2
    out = args.library or config.run_dir / library_path('translation', 'cpu').name
    result.library.save(out)
    lat = [p.latency_ms[1] for p in result.library.points]
    print(f'{out}: {len(result.library.points)} points, {min(lat):.2f}-{max(lat):.2f} ms at '
          f'1 thread ({max(lat) / min(lat):.2f}x), BLEU '
          f'{min(p.quality for p in result.library.points):.2f}-'
          f'{max(p.quality for p in result.library.points):.2f}; {result.candidates} '
          f'candidates, {len(result.finalists)} finalists, {result.seconds / 60:.1f} min')
    return 0
