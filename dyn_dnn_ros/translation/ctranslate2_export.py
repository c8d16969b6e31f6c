"""Compact CTranslate2 models cut from the SuperTransformer's weights.

A sub-network uses the leading rows and columns of every super weight
(``elastic.py``), so its compact model is a set of slices. This module reads
the slices straight from the safetensors file (NumPy, no torch), lays them out
the way CTranslate2's Transformer specification expects and lets CTranslate2
write (and, for int8, quantize) the model folder.

What CTranslate2 can express, and how the project's sub-networks map onto it:

* pre-norm layers, a final layer norm per stack, scaled shared embeddings and a
  tied output projection without bias: as in ``supernet.py``;
* sinusoidal positions: given as an explicit table, the same rows
  ``elastic.sinusoidal_positions`` computes, so the layout cannot drift;
* one encoder memory per decoder: a decoder layer that attends to more than
  the last encoder layer (``decoder_ende`` > 1) has no equivalent and is
  refused, naming the field;
* one head count per stack (the decoder's self- and cross-attention share it):
  a narrower attention is padded with zero heads up to the stack's widest.
  A zero head's queries and keys are zero, so it attends uniformly, to values
  that are zero, through output columns that are zero: it adds exactly
  nothing, at the cost of its arithmetic. ``heads='uniform'`` refuses such
  sub-networks instead.
"""

from dataclasses import dataclass
import json
import math
from pathlib import Path

import numpy as np

from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.model_file import read_header

HEAD_LAYOUTS = ('pad', 'uniform')
QUANTIZATIONS = ('float32', 'int8', 'int8_float32', 'float16', 'int16')


class NotExpressible(ValueError):
    """The sub-network uses something CTranslate2's Transformer cannot run."""


@dataclass(frozen=True)
class SuperWeights:
    """The super-network's weights as float32 NumPy arrays, with the header that sizes them."""

    path: Path
    space: DesignSpace
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    tensors: dict

    @classmethod
    def load(cls, path):
        from safetensors import safe_open
        path = Path(path)
        header = read_header(path)
        space = DesignSpace.from_dict(header['space'], source=f'{path} design space')
        with safe_open(str(path), framework='numpy') as f:
            tensors = {name: f.get_tensor(name).astype(np.float32) for name in f.keys()}
        return cls(path, space, header['vocab_size'], header['pad_id'], header['bos_id'],
                   header['eos_id'], tensors)

    def slice(self, name, *sizes):
        """A copy of the leading ``sizes`` of tensor ``name`` (what the sub-network uses).

        Always a copy, never a view: CTranslate2's converter changes the arrays
        it is given in place, which through a view would corrupt the super
        weights for every later export from this object.
        """
        return np.array(self.tensors[name][tuple(slice(0, n) for n in sizes)], copy=True)


def check_expressible(subnet: SubnetConfig, heads='pad'):
    """Raise ``NotExpressible`` naming the field when CTranslate2 cannot run ``subnet``."""
    if heads not in HEAD_LAYOUTS:
        raise ValueError(f'heads: must be one of {HEAD_LAYOUTS}, got {heads!r}')
    several = [i for i, e in enumerate(subnet.decoder_ende) if e != 1]
    if several:
        raise NotExpressible(
            f'decoder_ende: decoder layer(s) {several} attend to '
            f'{[subnet.decoder_ende[i] for i in several]} encoder layers; CTranslate2 gives a '
            'decoder one encoder memory, so every decoder_ende must be 1')
    if heads == 'uniform':
        for field in ('encoder_heads', 'decoder_self_heads', 'decoder_cross_heads'):
            if len(set(getattr(subnet, field))) > 1:
                raise NotExpressible(f'{field}: {list(getattr(subnet, field))} differ between '
                                     "layers; CTranslate2 has one head count per stack "
                                     "(export with heads='pad' to zero-pad them)")
        if set(subnet.decoder_self_heads) != set(subnet.decoder_cross_heads):
            raise NotExpressible(
                f'decoder_cross_heads: {list(subnet.decoder_cross_heads)} differ from '
                f'decoder_self_heads {list(subnet.decoder_self_heads)}; CTranslate2 has one '
                "head count per decoder (export with heads='pad' to zero-pad them)")


