"""Corpus builder: .mo reading, cleaning rules, dedup, hash split and the plain-text route."""

import gettext
import json
from pathlib import Path
import shutil

from corpus_fixtures import HEADER, fake_package, read_split, write_mo
import pytest

from dyn_dnn_ros import cli
from dyn_dnn_ros.translation.corpus import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_OUT_DIR,
    SPLITS,
    CorpusConfig,
    CorpusError,
    ParallelFiles,
    build_corpus,
    clean_pair,
    fetch_package,
    installed_catalogs,
    is_catalog_path,
    load_corpus_config,
    read_mo,
    source_key,
    split_of,
    strip_accelerator,
)
from dyn_dnn_ros.translation.corpus import build as corpus_build

CONFIG = CorpusConfig(packages=(), base_system=False, parallel=(ParallelFiles('a', 'b'),))


def test_read_mo_agrees_with_gettext(tmp_path):
    path = tmp_path / 'x.mo'
    write_mo(path, {
        'Open the file': 'Die Datei öffnen',
        'menu\x04Open the file': 'Datei öffnen',
        'one file\x00%d files': 'eine Datei\x00%d Dateien',
    })
    entries = dict(read_mo(path))
    assert entries['Open the file'] == 'Die Datei öffnen'
    assert entries['menu\x04Open the file'] == 'Datei öffnen'
    assert entries['one file'] == 'eine Datei'  # plural: singular only
    with open(path, 'rb') as f:
        reference = gettext.GNUTranslations(f)
    assert reference.gettext('Open the file') == entries['Open the file']
    assert reference.pgettext('menu', 'Open the file') == entries['menu\x04Open the file']
    assert reference.ngettext('one file', '%d files', 1) == entries['one file']


def test_read_mo_uses_the_catalog_charset(tmp_path):
    path = tmp_path / 'latin1.mo'
    write_mo(path, {'Image size': 'Bildgröße ändern'}, charset='ISO-8859-1')
    assert dict(read_mo(path))['Image size'] == 'Bildgröße ändern'


def test_read_mo_rejects_garbage_naming_the_file(tmp_path):
    path = tmp_path / 'broken.mo'
    path.write_bytes(b'this is not a gettext catalog at all')
    with pytest.raises(ValueError, match='broken.mo'):
        read_mo(path)


@pytest.mark.parametrize('text, expected', [
    ('_Open File', 'Open File'),
    ('Sa_ve As', 'Save As'),
    ('~Datei öffnen', 'Datei öffnen'),
    ('&Edit Menu', 'Edit Menu'),
    ('Ö_ffnen mit', 'Öffnen mit'),
    ('Drag &amp; drop', 'Drag &amp; drop'),        # an entity, not a marker
    ('Tom & Jerry', 'Tom & Jerry'),                # not followed by a letter
    ('renaming backup_manifest.tmp to backup_manifest', 'renaming backup_manifest.tmp to '
     'backup_manifest'),                           # several: code, left alone
    ('unset LC_ALL first', 'unset LC_ALL first'),  # upper-case identifier
    ('_Save %(file_name)s', 'Save %(file_name)s'),  # never inside a placeholder
    ('Back up ~/.config', 'Back up ~/.config'),
])
def test_strip_accelerator(text, expected):
    assert strip_accelerator(text) == expected


def test_clean_pair_rules():
    def clean(source, target, **kwargs):
        return clean_pair(source, target, CONFIG, **kwargs)

    assert clean('', HEADER) == 'header'
    assert clean('Open the file', '') == 'untranslated'
    assert clean('menu\x04_Open the file', 'Datei ö_ffnen') == ('Open the file', 'Datei öffnen')
    assert clean('Cannot\nopen\t the  file', 'Kann die\nDatei nicht öffnen') == \
        ('Cannot open the file', 'Kann die Datei nicht öffnen')
    assert clean('Open', 'Öffnen') == 'too_short'
    assert clean('word ' * 41, 'Wort ' * 41) == 'too_long'
    assert clean('Two words', 'Wort ' * 41) == 'too_long'
    assert clean('GNU General Public License', 'GNU General Public License') == 'identical'
    assert clean('Copy %s to %s', 'Kopiere %s') == 'placeholder_mismatch'
    # German reorders arguments with positions: still the same placeholders.
    assert clean('Copy %s to %s', 'Nach %2$s kopieren: %1$s') == \
        ('Copy %s to %s', 'Nach %2$s kopieren: %1$s')
    # Accelerators are a catalog convention: plain text keeps its ampersands.
    assert clean('The R&D department', 'Die F&E-Abteilung', catalog=False) == \
        ('The R&D department', 'Die F&E-Abteilung')


