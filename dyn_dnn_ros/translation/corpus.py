r"""Build an English->German parallel corpus from Debian's German translation catalogs.

Debian packages ship their German translations as gettext catalogs
(``.../de/LC_MESSAGES/*.mo``, sometimes the ``.po`` source) or Qt catalogs
(``*_de.qm``): the English source string and its German translation.
``build_corpus`` downloads the configured packages with ``apt-get download``,
extracts only their German catalogs and copyright file into a cache (so a
second run is fast and an interrupted run resumes), adds the catalogs of the
packages installed on this machine, cleans the pairs and writes four splits:

    out_dir/{train,valid,test,test_incatalog}.{en,de}   aligned, UTF-8, one pair per line
    out_dir/stats.json      counts per package and split, licenses, drops per reason

Splits. ``valid`` and ``test`` are whole packages that no other split sees
(``valid_packages``, ``test_packages``): they measure translation of text from
programs the model never read. ``test_incatalog`` is a hash-drawn share of the
training packages' strings, kept for continuity with earlier corpora (it
measures how well the model knows its own catalogs). Across splits, sources
are compared by a normalized key (lower case, words only, every placeholder
alike), and a key is owned by one split in the order test, valid,
test_incatalog, train: a training string that also occurs in a held-out
package is removed from train [held_out_overlap], so the held-out packages
stay whole and nothing in them was seen in training.

Excluded packages (``exclude``: shell patterns matched against the binary
package name, its source package name and the catalog's file name) are never
downloaded, extracted or read, even when installed on this machine.

Cleaning rules, in order (a dropped entry is counted under the reason in brackets):
    * the catalog header (empty msgid) is skipped [header]; untranslated entries and
      ``.po`` entries marked fuzzy [untranslated];
    * msgctxt (``ctxt\x04msgid``) is dropped; plural entries keep the singular form only;
    * catalog strings lose one keyboard accelerator marker (``_File``, ``~File``, ``&File``,
      ``Sa_ve``): the marker is removed only when the string holds exactly one marker
      followed by a letter, outside placeholders, not an ``&entity;`` and not inside an
      upper-case identifier (``LC_ALL``), since a string with several is more likely
      code (``backup_manifest.tmp``) than a label with a mnemonic;
    * Unicode NFC, newlines/tabs/runs of spaces become one space;
    * both sides need min_words..max_words words [too_short, too_long];
    * source == target [identical];
    * placeholders (``%s``, ``%1$s``, ``{0}``, ``$(VAR)``, ...) are kept verbatim, and a pair
      whose two sides hold different placeholders is dropped [placeholder_mismatch]
      (``%1$s`` counts as ``%s`` so that reordered German arguments stay);
    * within a split, repeated (source, target) pairs are kept once [duplicate]; a source
      with several targets keeps its most frequent target, ties broken by string order
      [ambiguous_source];
    * across splits, the key rule above [held_out_overlap].
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
import fnmatch
import glob
import hashlib
import json
from pathlib import Path, PurePosixPath
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import unicodedata

from tqdm import tqdm
import yaml

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.share import config_path, data_path, work_dir
from dyn_dnn_ros.validation import require_fraction, require_int

DEFAULT_CONFIG_PATH = config_path('corpus.yaml')
DEFAULT_CACHE_DIR = data_path('cache')
DEFAULT_OUT_DIR = data_path('corpus')
DEFAULT_PACKAGES = (
    'libreoffice-l10n-de', 'gimp-data', 'inkscape', 'gnome-control-center-data',
    'evolution-common',
)
SPLITS = ('train', 'valid', 'test', 'test_incatalog')
# Which split keeps a normalized source that several splits hold: the first.
SPLIT_PRIORITY = ('test', 'valid', 'test_incatalog', 'train')
ROLES = ('train', 'valid', 'test')   # what a package is used for
DROP_REASONS = ('header', 'untranslated', 'too_short', 'too_long', 'identical',
                'placeholder_mismatch', 'duplicate', 'ambiguous_source', 'held_out_overlap')

# German catalogs inside a package: gettext's de/LC_MESSAGES/x.{mo,po}, and de.po,
# x_de.qm, x.de.po, x-de.qm as Qt and some projects name them (de_DE alike).
CATALOG_RE = re.compile(
    r'(?:/de(?:_DE)?/LC_MESSAGES/[^/]+|(?:^|[/_.-])de(?:_DE)?)\.(?:mo|po|qm)$')
COPYRIGHT_RE = re.compile(r'^usr/share/doc/[^/]+/copyright$')
DOC_DIR_RE = re.compile(r'^usr/share/doc/[^/]+$')
INSTALLED_CATALOG_PATTERN = '*/de/LC_MESSAGES/*.mo'

# Placeholders, most specific first: LibreOffice's %PRODUCTNAME before printf's %E,
# printf's %1$s before Qt's %1. No space flag in printf: "50 % der" is not a placeholder.
PLACEHOLDER_RE = re.compile(
    r'%[A-Z]{2}[A-Z0-9_]*'
    r'|%\(\w+\)[-+#0]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]'
    r'|%(?:\d+\$)?[-+#0]*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t|I64)?'
    r'[diouxXeEfFgGaAcspS%]'
    r'|%\d+'
    r'|\{\w*\}'
    r'|\$\(\w+\)|\$\{\w+\}'
)
_POSITIONAL_RE = re.compile(r'^%\d+\$')
_ACCELERATOR_RE = re.compile(r'[_~&](?=[^\W\d_])')
_ENTITY_RE = re.compile(r'&\w+;')
_WORD_RE = re.compile(r'[^\W_]+')
_PACKAGE_NAME_RE = re.compile(r'[a-z0-9][a-z0-9+.-]*(:\w+)?')
_DOWNLOAD_BATCH = 50       # packages per apt-get download call
_EXTRACT_WORKERS = 2       # dpkg-deb decompresses in its own process


class CorpusError(RuntimeError):
    """A corpus source could not be fetched or is excluded; the message says what to do."""


@dataclass(frozen=True)
class ParallelFiles:
    """Aligned plain-text files: line i of ``source`` translates to line i of ``target``."""

    source: Path
    target: Path


@dataclass(frozen=True)
class CorpusConfig:
    packages: tuple[str, ...] = DEFAULT_PACKAGES   # training packages, downloaded
    base_system: bool = True
    parallel: tuple[ParallelFiles, ...] = ()
    valid_packages: tuple[str, ...] = ()   # held out whole: the valid split
    test_packages: tuple[str, ...] = ()    # held out whole: the test split
    # Shell patterns of packages never downloaded or read (binary, source or catalog name).
    exclude: tuple[str, ...] = ()
    cache_dir: Path = DEFAULT_CACHE_DIR
    out_dir: Path = DEFAULT_OUT_DIR
    min_words: int = 2
    max_words: int = 40
    # Hash-drawn shares of the training packages' keys: extra valid/test sentences (for
    # sources without held-out packages, such as plain parallel text) and test_incatalog.
    valid_ratio: float = 0.0
    test_ratio: float = 0.0
    test_incatalog_ratio: float = 0.0

    def __post_init__(self):
        for name in ('packages', 'valid_packages', 'test_packages', 'exclude'):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f'{name} must be a list of names, got the string {value!r}')
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, 'parallel', tuple(self.parallel))
        object.__setattr__(self, 'cache_dir', Path(self.cache_dir))
        object.__setattr__(self, 'out_dir', Path(self.out_dir))
        for list_name in ('packages', 'valid_packages', 'test_packages'):
            for name in getattr(self, list_name):
                if not isinstance(name, str) or not _PACKAGE_NAME_RE.fullmatch(name):
                    raise ValueError(f'{list_name}: {name!r} is not a Debian package name')
                pattern = self.excluded_by(name)
                if pattern is not None:
                    raise ValueError(f'{list_name}: {name} is excluded (matches {pattern!r} '
                                     'in exclude); it is never read')
        for pattern in self.exclude:
            if not isinstance(pattern, str) or not pattern.strip():
                raise ValueError(f'exclude: {pattern!r} is not a package name pattern')
        roles = {}
        for role in ROLES:
            for name in self.packages_for(role):
                if roles.setdefault(_base_name(name), role) != role:
                    raise ValueError(f'{name} is both a {roles[_base_name(name)]} and a {role} '
                                     'package: a package belongs to one split')
        require_int('min_words', self.min_words, 1)
        require_int('max_words', self.max_words, 1)
        if self.min_words > self.max_words:
            raise ValueError(f'min_words={self.min_words}, max_words={self.max_words}: '
                             'need 1 <= min_words <= max_words')
        ratios = ('valid_ratio', 'test_ratio', 'test_incatalog_ratio')
        for name in ratios:
            require_fraction(name, getattr(self, name), '[0, 1)')
        if sum(getattr(self, name) for name in ratios) >= 1.0:
            raise ValueError(f'{" + ".join(ratios)} >= 1 leaves no training data')
        if not (self.packages or self.base_system or self.parallel):
            raise ValueError('no corpus source: give packages, base_system or parallel files')

    def packages_for(self, role: str) -> tuple[str, ...]:
        return {'train': self.packages, 'valid': self.valid_packages,
                'test': self.test_packages}[role]

    def role_of(self, package: str) -> str:
        """The split a package's pairs go to: 'test', 'valid' or 'train'."""
        name = _base_name(package)
        for role in ('test', 'valid'):
            if name in {_base_name(p) for p in self.packages_for(role)}:
                return role
        return 'train'

    def excluded_by(self, *names) -> str | None:
        """The first exclude pattern that matches one of ``names``, else None."""
        for name in names:
            if not name:
                continue
            for pattern in self.exclude:
                if fnmatch.fnmatchcase(_base_name(name), pattern):
                    return pattern
        return None


