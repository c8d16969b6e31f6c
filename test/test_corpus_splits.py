"""Corpus splits by package: held-out valid/test packages, cross-split dedupe, exclusion."""

import json

from corpus_fixtures import fake_package, read_split, write_mo
import pytest

from dyn_dnn_ros.translation import corpus
from dyn_dnn_ros.translation.corpus import (
    SPLITS,
    CorpusConfig,
    CorpusError,
    build_corpus,
    source_key,
)
from dyn_dnn_ros.translation.corpus import build as corpus_build

EXCLUDE = ('vlc*', 'gedit*', 'pidgin*')


@pytest.fixture(autouse=True)
def no_apt(monkeypatch):
    """No apt-cache look-ups: the made-up packages have no source package but their own."""
    monkeypatch.setattr(corpus_build, 'source_packages', lambda names: {})


def many(prefix, count, german):
    return {f'{prefix} number {i} of this package': f'{german} Nummer {i} dieses Pakets'
            for i in range(count)}


def make_packages(cache):
    fake_package(cache, 'train-a', {'a': {
        **many('Training sentence', 300, 'Trainingssatz'),
        '_Close the window': '_Fenster schließen',            # also in test-one
        'Print the current page': 'Die aktuelle Seite drucken',  # also in valid-one
        'Save the image as a file': 'Das Bild als Datei speichern',
    }})
    fake_package(cache, 'train-b', {'b': many('Another training line', 200, 'Andere Zeile')})
    fake_package(cache, 'test-one', {'t': {
        **many('Test package sentence', 40, 'Testpaketsatz'),
        'Close the Window…': 'Das Fenster schließen',
        'Show the help page': 'Die Hilfeseite zeigen',     # also in valid-one
    }})
    fake_package(cache, 'test-two', {'t2': many('Second test package line', 30, 'Zweite Zeile')})
    fake_package(cache, 'valid-one', {'v': {
        **many('Valid package sentence', 25, 'Validierungssatz'),
        'Print the current page.': 'Aktuelle Seite drucken.',
        'Show the help page': 'Hilfeseite zeigen',
    }})


def held_out_config(tmp_path, **overrides):
    options = dict(packages=('train-a', 'train-b'), valid_packages=('valid-one',),
                   test_packages=('test-one', 'test-two'), base_system=False,
                   exclude=EXCLUDE, cache_dir=tmp_path / 'cache', out_dir=tmp_path / 'out',
                   test_incatalog_ratio=0.1)
    options.update(overrides)
    return CorpusConfig(**options)


@pytest.mark.parametrize('first, second', [
    ('Close the window', '_Close the Window…'),
    ('Copy %s to %s', 'copy {0} to %1$s'),
    ('Print the current page.', 'print the current page'),
    ('Open "file"', 'Open file'),
])
def test_source_key_ignores_case_punctuation_accelerators_and_placeholders(first, second):
    assert source_key(first) == source_key(second)


def test_source_key_keeps_the_words():
    assert source_key('Close the window') != source_key('Close the windows')
    assert source_key('Größe ändern') == source_key('GRÖSSE ÄNDERN') == 'grösse ändern'


def test_held_out_packages_make_the_valid_and_test_splits(tmp_path):
    make_packages(tmp_path / 'cache')
    stats = build_corpus(held_out_config(tmp_path), progress=False)
    out = tmp_path / 'out'
    pairs = {split: read_split(out, split) for split in SPLITS}

    test_sources = {s for s, _ in pairs['test']}
    assert {s for s in test_sources if 'number' in s} == \
        {f'Test package sentence number {i} of this package' for i in range(40)} | \
        {f'Second test package line number {i} of this package' for i in range(30)}
    assert {s for s, _ in pairs['valid'] if 'number' in s} == \
        {f'Valid package sentence number {i} of this package' for i in range(25)}
    for split, packages in (('test', {'test-one', 'test-two'}), ('valid', {'valid-one'})):
        assert stats.splits[split] == sum(stats.packages[p][split] for p in packages)
        for name, info in stats.packages.items():
            assert info['role'] == (split if name in packages else info['role'])
            if name not in packages:
                assert info[split] == 0, f'{name} leaked into {split}'
    for name in ('train-a', 'train-b'):
        assert stats.packages[name]['role'] == 'train'
        assert stats.packages[name]['train'] > 0

    # test_incatalog: a hash share of the training packages, about 10 % of them.
    assert 0.05 * 503 < stats.splits['test_incatalog'] < 0.15 * 503
    assert all('training' in s.lower() or 'Another' in s or 'Save' in s
               for s, _ in pairs['test_incatalog'])


def test_a_source_is_in_one_split_only_and_held_out_packages_stay_whole(tmp_path):
    make_packages(tmp_path / 'cache')
    stats = build_corpus(held_out_config(tmp_path), progress=False)
    out = tmp_path / 'out'
    pairs = {split: dict(read_split(out, split)) for split in SPLITS}
    keys = {split: {source_key(s) for s in split_pairs} for split, split_pairs in pairs.items()}
    for index, first in enumerate(SPLITS):
        for second in SPLITS[index + 1:]:
            assert not keys[first] & keys[second], (first, second)

    # In train and test (as near-variants): the test package keeps it, train loses it.
    assert pairs['test']['Close the Window…'] == 'Das Fenster schließen'
    assert 'Close the window' not in pairs['train']
    # In train and valid: valid keeps it.
    assert pairs['valid']['Print the current page.'] == 'Aktuelle Seite drucken.'
    assert 'Print the current page' not in pairs['train']
    # In valid and test: test keeps its own translation, valid loses it.
    assert pairs['test']['Show the help page'] == 'Die Hilfeseite zeigen'
    assert 'Show the help page' not in pairs['valid']
    assert stats.dropped['held_out_overlap'] == 3
    assert stats.splits['test'] == 72 and stats.splits['valid'] == 26

    written = json.loads((out / 'stats.json').read_text(encoding='utf-8'))
    assert written['dropped']['held_out_overlap'] == 3
    assert written['packages']['test-one']['role'] == 'test'
    entries = sum(info['entries'] for info in stats.packages.values())
    assert entries == stats.total + sum(stats.dropped.values())


