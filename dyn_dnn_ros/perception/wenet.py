"""WeNet: a small residual CNN whose layers switch their group count at run time.

Every bottleneck block is 1x1 -> channel shuffle -> 3x3 -> 1x1 (plus a 1x1
shortcut where the shape changes), each conv a :class:`GroupConv2d` with its
own switchable batch norm, and the head has one :class:`GroupLinear`. These
are the configurable layers; a :class:`GroupConfig` gives each a group count.
The stem conv and the final classifier stay dense: they are a small share of
the compute and run on too few channels to split.
"""

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path

from safetensors.torch import load_file, save_file
import torch
from torch import nn
import torch.nn.functional as F
import yaml

from dyn_dnn_ros.operating_points import write_yaml_atomic
from dyn_dnn_ros.perception.preprocess import PreprocessConfig
from dyn_dnn_ros.perception.weight_enabling import (
    GROUP_CHOICES,
    GroupConv2d,
    GroupLinear,
    SwitchableBatchNorm,
    channel_shuffle,
)
from dyn_dnn_ros.validation import is_integer, require_int

WEIGHTS_FILE = 'model.safetensors'
META_FILE = 'model.yaml'
CALIBRATION_FILE = 'calibration.safetensors'


@dataclass(frozen=True)
class StageConfig:
    channels: int     # block output channels
    bottleneck: int   # channels inside the block
    stride: int = 1
    blocks: int = 1


@dataclass(frozen=True)
class WeNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    input_size: int = 32
    stem_channels: int = 16
    stem_stride: int = 1
    stages: tuple = (StageConfig(32, 16, 1), StageConfig(64, 32, 2), StageConfig(64, 32, 2))
    head_hidden: int = 64
    shuffle: bool = True
    group_choices: tuple = GROUP_CHOICES

    def __post_init__(self):
        for name in ('in_channels', 'num_classes', 'input_size', 'stem_channels',
                     'stem_stride', 'head_hidden'):
            require_int(f'model.{name}', getattr(self, name), 1)
        if not self.stages:
            raise ValueError('model.stages: at least one stage is needed')
        for i, stage in enumerate(self.stages):
            for name in ('channels', 'bottleneck', 'stride', 'blocks'):
                require_int(f'model.stages[{i}].{name}', getattr(stage, name), 1)
        if not self.group_choices or 1 not in self.group_choices:
            raise ValueError(f'model.group_choices: must include 1 (the dense network), '
                             f'got {self.group_choices!r}')

    def to_dict(self):
        data = asdict(self)
        data['stages'] = [asdict(s) for s in self.stages]
        data['group_choices'] = list(self.group_choices)
        return data

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'model: expected a mapping, got {data!r}')
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f'model: unknown field(s) {sorted(unknown)}')
        data = dict(data)
        if 'stages' in data:
            try:
                data['stages'] = tuple(StageConfig(**s) for s in data['stages'])
            except TypeError as error:
                raise ValueError(f'model.stages: {error}') from None
        if 'group_choices' in data:
            data['group_choices'] = tuple(data['group_choices'])
        return cls(**data)


@dataclass(frozen=True)
class GroupConfig:
    """One group count per configurable layer, in the model's layer order."""

    groups: tuple

    def to_dict(self):
        return {'groups': list(self.groups)}

    @classmethod
    def from_dict(cls, data, space=None):
        if not isinstance(data, dict) or not isinstance(data.get('groups'), (list, tuple)):
            raise ValueError(f'subnet: expected {{groups: [n, ...]}}, got {data!r}')
        if any(not is_integer(n) for n in data['groups']):
            raise ValueError(f'subnet.groups: expected integers, got {data["groups"]!r}')
        config = cls(tuple(data['groups']))
        return space.validate(config) if space is not None else config

    def key(self):
        return 'g' + '-'.join(str(n) for n in self.groups)

    @classmethod
    def full(cls, space):
        return space.full()

    @classmethod
    def smallest(cls, space):
        return space.smallest()


