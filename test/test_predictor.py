"""Latency predictor: recovers a known per-layer cost formula, fits real timings, saves safely."""

from dataclasses import replace
from pathlib import Path
import random

import numpy as np
import pytest
import torch

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.config_sampling import dataset_configs
from dyn_dnn_ros.translation.design.features import (
    COST_TERMS,
    cost_terms,
    hat_features,
    layer_features,
)
from dyn_dnn_ros.translation.design.latency_csv import LatencyRow
from dyn_dnn_ros.translation.design.latency_dataset import measure_configs
from dyn_dnn_ros.translation.design.predictor import (
    LatencyPredictor,
    PredictorConfig,
    fit_predictor,
)
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
from dyn_dnn_ros.translation.design.workload import Workload
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer

ROOT = Path(__file__).resolve().parents[1]
SPACE = DesignSpace.from_yaml(ROOT / 'config' / 'design_space.yaml')
QUICK = PredictorConfig(epochs=400, hat_hidden=64)  # tests: fewer steps, smaller HAT MLP
torch.set_num_threads(1)


def true_latency(cfg, steps, threads):
    """A per-layer cost model written independently of ``features.cost_terms``."""
    speedup = 1.0 if threads == 1 else 1.7
    encoder = sum(0.15 + 3e-6 * cfg.encoder_embed_dim * (f + 4 * h * 64)
                  for f, h in zip(cfg.encoder_ffn, cfg.encoder_heads, strict=True))
    per_step = 0.3 + 2e-5 * cfg.decoder_embed_dim * 125 + sum(
        0.04 + 2e-6 * cfg.decoder_embed_dim * (f + 2 * (hs + hc) * 64)
        for f, hs, hc in zip(cfg.decoder_ffn, cfg.decoder_self_heads, cfg.decoder_cross_heads,
                             strict=True))
    return (1.0 + encoder + steps * per_step) / speedup


def synthetic_rows(count, seed, noise=0.01):
    rng = random.Random(seed)
    rows = []
    for cfg in dataset_configs(SPACE, count, seed):
        steps = round(rng.uniform(8, 20), 2)
        for threads in (1, 2):
            latency = true_latency(cfg, steps, threads) * (1 + rng.gauss(0, noise))
            rows.append(LatencyRow(config=cfg, device='cpu', threads=threads,
                                   beam=BeamPolicy('fixed', 5), workload='eos-k3-seed0',
                                   latency_ms=latency, std_ms=0.1, n=8, decoder_steps=steps))
    return rows


def test_features_describe_every_layer():
    cfg = SPACE.sample(random.Random(1))
    terms = cost_terms(cfg, SPACE, 10)
    assert terms.shape == (len(COST_TERMS),) and (terms >= 0).all()
    assert terms[COST_TERMS.index('enc_ffn')] == sum(cfg.encoder_embed_dim * f
                                                     for f in cfg.encoder_ffn)
    assert terms[COST_TERMS.index('step_layers')] == 10 * cfg.decoder_layers
    per_layer = layer_features(cfg, SPACE)
    assert per_layer.shape == (6 * 4 + 6 * 6,)
    absent = per_layer[24 + 6 * cfg.decoder_layers:]  # decoder layers beyond the active ones
    assert (absent == 0).all()
    hat = hat_features(SPACE.largest(), SPACE)
    assert hat.shape == (10,) and np.allclose(hat[:-1], 1.0)  # ende: 3 of max 3 too
    assert hat[-1] == 1.0


def test_additive_model_recovers_a_known_per_layer_cost_formula():
    rows = synthetic_rows(150, seed=0)
    predictor, report = fit_predictor(rows, SPACE, QUICK)
    assert report.train_configs == 120 and report.test_configs == 30
    for threads in (1, 2):
        assert report.test[threads]['additive']['mape'] < 2.0, report.test
        assert set(report.test[threads]) == {'additive', 'mlp', 'hat'}
        assert all(np.isfinite(r['mape']) for r in report.test[threads].values())
        chosen = report.test[threads][report.chosen[threads]]
        assert chosen['mape'] < 3.0
    # Fresh configs the fit never saw, predicted with their true steps.
    fresh = dataset_configs(SPACE, 40, seed=99)[2:]
    steps = np.linspace(8, 20, len(fresh))
    truth = np.array([true_latency(c, s, 1) for c, s in zip(fresh, steps, strict=True)])
    predicted = predictor.predict(fresh, 1, steps)
    assert np.abs(predicted / truth - 1).mean() < 0.02


