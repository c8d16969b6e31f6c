"""The vocabulary map: built from sentence pairs, read back, tied to its tokenizer and library."""

from dataclasses import replace
import json

import pytest
from translation_fixtures import SPM, tiny_space, write_tiny_model

from dyn_dnn_ros.files import file_digest
from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
from dyn_dnn_ros.translation.engines.model_cache import RECORD_FILE
from dyn_dnn_ros.translation.model_file import default_vocabulary_map_path
from dyn_dnn_ros.translation.tokenizer import Tokenizer
from dyn_dnn_ros.translation.vocabulary_map import (
    CTRANSLATE2_FILE,
    FULL,
    VocabularyMapConfig,
    build_vocabulary_map,
    engine_vocabulary_map,
    read_vocabulary_map,
    shortlist,
    write_vocabulary_map,
)

PAIRS = [('The dog sleeps.', 'Der Hund schläft.'),
         ('A dog runs.', 'Ein Hund läuft.'),
         ('The cat sleeps.', 'Die Katze schläft.'),
         ('A cat runs.', 'Eine Katze läuft.')] * 5


@pytest.fixture(scope='module')
def tokenizer():
    return Tokenizer(SPM)


def candidates_of(lines, piece):
    return dict(line.split('\t', 1) for line in lines)[piece].split()


def test_a_source_token_lists_the_target_tokens_it_goes_with(tokenizer):
    sources, targets = zip(*PAIRS, strict=True)
    lines = build_vocabulary_map(tokenizer, list(sources), list(targets),
                                 VocabularyMapConfig(always=2, per_source=3), progress=False)
    dog = tokenizer.id_to_piece(tokenizer.encode('dog')[-1])
    hund = {tokenizer.id_to_piece(i) for i in tokenizer.encode('Hund')}
    katze = {tokenizer.id_to_piece(i) for i in tokenizer.encode('Katze')}
    listed = set(candidates_of(lines, dog))
    assert hund <= listed and not katze & listed
    assert len(candidates_of(lines, dog)) <= 3
    always = lines[0].split('\t')
    assert always[0] == '' and len(always[1].split()) == 2
    specials = {'<pad>', '<unk>', '<s>', '</s>'}
    assert not any(specials & {line.split('\t')[0], *line.split('\t')[1].split()}
                   for line in lines)


def test_held_out_sentences_are_not_counted(tokenizer):
    sources, targets = zip(*PAIRS, strict=True)
    held_out = ['The dog sleeps.', 'Ein Hund läuft.']   # every pair with a dog, by either side
    lines = build_vocabulary_map(tokenizer, list(sources), list(targets), held_out=held_out,
                                 progress=False)
    dog = tokenizer.id_to_piece(tokenizer.encode('dog')[-1])
    assert dog not in dict(line.split('\t', 1) for line in lines)
    with pytest.raises(ValueError, match='every pair is held out'):
        build_vocabulary_map(tokenizer, ['a'], ['b'], held_out=['b'], progress=False)


def test_the_map_is_written_and_read_back_and_refused_for_another_tokenizer(tokenizer,
                                                                            tmp_path):
    sources, targets = zip(*PAIRS, strict=True)
    lines = build_vocabulary_map(tokenizer, list(sources), list(targets), progress=False)
    path = tmp_path / 'map.txt'
    assert write_vocabulary_map(lines, path) == file_digest(path)
    entries = read_vocabulary_map(path, tokenizer.pieces())
    assert '' in entries and len(entries) == len(lines)
    path.write_text('\tnot-a-piece-of-this-tokenizer\n')
    with pytest.raises(ValueError, match='built for another one'):
        read_vocabulary_map(path, tokenizer.pieces())
    path.write_text('no tab here\n')
    with pytest.raises(ValueError, match='expected "source<TAB>targets"'):
        read_vocabulary_map(path, tokenizer.pieces())


@pytest.mark.parametrize('config, message', [
    (dict(always=-1), 'always'), (dict(per_source=0), 'per_source'),
    (dict(max_pairs=1.5), 'max_pairs')])
def test_the_config_is_checked(config, message):
    with pytest.raises(ValueError, match=message):
        VocabularyMapConfig(**config)


def test_pairs_must_match_and_hold_text(tokenizer):
    with pytest.raises(ValueError, match='equally many'):
        build_vocabulary_map(tokenizer, ['a'], [], progress=False)
    with pytest.raises(ValueError, match='no pair has text on both sides'):
        build_vocabulary_map(tokenizer, ['a', ' '], ['', 'b'], progress=False)


def test_the_shipped_map_belongs_to_the_shipped_tokenizer(tokenizer):
    entries = read_vocabulary_map(default_vocabulary_map_path(), tokenizer.pieces())
    assert len(entries['']) == VocabularyMapConfig().always
    assert len(entries) > 1000


def test_the_engine_config_chooses_the_map(tmp_path):
    assert EngineConfig(engine='torch').vocabulary_map == FULL
    assert EngineConfig(engine='ctranslate2').vocabulary_map_path == default_vocabulary_map_path()
    assert EngineConfig(engine='ctranslate2', vocabulary_map=FULL).vocabulary_map_path is None
    with pytest.raises(ValueError, match='a vocabulary map is for the ctranslate2 engine'):
        EngineConfig(engine='torch', vocabulary_map=str(tmp_path / 'map.txt'))