def load_corpus_config(path=DEFAULT_CONFIG_PATH) -> CorpusConfig:
    """Read a corpus YAML file; relative paths in it are taken from the repository root."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding='utf-8')) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f'cannot read corpus config {path}: {err}') from err
    if not isinstance(raw, dict):
        raise ValueError(f'{path}: expected a mapping of options, got {type(raw).__name__}')
    known = {f.name for f in fields(CorpusConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f'{path}: unknown option(s) {unknown}; known: {sorted(known)}')
    for key in ('cache_dir', 'out_dir'):
        if key in raw:
            raw[key] = work_dir() / raw[key]
    if 'parallel' in raw:
        try:
            root = work_dir()
            raw['parallel'] = tuple(ParallelFiles(root / p['source'], root / p['target'])
                                    for p in raw['parallel'])
        except (TypeError, KeyError) as err:
            raise ValueError(f'{path}: parallel must be a list of {{source, target}}') from err
    for key in ('packages', 'valid_packages', 'test_packages', 'exclude'):
        if raw.get(key) is None and key in raw:
            raw[key] = ()
    return CorpusConfig(**raw)


def _base_name(package: str) -> str:
    """``bash:amd64`` -> ``bash``."""
    return package.split(':')[0]


# --- reading catalogs ------------------------------------------------------------------


def read_catalog(path) -> list[tuple[str, str]]:
    """(source, translation) pairs of a .mo, .po or .qm catalog (see the readers)."""
    suffix = Path(path).suffix
    reader = {'.mo': read_mo, '.po': read_po, '.qm': read_qm}.get(suffix)
    if reader is None:
        raise ValueError(f'{path}: not a catalog (.mo, .po or .qm)')
    return reader(path)


def read_mo(path) -> list[tuple[str, str]]:
    r"""Return the (msgid, msgstr) pairs of a compiled gettext catalog, header included.

    Context is kept as gettext encodes it (``ctxt\x04msgid``); plural entries
    give their singular msgid and first msgstr.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 28:
        raise ValueError(f'{path}: too short for a .mo catalog')
    for order in ('<', '>'):
        magic, _revision, count, ids_at, strs_at = struct.unpack_from(f'{order}5I', data)
        if magic == 0x950412de:
            break
    else:
        raise ValueError(f'{path}: not a .mo catalog (bad magic number)')

    def strings(table_at):
        for i in range(count):
            length, offset = struct.unpack_from(f'{order}2I', data, table_at + 8 * i)
            if offset + length > len(data):
                raise ValueError(f'{path}: string {i} runs past the end of the file')
            yield data[offset:offset + length]

    try:
        raw = list(zip(strings(ids_at), strings(strs_at), strict=True))
    except struct.error as err:
        raise ValueError(f'{path}: truncated .mo catalog: {err}') from err
    charset = 'utf-8'
    for msgid, msgstr in raw:
        if msgid == b'':
            charset = _header_charset(msgstr) or charset
    try:
        return [(msgid.split(b'\0')[0].decode(charset), msgstr.split(b'\0')[0].decode(charset))
                for msgid, msgstr in raw]
    except (LookupError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot decode as {charset}: {err}') from err


def _header_charset(header: bytes) -> str | None:
    found = re.search(rb'charset=([\w.-]+)', header)
    if found and found.group(1).decode('ascii').upper() != 'CHARSET':
        return found.group(1).decode('ascii')
    return None


_PO_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', '\\': '\\', 'a': '\a', 'b': '\b',
               'f': '\f', 'v': '\v'}
