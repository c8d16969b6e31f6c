"""An operating-point library for the CTranslate2 engine, measured on that engine.

The torch library's latencies say nothing of CTranslate2 (it runs the same
sub-network several times faster, and not uniformly so), and most of its
points use what CTranslate2 cannot express. This pipeline designs for the
engine the worker runs:

1. **What it can run.** Candidates come from the design space with every
   decoder layer attending to the last encoder layer (``ende`` 1) and one head
   count per stack (the decoder's self- and cross-attention share it). A
   narrower attention padded with zero heads costs what the stack's widest
   costs, so a non-uniform sub-network is never faster than its uniform
   projection; the search skips them (``padding_cost`` measures this).
2. **Measured, not predicted.** CTranslate2 loads a compact model in
   milliseconds and runs a sentence in a few, so every candidate is timed on
   the engine itself (a quick pass), instead of through a latency predictor
   as for torch, where a sub-network's timing costs seconds.
3. **Quality** is the teacher-forced validation loss of the torch model (the
   same weights); the candidates near the (quick latency, loss) front are the
   finalists.
4. **Finalists** are timed again at every beam width, one thread count after
   the other, in shuffled rounds (trimmed mean over rounds: drift of the
   machine spreads over all of them), their BLEU is measured on the engine, and the
   (latency, BLEU) front is chosen.
5. **The winners** are timed again the same way in an engine that holds only
   their models, as the translation node does; those are the latencies the
   library records (the manager's assumptions), and a winner they push off
   the front is dropped.

Latency is per sentence at batch 1, the engine decoding each sentence to its
own end, as the node does: what the manager assumes is what a request costs.
Every measurement is saved in the run folder as it is made; a rerun resumes.
"""

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
import json
from pathlib import Path
import random
import statistics
import time

from tqdm import tqdm

from dyn_dnn_ros.files import json_digest, write_atomic
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.share import portable_path, runs_path
from dyn_dnn_ros.timing import trimmed_stats
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.pareto import near_front, pareto_front
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.validation import require_in_interval, require_int, require_ints

# Splits whose BLEU may pick the points (results report on the test split).
QUALITY_SPLITS = ('valid', 'test')


@dataclass(frozen=True)
class EngineLibraryConfig:
    run_dir: Path = runs_path('design_ctranslate2')
    compute_type: str = 'int8'
    vocabulary_map: str = ''  # '' = the shipped map, 'full' = none, else a map file
    candidates: int = 240  # random expressible sub-networks, plus the smallest and largest
    seed: int = 0
    beams: tuple = (1, 2, 3, 5)
    threads: tuple = (1, 2)
    timing_sentences: int = 40  # validation sentences, one at a time
    quick_band: float = 0.08  # finalists: on the quick front with this much latency slack
    max_finalists: int = 24
    rounds: int = 5
    trim: float = 0.2
    bleu_sentences: int = 500  # sentences of quality_split
    quality_split: str = 'valid'  # one of QUALITY_SPLITS
    max_points: int = 20
    fitness_sentences: int = 300

    def __post_init__(self):
        object.__setattr__(self, 'run_dir', Path(self.run_dir))
        for name in ('candidates', 'timing_sentences', 'max_finalists', 'rounds',
                     'bleu_sentences', 'max_points', 'fitness_sentences'):
            require_int(name, getattr(self, name), 1)
        require_ints('beams', self.beams, 1)
        require_ints('threads', self.threads, 1)
        require_in_interval('trim', self.trim, '[0, 0.5)')
        require_in_interval('quick_band', self.quick_band, '[0, 1)')
        if self.quality_split not in QUALITY_SPLITS:
            raise ValueError(f'quality_split: must be one of {QUALITY_SPLITS}, '
                             f'got {self.quality_split!r}')


def expressible_space(space: DesignSpace) -> DesignSpace:
    """``space`` with decoder layers attending to the last encoder layer only."""
    return replace(space, ende=(1,))


def uniform_heads(subnet: SubnetConfig) -> SubnetConfig:
    """One head count per stack: each stack's widest (what a padded export costs)."""
    enc = max(subnet.encoder_heads)
    dec = max(subnet.decoder_self_heads + subnet.decoder_cross_heads)
    return replace(subnet, encoder_heads=(enc,) * subnet.encoder_layers,
                   decoder_self_heads=(dec,) * subnet.decoder_layers,
                   decoder_cross_heads=(dec,) * subnet.decoder_layers,
                   decoder_ende=(1,) * subnet.decoder_layers)


