"""SuperTransformer benchmark script: sub-network choice, workload, and one small real run.

The run uses a tiny random-weight model, 3 test sentences and a few timed
runs at 1 thread: it checks the measurements are taken and reported, not
what they say.
"""

import json
from pathlib import Path

from bench_scripts import load_bench
import pytest
import torch
from translation_fixtures import SPM, tiny_space, write_tiny_model

from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer, count_parameters
from dyn_dnn_ros.translation.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny models on a shared CPU


bench = load_bench('supertransformer')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp('tiny'))


def test_ladder_grows_every_dimension_from_the_smallest_to_the_largest():
    space = DesignSpace.from_yaml(ROOT / 'config' / 'design_space.yaml')
    steps = bench.ladder(space, 6)
    assert [s.name for s in steps] == ['smallest', 'step 2', 'step 3', 'step 4', 'step 5',
                                       'largest']
    assert steps[0].config == space.smallest() and steps[-1].config == space.largest()
    assert [s.config.decoder_layers for s in steps] == [1, 2, 3, 4, 5, 6]
    sizes = [count_parameters(s.config, 8000, space.head_dim) for s in steps]
    assert sizes == sorted(set(sizes))  # strictly growing
    for a, b in zip(steps[:-1], steps[1:], strict=True):
        for name in ('encoder_embed_dim', 'decoder_embed_dim'):
            assert getattr(a.config, name) <= getattr(b.config, name)
        assert max(a.config.decoder_ffn) <= min(b.config.decoder_ffn)
    # A space with fewer choices than steps gives each distinct sub-network once.
    assert [s.name for s in bench.ladder(tiny_space(), 6)] == ['smallest', 'largest']
    with pytest.raises(ValueError, match='at least 2 steps'):
        bench.ladder(space, 1)


def test_subnets_come_from_a_library_or_specs_sorted_by_size(tiny):
    _, library = tiny
    model = SuperTransformer(tiny_space(), 8000, 0, 2, 3, dropout=0.0)
    chosen = bench.choose_subnets(['6'], library, model)
    assert [s.name for s in chosen] == ['small', 'big']  # the library lists big first
    chosen = bench.choose_subnets(['largest', 'smallest'], None, model)
    assert [s.name for s in chosen] == ['smallest', 'largest']
    with pytest.raises(ValueError, match='at least 2 distinct'):
        bench.choose_subnets(['largest', 'largest'], None, model)
    with pytest.raises(ValueError, match='nope.yaml'):
        bench.choose_subnets(['smallest', 'nope.yaml'], None, model)


def test_latency_source_is_a_real_test_sentence_of_exactly_30_tokens(tmp_path):
    tokenizer = Tokenizer(SPM)
    source = bench.latency_source(tokenizer, ROOT / 'data' / 'corpus')
    assert len(source.ids) == 30 and 'first' not in source.origin
    line = int(source.origin.split()[-1])
    text = (ROOT / 'data' / 'corpus' / 'test.en').read_text().splitlines()[line - 1]
    assert tokenizer.encode(text) == source.ids

    # No sentence of exactly 30 tokens: the first longer one is cut.
    long = ' '.join(['window'] * 40)
    (tmp_path / 'test.en').write_text(f'Open the file.\n{long}\n')
    (tmp_path / 'test.de').write_text('Datei öffnen.\nFenster\n')
    cut = bench.latency_source(tokenizer, tmp_path)
    assert len(cut.ids) == 30 and cut.ids == tokenizer.encode(long)[:30]
    assert cut.origin.startswith('test.en line 2, first 30 of')
    (tmp_path / 'test.en').write_text('Open the file.\nClose it.\n')
    with pytest.raises(ValueError, match='no sentence has 30 or more tokens'):
        bench.latency_source(tokenizer, tmp_path)


@pytest.mark.parametrize('field, value', [('width', 0), ('repeats', 0), ('warmup', -1),
                                          ('target_length', -1), ('trim', 0.5), ('rounds', 0),
                                          ('rounds', 51)])
def test_protocol_rejects_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field):
        bench.Protocol(**{field: value})


def test_rounds_share_the_repeats_out_evenly():
    protocol = bench.Protocol(repeats=23, rounds=5)
    assert [protocol.runs_in_round(i) for i in range(5)] == [5, 5, 5, 4, 4]


