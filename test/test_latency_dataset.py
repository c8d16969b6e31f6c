"""Latency dataset: timing protocol, real measurements of a tiny model, CSV resume, bad input."""

import csv
import json
import math
from pathlib import Path
import random

import pytest
import torch

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.timing import trimmed_stats
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design import latency_dataset as ld
from dyn_dnn_ros.translation.design.config_sampling import (
    SamplingBias,
    dataset_configs,
    load_sampling_bias,
    sample_config,
)
from dyn_dnn_ros.translation.design.devices import check_device
from dyn_dnn_ros.translation.design.latency_csv import CSV_COLUMNS, LatencyRow, read_latency_csv
from dyn_dnn_ros.translation.design.latency_dataset import measure_configs, measure_pairs
from dyn_dnn_ros.translation.design.measured_decoding import fixed_length_search
from dyn_dnn_ros.translation.design.sample_log import SampleLog
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol, Sample
from dyn_dnn_ros.translation.design.workload import Workload, load_workload, source_tensors
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
SOURCES = Workload(((120, 48, 977, 15, 66, 301), (52, 9, 1400, 7)), (5, 8))
FAST = LatencyProtocol(beam=3, sentences=2, warmup=1, repeats=5, mode='fixed', fixed_length=6,
                       reference_every=0)


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
                                          ('trim', 0.5), ('mode', 'greedy'),
                                          ('reference_every', -1)])
def test_protocol_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=f'latency.{field}'):
        LatencyProtocol(**{field: value})


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="'tpu'"):
        check_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            check_device('cuda')


def test_each_mode_decodes_its_lengths(model):
    model.set_subnet(SPACE.smallest())
    src = encode_sources([SOURCES.sources[0]], 0, 3)
    assert fixed_length_search(model, src, 3, 30) == 30
    sample = ld.take_sample(model, SPACE.smallest(), [(src, 5)], LatencyProtocol(mode='eos'),
                            1, BeamPolicy('fixed', 2))
    # Limit of the real search: 1.5 x (6 tokens + EOS) + 10 target tokens, plus the EOS step.
    assert 1 <= sample.steps <= int(1.5 * 7 + 10) + 1 and sample.ms > 0
    # Reference lengths: every sub-network emits exactly the reference's tokens, then EOS.
    for cfg in (SPACE.smallest(), SPACE.largest()):
        sample = ld.take_sample(model, cfg, source_tensors(model, SOURCES, 'cpu'),
                                LatencyProtocol(beam=3), 1, BeamPolicy('fixed', 3))
        assert sample.steps == (5 + 1 + 8 + 1) / 2 and sample.ms > 0


def test_largest_subnet_measures_slower_than_smallest():
    # About six times the work apart, so that the order survives a busy shared CPU.
    space = DesignSpace(encoder_embed_dim=(32, 256), decoder_embed_dim=(32, 256),
                        ffn_dim=(64, 1024), heads=(1, 4), encoder_layers=(2,),
                        decoder_layers=(1, 6), ende=(1,), head_dim=32, max_positions=64)
    torch.manual_seed(0)
    wide = SuperTransformer(space, 8000, 0, 2, 3, dropout=0.0).eval()
    sources = source_tensors(wide, SOURCES, 'cpu')
    beam = BeamPolicy('fixed', FAST.beam)
    small, large = [], []
    for _ in range(8):  # interleaved, fastest of eight: other load on the CPU only adds time
        small.append(ld.take_sample(wide, space.smallest(), sources, FAST, 1, beam))
        large.append(ld.take_sample(wide, space.largest(), sources, FAST, 1, beam))
    assert {s.steps for s in small + large} == {6}  # the fixed length, EOS banned
    fastest_small = min(s.ms for s in small)
    fastest_large = min(s.ms for s in large)
    assert fastest_large > 1.5 * fastest_small, (small, large)


def _count_samples(monkeypatch) -> list:
    """Stand-in samples: the (config key, thread count) of every one taken, in order."""
    calls = []

    def counting(model, cfg, sources, protocol, threads, beam):
        calls.append((cfg.key(), threads))
        return Sample(10.0 + len(calls), 6.0)

    monkeypatch.setattr(ld, 'take_sample', counting)
    return calls


