"""Benchmark scripts of ``bench/`` loaded as modules, so tests can call their pure functions."""

import importlib.util
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / 'bench'


def load_bench(name):
    """``bench/<name>.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f'bench_{name}', BENCH_DIR / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