def test_near_variants_in_training_packages_share_their_hash_split(tmp_path):
    variants = {f'Open the file number {i}': f'Die Datei Nummer {i} öffnen' for i in range(200)}
    upper = {f'_Open the File number {i}…': f'Datei Nummer {i} öffnen …' for i in range(200)}
    fake_package(tmp_path / 'cache', 'train-a', {'a': variants})
    fake_package(tmp_path / 'cache', 'train-b', {'b': upper})
    config = held_out_config(tmp_path, packages=('train-a', 'train-b'), valid_packages=(),
                             test_packages=(), test_incatalog_ratio=0.3)
    build_corpus(config, progress=False)
    incatalog = {source_key(s) for s, _ in read_split(tmp_path / 'out', 'test_incatalog')}
    train = {source_key(s) for s, _ in read_split(tmp_path / 'out', 'train')}
    assert incatalog and train and not incatalog & train
    assert len(incatalog) + len(train) == 200


@pytest.mark.parametrize('field', ['packages', 'valid_packages', 'test_packages'])
def test_config_refuses_an_excluded_package(field):
    with pytest.raises(ValueError, match="vlc-l10n is excluded .*'vlc\\*'"):
        CorpusConfig(base_system=False, exclude=EXCLUDE, **{field: ('vlc-l10n',)})


def test_config_refuses_a_package_in_two_splits():
    with pytest.raises(ValueError, match='both a train and a test package'):
        CorpusConfig(packages=('pkg-a',), test_packages=('pkg-a',), base_system=False)
    with pytest.raises(ValueError, match='both a valid and a test package'):
        CorpusConfig(packages=(), valid_packages=('pkg-b',), test_packages=('pkg-b',))


@pytest.fixture
def reads(monkeypatch):
    """Every catalog path build_corpus opens, and every package it fetches."""
    opened, fetched = [], []
    real_read, real_fetch = corpus.read_catalog, corpus.fetch_package

    def read_catalog(path):
        opened.append(str(path))
        return real_read(path)

    def fetch_package(package, *args, **kwargs):
        fetched.append(package)
        return real_fetch(package, *args, **kwargs)

    monkeypatch.setattr(corpus_build, 'read_catalog', read_catalog)
    monkeypatch.setattr(corpus_build, 'fetch_package', fetch_package)
    monkeypatch.setattr(corpus_build, 'download_packages', lambda packages, *a, **k: None)
    return opened, fetched


def test_base_system_never_reads_an_excluded_package(tmp_path, monkeypatch, reads):
    opened, fetched = reads
    locale = tmp_path / 'usr/share/locale/de/LC_MESSAGES'
    write_mo(locale / 'vlc.mo', {'Play the stream': 'Den Stream abspielen'})
    write_mo(locale / 'libfoo.mo', {'Play the video': 'Das Video abspielen'})  # source: gedit
    write_mo(locale / 'ok.mo', {'Show hidden files': 'Versteckte Dateien zeigen'})
    write_mo(locale / 'pidgin.mo', {'Send the message': 'Die Nachricht senden'})
    fake_package(tmp_path / 'cache', 'pidgin-data', {'pidgin': {'Buddy list': 'Buddy-Liste'}})
    monkeypatch.setattr(corpus_build, 'installed_catalogs', lambda: {
        'vlc-l10n': [locale / 'vlc.mo'],
        'libfoo0:amd64': [locale / 'libfoo.mo'],
        'ok-package:amd64': [locale / 'ok.mo'],
        'pidgin-data': [locale / 'missing.mo'],   # stripped: would be downloaded
        'innocent': [locale / 'pidgin.mo'],       # an excluded catalog in another package
    })
    monkeypatch.setattr(corpus_build, 'installed_sources', lambda: {
        'vlc-l10n': 'vlc', 'libfoo0': 'gedit', 'ok-package': 'ok', 'innocent': 'innocent'})
    config = CorpusConfig(packages=(), base_system=True, exclude=EXCLUDE,
                          cache_dir=tmp_path / 'cache', out_dir=tmp_path / 'out')
    stats = build_corpus(config, progress=False)

    assert opened == [str(locale / 'ok.mo')]
    assert fetched == []
    assert stats.excluded == {'vlc-l10n': 'vlc*', 'libfoo0': 'gedit*', 'pidgin-data': 'pidgin*',
                              'innocent:pidgin.mo': 'pidgin*'}
    assert set(stats.packages) == {'ok-package', 'innocent'}
    assert stats.total == 1


def test_a_configured_package_from_an_excluded_source_is_refused(tmp_path, monkeypatch, reads):
    opened, fetched = reads
    make_packages(tmp_path / 'cache')
    monkeypatch.setattr(corpus_build, 'source_packages',
                        lambda names: {'train-b': 'gedit-plugins'})
    with pytest.raises(CorpusError, match="train-b comes from the excluded source gedit-plugins"):
        build_corpus(held_out_config(tmp_path), progress=False)
    assert opened == [] and fetched == []
    assert not (tmp_path / 'out').exists()
