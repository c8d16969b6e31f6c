"""Design-space exploration (Algorithm 2), cost counting and the library it writes."""

from dataclasses import asdict, replace
import math

import pytest
import torch
from wenet_fixtures import TINY

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.perception.datasets import DataConfig, Dataset, Split, load_dataset
from dyn_dnn_ros.perception.dse import (
    DSEConfig,
    DSEPoint,
    build_library,
    faster_steps,
    greedy_search,
    library_points,
    pareto_front,
    run_dse,
    thin,
)
from dyn_dnn_ros.perception.profiling import (
    LatencyConfig,
    count_active_params,
    count_macs,
    measure_latencies_ms,
    measure_latency_ms,
)
from dyn_dnn_ros.perception.training import TrainConfig, evaluate, train
from dyn_dnn_ros.perception.wenet import (
    GroupConfig,
    SavedModel,
    WeNet,
    load_model,
    save_model,
)

torch.set_num_threads(1)
FAST = DSEConfig(threshold=0.0, latency=LatencyConfig(warmup=1, repeats=3, trim=0.0, rounds=1))


@pytest.fixture(scope='module')
def trained_tiny():
    full = load_dataset(DataConfig(input_size=16))
    data = Dataset(Split(full.train.images[:256], full.train.labels[:256]),
                   Split(full.val.images[:90], full.val.labels[:90]),
                   Split(full.test.images[:90], full.test.labels[:90]),
                   full.classes, full.preprocess)
    torch.manual_seed(0)
    model = WeNet(TINY)
    train(model, data, TrainConfig(epochs=2, batch_size=64, threads=1), progress=False)
    return model, data


def test_macs_follow_the_layer_shapes():
    model = WeNet(TINY)
    space = model.space
    pixels = 16 * 16
    stem, classifier = pixels * 16 * 9, 16 * 10      # dense
    block = pixels * (16 * 16 + 16 * 16 * 9 + 16 * 32 + 16 * 32)  # conv1..3 + shortcut
    hidden = 32 * 16

    def expected(n):
        return stem + block // n + hidden // n + classifier

    assert count_macs(model, space.full()) == expected(1)
    for n in (2, 4, 16):
        assert count_macs(model, space.uniform(n)) == expected(n)
    params = sum(p.numel() for p in model.parameters())
    assert count_active_params(model, space.full()) < params  # other patterns' batch norms
    assert count_active_params(model, space.smallest()) < count_active_params(model,
                                                                              space.full())


def test_latency_is_measured_in_milliseconds():
    model = WeNet(TINY)
    ms = measure_latency_ms(model, model.space.full(), 1, FAST.latency)
    assert 0.01 < ms < 1000
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match='threads'):
        measure_latency_ms(model, model.space.full(), 0)
    big = WeNet()  # ~97 M MACs against the tiny model's ~1 M
    cases = [(model, model.space.full()), (big, big.space.full())]
    small_ms, big_ms = measure_latencies_ms(cases, 1, LatencyConfig(2, 10, 0.1, rounds=2))
    assert big_ms > small_ms


def test_greedy_search_steps_monotonically_and_writes_a_library(trained_tiny, tmp_path):
    model, data = trained_tiny
    result = greedy_search(model, data.val, FAST, progress=False)
    space = model.space
    trajectory = result.trajectory
    assert trajectory[0].groups == space.full()
    # threshold 0: the search only stops when every layer is fully split
    assert trajectory[-1].groups == space.smallest()
    assert len(trajectory) == 1 + sum(len(c) - 1 for c in space.choices)
    for before, after in zip(trajectory, trajectory[1:], strict=False):
        pairs = zip(before.groups.groups, after.groups.groups, strict=True)
        changed = [i for i, (a, b) in enumerate(pairs) if a != b]
        assert len(changed) == 1
        i = changed[0]
        allowed = space.choices[i]
        assert allowed.index(after.groups.groups[i]) == allowed.index(before.groups.groups[i]) + 1
        assert after.macs < before.macs
    assert all(p in result.visited for p in trajectory)
    assert len(result.visited) > len(trajectory)

    front = pareto_front(result.visited)
    for p in front:
        assert not any(q.latency_ms < p.latency_ms and q.val_accuracy > p.val_accuracy
                       for q in result.visited)
    points = library_points(result, 4)  # how many depends on measured latencies
    assert 1 <= len(points) <= 4 and points[0] is trajectory[0]
    assert all(p in trajectory for p in points)
    assert all(a.latency_ms > b.latency_ms for a, b in zip(points, points[1:], strict=False))
    library = build_library(model, points, data.val, data.test, FAST, {'source': 'test'})
    path = tmp_path / 'lib.yaml'
    library.save(path)
    loaded = OperatingPointLibrary.load(path)
    assert loaded.target == 'perception' and loaded.quality_metric == 'accuracy'
    assert len(loaded.points) == len(points)
    for point, source in zip(loaded.points, points, strict=True):
        assert set(point.latency_ms) == {1, 2}
        assert 0 <= point.quality <= 1 and math.isnan(point.predicted_latency_ms)
        assert point.subnet == source.groups.to_dict()
        assert point.metrics['macs'] == source.macs


