"""Latency dataset: timing protocol, real measurements of a tiny model, CSV resume, bad input."""

import csv
import json
from pathlib import Path
import random

import pytest
import torch

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.design import latency_dataset as ld
from dyn_dnn_ros.design.latency_dataset import (
    LatencyProtocol,
    LatencyRow,
    SamplingBias,
    check_device,
    dataset_configs,
    fixed_length_search,
    load_sampling_bias,
    measure_configs,
    read_latency_csv,
    sample_config,
    trimmed_stats,
    workload_sources,
)
from dyn_dnn_ros.operating_points import BeamPolicy
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.supernet import SuperTransformer

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / 'models' / 'translation' / 'spm.model'
CORPUS = ROOT / 'data' / 'corpus'
torch.set_num_threads(1)  # tiny models on a shared CPU

# Sizes far apart, so the largest sub-network is slower than the smallest even on a busy CPU.
SPACE = DesignSpace(encoder_embed_dim=(32, 128), decoder_embed_dim=(32, 128), ffn_dim=(64, 512),
                    heads=(1, 4), encoder_layers=(2,), decoder_layers=(1, 4), ende=(1, 2),
                    head_dim=16, max_positions=64)
SOURCES = [[120, 48, 977, 15, 66, 301], [52, 9, 1400, 7]]
FAST = LatencyProtocol(beam=3, sentences=2, warmup=1, repeats=5, mode='fixed', fixed_length=6)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return SuperTransformer(SPACE, 8000, 0, 2, 3, dropout=0.0).eval()


def test_trimming_drops_the_fastest_and_slowest_ten_percent():
    samples = [5.0, 1.0, 2.0, 3.0, 100.0, 4.0, 6.0, 7.0, 8.0, 0.01]
    mean, std, n = trimmed_stats(samples, 0.1)
    kept = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # 0.01 and 100 are gone
    assert n == 8 and mean == pytest.approx(4.5)
    assert std == pytest.approx(torch.tensor(kept).std(correction=0).item())
    assert trimmed_stats(list(range(20)), 0.1)[2] == 16
    assert trimmed_stats([3.0, 4.0], 0.1) == (3.5, 0.5, 2)  # too few to trim
    for bad in ([], [1.0, float('nan')], [1.0, -2.0]):
        with pytest.raises(ValueError, match='samples'):
            trimmed_stats(bad, 0.1)


@pytest.mark.parametrize('field, value', [('beam', 0), ('repeats', 0), ('sentences', -1),
                                          ('trim', 0.5), ('mode', 'greedy')])
def test_protocol_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=f'latency.{field}'):
        LatencyProtocol(**{field: value})


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="'tpu'"):
        check_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            check_device('cuda')


def test_fixed_length_mode_runs_exactly_its_steps_and_eos_mode_stops_by_itself(model):
    model.set_subnet(SPACE.smallest())
    src = encode_sources([SOURCES[0]], 0, 3)
    assert fixed_length_search(model, src, 3, 30) == 30
    timing = ld.time_subnet(model, SPACE.smallest(), [src], LatencyProtocol(beam=2, repeats=2),
                            threads=1)
    # Limit of the real search: 1.5 x (6 tokens + EOS) + 10 target tokens, plus the EOS step.
    assert 1 <= timing.decoder_steps <= int(1.5 * 7 + 10) + 1
    assert timing.latency_ms > 0 and timing.n == 2


def test_largest_subnet_measures_slower_than_smallest():
    # About six times the work apart, so that the order survives a busy shared CPU.
    space = DesignSpace(encoder_embed_dim=(32, 256), decoder_embed_dim=(32, 256),
                        ffn_dim=(64, 1024), heads=(1, 4), encoder_layers=(2,),
                        decoder_layers=(1, 6), ende=(1,), head_dim=32, max_positions=64)
    torch.manual_seed(0)
    wide = SuperTransformer(space, 8000, 0, 2, 3, dropout=0.0).eval()
    sources = ld.source_tensors(wide, SOURCES, 'cpu')
    small, large = [], []
    for _ in range(3):  # interleaved, best of three: other load on the CPU only adds time
        small.append(ld.time_subnet(wide, space.smallest(), sources, FAST, threads=1))
        large.append(ld.time_subnet(wide, space.largest(), sources, FAST, threads=1))
    assert {t.decoder_steps for t in small + large} == {6}
    fastest_small = min(t.latency_ms for t in small)
    fastest_large = min(t.latency_ms for t in large)
    assert fastest_large > 1.5 * fastest_small, (small, large)


