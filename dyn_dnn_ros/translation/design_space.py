"""The SuperTransformer's design space and the sub-network configurations drawn from it.

A ``DesignSpace`` lists the choices for every elastic dimension (embedding width,
per-layer FFN width and head count, layer counts, encoder-decoder attention span).
A ``SubnetConfig`` is one point in it: one value per dimension and per layer.
"""

from dataclasses import asdict, dataclass, fields
import hashlib
import json
from pathlib import Path
import random

import yaml

from dyn_dnn_ros.validation import is_integer, require_int

# HAT's "arbitrary encoder-decoder attention": a decoder layer may attend to the
# outputs of the last 1, 2 or 3 encoder layers.
MAX_ENDE = 3


def _choices(name, value):
    """Validate one list of choices and return it as a sorted tuple."""
    if is_integer(value):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f'{name} must be a non-empty list of integers, got {value!r}')
    for v in value:
        require_int(f'{name} choice', v, 1)
    if len(set(value)) != len(value):
        raise ValueError(f'{name} has duplicate choices: {list(value)}')
    return tuple(sorted(value))


def _fmt(choices):
    return '{' + ', '.join(str(c) for c in choices) + '}'


@dataclass(frozen=True)
class DesignSpace:
    encoder_embed_dim: tuple[int, ...]
    decoder_embed_dim: tuple[int, ...]
    ffn_dim: tuple[int, ...]
    heads: tuple[int, ...]
    encoder_layers: tuple[int, ...]
    decoder_layers: tuple[int, ...]
    ende: tuple[int, ...] = (1, 2, 3)
    head_dim: int = 64
    max_positions: int = 256

    def __post_init__(self):
        for f in fields(self):
            if f.name in ('head_dim', 'max_positions'):
                require_int(f.name, getattr(self, f.name), 1)
            else:
                object.__setattr__(self, f.name, _choices(f.name, getattr(self, f.name)))
        for name in ('encoder_embed_dim', 'decoder_embed_dim'):
            odd = [d for d in getattr(self, name) if d % 2]
            if odd:  # sinusoidal positions need an even width
                raise ValueError(f'{name} choices must be even, got {odd}')
        if self.ende[-1] > MAX_ENDE:
            raise ValueError(f'ende choices must lie in 1..{MAX_ENDE}, got {list(self.ende)}')
        if self.ende[0] > self.encoder_layers[-1]:
            raise ValueError(f'ende choice {self.ende[0]} exceeds every encoder_layers choice '
                             f'{list(self.encoder_layers)}')

    @classmethod
    def from_dict(cls, data, source='design space'):
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a mapping, got {type(data).__name__}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'{source}: unknown field(s) {unknown}; expected {sorted(known)}')
        required = {f.name for f in fields(cls) if f.name not in ('ende', 'head_dim',
                                                                  'max_positions')}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f'{source}: missing field(s) {missing}')
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f'{source}: {err}') from None

    @classmethod
    def from_yaml(cls, path):
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f'cannot read design space {path}: {err}') from None
        return cls.from_dict(data, source=str(path))

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def largest(self):
        el, dl = self.encoder_layers[-1], self.decoder_layers[-1]
        ende = min(self.ende[-1], el)
        return SubnetConfig(
            encoder_embed_dim=self.encoder_embed_dim[-1],
            decoder_embed_dim=self.decoder_embed_dim[-1],
            encoder_layers=el, decoder_layers=dl,
            encoder_ffn=(self.ffn_dim[-1],) * el, encoder_heads=(self.heads[-1],) * el,
            decoder_ffn=(self.ffn_dim[-1],) * dl, decoder_self_heads=(self.heads[-1],) * dl,
            decoder_cross_heads=(self.heads[-1],) * dl, decoder_ende=(ende,) * dl)

    def smallest(self):
        el, dl = self.encoder_layers[0], self.decoder_layers[0]
        return SubnetConfig(
            encoder_embed_dim=self.encoder_embed_dim[0],
            decoder_embed_dim=self.decoder_embed_dim[0],
            encoder_layers=el, decoder_layers=dl,
            encoder_ffn=(self.ffn_dim[0],) * el, encoder_heads=(self.heads[0],) * el,
            decoder_ffn=(self.ffn_dim[0],) * dl, decoder_self_heads=(self.heads[0],) * dl,
            decoder_cross_heads=(self.heads[0],) * dl, decoder_ende=(self.ende[0],) * dl)

    def sample(self, rng: random.Random):
        """Draw every dimension and every per-layer choice uniformly (HAT's sampling)."""
        el = rng.choice(self.encoder_layers)
        dl = rng.choice(self.decoder_layers)
        ende = [e for e in self.ende if e <= el]

        def per_layer(choices, n):
            return tuple(rng.choice(choices) for _ in range(n))

        return SubnetConfig(
            encoder_embed_dim=rng.choice(self.encoder_embed_dim),
            decoder_embed_dim=rng.choice(self.decoder_embed_dim),
            encoder_layers=el, decoder_layers=dl,
            encoder_ffn=per_layer(self.ffn_dim, el), encoder_heads=per_layer(self.heads, el),
            decoder_ffn=per_layer(self.ffn_dim, dl),
            decoder_self_heads=per_layer(self.heads, dl),
            decoder_cross_heads=per_layer(self.heads, dl), decoder_ende=per_layer(ende, dl))

    def validate(self, cfg):
        cfg.validate(self)
        return cfg


