"""Translator facade and the translate / evaluate / calibrate-beam commands on a tiny model."""

import io
import math
from pathlib import Path

import pytest
import torch
import yaml

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.beam_search import BeamSearchConfig, beam_search
from dyn_dnn_ros.translation.checkpoint import save_model
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.translator import Translator, read_split, subnet_from_spec

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / 'models' / 'translation' / 'spm.model'
TEST_EN = ROOT / 'data' / 'corpus' / 'test.en'

torch.set_num_threads(1)  # tiny models: one thread avoids contention on a shared CPU


@pytest.fixture(scope='module')
def tokenizer():
    from dyn_dnn_ros.translation.tokenizer import Tokenizer
    return Tokenizer(SPM)


@pytest.fixture(scope='module')
def space():
    return DesignSpace(encoder_embed_dim=(32, 48), decoder_embed_dim=(32, 48), ffn_dim=(64,),
                       heads=(1, 2), encoder_layers=(2,), decoder_layers=(1, 2), ende=(1, 2),
                       head_dim=16, max_positions=64)


@pytest.fixture(scope='module')
def model(space, tokenizer):
    torch.manual_seed(0)
    return SuperTransformer(space, tokenizer.vocab_size, tokenizer.pad_id, tokenizer.bos_id,
                            tokenizer.eos_id, dropout=0.0).eval()


@pytest.fixture(scope='module')
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'tiny.safetensors'
    save_model(path, model, {'note': 'random, for tests'})
    return path


@pytest.fixture(scope='module')
def sentences(tokenizer, space):
    lines = TEST_EN.read_text(encoding='utf-8').splitlines() if TEST_EN.is_file() else []
    fits = space.max_positions - 1   # longer sources are cut, which tests here do not expect
    return [line for line in lines if line and len(tokenizer.encode(line)) <= fits][:24] or [
        'Load document', 'no data left in message', 'Print the selected pages',
        'The file could not be saved because the disk is full.'] * 6


def test_empty_and_blank_text_give_empty_translations(model, tokenizer):
    translator = Translator(model, tokenizer)
    texts = ['', '   \t', 'Load document', '']
    outcomes = translator.translate(texts, beam=BeamPolicy('fixed', 2))
    assert [o.status for o in outcomes] == ['empty', 'empty', 'ok', 'empty']
    assert [o.text for o in outcomes][:2] == ['', ''] and outcomes[3].text == ''
    assert outcomes[0].avg_width == 0.0 and outcomes[0].source_tokens == 0
    assert outcomes[2].avg_width == 2.0 and outcomes[2].source_tokens > 0
    assert translator.translate([]) == []


def test_long_text_is_truncated_at_a_token_boundary(model, tokenizer):
    translator = Translator(model, tokenizer, max_source_tokens=4)
    text = 'The file could not be saved because the disk is full.'
    ids = tokenizer.encode(text)
    assert len(ids) > 4
    [outcome] = translator.translate([text], beam=BeamPolicy('fixed', 3))
    assert outcome.status == 'truncated' and outcome.source_tokens == 4
    # The same translation as the first four tokens alone.
    src = encode_sources([ids[:4]], model.pad_id, model.eos_id)
    [expected] = beam_search(model, src, BeamSearchConfig(beam=3))
    assert outcome.tokens == expected.tokens
    assert outcome.text == tokenizer.decode(expected.tokens)


def test_unknown_characters_do_not_crash(model, tokenizer):
    [outcome] = Translator(model, tokenizer).translate(['\u2603 \U0001f600 \u0f00 ok'])
    assert outcome.status == 'ok' and outcome.source_tokens > 0


def test_order_is_preserved_across_length_sorted_batches(model, tokenizer, sentences):
    beam = BeamPolicy('fixed', 3)
    batched = Translator(model, tokenizer, batch_size=5).translate(sentences, 'largest', beam)
    single = Translator(model, tokenizer, batch_size=1).translate(sentences, 'largest', beam)
    lengths = [len(tokenizer.encode(s)) for s in sentences]
    assert lengths != sorted(lengths)  # the batches really were reordered
    assert [o.tokens for o in batched] == [o.tokens for o in single]
    assert [o.source_tokens for o in batched] == lengths
    assert all(o.decoder_layers == 2 and o.latency_s > 0 for o in batched)


def test_subnet_and_beam_are_applied_per_call(model, tokenizer, space, sentences):
    translator = Translator(model, tokenizer)
    small = translator.translate(sentences[:4], 'smallest', BeamPolicy('fixed', 1))
    assert {o.decoder_layers for o in small} == {1} and {o.avg_width for o in small} == {1.0}
    assert model.subnet == space.smallest()
    policy = BeamPolicy('dynamic', bw_min=1, bw_max=4, sigma_min=0.05, sigma_max=0.3)
    dynamic = translator.translate(sentences[:4], 'largest', policy)
    assert {o.decoder_layers for o in dynamic} == {2}
    assert all(1.0 <= o.avg_width <= 4.0 for o in dynamic)


