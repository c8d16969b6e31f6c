"""Sweep -> operating-point library (Pareto filtering, atomic write, resume) and design report."""

from collections import Counter
import dataclasses
import json
import math
from pathlib import Path
import random

import pytest
import torch
import yaml

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.share import portable_path
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design import latency_dataset as ld
from dyn_dnn_ros.translation.design.config_sampling import dataset_configs
from dyn_dnn_ros.translation.design.evolution import EvolutionConfig
from dyn_dnn_ros.translation.design.fitness import CachedFitness, FitnessCache, ValidationLoss
from dyn_dnn_ros.translation.design.latency_csv import read_latency_csv
from dyn_dnn_ros.translation.design.latency_dataset import measure_configs
from dyn_dnn_ros.translation.design.predictor import PredictorConfig, fit_predictor
from dyn_dnn_ros.translation.design.report import choice_usage, format_usage, reduced_space
from dyn_dnn_ros.translation.design.sweep import (
    Candidate,
    CloudComparison,
    SweepConfig,
    build_library,
    dominated,
    front_gaps,
    geometric_constraints,
    hole_middle,
    near_front,
    pareto_front,
    predicted_front,
    random_subnets,
    run_sweep,
    select_finalists,
    thin_front,
)
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
from dyn_dnn_ros.translation.design.workload import load_workload
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / 'models' / 'translation' / 'spm.model'
CORPUS = ROOT / 'data' / 'corpus'
SPACE = DesignSpace(encoder_embed_dim=(32, 96), decoder_embed_dim=(32, 96), ffn_dim=(64, 384),
                    heads=(1, 3), encoder_layers=(2,), decoder_layers=(1, 2, 3), ende=(1, 2),
                    head_dim=16, max_positions=64)
# One short sentence, no warm-up, two rounds: the sweep's bookkeeping, not its timings, is
# under test, and every sample at 2 threads costs far more on a loaded machine.
FAST = LatencyProtocol(beam=3, sentences=1, warmup=0, repeats=2, mode='fixed', fixed_length=3)
FIVE, ONE = BeamPolicy('fixed', 5), BeamPolicy('fixed', 1)
torch.set_num_threads(1)


def test_geometric_constraints_span_the_range():
    values = geometric_constraints(10.0, 80.0, 4)
    assert values[0] == pytest.approx(10.0) and values[-1] == pytest.approx(80.0)
    ratios = [b / a for a, b in zip(values, values[1:], strict=False)]
    assert ratios == pytest.approx([2.0, 2.0, 2.0])
    assert geometric_constraints(5.0, 9.0, 1) == [9.0]
    with pytest.raises(ValueError, match='low <= high'):
        geometric_constraints(20.0, 10.0, 3)


def test_pareto_front_keeps_only_undominated_points_fastest_first():
    points = {'a': (10, 20.0), 'b': (12, 19.0), 'c': (15, 25.0), 'd': (15, 24.0),
              'e': (20, 25.0), 'f': (25, 27.5), 'g': (9, 15.0), 'h': (10, 18.0)}
    front = pareto_front(points, lambda k: points[k][0], lambda k: points[k][1])
    assert front == ['g', 'a', 'c', 'f']  # b, h: slower and worse than a; d, e: than c
    assert pareto_front([], lambda k: 0, lambda k: 0) == []
    assert dominated((12, 3.0), [(10, 2.9)]) and not dominated((12, 3.0), [(13, 2.0)])
    assert dominated((12, 3.0), [(12, 3.0)])  # a point on the front counts as matched
    comparison = CloudComparison(front=[(10, 2.9), (20, 2.5)],
                                 cloud=[(12, 3.0), (9, 3.5), (21, 2.6), (15, 2.7)])
    assert comparison.dominated == 2  # (9, 3.5): faster than any; (15, 2.7): in a gap


def test_comparisons_in_doubt_name_both_sides_and_leave_clear_verdicts_alone():
    comparison = CloudComparison(front=[(100, 2.5), (50, 2.8), (40, 3.0)],
                                 cloud=[(98, 2.9),   # dominated by (50, 2.8) by far: clear
                                        (99, 2.4),   # no front point as good: clear
                                        (49, 2.9),   # dominated by (50, 2.8)? within 5 %
                                        (51, 2.85),  # dominated by (50, 2.8), 2 % faster
                                        (30, 3.5)])  # faster than the whole front: clear
    cloud, front = comparison.in_doubt(0.05)
    assert cloud == [2, 3] and front == [1]
    assert comparison.in_doubt(0.015) == ([], [])  # a narrower band settles both
    for band in (0, 1, -0.1, float('nan'), True):
        with pytest.raises(ValueError, match='band'):
            comparison.in_doubt(band)


