"""HAT's evolutionary search: the lowest validation loss under a predicted-latency constraint.

A gene is a flat list of choices: the four scalar dimensions, then every
per-layer choice for the *largest* layer counts, so that inactive layers keep
their values and crossover between different depths works as in HAT.

Each iteration scores the population (validation loss, looked up in a cache
by config key), keeps the best ``parents`` distinct configs, and fills the
rest with ``mutations`` children (every gene resampled with probability
``mutation_prob``) and ``crossovers`` children (every gene from either of two
parents). Only configs whose predicted latency meets the constraint enter the
population: a child is redrawn until it does, ``max_attempts`` times, after
which its parent stands in. A constraint below the smallest sub-network's
predicted latency is refused at once (HAT would loop forever).

Every config the search scores is also offered to an archive that keeps the
predicted front (predicted latency vs validation loss) of all of them: HAT
keeps only the winner, but the population passes many good trade-offs below
the constraint on its way, already paid for. With ``archive_slack`` it also
keeps the band that fraction of latency behind the front (``predicted_front``):
the predictor errs by a few percent per sub-network, so the band may hold
points of the *measured* front.

The population, the random state, the history and the archive are saved as
JSON after every iteration, so an interrupted search resumes where it stopped.
"""

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import random

from tqdm import tqdm

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.design.pareto import predicted_front
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.validation import (
    require_fraction,
    require_in_interval,
    require_int,
    require_positive,
)

STATE_FORMAT = 'dyn_dnn_ros.evolution_state/1'
SCALARS = ('encoder_embed_dim', 'decoder_embed_dim', 'encoder_layers', 'decoder_layers')
# per-layer field -> (layer count field, choices field)
PER_LAYER = {
    'encoder_ffn': ('encoder_layers', 'ffn_dim'),
    'encoder_heads': ('encoder_layers', 'heads'),
    'decoder_ffn': ('decoder_layers', 'ffn_dim'),
    'decoder_self_heads': ('decoder_layers', 'heads'),
    'decoder_cross_heads': ('decoder_layers', 'heads'),
    'decoder_ende': ('decoder_layers', 'ende'),
}


@dataclass(frozen=True)
class EvolutionConfig:
    population: int = 125  # HAT's defaults
    parents: int = 25
    mutations: int = 50
    crossovers: int = 50
    mutation_prob: float = 0.3
    iterations: int = 30
    seed: int = 1
    max_attempts: int = 200  # draws per child before its parent stands in
    archive_slack: float = 0.0  # see the module docstring; 0: the front only

    def __post_init__(self):
        for name in ('population', 'parents', 'iterations', 'max_attempts'):
            require_int(f'evolution.{name}', getattr(self, name), 1)
        for name in ('mutations', 'crossovers'):
            require_int(f'evolution.{name}', getattr(self, name), 0)
        if self.parents + self.mutations + self.crossovers != self.population:
            raise ValueError(f'evolution: parents + mutations + crossovers = '
                             f'{self.parents + self.mutations + self.crossovers} must equal '
                             f'population = {self.population}')
        require_fraction('evolution.archive_slack', self.archive_slack, '[0, 1)')
        require_in_interval('evolution.mutation_prob', self.mutation_prob, '[0, 1]')


# -- genes ------------------------------------------------------------------------------------


def gene_choices(space: DesignSpace) -> list[tuple]:
    """The choices of every gene position: scalars, then per-layer fields at full depth."""
    positions = [getattr(space, name) for name in SCALARS]
    for count, choices in PER_LAYER.values():
        positions += [getattr(space, choices)] * getattr(space, count)[-1]
    return positions


def gene_to_config(space: DesignSpace, gene) -> SubnetConfig | None:
    """The sub-network a gene encodes, or None when it is not a valid one (ende too deep)."""
    values = dict(zip(SCALARS, gene[:len(SCALARS)], strict=True))
    at = len(SCALARS)
    for name, (count, _) in PER_LAYER.items():
        full = getattr(space, count)[-1]
        values[name] = tuple(gene[at:at + values[count]])
        at += full
    cfg = SubnetConfig(**values)
    try:
        return space.validate(cfg)
    except ValueError:
        return None


def config_to_gene(space: DesignSpace, cfg: SubnetConfig, filler) -> list:
    """A gene for ``cfg``; inactive layers take ``filler(choices)``."""
    gene = [getattr(cfg, name) for name in SCALARS]
    for name, (count, choices) in PER_LAYER.items():
        values = list(getattr(cfg, name))
        gene += values + [filler(getattr(space, choices))
                          for _ in range(getattr(space, count)[-1] - len(values))]
    return gene