_PO_KEYWORD_RE = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+"(.*)"\s*$')


def _po_unescape(text):
    return re.sub(r'\\(.)', lambda m: _PO_ESCAPES.get(m.group(1), m.group(1)), text)


def read_po(path) -> list[tuple[str, str]]:
    r"""Return the (msgid, msgstr) pairs of a gettext source catalog, header included.

    Like ``read_mo``: context as ``ctxt\x04msgid``, plural entries as their
    singular forms. Entries flagged fuzzy (a guess that no translator
    confirmed) come back untranslated; obsolete ``#~`` entries are skipped.
    """
    path = Path(path)
    data = path.read_bytes()
    header = re.search(rb'msgid ""\s*\nmsgstr ""\s*\n((?:\s*".*"\s*\n)*)', data)
    charset = (_header_charset(header.group(1)) if header else None) or 'utf-8'
    try:
        lines = _lines(data.decode(charset))
    except (LookupError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot decode as {charset}: {err}') from err

    entries = []
    entry, last, fuzzy = {}, None, False

    def flush():
        nonlocal entry, last, fuzzy
        if 'msgid' in entry:
            msgid = entry['msgid']
            if 'msgctxt' in entry:
                msgid = entry['msgctxt'] + '\x04' + msgid
            msgstr = entry.get('msgstr', entry.get('msgstr[0]', ''))
            entries.append((msgid, '' if fuzzy and msgid else msgstr))
        entry, last, fuzzy = {}, None, False

    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            flush()
        elif line.startswith('#'):
            if 'msgid' in entry:
                flush()   # a comment starts the next entry
            if line.startswith('#,') and 'fuzzy' in line:
                fuzzy = True
        elif line.startswith('"') and line.endswith('"') and last is not None:
            entry[last] += _po_unescape(line[1:-1])
        else:
            match = _PO_KEYWORD_RE.match(line)
            if match is None:
                raise ValueError(f'{path}:{number}: not a .po line: {line[:60]!r}')
            keyword = match.group(1)
            if keyword in ('msgctxt', 'msgid') and 'msgid' in entry:
                flush()
            entry[keyword] = _po_unescape(match.group(3))
            last = keyword
    flush()
    return entries


QM_MAGIC = bytes((0x3C, 0xB8, 0x64, 0x18, 0xCA, 0xEF, 0x9C, 0x95,
                  0xCD, 0x21, 0x1C, 0xBF, 0x60, 0xA1, 0xBD, 0xDD))
_QM_MESSAGES = 0x69
_QM_END, _QM_SOURCE16, _QM_TRANSLATION, _QM_CONTEXT16, _QM_OBSOLETE1 = 1, 2, 3, 4, 5
_QM_SOURCE, _QM_CONTEXT, _QM_COMMENT = 6, 7, 8


def read_qm(path) -> list[tuple[str, str]]:
    """Return the (source text, translation) pairs of a compiled Qt catalog.

    A message whose source text the catalog does not store (``lrelease``
    can strip them) cannot be paired and is left out; numerus forms give
    their first translation.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(QM_MAGIC):
        raise ValueError(f'{path}: not a .qm catalog (bad magic number)')
    messages, at = b'', len(QM_MAGIC)
    while at + 5 <= len(data):
        tag, length = data[at], struct.unpack_from('>I', data, at + 1)[0]
        if tag == _QM_MESSAGES:
            messages = data[at + 5:at + 5 + length]
        at += 5 + length

    entries, source, translation, at = [], None, None, 0
    try:
        while at < len(messages):
            tag = messages[at]
            at += 1
            if tag == _QM_END:
                if source is not None and translation is not None:
                    entries.append((source, translation))
                source = translation = None
                continue
            if tag == _QM_OBSOLETE1:
                at += 4
                continue
            if tag not in (_QM_TRANSLATION, _QM_SOURCE16, _QM_CONTEXT16, _QM_SOURCE,
                           _QM_CONTEXT, _QM_COMMENT):
                raise ValueError(f'unknown message tag {tag} at byte {at - 1}')
            length = struct.unpack_from('>I', messages, at)[0]
            at += 4
            if tag == _QM_TRANSLATION:
                if length == 0xFFFFFFFF:
                    continue   # a null translation
                if translation is None:
                    translation = messages[at:at + length].decode('utf-16-be')
            elif tag == _QM_SOURCE:
                source = messages[at:at + length].decode('utf-8')
            elif tag == _QM_SOURCE16:
                source = messages[at:at + length].decode('utf-16-be')
            at += length
    except (struct.error, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f'{path}: broken .qm message table: {err}') from err
    return entries


def read_parallel(files: ParallelFiles) -> list[tuple[str, str]]:
    """Aligned lines of two plain-text files."""
    sides = []
    for path in (files.source, files.target):
        try:
            sides.append(_lines(Path(path).read_text(encoding='utf-8')))
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f'cannot read parallel text file {path}: {err}') from err
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f'{files.source} has {len(sides[0])} lines but {files.target} has '
                         f'{len(sides[1])}: parallel files must be aligned line by line')
    return list(zip(*sides, strict=True))


def _lines(text: str) -> list[str]:
    """Lines ended by a newline only.

    ``str.splitlines`` also splits at U+0085 and U+2028, which can sit inside
    a catalog string or a sentence.
    """
    lines = text.replace('\r\n', '\n').split('\n')
    return lines[:-1] if lines and lines[-1] == '' else lines


def is_catalog_path(path) -> bool:
    """Whether a path (inside a package) names a German catalog."""
    return CATALOG_RE.search(str(PurePosixPath(path))) is not None


def find_catalogs(tree) -> list[Path]:
    """German catalogs under an extracted package tree, in path order."""
    tree = Path(tree)
    return sorted(p for p in tree.rglob('*')
                  if p.is_file() and is_catalog_path('/' + p.relative_to(tree).as_posix()))


# --- cleaning --------------------------------------------------------------------------


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER_RE.findall(text)


def strip_accelerator(text: str) -> str:
    """Remove the keyboard mnemonic marker if there is exactly one (see module doc)."""
    protected = [m.span() for m in PLACEHOLDER_RE.finditer(text)]

    def is_marker(i):
        before = text[i - 1] if i > 0 else ' '
        if any(start <= i < end for start, end in protected) or before == text[i]:
            return False
        if text[i] == '&':
            return not _ENTITY_RE.match(text, i)
        # JOB_SPEC, LC_ALL: an upper-case identifier, not a mnemonic.
        return not (text[i] == '_' and before.isupper() and text[i + 1].isupper())

    hits = [m.start() for m in _ACCELERATOR_RE.finditer(text) if is_marker(m.start())]
    if len(hits) != 1:
        return text
    return text[:hits[0]] + text[hits[0] + 1:]


def normalize_text(text: str) -> str:
    """NFC and single spaces: one sentence per line, one spelling per character."""
    return ' '.join(unicodedata.normalize('NFC', text).split())


def source_key(text: str) -> str:
    """The key under which near-identical sources count as one across splits.

    Lower case, words only (punctuation, ellipses and accelerator markers
    ignored), every placeholder alike: ``Open %s…``, ``open {0}`` and
    ``_Open %d`` share a key.
    """
    text = strip_accelerator(PLACEHOLDER_RE.sub(' 0 ', text))
    return ' '.join(_WORD_RE.findall(text.casefold()))


def clean_pair(source: str, target: str, config: CorpusConfig, catalog: bool = True):
    """Return the cleaned (source, target), or the drop reason as a string.

    ``catalog`` turns on the gettext-only rules (context, accelerators).
    """
    if catalog:
        if source.split('\x04')[-1] == '':
            return 'header'
        if target == '':
            return 'untranslated'
        source = strip_accelerator(source.split('\x04')[-1])
        target = strip_accelerator(target)
    source, target = normalize_text(source), normalize_text(target)
    for text in (source, target):
        words = len(text.split())
        if words < config.min_words:
            return 'too_short'
        if words > config.max_words:
            return 'too_long'
    if source == target:
        return 'identical'
    if _placeholder_key(source) != _placeholder_key(target):
        return 'placeholder_mismatch'
    return source, target


def _placeholder_key(text):
    return sorted(_POSITIONAL_RE.sub('%', p) for p in placeholders(text))


def split_of(key: str, valid_ratio: float, test_ratio: float,
             test_incatalog_ratio: float = 0.0) -> str:
    """The split of a training package's string, from a hash of its key alone."""
    digest = hashlib.sha1(key.encode('utf-8')).digest()
    u = int.from_bytes(digest[:8], 'big') / 2**64
    for split, ratio in (('test', test_ratio), ('valid', valid_ratio),
                         ('test_incatalog', test_incatalog_ratio)):
        if u < ratio:
            return split
        u -= ratio
    return 'train'


# --- licenses --------------------------------------------------------------------------

# Free-text copyright files: the license names they mention, most specific first.
_LICENSE_HINTS = (
    ('LGPL', re.compile(r'GNU (?:Lesser|Library) General Public|\bLGPL', re.IGNORECASE)),
    ('GPL', re.compile(r'GNU General Public|\bGPL', re.IGNORECASE)),
    ('Apache', re.compile(r'Apache License', re.IGNORECASE)),
    ('MPL', re.compile(r'Mozilla Public License', re.IGNORECASE)),
    ('Artistic', re.compile(r'Artistic License', re.IGNORECASE)),
    ('BSD', re.compile(r'\bBSD\b|Redistributions of source code must retain')),
    ('Expat', re.compile(r'Permission is hereby granted, free of charge|\bMIT\b')),
    ('ISC', re.compile(r'Permission to use, copy, modify, and(?:/or)? distribute this software '
                       r'for any purpose')),
    ('Zlib', re.compile(r'Permission is granted to anyone to use this software for any purpose')),
    ('unlimited distribution', re.compile(r'unlimited (?:use and )?distribution', re.IGNORECASE)),
    ('CC-BY-SA', re.compile(r'Creative Commons', re.IGNORECASE)),
    ('public-domain', re.compile(r'public domain', re.IGNORECASE)),
)


def license_summary(copyright_text: str) -> str:
    """The license names of a Debian copyright file, the main files' first.

    Machine-readable files (DEP-5) give their ``License:`` short names; free
    text gives the names it mentions, marked '(free text)'. 'unknown' when
    neither says.
    """
    if re.match(r'\s*Format:.*(?:dep5|copyright-format)', copyright_text, re.IGNORECASE):
        names = []
        for paragraph in re.split(r'\n\s*\n', copyright_text):
            found = re.search(r'^License:[ \t]*(\S.*)$', paragraph, re.MULTILINE)
            if not found or not re.search(r'^Files:', paragraph, re.MULTILINE):
                continue
            name = found.group(1).strip()
            if re.search(r'^Files:\s*\*\s*$', paragraph, re.MULTILINE):
                names.insert(0, name)
            else:
                names.append(name)
        names = list(dict.fromkeys(names))
        if names:
            return ', '.join(names[:4]) + (', and others' if len(names) > 4 else '')
    copyright_text = ' '.join(copyright_text.split())   # phrases wrap across lines
    # "GPL" inside "LGPL" or "Lesser General Public" is not the GPL.
    without_lgpl = _LICENSE_HINTS[0][1].sub(' ', copyright_text)
    names = [name for name, pattern in _LICENSE_HINTS
             if pattern.search(without_lgpl if name == 'GPL' else copyright_text)]
    return ', '.join(names) + ' (free text)' if names else 'unknown'


def package_license(tree, package: str) -> str:
    """License summary of an extracted or installed package, from its copyright file."""
    doc_dir = Path(tree) / 'usr/share/doc' / _base_name(package)
    try:
        return license_summary((doc_dir / 'copyright').read_text(encoding='utf-8',
                                                                  errors='replace'))
    except OSError:
        if doc_dir.is_symlink():
            return f'unknown (its copyright file is in {doc_dir.readlink().name})'
        return 'unknown'


# --- fetching Debian packages ----------------------------------------------------------


def source_packages(names) -> dict[str, str]:
    """Source package of each binary package apt knows; ``{}`` without apt-cache.

    Read from the local package lists, so an excluded source is refused
    before anything is downloaded.
    """
    names = sorted({_base_name(n) for n in names})
    sources = {}
    for start in range(0, len(names), 500):
        try:
            result = subprocess.run(['apt-cache', 'show', '--no-all-versions',
                                     *names[start:start + 500]], capture_output=True, text=True)
        except FileNotFoundError:
            return {}
        sources.update(_control_sources(result.stdout))
    return sources


def installed_sources() -> dict[str, str]:
    """Source package of every installed binary package, from dpkg's database."""
    try:
        result = subprocess.run(['dpkg-query', '-W', '-f', '${Package}\t${source:Package}\n'],
                                capture_output=True, text=True)
    except FileNotFoundError:
        return {}
    pairs = (line.split('\t') for line in result.stdout.splitlines() if '\t' in line)
    return {name: source or name for name, source in pairs}


def _control_sources(text):
    sources, package, source = {}, None, None
    for line in [*text.splitlines(), '']:
        if not line.strip():
            if package:
                sources.setdefault(package, source or package)
            package = source = None
        elif line.startswith('Package:'):
            package = line.split(':', 1)[1].strip()
        elif line.startswith('Source:'):
            source = line.split(':', 1)[1].split()[0]
    return sources


def fetch_package(package: str, cache_dir: Path, config: CorpusConfig | None = None
                  ) -> tuple[Path, bool]:
    """Return the extracted German catalogs of ``package`` and whether they were cached.

    Only the German catalogs and the copyright file are extracted; the .deb
    is deleted afterwards. With ``config``, a package whose control data
    names an excluded source is refused before extraction.
    """
    name = _base_name(package)
    extract_dir = cache_dir / 'extract' / name
    if extract_dir.is_dir():
        return extract_dir, True
    debs_dir = cache_dir / 'debs'
    debs_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(glob.glob(str(debs_dir / f'{glob.escape(name)}_*.deb')))
    if not debs:
        debs = [_download(package, debs_dir)]
    deb = debs[-1]
    if config is not None:
        control = _deb_control(deb)
        pattern = config.excluded_by(name, control.get('Package'), control.get('Source'))
        if pattern is not None:
            Path(deb).unlink(missing_ok=True)
            raise CorpusError(f'{name} comes from an excluded source (matches {pattern!r})')
    partial = extract_dir.with_name(name + '.partial')
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    _extract_catalogs(deb, partial)
    partial.rename(extract_dir)  # only a complete extraction counts as cached
    for stale in debs:
        Path(stale).unlink(missing_ok=True)
    return extract_dir, False


def download_packages(packages, cache_dir: Path, progress: bool = False):
    """Download the .debs not yet in the cache, many per apt-get call."""
    debs_dir = cache_dir / 'debs'
    debs_dir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages
               if not (cache_dir / 'extract' / _base_name(p)).is_dir()
               and not glob.glob(str(debs_dir / f'{glob.escape(_base_name(p))}_*.deb'))]
    batches = [missing[i:i + _DOWNLOAD_BATCH] for i in range(0, len(missing), _DOWNLOAD_BATCH)]
    for batch in tqdm(batches, desc='downloading', unit='batch', disable=not progress):
        with tempfile.TemporaryDirectory(dir=debs_dir, prefix='.download-') as tmp:
            result = subprocess.run(['apt-get', 'download', '-q', *batch], cwd=tmp,
                                    capture_output=True, text=True)
            if result.returncode == 0:
                for deb in Path(tmp).glob('*.deb'):
                    deb.rename(debs_dir / deb.name)
        # A failed batch leaves its packages to fetch_package, one by one, whose
        # error names the package.