@pytest.mark.parametrize('source, target', [
    ('Saved %d files to %s', '%d Dateien in %s gespeichert'),
    ('Welcome to %PRODUCTNAME %PRODUCTVERSION', 'Willkommen bei %PRODUCTNAME %PRODUCTVERSION'),
    ('File {0} is {1} bytes', 'Datei {0} hat {1} Bytes'),
    ('Cannot run $(ARG1) now', '$(ARG1) kann jetzt nicht laufen'),
    ('Progress: %.1f%% done', 'Fortschritt: %.1f%% erledigt'),
    ('Hello %(user_name)s again', 'Hallo nochmal %(user_name)s'),
])
def test_placeholders_survive_cleaning_verbatim(source, target):
    assert clean_pair(source, target, CONFIG) == (source, target)


def test_split_is_deterministic_and_follows_the_ratios():
    keys = [f'sentence number {i} of the test' for i in range(4000)]
    first = [split_of(k, 0.1, 0.2, 0.05) for k in keys]
    assert first == [split_of(k, 0.1, 0.2, 0.05) for k in keys]
    share = {name: first.count(name) / len(first) for name in SPLITS}
    assert share['test'] == pytest.approx(0.2, abs=0.03)
    assert share['valid'] == pytest.approx(0.1, abs=0.03)
    assert share['test_incatalog'] == pytest.approx(0.05, abs=0.02)
    assert [split_of(k, 0.0, 0.0) for k in keys] == ['train'] * len(keys)


def catalog_config(tmp_path, out='out'):
    return CorpusConfig(packages=('pkg-a', 'pkg-b'), base_system=False,
                        cache_dir=tmp_path / 'cache', out_dir=tmp_path / out,
                        valid_ratio=0.2, test_ratio=0.2)


def make_catalogs(tmp_path):
    many = {f'Delete {i} selected items now': f'{i} ausgewählte Elemente jetzt löschen'
            for i in range(150)}
    fake_package(tmp_path / 'cache', 'pkg-a', {'a': {
        **many,
        '_Close the window': '_Fenster schließen',
        'Print the page': 'Seite drucken',
        'Save the image': 'Das Bild speichern',
        'Open': 'Öffnen',
        'GNU General Public License': 'GNU General Public License',
    }})
    fake_package(tmp_path / 'cache', 'pkg-b', {
        'b1': {'Close the window': 'Fenster schließen', 'Print the page': 'Die Seite drucken'},
        'b2': {'Print the page': 'Seite drucken', 'Save the image': 'Bild speichern'},
    })


def test_build_corpus_from_catalogs(tmp_path):
    make_catalogs(tmp_path)
    stats = build_corpus(catalog_config(tmp_path), progress=False)
    out = tmp_path / 'out'
    pairs = {name: read_split(out, name) for name in ('train', 'valid', 'test')}
    assert all(pairs.values()), 'with 20 % each, every split gets sentences'
    assert read_split(out, 'test_incatalog') == []
    kept = dict(p for split in pairs.values() for p in split)
    assert kept['Close the window'] == 'Fenster schließen'  # accelerator gone, dedup to one
    assert kept['Print the page'] == 'Seite drucken'         # 2 votes against 1
    assert kept['Save the image'] == 'Bild speichern'        # tie: string order decides
    assert 'Open' not in kept and 'GNU General Public License' not in kept
    assert stats.to_dict()['dropped'] == {
        'header': 3, 'untranslated': 0, 'too_short': 1, 'too_long': 0, 'identical': 1,
        'placeholder_mismatch': 0, 'duplicate': 2, 'ambiguous_source': 2,
        'held_out_overlap': 0}
    entries = sum(info['entries'] for info in stats.packages.values())
    assert entries == stats.total + sum(stats.dropped.values())
    assert stats.total == len(kept) == 153
    assert stats.packages['pkg-b']['catalogs'] == 2
    for split, split_pairs in pairs.items():
        assert stats.splits[split] == len(split_pairs)
        for source, _ in split_pairs:
            assert split_of(source_key(source), 0.2, 0.2) == split
    written = json.loads((out / 'stats.json').read_text(encoding='utf-8'))
    assert written['total'] == 153 and written['dropped']['duplicate'] == 2


