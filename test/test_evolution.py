"""Evolutionary search: population sizes, valid offspring, cached fitness, constraints, resume."""

import dataclasses
from dataclasses import asdict
import json
from pathlib import Path
import random

import pytest
import torch

from dyn_dnn_ros.translation.design.evolution import (
    EvolutionConfig,
    _Search,
    config_to_gene,
    evolve,
    gene_choices,
    gene_to_config,
)
from dyn_dnn_ros.translation.design.fitness import CachedFitness, FitnessCache, ValidationLoss
from dyn_dnn_ros.translation.design.pareto import dominated
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer, count_parameters

ROOT = Path(__file__).resolve().parents[1]
SPACE = DesignSpace.from_yaml(ROOT / 'config' / 'design_space.yaml')
SMALL = EvolutionConfig(population=20, parents=4, mutations=8, crossovers=8, iterations=4,
                        seed=3)
torch.set_num_threads(1)


def latency(cfg):
    """A made-up monotone latency (ms): decoder work per step dominates, as on a CPU."""
    enc = sum(cfg.encoder_embed_dim * (f + 256 * h) for f, h in zip(cfg.encoder_ffn,
                                                                   cfg.encoder_heads,
                                                                   strict=True))
    dec = sum(cfg.decoder_embed_dim * (f + 128 * (hs + hc))
              for f, hs, hc in zip(cfg.decoder_ffn, cfg.decoder_self_heads,
                                   cfg.decoder_cross_heads, strict=True))
    return 5 + enc / 2e5 + 15 * dec / 2e5


def loss(cfg):
    """Bigger is better, with diminishing returns; ties broken by the config itself."""
    params = count_parameters(cfg, 8000, 64)
    return 10 / params ** 0.25 + 1e-3 * sum(cfg.decoder_ende)


class Counting:
    def __init__(self):
        self.keys, self.configs = [], []

    def __call__(self, cfg):
        self.keys.append(cfg.key())
        self.configs.append(cfg)
        return loss(cfg)


def test_genes_round_trip_and_cover_inactive_layers():
    rng = random.Random(0)
    choices = gene_choices(SPACE)
    assert len(choices) == 4 + 6 * 3 + 6 * 3  # scalars, encoder x2 + decoder x4 per layer
    for _ in range(50):
        cfg = SPACE.sample(rng)
        gene = config_to_gene(SPACE, cfg, rng.choice)
        assert len(gene) == len(choices) and gene_to_config(SPACE, gene) == cfg


def test_population_sizes_and_offspring_are_valid_and_feasible():
    constraint = latency(SPACE.largest()) * 0.6
    search = _Search(SPACE, loss, latency, constraint, SMALL)
    population = search.initial_population()
    configs = [gene_to_config(SPACE, g) for g in population]
    assert len(population) == 20 and len({c.key() for c in configs}) == 20
    assert all(latency(c) <= constraint for c in configs)
    parents = [gene for *_, gene in search.ranked(population)[:SMALL.parents]]
    children = search.breed(parents)
    assert len(children) == SMALL.parents + SMALL.mutations + SMALL.crossovers == 20
    assert children[:4] == parents
    for gene in children:
        cfg = gene_to_config(SPACE, gene)
        assert cfg is not None and SPACE.validate(cfg) and latency(cfg) <= constraint
    # Mutation changes genes at about mutation_prob; crossover takes every gene from a parent.
    rng_parent = parents[0]
    changed = [sum(a != b for a, b in zip(search.mutate(rng_parent), rng_parent,
                                              strict=True))
               for _ in range(30)]
    assert 0 < sum(changed) / 30 < len(rng_parent)
    a, b = parents[0], parents[1]
    child = search.crossover(a, b)
    assert all(x in (p, q) for x, p, q in zip(child, a, b, strict=True))