def _download(package, debs_dir):
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix='.download-') as tmp:
        result = subprocess.run(['apt-get', 'download', '-q', package], cwd=tmp,
                                capture_output=True, text=True)
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or ['unknown error'])[-1]
            if not _have_package_lists():
                raise CorpusError(f'apt-get download {package} failed: no package lists; '
                                  'run `apt-get update` (as root) and try again')
            if 'Unable to locate' in message or "Can't select" in message:
                raise CorpusError(f'apt-get download {package} failed ({message}): check the '
                                  'name, or run `apt-get update` (as root) if the lists are old')
            raise CorpusError(f'apt-get download {package} failed: {message}')
        (deb,) = Path(tmp).glob('*.deb')
        return str(deb.rename(debs_dir / deb.name))


def _have_package_lists():
    return any(Path('/var/lib/apt/lists').glob('*_Packages*'))


def _deb_control(deb) -> dict[str, str]:
    try:
        result = subprocess.run(['dpkg-deb', '-f', str(deb), 'Package', 'Source'],
                                check=True, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise CorpusError('dpkg-deb not found (needs a Debian-based system)') from err
    except subprocess.CalledProcessError as err:
        raise CorpusError(f'reading {deb} failed: {err.stderr.strip()}') from err
    fields_ = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(':')
        if value.strip():
            fields_[key.strip()] = value.split()[0]
    return fields_


def _extract_catalogs(deb, dest: Path):
    """Extract the German catalogs and the copyright file of ``deb`` into ``dest``."""
    try:
        process = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', str(deb)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as err:
        raise CorpusError('dpkg-deb not found (needs a Debian-based system)') from err
    extracted = {}
    try:
        with tarfile.open(fileobj=process.stdout, mode='r|') as tar:
            for member in tar:
                name = PurePosixPath(member.name.lstrip('./'))
                if member.issym() and DOC_DIR_RE.match(str(name)):
                    # A doc folder that links to another package's of the same source:
                    # the copyright file is there.
                    (dest / name).parent.mkdir(parents=True, exist_ok=True)
                    (dest / name).symlink_to(PurePosixPath(member.linkname).name)
                    continue
                wanted = is_catalog_path('/' + str(name)) or COPYRIGHT_RE.match(str(name))
                if not wanted or '..' in name.parts:
                    continue
                if member.isfile():
                    data = tar.extractfile(member).read()
                elif member.islnk() and member.linkname.lstrip('./') in extracted:
                    data = extracted[member.linkname.lstrip('./')]
                else:
                    continue   # a symbolic link: its target is read where it lives
                extracted[str(name)] = data
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(data)
        process.stdout.read()
    except tarfile.TarError as err:
        raise CorpusError(f'extracting {deb} failed: {err}') from err
    finally:
        process.stdout.close()
        error = process.stderr.read().decode('utf-8', 'replace').strip()
        process.stderr.close()
        if process.wait() != 0:
            raise CorpusError(f'extracting {deb} failed: {error}')


def installed_catalogs() -> dict[str, list[Path]]:
    """German catalogs of the installed packages, by package, from dpkg's file lists.

    dpkg lists a file even when a path-exclude rule kept it off the disk, so
    a caller can tell which packages to download on a stripped system.
    """
    try:
        result = subprocess.run(['dpkg-query', '-S', INSTALLED_CATALOG_PATTERN],
                                capture_output=True, text=True)
    except FileNotFoundError as err:
        raise CorpusError('base_system needs dpkg-query (a Debian-based system); '
                          'set base_system: false') from err
    catalogs = {}
    for line in result.stdout.splitlines():
        owners, _, path = line.partition(': ')
        if not path.endswith('.mo'):
            continue  # 'diversion by ...' lines
        for owner in owners.split(', '):
            catalogs.setdefault(owner.strip(), []).append(Path(path))
    return dict(sorted(catalogs.items()))


# --- building --------------------------------------------------------------------------


@dataclass
class CorpusStats:
    out_dir: Path
    splits: dict = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    packages: dict = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    excluded: dict = field(default_factory=dict)   # package -> the pattern that excluded it
    unreadable: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.splits.values())

    def to_dict(self) -> dict:
        return {'total': self.total, 'splits': self.splits,
                'dropped': {reason: self.dropped[reason] for reason in DROP_REASONS},
                'excluded': dict(sorted(self.excluded.items())),
                'unreadable': self.unreadable, 'packages': self.packages}