def test_latency_rounds_visit_every_job_in_a_shuffled_order(tiny, monkeypatch):
    model_path, _ = tiny
    model = bench.load_model(model_path)
    subnets = bench.choose_subnets(['2'], None, model)
    jobs = bench.latency_jobs(subnets, [1, 2])
    src = torch.tensor([[5, 6, 7, model.eos_id]])
    protocol = bench.Protocol(repeats=6, rounds=3, warmup=0, target_length=2)
    visits = []
    real_set_subnet = model.set_subnet
    monkeypatch.setattr(model, 'set_subnet', lambda subnet: (visits.append(subnet.key()),
                                                             real_set_subnet(subnet)))
    orders = []
    for index in range(3):
        visits.clear()
        samples = bench.measure_latency_round(model, jobs, src, protocol, index, seed=0)
        assert sorted(samples) == sorted(bench.job_key(t, sub) for t, sub in jobs)
        assert len(visits) == len(jobs)  # a switch before every job's runs
        assert all(len(runs) == 2 and min(runs) > 0 for runs in samples.values())
        orders.append(tuple(samples))
    assert len(set(orders)) > 1  # not the same order every round
    rounds = [{key: [1.0, 3.0] for key in orders[0]}, {key: [2.0, 2.0] for key in orders[0]}]
    summary = bench.summarise_latency(rounds, orders[0][0], protocol)
    assert summary['round_ms'] == [2.0, 2.0] and summary['ms'] == 2.0 and summary['kept'] == 4


def test_bad_arguments_and_files_fail_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--repeats', '0'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--skip', 'everything'])
    assert bench.main(['--model', str(tmp_path / 'missing.safetensors'), '--state',
                       str(tmp_path / 'state.json'), '--out', str(tmp_path / 'out.md')]) == 2
    assert 'missing.safetensors' in capsys.readouterr().err
    assert not (tmp_path / 'out.md').exists()


def test_a_small_real_run_reports_every_section_and_resumes(tiny, tmp_path, monkeypatch):
    model_path, _ = tiny
    out, png, state = tmp_path / 'bench.md', tmp_path / 'plot.png', tmp_path / 'state.json'
    argv = ['--model', str(model_path), '--limit', '3', '--repeats', '4', '--warmup', '1',
            '--switches', '50', '--threads', '1', '--target-length', '6', '--subnets', '2',
            '--rounds', '2',
            '--out', str(out), '--png', str(png), '--state', str(state),
            '--note', 'random weights, not meaningful']
    assert bench.main(argv) == 0
    text = out.read_text()
    assert text.startswith('# SuperTransformer benchmark\n\nCommand: `python bench/'
                           'supertransformer.py --model ')
    assert 'torch ' + torch.__version__ in text and 'measured at 1;' in text
    for heading in ('## Sub-networks: BLEU and latency', '## Switching', '## Memory'):
        assert heading in text
    assert '| 1 | smallest |' in text and '| 2 | largest |' in text
    assert 'Largest / smallest latency (target >= 4x):' in text
    assert png.stat().st_size > 0

    data = json.loads(state.read_text())
    rounds = [v for k, v in data.items() if k.startswith('latency round ')]
    assert len(rounds) == 2 and all(len(r) == 2 for r in rounds)  # 2 sub-networks, 1 thread
    assert all(len(runs) == 2 and min(runs) > 0 for r in rounds for runs in r.values())
    assert 'per round median' in text
    bleus = [v for k, v in data.items() if k.startswith('bleu ')]
    assert len(bleus) == 2 and all(v['sentences'] == 3 and v['bleu'] >= 0 for v in bleus)
    switch = next(v for k, v in data.items() if k.startswith('switch '))
    assert switch['switches'] == 50 and 0 < switch['p50_us'] <= switch['p99_us']
    first = next(v for k, v in data.items() if k.startswith('first '))
    assert len(first) == 2 and all(f['ratio'] > 0 and f['steady_ms'] > 0 for f in first)
    memory = next(v for k, v in data.items() if k.startswith('memory '))
    kinds = [r['kind'] for r in memory['rows']]
    assert kinds == ['super', 'compact', 'compact']
    for row in memory['rows']:
        assert 0 < row['baseline_mb'] <= row['peak_mb'] and row['after_mb'] > 0
    compact = [v['weight_bytes'] for k, v in data.items() if k.startswith('materialize ')]
    # The tiny model's largest sub-network is the whole super model.
    assert memory['super_bytes'] == max(compact) == memory['rows'][2]['weight_bytes']
    assert memory['rows'][1]['weight_bytes'] == min(compact) < max(compact)

    # A rerun finds every measurement in the state file and measures nothing.
    def measured(*args, **kwargs):
        raise AssertionError('measured again instead of resuming')

    for name in ('measure_bleu', 'measure_latency_round', 'warm_up_latency',
                 'measure_switches', 'measure_first_inference', 'measure_materialize',
                 'measure_memory'):
        monkeypatch.setattr(bench, name, measured)
    out.unlink()
    assert bench.main(argv) == 0
    assert out.read_text().split('\n', 6)[6] == text.split('\n', 6)[6]  # all but the header
