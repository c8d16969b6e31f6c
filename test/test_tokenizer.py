"""SentencePiece tokenizer: training, round trips, placeholders, unk and bad model files."""

from pathlib import Path
import shutil

import pytest

from dyn_dnn_ros.translation.tokenizer import (
    BASE_PLACEHOLDERS,
    DEFAULT_CORPUS_DIR,
    DEFAULT_MODEL_PATH,
    Tokenizer,
    TokenizerConfig,
    tokenizer_stats,
    train_tokenizer,
)


@pytest.fixture(scope='module')
def tokenizer():
    return Tokenizer(DEFAULT_MODEL_PATH)


def test_special_ids(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert 7000 <= tokenizer.vocab_size <= 9000


def test_round_trip_on_real_sentences(tokenizer):
    for lang in ('en', 'de'):
        lines = (DEFAULT_CORPUS_DIR / f'test.{lang}').read_text(encoding='utf-8').splitlines()
        checked = 0
        for line, ids in zip(lines, tokenizer.encode_batch(lines), strict=True):
            assert ids == tokenizer.encode(line)
            assert ids and not {tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id} & set(ids)
            if tokenizer.unk_id not in ids:
                assert tokenizer.decode(ids) == line
                checked += 1
        assert checked > 0.99 * len(lines)


@pytest.mark.parametrize('placeholder', [*BASE_PLACEHOLDERS, '%PRODUCTNAME', '$(ARG1)', '%lu'])
def test_placeholders_are_single_tokens_and_survive(tokenizer, placeholder):
    text = f'Die Datei {placeholder} wurde gespeichert'
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert placeholder in [tokenizer.id_to_piece(i) for i in ids]


def test_placeholder_glued_to_text_survives(tokenizer):
    text = 'Datei ~/.%src konnte nicht gelesen werden: %1$s (%2$s)'
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_unknown_characters_become_unk(tokenizer):
    ids = tokenizer.encode('Hallo 𝔘𝔫𝔟𝔢𝔨𝔞𝔫𝔫𝔱 ꙮ Welt')
    assert tokenizer.unk_id in ids
    assert tokenizer.decode(ids).startswith('Hallo')


def test_blank_text_and_whitespace(tokenizer):
    assert tokenizer.encode('') == []
    assert tokenizer.encode(' \t\n ') == []
    assert tokenizer.encode_batch(['', 'Datei öffnen', '  ']) == \
        [[], tokenizer.encode('Datei öffnen'), []]
    assert tokenizer.encode('Datei\n  öffnen ') == tokenizer.encode('Datei öffnen')


def test_decode_drops_specials_and_rejects_bad_ids(tokenizer):
    ids = tokenizer.encode('Bild speichern')
    padded = [tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id, tokenizer.pad_id]
    assert tokenizer.decode(padded) == 'Bild speichern'
    with pytest.raises(ValueError, match=str(tokenizer.vocab_size)):
        tokenizer.decode([tokenizer.vocab_size])
    with pytest.raises(ValueError, match='-1'):
        tokenizer.decode([-1])


def test_missing_and_corrupt_models_name_the_file(tmp_path):
    with pytest.raises(ValueError, match='nowhere.model'):
        Tokenizer(tmp_path / 'nowhere.model')
    corrupt = tmp_path / 'corrupt.model'
    corrupt.write_bytes(b'\x00\x01 definitely not a protobuf' * 10)
    with pytest.raises(ValueError, match='corrupt.model'):
        Tokenizer(corrupt)


def test_training_needs_the_split(tmp_path):
    config = TokenizerConfig(corpus_dir=tmp_path, model_path=tmp_path / 'spm.model')
    with pytest.raises(ValueError, match='train.en'):
        train_tokenizer(config)
    with pytest.raises(ValueError, match='vocab_size'):
        TokenizerConfig(vocab_size=10)


def test_train_small_model_on_real_text(tmp_path):
    # The committed valid split stands in for train: small, real, and fast to train on.
    for lang in ('en', 'de'):
        shutil.copy(DEFAULT_CORPUS_DIR / f'valid.{lang}', tmp_path / f'train.{lang}')
        shutil.copy(DEFAULT_CORPUS_DIR / f'valid.{lang}', tmp_path / f'test.{lang}')
    config = TokenizerConfig(corpus_dir=tmp_path, model_path=tmp_path / 'out' / 'small.model',
                             vocab_size=600, placeholder_min_count=3, num_threads=1)
    path = train_tokenizer(config)
    assert path == config.model_path and Path(path).with_suffix('.vocab').is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ['small.model', 'small.vocab']
    small = Tokenizer(path)
    assert small.vocab_size == 600
    assert [small.id_to_piece(i) for i in range(4)] == ['<pad>', '<unk>', '<s>', '</s>']
    assert small.id_to_piece(4) == '%s'  # placeholders follow the specials
    stats = tokenizer_stats(small, tmp_path, 'test')
    for lang in ('en', 'de'):
        # A small vocabulary splits more, but never below one token a word.
        words = sum(len(line.split()) for line in
                    (tmp_path / f'test.{lang}').read_text(encoding='utf-8').splitlines())
        assert stats[lang]['tokens_per_sentence'] * stats[lang]['sentences'] >= words
        assert stats[lang]['unk_rate'] < 0.01