def test_search_respects_the_constraint_and_finds_better_than_random(tmp_path):
    constraint = latency(SPACE.largest()) * 0.5
    fitness = CachedFitness(Counting())
    result = evolve(SPACE, fitness, latency, constraint, SMALL, tmp_path / 's.json',
                    progress=False)
    assert result.latency_ms == latency(result.best) <= constraint
    assert all(h['best_latency_ms'] <= constraint for h in result.history)
    assert [h['best_loss'] for h in result.history] == sorted(
        [h['best_loss'] for h in result.history], reverse=True)  # elitism: never worse
    rng = random.Random(1)
    feasible = [c for c in (SPACE.sample(rng) for _ in range(400)) if latency(c) <= constraint]
    assert result.loss <= min(loss(c) for c in feasible)
    # Finalists: the final parents, distinct, best first, the winner among them.
    assert result.finalists[0] == (result.best, result.loss, result.latency_ms)
    assert 1 < len(result.finalists) <= SMALL.parents
    assert len({cfg.key() for cfg, _, _ in result.finalists}) == len(result.finalists)
    assert [f for _, f, _ in result.finalists] == sorted(f for _, f, _ in result.finalists)
    assert all(ms == latency(cfg) <= constraint for cfg, _, ms in result.finalists)
    # Archive: the predicted front of every config scored, fastest first, ending at the winner.
    archive = [(ms, f) for _, f, ms in result.archive]
    assert archive == sorted(archive) and len(archive) > 1
    # slower only when better
    assert all(a[1] > b[1] for a, b in zip(archive[:-1], archive[1:], strict=True))
    assert result.archive[-1] == (result.best, result.loss, result.latency_ms)
    assert all(ms == latency(cfg) <= constraint for cfg, _, ms in result.archive)
    for cfg in fitness.evaluate.configs:  # every config the search scored
        assert dominated((latency(cfg), loss(cfg)), archive)
    state = json.loads((tmp_path / 's.json').read_text())
    assert state['iteration'] == SMALL.iterations and len(state['history']) == SMALL.iterations
    assert all(latency(gene_to_config(SPACE, g)) <= constraint for g in state['population'])


def test_seeds_start_the_population_and_those_over_the_constraint_are_left_out():
    constraint = latency(SPACE.largest()) * 0.5
    rng = random.Random(5)
    drawn = [SPACE.sample(rng) for _ in range(60)]
    under = [c for c in drawn if latency(c) <= constraint][:3]
    over = [c for c in drawn if latency(c) > constraint][:2]
    assert len(under) == 3 and len(over) == 2
    seeds = [over[0], under[0], under[1], under[0], over[1], under[2]]
    population = _Search(SPACE, loss, latency, constraint, SMALL).initial_population(seeds)
    configs = [gene_to_config(SPACE, g) for g in population]
    assert [c.key() for c in configs[:3]] == [c.key() for c in under]  # once each, in order
    assert len(population) == SMALL.population
    assert all(latency(c) <= constraint for c in configs)
    # A search seeded with a good sub-network never ends worse than it.
    best = min(under, key=loss)
    result = evolve(SPACE, CachedFitness(Counting()), latency, constraint,
                    dataclasses.replace(SMALL, iterations=1), progress=False, seeds=[best])
    assert result.loss <= loss(best)


def test_archive_slack_keeps_a_band_behind_the_front(tmp_path):
    constraint = latency(SPACE.largest()) * 0.5
    exact = evolve(SPACE, CachedFitness(Counting()), latency, constraint, SMALL,
                   progress=False)
    fitness = CachedFitness(Counting())
    slack = dataclasses.replace(SMALL, archive_slack=0.1)
    banded = evolve(SPACE, fitness, latency, constraint, slack, progress=False)
    assert banded.best == exact.best  # the band changes what is kept, not the search
    kept = {cfg.key() for cfg, _, _ in banded.archive}
    assert {cfg.key() for cfg, _, _ in exact.archive} < kept  # the front and more
    assert len(kept) == len(banded.archive)  # each config once, though offered every iteration
    assert [ms for *_, ms in banded.archive] == sorted(ms for *_, ms in banded.archive)
    for cfg in fitness.evaluate.configs:  # in the band unless a config 1.1x faster is as good
        beaten = any(m * 1.1 <= latency(cfg) and f <= loss(cfg) for _, f, m in banded.archive)
        assert (cfg.key() in kept) != beaten