def candidate_subnets(space: DesignSpace, count, seed) -> list[SubnetConfig]:
    """``count`` distinct random expressible sub-networks, with the smallest and largest."""
    space = expressible_space(space)
    rng = random.Random(seed)
    found = {}
    for subnet in (uniform_heads(space.smallest()), uniform_heads(space.largest())):
        found[subnet.key()] = subnet
    attempts = 0
    while len(found) < count + 2 and attempts < 100 * count:
        attempts += 1
        subnet = uniform_heads(space.sample(rng))
        found.setdefault(subnet.key(), subnet)
    return list(found.values())


TIMING_PROTOCOL = 'rounds per thread count'  # samples of another protocol are taken again


MEASURED = ('loss', 'quick_ms', 'samples', 'final', 'bleu')


def draw_timing_sentences(valid_sources, count, seed) -> list[str]:
    """The validation sentences a library's latencies are timed on: ``count`` drawn with ``seed``.

    The design, a re-timing and the benchmark's library check all draw them
    this way, so they time the same sentences.
    """
    if len(valid_sources) < count:
        raise ValueError(f'valid split: {len(valid_sources)} sentences, {count} are timed')
    return random.Random(seed).sample(list(valid_sources), count)


def library_timing_sentences(library, valid_sources) -> list[str]:
    """The sentences ``library`` was timed on, drawn again from ``valid_sources``."""
    made = library.meta.get('config', {})
    return draw_timing_sentences(valid_sources, int(made.get('timing_sentences', 40)),
                                 int(made.get('seed', 0)))


def engine_source(engine) -> dict:
    """What an engine's exported models are made from (its model cache's record); {} for none."""
    cache = getattr(engine, 'cache', None)
    return dict(cache.source) if cache is not None else {}


def measurement_basis(engine, fitness, timing_sentences, quality_sources,
                      quality_references) -> dict:
    """What the measurements of a run folder depend on; with another, they are another run's.

    The exported models' source (weights, tokenizer, compute type, CTranslate2
    version, head layout), the fitness's fingerprint (model, validation pairs)
    and the sentences timed and scored.
    """
    fitness_cache = getattr(fitness, 'cache', None)
    return {
        'engine': engine_source(engine),
        'fitness': dict(getattr(fitness_cache, 'fingerprint', None) or {}),
        'timing_sentences_sha256': json_digest(list(timing_sentences)),
        'quality_sentences_sha256': json_digest([list(quality_sources),
                                                 list(quality_references)]),
    }


class Measurements:
    """Everything measured so far, saved as JSON after each addition (a rerun resumes).

    The file records the basis of its measurements (``measurement_basis``); a
    rerun on another basis (new weights, another corpus, compute type or
    sentences) is refused, as the fitness cache refuses losses of another
    model, rather than mixing old measurements into a new library.
    """

    def __init__(self, path, basis=None):
        self.path = Path(path)
        self.data = {name: {} for name in MEASURED}
        if self.path.is_file():
            self.data.update(json.loads(self.path.read_text()))
        if basis is not None:
            self._check_basis(basis)
            self.data['basis'] = basis

    def _check_basis(self, basis):
        found = self.data.get('basis')
        if found is None:
            if any(self.data.get(name) for name in MEASURED):
                raise ValueError(f'{self.path}: its measurements do not record what they were '
                                 'made with; use another run folder')
            return
        changed = sorted(k for k in set(found) | set(basis) if found.get(k) != basis.get(k))
        if changed:
            raise ValueError(f'{self.path}: measured with another {", ".join(changed)} than '
                             'this run; use another run folder')

    def save(self):
        write_atomic(self.path, json.dumps(self.data, indent=0, sort_keys=True).encode())


def time_per_sentence(engine, subnet, width, threads, sentences) -> float:
    """Mean ms per sentence, one sentence at a time, after one warm-up sentence."""
    engine.translate(sentences[:1], subnet, width, threads=threads)
    began = time.perf_counter()
    for sentence in sentences:
        engine.translate([sentence], subnet, width, threads=threads)
    return (time.perf_counter() - began) * 1000.0 / len(sentences)


@dataclass
class EngineLibraryResult:
    library: OperatingPointLibrary
    candidates: int
    finalists: list = field(default_factory=list)
    seconds: float = 0.0