@dataclass(frozen=True)
class GroupSpace:
    """The configurable layers of one model and the group counts each allows."""

    layers: tuple    # layer names
    choices: tuple   # per layer, ascending group counts

    def validate(self, config):
        if not isinstance(config, GroupConfig):
            raise ValueError(f'group config: expected a GroupConfig, got {config!r}')
        if len(config.groups) != len(self.layers):
            raise ValueError(f'group config: {len(config.groups)} group counts for '
                             f'{len(self.layers)} configurable layers')
        for name, allowed, n in zip(self.layers, self.choices, config.groups, strict=True):
            if n not in allowed or isinstance(n, bool):
                raise ValueError(f'{name}: {n!r} groups not allowed; choices: {allowed}')
        return config

    def full(self):
        return GroupConfig(tuple(c[0] for c in self.choices))

    def smallest(self):
        return GroupConfig(tuple(c[-1] for c in self.choices))

    def uniform(self, n):
        """Every layer at ``n`` groups (layers that cannot split that far: their maximum)."""
        return GroupConfig(tuple(max(c for c in allowed if c <= n) for allowed in self.choices))

    def random(self, rng):
        return GroupConfig(tuple(rng.choice(allowed) for allowed in self.choices))

    def step_up(self, config, index):
        """Layer ``index`` one step further split, or None when it is at its maximum."""
        allowed = self.choices[index]
        position = allowed.index(config.groups[index])
        if position + 1 == len(allowed):
            return None
        groups = list(config.groups)
        groups[index] = allowed[position + 1]
        return GroupConfig(tuple(groups))


