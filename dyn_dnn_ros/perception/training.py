"""Train all of WeNet's sub-networks at once (Algorithm 1 of the WeNet paper).

Each step accumulates the gradients of the full network, the smallest one and
``subnets_per_step - 2`` random ones, then takes one optimiser step. With
in-place distillation the sub-networks learn the full network's soft output
of the same batch instead of the labels. A checkpoint after every epoch lets a
stopped run resume where it left off.

Batch-norm statistics kept per (layer, group count) are a blend over all the
sub-networks that shared them, which fits a given whole-network configuration
badly (measured: see docs). :func:`calibrate` computes exact statistics for
one configuration from training images; the model switches them in with it.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm
import yaml

from dyn_dnn_ros.files import atomic_output
from dyn_dnn_ros.perception.datasets import load_dataset, random_shift
from dyn_dnn_ros.perception.wenet import SavedModel, WeNet, save_model
from dyn_dnn_ros.resources.hardware import hardware_description
from dyn_dnn_ros.validation import (
    require_finite,
    require_in_interval,
    require_int,
    require_positive,
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    subnets_per_step: int = 4
    distill: bool = True
    max_shift: int = 2      # augmentation: random shift in pixels of the model input
    threads: int = 2
    seed: int = 0

    def __post_init__(self):
        for name in ('epochs', 'batch_size', 'threads'):
            require_int(f'train.{name}', getattr(self, name), 1)
        require_int('train.subnets_per_step', self.subnets_per_step, 2)  # full and smallest
        require_positive('train.lr', self.lr)
        require_finite('train.weight_decay', self.weight_decay, 0)
        require_in_interval('train.momentum', self.momentum, '[0, 1)')
        require_int('train.max_shift', self.max_shift, 0)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'train: expected a mapping, got {data!r}')
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f'train: unknown field(s) {sorted(unknown)}')
        return cls(**data)


@dataclass
class TrainResult:
    history: list = field(default_factory=list)   # one dict per epoch
    seconds: float = 0.0


def sample_subnets(space, count, rng):
    """Full, smallest, then ``count - 2`` random configs (the sandwich of Algorithm 1)."""
    return [space.full(), space.smallest()] + [space.random(rng) for _ in range(count - 2)]


def train_step(model, optimizer, images, labels, config, rng):
    """One optimiser step over several sub-networks; returns the full and mean loss."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    losses, teacher = [], None
    for subnet in sample_subnets(model.space, config.subnets_per_step, rng):
        model.set_groups(subnet)
        logits = model(images)
        if teacher is None or not config.distill:
            loss = F.cross_entropy(logits, labels)
        else:
            loss = F.kl_div(F.log_softmax(logits, 1), teacher, reduction='batchmean')
        if teacher is None:  # the first sub-network is the full one
            teacher = F.softmax(logits.detach(), 1)
        loss.backward()
        losses.append(loss.item())
    optimizer.step()
    return {'loss_full': losses[0], 'loss_mean': sum(losses) / len(losses)}


def evaluate(model, subnet, split, batch_size=512):
    """Top-1 accuracy of sub-network ``subnet`` on a data split."""
    model.eval()
    model.set_groups(subnet)
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            logits = model(split.images[start:start + batch_size])
            correct += int((logits.argmax(1) == split.labels[start:start + batch_size]).sum())
    return correct / len(split)


def calibrate(model, subnet, images, batch_size=256):
    """Exact batch-norm statistics of sub-network ``subnet``; the model keeps them.

    A pass in train mode with a cumulative average (momentum None) collects
    them for the configurable layers; the shared batch norms (the stem's) keep
    normalising with their running statistics, as at inference. Every buffer
    is put back afterwards, so the per-pattern statistics stay as they were.
    """
    backup = {name: buffer.clone() for name, buffer in model.named_buffers()}
    was_training = model.training
    model.set_groups(subnet)
    active = [layer.bn.active() for layer in model.configurable]
    momenta = [norm.momentum for norm in active]
    try:
        model.eval()
        for norm in active:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        for layer in model.configurable:
            layer.bn.train()  # so the calibration pass ignores older calibrations
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                model(images[start:start + batch_size])
        statistics = tuple((norm.running_mean.clone(), norm.running_var.clone())
                           for norm in active)
    finally:
        for norm, momentum in zip(active, momenta, strict=True):
            norm.momentum = momentum
        buffers = dict(model.named_buffers())
        with torch.no_grad():
            for name, value in backup.items():
                buffers[name].copy_(value)
        model.train(was_training)
    model.calibrations[subnet.key()] = statistics
    model.set_groups(subnet)
    return statistics