def test_predicted_front_keeps_the_finalists_no_other_beats():
    # (config, validation loss, predicted ms); c is slower and worse than a
    items = [('b', 2.4, 12.0), ('c', 2.6, 11.0), ('a', 2.5, 10.0)]
    assert [f[0] for f in predicted_front(items)] == ['a', 'b']


def test_finalists_are_the_pool_front_without_the_winners():
    rng = random.Random(0)
    a, b, c, d = (SPACE.sample(rng) for _ in range(4))
    pool = [(a, 2.5, 10.0, 11.0), (b, 2.4, 12.0, 12.5), (c, 2.6, 11.0, 11.0),
            (d, 2.3, 14.0, 14.0)]  # c: slower and worse than a
    assert select_finalists(pool, {d.key(): (d, 14.0)}) == {a.key(): (a, 11.0),
                                                            b.key(): (b, 12.5)}
    # A limit keeps the front's ends, and of the rest those alone in a stretch of it: a
    # dense run at 10-11 ms, then one point alone before a gap to 20 ms.
    line = [(SPACE.sample(rng), 3.0 - i / 100, 10.0 + i / 8, 20.0) for i in range(9)]
    lone = (SPACE.sample(rng), 2.5, 14.0, 20.0)
    last = (SPACE.sample(rng), 2.4, 20.0, 20.0)
    kept = select_finalists(line + [lone, last], {}, limit=3)
    assert list(kept) == [line[0][0].key(), lone[0].key(), last[0].key()]
    everything = select_finalists(line + [lone, last], {})
    assert len(everything) == len(select_finalists(line + [lone, last], {}, limit=20)) == 11
    # Winners are kept and not counted against the limit.
    kept = select_finalists(line + [lone, last], {line[4][0].key(): (line[4][0], 20.0)},
                            limit=3)
    assert list(kept) == [line[0][0].key(), lone[0].key(), last[0].key()]
    with pytest.raises(ValueError, match='finalist_limit'):
        SweepConfig(run_dir=Path('x'), library_path=Path('y'), finalist_limit=-1)


def test_thinning_gives_up_the_least_dominated_area_first():
    rng = random.Random(5)
    a, b, c, d, e = (SPACE.sample(rng) for _ in range(5))
    front = [(a, 3.0, 10.0), (b, 2.9, 11.0), (c, 2.85, 20.0), (d, 2.35, 21.0),
             (e, 2.3, 30.0)]
    # The boxes only b, c, d dominate (log of the next one's latency over theirs, times
    # the loss below the previous one): b 0.598 x 0.1, c 0.049 x 0.05, d 0.357 x 0.5.
    assert [f[0] for f in thin_front(front, 4)] == [a, b, d, e]
    # Without c, b's box is log(21/11) x 0.1 = 0.065, d's log(30/21) x 0.55 = 0.20;
    # an even spread by index would have kept c instead.
    assert [f[0] for f in thin_front(front, 3)] == [a, d, e]
    assert [f[0] for f in thin_front(front, 2, fixed={b.key()})] == [a, b, e]
    assert [f[0] for f in thin_front(front, 0)] == [a, e]  # the ends stay
    assert thin_front(front, 9) == front


def test_near_front_holds_the_front_and_what_a_latency_error_keeps_off_it():
    # (name, ms, BLEU): b is 4 % slower than a and no better, c 20 % slower than a
    items = [('a', 10.0, 20.0), ('b', 10.4, 20.0), ('c', 12.0, 19.0), ('d', 13.0, 25.0)]
    near = near_front(items, lambda i: i[1], lambda i: i[2], 0.05)
    assert [i[0] for i in near] == ['a', 'b', 'd']
    assert [i[0] for i in near_front(items, lambda i: i[1], lambda i: i[2], 0.0)] == ['a', 'd']
    for bad in ({'refine_band': math.nan}, {'refine_band': 1.0}, {'refine_band': -0.1},
                {'refine_repeats': LatencyProtocol().repeats}):
        with pytest.raises(ValueError, match='sweep.refine_'):
            SweepConfig(run_dir=Path('x'), library_path=Path('y'), **bad)
    assert SweepConfig(run_dir=Path('x'), library_path=Path('y'), refine_band=0,
                       refine_repeats=1).refine_band == 0