def build_corpus(config: CorpusConfig, progress: bool = True) -> CorpusStats:
    """Fetch, clean, deduplicate and split; write the split files and stats.json."""
    stats = CorpusStats(out_dir=config.out_dir)
    cleaned = {role: [] for role in ROLES}   # (source, target, origin) in reading order
    for origin, kind, entries in _sources(config, stats, progress):
        info = stats.packages[origin]
        info['kind'], info['role'] = kind, config.role_of(origin)
        info['catalogs'] += 1
        info['entries'] += len(entries)
        for source, target in entries:
            result = clean_pair(source, target, config, catalog=(kind != 'text'))
            if isinstance(result, str):
                stats.dropped[result] += 1
            else:
                cleaned[info['role']].append((*result, origin))

    by_split = {name: [] for name in SPLITS}
    for role in ROLES:
        for source, target, origin in _deduplicate(cleaned[role], stats.dropped):
            split = role if role != 'train' else split_of(
                source_key(source), config.valid_ratio, config.test_ratio,
                config.test_incatalog_ratio)
            by_split[split].append((source, target, origin))
    by_split = _claim_keys(by_split, stats.dropped)
    for info in stats.packages.values():
        info.update(dict.fromkeys(SPLITS, 0))
    for split, pairs in by_split.items():
        # Hash order: deterministic, and mixes the packages for anyone reading in order.
        pairs.sort(key=lambda pair: hashlib.sha1(pair[0].encode('utf-8')).digest())
        for _, _, origin in pairs:
            stats.packages[origin][split] += 1
    _write(config.out_dir, by_split, stats)
    return stats


