"""Corpus sources: .po and .qm catalogs, .deb extraction and licenses."""

import shutil
import struct
import subprocess

from corpus_fixtures import write_mo
import pytest

from dyn_dnn_ros.translation import corpus
from dyn_dnn_ros.translation.corpus import (
    DEFAULT_CACHE_DIR,
    QM_MAGIC,
    CorpusConfig,
    CorpusError,
    fetch_package,
    find_catalogs,
    is_catalog_path,
    license_summary,
    read_catalog,
    read_mo,
    read_po,
    read_qm,
)

PO_TEXT = r'''# German translation.
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

#: src/main.c:10
msgid "Open the file"
msgstr "Die Datei öffnen"

msgctxt "menu"
msgid "Open the file"
msgstr "Datei öffnen"

#, c-format
msgid "one file"
msgid_plural "%d files"
msgstr[0] "eine Datei"
msgstr[1] "%d Dateien"

msgid ""
"A long message that "
"spans \"two\" lines\n"
msgstr ""
"Eine lange Nachricht, die "
"sich über \"zwei\" Zeilen erstreckt\n"

#, fuzzy
msgid "Close the window"
msgstr "Fenster zu"

msgid "Not translated yet"
msgstr ""

#~ msgid "An obsolete string"
#~ msgstr "Ein veralteter Text"
'''


def test_read_po(tmp_path):
    po = tmp_path / 'de.po'
    po.write_text(PO_TEXT, encoding='utf-8')
    entries = read_po(po)
    assert dict(entries)['Open the file'] == 'Die Datei öffnen'
    assert dict(entries)['menu\x04Open the file'] == 'Datei öffnen'
    assert dict(entries)['one file'] == 'eine Datei'
    assert dict(entries)['A long message that spans "two" lines\n'] == \
        'Eine lange Nachricht, die sich über "zwei" Zeilen erstreckt\n'
    assert dict(entries)['Close the window'] == ''   # fuzzy: not a translation
    assert 'An obsolete string' not in dict(entries)


@pytest.mark.skipif(shutil.which('msgfmt') is None,
                    reason='needs msgfmt (gettext) to compare with')
def test_read_po_agrees_with_msgfmt(tmp_path):
    po = tmp_path / 'de.po'
    po.write_text(PO_TEXT, encoding='utf-8')
    entries = read_po(po)
    mo = tmp_path / 'de.mo'
    subprocess.run(['msgfmt', '-o', str(mo), str(po)], check=True)
    translated = {k: v for k, v in entries if v and k}
    assert translated == {k: v for k, v in read_mo(mo) if k}


def test_read_po_uses_the_declared_charset(tmp_path):
    po = tmp_path / 'de.po'
    po.write_bytes(PO_TEXT.replace('UTF-8', 'ISO-8859-1').encode('latin-1'))
    assert dict(read_po(po))['Open the file'] == 'Die Datei öffnen'


def test_read_po_names_the_line_it_cannot_read(tmp_path):
    po = tmp_path / 'broken.po'
    po.write_text('msgid "a"\nmsgstr "b"\nthis is not po\n', encoding='utf-8')
    with pytest.raises(ValueError, match='broken.po:3'):
        read_po(po)


def qm_bytes(messages):
    """A Qt .qm catalog as lrelease lays it out: a messages block of tagged fields."""
    block = b''
    for source, translation in messages:
        if translation is None:
            block += b'\x03' + struct.pack('>I', 0xFFFFFFFF)
        else:
            encoded = translation.encode('utf-16-be')
            block += b'\x03' + struct.pack('>I', len(encoded)) + encoded
        if source is not None:
            block += b'\x06' + struct.pack('>I', len(source.encode())) + source.encode()
        block += b'\x07' + struct.pack('>I', 7) + b'MainWin' + b'\x01'
    hashes = b'\x42' + struct.pack('>I', 0)
    return QM_MAGIC + hashes + b'\x69' + struct.pack('>I', len(block)) + block


