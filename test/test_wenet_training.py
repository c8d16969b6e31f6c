"""Data, preprocessing and Algorithm-1 training of WeNet on real digits."""

import random

from matplotlib import image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from wenet_fixtures import TINY

from dyn_dnn_ros.perception import training
from dyn_dnn_ros.perception.datasets import (
    DataConfig,
    Dataset,
    Split,
    load_dataset,
    load_digits_images,
    split_indices,
)
from dyn_dnn_ros.perception.preprocess import PreprocessConfig, to_model_input
from dyn_dnn_ros.perception.training import (
    TrainConfig,
    calibrate,
    evaluate,
    train,
    train_step,
)
from dyn_dnn_ros.perception.wenet import (
    SavedModel,
    WeNet,
    WeNetConfig,
    load_model,
    save_model,
)

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def digits16():
    return load_dataset(DataConfig(input_size=16))


def small(dataset, count):
    def cut(split, n):
        return Split(split.images[:n], split.labels[:n])
    return Dataset(cut(dataset.train, count), cut(dataset.val, count // 2),
                   cut(dataset.test, count // 2), dataset.classes, dataset.preprocess)


def test_digits_split_is_stratified_disjoint_and_seeded(digits16):
    _, labels, classes = load_digits_images()
    config = DataConfig()
    train_idx, val_idx, test_idx = split_indices(labels, config)
    assert len(train_idx) + len(val_idx) + len(test_idx) == 1797
    assert not set(train_idx) & set(val_idx) and not set(val_idx) & set(test_idx)
    assert len(test_idx) == 270 and len(val_idx) == 270
    for split in (val_idx, test_idx):
        counts = np.bincount(labels[split], minlength=10)
        assert counts.min() >= 25  # every digit present in proportion (~27 each)
    again = split_indices(labels, config)
    for a, b in zip(again, (train_idx, val_idx, test_idx), strict=True):
        assert np.array_equal(a, b)
    assert classes == [str(i) for i in range(10)]
    assert digits16.train.images.shape[1:] == (1, 16, 16)
    assert abs(float(digits16.train.images.mean())) < 1e-4  # normalised on the train split


def test_serving_preprocessing_matches_training(digits16):
    images, labels, _ = load_digits_images()
    _, _, test_idx = split_indices(labels, DataConfig(input_size=16))
    tensor = to_model_input(images[test_idx[0]], digits16.preprocess)
    torch.testing.assert_close(tensor[0], digits16.test.images[0], atol=1e-5, rtol=0)
    white = np.full((8, 8, 3), 255, dtype=np.uint8)  # a camera's RGB
    config = PreprocessConfig(16, mean=0.5, std=0.5)
    torch.testing.assert_close(to_model_input(white, config), torch.ones(1, 1, 16, 16))
    inverted = PreprocessConfig(16, mean=0.5, std=0.5, invert=True)
    torch.testing.assert_close(to_model_input(white, inverted), -torch.ones(1, 1, 16, 16))
    with pytest.raises(ValueError, match='within'):
        to_model_input(np.full((8, 8), 3.0), PreprocessConfig(16))
    with pytest.raises(ValueError, match='shape'):
        to_model_input(np.zeros((2, 8, 8, 3)), PreprocessConfig(16))


def test_image_folder_dataset(tmp_path):
    rng = np.random.default_rng(0)
    for name in ('cat', 'dog'):
        (tmp_path / name).mkdir()
        for i in range(10):
            pixels = rng.random((12 + i, 10, 3))  # sizes differ: each is resized
            mpimg.imsave(tmp_path / name / f'{i}.png', pixels)
    dataset = load_dataset(DataConfig(source=str(tmp_path), input_size=8,
                                      val_fraction=0.2, test_fraction=0.2))
    assert dataset.classes == ['cat', 'dog']
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 20
    assert dataset.test.images.shape[1:] == (1, 8, 8)
    assert sorted(dataset.test.labels.tolist()) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match='neither'):
        load_dataset(DataConfig(source=str(tmp_path / 'missing')))


@pytest.mark.parametrize('distill', [True, False])
def test_algorithm1_steps_reduce_the_loss_of_full_and_smallest(digits16, distill):
    torch.manual_seed(0)
    model = WeNet(TINY)
    images, labels = digits16.train.images[:64], digits16.train.labels[:64]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    config = TrainConfig(subnets_per_step=4, distill=distill)

    def losses():
        out = []
        for subnet in (model.space.full(), model.space.smallest()):
            model.set_groups(subnet)
            model.train()  # batch statistics: running ones lag behind a few steps
            with torch.no_grad():
                out.append(F.cross_entropy(model(images), labels).item())
        return out

    before = losses()
    rng = random.Random(0)
    for _ in range(8):
        step = train_step(model, optimizer, images, labels, config, rng)
    after = losses()
    print(f"full {before[0]:.3f} -> {after[0]:.3f}, smallest {before[1]:.3f} -> {after[1]:.3f}")
    assert after[0] < 0.85 * before[0] and after[1] < 0.95 * before[1]
    assert step['loss_full'] > 0 and step['loss_mean'] > 0


def test_distillation_switch_changes_the_subnet_loss(digits16):
    images, labels = digits16.train.images[:32], digits16.train.labels[:32]
    results = {}
    for distill in (True, False):
        torch.manual_seed(0)
        model = WeNet(TINY)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        results[distill] = train_step(model, optimizer, images, labels,
                                      TrainConfig(distill=distill), random.Random(0))
    assert results[True]['loss_full'] == pytest.approx(results[False]['loss_full'])
    # KL to the teacher's soft labels is far below cross-entropy to hard labels at init
    assert results[True]['loss_mean'] < results[False]['loss_mean']


def test_interrupted_training_resumes_to_the_same_weights(digits16, tmp_path, monkeypatch):
    data = small(digits16, 96)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, threads=1)
    torch.manual_seed(0)
    reference = WeNet(TINY)
    train(reference, data, config, tmp_path / 'ref.pt', progress=False)

    torch.manual_seed(0)
    model = WeNet(TINY)
    real_step, calls = training.train_step, []

    def failing_step(*args):
        calls.append(1)
        if len(calls) == 5:  # the second step of epoch 2
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(training, 'train_step', failing_step)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, config, tmp_path / 'run.pt', progress=False)
    monkeypatch.setattr(training, 'train_step', real_step)
    resumed = WeNet(TINY)
    result = train(resumed, data, config, tmp_path / 'run.pt', resume=True, progress=False)
    assert [h['epoch'] for h in result.history] == [1, 2]
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
    with pytest.raises(ValueError, match='different train config'):
        train(WeNet(TINY), data, TrainConfig(epochs=2, batch_size=32, lr=0.01),
              tmp_path / 'run.pt', resume=True, progress=False)
    accuracy = evaluate(resumed, resumed.space.full(), data.val)
    assert 0 <= accuracy <= 1