def test_subnet_specs(space, tmp_path):
    assert subnet_from_spec('largest', space) == space.largest()
    assert subnet_from_spec('smallest', space) == space.smallest()
    plain, wrapped = tmp_path / 'plain.yaml', tmp_path / 'point.yaml'
    plain.write_text(yaml.safe_dump(space.smallest().to_dict()))
    wrapped.write_text(yaml.safe_dump({'name': 'p', 'subnet': space.largest().to_dict()}))
    assert subnet_from_spec(plain, space) == space.smallest()
    assert subnet_from_spec(str(wrapped), space) == space.largest()
    with pytest.raises(ValueError, match='missing.yaml'):
        subnet_from_spec(tmp_path / 'missing.yaml', space)
    bad = space.largest().to_dict() | {'decoder_layers': 5}
    (tmp_path / 'bad.yaml').write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match='bad.yaml: decoder_layers=5'):
        subnet_from_spec(tmp_path / 'bad.yaml', space)


def test_bad_arguments_are_rejected(model, tokenizer):
    with pytest.raises(ValueError, match='max_source_tokens'):
        Translator(model, tokenizer, max_source_tokens=64)  # positions 0..63, one for EOS
    with pytest.raises(ValueError, match='batch_size'):
        Translator(model, tokenizer, batch_size=0)
    with pytest.raises(ValueError, match='alpha'):
        Translator(model, tokenizer, alpha=math.nan)
    with pytest.raises(ValueError, match='texts'):
        Translator(model, tokenizer).translate('one string, not a list')
    with pytest.raises(ValueError, match='patience'):
        Translator(model, tokenizer).translate(['x'], patience=0)
    other = SuperTransformer(model.space, 100, 0, 2, 3)
    with pytest.raises(ValueError, match='vocab_size'):
        Translator(other, tokenizer)


def test_evaluate_gives_bleu_100_against_its_own_output(model, tokenizer, sentences):
    translator = Translator(model, tokenizer)
    beam = BeamPolicy('fixed', 2)
    outcomes = translator.translate(sentences, 'largest', beam)
    result = translator.evaluate(sentences, [o.text for o in outcomes], 'largest', beam)
    assert result.bleu == pytest.approx(100.0)
    assert result.avg_width == 2.0 and result.sentences == len(sentences)
    tokens = sum(len(o.tokens) + 1 for o in outcomes)
    assert result.perplexity == pytest.approx(math.exp(-sum(o.log_prob for o in outcomes)
                                                       / tokens))
    worse = translator.evaluate(sentences, ['Etwas ganz anderes .'] * len(sentences),
                                'largest', beam)
    assert worse.bleu < 5.0


def test_step_metrics_are_one_per_free_step(model, tokenizer, sentences):
    translator = Translator(model, tokenizer)
    values = translator.step_metrics(sentences[:6], 'largest', width=3)
    assert len(values['std']) == len(values['gap']) > 6
    assert (values['std'] >= 0).all() and (values['gap'] >= 0).all()


def test_load_the_saved_model(model_file, tokenizer, sentences):
    translator = Translator.load(model_file, SPM, batch_size=4)
    outcomes = translator.translate(sentences[:3], 'smallest', BeamPolicy('fixed', 2))
    assert [o.status for o in outcomes] == ['ok'] * 3
    with pytest.raises(ValueError, match='does not exist'):
        Translator.load(model_file.with_name('absent.safetensors'), SPM)


def test_read_split(tmp_path):
    (tmp_path / 'valid.en').write_text('a\nb\nc\n')
    (tmp_path / 'valid.de').write_text('x\ny\nz\n')
    assert read_split(tmp_path, 'valid', limit=2) == (['a', 'b'], ['x', 'y'])
    (tmp_path / 'test.en').write_text('a\n')
    (tmp_path / 'test.de').write_text('x\ny\n')
    with pytest.raises(ValueError, match='1 lines'):
        read_split(tmp_path, 'test')
    with pytest.raises(ValueError, match='split'):
        read_split(tmp_path, 'dev')


# -- commands ------------------------------------------------------------------------


def test_translate_command_keeps_lines_and_order(model_file, monkeypatch, capsys, sentences):
    lines = [sentences[0], '', sentences[1], '   ', sentences[2]]
    monkeypatch.setattr('sys.stdin', io.StringIO('\n'.join(lines) + '\n'))
    code = main(['translate', '--model', str(model_file), '--spm', str(SPM), '--beam', '2',
                 '--batch-size', '2', '--threads', '1'])
    out, err = capsys.readouterr()
    assert code == 0
    got = out.split('\n')
    assert got[-1] == '' and len(got) == len(lines) + 1  # one line per input line
    assert got[1] == '' and got[3] == ''
    assert 'average beam width 2.00' in err and '3 of 5 lines' in err