def test_csv_resume_skips_configs_already_measured_per_thread_count(model, tmp_path,
                                                                    monkeypatch):
    # Resume logic only: two threads on a CPU other jobs keep busy can take a minute
    # (OpenMP barriers), so timings here are stand-ins; the tests above time for real.
    calls = []

    def counting(model, cfg, sources, protocol, threads, beam=None):
        calls.append((cfg.key(), threads))
        return ld.Timing(10.0 + len(calls), 0.5, protocol.repeats, 6.0)

    monkeypatch.setattr(ld, 'time_subnet', counting)
    path = tmp_path / 'latency.csv'
    configs = dataset_configs(SPACE, 4, seed=3)
    first = measure_configs(model, configs[:3], SOURCES, FAST, (1, 2), path, progress=False)
    assert len(calls) == 6 and len(first) == 6
    assert [(r.key, r.threads) for r in first] == [(c.key(), t) for c in configs[:3]
                                                   for t in (1, 2)]
    calls.clear()
    again = measure_configs(model, configs, SOURCES, FAST, (1, 2), path, progress=False)
    assert calls == [(configs[3].key(), 1), (configs[3].key(), 2)]
    assert again[:6] == first  # old rows come back unchanged, not re-measured
    rows = read_latency_csv(path, SPACE)
    assert len(rows) == 8 and {r.threads for r in rows} == {1, 2}
    assert all(r.workload == FAST.workload and r.beam == BeamPolicy('fixed', 3) for r in rows)
    with open(path, newline='') as stream:
        header = next(csv.reader(stream))
    assert header == list(ld.CSV_COLUMNS)
    # Another beam is another measurement; another workload is another file.
    calls.clear()
    measure_configs(model, configs[:1], SOURCES, FAST, (1,), path, beam=BeamPolicy('fixed', 1),
                    progress=False)
    assert len(calls) == 1
    other = LatencyProtocol(beam=3, sentences=2, repeats=5, mode='fixed', fixed_length=7)
    with pytest.raises(ValueError, match='fixed7'):
        measure_configs(model, configs, SOURCES, other, (1,), path, progress=False)


def _write_rows(path, rows, columns=ld.CSV_COLUMNS):
    with open(path, 'w', newline='') as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def _record(**changes):
    row = LatencyRow(config=SPACE.smallest(), device='cpu', threads=1,
                     beam=BeamPolicy('fixed', 5), workload='eos-k3-seed0', latency_ms=12.5,
                     std_ms=0.4, n=8, decoder_steps=14.0).to_record()
    row.update(changes)
    return row


@pytest.mark.parametrize('changes, message', [
    ({'latency_ms': '-3.0'}, 'latency_ms'),
    ({'latency_ms': 'nan'}, 'latency_ms'),
    ({'std_ms': '-1'}, 'std_ms'),
    ({'threads': '0'}, 'threads'),
    ({'decoder_steps': 'inf'}, 'decoder_steps'),
    ({'device': 'tpu'}, "'tpu'"),
    ({'config': '{"encoder_embed_dim": 32'}, 'bad config'),
    ({'key': 'e32x2-d32x1-00000000'}, 'does not match'),
])
def test_bad_csv_rows_are_refused_naming_the_value(tmp_path, changes, message):
    path = tmp_path / 'bad.csv'
    _write_rows(path, [_record(), _record(**changes)])
    with pytest.raises(ValueError, match=message) as err:
        read_latency_csv(path, SPACE)
    assert 'bad.csv:3' in str(err.value)


