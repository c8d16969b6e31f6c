"""``build_corpus``: fetch, clean, deduplicate and split; write the splits and stats.json.

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
"""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path

from tqdm import tqdm

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.corpus.catalogs import find_catalogs, read_catalog, read_parallel
from dyn_dnn_ros.translation.corpus.cleaning import clean_pair, source_key, split_of
from dyn_dnn_ros.translation.corpus.config import ROLES, CorpusConfig, CorpusError, _base_name
from dyn_dnn_ros.translation.corpus.debian import (
    download_packages,
    fetch_package,
    installed_catalogs,
    installed_sources,
    source_packages,
)
from dyn_dnn_ros.translation.corpus.licenses import package_license

SPLITS = ('train', 'valid', 'test', 'test_incatalog')
# Which split keeps a normalized source that several splits hold: the first.
SPLIT_PRIORITY = ('test', 'valid', 'test_incatalog', 'train')
DROP_REASONS = ('header', 'untranslated', 'too_short', 'too_long', 'identical',
                'placeholder_mismatch', 'duplicate', 'ambiguous_source', 'held_out_overlap')
_EXTRACT_WORKERS = 2       # dpkg-deb decompresses in its own process


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
