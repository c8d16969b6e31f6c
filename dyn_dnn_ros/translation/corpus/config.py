"""What a corpus is built from, and with which limits: ``CorpusConfig`` and its YAML file.

Excluded packages (``exclude``: shell patterns matched against the binary
package name, its source package name and the catalog's file name) are never
downloaded, extracted or read, even when installed on this machine.
"""

from dataclasses import dataclass, fields, replace
import fnmatch
from pathlib import Path
import re

import yaml

from dyn_dnn_ros.share import config_path, data_path, work_dir
from dyn_dnn_ros.validation import require_fraction, require_int

DEFAULT_CONFIG_PATH = config_path('corpus.yaml')
DEFAULT_CACHE_DIR = data_path('cache')
DEFAULT_OUT_DIR = data_path('corpus')
DEFAULT_PACKAGES = (
    'libreoffice-l10n-de', 'gimp-data', 'inkscape', 'gnome-control-center-data',
    'evolution-common',
)
ROLES = ('train', 'valid', 'test')   # what a package is used for
_PACKAGE_NAME_RE = re.compile(r'[a-z0-9][a-z0-9+.-]*(:\w+)?')


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
    """Read a corpus YAML file; relative paths in it are taken from ``share.work_dir()``."""
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


def with_overrides(config: CorpusConfig, **overrides) -> CorpusConfig:
    """``config`` with the options that are not None replaced."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
