"""The sweep: searches over a range of latency constraints -> the operating-point library.

1. Constraints span the device's range: geometric spacing between the
   predicted latency of the smallest and the largest sub-network (at the
   thread count the library is ranked by, the largest measured one).
2. One evolutionary search per constraint; all share one fitness cache.
   Where the searches' predicted front still has holes (``front_gaps``: a
   steep stretch, such as one decoder layer more, that neighbouring
   constraints straddle), a few more searches look inside them.
   Besides each search's winner, every sub-network any search scored that
   lies on the predicted front of them all (predicted latency vs validation
   loss; each search's archive) is kept (finalists): they fill the latency
   between neighbouring constraints, where a winner's predicted latency may
   be a few percent off its measured one, at the cost of measuring them, not
   of searching. Where the front is steep (a gap in its latency), some of
   the sub-networks just behind it are kept as well (``select_finalists``).
3. Every candidate (distinct winners, the space's smallest and largest
   sub-networks as anchors, finalists) is timed at the deployment beam and
   at every thread count *in the same rounds* as a cloud of uniformly
   sampled random sub-networks, which are timed at the ranking count only
   (``time_with_random``); winners and anchors are also timed combined with
   other beam policies at every thread count (joint points: neither
   Dynamic-HAT nor the dynamic-beam paper combines the two knobs). Every
   candidate's BLEU is computed with its beam on the test split (or a
   subset).
4. The deployment-beam candidates the measured front could take or lose at
   a few percent less latency (``near_front``) get more rounds of the same
   sample log; then the candidates on the *measured* Pareto front (latency
   at the ranking thread count vs BLEU), named fastest first
   (``tr_cpu_01``, ...), are written as the library, atomically.
5. The random cloud (ranking-count latency from the shared rounds, validation
   loss) is compared with the searched sub-networks timed in those rounds:
   ``CloudComparison``, ``pareto_plot``.

Every step keeps its results in the run folder (searches, measurements, BLEU),
so an interrupted sweep resumes where it stopped.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
import json
import math
from pathlib import Path
import random

import numpy as np
import torch
from tqdm import tqdm

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.resources.hardware import hardware_description
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.devices import default_threads
from dyn_dnn_ros.translation.design.evolution import EvolutionConfig, evolve
from dyn_dnn_ros.translation.design.latency_dataset import measure_configs, measure_pairs
from dyn_dnn_ros.translation.design.pareto import (
    dominated,
    near_front,
    pareto_front,
    predicted_front,
)
from dyn_dnn_ros.translation.design.sample_log import SampleLog, samples_beside
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.validation import (
    is_finite_number,
    is_integer,
    require_fraction,
    require_int,
    require_positive,
)

# HAT's population and iteration counts cost up to ~3,000 fitness evaluations per
# constraint, each a validation-loss pass of a sub-network: too many for a sweep
# of eight on a CPU. These keep its proportions (1 parent : 2 mutations :
# 2 crossovers) at an eighth of the evaluations.
SWEEP_EVOLUTION = EvolutionConfig(population=40, parents=8, mutations=16, crossovers=16,
                                  iterations=12)


@dataclass(frozen=True)
class SweepConfig:
    run_dir: Path
    library_path: Path
    plot_path: Path | None = None
    device: str = 'cpu'
    rank_threads: int | None = None  # thread count of constraints and ranking; None: largest
    measure_threads: tuple | None = None  # None: every count 1..N (CPU)
    constraints_ms: tuple = ()  # empty: geometric between smallest and largest predicted
    constraint_count: int = 8
    evolution: EvolutionConfig = SWEEP_EVOLUTION
    protocol: LatencyProtocol = LatencyProtocol()
    extra_beams: tuple = ()  # BeamPolicy: joint candidates besides the deployment beam
    bleu_split: str = 'test'
    bleu_sentences: int | None = 500  # None: the whole split
    bleu_batch_size: int = 16
    random_count: int = 1000
    random_seed: int = 2
    # Searched and random sub-networks timed together; rows already in it are reused, so
    # it must not be a CSV timed at another moment (the latency dataset). None: run_dir /
    # random.csv
    random_csv: Path | None = None
    # Timing samples and drift probes; the latency dataset's log puts every latency of
    # the pipeline on one scale. None: run_dir / samples.jsonl
    samples_path: Path | None = None
    name_prefix: str = 'tr'
    # Also measure the space's smallest and largest sub-networks: the ends of the
    # device's range, which a search under a predicted constraint may just miss.
    # They join the library only if they land on the measured front.
    anchors: bool = True
    # Also measure the searches' finalists on the predicted front (module docstring).
    finalists: bool = True
    finalist_limit: int | None = None  # at most this many (``thin_front``); None: all
    # Gaps in the predicted front wider than this fraction of latency get per_gap more
    # finalists from just behind them (select_finalists); the searches' archives keep
    # that band. per_gap 0: none.
    gap: float = 0.05
    per_gap: int = 8
    # Of ~100 candidates timed 10 times each, the measured front takes those whose
    # samples ran fast: the ones it could take or lose at this fraction less latency
    # (``near_front``) are timed again to refine_repeats samples before the library is
    # built. 0: no second pass.
    refine_band: float = 0.05
    refine_repeats: int = 30
    # After the searches, the predicted front's largest holes (``front_gaps``: neighbours
    # more than 1 + fill_gap apart) get one more search each, at the hole's geometric
    # middle (``hole_middle``: none where a search has already run), seeded with the best
    # sub-networks scored under it and fill_iterations long (None: the searches' own); at
    # most fill_searches of them (0: none).
    fill_searches: int = 0
    fill_gap: float = 0.05
    fill_iterations: int | None = None

    def __post_init__(self):
        require_int('sweep.constraint_count', self.constraint_count, 1)
        for c in self.constraints_ms:
            require_positive('sweep.constraints_ms', c, 'ms')
        require_int('sweep.bleu_sentences', self.bleu_sentences, 1, none_allowed=True)
        require_int('sweep.bleu_batch_size', self.bleu_batch_size, 1)
        if self.bleu_split not in ('valid', 'test'):
            raise ValueError(f"sweep.bleu_split: must be 'valid' or 'test', "
                             f'got {self.bleu_split!r}')
        require_int('sweep.finalist_limit', self.finalist_limit, 0, none_allowed=True)
        require_fraction('sweep.gap', self.gap)
        require_int('sweep.per_gap', self.per_gap, 0)
        require_fraction('sweep.refine_band', self.refine_band, '[0, 1)')
        if self.refine_band and (not is_integer(self.refine_repeats)
                                 or self.refine_repeats <= self.protocol.repeats):
            raise ValueError(f'sweep.refine_repeats: the second pass adds samples to the '
                             f'first pass\'s {self.protocol.repeats}, so it must be an integer '
                             f'above that, got {self.refine_repeats!r}')
        require_int('sweep.fill_searches', self.fill_searches, 0)
        require_fraction('sweep.fill_gap', self.fill_gap)
        require_int('sweep.fill_iterations', self.fill_iterations, 1, none_allowed=True)
        require_int('sweep.random_count', self.random_count, 0)


# -- pure pieces ------------------------------------------------------------------------------


def geometric_constraints(low, high, count) -> list[float]:
    """``count`` constraints from ``low`` to ``high`` ms, evenly spaced on a log scale."""
    if not (is_finite_number(low) and is_finite_number(high) and 0 < low <= high):
        raise ValueError(f'constraints: need 0 < low <= high, got {low!r}, {high!r}')
    if count == 1:
        return [float(high)]
    return [float(v) for v in np.geomspace(low, high, count)]


def select_finalists(pool, winners, limit=None, gap=0.0, per_gap=0) -> dict:
    """Key -> (config, constraint) of the ``pool`` items on the predicted front, winners out.

    ``pool``: ``(config, loss, predicted ms, constraint)`` of what the searches
    scored. With ``limit``, at most that many (each costs a measurement and a
    BLEU): ``thin_front`` keeps the ones that leave the most of the plane
    dominated, the winners counted as kept.

    Where two neighbouring front points are more than ``1 + gap`` apart in
    predicted latency (the step from one decoder layer to two, say), the front
    is steep: a sub-network predicted a little slower than the gap's far end
    but better than its near end may measure inside the gap, with the
    predictor's few percent of error, and a random one that does is not
    dominated. Of the pool items up to ``1 + gap`` behind the far end and better
    than the near end, ``per_gap`` evenly spread over their losses are kept too
    (not counted against ``limit``); the pool must hold more than the front
    for that (``EvolutionConfig.archive_slack``).
    """
    pool = list(pool)
    exact = predicted_front(pool)
    kept = exact if limit is None else thin_front(exact, limit, set(winners))
    front = [(cfg, constraint) for cfg, _, _, constraint in kept if cfg.key() not in winners]
    if gap and per_gap:
        taken = {f[0].key() for f in exact} | set(winners)
        for near, far in zip(exact, exact[1:], strict=False):
            if far[2] <= near[2] * (1 + gap):
                continue
            behind = sorted((f for f in pool if f[1] < near[1] and f[2] <= far[2] * (1 + gap)
                             and f[0].key() not in taken), key=lambda f: (f[1], f[2]))
            behind = _spread(behind, per_gap)
            taken |= {f[0].key() for f in behind}
            front += [(cfg, constraint) for cfg, _, _, constraint in behind]
    return {cfg.key(): (cfg, constraint) for cfg, constraint in front}


def front_gaps(front, gap, skip=frozenset()) -> list:
    """Neighbouring ``front`` items more than ``1 + gap`` apart in latency, largest hole first.

    ``front``: ``(config, loss, predicted ms, ...)``, fastest first. A pair's
    hole is the plane a point between them could claim (log latency x loss, as
    in ``thin_front``): geometric constraints straddle a steep stretch (one
    decoder layer more) without any search looking inside it, and a random
    sub-network that lands there is not dominated. ``skip``: ``(near key, far
    key)`` pairs already searched.
    """
    pairs = [(near, far) for near, far in zip(front, front[1:], strict=False)
             if far[2] > near[2] * (1 + gap) and (near[0].key(), far[0].key()) not in skip]
    return sorted(pairs, key=lambda p: (-math.log(p[1][2] / p[0][2]) * (p[0][1] - p[1][1]),
                                        p[0][2]))


def hole_middle(near, far, floor, searched_ms, gap) -> float | None:
    """The constraint a search in the hole from ``near`` to ``far`` runs at; None: pass it over.

    ``near``, ``far``: ``(config, loss, predicted ms, ...)``. The hole's geometric
    middle, raised to ``floor`` (the smallest sub-network's prediction, below which
    evolve refuses a constraint). Passed over when that reaches ``far``, or lies
    within half a gap (``sqrt(1 + gap)``) of a constraint in ``searched_ms``: a
    hole still open around a constraint already searched is one the search found
    nothing in, and searching it again spends a search where one was spent.
    """
    middle = max(math.sqrt(near[2] * far[2]), floor)
    if middle >= far[2]:
        return None
    half = math.log1p(gap) / 2
    if any(abs(math.log(middle / ms)) < half for ms in searched_ms):
        return None
    return middle


def thin_front(front, count, fixed=frozenset()) -> list:
    """``front`` thinned to ``count`` items besides those keyed in ``fixed``; its ends stay.

    ``front``: ``(config, loss, predicted ms, ...)``, fastest first. One at a
    time, the item whose removal gives up the least area of the plane it alone
    dominates (log latency x loss: the predictor's error is relative) goes.
    Spacing items evenly by index would thin a dense stretch and a sparse one
    alike; a random sub-network lands in the area a removal gives up, and an
    item alone in a stretch of latency (the first with two decoder layers, say)
    holds the most.
    """
    items = list(front)

    def given_up(i):  # from this one's latency to the next's, from its loss to the previous'
        return math.log(items[i + 1][2] / items[i][2]) * (items[i - 1][1] - items[i][1])

    while sum(item[0].key() not in fixed for item in items) > count:
        inner = [i for i in range(1, len(items) - 1) if items[i][0].key() not in fixed]
        if not inner:
            break
        del items[min(inner, key=lambda i: (given_up(i), i))]
    return items


def _spread(items, count) -> list:
    """At most ``count`` of ``items``, evenly spaced along them, both ends kept."""
    if len(items) <= count:
        return list(items)
    picks = sorted({round(float(i)) for i in np.linspace(0, len(items) - 1, count)})
    return [items[i] for i in picks]


def random_subnets(space, count, seed) -> list[SubnetConfig]:
    """``count`` distinct sub-networks drawn uniformly (HAT's sampling), the same for a seed."""
    rng = random.Random(seed)
    drawn = {}
    for _ in range(100 * count):
        if len(drawn) == count:
            break
        cfg = space.sample(rng)
        drawn.setdefault(cfg.key(), cfg)
    return list(drawn.values())


@dataclass
class CloudComparison:
    """Searched and random sub-networks as (measured ms, validation loss), timed together."""

    front: list
    cloud: list

    @property
    def dominated(self) -> int:
        return sum(dominated(p, self.front) for p in self.cloud)

    def in_doubt(self, band) -> tuple[list, list]:
        """Indices of cloud and front points whose verdicts noise within ``band`` could flip.

        A random point is in doubt when some front point at least as good is
        timed less than ``band`` slower than it, yet none is more than ``band``
        faster: dominated or not, its verdict rests on latency differences a
        single pass cannot resolve (at the fast end sub-networks differ by less
        than their standard errors). Both sides of each doubtful comparison are
        returned, so a second pass times the searched points as often as the
        random ones and the selection favours neither.
        """
        require_fraction('band', band)
        cloud_doubt, front_doubt = [], set()
        for i, (ms, loss) in enumerate(self.cloud):
            rivals = [j for j, (f_ms, f_loss) in enumerate(self.front)
                      if f_loss <= loss and f_ms <= ms * (1 + band)]
            if rivals and not any(self.front[j][0] <= ms * (1 - band) for j in rivals):
                cloud_doubt.append(i)
                front_doubt.update(rivals)
        return cloud_doubt, sorted(front_doubt)


def time_with_random(model, searched, random_configs, workload, protocol, threads, csv_path,
                     samples_path=None, device='cpu', beam=None, progress=True,
                     searched_threads=()) -> dict:
    """Key -> {thread count: latency row} of searched and random sub-networks, timed together.

    Timed apart (the random ones with the latency dataset, the searched ones
    later in the sweep), each set carries its own moment's machine speed, which
    the drift probe corrects only in part; at the fast end, where sub-networks
    differ by a few percent, that decided the comparison. One
    ``measure_pairs`` call shares every round's shuffled order and every
    drift probe between the two sets, and spreads each sub-network's samples
    over the whole call rather than over a few minutes of it. The random ones
    are timed at ``threads``; the searched ones there and at every count of
    ``searched_threads`` (the library's other counts, which a short pass of
    their own would time at one moment of the machine). Its samples go
    to a log of their own beside ``csv_path``: in ``samples_path`` the searched
    sub-networks' earlier samples would be reused instead of taken again.
    That log starts with ``samples_path``'s probe references, so the scale
    stays the pipeline's; without one (a comparison on its own) it freezes a
    reference of its own.
    """
    counts = sorted({threads, *searched_threads})
    # measure_pairs times a pair listed twice (a random one also searched) once.
    pairs = [(c, t) for c in searched for t in counts] + [(c, threads) for c in random_configs]
    csv_path = Path(csv_path)
    own_log = samples_beside(csv_path)
    if samples_path is not None:
        SampleLog(samples_path, device, protocol.workload).start_beside(own_log)
    rows = measure_pairs(model, pairs, workload, protocol, csv_path, device,
                         beam, progress, desc='timing searched and random sub-networks',
                         samples_path=own_log)
    return _by_config(rows)


def _by_config(rows) -> dict:
    """Key -> {thread count: row} of latency rows."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row.config.key(), {})[row.threads] = row
    return grouped


@dataclass
class Candidate:
    """One sub-network with one beam policy, measured."""

    subnet: SubnetConfig
    beam: BeamPolicy
    latency_ms: dict  # threads -> measured ms
    decoder_steps: float
    predicted_ms: dict  # threads -> predicted ms (deployment beam only; else empty)
    val_loss: float
    bleu: float
    params: int
    constraint_ms: float | None = None
    predicted_steps: float | None = None  # the steps the prediction assumed
    finalist: bool = False  # a search's runner-up on the predicted front, not its winner

    @property
    def key(self):
        return self.subnet.key()


def build_library(candidates, device, rank_threads, meta, prefix='tr') -> OperatingPointLibrary:
    """The measured Pareto front of ``candidates`` as a library, named fastest first."""
    front = pareto_front(candidates, lambda c: c.latency_ms[rank_threads], lambda c: c.bleu)
    if not front:
        raise ValueError('sweep: no candidate to build a library from')
    width = max(2, len(str(len(front))))
    points = []
    for i, c in enumerate(front, start=1):
        metrics = {'key': c.key, 'val_loss': round(c.val_loss, 5), 'params': int(c.params),
                   'decoder_steps': round(c.decoder_steps, 3)}
        if c.predicted_ms:
            metrics['predicted_latency_ms_by_threads'] = {
                int(t): round(float(ms), 4) for t, ms in sorted(c.predicted_ms.items())}
        if c.predicted_steps is not None:
            metrics['predicted_decoder_steps'] = round(c.predicted_steps, 3)
        if c.constraint_ms is not None:
            metrics['constraint_ms'] = round(c.constraint_ms, 4)
        points.append(OperatingPoint(
            name=f'{prefix}_{device}_{i:0{width}d}', target='translation',
            subnet=c.subnet.to_dict(), beam=c.beam,
            latency_ms={int(t): round(float(ms), 4) for t, ms in c.latency_ms.items()},
            predicted_latency_ms=round(float(c.predicted_ms.get(rank_threads, math.nan)), 4),
            quality=round(float(c.bleu), 4), metrics=metrics))
    return OperatingPointLibrary('translation', device, 'bleu', points, meta=dict(meta))


# -- the whole step ------------------------------------------------------------------------------


def _read_json(path, default):
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f'{path}: cannot read sweep results: {err}') from None


def _write_json(path, data):
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


def _beam_key(cfg, beam):
    return f'{cfg.key()}|{json.dumps(beam.to_dict(), sort_keys=True)}'


@dataclass
class SweepSummary:
    library: OperatingPointLibrary
    constraints_ms: list
    searches: list  # per constraint: best key, loss, predicted ms, finalists
    candidates: list  # Candidate
    cloud: list = field(default_factory=list)  # (measured ms, val loss) of random sub-networks
    cloud_dominated: int = 0
    evaluations: int = 0


def run_sweep(config: SweepConfig, model, tokenizer, predictor, fitness, workload,
              corpus_dir, meta=None, progress=True) -> SweepSummary:
    """Search, measure, score and write the library (see the module docstring).

    ``fitness``: the cached validation loss; ``workload``: the latency workload,
    the same sentences the predictor's dataset was timed on. Other beams are
    timed into the pipeline's sample log (``config.samples_path``), the shared
    rounds into their own on that log's scale (``time_with_random``).
    """
    run = _start(config, model, predictor, fitness, workload, progress)
    calls_before = fitness.calls
    searches, pool = _search_constraints(run)
    _write_json(run.run_dir / 'searches.json', searches)
    plan = _plan_candidates(run, searches, pool)
    rows = _time_other_beams(run, plan)
    randoms = random_subnets(model.space, config.random_count, config.random_seed)
    together, together_log = _time_deployment_beam_with_random(run, plan, randoms)
    bleu, bleu_sentences = _bleu_scores(run, tokenizer, plan, corpus_dir)
    candidates = _measured_candidates(run, plan, rows, together, bleu)
    candidates = _refine_close_calls(run, candidates, together_log)
    library = build_library(candidates, config.device, run.rank,
                            _library_meta(run, meta, bleu_sentences), config.name_prefix)
    library.save(config.library_path)
    comparison = _compare_with_cloud(run, plan, randoms, together)
    if config.plot_path is not None:
        from dyn_dnn_ros.translation.design.plots import pareto_plot
        pareto_plot(config.plot_path, comparison.cloud, candidates, library, run.deployment,
                    run.rank, config.device, front=comparison.front)
    return SweepSummary(library, [s['constraint_ms'] for s in searches], searches, candidates,
                        comparison.cloud, comparison.dominated, fitness.calls - calls_before)


@dataclass(frozen=True)
class _SweepRun:
    """What every step of one sweep reads: its inputs and the settings derived from them."""

    config: SweepConfig
    model: object
    predictor: object
    fitness: object
    workload: object
    progress: bool
    run_dir: Path
    rank: int  # thread count of the constraints and the ranking
    floor: float  # the smallest sub-network's predicted latency at ``rank``
    measure: tuple  # thread counts every candidate is timed at
    deployment: BeamPolicy
    samples_path: Path  # the pipeline's sample log

    @property
    def space(self):
        return self.model.space

    @property
    def beams(self) -> list:
        """The deployment beam first, then the other policies winners are timed with."""
        return [self.deployment] + [b for b in self.config.extra_beams if b != self.deployment]


def _start(config, model, predictor, fitness, workload, progress) -> _SweepRun:
    """The sweep's settings, refused early where they cannot work together."""
    run_dir = Path(config.run_dir)
    rank = config.rank_threads or max(predictor.threads)
    # Fails early, naming the fitted counts. A fitted predictor need not rank the smallest
    # sub-network fastest, and evolve refuses a constraint below its prediction.
    floor = predictor.predict_one(model.space.smallest(), rank)
    measure = tuple(config.measure_threads or default_threads(config.device))
    if rank not in measure:
        raise ValueError(f'sweep: ranking thread count {rank} is not among the measured '
                         f'counts {measure}')
    return _SweepRun(config, model, predictor, fitness, workload, progress, run_dir, rank, floor,
                     measure, BeamPolicy('fixed', config.protocol.beam),
                     config.samples_path or run_dir / 'samples.jsonl')


def _search_constraints(run) -> tuple[list, dict]:
    """Steps 1-2: one search per constraint, then more inside the predicted front's holes.

    Returns the searches (as written to ``searches.json``) and the pool: key ->
    ``(config, loss, predicted ms, constraint)`` of every sub-network scored.
    """
    config, space, rank = run.config, run.space, run.rank
    constraints = list(config.constraints_ms) or geometric_constraints(
        run.floor, run.predictor.predict_one(space.largest(), rank), config.constraint_count)
    searches, pool = [], {}
    evolution = config.evolution
    if config.finalists and config.per_gap:  # the band behind the front select_finalists reads
        evolution = replace(evolution, archive_slack=max(evolution.archive_slack, config.gap))
    for constraint in constraints:
        _search(run, searches, pool, constraint, evolution)
    filling = replace(evolution, iterations=config.fill_iterations or evolution.iterations)
    searched_gaps, fills = set(), 0
    while fills < config.fill_searches:
        gaps = front_gaps(predicted_front(pool.values()), config.fill_gap, searched_gaps)
        if not gaps:
            break
        near, far = gaps[0]
        searched_gaps.add((near[0].key(), far[0].key()))
        constraint = hole_middle(near, far, run.floor, [s['constraint_ms'] for s in searches],
                                 config.fill_gap)
        if constraint is None:
            continue
        best_under = sorted((f for f in pool.values() if f[2] <= constraint),
                            key=lambda f: (f[1], f[2], f[0].key()))
        _search(run, searches, pool, constraint, filling,
                [f[0] for f in best_under[:evolution.parents]], fill=True)
        fills += 1
    return searches, pool


def _search(run, searches, pool, constraint, settings, seeds=(), fill=False):
    """One evolutionary search; its result joins ``searches``, its archive ``pool``."""
    result = evolve(run.space, run.fitness, lambda c: run.predictor.predict_one(c, run.rank),
                    constraint, settings, run.run_dir / f'search_{len(searches):02d}.json',
                    run.progress, seeds=seeds)
    found = result.to_dict()
    searches.append({'constraint_ms': constraint, 'key': result.best.key(),
                     'subnet': result.best.to_dict(), 'val_loss': result.loss,
                     'predicted_ms': result.latency_ms, 'fill': fill,
                     'finalists': found['finalists'], 'archive': found['archive']})
    for cfg, loss, ms in result.archive:  # the loosest constraint stays, as for winners
        if cfg.key() not in pool or pool[cfg.key()][3] < constraint:
            pool[cfg.key()] = (cfg, loss, ms, constraint)


def _plan_candidates(run, searches, pool) -> list:
    """Step 3's candidates: ``(config, constraint, beams, finalist)`` each.

    Winners (and the anchors) with the deployment beam and the extra ones,
    finalists with the deployment beam only.
    """
    config = run.config
    winners = {}
    # the loosest constraint a winner won under stays with it
    for s in sorted(searches, key=lambda s: s['constraint_ms']):
        winners[s['key']] = (SubnetConfig.from_dict(s['subnet']), s['constraint_ms'])
    if config.anchors:
        for anchor in (run.space.smallest(), run.space.largest()):
            winners.setdefault(anchor.key(), (anchor, None))
    finalists = (select_finalists(pool.values(), winners, config.finalist_limit,
                                  config.gap, config.per_gap)
                 if config.finalists else {})
    plan = [(cfg, constraint, run.beams, False) for cfg, constraint in winners.values()]
    plan += [(cfg, constraint, [run.deployment], True) for cfg, constraint in finalists.values()]
    return plan


def _time_other_beams(run, plan) -> dict:
    """Step 3: the winners' other beams at every thread count, into the pipeline's log.

    Returns ``_beam_key`` -> {thread count: latency row}.
    """
    rows = {}
    for beam in run.beams[1:]:
        configs = [cfg for cfg, _, with_beams, _ in plan if beam in with_beams]
        for row in measure_configs(run.model, configs, run.workload, run.config.protocol,
                                   run.measure, run.run_dir / 'winners.csv', run.config.device,
                                   beam, run.progress,
                                   desc=f'measuring winners ({beam.describe()})',
                                   samples_path=run.samples_path):
            rows.setdefault(_beam_key(row.config, beam), {})[row.threads] = row
    return rows


def _time_deployment_beam_with_random(run, plan, randoms) -> tuple[dict, Path]:
    """Step 3: every candidate at the deployment beam, in shared rounds with the random cloud.

    Returns the shared rounds' rows (key -> {thread count: latency row}, see
    ``time_with_random``) and their sample log.
    """
    together_csv = Path(run.config.random_csv or run.run_dir / 'random.csv')
    together = time_with_random(run.model, [cfg for cfg, *_ in plan], randoms, run.workload,
                                run.config.protocol, run.rank, together_csv, run.samples_path,
                                run.config.device, run.deployment, run.progress,
                                searched_threads=run.measure)
    return together, samples_beside(together_csv)


def _bleu_scores(run, tokenizer, plan, corpus_dir) -> tuple[dict, int]:
    """Step 3: ``_beam_key`` -> BLEU of every candidate, and the sentences it was scored on.

    Scores are kept in ``bleu.json`` as they are computed, so a rerun scores
    only what is missing.
    """
    from dyn_dnn_ros.translation.translator import Translator, read_split
    config = run.config
    bleu_sources, references = read_split(corpus_dir, config.bleu_split, config.bleu_sentences)
    bleu_path = run.run_dir / 'bleu.json'
    # Scores of other weights must not be reused: the fitness cache's fingerprint
    # names the model file.
    setting = {'split': config.bleu_split, 'sentences': len(bleu_sources),
               'model': run.fitness.cache.fingerprint}
    saved = _read_json(bleu_path, {'setting': setting, 'scores': {}})
    if saved.get('setting') != setting:
        raise ValueError(f'{bleu_path}: BLEU of {saved.get("setting")}, this sweep scores '
                         f'{setting}; use another run folder')
    bleu = saved['scores']
    translator = Translator(run.model, tokenizer, device=config.device,
                            batch_size=config.bleu_batch_size)
    todo = [(cfg, beam) for cfg, _, with_beams, _ in plan for beam in with_beams
            if _beam_key(cfg, beam) not in bleu]
    for cfg, beam in tqdm(todo, desc='BLEU', unit='candidate', disable=not run.progress):
        result = translator.evaluate(bleu_sources, references, cfg, beam)
        bleu[_beam_key(cfg, beam)] = result.bleu
        _write_json(bleu_path, {'setting': setting, 'scores': bleu})
    return bleu, len(bleu_sources)


def _measured_candidates(run, plan, rows, together, bleu) -> list[Candidate]:
    """One ``Candidate`` per planned (sub-network, beam), with what was measured of it.

    Latencies at the deployment beam come from the shared rounds (``together``),
    those at other beams from ``rows`` (``_time_other_beams``).
    """
    predictor = run.predictor
    candidates = []
    for cfg, constraint, with_beams, finalist in plan:
        predicted = {t: predictor.predict_one(cfg, t) for t in predictor.threads}
        steps = float(predictor.predict_steps([cfg])[0])
        for beam in with_beams:
            deployment = beam == run.deployment
            measured = together[cfg.key()] if deployment else rows[_beam_key(cfg, beam)]
            candidates.append(Candidate(
                subnet=cfg, beam=beam, latency_ms={t: r.latency_ms for t, r in measured.items()},
                decoder_steps=float(np.mean([r.decoder_steps for r in measured.values()])),
                predicted_ms=predicted if deployment else {},
                val_loss=run.fitness(cfg), bleu=bleu[_beam_key(cfg, beam)],
                params=run.model.count_parameters(cfg), constraint_ms=constraint,
                predicted_steps=steps if deployment else None, finalist=finalist))
    return candidates


def _refine_close_calls(run, candidates, together_log) -> list[Candidate]:
    """Step 4: deployment-beam candidates the measured front could take or lose, timed again.

    Their samples stay in the shared rounds' log and more rounds are added to
    them, until no candidate near the front is left untimed again.
    """
    config = run.config
    refined, passes = set(), 0
    while config.refine_band > 0:
        doubt = [c for c in near_front(candidates, lambda c: c.latency_ms[run.rank],
                                       lambda c: c.bleu, config.refine_band)
                 if c.beam == run.deployment and c.key not in refined]
        if not doubt:  # re-timing moves points, so doubt can reach new ones: until none
            break
        passes += 1
        more = measure_pairs(run.model, [(c.subnet, t) for c in doubt for t in run.measure],
                             run.workload, replace(config.protocol, repeats=config.refine_repeats),
                             run.run_dir / 'refined.csv', config.device, run.deployment,
                             run.progress,
                             desc=f'timing the front\'s close calls again ({passes})',
                             samples_path=together_log)
        timed = _by_config(more)
        refined |= set(timed)
        candidates = [replace(c, latency_ms={t: r.latency_ms for t, r in timed[c.key].items()},
                              decoder_steps=float(np.mean([r.decoder_steps
                                                           for r in timed[c.key].values()])))
                      if c.beam == run.deployment and c.key in timed else c for c in candidates]
    return candidates


def _library_meta(run, meta, bleu_sentences) -> dict:
    """What the library records of how it was made, after the caller's ``meta``."""
    config = run.config
    return {
        **(meta or {}), 'host': hardware_description(config.device),
        'torch_version': str(torch.__version__),
        'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'source': 'dyn-dnn-ros sweep', 'workload': config.protocol.workload,
        'deployment_beam': run.deployment.to_dict(), 'rank_threads': run.rank,
        'quality': f'BLEU on {config.bleu_split} '
                   f'({bleu_sentences} sentences), sacrebleu defaults',
        'space': run.space.to_dict(),
    }


def _compare_with_cloud(run, plan, randoms, together) -> CloudComparison:
    """Step 5: the random cloud against the searched sub-networks, from the shared rounds."""
    fitness, rank = run.fitness, run.rank
    comparison = CloudComparison(
        [(together[cfg.key()][rank].latency_ms, fitness(cfg)) for cfg, *_ in plan],
        [(together[cfg.key()][rank].latency_ms, fitness(cfg))
         for cfg in tqdm(randoms, desc='random fitness', disable=not run.progress)])
    fitness.save()
    return comparison