def test_gaps_in_the_front_take_finalists_from_just_behind_them():
    rng = random.Random(3)
    cfgs = [SPACE.sample(rng) for _ in range(9)]
    # front: 0 (10 ms), then a gap to 1 (15 ms), then 2 (15.5 ms)
    front = [(cfgs[0], 2.50, 10.0, 10.0), (cfgs[1], 2.40, 15.0, 15.0),
             (cfgs[2], 2.30, 15.5, 16.0)]
    behind = [(cfgs[3], 2.45, 15.2, 16.0), (cfgs[4], 2.41, 15.4, 16.0),
              (cfgs[5], 2.48, 15.6, 16.0), (cfgs[6], 2.35, 15.7, 16.0)]
    too_slow = [(cfgs[7], 2.42, 16.0, 16.0)]  # more than 5 % behind the gap's far end
    worse = [(cfgs[8], 2.55, 15.1, 16.0)]  # not better than the gap's near end
    pool = front + behind + too_slow + worse
    plain = select_finalists(pool, {})
    assert list(plain) == [c.key() for c in cfgs[:3]]
    filled = select_finalists(pool, {}, gap=0.05, per_gap=8)
    assert set(filled) == {c.key() for c in cfgs[:7]}
    # At most per_gap of them, spread over their losses (best and worst kept).
    two = select_finalists(pool, {}, gap=0.05, per_gap=2)
    assert set(two) - set(plain) == {cfgs[6].key(), cfgs[5].key()}
    assert select_finalists(pool, {}, gap=0.6, per_gap=8) == plain  # no gap that wide
    for bad in ({'gap': 0.0}, {'gap': math.nan}, {'per_gap': -1}):
        with pytest.raises(ValueError, match='sweep.(gap|per_gap)'):
            SweepConfig(run_dir=Path('x'), library_path=Path('y'), **bad)


def test_front_gaps_are_the_widest_holes_first_and_skip_the_searched():
    rng = random.Random(4)
    cfgs = [SPACE.sample(rng) for _ in range(5)]
    # 10 -> 10.2 ms: no gap; 10.2 -> 15 (x1.47, 0.1 of loss); 15 -> 16 (x1.07, 0.7 of loss:
    # the larger hole); 16 -> 16.4 (x1.025)
    front = [(cfgs[0], 3.0, 10.0, 10.0), (cfgs[1], 2.9, 10.2, 11.0),
             (cfgs[2], 2.8, 15.0, 15.0), (cfgs[3], 2.1, 16.0, 16.0), (cfgs[4], 2.0, 16.4, 17.0)]
    gaps = front_gaps(front, 0.05)
    assert [(near[2], far[2]) for near, far in gaps] == [(15.0, 16.0), (10.2, 15.0)]
    assert front_gaps(front, 0.02)[-1][0][2] == 16.0  # 16 -> 16.4 is one at 2 %
    skipped = front_gaps(front, 0.05, {(cfgs[2].key(), cfgs[3].key())})
    assert [(near[2], far[2]) for near, far in skipped] == [(10.2, 15.0)]
    assert front_gaps(front, 0.5) == [] and front_gaps(front[:1], 0.05) == []
    for bad in ({'fill_gap': 0.0}, {'fill_gap': math.nan}, {'fill_searches': -1},
                {'fill_searches': True}, {'fill_iterations': 0}):
        with pytest.raises(ValueError, match='sweep.fill_'):
            SweepConfig(run_dir=Path('x'), library_path=Path('y'), **bad)


def test_hole_middle_is_raised_to_the_floor_and_passes_over_searched_latencies():
    rng = random.Random(5)
    a, b = SPACE.sample(rng), SPACE.sample(rng)
    near, far = (a, 2.8, 10.0, 10.0), (b, 2.1, 14.4, 15.0)
    assert hole_middle(near, far, 5.0, [], 0.05) == pytest.approx(12.0)
    assert hole_middle(near, far, 13.0, [], 0.05) == pytest.approx(13.0)  # the floor
    assert hole_middle(near, far, 14.4, [], 0.05) is None  # raised to the far end
    # half a 5 % gap is about 2.47 %: a search at 12.25 ms (2.1 % off) covers the middle,
    # one at 12.35 ms (2.9 %) or at 11.6 ms (3.4 % below) does not
    assert hole_middle(near, far, 5.0, [30.0, 12.25], 0.05) is None
    assert hole_middle(near, far, 5.0, [12.35, 11.6], 0.05) == pytest.approx(12.0)
    assert hole_middle(near, far, 5.0, [12.35], 0.10) is None  # half of 10 %: 4.9 %