def _claim_keys(by_split, dropped):
    """Keep each normalized source in the first split of SPLIT_PRIORITY that holds it."""
    claimed = set()
    kept = {}
    for split in SPLIT_PRIORITY:
        keys = set()
        kept[split] = []
        for pair in by_split[split]:
            key = source_key(pair[0])
            if key in claimed:
                dropped['held_out_overlap'] += 1
                continue
            keys.add(key)
            kept[split].append(pair)
        claimed |= keys
    return {split: kept[split] for split in SPLITS}


def _sources(config, stats, progress):
    """Yield (origin, kind, entries) per catalog or parallel file pair."""
    catalogs = []  # (origin, kind, path)
    wanted = [p for role in ROLES for p in config.packages_for(role)]
    known_sources = source_packages(wanted) if wanted else {}
    for package in wanted:
        source = known_sources.get(_base_name(package))
        pattern = config.excluded_by(package, source)
        if pattern is not None:
            raise CorpusError(f'{package} comes from the excluded source {source} '
                              f'(matches {pattern!r} in exclude)')
    to_fetch = list(dict.fromkeys(wanted))
    if config.base_system:
        installed = installed_catalogs()
        sources = installed_sources()
        configured = {_base_name(p) for p in to_fetch}
        for package, paths in installed.items():
            name = _base_name(package)
            pattern = config.excluded_by(name, sources.get(name))
            if pattern is not None:
                stats.excluded[name] = pattern   # never read, even though installed
            elif name in configured:
                continue   # read from the archive's .deb, the same on every machine
            elif all(p.is_file() for p in paths):
                catalogs += [(name, 'installed', p) for p in paths]
            else:
                to_fetch.append(package)  # stripped from this system: read the .deb instead

    download_packages(to_fetch, config.cache_dir, progress)

    def fetch(package):
        return package, *fetch_package(package, config.cache_dir, config)

    with ThreadPoolExecutor(_EXTRACT_WORKERS) as pool:
        fetched = list(tqdm(pool.map(fetch, to_fetch), total=len(to_fetch), desc='packages',
                            unit='pkg', disable=not progress))
    trees = {}
    for package, tree, _cached in fetched:
        name = _base_name(package)
        trees[name] = tree
        found = find_catalogs(tree)
        catalogs += [(name, 'deb', p) for p in found]
        if not found:   # listed, so that a configured package without catalogs shows
            stats.packages[name] = _package_info('deb', config.role_of(name),
                                                 package_license(tree, name))

    for origin, kind, path in tqdm(catalogs, desc='catalogs', unit='file', disable=not progress):
        if origin not in stats.packages:
            license_ = package_license(trees.get(origin, Path('/')), origin)
            stats.packages[origin] = _package_info(kind, config.role_of(origin), license_)
        pattern = config.excluded_by(Path(path).stem)
        if pattern is not None:
            stats.excluded[f'{origin}:{Path(path).name}'] = pattern
            continue
        try:
            entries = read_catalog(path)
        except (OSError, ValueError) as err:
            # Named inside its package: the cache's place on this disk says nothing.
            tree = trees.get(origin)
            stats.unreadable.append(str(err).replace(f'{tree}/', f'{origin}:/') if tree
                                    else str(err))
            continue
        yield origin, kind, entries
    for files in config.parallel:
        origin = Path(files.source).name
        stats.packages.setdefault(origin, _package_info('text', 'train', 'unknown'))
        yield origin, 'text', read_parallel(files)