def test_cache_prevents_re_evaluation(tmp_path):
    counting = Counting()
    cache = FitnessCache(tmp_path / 'cache.json', {'model': 'synthetic'})
    fitness = CachedFitness(counting, cache)
    constraint = latency(SPACE.largest()) * 0.7
    evolve(SPACE, fitness, latency, constraint, SMALL, progress=False)
    assert len(counting.keys) == len(set(counting.keys)) == fitness.calls == len(cache)
    # Parents survive every iteration but are evaluated once: far fewer calls than HAT's.
    assert fitness.calls < SMALL.population + (SMALL.iterations - 1) * (
        SMALL.mutations + SMALL.crossovers)
    # A second search under another constraint reuses the saved cache.
    again = CachedFitness(counting, FitnessCache(tmp_path / 'cache.json', {'model': 'synthetic'}))
    before = len(counting.keys)
    evolve(SPACE, again, latency, constraint, SMALL, progress=False)
    assert again.calls == 0 and len(counting.keys) == before
    with pytest.raises(ValueError, match='another cache file'):
        FitnessCache(tmp_path / 'cache.json', {'model': 'other'})


def test_infeasible_constraint_errors_immediately():
    calls = {'latency': 0, 'fitness': 0}

    def counted_latency(cfg):
        calls['latency'] += 1
        return latency(cfg)

    def counted_fitness(cfg):
        calls['fitness'] += 1
        return loss(cfg)

    floor = latency(SPACE.smallest())
    with pytest.raises(ValueError, match=r'infeasible.*smallest sub-network'):
        evolve(SPACE, counted_fitness, counted_latency, floor * 0.9, SMALL, progress=False)
    assert calls == {'latency': 1, 'fitness': 0}
    for bad in (0, -5, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='constraint'):
            evolve(SPACE, loss, latency, bad, SMALL, progress=False)
    # Exactly the smallest's latency is feasible: only the smallest fits.
    result = evolve(SPACE, loss, latency, floor, SMALL, progress=False)
    assert result.best == SPACE.smallest()


def test_interrupted_search_resumes_to_the_same_result(tmp_path):
    constraint = latency(SPACE.largest()) * 0.6
    whole = evolve(SPACE, CachedFitness(loss), latency, constraint, SMALL, progress=False)

    class Interrupt(Exception):
        pass

    budget = {'left': 45}

    def flaky(cfg):
        budget['left'] -= 1
        if budget['left'] < 0:
            raise Interrupt
        return loss(cfg)

    state = tmp_path / 'state.json'
    cache = FitnessCache(tmp_path / 'cache.json')
    with pytest.raises(Interrupt):
        evolve(SPACE, CachedFitness(flaky, cache), latency, constraint, SMALL, state,
               progress=False)
    saved = json.loads(state.read_text())
    assert 1 <= saved['iteration'] < SMALL.iterations
    resumed = evolve(SPACE, CachedFitness(loss, FitnessCache(tmp_path / 'cache.json')), latency,
                     constraint, SMALL, state, progress=False)
    assert resumed.best == whole.best and resumed.history == whole.history
    # The archive of the iterations before the interruption came back with the state.
    assert saved['archive'] and resumed.archive == whole.archive
    with pytest.raises(ValueError, match='constraint_ms'):
        evolve(SPACE, loss, latency, constraint * 0.9, SMALL, state, progress=False)


@pytest.mark.parametrize('changes, field', [
    ({'parents': 5}, 'must equal'), ({'mutation_prob': 1.5}, 'mutation_prob'),
    ({'archive_slack': -0.1}, 'archive_slack'), ({'archive_slack': 1.0}, 'archive_slack'),
    ({'iterations': 0}, 'iterations'), ({'crossovers': -1}, 'crossovers')])
def test_bad_evolution_config_is_refused(changes, field):
    with pytest.raises(ValueError, match=field):
        EvolutionConfig(**{**asdict(SMALL), **changes})


def test_hat_defaults():
    d = EvolutionConfig()
    assert (d.population, d.parents, d.mutations, d.crossovers, d.mutation_prob,
            d.iterations) == (125, 25, 50, 50, 0.3, 30)


