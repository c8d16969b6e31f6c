r"""Build an English->German parallel corpus from Debian's German gettext catalogs.

Every Debian package with a user interface ships its German translation as a
compiled gettext catalog (``.../de/LC_MESSAGES/*.mo``): msgid is the English
source, msgstr the German target. ``build_corpus`` downloads the configured
packages with ``apt-get download``, extracts them with ``dpkg -x`` into a cache
(so a second run is fast and an interrupted run resumes), adds the catalogs of
the packages installed on this machine, cleans the pairs and writes a
deterministic train/valid/test split:

    out_dir/{train,valid,test}.{en,de}   aligned, UTF-8, one sentence per line
    out_dir/stats.json                   counts per package and split, drops per reason

Cleaning rules, in order (a dropped entry is counted under the reason in brackets):
    * the catalog header (empty msgid) is skipped [header]; untranslated entries [untranslated];
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
    * repeated (source, target) pairs are kept once [duplicate]; a source with several
      targets keeps its most frequent target, ties broken by string order [ambiguous_source].

The split hashes the source only, so a sentence never lands in two splits.
"""

from collections import Counter
from dataclasses import dataclass, field, fields, replace
import glob
import hashlib
import json
from pathlib import Path
import re
import shutil
import struct
import subprocess
import tempfile
import unicodedata

from tqdm import tqdm
import yaml

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.share import share_dir

REPO_ROOT = share_dir()   # a source checkout: its root; installed: the share folder
DEFAULT_CONFIG_PATH = REPO_ROOT / 'config' / 'corpus.yaml'
DEFAULT_CACHE_DIR = REPO_ROOT / 'data' / 'cache'
DEFAULT_OUT_DIR = REPO_ROOT / 'data' / 'corpus'
DEFAULT_PACKAGES = (
    'libreoffice-l10n-de', 'gimp-data', 'inkscape', 'gnome-control-center-data',
    'evolution-common',
)
SPLITS = ('train', 'valid', 'test')
DROP_REASONS = ('header', 'untranslated', 'too_short', 'too_long', 'identical',
                'placeholder_mismatch', 'duplicate', 'ambiguous_source')
CATALOG_GLOB = '**/de/LC_MESSAGES/*.mo'

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


class CorpusError(RuntimeError):
    """A corpus source could not be fetched; the message says what to do."""


@dataclass(frozen=True)
class ParallelFiles:
    """Aligned plain-text files: line i of ``source`` translates to line i of ``target``."""

    source: Path
    target: Path


@dataclass(frozen=True)
class CorpusConfig:
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    base_system: bool = True
    parallel: tuple[ParallelFiles, ...] = ()
    cache_dir: Path = DEFAULT_CACHE_DIR
    out_dir: Path = DEFAULT_OUT_DIR
    min_words: int = 2
    max_words: int = 40
    valid_ratio: float = 0.025
    test_ratio: float = 0.025

    def __post_init__(self):
        if isinstance(self.packages, str):
            raise ValueError(f'packages must be a list of names, got the string {self.packages!r}')
        object.__setattr__(self, 'packages', tuple(self.packages))
        object.__setattr__(self, 'parallel', tuple(self.parallel))
        object.__setattr__(self, 'cache_dir', Path(self.cache_dir))
        object.__setattr__(self, 'out_dir', Path(self.out_dir))
        for name in self.packages:
            if not isinstance(name, str) or not re.fullmatch(r'[a-z0-9][a-z0-9+.-]*(:\w+)?', name):
                raise ValueError(f'packages: {name!r} is not a Debian package name')
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f'min_words={self.min_words}, max_words={self.max_words}: '
                             'need 1 <= min_words <= max_words')
        for name in ('valid_ratio', 'test_ratio'):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f'{name}={getattr(self, name)} must be in [0, 1)')
        if self.valid_ratio + self.test_ratio >= 1.0:
            raise ValueError(f'valid_ratio + test_ratio = {self.valid_ratio + self.test_ratio} '
                             'leaves no training data')
        if not (self.packages or self.base_system or self.parallel):
            raise ValueError('no corpus source: give packages, base_system or parallel files')


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
            raw[key] = REPO_ROOT / raw[key]
    if 'parallel' in raw:
        try:
            raw['parallel'] = tuple(ParallelFiles(REPO_ROOT / p['source'], REPO_ROOT / p['target'])
                                    for p in raw['parallel'])
        except (TypeError, KeyError) as err:
            raise ValueError(f'{path}: parallel must be a list of {{source, target}}') from err
    return CorpusConfig(**raw)


# --- reading catalogs ------------------------------------------------------------------


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

    raw = list(zip(strings(ids_at), strings(strs_at), strict=True))
    charset = 'utf-8'
    for msgid, msgstr in raw:
        if msgid == b'':
            found = re.search(rb'charset=([\w.-]+)', msgstr)
            if found and found.group(1).decode('ascii').upper() != 'CHARSET':
                charset = found.group(1).decode('ascii')
    try:
        return [(msgid.split(b'\0')[0].decode(charset), msgstr.split(b'\0')[0].decode(charset))
                for msgid, msgstr in raw]
    except (LookupError, UnicodeDecodeError) as err:
        raise ValueError(f'{path}: cannot decode as {charset}: {err}') from err