def _package_info(kind, role, license_):
    return {'kind': kind, 'role': role, 'license': license_, 'catalogs': 0, 'entries': 0}


def _deduplicate(cleaned, dropped):
    """One target per source: the most frequent, ties broken by string order."""
    pair_counts = Counter((source, target) for source, target, _ in cleaned)
    first_origin = {}
    targets = {}
    for source, target, origin in cleaned:
        first_origin.setdefault((source, target), origin)
        targets.setdefault(source, Counter())[target] += 1
    dropped['duplicate'] += sum(n - 1 for n in pair_counts.values())
    kept = []
    for source, counts in targets.items():
        best = min(counts, key=lambda target: (-counts[target], target))
        dropped['ambiguous_source'] += sum(counts.values()) - counts[best]
        kept.append((source, best, first_origin[(source, best)]))
    return kept


def _write(out_dir, by_split, stats):
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, pairs in by_split.items():
        stats.splits[split] = len(pairs)
        for index, lang in enumerate(('en', 'de')):
            write_atomic(out_dir / f'{split}.{lang}',
                         ''.join(pair[index] + '\n' for pair in pairs).encode('utf-8'))
    write_atomic(out_dir / 'stats.json', _stats_json(stats.to_dict()).encode('utf-8'))


def _stats_json(stats: dict) -> str:
    """Indented JSON with one short line per package, so the file stays small and diffable.

    A package's split counts that are zero are left out.
    """
    packages = stats.pop('packages')
    head = json.dumps(stats, indent=2, ensure_ascii=False)
    lines = []
    for name, info in sorted(packages.items()):
        info = {k: v for k, v in info.items() if k not in SPLITS or v}
        lines.append(f'    {json.dumps(name, ensure_ascii=False)}: '
                     f'{json.dumps(info, ensure_ascii=False, separators=(",", ":"))}')
    body = '{\n' + ',\n'.join(lines) + '\n  }' if lines else '{}'
    return head[:-2] + f',\n  "packages": {body}\n}}\n'


def with_overrides(config: CorpusConfig, **overrides) -> CorpusConfig:
    """``config`` with the options that are not None replaced."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
