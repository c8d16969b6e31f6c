"""The shipped WeNet model and its operating-point library (skipped when absent)."""

from pathlib import Path

import pytest
import torch

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.perception.dse import dataset_of
from dyn_dnn_ros.perception.preprocess import to_model_input
from dyn_dnn_ros.perception.profiling import count_macs
from dyn_dnn_ros.perception.training import evaluate
from dyn_dnn_ros.perception.wenet import GroupConfig, load_model

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / 'models' / 'perception' / 'wenet'
LIBRARY = REPO / 'config' / 'generated' / 'operating_points_perception_cpu.yaml'

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def shipped():
    saved = load_model(MODEL)
    return saved, dataset_of(saved)


def test_shipped_model_reaches_95_percent_on_the_test_split(shipped):
    saved, dataset = shipped
    accuracy = evaluate(saved.model, saved.model.space.full(), dataset.test)
    print(f'full network test accuracy {accuracy:.4f} on {len(dataset.test)} images')
    assert len(dataset.test) == 270
    assert accuracy >= 0.95


def test_shipped_model_classifies_a_raw_image(shipped):
    saved, dataset = shipped
    from dyn_dnn_ros.perception.datasets import load_digits_images
    images, labels, _ = load_digits_images()
    model = saved.model
    model.set_groups(model.space.full())
    with torch.inference_mode():
        predictions = [int(model(to_model_input(images[i], saved.preprocess)).argmax())
                       for i in range(40)]
    assert sum(p == int(t) for p, t in zip(predictions, labels[:40], strict=True)) >= 36


def test_shipped_library_is_valid_for_the_shipped_model(shipped):
    saved, dataset = shipped
    library = OperatingPointLibrary.load(LIBRARY)
    assert library.target == 'perception' and library.device == 'cpu'
    assert len(library.points) >= 5
    full_macs = count_macs(saved.model, saved.model.space.full())
    assert min(p.metrics['macs'] for p in library.points) <= full_macs / 8
    for point in library.points:
        groups = GroupConfig.from_dict(point.subnet, saved.model.space)
        assert set(point.latency_ms) >= {1, 2}
        # the recorded quality is this model's test accuracy at that point
        assert evaluate(saved.model, groups, dataset.test) == pytest.approx(point.quality)