def read_parallel(files: ParallelFiles) -> list[tuple[str, str]]:
    """Aligned lines of two plain-text files."""
    sides = []
    for path in (files.source, files.target):
        try:
            sides.append(Path(path).read_text(encoding='utf-8').splitlines())
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f'cannot read parallel text file {path}: {err}') from err
    if len(sides[0]) != len(sides[1]):
        raise ValueError(f'{files.source} has {len(sides[0])} lines but {files.target} has '
                         f'{len(sides[1])}: parallel files must be aligned line by line')
    return list(zip(*sides, strict=True))


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


def split_of(source: str, valid_ratio: float, test_ratio: float) -> str:
    """'train', 'valid' or 'test', from a hash of the source sentence alone."""
    digest = hashlib.sha1(source.encode('utf-8')).digest()
    u = int.from_bytes(digest[:8], 'big') / 2**64
    if u < test_ratio:
        return 'test'
    if u < test_ratio + valid_ratio:
        return 'valid'
    return 'train'


# --- fetching Debian packages ----------------------------------------------------------


def fetch_package(package: str, cache_dir: Path) -> tuple[Path, bool]:
    """Return the extracted tree of ``package`` and whether it was already cached."""
    name = package.split(':')[0]
    extract_dir = cache_dir / 'extract' / name
    if extract_dir.is_dir():
        return extract_dir, True
    debs_dir = cache_dir / 'debs'
    debs_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(glob.glob(str(debs_dir / f'{glob.escape(name)}_*.deb')))
    if not debs:
        debs = [_download(package, debs_dir)]
    partial = extract_dir.with_name(name + '.partial')
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _run(['dpkg', '-x', debs[-1], str(partial)], f'extracting {debs[-1]}')
    partial.rename(extract_dir)  # only a complete extraction counts as cached
    return extract_dir, False


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


def _run(command, what):
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise CorpusError(f'{what}: {command[0]} not found (needs a Debian-based system)') from err
    except subprocess.CalledProcessError as err:
        raise CorpusError(f'{what} failed: {err.stderr.strip()}') from err


def installed_catalogs() -> dict[str, list[Path]]:
    """German catalogs of the installed packages, by package, from dpkg's file lists.

    dpkg lists a file even when a path-exclude rule kept it off the disk, so
    a caller can tell which packages to download on a stripped system.
    """
    try:
        result = subprocess.run(['dpkg-query', '-S', '*/de/LC_MESSAGES/*.mo'],
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
    unreadable: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.splits.values())

    def to_dict(self) -> dict:
        return {'total': self.total, 'splits': self.splits, 'packages': self.packages,
                'dropped': {reason: self.dropped[reason] for reason in DROP_REASONS},
                'unreadable': self.unreadable}


def build_corpus(config: CorpusConfig, progress: bool = True) -> CorpusStats:
    """Fetch, clean, deduplicate and split; write the split files and stats.json."""
    stats = CorpusStats(out_dir=config.out_dir)
    cleaned = []  # (source, target, origin) in source order, so dedup is deterministic
    for origin, kind, entries in _sources(config, stats, progress):
        info = stats.packages.setdefault(origin, {'kind': kind, 'catalogs': 0, 'entries': 0})
        info['catalogs'] += 1
        info['entries'] += len(entries)
        for source, target in entries:
            result = clean_pair(source, target, config, catalog=(kind != 'text'))
            if isinstance(result, str):
                stats.dropped[result] += 1
            else:
                cleaned.append((*result, origin))

    pairs = _deduplicate(cleaned, stats.dropped)
    # Hash order: deterministic, and mixes the packages for anyone reading the files in order.
    pairs.sort(key=lambda pair: hashlib.sha1(pair[0].encode('utf-8')).digest())
    by_split = {name: [] for name in SPLITS}
    for info in stats.packages.values():
        info.update(dict.fromkeys(SPLITS, 0))
    for source, target, origin in pairs:
        split = split_of(source, config.valid_ratio, config.test_ratio)
        by_split[split].append((source, target))
        stats.packages[origin][split] += 1
    _write(config.out_dir, by_split, stats)
    return stats


def _sources(config, stats, progress):
    """Yield (origin, kind, entries) per catalog or parallel file pair."""
    catalogs = []  # (origin, kind, path)
    installed = installed_catalogs() if config.base_system else {}
    to_fetch = list(dict.fromkeys(config.packages))
    for package, paths in installed.items():
        if all(p.is_file() for p in paths):
            catalogs += [(package.split(':')[0], 'installed', p) for p in paths]
        elif package.split(':')[0] not in to_fetch:
            to_fetch.append(package)  # stripped from this system: read the .deb instead
    bar = tqdm(to_fetch, desc='packages', unit='pkg', disable=not progress)
    for package in bar:
        bar.set_postfix_str(package)
        tree, cached = fetch_package(package, config.cache_dir)
        found = sorted(tree.glob(CATALOG_GLOB))
        if progress:
            tqdm.write(f'{package}: {len(found)} German catalog(s)'
                       f'{" (cached)" if cached else " (downloaded)"}')
        catalogs += [(package.split(':')[0], 'deb', p) for p in found]

    for origin, kind, path in tqdm(catalogs, desc='catalogs', unit='mo', disable=not progress):
        try:
            entries = read_mo(path)
        except (OSError, ValueError) as err:
            stats.unreadable.append(str(err))
            continue
        yield origin, kind, entries
    for files in config.parallel:
        yield Path(files.source).name, 'text', read_parallel(files)


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
    (out_dir / 'stats.json').write_text(json.dumps(stats.to_dict(), indent=2, ensure_ascii=False)
                                        + '\n', encoding='utf-8')


def with_overrides(config: CorpusConfig, **overrides) -> CorpusConfig:
    """``config`` with the options that are not None replaced."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
