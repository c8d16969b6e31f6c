"""The ``dyn-dnn-ros`` command-line tool: commands grouped by what they work on.

``dyn-dnn-ros GROUP COMMAND [options]``, e.g. ``dyn-dnn-ros design sweep``.
Every command also runs under its single-word name without the group
(``dyn-dnn-ros sweep``), which scripts written against a flat command list
keep using; those names are listed in each group's help, not in the main one.
"""

import argparse
from dataclasses import dataclass
import importlib
import importlib.util
import sys
import textwrap

PROG = 'dyn-dnn-ros'


@dataclass(frozen=True)
class Command:
    """One command: where it lives in the tool and which module runs it.

    ``help`` lives here rather than in the modules so that listing commands
    imports nothing heavy (most modules import torch).
    """

    group: str
    name: str
    module: str           # module under dyn_dnn_ros.commands
    help: str
    alias: str | None = None   # single-word name that also runs it; None: only GROUP NAME

    @property
    def spelling(self) -> str:
        return f'{self.group} {self.name}'


# group -> what its commands work on, in the order the help lists them.
# The help prints each as written: one line, under 80 characters.
GROUPS = {
    'translation': 'English->German translation: data, SuperTransformer, BLEU, beam widths',
    'design': 'the design pipeline that makes a translation operating-point library',
    'perception': 'WeNet image classification: training and design-space exploration',
    'system': 'the running system: resource monitor, all nodes, adaptation demo',
}

COMMANDS = (
    Command('translation', 'corpus', 'corpus',
            'build the English->German corpus from Debian catalogs', alias='corpus'),
    Command('translation', 'tokenizer', 'tokenizer',
            'train the joint SentencePiece model', alias='tokenizer'),
    Command('translation', 'train', 'train',
            'train the SuperTransformer (HAT + sandwich rule)', alias='train'),
    Command('translation', 'translate', 'translate',
            'translate stdin to stdout with a sub-network', alias='translate'),
    Command('translation', 'evaluate', 'evaluate',
            'BLEU of a sub-network on the test split', alias='evaluate'),
    Command('translation', 'calibrate-beam', 'calibrate_beam',
            'propose dynamic beam-width thresholds from validation', alias='calibrate-beam'),
    Command('translation', 'export', 'export',
            'write CTranslate2 models of operating points or sub-networks'),
    Command('translation', 'vocabulary-map', 'vocabulary_map',
            "write the CTranslate2 engine's vocabulary map from the training corpus"),
    Command('design', 'latency', 'latency',
            'measure the latency dataset of random sub-networks', alias='latency'),
    Command('design', 'predictor', 'predictor',
            'fit the latency predictor to a latency dataset', alias='predictor'),
    Command('design', 'search', 'search',
            'evolutionary search under one latency limit', alias='search'),
    Command('design', 'sweep', 'sweep',
            'searches over latency limits -> operating-point library', alias='sweep'),
    Command('design', 'ctranslate2-library', 'ctranslate2_library',
            'library for the CTranslate2 engine, timed on it'),
    Command('design', 'ctranslate2-retime', 'ctranslate2_retime',
            "a CTranslate2 library's points timed again on this machine"),
    Command('design', 'report', 'design_report',
            'design-space choices the library uses; reduced space', alias='design-report'),
    Command('perception', 'train', 'wenet_train',
            'train the WeNet CNN on handwritten digits', alias='wenet-train'),
    Command('perception', 'dse', 'wenet_dse',
            'greedy design-space exploration of WeNet', alias='wenet-dse'),
    Command('system', 'monitor', 'monitor',
            'print this machine\'s hardware availability readings', alias='monitor'),
    Command('system', 'bringup', 'bringup',
            'start the whole system in one process', alias='bringup'),
    Command('system', 'demo', 'demo',
            'adaptation demo: dynamic operating points vs a static model', alias='demo'),
)