def position_table(rows, dim):
    """``elastic.sinusoidal_positions(arange(rows), dim)`` in NumPy: sines, then cosines."""
    half = dim // 2
    inv_freq = np.exp(np.arange(half, dtype=np.float32) * -(math.log(10000.0) / (half - 1)))
    angles = np.arange(rows, dtype=np.float32)[:, None] * inv_freq[None, :].astype(np.float32)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _padded_heads(weight, bias, heads, stack_heads, head_dim):
    """Rows of a Q/K/V projection for ``heads`` heads, zero rows up to ``stack_heads``."""
    missing = (stack_heads - heads) * head_dim
    if missing == 0:
        return weight, bias
    return (np.concatenate([weight, np.zeros((missing, weight.shape[1]), np.float32)]),
            np.concatenate([bias, np.zeros(missing, np.float32)]))


class _Slicer:
    """Fills CTranslate2 layer specs with one sub-network's slices of the super weights."""

    def __init__(self, weights: SuperWeights, head_dim):
        self.w, self.head_dim = weights, head_dim

    def norm(self, spec, prefix, dim):
        spec.gamma = self.w.slice(f'{prefix}.weight', dim)
        spec.beta = self.w.slice(f'{prefix}.bias', dim)

    def linear(self, spec, prefix, n_out, n_in):
        spec.weight = self.w.slice(f'{prefix}.weight', n_out, n_in)
        spec.bias = self.w.slice(f'{prefix}.bias', n_out)

    def projection(self, prefix, kind, heads, stack_heads, n_in):
        width = heads * self.head_dim
        return _padded_heads(self.w.slice(f'{prefix}.{kind}_proj.weight', width, n_in),
                             self.w.slice(f'{prefix}.{kind}_proj.bias', width),
                             heads, stack_heads, self.head_dim)

    def output(self, spec, prefix, heads, stack_heads, dim):
        weight = self.w.slice(f'{prefix}.out_proj.weight', dim, heads * self.head_dim)
        missing = (stack_heads - heads) * self.head_dim
        spec.weight = np.concatenate([weight, np.zeros((dim, missing), np.float32)], axis=1)
        spec.bias = self.w.slice(f'{prefix}.out_proj.bias', dim)

    def self_attention(self, spec, prefix, heads, stack_heads, dim):
        q, k, v = (self.projection(prefix, kind, heads, stack_heads, dim)
                   for kind in ('q', 'k', 'v'))
        spec.linear[0].weight = np.concatenate([q[0], k[0], v[0]])
        spec.linear[0].bias = np.concatenate([q[1], k[1], v[1]])
        self.output(spec.linear[1], prefix, heads, stack_heads, dim)

    def cross_attention(self, spec, prefix, heads, stack_heads, dim, memory_dim):
        q = self.projection(prefix, 'q', heads, stack_heads, dim)
        k, v = (self.projection(prefix, kind, heads, stack_heads, memory_dim)
                for kind in ('k', 'v'))
        spec.linear[0].weight, spec.linear[0].bias = q
        spec.linear[1].weight = np.concatenate([k[0], v[0]])
        spec.linear[1].bias = np.concatenate([k[1], v[1]])
        self.output(spec.linear[2], prefix, heads, stack_heads, dim)

    def ffn(self, spec, prefix, dim, ffn_dim):
        self.norm(spec.layer_norm, f'{prefix}.ffn_norm', dim)
        self.linear(spec.linear_0, f'{prefix}.ffn.fc1', ffn_dim, dim)
        self.linear(spec.linear_1, f'{prefix}.ffn.fc2', dim, ffn_dim)