def test_steps_model_recovers_steps_that_follow_the_decoder_depth():
    rows = [replace(r, decoder_steps=10.0 + 2 * r.config.decoder_layers)
            for r in synthetic_rows(30, seed=1)]
    predictor, report = fit_predictor(rows, SPACE, replace(QUICK, kinds=('additive',),
                                                           hat_baseline=False))
    assert report.steps['mape'] < 1e-6
    configs = [SPACE.smallest(), SPACE.largest()]
    assert np.allclose(predictor.predict_steps(configs), [12.0, 22.0])
    # Without steps, the prediction uses the predicted ones.
    assert np.allclose(predictor.predict(configs, 1), predictor.predict(configs, 1, [12, 22]))


def test_predictor_on_a_real_tiny_measured_dataset_round_trips(tmp_path):
    space = DesignSpace(encoder_embed_dim=(32, 96), decoder_embed_dim=(32, 96),
                        ffn_dim=(64, 384), heads=(1, 3), encoder_layers=(2,),
                        decoder_layers=(1, 2, 3), ende=(1, 2), head_dim=16, max_positions=64)
    torch.manual_seed(0)
    model = SuperTransformer(space, 8000, 0, 2, 3, dropout=0.0).eval()
    protocol = LatencyProtocol(beam=2, sentences=1, warmup=1, repeats=3, mode='fixed',
                               fixed_length=5)
    rows = measure_configs(model, dataset_configs(space, 12, seed=0),
                           Workload(((40, 900, 17, 5),), (5,)), protocol, (1,),
                           tmp_path / 'tiny.csv', progress=False)
    predictor, report = fit_predictor(rows, space, QUICK)
    errors = report.test[1]
    assert report.chosen[1] in ('additive', 'mlp')
    assert all(np.isfinite(e['mape']) and e['n'] == report.test_configs for e in errors.values())
    small, large = predictor.predict([space.smallest(), space.largest()], 1)
    assert 0 < small < large
    path = tmp_path / 'tiny.predictor.safetensors'
    predictor.save(path)
    assert path.read_bytes()[8:9] == b'{'  # a safetensors header, not a pickle
    loaded = LatencyPredictor.load(path)
    configs = dataset_configs(space, 8, seed=4)
    assert np.allclose(loaded.predict(configs, 1), predictor.predict(configs, 1))
    assert loaded.meta['workload'] == protocol.workload and loaded.threads == [1]
    with pytest.raises(ValueError, match=r'fitted for \[1\]'):
        loaded.predict(configs, 2)


def test_bad_inputs_are_refused(tmp_path):
    rows = synthetic_rows(8, seed=2)
    mixed = rows[:-1] + [replace(rows[-1], beam=BeamPolicy('fixed', 1))]
    with pytest.raises(ValueError, match='mix'):
        fit_predictor(mixed, SPACE, QUICK)
    with pytest.raises(ValueError, match='at least 5'):
        fit_predictor(synthetic_rows(4, seed=2), SPACE, QUICK)
    with pytest.raises(ValueError, match='no rows'):
        fit_predictor([], SPACE, QUICK)
    with pytest.raises(ValueError, match='predictor.test_fraction'):
        PredictorConfig(test_fraction=0.7)
    with pytest.raises(ValueError, match='predictor.kinds'):
        PredictorConfig(kinds=('forest',))
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'not a predictor')
    with pytest.raises(ValueError, match='junk.safetensors'):
        LatencyPredictor.load(junk)
    with pytest.raises(ValueError, match='does not exist'):
        LatencyPredictor.load(tmp_path / 'missing.safetensors')


def test_command_fits_and_prints_both_predictors_and_the_hat_baseline(tmp_path, capsys):
    import csv

    from dyn_dnn_ros.translation.design.latency_csv import CSV_COLUMNS
    data = tmp_path / 'latency.csv'
    with open(data, 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(r.to_record() for r in synthetic_rows(40, seed=3))
    out = tmp_path / 'p.safetensors'
    assert main(['predictor', '--data', str(data), '--out', str(out), '--epochs', '300',
                 '--threads', '1']) == 0
    printed = capsys.readouterr().out
    assert 'HAT baseline' in printed and 'additive' in printed and out.is_file()
    assert LatencyPredictor.load(out).threads == [1, 2]
    data.write_text('')
    assert main(['predictor', '--data', str(data), '--out', str(out)]) == 2
    assert 'empty file' in capsys.readouterr().err
