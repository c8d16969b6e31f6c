"""Which sub-networks the latency dataset times: the two extremes and random ones.

Random ones are drawn as HAT does (uniformly) or weighted per device by a
sampling bias.
"""

from dataclasses import dataclass
from pathlib import Path
import random

import yaml

from dyn_dnn_ros.translation.design.devices import DEVICES
from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.validation import is_finite_number, require_int

# Dimensions a sampling bias may weight; per-layer ones weight every layer alike.
BIAS_DIMENSIONS = ('encoder_embed_dim', 'decoder_embed_dim', 'ffn_dim', 'heads',
                   'encoder_layers', 'decoder_layers', 'ende')


@dataclass(frozen=True)
class SamplingBias:
    """Relative weights of design-space choices for one device; unlisted choices weigh 1.

    The Dynamic-DNN poster's observation (GPUs prefer shallow and wide, CPUs
    deep and narrow) argues for sampling each device's dataset separately,
    denser where that device's good sub-networks lie.
    """

    weights: dict  # dimension -> {choice: weight}

    def check(self, space: DesignSpace, where='bias'):
        if not isinstance(self.weights, dict):
            raise ValueError(f'{where}: expected a mapping dimension -> {{choice: weight}}')
        for dim, table in self.weights.items():
            if dim not in BIAS_DIMENSIONS:
                raise ValueError(f'{where}: unknown dimension {dim!r}; expected one of '
                                 f'{BIAS_DIMENSIONS}')
            if not isinstance(table, dict) or not table:
                raise ValueError(f'{where}.{dim}: expected a mapping choice -> weight')
            for choice, weight in table.items():
                if choice not in getattr(space, dim):
                    raise ValueError(f'{where}.{dim}: choice {choice!r} not in the design space '
                                     f'{list(getattr(space, dim))}')
                if not is_finite_number(weight) or weight < 0:
                    raise ValueError(f'{where}.{dim}[{choice}]: weight must be a finite number '
                                     f'>= 0, got {weight!r}')
            if not any(self.weight(dim, c) > 0 for c in getattr(space, dim)):
                raise ValueError(f'{where}.{dim}: every choice has weight 0')
        return self

    def weight(self, dim, choice) -> float:
        return float(self.weights.get(dim, {}).get(choice, 1.0))


def load_sampling_bias(path, device, space: DesignSpace) -> SamplingBias | None:
    """The ``device`` section of a bias YAML (``cpu: {decoder_layers: {6: 3}, ...}``), if any."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f'{path}: cannot read sampling bias: {err}') from None
    if not isinstance(data, dict) or set(data) - set(DEVICES):
        raise ValueError(f'{path}: expected sections among {DEVICES}, got '
                         f'{sorted(data) if isinstance(data, dict) else type(data).__name__}')
    section = data.get(device)
    if section is None:
        return None
    return SamplingBias(section).check(space, where=f'{path}:{device}')


def sample_config(space: DesignSpace, rng: random.Random,
                  bias: SamplingBias | None = None) -> SubnetConfig:
    """One random sub-network: HAT's uniform sampling, or weighted by ``bias``."""
    if bias is None:
        return space.sample(rng)

    def pick(dim):
        choices = getattr(space, dim)
        return rng.choices(choices, weights=[bias.weight(dim, c) for c in choices])[0]

    el, dl = pick('encoder_layers'), pick('decoder_layers')
    ende = [e for e in space.ende if e <= el]
    ende_weights = [bias.weight('ende', e) for e in ende]
    if not any(ende_weights):  # the bias weighted only spans this encoder depth cannot use
        ende_weights = [1.0] * len(ende)
    return SubnetConfig(
        encoder_embed_dim=pick('encoder_embed_dim'), decoder_embed_dim=pick('decoder_embed_dim'),
        encoder_layers=el, decoder_layers=dl,
        encoder_ffn=tuple(pick('ffn_dim') for _ in range(el)),
        encoder_heads=tuple(pick('heads') for _ in range(el)),
        decoder_ffn=tuple(pick('ffn_dim') for _ in range(dl)),
        decoder_self_heads=tuple(pick('heads') for _ in range(dl)),
        decoder_cross_heads=tuple(pick('heads') for _ in range(dl)),
        decoder_ende=tuple(rng.choices(ende, weights=ende_weights)[0] for _ in range(dl)))


def dataset_configs(space: DesignSpace, count, seed, bias=None) -> list[SubnetConfig]:
    """The smallest and largest sub-networks, then distinct random ones: ``count`` in all.

    Deterministic in ``seed``, so a resumed run measures the same list. The two
    extremes anchor the predictor at both ends of the latency range.
    """
    require_int('samples', count, 2)
    rng = random.Random(seed)
    configs = {c.key(): c for c in (space.smallest(), space.largest())}
    attempts = 0
    while len(configs) < count and attempts < 100 * count:
        cfg = sample_config(space, rng, bias)
        configs.setdefault(cfg.key(), cfg)
        attempts += 1
    return list(configs.values())