# -- the search -----------------------------------------------------------------------------


@dataclass
class SearchResult:
    best: SubnetConfig
    loss: float
    latency_ms: float  # predicted
    constraint_ms: float
    history: list = field(default_factory=list)  # per iteration: best loss, key, latency
    evaluations: int = 0  # fitness evaluations this run made (cache misses)
    # The final parents, best first, as (config, loss, predicted ms): the runners-up
    # are other trade-offs under the same constraint, evaluated at no extra cost.
    finalists: list = field(default_factory=list)
    # The predicted front of every config scored in any iteration (with the
    # config's archive_slack), fastest first, as (config, loss, predicted ms).
    archive: list = field(default_factory=list)

    def to_dict(self):
        data = asdict(self)
        data['best'] = self.best.to_dict()
        data['finalists'] = _scored_to_dicts(self.finalists)
        data['archive'] = _scored_to_dicts(self.archive)
        return data


def _scored_to_dicts(scored):
    return [{'subnet': cfg.to_dict(), 'val_loss': loss, 'predicted_ms': ms}
            for cfg, loss, ms in scored]


def _scored_from_dicts(space, items):
    return [(space.validate(SubnetConfig.from_dict(d['subnet'])), float(d['val_loss']),
             float(d['predicted_ms'])) for d in items]


class _Search:
    """One run's state: population, random state, and latency lookups."""

    def __init__(self, space, fitness, latency, constraint_ms, config):
        self.space, self.fitness, self.latency = space, fitness, latency
        self.constraint_ms, self.config = constraint_ms, config
        self.choices = gene_choices(space)
        self.rng = random.Random(config.seed)
        self._latency = {}
        self.archive = []  # predicted_front of everything ranked so far

    def predicted(self, cfg):
        key = cfg.key()
        if key not in self._latency:
            self._latency[key] = float(self.latency(cfg))
        return self._latency[key]

    def feasible(self, gene):
        cfg = gene_to_config(self.space, gene)
        return cfg if cfg is not None and self.predicted(cfg) <= self.constraint_ms else None

    def random_gene(self):
        return [self.rng.choice(c) for c in self.choices]

    def mutate(self, parent):
        p = self.config.mutation_prob
        for _ in range(self.config.max_attempts):
            child = [self.rng.choice(c) if self.rng.random() < p else g
                     for g, c in zip(parent, self.choices, strict=True)]
            if self.feasible(child):
                return child
        return list(parent)

    def crossover(self, a, b):
        for _ in range(self.config.max_attempts):
            child = [x if self.rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]
            if self.feasible(child):
                return child
        return list(a)

    def initial_population(self, seeds=()):
        config, population, seen = self.config, [], set()
        for cfg in seeds:  # inactive layers random, so that crossovers reach other depths
            gene = config_to_gene(self.space, cfg, self.rng.choice)
            if (len(population) < config.population and self.feasible(gene)
                    and cfg.key() not in seen):
                seen.add(cfg.key())
                population.append(gene)
        for _ in range(config.population * config.max_attempts):
            if len(population) == config.population:
                break
            gene = self.random_gene()
            cfg = self.feasible(gene)
            if cfg is not None and cfg.key() not in seen:
                seen.add(cfg.key())
                population.append(gene)
        if not population:  # a tight constraint: grow from the smallest sub-network
            population.append(config_to_gene(self.space, self.space.smallest(),
                                              lambda c: c[0]))
        while len(population) < config.population:
            population.append(self.mutate(self.rng.choice(population)))
        return population

    def ranked(self, population):
        """Distinct configs of ``population``, best (lowest loss) first, with their genes."""
        by_key = {}
        for gene in population:
            cfg = gene_to_config(self.space, gene)
            by_key.setdefault(cfg.key(), (cfg, gene))
        scored = [(self.fitness(cfg), key, cfg, gene) for key, (cfg, gene) in by_key.items()]
        self.archive = predicted_front(self.archive + [(cfg, loss, self.predicted(cfg))
                                                    for loss, _, cfg, _ in scored],
                                       self.config.archive_slack)
        return sorted(scored, key=lambda s: (s[0], s[1]))

    def breed(self, parents):
        config = self.config
        return (list(parents)
                + [self.mutate(self.rng.choice(parents)) for _ in range(config.mutations)]
                + [self.crossover(self.rng.choice(parents), self.rng.choice(parents))
                   for _ in range(config.crossovers)])


