"""Fetching Debian packages: ``apt-get download``, extraction, installed catalogs.

The configured packages are downloaded with ``apt-get download`` (many per
call); only their German catalogs and copyright file are extracted into the
cache (``cache_dir/extract/<package>``), so a second run is fast and an
interrupted run resumes, and the .deb is deleted. ``installed_catalogs`` lists
the German catalogs of the packages installed on this machine, from dpkg.
"""

import glob
from pathlib import Path, PurePosixPath
import re
import shutil
import subprocess
import tarfile
import tempfile

from tqdm import tqdm

from dyn_dnn_ros.translation.corpus.catalogs import is_catalog_path
from dyn_dnn_ros.translation.corpus.config import CorpusConfig, CorpusError, _base_name

COPYRIGHT_RE = re.compile(r'^usr/share/doc/[^/]+/copyright$')
DOC_DIR_RE = re.compile(r'^usr/share/doc/[^/]+$')
INSTALLED_CATALOG_PATTERN = '*/de/LC_MESSAGES/*.mo'
_DOWNLOAD_BATCH = 50       # packages per apt-get download call


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