def test_csv_resume_skips_configs_already_measured_per_thread_count(model, tmp_path,
                                                                    monkeypatch):
    # Resume logic only: two threads on a CPU other jobs keep busy can take a minute
    # (OpenMP barriers), so timings here are stand-ins; the tests above time for real.
    calls = _count_samples(monkeypatch)
    path = tmp_path / 'latency.csv'
    configs = dataset_configs(SPACE, 4, seed=3)
    first = measure_configs(model, configs[:3], SOURCES, FAST, (1, 2), path, progress=False)
    assert len(calls) == 6 * FAST.repeats and len(first) == 6
    assert sorted(calls[:6]) == sorted(calls[6:12])  # one sample of each per round
    assert [(r.key, r.threads) for r in first] == [(c.key(), t) for c in configs[:3]
                                                   for t in (1, 2)]
    calls.clear()
    again = measure_configs(model, configs, SOURCES, FAST, (1, 2), path, progress=False)
    assert sorted(set(calls)) == [(configs[3].key(), 1), (configs[3].key(), 2)]
    assert again[:6] == first  # old rows come back unchanged, not re-measured
    rows = read_latency_csv(path, SPACE)
    assert len(rows) == 8 and {r.threads for r in rows} == {1, 2}
    assert all(r.workload == FAST.workload and r.beam == BeamPolicy('fixed', 3) for r in rows)
    with open(path, newline='') as stream:
        header = next(csv.reader(stream))
    assert header == list(CSV_COLUMNS)
    # Another beam is another measurement; another workload is another file.
    calls.clear()
    measure_configs(model, configs[:1], SOURCES, FAST, (1,), path, beam=BeamPolicy('fixed', 1),
                    progress=False)
    assert len(calls) == FAST.repeats
    other = LatencyProtocol(beam=3, sentences=2, repeats=5, mode='fixed', fixed_length=7,
                            reference_every=0)
    with pytest.raises(ValueError, match='fixed7'):
        measure_configs(model, configs, SOURCES, other, (1,), path, progress=False)


def test_pairs_time_each_config_at_its_own_thread_counts_in_shared_rounds(model, tmp_path,
                                                                         monkeypatch):
    calls = _count_samples(monkeypatch)
    every, once = dataset_configs(SPACE, 2, seed=4)
    pairs = [(every, 1), (every, 2), (once, 2), (every, 2)]  # a repeated pair is timed once
    rows = measure_pairs(model, pairs, SOURCES, FAST, tmp_path / 'latency.csv', progress=False)
    assert [(r.key, r.threads) for r in rows] == [(c.key(), t) for c, t in pairs]
    timed = [(every.key(), 1), (every.key(), 2), (once.key(), 2)]
    assert sorted(calls) == sorted(timed * FAST.repeats)
    for round_ in range(FAST.repeats):  # every round visits every pair once
        assert sorted(calls[3 * round_:3 * round_ + 3]) == sorted(timed)
    with pytest.raises(ValueError, match='threads'):
        measure_pairs(model, [(once, 0)], SOURCES, FAST, tmp_path / 'latency.csv',
                      progress=False)


def test_drift_probe_divides_out_a_slow_phase_of_the_machine(tmp_path):
    # The machine runs at half speed from t=100 on; the probe sees it, so a config
    # timed once in each phase comes out at its normal-speed latency both times.
    path = tmp_path / 'samples.jsonl'
    beam = json.dumps(BeamPolicy('fixed', 3).to_dict(), sort_keys=True)
    records = [{'device': 'cpu', 'workload': 'w'}]
    for t, probe_ms in ((0, 40.0), (50, 40.0), (100, 80.0), (150, 80.0), (200, 40.0)):
        records.append({'kind': 'probe', 'key': 'p', 'threads': 1, 'beam': beam, 'round': None,
                        'time': t, 'ms': probe_ms, 'steps': 9.0})
    for round_, (t, ms) in enumerate(((25, 10.0), (125, 20.0), (150, 20.0), (40, 10.0))):
        records.append({'kind': 'config', 'key': 'c', 'threads': 1, 'beam': beam,
                        'round': round_, 'time': t, 'ms': ms, 'steps': 9.0})
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    log = SampleLog(path, 'cpu', 'w')
    assert log.has('c', 1, beam, 3) and not log.has('c', 1, beam, 4)
    # Probe median 40 ms: the slow-phase samples (20 ms at an 80 ms probe) scale to 10 ms.
    timing = log.timing('c', 1, beam, trim=0.0)
    assert timing.latency_ms == pytest.approx(10.0) and timing.std_ms == pytest.approx(0.0)
    assert timing.n == 4 and timing.decoder_steps == 9.0
    with pytest.raises(ValueError, match='write to another file'):
        SampleLog(path, 'cpu', 'other-workload')
    # A run killed in the middle of writing a sample leaves half a line: it is dropped.
    with open(path, 'a') as stream:
        stream.write('{"kind": "config", "key": "c", "thr')
    log = SampleLog(path, 'cpu', 'w')
    assert log.timing('c', 1, beam, trim=0.0).n == 4 and path.read_text().endswith('}\n')
    (tmp_path / 'junk.jsonl').write_text('not json\n')
    with pytest.raises(ValueError, match='junk.jsonl: not a latency sample log'):
        SampleLog(tmp_path / 'junk.jsonl', 'cpu', 'w')