def _available_commands(commands=COMMANDS):
    """Commands whose module is present in this installation."""
    return tuple(
        command for command in commands
        if importlib.util.find_spec(f'dyn_dnn_ros.commands.{command.module}') is not None)


def _group_epilog(commands):
    """The single-word names of a group's commands, one a line."""
    aliased = [c for c in commands if c.alias is not None]
    if not aliased:
        return None
    width = max(len(c.alias) for c in aliased)
    return 'the same commands under their single-word names:\n' + '\n'.join(
        f'  {PROG} {c.alias:<{width}}  = {PROG} {c.spelling}' for c in aliased)


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help between words only: ``dyn-dnn-ros`` and ``calibrate-beam`` stay whole."""

    def _split_lines(self, text, width):
        return textwrap.wrap(' '.join(text.split()), width, break_on_hyphens=False)


class _ListHelpFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """The help of the tool and of a group: description and epilog as written.

    The epilogs list the single-word names one a line. argparse measures the
    names of subcommands before it indents them, so a long name such as
    ``calibrate-beam`` would push its help onto a line of its own; a help
    column set wide enough for every indented name keeps each on its line.
    """

    def __init__(self, prog, name_width=18):
        super().__init__(prog, max_help_position=name_width + 2)
        self._action_max_length = name_width


def _list_formatter(names):
    """A formatter class for argparse whose help column clears every one of ``names``."""
    name_width = 4 + max(map(len, names))   # subcommands are indented by 4
    return lambda prog: _ListHelpFormatter(prog, name_width)


def build_parser(commands=None):
    """The parser that prints the help and the usage errors of groups and commands.

    A command's own options are added only when it runs (see ``main``), so
    building this parser imports no command module.
    """
    commands = _available_commands() if commands is None else tuple(commands)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Dynamic DNNs for ROS 2: train, search, measure and run weight-sharing\n'
                    'networks that switch size at run time.',
        formatter_class=_list_formatter(GROUPS),
        epilog=f'`{PROG} GROUP --help` describes a group\'s commands. Every command also\n'
               f'runs under its single-word name, e.g. `{PROG} sweep` is\n'
               f'`{PROG} design sweep`; each group\'s help lists those names.')
    groups = parser.add_subparsers(dest='group', metavar='GROUP', title='groups')
    for group, description in GROUPS.items():
        members = [c for c in commands if c.group == group]
        if not members:
            continue
        listed = ', '.join(c.name for c in members)
        group_parser = groups.add_parser(
            group, help=listed, description=description, epilog=_group_epilog(members),
            formatter_class=_list_formatter([c.name for c in members]))
        group_parser.set_defaults(print_group_help=group_parser.print_help)
        sub = group_parser.add_subparsers(dest='command', metavar='COMMAND', title='commands')
        for command in members:
            sub.add_parser(command.name, help=command.help, description=command.help,
                           add_help=False)
    return parser


def _resolve(argv, commands):
    """``(command, its arguments)`` named by ``argv``, or None when it names none."""
    if not argv:
        return None
    for command in commands:
        if argv[0] == command.alias:
            return command, argv[1:]
    if len(argv) >= 2:
        for command in commands:
            if (argv[0], argv[1]) == (command.group, command.name):
                return command, argv[2:]
    return None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = _available_commands()
    parser = build_parser(commands)
    resolved = _resolve(argv, commands)
    if resolved is None:
        # No command named: help (exit 0), a group's help, or a usage error (exit 2).
        args = parser.parse_args(argv)
        if args.group is None:
            parser.print_help()
        else:
            args.print_group_help()
        return 0
    command, rest = resolved
    module = importlib.import_module(f'dyn_dnn_ros.commands.{command.module}')
    command_parser = argparse.ArgumentParser(prog=f'{PROG} {command.spelling}',
                                             description=command.help,
                                             formatter_class=_HelpFormatter)
    module.add_arguments(command_parser)
    return int(module.run(command_parser.parse_args(rest)) or 0)


if __name__ == '__main__':
    sys.exit(main())