@dataclass(frozen=True)
class SubnetConfig:
    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_layers: int
    decoder_layers: int
    encoder_ffn: tuple[int, ...]
    encoder_heads: tuple[int, ...]
    decoder_ffn: tuple[int, ...]
    decoder_self_heads: tuple[int, ...]
    decoder_cross_heads: tuple[int, ...]
    decoder_ende: tuple[int, ...]

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'subnet config must be a mapping, got {type(data).__name__}')
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = sorted(set(names) - set(data))
        if unknown or missing:
            raise ValueError(f'subnet config: unknown field(s) {unknown}, missing {missing}')
        values = {}
        for name in names:
            v = data[name]
            values[name] = tuple(v) if isinstance(v, (list, tuple)) else v
        return cls(**values)

    def to_dict(self):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def key(self):
        """A short stable identifier, readable at the front and unique through a hash."""
        digest = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()
        return (f'e{self.encoder_embed_dim}x{self.encoder_layers}-'
                f'd{self.decoder_embed_dim}x{self.decoder_layers}-{digest[:8]}')

    def validate(self, space: DesignSpace):
        """Raise ``ValueError`` naming the first field that lies outside ``space``."""
        for name in ('encoder_embed_dim', 'decoder_embed_dim', 'encoder_layers',
                     'decoder_layers'):
            v = getattr(self, name)
            if v not in getattr(space, name):
                raise ValueError(f'{name}={v!r} not in {_fmt(getattr(space, name))}')
        per_layer = {
            'encoder_ffn': ('encoder_layers', space.ffn_dim),
            'encoder_heads': ('encoder_layers', space.heads),
            'decoder_ffn': ('decoder_layers', space.ffn_dim),
            'decoder_self_heads': ('decoder_layers', space.heads),
            'decoder_cross_heads': ('decoder_layers', space.heads),
            'decoder_ende': ('decoder_layers', space.ende),
        }
        for name, (count_name, choices) in per_layer.items():
            values, count = getattr(self, name), getattr(self, count_name)
            if not isinstance(values, tuple) or len(values) != count:
                raise ValueError(f'{name} must have {count_name}={count} entries, got {values!r}')
            for i, v in enumerate(values):
                if v not in choices:
                    raise ValueError(f'{name}[{i}]={v!r} not in {_fmt(choices)}')
        for i, e in enumerate(self.decoder_ende):
            if e > self.encoder_layers:
                raise ValueError(f'decoder_ende[{i}]={e} exceeds '
                                 f'encoder_layers={self.encoder_layers}')
        return self


def ladder(space: DesignSpace, count: int) -> list:
    """``count`` sub-networks from the smallest to the largest, every dimension growing together.

    Step ``i`` takes, in every list of choices, the one a fraction ``i / (count - 1)``
    along it, so with the project's space (decoder layers 1..6) six steps add one
    decoder layer each while widths, heads and attention span grow alongside.
    Duplicates (a small space repeats steps) are dropped.
    """
    if not is_integer(count) or count < 2:
        raise ValueError(f'subnets: a ladder needs at least 2 steps, got {count!r}')

    def pick(choices, fraction):
        return choices[int(fraction * (len(choices) - 1) + 0.5)]

    configs = []
    for i in range(count):
        f = i / (count - 1)
        el, dl = pick(space.encoder_layers, f), pick(space.decoder_layers, f)
        ende = pick([e for e in space.ende if e <= el] or space.ende, f)
        ffn, heads = pick(space.ffn_dim, f), pick(space.heads, f)
        configs.append(space.validate(SubnetConfig(
            encoder_embed_dim=pick(space.encoder_embed_dim, f),
            decoder_embed_dim=pick(space.decoder_embed_dim, f),
            encoder_layers=el, decoder_layers=dl,
            encoder_ffn=(ffn,) * el, encoder_heads=(heads,) * el,
            decoder_ffn=(ffn,) * dl, decoder_self_heads=(heads,) * dl,
            decoder_cross_heads=(heads,) * dl, decoder_ende=(ende,) * dl)))
    return list(dict.fromkeys(configs))