def _save_atomic(state, path):
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def train(model, dataset, config, checkpoint=None, resume=False, progress=True,
          monitor_images=512):
    """Train ``model`` in place for ``config.epochs`` epochs; returns the history.

    After each epoch the full and the smallest network are calibrated on
    ``monitor_images`` training images and validated, to follow progress.
    """
    steps_per_epoch = -(-len(dataset.train) // config.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    rng, generator = random.Random(config.seed), torch.Generator().manual_seed(config.seed)
    result, start_epoch = TrainResult(), 0
    if resume:
        state = _load_checkpoint(checkpoint, model, config)
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        rng.setstate(state['rng'])
        generator.set_state(state['generator'])
        result = TrainResult(state['history'], state['seconds'])
        start_epoch = state['epoch'] + 1
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               desc='wenet-train', unit='step', disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            order = torch.randperm(len(dataset.train), generator=generator)
            losses = []
            for step in range(steps_per_epoch):
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                images = random_shift(dataset.train.images[index], config.max_shift, generator)
                losses.append(train_step(model, optimizer, images, dataset.train.labels[index],
                                         config, rng))
                scheduler.step()
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f'{losses[-1]["loss_full"]:.3f}')
            val = {}
            for name, subnet in (('full', model.space.full()),
                                 ('smallest', model.space.smallest())):
                calibrate(model, subnet, dataset.train.images[:monitor_images])
                val[name] = evaluate(model, subnet, dataset.val)
            model.calibrations.clear()  # the weights will move on
            val_full, val_smallest = val['full'], val['smallest']
            result.seconds += time.perf_counter() - started
            result.history.append({
                'epoch': epoch + 1,
                'loss_full': sum(x['loss_full'] for x in losses) / len(losses),
                'loss_mean': sum(x['loss_mean'] for x in losses) / len(losses),
                'val_full': val_full, 'val_smallest': val_smallest,
                'seconds': round(result.seconds, 1)})
            if progress:
                bar.write(f'epoch {epoch + 1}: loss {result.history[-1]["loss_full"]:.3f} '
                          f'val full {val_full:.3f} smallest {val_smallest:.3f}')
            if checkpoint is not None:
                _save_atomic({'model_config': model.config.to_dict(),
                              'train_config': config.to_dict(), 'epoch': epoch,
                              'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                              'scheduler': scheduler.state_dict(), 'rng': rng.getstate(),
                              'generator': generator.get_state(), 'history': result.history,
                              'seconds': result.seconds},
                             checkpoint)
    finally:
        bar.close()
        torch.set_num_threads(previous_threads)
    return result


def _load_checkpoint(path, model, config):
    if path is None or not Path(path).is_file():
        raise ValueError(f'resume: no checkpoint at {path}')
    state = torch.load(path, map_location='cpu', weights_only=False)
    if state['model_config'] != model.config.to_dict():
        raise ValueError(f'{path}: checkpoint was trained with a different model config')
    saved = dict(state['train_config'], epochs=config.epochs, threads=config.threads)
    if saved != config.to_dict():
        raise ValueError(f'{path}: checkpoint was trained with a different train config '
                         '(only epochs and threads may change on resume)')
    model.load_state_dict(state['model'])
    return state


def read_config_file(path):
    """The sections of a WeNet YAML config file (``model``, ``data``, ``train``, ``dse``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except OSError as error:
        raise ValueError(f'{path}: cannot read config ({error.strerror})') from None
    except yaml.YAMLError as error:
        raise ValueError(f'{path}: malformed YAML ({error})'.replace('\n', ' ')) from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping of sections at the top level')
    unknown = set(data) - {'model', 'data', 'train', 'dse'}
    if unknown:
        raise ValueError(f'{path}: unknown section(s) {sorted(unknown)}')
    return data


def train_and_save(model_config, data_config, train_config, out, checkpoint=None,
                   resume=False, progress=True):
    """Load the data, train a fresh WeNet, test it and write it to directory ``out``."""
    if data_config.input_size != model_config.input_size:
        raise ValueError(f'data.input_size {data_config.input_size} differs from '
                         f'model.input_size {model_config.input_size}')
    dataset = load_dataset(data_config)
    if len(dataset.classes) != model_config.num_classes:
        raise ValueError(f'model.num_classes: {model_config.num_classes}, but the data has '
                         f'{len(dataset.classes)} classes')
    torch.manual_seed(train_config.seed)
    model = WeNet(model_config)
    result = train(model, dataset, train_config, checkpoint, resume, progress)
    summary = {'epochs': len(result.history), 'train_seconds': round(result.seconds, 1),
               'test_accuracy': {}}
    # Uncalibrated first: the per-pattern statistics alone, for comparison.
    for n in model_config.group_choices:
        subnet = model.space.uniform(n)
        summary['test_accuracy'][n] = {'per_pattern_bn': evaluate(model, subnet, dataset.test)}
    for n in model_config.group_choices:
        subnet = model.space.uniform(n)
        calibrate(model, subnet, dataset.train.images)
        summary['test_accuracy'][n]['calibrated_bn'] = evaluate(model, subnet, dataset.test)
    meta = {'data': asdict(data_config), 'train': train_config.to_dict(), 'summary': summary,
            'history': result.history, 'torch_version': str(torch.__version__),
            'host': hardware_description(), 'created': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    saved = SavedModel(model, dataset.preprocess, dataset.classes, meta)
    save_model(out, saved)
    return saved, summary
