"""Where the package's files are: what it ships, and what its commands make.

Shipped (read): config/, launch/ and models/. A source checkout (editable
install, tests, the Makefile) uses its own files so that edits take effect
without reinstalling. An installed package (colcon on a ROS host, or a
regular pip install) finds them through the ament index, in
``<prefix>/share/dyn_dnn_ros``.

Made (written, then read back): runs/ (every command's output unless it is
given a path) and data/ (the corpus and its download cache). A source
checkout keeps them in its root, beside the shipped files; an installed
share folder is not the place to write, so there they are the current
folder's.
"""

from functools import lru_cache
from pathlib import Path

PACKAGE = 'dyn_dnn_ros'


@lru_cache(maxsize=1)
def source_root() -> Path | None:
    """The root of the source checkout this module runs from; None when installed."""
    root = Path(__file__).resolve().parents[1]
    if (root / 'package.xml').is_file() and (root / 'config').is_dir():
        return root
    return None


@lru_cache(maxsize=1)
def share_dir() -> Path:
    if source_root() is not None:
        return source_root()
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError as error:
        raise RuntimeError(f'{PACKAGE}: not a source checkout and ament_index_python is '
                           'missing, so the share folder cannot be found') from error
    return Path(get_package_share_directory(PACKAGE))


def config_path(*parts) -> Path:
    return share_dir().joinpath('config', *parts)


def library_path(target, device, engine=None) -> Path:
    """The shipped operating-point library of a target on a device, in config/generated/.

    ``engine`` names a library made for another engine than the device's default
    (``library_path('translation', 'cpu', 'torch')``).
    """
    suffix = f'_{engine}' if engine else ''
    return config_path('generated', f'operating_points_{target}_{device}{suffix}.yaml')


def model_path(*parts) -> Path:
    return share_dir().joinpath('models', *parts)


def launch_path(*parts) -> Path:
    return share_dir().joinpath('launch', *parts)


def work_dir() -> Path:
    """Where runs/ and data/ are: the source checkout's root, else the current folder."""
    return source_root() or Path.cwd()


def runs_path(*parts) -> Path:
    return work_dir().joinpath('runs', *parts)


def data_path(*parts) -> Path:
    return work_dir().joinpath('data', *parts)


def portable_path(path) -> Path:
    """``path`` as the package names it: relative when it is the package's, else absolute.

    A shipped file relative to the share folder (in a source checkout, the
    checkout's root); a file under ``runs/`` or ``data/`` relative to the
    folder that holds them. For paths recorded in files that travel (library
    meta, reports), which must not carry the folders of the machine they were
    made on.
    """
    path = Path(path).resolve()
    share = share_dir().resolve()
    if path.is_relative_to(share):
        return path.relative_to(share)
    work = work_dir().resolve()
    for made in (work / 'runs', work / 'data'):
        if path.is_relative_to(made):
            return path.relative_to(work)
    return path
