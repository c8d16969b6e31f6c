"""``dyn-dnn-ros design report``: design-space choices the operating points use, and the rest."""

from pathlib import Path
import sys

from dyn_dnn_ros.commands.latency import RUN_DIR
from dyn_dnn_ros.share import config_path, library_path, portable_path

HELP = 'which design-space choices the library uses; write the reduced space'
CONFIG_DIR = config_path()


def add_arguments(parser):
    parser.add_argument('--library', type=Path,
                        default=library_path('translation', 'cpu', 'torch'),
                        help='operating-point library (default: %(default)s)')
    parser.add_argument('--space', type=Path, default=None,
                        help='design space (default: the one recorded in the library, else '
                             'config/design_space.yaml)')
    parser.add_argument('--out', type=Path, default=RUN_DIR / 'design_space_reduced.yaml',
                        help='reduced design space YAML (default: %(default)s; the shipped '
                             'ones are config/generated/design_space_reduced_DEVICE.yaml)')


def run(args) -> int:
    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.translation.design.report import (
        choice_usage,
        format_usage,
        reduced_space,
        write_reduced_space,
    )
    from dyn_dnn_ros.translation.design_space import DesignSpace
    try:
        library = OperatingPointLibrary.load(args.library)
        if library.target != 'translation':
            raise ValueError(f'{args.library}: a {library.target} library, not a translation '
                             'one')
        if args.space is not None:
            space = DesignSpace.from_yaml(args.space)
        elif 'space' in library.meta:
            space = DesignSpace.from_dict(library.meta['space'], source=f'{args.library} meta')
        else:
            space = DesignSpace.from_yaml(CONFIG_DIR / 'design_space.yaml')
        usage = choice_usage(library, space)
        reduced = reduced_space(space, usage)
        write_reduced_space(args.out, reduced, portable_path(args.library))
    except ValueError as err:
        print(f'dyn-dnn-ros design-report: {err}', file=sys.stderr)
        return 2
    print(format_usage(usage, len(library.points)))
    print(f'wrote {args.out}')
    return 0