def design_engine_library(config: EngineLibraryConfig, engine, fitness, timing_sentences,
                          quality_sources, quality_references, progress=True,
                          final_engine=None) -> EngineLibraryResult:
    """Run steps 1-5 (see the module docstring) and return the library.

    ``final_engine``: a second engine with nothing loaded, for step 5 (default
    ``engine`` itself).
    """
    began = time.perf_counter()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    store = Measurements(config.run_dir / 'measurements.json', measurement_basis(
        engine, fitness, timing_sentences, quality_sources, quality_references))
    subnets = candidate_subnets(engine.space, config.candidates, config.seed)
    by_key = {s.key(): s for s in subnets}
    quick_pass(store, engine, fitness, subnets, max(config.beams), timing_sentences, progress)
    finalists = choose_finalists(store.data, subnets, config)

    start_timing_protocol(store.data)
    # One sequence for both timing steps, so a rerun shuffles its rounds as the
    # first run did and resumes the same.
    rng = random.Random(config.seed)
    options = [(s.key(), b) for s in finalists for b in config.beams]
    timing_rounds(store, 'samples', engine, by_key, options, config, rng, timing_sentences,
                  'finalists', progress)
    measure_bleu(store, engine, by_key, options, quality_sources, quality_references,
                 progress)
    front = choose_front(store.data, options, config)

    timer = final_engine if final_engine is not None else engine
    timing_rounds(store, 'final', timer, by_key, front, config, rng, timing_sentences,
                  'winners', progress)
    winners = choose_winners(store.data, front, config)
    library = assemble_library(config, store.data, by_key, winners, len(quality_sources),
                               len(subnets), len(finalists),
                               getattr(engine, 'vocabulary_map_sha256', ''))
    return EngineLibraryResult(library, len(subnets), [s.key() for s in finalists],
                               time.perf_counter() - began)


def quick_pass(store, engine, fitness, subnets, width, timing_sentences, progress):
    """Steps 2-3: every candidate's loss and its time at one width on one thread."""
    data = store.data
    for subnet in tqdm(subnets, desc='candidates: loss and quick timing', disable=not progress):
        key = subnet.key()
        if key not in data['loss']:
            data['loss'][key] = fitness(subnet)
        if key not in data['quick_ms']:
            data['quick_ms'][key] = time_per_sentence(engine, subnet, width, 1,
                                                      timing_sentences)
            store.save()
    store.save()  # the losses of candidates timed in an earlier run


def _spread(items, count):
    """At most ``count`` of ``items``, evenly spaced over the list (its ends kept)."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def choose_finalists(data, subnets, config) -> list[SubnetConfig]:
    """Step 3: the candidates near the (quick latency, loss) front, and the space's extremes."""
    by_key = {s.key(): s for s in subnets}
    near = near_front(list(by_key), lambda k: data['quick_ms'][k], lambda k: -data['loss'][k],
                      config.quick_band)
    near.sort(key=lambda k: data['quick_ms'][k])
    near = _spread(near, config.max_finalists)  # evenly over the latency range
    # The extremes of the space anchor the library's span, wherever the quick
    # pass (one beam width, one thread) placed them.
    anchors = [s.key() for s in subnets[:2]]
    return [by_key[k] for k in dict.fromkeys(anchors + near)]


def start_timing_protocol(data):
    """Drop the timing samples of another protocol; they would not compare with new ones."""
    if data.get('timing_protocol') != TIMING_PROTOCOL:
        data['samples'], data['final'] = {}, {}
        data['timing_protocol'] = TIMING_PROTOCOL


def _sample_key(key, width, threads):
    return f'{key}|{width}|{threads}'


def timing_rounds(store, bucket, engine, by_key, options, config, rng, timing_sentences,
                  what, progress):
    """Steps 4-5: time each (key, width) of ``options`` in ``config.rounds`` shuffled rounds.

    Samples go to ``store.data[bucket]`` keyed ``key|width|threads``; a round an
    earlier run completed is skipped, but still shuffled, so ``rng`` stays in step.
    """
    samples_of = store.data.setdefault(bucket, {})
    # One thread count at a time: CTranslate2's worker threads keep spinning a
    # while after a multi-threaded call, so a one-thread run right after one
    # measures their leftovers as well (the node runs all its points on one count).
    for threads in config.threads:
        for round_ in tqdm(range(config.rounds), desc=f'{what}: timing rounds, '
                           f'{threads} thread(s)', disable=not progress):
            order = list(options)
            rng.shuffle(order)  # each round in a new order: slow phases spread over all
            for key, width in order:
                samples = samples_of.setdefault(_sample_key(key, width, threads), [])
                if len(samples) > round_:
                    continue
                samples.append(time_per_sentence(engine, by_key[key], width, threads,
                                                 timing_sentences))
            store.save()