def test_predicted_front_with_slack_keeps_a_band_behind_it():
    rng = random.Random(4)
    a, b, c, d = (SPACE.sample(rng) for _ in range(4))
    items = [(a, 2.5, 10.0), (b, 2.6, 10.5), (c, 2.6, 11.5), (d, 2.4, 12.0), (a, 2.5, 10.0)]
    assert [f[0] for f in predicted_front(items)] == [a, d]
    # b is only 5 % slower than a: within a 10 % band; c is 15 % slower and no better
    assert [f[0] for f in predicted_front(items, slack=0.1)] == [a, b, d]
    with pytest.raises(ValueError, match='slack'):
        predicted_front(items, slack=-0.1)


def test_random_subnets_are_distinct_and_follow_the_seed():
    drawn = random_subnets(SPACE, 12, seed=1)
    assert len({c.key() for c in drawn}) == 12
    assert [c.key() for c in drawn] == [c.key() for c in random_subnets(SPACE, 12, seed=1)]
    assert [c.key() for c in drawn] != [c.key() for c in random_subnets(SPACE, 12, seed=2)]
    for cfg in drawn:
        SPACE.validate(cfg)


def _candidate(subnet, beam, ms, bleu, predicted=None):
    return Candidate(subnet=subnet, beam=beam, latency_ms={1: ms * 1.8, 2: ms},
                     decoder_steps=12.0, predicted_ms={1: ms * 1.7, 2: predicted or ms},
                     val_loss=3.0 - bleu / 100, bleu=bleu, params=1000, constraint_ms=ms)


def test_library_holds_the_measured_front_named_fastest_first(tmp_path):
    small, large = SPACE.smallest(), SPACE.largest()
    candidates = [_candidate(large, FIVE, 40.0, 30.0, predicted=42.0),
                  _candidate(small, FIVE, 20.0, 18.0), _candidate(small, ONE, 12.0, 16.0),
                  _candidate(large, ONE, 25.0, 17.0)]  # slower and worse than small/FIVE
    candidates[2].predicted_ms = {}  # other beams: no prediction
    library = build_library(candidates, 'cpu', 2, {'source': 'test'})
    path = tmp_path / 'operating_points_cpu.yaml'
    library.save(path)
    loaded = OperatingPointLibrary.load(path)
    assert loaded.names == ['tr_cpu_01', 'tr_cpu_02', 'tr_cpu_03']
    assert [p.latency_ms[2] for p in loaded.points] == [12.0, 20.0, 40.0]
    assert [p.quality for p in loaded.points] == [16.0, 18.0, 30.0]
    assert [p.beam for p in loaded.points] == [ONE, FIVE, FIVE]
    assert loaded.points[2].predicted_latency_ms == 42.0
    assert math.isnan(loaded.points[0].predicted_latency_ms)
    assert loaded.points[2].subnet == large.to_dict() and loaded.points[2].latency_ms[1] == 72.0
    assert loaded.points[1].metrics['val_loss'] == pytest.approx(2.82)
    assert loaded.meta == {'source': 'test'}


def test_pareto_plot_is_written_without_a_random_cloud(tmp_path):
    from dyn_dnn_ros.translation.design.plots import pareto_plot
    candidates = [_candidate(SPACE.largest(), FIVE, 40.0, 30.0),
                  _candidate(SPACE.smallest(), FIVE, 20.0, 18.0)]
    library = build_library(candidates, 'cpu', 2, {})
    path = tmp_path / 'pareto_cpu.png'
    pareto_plot(path, [], candidates, library, FIVE, 2, 'cpu')  # a sweep run with --random 0
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_library_write_is_atomic(tmp_path):
    path = tmp_path / 'operating_points_cpu.yaml'
    good = build_library([_candidate(SPACE.smallest(), FIVE, 20.0, 18.0)], 'cpu', 2, {})
    good.save(path)
    before = path.read_bytes()
    broken = build_library([_candidate(SPACE.smallest(), FIVE, 20.0, 18.0)], 'cpu', 2,
                           {'unserialisable': object()})
    with pytest.raises(yaml.YAMLError):
        broken.save(path)
    assert path.read_bytes() == before  # the old library is intact...
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # ...and no partial file left