def test_bad_configs_name_the_field():
    with pytest.raises(ValueError, match='subnets_per_step'):
        TrainConfig(subnets_per_step=1)
    with pytest.raises(ValueError, match='val_fraction'):
        DataConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match=r'stages\[0\].channels'):
        WeNetConfig.from_dict({'stages': [{'channels': 0, 'bottleneck': 16}]})
    with pytest.raises(ValueError, match='unknown'):
        WeNetConfig.from_dict({'depth': 3})


def test_calibration_gives_the_exact_statistics_and_leaves_the_rest(digits16, tmp_path):
    torch.manual_seed(0)
    model = WeNet(TINY)
    train(model, small(digits16, 128), TrainConfig(epochs=1, batch_size=32, threads=1),
          progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = digits16.train.images[:200]
    subnet = model.space.uniform(4)
    statistics = calibrate(model, subnet, images, batch_size=200)
    for key, value in model.state_dict().items():  # shared statistics untouched
        assert torch.equal(value, before[key]), key
    # One batch: calibrated eval-mode output = the output normalised with that batch's
    # statistics in the configurable layers (the shared stem keeps its running ones)
    model.set_groups(subnet)
    model.train()
    model.stem.eval()
    with torch.no_grad():
        batch_mode = model(images)
    model.eval()
    with torch.no_grad():
        calibrated = model(images)
    torch.testing.assert_close(calibrated, batch_mode, atol=1e-2, rtol=5e-3)  # n/(n-1)
    for layer, stats in zip(model.configurable, statistics, strict=True):
        assert layer.bn.statistics is stats  # switched in by reference
    model.set_groups(model.space.full())  # not calibrated: per-pattern statistics
    assert all(layer.bn.statistics is None for layer in model.configurable)

    saved = SavedModel(model, digits16.preprocess, digits16.classes, {})
    save_model(tmp_path / 'm', saved)
    loaded = load_model(tmp_path / 'm').model
    assert set(loaded.calibrations) == {subnet.key()}
    loaded.set_groups(subnet)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), calibrated)
