"""``dyn-dnn-ros design search``: HAT's evolutionary search under one predicted-latency constraint.

Also home of the model, fitness and evolution options that ``sweep`` shares.
"""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.latency import DEFAULT_CORPUS_DIR, RUN_DIR

HELP = 'evolutionary search for the best sub-network under a latency constraint'


def add_model_arguments(parser):
    parser.add_argument('--model', type=Path, default=None,
                        help='model file (default: the shipped supertransformer.safetensors)')
    parser.add_argument('--spm', type=Path, default=None, help='SentencePiece model')
    parser.add_argument('--corpus-dir', type=Path, default=DEFAULT_CORPUS_DIR,
                        help='folder with the valid and test splits (default: %(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: %(default)s)')
    parser.add_argument('--predictor', type=Path, default=None,
                        help=f'latency predictor file (default: {RUN_DIR}/'
                             'latency_DEVICE.predictor.safetensors)')


def add_fitness_arguments(parser):
    parser.add_argument('--fitness-sentences', type=int, default=100,
                        help='validation pairs of the teacher-forced loss (default: '
                             '%(default)s)')
    parser.add_argument('--fitness-seed', type=int, default=0)
    parser.add_argument('--cache', type=Path, default=None,
                        help='fitness cache JSON, shared by searches (default: '
                             'RUN/fitness_cache.json)')


def add_evolution_arguments(parser, defaults):
    d = defaults
    parser.add_argument('--population', type=int, default=d.population)
    parser.add_argument('--parents', type=int, default=d.parents)
    parser.add_argument('--mutations', type=int, default=d.mutations)
    parser.add_argument('--crossovers', type=int, default=d.crossovers)
    parser.add_argument('--mutation-prob', type=float, default=d.mutation_prob)
    parser.add_argument('--iterations', type=int, default=d.iterations)
    parser.add_argument('--search-seed', type=int, default=d.seed)


def evolution_from_args(args):
    from dyn_dnn_ros.translation.design.evolution import EvolutionConfig
    return EvolutionConfig(population=args.population, parents=args.parents,
                           mutations=args.mutations, crossovers=args.crossovers,
                           mutation_prob=args.mutation_prob, iterations=args.iterations,
                           seed=args.search_seed)


def load_search_inputs(args, run_dir):
    """``(model, tokenizer, predictor, fitness)`` from the shared options."""
    from dyn_dnn_ros.translation.design.devices import check_device
    from dyn_dnn_ros.translation.design.fitness import make_fitness
    from dyn_dnn_ros.translation.design.latency_dataset import load_model_and_tokenizer
    from dyn_dnn_ros.translation.design.predictor import LatencyPredictor
    from dyn_dnn_ros.translation.translator import default_model_path
    device = check_device(args.device)
    if args.predictor is None:
        args.predictor = RUN_DIR / f'latency_{device}.predictor.safetensors'
    predictor = LatencyPredictor.load(args.predictor)
    model, tokenizer = load_model_and_tokenizer(args.model, args.spm, device)
    if predictor.space != model.space:
        raise ValueError(f'{args.predictor}: fitted on another design space than the model\'s')
    fitness = make_fitness(model, tokenizer, args.corpus_dir, args.fitness_sentences,
                           args.fitness_seed, args.cache or Path(run_dir) / 'fitness_cache.json',
                           args.model or default_model_path(), device)
    return model, tokenizer, predictor, fitness


def add_arguments(parser):
    from dyn_dnn_ros.translation.design.evolution import EvolutionConfig
    parser.add_argument('--constraint', type=float, required=True, metavar='MS',
                        help='predicted latency limit in ms')
    parser.add_argument('--threads', type=int, default=None,
                        help='thread count the constraint refers to (default: the largest '
                             'the predictor was fitted for)')
    parser.add_argument('--run-dir', type=Path, default=RUN_DIR,
                        help='folder for the search state and cache (default: %(default)s)')
    parser.add_argument('--out', type=Path, default=None,
                        help='YAML with the winning sub-network, usable as `translate '
                             '--subnet` (default: RUN/search_MS.yaml)')
    parser.add_argument('--torch-threads', type=int, default=None,
                        help='torch CPU threads for the fitness (default: torch decides)')
    add_model_arguments(parser)
    add_fitness_arguments(parser)
    add_evolution_arguments(parser, EvolutionConfig())


def run(args) -> int:
    import torch
    import yaml

    from dyn_dnn_ros.files import write_atomic
    from dyn_dnn_ros.translation.design.evolution import evolve
    tag = f'{args.constraint:g}ms'
    out = args.out or args.run_dir / f'search_{tag}.yaml'
    try:
        if args.torch_threads is not None:
            torch.set_num_threads(max(1, args.torch_threads))
        config = evolution_from_args(args)
        model, _, predictor, fitness = load_search_inputs(args, args.run_dir)
        threads = args.threads or max(predictor.threads)
        result = evolve(model.space, fitness, lambda c: predictor.predict_one(c, threads),
                        args.constraint, config, args.run_dir / f'search_{tag}.state.json')
    except ValueError as err:
        print(f'dyn-dnn-ros search: {err}', file=sys.stderr)
        return 2
    data = {'subnet': result.best.to_dict(), 'val_loss': result.loss,
            'predicted_latency_ms': result.latency_ms, 'constraint_ms': result.constraint_ms,
            'threads': threads, 'history': result.history}
    write_atomic(out, yaml.safe_dump(data, sort_keys=False).encode())
    print(f'best under {args.constraint:g} ms ({threads} threads): {result.best.key()}  '
          f'validation loss {result.loss:.4f}  predicted {result.latency_ms:.2f} ms  '
          f'({result.evaluations} new fitness evaluations, {len(fitness.cache)} cached)')
    print(f'saved {out}')
    return 0