class ConvBN(nn.Module):
    """One configurable conv layer: weight-enabling conv + its private batch norms."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, name, choices):
        super().__init__()
        self.conv = GroupConv2d(in_channels, out_channels, kernel_size, stride,
                                kernel_size // 2, name=name, choices=choices)
        self.bn = SwitchableBatchNorm(out_channels, self.conv.group_choices)

    name = property(lambda self: self.conv.name)
    group_choices = property(lambda self: self.conv.group_choices)
    groups = property(lambda self: self.conv.groups)

    def set_groups(self, groups):
        self.conv.set_groups(groups)
        self.bn.set_groups(groups)

    def forward(self, x):
        return self.bn(self.conv(x))


class LinearBN(nn.Module):
    """One configurable fully connected layer with private batch norms."""

    def __init__(self, in_features, out_features, name, choices):
        super().__init__()
        self.linear = GroupLinear(in_features, out_features, name=name, choices=choices)
        self.bn = SwitchableBatchNorm(out_features, self.linear.group_choices, dims=1)

    name = property(lambda self: self.linear.name)
    group_choices = property(lambda self: self.linear.group_choices)
    groups = property(lambda self: self.linear.groups)

    def set_groups(self, groups):
        self.linear.set_groups(groups)
        self.bn.set_groups(groups)

    def forward(self, x):
        return self.bn(self.linear(x))


class Bottleneck(nn.Module):
    def __init__(self, in_channels, stage, stride, name, shuffle, choices):
        super().__init__()
        self.conv1 = ConvBN(in_channels, stage.bottleneck, 1, 1, f'{name}.conv1', choices)
        self.conv2 = ConvBN(stage.bottleneck, stage.bottleneck, 3, stride, f'{name}.conv2',
                            choices)
        self.conv3 = ConvBN(stage.bottleneck, stage.channels, 1, 1, f'{name}.conv3', choices)
        self.shortcut = None
        if stride != 1 or in_channels != stage.channels:
            self.shortcut = ConvBN(in_channels, stage.channels, 1, stride, f'{name}.shortcut',
                                   choices)
        self.shuffle = shuffle

    def forward(self, x):
        out = F.relu(self.conv1(x))
        if self.shuffle:
            # Without it, group i of the 3x3 would only ever see group i of the input.
            out = channel_shuffle(out, self.conv1.groups)
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + identity)


class WeNet(nn.Module):
    def __init__(self, config=WeNetConfig()):
        super().__init__()
        self.config = config
        choices = config.group_choices
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, config.stem_channels, 3, config.stem_stride, 1,
                      bias=False),
            nn.BatchNorm2d(config.stem_channels), nn.ReLU(inplace=True))
        blocks, channels = [], config.stem_channels
        for s, stage in enumerate(config.stages):
            for b in range(stage.blocks):
                stride = stage.stride if b == 0 else 1
                blocks.append(Bottleneck(channels, stage, stride, f'stage{s + 1}.block{b + 1}',
                                         config.shuffle, choices))
                channels = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.hidden = LinearBN(channels, config.head_hidden, 'head.hidden', choices)
        self.classifier = nn.Linear(config.head_hidden, config.num_classes)
        # A plain list, not a ModuleList: these modules are already registered above.
        self.configurable = [m for m in self.modules() if isinstance(m, (ConvBN, LinearBN))]
        self.space = GroupSpace(tuple(m.name for m in self.configurable),
                                tuple(m.group_choices for m in self.configurable))
        # config key -> (mean, var) per configurable layer, see training.calibrate
        self.calibrations = {}

    def set_groups(self, config):
        """Switch every configurable layer in place; no weights are copied.

        Batch-norm statistics calibrated for exactly this configuration, if
        any, are switched in by reference as well.
        """
        self.space.validate(config)
        statistics = self.calibrations.get(config.key())
        for i, (layer, n) in enumerate(zip(self.configurable, config.groups, strict=True)):
            if layer.groups != n:
                layer.set_groups(n)
            layer.bn.statistics = None if statistics is None else statistics[i]

    @property
    def groups(self):
        return GroupConfig(tuple(m.groups for m in self.configurable))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(F.relu(self.hidden(x)))


@dataclass
class SavedModel:
    """A trained WeNet with what serving it needs: input preprocessing and class names."""

    model: WeNet
    preprocess: PreprocessConfig
    classes: list
    meta: dict = field(default_factory=dict)


def save_model(directory, saved):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in saved.model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE),
              metadata={'model': json.dumps(saved.model.config.to_dict())})
    save_calibrations(directory, saved.model)
    write_yaml_atomic(directory / META_FILE, {
        'model': saved.model.config.to_dict(),
        'preprocess': saved.preprocess.to_dict(),
        'classes': [str(c) for c in saved.classes],
        'meta': saved.meta,
    })


def load_model(directory):
    """Read a model directory written by :func:`save_model` (weights + YAML)."""
    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ValueError(f'{path}: missing; is {directory} a trained WeNet directory?')
    try:
        data = yaml.safe_load(meta_path.read_text(encoding='utf-8'))
    except yaml.YAMLError as error:
        raise ValueError(f'{meta_path}: malformed YAML ({error})'.replace('\n', ' ')) from None
    if not isinstance(data, dict) or 'model' not in data or 'preprocess' not in data:
        raise ValueError(f'{meta_path}: expected mappings "model" and "preprocess"')
    model = WeNet(WeNetConfig.from_dict(data['model']))
    try:
        model.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as error:
        raise ValueError(f'{weights_path}: does not match {meta_path} ({error})') from None
    model.eval()
    classes = data.get('classes') or [str(i) for i in range(model.config.num_classes)]
    if len(classes) != model.config.num_classes:
        raise ValueError(f'{meta_path}: {len(classes)} class names for '
                         f'{model.config.num_classes} outputs')
    if (directory / CALIBRATION_FILE).is_file():
        load_calibrations(directory, model)
    return SavedModel(model, PreprocessConfig.from_dict(data['preprocess']), list(classes),
                      dict(data.get('meta') or {}))


def save_calibrations(directory, model):
    """Write the model's calibrated batch-norm statistics next to its weights."""
    tensors = {}
    for key, statistics in model.calibrations.items():
        for i, (mean, var) in enumerate(statistics):
            tensors[f'{key}.{i}.mean'] = mean.contiguous()
            tensors[f'{key}.{i}.var'] = var.contiguous()
    path = Path(directory) / CALIBRATION_FILE
    if tensors:
        save_file(tensors, str(path))
    else:
        path.unlink(missing_ok=True)


def load_calibrations(directory, model):
    path = Path(directory) / CALIBRATION_FILE
    tensors = load_file(str(path))
    layers = len(model.configurable)
    model.calibrations = {}
    for name in tensors:
        key, index, kind = name.rsplit('.', 2)
        if kind != 'mean':
            continue
        try:
            config = model.space.validate(GroupConfig(tuple(int(n) for n in
                                                            key[1:].split('-'))))
            statistics = tuple((tensors[f'{key}.{i}.mean'], tensors[f'{key}.{i}.var'])
                               for i in range(layers))
        except (KeyError, ValueError) as error:
            raise ValueError(f'{path}: entry {key} does not fit the model ({error})') from None
        model.calibrations[config.key()] = statistics
    model.set_groups(model.groups)