def transformer_spec(weights: SuperWeights, subnet: SubnetConfig, vocabulary, heads='pad'):
    """The CTranslate2 ``TransformerSpec`` of ``subnet`` (raises ``NotExpressible``)."""
    from ctranslate2.specs import transformer_spec as ts

    space = weights.space
    subnet = space.validate(subnet)
    check_expressible(subnet, heads)
    if len(vocabulary) != weights.vocab_size:
        raise ValueError(f'vocabulary: {len(vocabulary)} tokens, the model has '
                         f'{weights.vocab_size}')
    hd, enc, dec = space.head_dim, subnet.encoder_embed_dim, subnet.decoder_embed_dim
    enc_heads = max(subnet.encoder_heads)
    dec_heads = max(subnet.decoder_self_heads + subnet.decoder_cross_heads)
    encoder = ts.TransformerEncoderSpec(subnet.encoder_layers, enc_heads, pre_norm=True,
                                        head_dim=hd)
    decoder = ts.TransformerDecoderSpec(subnet.decoder_layers, dec_heads, pre_norm=True,
                                        head_dim=hd)
    fill = _Slicer(weights, hd)

    encoder.embeddings[0].weight = weights.slice('embed.weight', weights.vocab_size, enc)
    encoder.position_encodings.encodings = position_table(space.max_positions, enc)
    for i, (layer, ffn_dim, h) in enumerate(zip(encoder.layer, subnet.encoder_ffn,
                                                subnet.encoder_heads, strict=True)):
        prefix = f'encoder_layers.{i}'
        fill.norm(layer.self_attention.layer_norm, f'{prefix}.attn_norm', enc)
        fill.self_attention(layer.self_attention, f'{prefix}.attn', h, enc_heads, enc)
        fill.ffn(layer.ffn, prefix, enc, ffn_dim)
    fill.norm(encoder.layer_norm, 'encoder_norm', enc)

    decoder.embeddings.weight = weights.slice('embed.weight', weights.vocab_size, dec)
    decoder.position_encodings.encodings = position_table(space.max_positions, dec)
    for i, (layer, ffn_dim, hs, hc) in enumerate(zip(
            decoder.layer, subnet.decoder_ffn, subnet.decoder_self_heads,
            subnet.decoder_cross_heads, strict=True)):
        prefix = f'decoder_layers.{i}'
        fill.norm(layer.self_attention.layer_norm, f'{prefix}.self_norm', dec)
        fill.self_attention(layer.self_attention, f'{prefix}.self_attn', hs, dec_heads, dec)
        fill.norm(layer.attention.layer_norm, f'{prefix}.cross_norm', dec)
        fill.cross_attention(layer.attention, f'{prefix}.cross_attn', hc, dec_heads, dec, enc)
        fill.ffn(layer.ffn, prefix, dec, ffn_dim)
    fill.norm(decoder.layer_norm, 'decoder_norm', dec)
    decoder.projection.weight = weights.slice('embed.weight', weights.vocab_size, dec)

    spec = ts.TransformerSpec(encoder, decoder)
    spec.config.layer_norm_epsilon = 1e-5  # torch's layer_norm default, used in training
    spec.config.add_source_eos = True  # the encoder was trained on sources ending in EOS
    spec.register_source_vocabulary(list(vocabulary))
    spec.register_target_vocabulary(list(vocabulary))
    return spec


def export_subnet(weights: SuperWeights, subnet: SubnetConfig, vocabulary, out_dir,
                  quantization='int8', heads='pad', metadata=None):
    """Write the CTranslate2 model of ``subnet`` into ``out_dir`` (replaced if present)."""
    import ctranslate2

    if quantization not in QUANTIZATIONS:
        raise ValueError(f'quantization: must be one of {QUANTIZATIONS}, got {quantization!r}')
    spec = transformer_spec(weights, subnet, vocabulary, heads)

    class _FromSpec(ctranslate2.converters.Converter):
        def _load(self):
            return spec

    out_dir = Path(out_dir)
    _FromSpec().convert(str(out_dir), quantization=quantization, force=True)
    if metadata is not None:
        (out_dir / 'dyn_dnn_ros.json').write_text(json.dumps(metadata, indent=1, sort_keys=True))
    return out_dir