def trimmed_ms(samples_of, option, threads, config) -> float:
    """Trimmed mean of the samples of ``option`` (key, width) at ``threads``."""
    key, width = option
    return trimmed_stats(samples_of[_sample_key(key, width, threads)], config.trim)[0]


def measure_bleu(store, engine, by_key, options, sources, references, progress):
    """Step 4: BLEU of each (key, width) of ``options`` on the engine, keyed ``key|width``."""
    import sacrebleu

    data = store.data
    for key, width in tqdm(options, desc='finalists: BLEU', disable=not progress):
        name = f'{key}|{width}'
        if name not in data['bleu']:
            outcomes = engine.translate(sources, by_key[key], width, threads=1)
            data['bleu'][name] = sacrebleu.corpus_bleu(
                [o.text for o in outcomes], [list(references)]).score
            store.save()


def choose_front(data, options, config) -> list:
    """Step 4: the (key, width) of ``options`` on the (one-thread latency, BLEU) front."""
    return pareto_front(options, lambda o: trimmed_ms(data['samples'], o, 1, config),
                        lambda o: data['bleu'][f'{o[0]}|{o[1]}'])


def choose_winners(data, front, config) -> list:
    """Step 5: those of ``front`` still on it when timed again, at most ``max_points``."""
    front = pareto_front(front, lambda o: trimmed_ms(data['final'], o, 1, config),
                         lambda o: data['bleu'][f'{o[0]}|{o[1]}'])
    return _spread(front, config.max_points)


def assemble_library(config, data, by_key, winners, quality_sentences, candidates,
                     finalists, vocabulary_map_sha256='') -> OperatingPointLibrary:
    """The library of ``winners`` (key, width), with the latencies of step 5.

    ``vocabulary_map_sha256``: the map the engine scored with ('' = none).
    """
    import ctranslate2

    from dyn_dnn_ros.resources.hardware import hardware_description
    points = []
    for i, (key, width) in enumerate(winners):
        points.append(OperatingPoint(
            name=f'tr_ct2_{i + 1:02d}', target='translation', subnet=by_key[key].to_dict(),
            latency_ms={t: round(trimmed_ms(data['final'], (key, width), t, config), 4)
                        for t in config.threads},
            quality=round(data['bleu'][f'{key}|{width}'], 4),
            beam=BeamPolicy('fixed', width=width),
            metrics={'key': key, 'val_loss': round(data['loss'][key], 5)}))
    return OperatingPointLibrary(
        target='translation', device='cpu', quality_metric='bleu', points=points,
        engine='ctranslate2', compute_type=config.compute_type,
        vocabulary_map_sha256=vocabulary_map_sha256, meta={
            'source': 'dyn-dnn-ros design ctranslate2-library',
            'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'host': hardware_description('cpu'),
            'ctranslate2_version': ctranslate2.__version__,
            'workload': f'valid-k{config.timing_sentences}-seed{config.seed}-own-length',
            'quality': f'BLEU on {config.quality_split} ({quality_sentences} sentences), '
                       'sacrebleu defaults',
            'timing': f'{config.rounds} shuffled rounds per thread count, trimmed mean '
                      f'({config.trim:g} each side), batch 1; the winners timed again '
                      'in an engine holding only their models',
            'search': f'{candidates} expressible candidates, {finalists} finalists',
            'config': {k: (str(portable_path(v)) if isinstance(v, Path) else v)
                       for k, v in asdict(config).items()},
        })


def padding_cost(engine, subnet: SubnetConfig, sentences, width=5, repeats=3) -> dict:
    """Ms per sentence of ``subnet`` exported with zero-padded heads and of its uniform twin."""
    twin = uniform_heads(subnet)
    times = {'padded': [], 'uniform': []}
    for _ in range(repeats):
        times['padded'].append(time_per_sentence(engine, subnet, width, 1, sentences))
        times['uniform'].append(time_per_sentence(engine, twin, width, 1, sentences))
    return {k: statistics.median(v) for k, v in times.items()} | {
        'padded_key': subnet.key(), 'uniform_key': twin.key(), 'width': width}