def _state(search, iteration, population, history):
    version, internal, gauss = search.rng.getstate()
    return {'format': STATE_FORMAT, 'constraint_ms': search.constraint_ms,
            'config': asdict(search.config), 'space': search.space.to_dict(),
            'iteration': iteration, 'population': population, 'history': history,
            'archive': _scored_to_dicts(search.archive),
            'rng': [version, list(internal), gauss]}


def _load_state(path, search):
    try:
        state = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f'{path}: cannot read search state: {err}') from None
    if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
        raise ValueError(f'{path}: not a search state (expected format {STATE_FORMAT!r})')
    for name, ours in (('constraint_ms', search.constraint_ms),
                       ('config', asdict(search.config)), ('space', search.space.to_dict())):
        if state.get(name) != json.loads(json.dumps(ours)):
            raise ValueError(f'{path}: saved {name} {state.get(name)!r} differs from this '
                             f'run\'s {ours!r}; use another state file')
    version, internal, gauss = state['rng']
    search.rng.setstate((version, tuple(internal), gauss))
    for gene in state['population']:
        if len(gene) != len(search.choices) or gene_to_config(search.space, gene) is None:
            raise ValueError(f'{path}: population holds an invalid gene {gene!r}')
    try:  # states written before the archive existed resume with an empty one
        search.archive = _scored_from_dicts(search.space, state.get('archive', []))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'{path}: invalid archive entry: {err}') from None
    return state['iteration'], state['population'], state['history']


def evolve(space: DesignSpace, fitness, latency, constraint_ms,
           config: EvolutionConfig = EvolutionConfig(), state_path=None,
           progress=True, seeds=()) -> SearchResult:
    """Search the sub-network with the lowest ``fitness`` whose ``latency`` <= ``constraint_ms``.

    ``fitness(cfg)`` is the validation loss (a ``CachedFitness``, whose cache is
    saved with the state when it has ``save``); ``latency(cfg)`` the predicted ms.
    ``seeds``: sub-networks the first population starts with (those meeting the
    constraint, at most ``population``), random ones after them; a search that
    resumes keeps its saved population.
    """
    require_positive('constraint', constraint_ms, 'ms')
    search = _Search(space, fitness, latency, float(constraint_ms), config)
    floor = search.predicted(space.smallest())
    if constraint_ms < floor:
        raise ValueError(f'constraint {constraint_ms:.3f} ms is infeasible: even the smallest '
                         f'sub-network ({space.smallest().key()}) is predicted to take '
                         f'{floor:.3f} ms')
    calls_before = getattr(fitness, 'calls', 0)
    if state_path is not None and Path(state_path).is_file():
        start, population, history = _load_state(state_path, search)
    else:
        start, population, history = 0, search.initial_population(seeds), []

    bar = tqdm(total=config.iterations, initial=start, disable=not progress, unit='iter',
               desc=f'search <= {constraint_ms:.1f} ms', dynamic_ncols=True)
    try:
        for iteration in range(start, config.iterations):
            ranked = search.ranked(population)
            loss, key, cfg, _ = ranked[0]
            history.append({'iteration': iteration + 1, 'best_loss': loss, 'best_key': key,
                            'best_latency_ms': search.predicted(cfg),
                            'distinct': len(ranked)})
            parents = [gene for *_, gene in ranked[:config.parents]]
            last = iteration + 1 == config.iterations
            population = parents if last else search.breed(parents)
            if hasattr(fitness, 'save'):
                fitness.save()
            if state_path is not None:
                state = _state(search, iteration + 1, population, history)
                write_atomic(state_path, json.dumps(state).encode())
            bar.update()
            bar.set_postfix(loss=f'{loss:.4f}', evals=getattr(fitness, 'calls', '-'))
    finally:
        bar.close()

    ranked = search.ranked(population)
    loss, key, cfg, _ = ranked[0]
    return SearchResult(best=cfg, loss=loss, latency_ms=search.predicted(cfg),
                        constraint_ms=float(constraint_ms), history=history,
                        evaluations=getattr(fitness, 'calls', 0) - calls_before,
                        finalists=[(c, f, search.predicted(c)) for f, _, c, _ in ranked],
                        archive=list(search.archive))