def test_a_later_run_in_the_same_log_leaves_earlier_latencies_on_their_scale(tmp_path):
    # The sweep appends its runs to the dataset's log. If the scale were the median of
    # every probe so far, a later run on a slower machine would shift it, and rows
    # written before and after would disagree for the same sub-network. The first
    # row computed freezes the reference in the log.
    path = tmp_path / 'samples.jsonl'
    beam = json.dumps(BeamPolicy('fixed', 3).to_dict(), sort_keys=True)

    def append(records):
        with open(path, 'a') as stream:
            for kind, key, round_, when, ms in records:
                stream.write(json.dumps({'kind': kind, 'key': key, 'threads': 1, 'beam': beam,
                                         'round': round_, 'time': when, 'ms': ms,
                                         'steps': 9.0}) + '\n')

    path.write_text(json.dumps({'device': 'cpu', 'workload': 'w'}) + '\n')
    append([('probe', 'p', None, when, 40.0) for when in (0, 10, 20)])
    append([('config', 'early', 0, 5, 10.0)])
    before = SampleLog(path, 'cpu', 'w').timing('early', 1, beam, 0.0)
    # A second run an hour later, on a machine twice as slow: probe and config both
    # take twice as long, so the new config lands on the first run's scale.
    append([('probe', 'p', None, when, 80.0) for when in (3600, 3610, 3620, 3630, 3640)])
    append([('config', 'late', 0, 3605, 20.0)])
    log = SampleLog(path, 'cpu', 'w')
    assert before.latency_ms == pytest.approx(10.0)
    assert log.reference(1, beam) == 40.0
    assert log.timing('early', 1, beam, 0.0).latency_ms == pytest.approx(10.0)
    assert log.timing('late', 1, beam, 0.0).latency_ms == pytest.approx(10.0)
    assert sum('"reference"' in line for line in path.read_text().splitlines()) == 1


def test_rounds_probe_each_thread_count_and_resume_after_an_interruption(model, tmp_path,
                                                                           monkeypatch):
    protocol = LatencyProtocol(beam=3, sentences=2, repeats=3, mode='fixed', fixed_length=6,
                               reference_every=2)
    probe_key = SPACE.largest().key()
    configs = [c for c in dataset_configs(SPACE, 5, seed=4) if c.key() != probe_key][:3]
    calls, beams, stop_after = [], [], [11]

    def sample(model, cfg, sources, protocol, threads, beam):
        if len(calls) == stop_after[0]:
            raise KeyboardInterrupt  # the user stops the run mid-round
        calls.append((cfg.key(), threads))
        beams.append(beam.width)
        return Sample(20.0 if cfg.key() == probe_key else 10.0, 7.0)

    monkeypatch.setattr(ld, 'take_sample', sample)
    path = tmp_path / 'latency.csv'
    with pytest.raises(KeyboardInterrupt):
        measure_configs(model, configs, SOURCES, protocol, (1, 2), path, progress=False)
    assert not path.exists()  # no row before all of a config's rounds are done
    stop_after[0] = None
    rows = measure_configs(model, configs, SOURCES, protocol, (1, 2), path, progress=False)
    timed = [c for c in calls if c[0] != probe_key]
    assert sorted(timed) == sorted((c.key(), t) for c in configs for t in (1, 2)
                                   for _ in range(3))  # every sample once, none twice
    probes = [t for key, t in calls if key == probe_key]
    assert probes.count(1) >= 3 and probes.count(2) >= 3  # start, every 2 samples, end
    assert [(r.key, r.threads) for r in rows] == [(c.key(), t) for c in configs for t in (1, 2)]
    assert all(r.latency_ms == 10.0 and r.n == 3 for r in rows)
    # Joint points' beams are timed against the same gauge: the probe keeps the
    # deployment beam, so every beam's latencies share one scale.
    calls.clear(), beams.clear()
    rows = measure_configs(model, configs[:1], SOURCES, protocol, (1,), path,
                           beam=BeamPolicy('fixed', 1), progress=False)
    assert {w for (key, _), w in zip(calls, beams, strict=True) if key == probe_key} == {3}
    assert {w for (key, _), w in zip(calls, beams, strict=True) if key != probe_key} == {1}
    assert rows[0].beam == BeamPolicy('fixed', 1) and rows[0].latency_ms == 10.0