def test_build_corpus_is_deterministic(tmp_path):
    make_catalogs(tmp_path)
    build_corpus(catalog_config(tmp_path, 'one'), progress=False)
    build_corpus(catalog_config(tmp_path, 'two'), progress=False)
    for name in ('train.en', 'train.de', 'valid.en', 'test.de', 'stats.json'):
        assert (tmp_path / 'one' / name).read_bytes() == (tmp_path / 'two' / name).read_bytes()


def test_parallel_text_route_through_the_cli(tmp_path):
    en = [f'This is sentence {i} of ours' for i in range(60)] + ['Hi', 'Same text here']
    de = [f'Das ist unser Satz {i}' for i in range(60)] + ['Hallo', 'Same text here']
    (tmp_path / 'x.en').write_text('\n'.join(en) + '\n', encoding='utf-8')
    (tmp_path / 'x.de').write_text('\n'.join(de) + '\n', encoding='utf-8')
    out = tmp_path / 'out'
    code = cli.main(['corpus', '--source-file', str(tmp_path / 'x.en'), '--target-file',
                     str(tmp_path / 'x.de'), '--out-dir', str(out), '--quiet'])
    assert code == 0
    stats = json.loads((out / 'stats.json').read_text(encoding='utf-8'))
    assert stats['total'] == 60
    assert {k: n for k, n in stats['dropped'].items() if n} == {'too_short': 1, 'identical': 1}
    assert list(stats['packages']) == ['x.en']
    assert stats['splits']['valid'] + stats['splits']['test'] > 0   # the 2.5 % hashes
    assert stats['splits']['test_incatalog'] == 0
    pairs = [p for split in SPLITS for p in read_split(out, split)]
    assert sorted(pairs) == sorted(zip(en[:60], de[:60], strict=True))


def test_parallel_files_must_be_aligned(tmp_path):
    (tmp_path / 'x.en').write_text('one line here\ntwo lines here\n', encoding='utf-8')
    (tmp_path / 'x.de').write_text('eine Zeile hier\n', encoding='utf-8')
    config = CorpusConfig(packages=(), base_system=False, out_dir=tmp_path / 'out',
                          parallel=(ParallelFiles(tmp_path / 'x.en', tmp_path / 'x.de'),))
    with pytest.raises(ValueError, match='x.en has 2 lines but .*x.de has 1'):
        build_corpus(config, progress=False)
    assert cli.main(['corpus', '--source-file', str(tmp_path / 'x.en')]) == 2


def test_shipped_config_and_validation(tmp_path):
    config = load_corpus_config(DEFAULT_CONFIG_PATH)
    assert {'libreoffice-l10n-de', 'gimp-data', 'inkscape', 'gnome-control-center-data',
            'evolution-common'} <= set(config.packages)
    assert len(config.packages) > 500
    assert config.base_system is True
    assert config.min_words == 2 and config.max_words == 40
    # The catalogs kept for an independent evaluation are never read, whoever asks.
    for name in ('vlc-l10n', 'filezilla-common', 'hexchat-common', 'pidgin-data',
                 'gedit-common', 'vlc', 'filezilla', 'hexchat', 'pidgin', 'gedit'):
        assert config.excluded_by(name), name
        assert name not in config.packages + config.valid_packages + config.test_packages
    assert len(config.test_packages) >= 5 and config.valid_packages
    assert config.valid_ratio == config.test_ratio == 0.0   # held out by package only
    bad = tmp_path / 'bad.yaml'
    bad.write_text('packages: [gimp-data]\nmax_word: 30\n', encoding='utf-8')
    with pytest.raises(ValueError, match='max_word'):
        load_corpus_config(bad)
    with pytest.raises(ValueError, match='test_ratio'):
        CorpusConfig(test_ratio=1.5)
    with pytest.raises(ValueError, match='min_words'):
        CorpusConfig(min_words=5, max_words=3)
    with pytest.raises(ValueError, match='Bad Name'):
        CorpusConfig(packages=('Bad Name',))