def test_validation_loss_of_a_real_model_is_deterministic_and_cached():
    space = DesignSpace(encoder_embed_dim=(32, 48), decoder_embed_dim=(32, 48), ffn_dim=(64,),
                        heads=(1, 2), encoder_layers=(2,), decoder_layers=(1, 2), ende=(1, 2),
                        head_dim=16, max_positions=64)
    torch.manual_seed(0)
    model = SuperTransformer(space, 8000, 0, 2, 3, dropout=0.1).train()
    pairs = [([40, 900, 17, 5], [33, 81, 7]), ([12, 8], [5, 600, 2000, 9]),
             ([700, 701, 702], [703])]
    evaluate = ValidationLoss(model, pairs)
    assert evaluate.tokens == 3 + 1 + 4 + 1 + 1 + 1  # targets + EOS
    fitness = CachedFitness(evaluate)
    small, large = fitness(space.smallest()), fitness(space.largest())
    assert 0 < small and 0 < large and small != large
    assert abs(small - 8.99) < 1.0  # untrained: about log(8000) nats per token
    assert fitness(space.smallest()) == small and fitness.calls == 2
    assert evaluate(space.smallest()) == small  # no dropout at evaluation: deterministic
    assert model.training  # the model's mode is restored


def test_search_command_writes_a_subnet_translate_can_use(tmp_path, capsys):
    from dyn_dnn_ros.cli import main
    from dyn_dnn_ros.translation.beam_policy import BeamPolicy
    from dyn_dnn_ros.translation.checkpoint import save_model
    from dyn_dnn_ros.translation.design.config_sampling import dataset_configs
    from dyn_dnn_ros.translation.design.latency_csv import LatencyRow
    from dyn_dnn_ros.translation.design.predictor import PredictorConfig, fit_predictor
    from dyn_dnn_ros.translation.translator import subnet_from_spec
    space = DesignSpace(encoder_embed_dim=(32, 48), decoder_embed_dim=(32, 48), ffn_dim=(64, 96),
                        heads=(1, 2), encoder_layers=(2,), decoder_layers=(1, 2), ende=(1, 2),
                        head_dim=16, max_positions=64)
    torch.manual_seed(0)
    model_path = tmp_path / 'tiny.safetensors'
    save_model(model_path, SuperTransformer(space, 8000, 0, 2, 3, dropout=0.0))
    rows = [LatencyRow(config=c, device='cpu', threads=1, beam=BeamPolicy('fixed', 5),
                       workload='eos-k3-seed0', latency_ms=latency(c), std_ms=0.1, n=8,
                       decoder_steps=12.0) for c in dataset_configs(space, 20, seed=0)]
    predictor, _ = fit_predictor(rows, space, PredictorConfig(kinds=('additive',),
                                                              hat_baseline=False))
    predictor_path = tmp_path / 'predictor.safetensors'
    predictor.save(predictor_path)
    floor = predictor.predict_one(space.smallest(), 1)
    common = ['--model', str(model_path), '--predictor', str(predictor_path), '--run-dir',
              str(tmp_path), '--population', '6', '--parents', '2', '--mutations', '2',
              '--crossovers', '2', '--iterations', '2', '--fitness-sentences', '8',
              '--torch-threads', '1']
    out = tmp_path / 'best.yaml'
    assert main(['search', '--constraint', f'{floor * 1.5:.3f}', '--out', str(out)]
                + common) == 0
    assert 'best under' in capsys.readouterr().out
    best = subnet_from_spec(out, space)
    assert predictor.predict_one(best, 1) <= floor * 1.5
    assert main(['search', '--constraint', f'{floor * 0.5:.3f}'] + common) == 2
    assert 'infeasible' in capsys.readouterr().err


def test_the_fitness_cache_is_tied_to_the_validation_pairs_not_only_the_model(tmp_path):
    """Another corpus with the same model file is another fitness: its cache is refused."""
    from training_fixtures import write_tiny_corpus
    from translation_fixtures import SPM, write_tiny_model

    from dyn_dnn_ros.translation.checkpoint import load_model
    from dyn_dnn_ros.translation.design.fitness import make_fitness
    from dyn_dnn_ros.translation.tokenizer import Tokenizer

    model_path, _ = write_tiny_model(tmp_path)
    model = load_model(model_path)
    corpus, _ = write_tiny_corpus(tmp_path)
    tokenizer = Tokenizer(SPM)
    cache = tmp_path / 'fitness.json'
    fitness = make_fitness(model, tokenizer, corpus, 4, 0, cache, model_path)
    fitness(model.space.smallest())
    fitness.save()
    valid = corpus / 'valid.en'
    valid.write_text(valid.read_text().replace('Open the file', 'Open the door'))
    with pytest.raises(ValueError, match='losses were computed with'):
        make_fitness(model, tokenizer, corpus, 4, 0, cache, model_path)