@pytest.fixture(scope='module')
def tokenizer():
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    return Tokenizer(SPM)


def test_sweep_writes_a_library_and_resumes_without_remeasuring(tmp_path, tokenizer,
                                                                monkeypatch):
    torch.manual_seed(0)
    model = SuperTransformer(SPACE, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id,
                             tokenizer.eos_id, dropout=0.0).eval()
    sources = load_workload(CORPUS, tokenizer, FAST.sentences, FAST.sentence_seed, 64)
    rows = measure_configs(model, dataset_configs(SPACE, 10, seed=0), sources, FAST, (1,),
                           tmp_path / 'latency.csv', progress=False)
    predictor, _ = fit_predictor(rows, SPACE, PredictorConfig(epochs=200, hat_baseline=False))
    pairs = [(tokenizer.encode(s), tokenizer.encode(t)) for s, t in [
        ('Open the file', 'Datei öffnen'), ('Save changes?', 'Änderungen speichern?'),
        ('The printer is out of paper.', 'Der Drucker hat kein Papier mehr.')]]
    run_dir = tmp_path / 'sweep'
    config = SweepConfig(
        run_dir=run_dir, library_path=tmp_path / 'operating_points_cpu.yaml',
        plot_path=tmp_path / 'pareto_cpu.png', measure_threads=(1, 2), rank_threads=1,
        constraint_count=3, fill_searches=2, fill_gap=0.01, fill_iterations=1,
        evolution=EvolutionConfig(population=8, parents=2, mutations=3, crossovers=3,
                                  iterations=2),
        protocol=FAST, extra_beams=(ONE,), bleu_sentences=3, bleu_batch_size=3,
        random_count=5, refine_repeats=FAST.repeats + 1)

    def fitness(weights=1):
        return CachedFitness(ValidationLoss(model, pairs),
                             FitnessCache(run_dir / 'fitness_cache.json', {'test': weights}))

    # Untrained weights score BLEU 0 whatever the sub-network; credit size at the
    # deployment beam so that the front holds several of those points.
    deployment = BeamPolicy('fixed', FAST.beam)
    real_evaluate = Translator.evaluate

    def evaluate(self, sources, references, subnet=None, beam=None, **kwargs):
        result = real_evaluate(self, sources, references, subnet, beam, **kwargs)
        credit = model.count_parameters(subnet) / 1e4 if beam == deployment else 0.0
        return dataclasses.replace(result, bleu=result.bleu + credit)

    monkeypatch.setattr(Translator, 'evaluate', evaluate)
    summary = run_sweep(config, model, tokenizer, predictor, fitness(), sources, CORPUS,
                        progress=False)
    library = OperatingPointLibrary.load(config.library_path)
    described = [(p.name, p.subnet, p.beam, p.latency_ms, p.quality) for p in library.points]
    assert described == [(p.name, p.subnet, p.beam, p.latency_ms, p.quality)
                         for p in summary.library.points]
    assert library.target == 'translation' and library.device == 'cpu'
    assert library.names == [f'tr_cpu_{i:02d}' for i in range(1, len(library.points) + 1)]
    measured = {c.key for c in summary.candidates}
    finalists = {c.key for c in summary.candidates if c.finalist}
    assert [s['fill'] for s in summary.searches][:3] == [False] * 3
    assert summary.constraints_ms == [s['constraint_ms'] for s in summary.searches]
    # Holes in the predicted front of the searches before: one more search each, in the
    # middle of the largest not yet searched.
    pool, searched_gaps = {}, set()
    floor = predictor.predict_one(SPACE.smallest(), 1)  # evolve's: the smallest one's
    for index, s in enumerate(summary.searches):
        constraints_before = summary.constraints_ms[:index]
        while s['fill']:  # holes whose middle the floor raises to their far end are passed
            near, far = front_gaps(predicted_front(pool.values()), config.fill_gap,
                                   searched_gaps)[0]
            searched_gaps.add((near[0].key(), far[0].key()))
            middle = hole_middle(near, far, floor, constraints_before, config.fill_gap)
            if middle is not None:
                assert s['constraint_ms'] == pytest.approx(middle)
                break
        if s['fill']:
            # seeded with the best scored below it, so never worse than those
            assert s['val_loss'] <= min(f[1] for f in pool.values()
                                        if f[2] <= s['constraint_ms'])
        for f in s['archive']:
            cfg = SubnetConfig.from_dict(f['subnet'])
            pool[cfg.key()] = (cfg, f['val_loss'], f['predicted_ms'], s['constraint_ms'])
    left = front_gaps(predicted_front(pool.values()), config.fill_gap, searched_gaps)
    assert sum(s['fill'] for s in summary.searches) == 2 or all(
        hole_middle(near, far, floor, summary.constraints_ms, config.fill_gap) is None
        for near, far in left)
    # Winners and anchors with both beams, finalists with the deployment beam only.
    assert len(summary.candidates) == 2 * len(measured - finalists) + len(finalists)
    assert all(c.beam == deployment for c in summary.candidates if c.finalist)
    assert any(p.beam == deployment for p in library.points)
    # The space's ends are measured too, whether or not a search found them.
    assert {SPACE.smallest().key(), SPACE.largest().key()} <= measured
    searched = {s['key'] for s in summary.searches}
    assert all((c.constraint_ms is None) == (c.key not in searched)
               for c in summary.candidates if not c.finalist)
    # Finalists: what the searches scored on the predicted front (archives), and behind its
    # gaps, winners and anchors left out.
    pool = {}
    for s in summary.searches:
        for f in s['archive']:
            cfg = SubnetConfig.from_dict(f['subnet'])
            pool[cfg.key()] = (cfg, f['val_loss'], f['predicted_ms'], s['constraint_ms'])
    # (Whether this tiny run has any depends on its timings; select_finalists has its own test.)
    assert finalists == set(select_finalists(pool.values(), measured - finalists, None,
                                             config.gap, config.per_gap))
    assert not finalists & searched
    # The library is exactly the measured front of the candidates.
    front = pareto_front(summary.candidates, lambda c: c.latency_ms[1], lambda c: c.bleu)
    assert [(c.key, c.beam) for c in front] == [(p.metrics['key'], p.beam)
                                                 for p in library.points]
    shared = {(row.config.key(), row.threads): row.latency_ms
              for row in read_latency_csv(run_dir / 'random.csv')}
    again = {(row.config.key(), row.threads): row.latency_ms
             for row in read_latency_csv(run_dir / 'refined.csv')}
    assert {key for key, _ in again} <= measured
    for point in library.points:
        assert set(point.latency_ms) == {1, 2} and min(point.latency_ms.values()) > 0
        SPACE.validate(SubnetConfig.from_dict(point.subnet))
        if point.beam == deployment:
            assert point.predicted_latency_ms > 0
            # Every thread count from the shared rounds taken further (the front's close
            # calls, which its own points are), none from a pass of their own.
            assert point.latency_ms == {t: again[(point.metrics['key'], t)] for t in (1, 2)}
    assert all(c.predicted_ms[1] <= c.constraint_ms * 1.0001 for c in summary.candidates
               if c.beam == deployment and c.constraint_ms is not None)
    assert len(summary.cloud) == 5 and 0 <= summary.cloud_dominated <= 5
    # The searched sub-networks were timed again in the random ones' rounds, at the
    # deployment beam, so both sides of the comparison share the machine's moments.
    together = {row.config.key() for row in read_latency_csv(run_dir / 'random.csv')}
    randoms = {c.key() for c in random_subnets(SPACE, 5, config.random_seed)}
    assert together == measured | randoms
    # The searched ones at every thread count, the random ones at the ranking count only.
    assert {(key, t) for key, t in shared if key in measured} == {
        (key, t) for key in measured for t in (1, 2)}
    assert {(key, t) for key, t in shared if key not in measured} == {
        (key, 1) for key in randoms - measured}
    # ... sampled anew in the comparison's own log, not read back from the winners' samples,
    # on the winners' scale (the probe reference copied over).
    records = [json.loads(line) for line in
               (run_dir / 'random.csv.samples.jsonl').read_text().splitlines()[1:]]
    rounds = Counter(r['key'] for r in records if r['kind'] == 'config')
    refined = {key for key, _ in again}
    assert all(rounds[key] == (config.refine_repeats * 2 if key in refined
                               else FAST.repeats * (2 if key in measured else 1))
               for key in together)
    copied = [(r['threads'], r['beam'], r['ms']) for r in records if r['kind'] == 'reference']
    main_log = [json.loads(line) for line in
                (run_dir / 'samples.jsonl').read_text().splitlines()[1:]]
    assert copied and set(copied) <= {(r['threads'], r['beam'], r['ms'])
                                      for r in main_log if r['kind'] == 'reference'}
    assert config.plot_path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert library.meta['workload'] == FAST.workload and library.meta['rank_threads'] == 1

    # Rerun: everything comes from the run folder, nothing is measured or evaluated again.
    timed = []
    monkeypatch.setattr(ld, 'take_sample', lambda *a, **k: timed.append(a))
    again = run_sweep(config, model, tokenizer, predictor, fitness(), sources, CORPUS,
                      progress=False)
    assert timed == [] and again.evaluations == 0
    assert [(p.name, p.subnet, p.beam, p.latency_ms, p.quality)
            for p in again.library.points] == described
    # Other weights: the BLEU scores of the run folder are refused, not reused.
    (run_dir / 'fitness_cache.json').unlink()
    with pytest.raises(ValueError, match='bleu.json: BLEU of'):
        run_sweep(config, model, tokenizer, predictor, fitness(weights=2), sources, CORPUS,
                  progress=False)


