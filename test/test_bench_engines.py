"""bench/engines.py's library check: measured latency against the library and the manager."""

from bench_scripts import load_bench
import pytest

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.share import library_path
from dyn_dnn_ros.translation.design import engine_library
from dyn_dnn_ros.translation.design_space import SubnetConfig


@pytest.fixture(scope='module')
def bench():
    return load_bench('engines')


@pytest.fixture
def library():
    return OperatingPointLibrary.load(library_path('translation', 'cpu'))


def run_check(bench, library, monkeypatch, measured_ms):
    """The check with the engine's timing replaced by ``measured_ms(point name)``."""
    by_setting = {(SubnetConfig.from_dict(p.subnet).key(), p.beam.width): p.name
                  for p in library.points}

    def fake_timing(engine, subnet, width, threads, sentences):
        return measured_ms(by_setting[(subnet.key(), width)])

    monkeypatch.setattr(engine_library, 'time_per_sentence', fake_timing)
    return bench.library_check(None, library, ['a sentence'], rounds=5)


def test_a_machine_uniformly_slower_moves_the_library_ratio_and_less_the_managers(
        bench, library, monkeypatch):
    slower = {p.name: 1.3 * p.latency_ms[1] for p in library.points}
    ratios = run_check(bench, library, monkeypatch, slower.__getitem__)
    assert set(ratios) == set(slower)
    for row in ratios.values():
        assert row['measured/library'] == pytest.approx(1.3)
        # The manager has learnt most of the slow-down from the points before.
        assert 1.0 < row['measured/manager'] < 1.1


def test_a_point_the_library_has_wrong_stands_out_against_the_manager(
        bench, library, monkeypatch):
    wrong = library.points[len(library.points) // 2].name
    measured = {p.name: p.latency_ms[1] * (2.0 if p.name == wrong else 1.0)
                for p in library.points}
    ratios = run_check(bench, library, monkeypatch, measured.__getitem__)
    assert ratios[wrong]['measured/manager'] > 1.6
    # The points run after it are assumed a little slow, never as wrong.
    others = [row['measured/manager'] for name, row in ratios.items() if name != wrong]
    assert 0.8 < min(others) and max(others) <= 1.0
