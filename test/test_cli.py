"""The ``dyn-dnn-ros`` tool: groups, single-word names, help, usage errors, default outputs."""

import argparse
import importlib
from pathlib import Path
import subprocess
import sys

import pytest

from dyn_dnn_ros import cli

ROOT = Path(__file__).resolve().parents[1]

# The flat command list the tool had before it grouped its commands; scripts
# and muscle memory still use these names.
SINGLE_WORD_NAMES = {
    'monitor': 'system monitor', 'corpus': 'translation corpus',
    'tokenizer': 'translation tokenizer', 'train': 'translation train',
    'translate': 'translation translate', 'evaluate': 'translation evaluate',
    'calibrate-beam': 'translation calibrate-beam', 'latency': 'design latency',
    'predictor': 'design predictor', 'search': 'design search', 'sweep': 'design sweep',
    'design-report': 'design report', 'wenet-train': 'perception train',
    'wenet-dse': 'perception dse', 'bringup': 'system bringup', 'demo': 'system demo',
}


def _module_present(command):
    return importlib.util.find_spec(f'dyn_dnn_ros.commands.{command.module}') is not None


def test_every_single_word_name_runs_its_grouped_command():
    aliases = {c.alias: c.spelling for c in cli.COMMANDS if c.alias is not None}
    assert aliases == SINGLE_WORD_NAMES
    spellings = [c.spelling for c in cli.COMMANDS]
    assert len(spellings) == len(set(spellings))
    assert {c.group for c in cli.COMMANDS} == set(cli.GROUPS)
    assert not set(aliases) & set(cli.GROUPS), 'a single-word name would hide a group'
    for alias, spelling in SINGLE_WORD_NAMES.items():
        command, rest = cli._resolve([alias, '--x'], cli.COMMANDS)
        assert (command.spelling, rest) == (spelling, ['--x'])
        assert cli._resolve([*spelling.split(), '--x'], cli.COMMANDS) == (command, ['--x'])


def test_every_command_but_export_ships_its_module():
    missing = [c.spelling for c in cli.COMMANDS if not _module_present(c)]
    assert set(missing) <= {'translation export'}, missing
    export = [c for c in cli.COMMANDS if c.spelling == 'translation export']
    assert export and export[0].module == 'export' and export[0].alias is None


def test_a_command_whose_module_is_absent_is_not_offered(capsys):
    absent = cli.Command('translation', 'absent', 'no_such_command_module', 'not installed')
    present = [c for c in cli.COMMANDS if c.group == 'translation' and _module_present(c)]
    commands = cli._available_commands((*present, absent))
    assert absent not in commands and set(present) <= set(commands)
    parser = cli.build_parser(commands)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(['translation', 'absent'])
    assert exit_info.value.code == 2
    assert "invalid choice: 'absent'" in capsys.readouterr().err


def test_main_help_lists_the_groups_and_what_is_in_them(capsys):
    assert cli.main([]) == 0
    bare = capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out == bare
    for group in cli.GROUPS:
        assert f'    {group} ' in out
    for command in cli._available_commands():
        assert command.name in out
    # The single-word names are explained once, not listed beside the groups.
    assert 'dyn-dnn-ros sweep' in out and 'wenet-dse' not in out


@pytest.mark.parametrize('group', sorted(cli.GROUPS))
def test_group_help_lists_its_commands_and_their_single_word_names(group, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([group, '--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f'usage: dyn-dnn-ros {group} ')
    members = [c for c in cli._available_commands() if c.group == group]
    assert members
    for command in members:
        assert f'    {command.name}  ' in out and command.help in ' '.join(out.split())
        if command.alias is not None:
            assert f'dyn-dnn-ros {command.alias} ' in out
            assert f'= dyn-dnn-ros {command.spelling}\n' in out
    assert cli.main([group]) == 0   # a group alone: its help
    assert capsys.readouterr().out == out


def test_translation_help_lists_export_exactly_when_it_is_installed(capsys):
    with pytest.raises(SystemExit):
        cli.main(['translation', '--help'])
    out = capsys.readouterr().out
    export = next(c for c in cli.COMMANDS if c.spelling == 'translation export')
    assert ('    export ' in out) == _module_present(export)


@pytest.mark.parametrize('argv', [['monitor'], ['system', 'monitor']])
def test_both_spellings_run_the_command_and_its_usage_names_the_group(argv, capsys):
    assert cli.main([*argv, '--seconds', '0.2', '--period', '0.1']) == 0
    assert 'readers:' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, '--no-such-option'])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('usage: dyn-dnn-ros system monitor ')
    assert 'unrecognized arguments: --no-such-option' in err


@pytest.mark.parametrize('argv, message', [
    (['no-such-group'], "invalid choice: 'no-such-group'"),
    (['translation', 'no-such-command'], "invalid choice: 'no-such-command'"),
    (['design', '--no-such-option'], 'unrecognized arguments'),
])
def test_usage_errors_exit_with_code_2(argv, message):
    done = subprocess.run([sys.executable, '-m', 'dyn_dnn_ros.cli', *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert message in done.stderr and done.stderr.startswith('usage: dyn-dnn-ros')
    assert done.stdout == ''


def _defaults(module_name):
    parser = argparse.ArgumentParser()
    importlib.import_module(f'dyn_dnn_ros.commands.{module_name}').add_arguments(parser)
    return parser.parse_args([]), parser.format_help()


def _in_runs(path):
    return Path(path).resolve().is_relative_to(ROOT / 'runs')


def test_commands_write_under_runs_unless_told_otherwise():
    """Shipped files in config/, docs/, models/ and data/ change only when named."""
    args, _ = _defaults('design_report')
    assert _in_runs(args.out)
    args, _ = _defaults('wenet_dse')
    assert _in_runs(args.out) and _in_runs(args.ablation_table) and args.plot is None
    assert _in_runs(args.model_out)   # the calibrations; --model is only read
    assert not _in_runs(args.model)
    args, _ = _defaults('wenet_train')
    assert _in_runs(args.out)
    args, _ = _defaults('tokenizer')
    assert _in_runs(args.model) and args.corpus_dir is None
    from dyn_dnn_ros.commands.corpus import built_corpus_dir
    assert _in_runs(built_corpus_dir())
    args, _ = _defaults('latency')
    assert args.out is None   # RUN_DIR/latency_DEVICE.csv
    from dyn_dnn_ros.commands.latency import RUN_DIR
    assert _in_runs(RUN_DIR)
    # The sweep picks its defaults per device when it runs; its help names them.
    # Read the help strings, not the formatted help: argparse splits a path longer than
    # the terminal (a deep checkout) across lines.
    parser = argparse.ArgumentParser()
    importlib.import_module('dyn_dnn_ros.commands.sweep').add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert '/runs/design/operating_points_translation_DEVICE_torch.yaml' in helps['library']
    assert '/runs/design/pareto_DEVICE.png' in helps['plot']
