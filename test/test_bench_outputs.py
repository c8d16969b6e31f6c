"""Every benchmark writes under runs/ unless an option names another path.

The shipped files in docs/, config/ and models/ change only when a command
line (a Makefile target) names them.
"""

import argparse
from pathlib import Path
import sys

from bench_scripts import BENCH_DIR, load_bench
import pytest

ROOT = BENCH_DIR.parent

# Per bench, the options that name what it writes; None: nothing, or a path
# derived from another option (checked below).
OUTPUTS = {
    'active_rows': (),
    'beam_width': ('state', 'table', 'png'),
    'camera_qos': ('json', 'node_log'),
    'cross_device': ('run_dir', 'plot'),
    'engines': ('out',),
    'front_vs_random': ('run_dir', 'cache', 'plot'),
    'openmp_pools': (),
    'generalisation': ('out',),
    'remeasure_perception_library': ('out',),
    'ros_overhead': (),
    'supertransformer': ('out', 'png', 'state'),
    'system_processes': ('out',),
    'vocabulary_map': ('out',),
    'worker_thread': (),
}


class _Parsed(Exception):
    """Carries the parsed defaults out of a bench's entry point before it runs anything."""


def _default_args(name, monkeypatch):
    module = load_bench(name)
    parse = argparse.ArgumentParser.parse_args

    def parse_defaults(parser, args=None, namespace=None):
        raise _Parsed(parse(parser, [], namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_defaults)
    monkeypatch.setattr(sys, 'argv', [f'{name}.py'])
    entry = getattr(module, 'parse_args', None) or module.main
    with pytest.raises(_Parsed) as parsed:
        entry()
    return module, parsed.value.args[0]


def _in_runs(path):
    return Path(path).resolve().is_relative_to(ROOT / 'runs')


def test_every_bench_is_listed():
    assert set(OUTPUTS) == {p.stem for p in BENCH_DIR.glob('*.py')}


@pytest.mark.parametrize('name', sorted(OUTPUTS))
def test_default_outputs_lie_under_runs(name, monkeypatch):
    module, args = _default_args(name, monkeypatch)
    for dest in OUTPUTS[name]:
        value = getattr(args, dest)
        assert value is None or _in_runs(value), f'{name} --{dest}: {value}'
    if name == 'cross_device':   # --plot: per device, under runs/bench/
        assert _in_runs(module.default_plot('cpu'))