def test_search_stops_below_the_threshold(trained_tiny):
    model, data = trained_tiny
    config = DSEConfig(threshold=1.0, latency=FAST.latency)
    result = greedy_search(model, data.val, config, progress=False)
    assert [p.groups for p in result.trajectory] == [model.space.full()]
    assert len(result.visited) == 1 + len(model.space.layers)


def test_pareto_front_and_thinning():
    points = [DSEPoint(None, ms, acc, 0, 0) for ms, acc in
              [(1.0, 0.80), (2.0, 0.90), (1.5, 0.85), (2.5, 0.89), (3.0, 0.95), (1.2, 0.70)]]
    front = pareto_front(points)
    assert [(p.latency_ms, p.val_accuracy) for p in front] == [
        (3.0, 0.95), (2.0, 0.90), (1.5, 0.85), (1.0, 0.80)]
    assert thin(front, 2) == [front[0], front[-1]]
    assert thin(front, 10) == front
    steps = [DSEPoint(None, ms, 0.9, 0, i) for i, ms in
             enumerate([3.0, 2.9, 3.1, 2.0, 1.95, 1.9, 1.0, 1.1, 0.9])]
    monotone = faster_steps(steps)
    assert [p.latency_ms for p in monotone] == [3.0, 2.9, 2.0, 1.95, 1.9, 1.0, 0.9]
    # evenly over the latency range 3.0 .. 0.9, not evenly over the list
    assert [p.latency_ms for p in thin(monotone, 3)] == [3.0, 1.95, 0.9]  # target 1.95


def test_dse_config_validation():
    with pytest.raises(ValueError, match='threshold'):
        DSEConfig(threshold=95)
    with pytest.raises(ValueError, match='search_threads'):
        DSEConfig(search_threads=4, library_threads=(1, 2))
    config = DSEConfig.from_dict({'threshold': 0.9, 'repeats': 7, 'library_threads': [1]})
    assert config.latency.repeats == 7 and config.library_threads == (1,)
    with pytest.raises(ValueError, match='unknown'):
        DSEConfig.from_dict({'beam': 3})


def test_run_dse_writes_library_plot_ablation_and_calibrations(trained_tiny, tmp_path):
    model, data = trained_tiny
    meta = {'data': asdict(DataConfig(input_size=16))}
    preprocess = load_dataset(DataConfig(input_size=16)).preprocess
    save_model(tmp_path / 'shuffle', SavedModel(model, preprocess, data.classes, meta))
    other = WeNet(replace(TINY, shuffle=False))
    save_model(tmp_path / 'plain', SavedModel(other, preprocess, data.classes, meta))
    config = replace(FAST, threshold=0.0, max_points=5, library_threads=(1,),
                     calibration_images=256)
    shipped = {p.name: p.read_bytes() for p in (tmp_path / 'shuffle').iterdir()}
    summary = run_dse(tmp_path / 'shuffle', config, tmp_path / 'lib.yaml',
                      tmp_path / 'pareto.png', tmp_path / 'plain', tmp_path / 'ablation.md',
                      progress=False, model_out=tmp_path / 'calibrated')
    # the explored model is only read; the calibrated copy is the one the library names
    assert {p.name: p.read_bytes() for p in (tmp_path / 'shuffle').iterdir()} == shipped
    library = OperatingPointLibrary.load(tmp_path / 'lib.yaml')
    assert library.meta['model'] == str((tmp_path / 'calibrated').resolve())
    assert library.names == [p.name for p in summary['library'].points]
    assert (tmp_path / 'pareto.png').stat().st_size > 10_000
    table = (tmp_path / 'ablation.md').read_text()
    assert '| 1/16 |' in table and 'no shuffle: accuracy' in table
    # the library's accuracies hold for the saved model with its saved calibrations
    reloaded = load_model(tmp_path / 'calibrated')
    dataset = load_dataset(DataConfig(input_size=16))
    for point in library.points:
        groups = GroupConfig.from_dict(point.subnet, reloaded.model.space)
        assert groups.key() in reloaded.model.calibrations
        assert evaluate(reloaded.model, groups, dataset.test) == pytest.approx(point.quality)
