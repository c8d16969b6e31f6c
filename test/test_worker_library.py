"""A worker's library and setting, without ROS: loading, the checks, the setting parameters."""

from dataclasses import FrozenInstanceError, dataclass
import re

import pytest

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.runtime.worker_library import WorkerLibrary, WorkerSetting
from dyn_dnn_ros.runtime.worker_parameters import BUDGET_MS, OPERATING_POINT, THREADS


def library(target='translation', engine='torch'):
    return OperatingPointLibrary(target, 'cpu', 'bleu', [
        OperatingPoint('fast', target, {'layers': 1}, {1: 5.0}, 20.0),
        OperatingPoint('best', target, {'layers': 6}, {1: 30.0, 2: 18.0}, 28.0),
        OperatingPoint('mid', target, {'layers': 3}, {1: 12.0}, 25.0),
    ], engine=engine)


def values(point='', threads=2, budget_ms=40):
    return {OPERATING_POINT: point, THREADS: threads, BUDGET_MS: budget_ms, 'other': 7}


def test_a_library_file_of_the_target_loads_and_another_target_is_refused_naming_the_file(
        tmp_path):
    path = tmp_path / 'points.yaml'
    library('translation').save(path)
    loaded = WorkerLibrary.load(path, 'translation')
    assert loaded.library.names == ['fast', 'best', 'mid'] and loaded.source == str(path)
    refusal = f'library_path: {path} is a translation library, not a perception one'
    with pytest.raises(ValueError, match=re.escape(refusal)):
        WorkerLibrary.load(path, 'perception')
    with pytest.raises(ValueError, match='cannot read operating-point library'):
        WorkerLibrary.load(tmp_path / 'missing.yaml', 'translation')


def test_a_given_library_is_checked_for_its_target_too():
    assert WorkerLibrary(library('perception'), 'perception').where == 'library_path (given)'
    with pytest.raises(ValueError, match='the given library is a perception library'):
        WorkerLibrary(library('perception'), 'translation')


def test_a_library_for_another_engine_is_refused_naming_where_it_came_from(tmp_path):
    path = tmp_path / 'ct2.yaml'
    library(engine='ctranslate2').save(path)
    points = WorkerLibrary.load(path, 'translation')
    points.check_runs_on('ctranslate2', 'cpu')
    refusal = (f'library_path ({path}): made for ctranslate2 float32 on cpu, this worker '
               'runs torch on cpu')
    with pytest.raises(ValueError, match=re.escape(refusal)):
        points.check_runs_on('torch', 'cpu')
    with pytest.raises(ValueError, match='this worker runs ctranslate2 int8 on cpu'):
        points.check_runs_on('ctranslate2', 'cpu', 'int8')


def test_every_point_must_run_on_the_model_and_the_error_names_the_point():
    points = WorkerLibrary(library(), 'translation')
    seen = []
    points.check_points(lambda point: seen.append(point.name))
    assert seen == ['fast', 'best', 'mid']

    def runs(point):
        if point.subnet['layers'] > 4:
            raise ValueError(f'layers: {point.subnet["layers"]} > 4')

    with pytest.raises(ValueError, match=r"library_path \(given\): point 'best' does not run "
                                         r'on this model: layers: 6 > 4'):
        points.check_points(runs)

    def broken(point):   # not a refusal of the point: passed on as it is
        raise RuntimeError('out of memory')

    with pytest.raises(RuntimeError, match='out of memory'):
        points.check_points(broken)


def test_the_point_parameter_names_a_point_of_the_library_or_the_best_quality_one():
    points = WorkerLibrary(library(), 'translation')
    assert points.point_problem('') is None and points.point_problem('mid') is None
    assert points.point_problem('huge') == "unknown operating point 'huge'; known: fast, best, mid"
    assert points.point_name('') == 'best' and points.point_name('fast') == 'fast'
    assert points.point(values('')).name == 'best'
    assert points.point(values('mid')).subnet == {'layers': 3}
    with pytest.raises(ValueError, match="operating_point: unknown operating point 'huge'"):
        points.point(values('huge'))


def test_the_setting_holds_point_threads_and_budget_and_the_node_s_own_fields():
    points = WorkerLibrary(library(), 'translation')
    setting = points.setting(values('', threads=3, budget_ms=40))
    assert setting == WorkerSetting(point='best', threads=3, budget_ms=40.0)
    assert type(setting.budget_ms) is float and setting.in_force() == ('best', 3, 40.0)
    with pytest.raises(FrozenInstanceError):
        setting.point = 'fast'

    @dataclass(frozen=True)
    class Layers(WorkerSetting):
        layers: int

    chosen = points.setting(values('fast', threads=1, budget_ms=0.0), Layers,
                            layers=points.point(values('fast')).subnet['layers'])
    assert chosen == Layers(point='fast', threads=1, budget_ms=0.0, layers=1)
    assert chosen.in_force() == ('fast', 1, 0.0)
    with pytest.raises(ValueError, match="unknown operating point 'gone'"):
        points.setting(values('gone'), Layers, layers=1)