def test_read_qm(tmp_path):
    path = tmp_path / 'app_de.qm'
    path.write_bytes(qm_bytes([('&Open the file', '&Datei öffnen'),
                               ('Not translated', None),
                               (None, 'Quelltext fehlt'),   # stripped source: unusable
                               ('Größe', 'Größe 😀')]))
    assert read_qm(path) == [('&Open the file', '&Datei öffnen'), ('Größe', 'Größe 😀')]
    assert read_catalog(path) == read_qm(path)
    path.write_bytes(b'not a qm file at all')
    with pytest.raises(ValueError, match='app_de.qm'):
        read_qm(path)


QT_CATALOG = DEFAULT_CACHE_DIR / 'extract/qttranslations5-l10n/usr/share/qt5/translations'


@pytest.mark.skipif(not (QT_CATALOG / 'assistant_de.qm').is_file(),
                    reason='the Qt catalogs are not in the cache (run `dyn-dnn-ros corpus`)')
def test_read_qm_reads_a_real_lrelease_catalog():
    entries = dict(read_qm(QT_CATALOG / 'assistant_de.qm'))
    assert len(entries) > 100
    assert entries['Unable to launch external application.'] == \
        'Fehler beim Starten der externen Anwendung.'
    assert dict(read_qm(QT_CATALOG / 'designer_de.qm'))['Whole &words'] == 'Nur ganze &Worte'


@pytest.mark.parametrize('path, german', [
    ('/usr/share/locale/de/LC_MESSAGES/gimp20.mo', True),
    ('/usr/share/locale/de_DE/LC_MESSAGES/x.mo', True),
    ('/usr/lib/python3/dist-packages/trytond/modules/sale/locale/de.po', True),
    ('/usr/share/qt5/translations/assistant_de.qm', True),
    ('/usr/share/ikiwiki/po/de/basewiki/ikiwiki/markdown.de.po', True),
    ('/usr/share/locale/da/LC_MESSAGES/gimp20.mo', False),
    ('/usr/share/locale/de/LC_MESSAGES/gimp20.txt', False),
    ('/usr/share/qt5/translations/assistant_es.qm', False),
    ('/usr/share/app/node.mo', False),
    ('/usr/share/app/code.po', False),
])
def test_is_catalog_path(path, german):
    assert is_catalog_path(path) is german


def build_deb(tmp_path, name, source=None, doc_link=None):
    """A real .deb with a German catalog, a French one, a copyright file and a binary.

    ``doc_link``: the doc folder is a link to that package's instead.
    """
    root = tmp_path / 'build' / name
    write_mo(root / 'usr/share/locale/de/LC_MESSAGES' / f'{name}.mo',
             {'Open the file': 'Die Datei öffnen'})
    write_mo(root / 'usr/share/locale/fr/LC_MESSAGES' / f'{name}.mo',
             {'Open the file': 'Ouvrir le fichier'})
    (root / 'usr/bin').mkdir(parents=True)
    (root / 'usr/bin' / name).write_bytes(b'\x7fELF not really')
    if doc_link:
        (root / 'usr/share/doc').mkdir(parents=True)
        (root / 'usr/share/doc' / name).symlink_to(doc_link)
    else:
        (root / 'usr/share/doc' / name).mkdir(parents=True)
        (root / 'usr/share/doc' / name / 'copyright').write_text(
            'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n'
            'Files: *\nCopyright: 2024 Someone\nLicense: GPL-2+\n', encoding='utf-8')
    (root / 'DEBIAN').mkdir()
    control = (f'Package: {name}\nVersion: 1.0-1\nArchitecture: all\n'
               'Maintainer: Someone <someone@example.org>\nDescription: test package\n')
    if source:
        control += f'Source: {source}\n'
    (root / 'DEBIAN/control').write_text(control, encoding='utf-8')
    debs = tmp_path / 'cache' / 'debs'
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(['dpkg-deb', '--root-owner-group', '--build', str(root),
                    str(debs / f'{name}_1.0-1_all.deb')], check=True, capture_output=True)