def test_translate_command_uses_an_operating_point(model_file, space, tmp_path, monkeypatch,
                                                   capsys):
    policy = BeamPolicy('dynamic', bw_min=1, bw_max=3, sigma_min=0.1, sigma_max=0.4)
    library = OperatingPointLibrary('translation', 'cpu', 'bleu', [OperatingPoint(
        'tiny', 'translation', space.smallest().to_dict(), {1: 10.0}, 1.0, beam=policy)])
    library.save(tmp_path / 'lib.yaml')
    monkeypatch.setattr('sys.stdin', io.StringIO('Load document\n'))
    args = ['translate', '--model', str(model_file), '--spm', str(SPM),
            '--library', str(tmp_path / 'lib.yaml')]
    assert main(args + ['--operating-point', 'tiny']) == 0
    err = capsys.readouterr().err
    assert policy.describe() in err and space.smallest().key() in err
    assert main(args + ['--operating-point', 'nope']) == 2
    assert "unknown operating point 'nope'" in capsys.readouterr().err
    missing = ['--library', str(tmp_path / 'none.yaml'), '--operating-point', 'tiny']
    assert main(args[:5] + missing) == 2
    assert 'does not exist yet' in capsys.readouterr().err


def test_translate_command_reports_bad_beam_options(model_file, capsys):
    base = ['translate', '--model', str(model_file), '--spm', str(SPM)]
    assert main(base + ['--beam-policy', 'dynamic']) == 2
    assert '--sigma-min' in capsys.readouterr().err
    assert main(base + ['--beam-policy', 'dynamic', '--sigma-min', '2', '--sigma-max',
                        '1']) == 2
    assert 'beam.sigma_min' in capsys.readouterr().err
    assert main(base + ['--beam', '0']) == 2
    assert 'beam.width' in capsys.readouterr().err


def test_evaluate_and_calibrate_commands(model_file, tmp_path, capsys, sentences):
    (tmp_path / 'valid.en').write_text('\n'.join(sentences[:6]) + '\n')
    (tmp_path / 'valid.de').write_text('\n'.join(['Dokument laden'] * 6) + '\n')
    common = ['--model', str(model_file), '--spm', str(SPM), '--corpus-dir', str(tmp_path),
              '--split', 'valid']
    assert main(['evaluate', *common, '--beam', '2', '--limit', '4']) == 0
    out = capsys.readouterr().out
    assert 'valid: 4 sentences' in out and 'average beam width 2.00' in out and 'BLEU' in out
    assert main(['calibrate-beam', *common, '--bw-max', '3', '--percentiles', '5:50',
                 '10:90', '--limit', '4', '--evaluate', '2']) == 0
    out = capsys.readouterr().out
    assert '4 valid sentences' in out  # calibrated on the first 4, scored on the other 2
    assert 'std p5/p50' in out and 'gap p10/p90' in out and 'fixed 3' in out
    assert 'steps' in out and '--sigma-min' in out.splitlines()[-1]
    assert main(['calibrate-beam', *common, '--limit', '6', '--evaluate', '2']) == 2
    assert 'no sentences after the 6' in capsys.readouterr().err
    assert main(['calibrate-beam', *common, '--percentiles', '50']) == 2
    assert 'LOW:HIGH' in capsys.readouterr().err


def test_evaluate_command_runs_ctranslate2_with_or_without_the_vocabulary_map(
        model_file, tmp_path, capsys, sentences):
    (tmp_path / 'valid.en').write_text('\n'.join(sentences[:3]) + '\n')
    (tmp_path / 'valid.de').write_text('\n'.join(['Dokument laden'] * 3) + '\n')
    common = ['evaluate', '--model', str(model_file), '--spm', str(SPM), '--corpus-dir',
              str(tmp_path), '--split', 'valid', '--subnet', 'smallest', '--beam', '2']
    ct2 = ['--engine', 'ctranslate2', '--model-cache-dir', str(tmp_path / 'cache')]
    assert main(common + ct2) == 0
    assert 'on ctranslate2 int8 with vocabulary map sha256' in capsys.readouterr().out
    assert main(common + ct2 + ['--vocabulary-map', 'full']) == 0
    out = capsys.readouterr().out
    assert 'on ctranslate2 int8, ' in out and 'vocabulary map' not in out
    map_file = ROOT / 'models' / 'translation' / 'vocabulary_map.txt'
    assert main(common + ['--engine', 'torch', '--vocabulary-map', str(map_file)]) == 2
    assert 'a vocabulary map is for the ctranslate2 engine' in capsys.readouterr().err