def test_empty_malformed_and_out_of_space_csvs_are_refused(tmp_path):
    empty = tmp_path / 'empty.csv'
    empty.write_text('')
    with pytest.raises(ValueError, match='empty file'):
        read_latency_csv(empty)
    header_only = tmp_path / 'header.csv'
    _write_rows(header_only, [])
    with pytest.raises(ValueError, match='no measurements'):
        read_latency_csv(header_only)
    assert read_latency_csv(header_only, allow_empty=True) == []
    wrong = tmp_path / 'wrong.csv'
    _write_rows(wrong, [_record()], columns=ld.CSV_COLUMNS[:-2])
    with pytest.raises(ValueError, match="missing column.*decoder_steps"):
        read_latency_csv(wrong)
    short = tmp_path / 'short.csv'
    short.write_text(','.join(ld.CSV_COLUMNS) + '\nabc,def\n')
    with pytest.raises(ValueError, match='malformed row'):
        read_latency_csv(short)
    outside = dict(SPACE.smallest().to_dict(), decoder_ffn=[96])
    cfg = SubnetConfig.from_dict(outside)
    path = tmp_path / 'outside.csv'
    _write_rows(path, [_record(config=json.dumps(outside), key=cfg.key())])
    with pytest.raises(ValueError, match=r'outside the design space.*decoder_ffn\[0\]=96'):
        read_latency_csv(path, SPACE)
    with pytest.raises(ValueError, match='does not exist|cannot read'):
        read_latency_csv(tmp_path / 'missing.csv')


def test_dataset_configs_are_anchored_distinct_and_seeded():
    configs = dataset_configs(SPACE, 12, seed=5)
    assert configs[0] == SPACE.smallest() and configs[1] == SPACE.largest()
    assert len({c.key() for c in configs}) == 12
    assert configs == dataset_configs(SPACE, 12, seed=5)
    assert configs != dataset_configs(SPACE, 12, seed=6)
    with pytest.raises(ValueError, match='samples'):
        dataset_configs(SPACE, 1, seed=5)


def test_sampling_bias_per_device(tmp_path):
    path = tmp_path / 'bias.yaml'
    path.write_text('cpu: {decoder_layers: {1: 0, 4: 1}, ffn_dim: {512: 0}}\n'
                    'cuda: {decoder_layers: {1: 1, 4: 0}}\n')
    cpu = load_sampling_bias(path, 'cpu', SPACE)
    cuda = load_sampling_bias(path, 'cuda', SPACE)
    rng = random.Random(0)
    deep = [sample_config(SPACE, rng, cpu) for _ in range(50)]
    assert all(c.decoder_layers == 4 and 512 not in c.encoder_ffn + c.decoder_ffn for c in deep)
    assert all(SPACE.validate(c) for c in deep)
    assert {sample_config(SPACE, rng, cuda).decoder_layers for _ in range(30)} == {1}
    for text, message in [('cpu: {layers: {1: 2}}', 'unknown dimension'),
                          ('cpu: {ffn_dim: {96: 2}}', 'choice 96'),
                          ('cpu: {heads: {1: -1}}', r'heads\[1\]'),
                          ('cpu: {heads: {1: 0, 4: 0}}', 'every choice'),
                          ('gpu: {}', 'sections')]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_sampling_bias(path, 'cpu', SPACE)
    with pytest.raises(ValueError, match='weight must be'):
        SamplingBias({'heads': {1: float('nan')}}).check(SPACE)


def test_workload_is_a_seeded_set_of_real_validation_sentences():
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    tokenizer = Tokenizer(SPM)
    first = workload_sources(CORPUS, tokenizer, 3, 0, 64)
    assert first == workload_sources(CORPUS, tokenizer, 3, 0, 64)
    assert first != workload_sources(CORPUS, tokenizer, 3, 1, 64)
    assert all(0 < len(ids) < 64 for ids in first)
    valid = {tuple(tokenizer.encode(line))
             for line in (CORPUS / 'valid.en').read_text(encoding='utf-8').splitlines()}
    assert all(tuple(ids) in valid for ids in first)


def test_command_reports_bad_device_and_bad_repeats(capsys):
    assert main(['latency', '--device', 'tpu']) == 2
    assert "'tpu'" in capsys.readouterr().err
    assert main(['latency', '--repeats', '0']) == 2
    assert 'latency.repeats' in capsys.readouterr().err
