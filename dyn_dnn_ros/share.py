"""Where the package's data lives: config/, launch/ and models/.

A source checkout (editable install, tests, the Makefile) uses its own files
so that edits take effect without reinstalling. An installed package (colcon
on a ROS host, or a regular pip install) finds them through the ament index,
in ``<prefix>/share/dyn_dnn_ros``.
"""

from functools import lru_cache
from pathlib import Path

PACKAGE = 'dyn_dnn_ros'


@lru_cache(maxsize=1)
def share_dir() -> Path:
    source_root = Path(__file__).resolve().parents[1]
    if (source_root / 'package.xml').is_file() and (source_root / 'config').is_dir():
        return source_root
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