def test_a_library_records_its_map_and_refuses_another(tmp_path):
    _, library_path = write_tiny_model(tmp_path)
    library = replace(OperatingPointLibrary.load(library_path), engine='ctranslate2',
                      compute_type='int8')
    assert engine_vocabulary_map(library, 'x.txt') == FULL   # measured without a map
    digest = 'ab' * 32
    measured = replace(library, vocabulary_map_sha256=digest)
    assert engine_vocabulary_map(measured, 'x.txt') == 'x.txt'
    assert engine_vocabulary_map(measured) == ''   # the shipped map
    measured.save(tmp_path / 'measured.yaml')
    assert OperatingPointLibrary.load(tmp_path / 'measured.yaml').vocabulary_map_sha256 == digest
    measured.check_vocabulary_map(digest)
    with pytest.raises(ValueError, match='measured with vocabulary map sha256 ababababab'
                                         'ab, this worker runs scoring the whole vocabulary'):
        measured.check_vocabulary_map('')
    with pytest.raises(ValueError, match='measured scoring the whole vocabulary, this worker '
                                         'runs with vocabulary map sha256 cdcd'):
        library.check_vocabulary_map('cd' * 32)
    with pytest.raises(ValueError, match='must be a SHA-256 in hex'):
        replace(library, vocabulary_map_sha256='short')
    with pytest.raises(ValueError, match='a vocabulary map is for the ctranslate2 engine'):
        replace(library, engine='torch', vocabulary_map_sha256=digest)


def test_the_engine_scores_only_the_shortlist_and_a_new_map_rebuilds_the_model(tmp_path,
                                                                             tokenizer):
    model_path, _ = write_tiny_model(tmp_path)
    pieces = tokenizer.pieces()
    source = 'Open the file'
    source_pieces = [pieces[i] for i in tokenizer.encode(source)]
    offered = pieces[100:110]
    listed = {source_pieces[0]: pieces[200:205]}
    path = tmp_path / 'map.txt'
    path.write_text('\t' + ' '.join(offered) + '\n'
                    + ''.join(f'{k}\t{" ".join(v)}\n' for k, v in listed.items()))
    config = EngineConfig(engine='ctranslate2', model_path=model_path, spm_path=SPM,
                          cache_dir=tmp_path / 'cache', vocabulary_map=str(path))
    engine = create_engine(config)
    subnet = replace(tiny_space().smallest(), decoder_ende=(1,))
    outcome = engine.translate([source], subnet, 3)[0]
    allowed = set(offered) | set(listed[source_pieces[0]])
    assert outcome.tokens and {pieces[t] for t in outcome.tokens} <= allowed
    folder = engine.cache.folder(subnet)
    assert (folder / CTRANSLATE2_FILE).read_text() == path.read_text()
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record['vocabulary_map_sha256'] == file_digest(path) == engine.vocabulary_map_sha256
    # The whole vocabulary: another model folder, the map's absent.
    whole = create_engine(replace(config, vocabulary_map=FULL))
    whole.translate([source], subnet, 3)
    assert whole.cache.folder(subnet) != folder
    assert not (whole.cache.folder(subnet) / CTRANSLATE2_FILE).exists()
    # A new map under the same file name: the model is stale and exported again.
    path.write_text('\t' + ' '.join(pieces[300:310]) + '\n')
    renewed = create_engine(config)
    outcome = renewed.translate([source], subnet, 3)[0]
    assert renewed.cache.exports == 1
    assert {pieces[t] for t in outcome.tokens} <= set(pieces[300:310])


def write_split(folder, split, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f'{split}.en').write_text(''.join(f'{s}\n' for s, _ in pairs))
    (folder / f'{split}.de').write_text(''.join(f'{t}\n' for _, t in pairs))


def test_the_command_writes_a_map_without_the_held_out_sentences(tmp_path, tokenizer, capsys):
    from dyn_dnn_ros.cli import main
    corpus, measured = tmp_path / 'corpus', tmp_path / 'measured'
    house = ('The house is big.', 'Das Haus ist groß.')
    write_split(corpus, 'train', PAIRS + [house, ('A tree grows.', 'Ein Baum wächst.')] * 5)
    write_split(corpus, 'valid', [house])   # the corpus's own splits: held out
    write_split(measured, 'test', PAIRS[:2])   # both dog pairs: measured on, not counted
    out = tmp_path / 'map.txt'
    assert main(['translation', 'vocabulary-map', '--corpus-dir', str(corpus), '--held-out',
                 str(measured), '--spm', str(SPM), '--out', str(out), '--no-progress']) == 0
    assert f'wrote {out}' in capsys.readouterr().out
    entries = read_vocabulary_map(out, tokenizer.pieces())

    def last_piece(text):
        return tokenizer.id_to_piece(tokenizer.encode(text)[-1])
    assert last_piece('dog') not in entries and last_piece('house') not in entries
    assert last_piece('Katze') in entries[last_piece('cat')]
    assert main(['translation', 'vocabulary-map', '--corpus-dir', str(corpus), '--held-out',
                 str(tmp_path / 'none'), '--spm', str(SPM), '--out', str(out),
                 '--no-progress']) == 1


def test_a_sentences_shortlist_is_the_common_tokens_and_its_pieces_candidates():
    entries = {'': ['▁der', '▁die'], '▁dog': ['▁Hund'], '▁cat': ['▁Katze']}
    assert shortlist(entries, ['▁dog', '▁unseen']) == {'▁der', '▁die', '▁Hund'}
    assert shortlist({'▁dog': ['▁Hund']}, []) == set()