@pytest.mark.skipif(shutil.which('apt-get') is None, reason='needs apt-get (Debian)')
def test_unknown_package_says_to_run_apt_get_update(tmp_path):
    with pytest.raises(CorpusError, match='apt-get update'):
        fetch_package('dyn-dnn-ros-no-such-package', tmp_path)


@pytest.mark.skipif(shutil.which('dpkg-query') is None, reason='needs dpkg-query (Debian)')
def test_installed_catalogs_are_german_mo_files():
    for package, paths in installed_catalogs().items():
        assert package
        assert all(p.suffix == '.mo' and is_catalog_path(p) for p in paths), paths


@pytest.mark.skipif(not (DEFAULT_OUT_DIR / 'train.en').is_file(),
                    reason='the real corpus is not built (run `dyn-dnn-ros corpus`)')
def test_real_corpus_splits_never_share_a_source():
    keys = {}
    for split in SPLITS:
        pairs = read_split(DEFAULT_OUT_DIR, split)
        assert len({source for source, _ in pairs}) == len(pairs), f'{split} repeats a source'
        keys[split] = {source_key(source) for source, _ in pairs}
        for source, target in pairs[:2000]:
            assert 2 <= len(source.split()) <= 40 and 2 <= len(target.split()) <= 40
            assert source != target and '\t' not in source + target
    for index, first in enumerate(SPLITS):
        for second in SPLITS[index + 1:]:
            assert not keys[first] & keys[second], f'{first} and {second} share a source'


def test_real_corpus_stats_are_consistent():
    stats_path = Path(DEFAULT_OUT_DIR) / 'stats.json'
    if not stats_path.is_file():
        pytest.skip('the real corpus is not built (run `dyn-dnn-ros corpus`)')
    stats = json.loads(stats_path.read_text(encoding='utf-8'))
    assert stats['total'] == sum(stats['splits'].values())
    for split in ('valid', 'test', 'test_incatalog'):
        assert stats['splits'][split] == len(read_split(DEFAULT_OUT_DIR, split))
        assert sum(info.get(split, 0) for info in stats['packages'].values()) == \
            stats['splits'][split]   # a zero count is left out of the file
    config = load_corpus_config(DEFAULT_CONFIG_PATH)
    for role in ('valid', 'test'):   # held-out packages feed their split and nothing else
        for name in config.packages_for(role):
            info = stats['packages'][name]
            assert info['role'] == role and info[role] > 0, name
            assert not set(info) & set(SPLITS) - {role}, name
    assert stats['splits']['test'] >= 2000 and stats['splits']['valid'] >= 1500
    assert not {'vlc-l10n', 'filezilla-common', 'hexchat-common', 'pidgin-data',
                'gedit-common'} & set(stats['packages'])


def test_base_system_reads_installed_catalogs_and_downloads_stripped_ones(tmp_path, monkeypatch):
    present = tmp_path / 'usr/share/locale/de/LC_MESSAGES/present.mo'
    write_mo(present, {'Show the hidden files': 'Versteckte Dateien anzeigen'})
    stripped = tmp_path / 'usr/share/locale/de/LC_MESSAGES/stripped.mo'  # path-excluded
    make_catalogs(tmp_path)  # pkg-a's .deb is already extracted in the cache
    monkeypatch.setattr(corpus_build, 'installed_catalogs',
                        lambda: {'present-pkg:amd64': [present], 'pkg-a': [stripped]})
    monkeypatch.setattr(corpus_build, 'installed_sources', lambda: {})
    config = CorpusConfig(packages=(), base_system=True, cache_dir=tmp_path / 'cache',
                          out_dir=tmp_path / 'out')
    stats = build_corpus(config, progress=False)
    assert stats.packages['present-pkg']['kind'] == 'installed'
    assert stats.packages['pkg-a']['kind'] == 'deb'
    assert stats.packages['pkg-a']['entries'] == 156
    assert stats.total == 1 + 153