def _library_of(subnets):
    candidates = [_candidate(s, FIVE, 10.0 * (i + 1), 10.0 * (i + 1))
                  for i, s in enumerate(subnets)]
    return build_library(candidates, 'cpu', 2, {'space': SPACE.to_dict()})


def test_paths_written_into_shipped_files_are_relative_to_the_checkout(tmp_path):
    shipped = ROOT / 'config' / 'generated' / 'operating_points_translation_cpu.yaml'
    assert portable_path(shipped) == Path('config/generated/operating_points_translation_cpu.yaml')
    assert portable_path(tmp_path / 'library.yaml') == (tmp_path / 'library.yaml').resolve()


def test_design_report_lists_used_and_unused_choices(tmp_path, capsys):
    small = SPACE.smallest()
    mixed = SubnetConfig.from_dict(dict(
        SPACE.smallest().to_dict(), decoder_layers=2, decoder_ffn=[64, 384],
        decoder_self_heads=[1, 1], decoder_cross_heads=[3, 1], decoder_ende=[1, 1]))
    library = _library_of([small, mixed])
    usage = choice_usage(library, SPACE)
    assert usage['encoder_embed_dim']['unused'] == [96]
    assert usage['decoder_layers']['used'] == {1: 1, 2: 1}
    assert usage['decoder_layers']['unused'] == [3]
    assert usage['ffn_dim']['used'] == {64: 6, 384: 1} and usage['ffn_dim']['unused'] == []
    assert usage['heads']['roles']['decoder_cross_heads'] == {1: 2, 3: 1}
    assert usage['ende']['unused'] == [2]
    reduced = reduced_space(SPACE, usage)
    assert reduced.decoder_layers == (1, 2) and reduced.heads == (1, 3)
    assert reduced.encoder_embed_dim == (32,) and reduced.ende == (1,)
    text = format_usage(usage, 2)
    assert 'never: 96' in text and 'never: 3' in text

    path = tmp_path / 'lib.yaml'
    library.save(path)
    out = tmp_path / 'reduced.yaml'
    assert main(['design-report', '--library', str(path), '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'decoder_layers' in printed and 'never: 3' in printed
    assert DesignSpace.from_yaml(out) == reduced
    outside = _library_of([SPACE.largest()])
    outside.points[0].subnet['decoder_ffn'] = [999] * 3
    outside.save(path)
    assert main(['design-report', '--library', str(path), '--out', str(out)]) == 2
    assert 'decoder_ffn[0]=999' in capsys.readouterr().err


@pytest.mark.parametrize('bad', [{'bleu_batch_size': 0}, {'bleu_batch_size': 2.5},
                                 {'bleu_sentences': 0}])
def test_bad_bleu_settings_are_refused_naming_them(bad):
    with pytest.raises(ValueError, match=f'sweep.{next(iter(bad))}'):
        SweepConfig(run_dir=Path('x'), library_path=Path('y'), **bad)
