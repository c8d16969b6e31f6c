"""Build an English->German parallel corpus from Debian's German translation catalogs.

Debian packages ship their German translations as gettext catalogs
(``.../de/LC_MESSAGES/*.mo``, sometimes the ``.po`` source) or Qt catalogs
(``*_de.qm``): the English source string and its German translation.
``build_corpus`` downloads the configured packages with ``apt-get download``,
extracts only their German catalogs and copyright file into a cache (so a
second run is fast and an interrupted run resumes), adds the catalogs of the
packages installed on this machine, cleans the pairs and writes four splits:

    out_dir/{train,valid,test,test_incatalog}.{en,de}   aligned, UTF-8, one pair per line
    out_dir/stats.json      counts per package and split, licenses, drops per reason

``valid`` and ``test`` are whole packages that training never sees, and
excluded packages are never read. One module per step:

    config     ``CorpusConfig`` (packages, held-out packages, exclude patterns, limits)
               and its YAML file; the exclusion rule
    catalogs   readers of ``.mo``, ``.po`` and ``.qm`` catalogs and of aligned plain text
    cleaning   the cleaning rules, the cross-split key and the hash split
    licenses   license names from Debian copyright files
    debian     ``apt-get download``, extraction of the German catalogs, installed catalogs
    build      ``build_corpus``: sources, cleaning, deduplication, splits, files and stats;
               the split rules
"""

from dyn_dnn_ros.translation.corpus.build import (
    DROP_REASONS,
    SPLIT_PRIORITY,
    SPLITS,
    CorpusStats,
    build_corpus,
)
from dyn_dnn_ros.translation.corpus.catalogs import (
    CATALOG_RE,
    QM_MAGIC,
    find_catalogs,
    is_catalog_path,
    read_catalog,
    read_mo,
    read_parallel,
    read_po,
    read_qm,
)
from dyn_dnn_ros.translation.corpus.cleaning import (
    PLACEHOLDER_RE,
    clean_pair,
    normalize_text,
    placeholders,
    source_key,
    split_of,
    strip_accelerator,
)
from dyn_dnn_ros.translation.corpus.config import (
    DEFAULT_CACHE_DIR,
    DEFAULT_CONFIG_PATH,
    DEFAULT_OUT_DIR,
    DEFAULT_PACKAGES,
    ROLES,
    CorpusConfig,
    CorpusError,
    ParallelFiles,
    load_corpus_config,
    with_overrides,
)
from dyn_dnn_ros.translation.corpus.debian import (
    COPYRIGHT_RE,
    DOC_DIR_RE,
    INSTALLED_CATALOG_PATTERN,
    download_packages,
    fetch_package,
    installed_catalogs,
    installed_sources,
    source_packages,
)
from dyn_dnn_ros.translation.corpus.licenses import license_summary, package_license

__all__ = [
    'CATALOG_RE', 'COPYRIGHT_RE', 'DEFAULT_CACHE_DIR', 'DEFAULT_CONFIG_PATH', 'DEFAULT_OUT_DIR',
    'DEFAULT_PACKAGES', 'DOC_DIR_RE', 'DROP_REASONS', 'INSTALLED_CATALOG_PATTERN',
    'PLACEHOLDER_RE', 'QM_MAGIC', 'ROLES', 'SPLITS', 'SPLIT_PRIORITY', 'CorpusConfig',
    'CorpusError', 'CorpusStats', 'ParallelFiles', 'build_corpus', 'clean_pair',
    'download_packages', 'fetch_package', 'find_catalogs', 'installed_catalogs',
    'installed_sources', 'is_catalog_path', 'license_summary', 'load_corpus_config',
    'normalize_text', 'package_license', 'placeholders', 'read_catalog', 'read_mo',
    'read_parallel', 'read_po', 'read_qm', 'source_key', 'source_packages', 'split_of',
    'strip_accelerator', 'with_overrides',
]