needs_dpkg_deb = pytest.mark.skipif(shutil.which('dpkg-deb') is None,
                                    reason='needs dpkg-deb (Debian)')


@needs_dpkg_deb
def test_fetch_package_extracts_only_german_catalogs_and_the_copyright(tmp_path):
    build_deb(tmp_path, 'demo-app')
    tree, cached = fetch_package('demo-app', tmp_path / 'cache')
    assert not cached
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob('*') if p.is_file())
    assert files == ['usr/share/doc/demo-app/copyright',
                     'usr/share/locale/de/LC_MESSAGES/demo-app.mo']
    assert find_catalogs(tree) == [tree / 'usr/share/locale/de/LC_MESSAGES/demo-app.mo']
    assert dict(read_mo(find_catalogs(tree)[0]))['Open the file'] == 'Die Datei öffnen'
    assert corpus.package_license(tree, 'demo-app') == 'GPL-2+'
    assert not list((tmp_path / 'cache' / 'debs').glob('*.deb'))   # the extract is the cache
    assert fetch_package('demo-app', tmp_path / 'cache') == (tree, True)


@needs_dpkg_deb
def test_a_linked_doc_folder_names_where_the_copyright_is(tmp_path):
    build_deb(tmp_path, 'demo-app-l10n', doc_link='demo-app-base')
    tree, _ = fetch_package('demo-app-l10n', tmp_path / 'cache')
    assert find_catalogs(tree)
    assert corpus.package_license(tree, 'demo-app-l10n') == \
        'unknown (its copyright file is in demo-app-base)'


@needs_dpkg_deb
def test_fetch_package_refuses_a_deb_from_an_excluded_source(tmp_path):
    build_deb(tmp_path, 'purple-helper', source='pidgin')
    config = CorpusConfig(packages=(), base_system=False, exclude=('pidgin*',),
                          parallel=(corpus.ParallelFiles('a', 'b'),))
    with pytest.raises(CorpusError, match="purple-helper comes from an excluded source"):
        fetch_package('purple-helper', tmp_path / 'cache', config)
    assert not (tmp_path / 'cache' / 'extract').exists()
    assert not list((tmp_path / 'cache' / 'debs').glob('*.deb'))


@pytest.mark.parametrize('text, summary', [
    ('Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n'
     'Upstream-Name: x\n\nFiles: po/*\nCopyright: a\nLicense: LGPL-2.1+\n\n'
     'Files: *\nCopyright: b\nLicense: GPL-3+\n\nLicense: GPL-3+\n On Debian systems ...\n',
     'GPL-3+, LGPL-2.1+'),
    ('This package is free software; you can redistribute it under the terms of the '
     'GNU Lesser General Public License, version 2.1.', 'LGPL (free text)'),
    ('Licensed under the GNU General Public License version 2 or later, and the '
     'GNU Lesser General Public License.', 'LGPL, GPL (free text)'),
    ('Permission is hereby granted, free of charge, to any person', 'Expat (free text)'),
    ('All rights reserved.', 'unknown'),
])
def test_license_summary(text, summary):
    assert license_summary(text) == summary


def test_a_next_line_character_inside_a_string_is_not_a_line_break(tmp_path):
    # U+0085 (NEL) and U+2028 are line breaks to str.splitlines, not to gettext.
    po = tmp_path / 'de.po'
    po.write_text('msgid "Åland Islands\x85 and more"\nmsgstr "Åland\u2028Inseln"\n',
                  encoding='utf-8')
    assert read_po(po) == [('Åland Islands\x85 and more', 'Åland\u2028Inseln')]
    en, de = tmp_path / 'x.en', tmp_path / 'x.de'
    en.write_text('One\x85 sentence\nTwo\n', encoding='utf-8')
    de.write_text('Ein Satz\nZwei\n', encoding='utf-8')
    assert corpus.read_parallel(corpus.ParallelFiles(en, de)) == [
        ('One\x85 sentence', 'Ein Satz'), ('Two', 'Zwei')]
