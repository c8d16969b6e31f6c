"""Design space: YAML loading, sampling, and validation messages."""

from dataclasses import replace
from pathlib import Path
import random

import pytest

from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig

CONFIG = Path(__file__).resolve().parents[1] / 'config'


@pytest.fixture(scope='module')
def space():
    return DesignSpace.from_yaml(CONFIG / 'design_space.yaml')


def test_default_space_matches_the_brief(space):
    assert space.encoder_embed_dim == (192, 256)
    assert space.decoder_embed_dim == (192, 256)
    assert space.ffn_dim == (512, 768, 1024)
    assert space.heads == (2, 4)
    assert space.encoder_layers == (6,)
    assert space.decoder_layers == (1, 2, 3, 4, 5, 6)
    assert space.ende == (1, 2, 3)
    assert space.head_dim == 64


def test_paper_space_loads():
    paper = DesignSpace.from_yaml(CONFIG / 'design_space_paper.yaml')
    assert paper.encoder_embed_dim == (512, 640)
    assert paper.ffn_dim == (1024, 2048, 3072)
    assert paper.heads == (4, 8)
    assert paper.largest().validate(paper)


def test_largest_and_smallest(space):
    big, small = space.largest(), space.smallest()
    assert big.encoder_embed_dim == 256 and big.decoder_layers == 6
    assert big.decoder_ffn == (1024,) * 6 and big.decoder_ende == (3,) * 6
    assert small.decoder_layers == 1 and small.encoder_ffn == (512,) * 6
    assert small.decoder_cross_heads == (2,) and small.decoder_ende == (1,)
    space.validate(big)
    space.validate(small)


def test_sampling_is_valid_varied_and_seeded(space):
    samples = [space.sample(random.Random(7)) for _ in range(2)]
    assert samples[0] == samples[1]
    rng = random.Random(0)
    configs = [space.sample(rng) for _ in range(300)]
    for cfg in configs:
        space.validate(cfg)
        assert len(cfg.decoder_ffn) == cfg.decoder_layers
        assert len(cfg.encoder_heads) == cfg.encoder_layers
    assert {c.decoder_layers for c in configs} == set(space.decoder_layers)
    assert {e for c in configs for e in c.decoder_ende} == {1, 2, 3}
    # self- and cross-attention heads are drawn independently
    assert any(c.decoder_self_heads != c.decoder_cross_heads for c in configs)


def test_sampling_respects_shallow_encoders():
    space = DesignSpace(encoder_embed_dim=(32,), decoder_embed_dim=(32,), ffn_dim=(64,),
                        heads=(1,), encoder_layers=(1, 2, 3), decoder_layers=(2,))
    rng = random.Random(1)
    for _ in range(200):
        cfg = space.validate(space.sample(rng))
        assert max(cfg.decoder_ende) <= cfg.encoder_layers


def test_validation_names_field_and_value(space):
    cfg = space.largest()
    bad = replace(cfg, decoder_ffn=(1024, 1024, 600, 1024, 1024, 1024))
    with pytest.raises(ValueError, match=r'decoder_ffn\[2\]=600 not in \{512, 768, 1024\}'):
        bad.validate(space)
    with pytest.raises(ValueError, match='decoder_ffn must have decoder_layers=6 entries'):
        replace(cfg, decoder_ffn=(512,) * 5).validate(space)
    with pytest.raises(ValueError, match=r'encoder_embed_dim=200 not in \{192, 256\}'):
        replace(cfg, encoder_embed_dim=200).validate(space)
    with pytest.raises(ValueError, match=r'decoder_cross_heads\[0\]=3'):
        replace(cfg, decoder_cross_heads=(3,) + (4,) * 5).validate(space)


def test_dict_round_trips_and_keys(space):
    cfg = space.sample(random.Random(3))
    assert SubnetConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.key() == SubnetConfig.from_dict(cfg.to_dict()).key()
    assert space.largest().key() != space.smallest().key()
    assert space.largest().key().startswith('e256x6-d256x6-')
    assert DesignSpace.from_dict(space.to_dict()) == space
    with pytest.raises(ValueError, match='missing'):
        SubnetConfig.from_dict({'encoder_embed_dim': 256})


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / 'space.yaml'
    path.write_text('encoder_embed_dim: [192]\ndecoder_embed_dim: [192]\nffn_dim: [512]\n'
                    'heads: [2]\nencoder_layers: [6]\ndecoder_layers: [1]\nwidth: 3\n')
    with pytest.raises(ValueError, match=r"space\.yaml: unknown field\(s\) \['width'\]"):
        DesignSpace.from_yaml(path)
    path.write_text('encoder_embed_dim: [193]\ndecoder_embed_dim: [192]\nffn_dim: [512]\n'
                    'heads: [2]\nencoder_layers: [6]\ndecoder_layers: [1]\n')
    with pytest.raises(ValueError, match='encoder_embed_dim choices must be even'):
        DesignSpace.from_yaml(path)
    path.write_text('encoder_embed_dim: [192]\n')
    with pytest.raises(ValueError, match='missing field'):
        DesignSpace.from_yaml(path)
    with pytest.raises(ValueError, match='cannot read design space'):
        DesignSpace.from_yaml(tmp_path / 'absent.yaml')