def _write_rows(path, rows, columns=CSV_COLUMNS):
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
    _write_rows(wrong, [_record()], columns=CSV_COLUMNS[:-2])
    with pytest.raises(ValueError, match="missing column.*decoder_steps"):
        read_latency_csv(wrong)
    short = tmp_path / 'short.csv'
    short.write_text(','.join(CSV_COLUMNS) + '\nabc,def\n')
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


def test_workload_is_a_seeded_set_of_real_validation_pairs():
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    tokenizer = Tokenizer(SPM)
    first = load_workload(CORPUS, tokenizer, 3, 0, 64)
    assert first == load_workload(CORPUS, tokenizer, 3, 0, 64)
    assert first != load_workload(CORPUS, tokenizer, 3, 1, 64)
    assert all(0 < len(ids) < 64 for ids in first.sources)
    english = (CORPUS / 'valid.en').read_text(encoding='utf-8').splitlines()
    german = (CORPUS / 'valid.de').read_text(encoding='utf-8').splitlines()
    lengths = {tuple(tokenizer.encode(en)): len(tokenizer.encode(de))
               for en, de in zip(english, german, strict=True)}
    assert [lengths[tuple(ids)] for ids in first.sources] == list(first.target_lengths)


def test_budget_picks_the_count_its_calibration_pays_for(model, monkeypatch):
    # Stand-in samples on a stand-in clock: the smallest costs 0.1 s, the largest 0.3 s.
    clock, taken = [0.0], []
    costs = {SPACE.smallest().key(): 0.1, SPACE.largest().key(): 0.3}

    def sample(model, cfg, sources, protocol, threads, beam):
        clock[0] += costs[cfg.key()]
        taken.append((cfg.key(), threads))
        return Sample(1.0, 6.0)

    monkeypatch.setattr(ld, 'take_sample', sample)
    monkeypatch.setattr(ld.time, 'perf_counter', lambda: clock[0])
    # A config: 5 rounds x 2 thread counts x the mean of 0.1 and 0.3 s = 2.0 s.
    assert ld.affordable_count(model, SOURCES, FAST, (1, 2), 21.0, 100) == 10
    assert len(taken) == 12  # per count and extreme: one untimed sample, two timed
    assert ld.affordable_count(model, SOURCES, FAST, (1, 2), 21.0, 6) == 6  # the upper limit
    # A probe (the largest) after every 10 samples adds 0.3 / 10 s per sample and count.
    probing = LatencyProtocol(beam=3, sentences=2, repeats=5, mode='fixed', fixed_length=6,
                              reference_every=10)
    assert ld.affordable_count(model, SOURCES, probing, (1, 2), 24.0, 100) == 10
    assert ld.affordable_count(model, SOURCES, probing, (1, 2), 22.0, 100) == 9
    with pytest.raises(ValueError, match='pays for 1 sub-network'):
        ld.affordable_count(model, SOURCES, FAST, (1, 2), 3.0, 100)
    for bad in (0, -5.0, math.nan, math.inf, '60'):
        with pytest.raises(ValueError, match='budget: must be a positive number'):
            ld.affordable_count(model, SOURCES, FAST, (1, 2), bad, 100)


def test_command_refuses_a_bad_budget_naming_it(capsys, tmp_path):
    assert main(['latency', '--budget-minutes', '-1', '--out', str(tmp_path / 'x.csv')]) == 2
    assert 'budget' in capsys.readouterr().err
    assert not (tmp_path / 'x.csv').exists()


def test_command_reports_bad_device_and_bad_repeats(capsys):
    assert main(['latency', '--device', 'tpu']) == 2
    assert "'tpu'" in capsys.readouterr().err
    assert main(['latency', '--repeats', '0']) == 2
    assert 'latency.repeats' in capsys.readouterr().err
