"""HAT-style SuperTransformer: one weight-sharing encoder-decoder, many sub-networks.

Read top to bottom:

- ``Attention``: multi-head attention with fixed-width heads and an elastic
  head count. ``forward`` attends over whole sequences; incremental decoding
  calls its two halves, ``keys_values`` and ``attend``, on their own.
- ``FeedForward``, ``EncoderLayer``: the encoder's blocks (pre-norm).
- ``EncoderOutput``: what the decoder attends to.
- ``DecoderLayer``: ``forward`` for teacher forcing; ``start_decoding`` and
  ``decode_step`` for incremental decoding, where the layer's key/value
  caches are made and grown.
- ``DecoderState``: the caches of all decoder layers between steps, and
  which beam slots are decoded.
- ``SuperTransformer``: ``set_subnet`` chooses the sub-network; three entry
  points use it: ``forward`` (teacher forcing, for training), ``encode`` +
  ``start_decoding`` + ``decode_step`` (incremental decoding, for search) and
  ``materialize`` (a compact copy of the active sub-network).
- ``count_parameters``: a sub-network's size in closed form.

Two sub-network configurations live in a model: ``super_shape``, the one its
weights are sized for (the largest of the design space for a super-network,
the active one for a materialized copy), and ``subnet``, the active one. Every
elastic layer uses the leading rows/columns of its super weight (see
``elastic.py``), so ``set_subnet`` only records sizes. Heads have a fixed width
(``head_dim``), so fewer heads means less compute, not narrower heads.
"""

from dataclasses import dataclass
import math

import torch
from torch import nn
import torch.nn.functional as F

from dyn_dnn_ros.translation.design_space import DesignSpace, SubnetConfig
from dyn_dnn_ros.translation.elastic import (
    EmbeddingSuper,
    LayerNormSuper,
    LinearSuper,
    PositionTable,
    leading,
    record_active_sizes,
)


class Attention(nn.Module):
    """Multi-head attention with fixed-width heads and an elastic head count.

    ``forward`` computes it over whole sequences: the encoder, and the decoder
    under teacher forcing. Incremental decoding keeps keys and values longer
    than one call (a self-attention cache grown by one position per step,
    cross-attention keys/values computed once per sentence), so it calls the
    two halves itself: ``keys_values``, then ``attend`` or ``attend_beams``.
    """

    def __init__(self, query_dim, key_value_dim, heads, head_dim):
        super().__init__()
        self.head_dim, self.heads = head_dim, heads
        width = heads * head_dim
        self.q_proj = LinearSuper(query_dim, width)
        self.k_proj = LinearSuper(key_value_dim, width)
        self.v_proj = LinearSuper(key_value_dim, width)
        self.out_proj = LinearSuper(width, query_dim)

    def set_active_sizes(self, query_dim, key_value_dim, heads):
        width = heads * self.head_dim
        self.q_proj.set_active_sizes(query_dim, width)
        self.k_proj.set_active_sizes(key_value_dim, width)
        self.v_proj.set_active_sizes(key_value_dim, width)
        self.out_proj.set_active_sizes(width, query_dim)
        record_active_sizes(self, heads=heads)

    def forward(self, query_input, key_value_input, mask=None, causal=False):
        """``query_input`` ``[B, Lq, query_dim]`` attends to ``key_value_input`` ``[B, Lk, ...]``.

        ``mask`` (bool, True where attending is allowed) broadcasts to
        ``[B, heads, Lq, Lk]``; ``causal`` lets position ``i`` see ``0..i``.
        Returns ``[B, Lq, query_dim]``.
        """
        queries = self._split_heads(self.q_proj(query_input))
        keys, values = self.keys_values(key_value_input)
        return self.out_proj(self._weighted_values(queries, keys, values, mask, causal))

    # -- the two halves, for incremental decoding -------------------------------------

    def keys_values(self, key_value_input):
        """Per-head keys and values ``[B, heads, Lk, head_dim]`` of ``[B, Lk, kv_dim]``."""
        return (self._split_heads(self.k_proj(key_value_input)),
                self._split_heads(self.v_proj(key_value_input)))

    def attend(self, query_input, keys, values, mask=None):
        """``forward`` with keys and values from ``keys_values``: ``[B, Lq, query_dim]``."""
        queries = self._split_heads(self.q_proj(query_input))
        return self.out_proj(self._weighted_values(queries, keys, values, mask))

    def attend_beams(self, beam_input, keys, values, mask, beams, slots=None):
        """``attend`` for beam rows ``[R, 1, query_dim]`` against keys/values per sentence.

        The beams of a sentence are that many query positions against its one
        memory, so ``keys``/``values`` hold ``B`` sentences, not ``B * beams``
        rows. Without ``slots``, the rows are the full ``[B, beams]`` grid
        (``R = B * beams``). With ``slots`` (flat indices into the grid) they
        fill only those slots: the projections run on the ``R`` rows and only
        the attention itself sees the zero-padded grid.
        """
        rows, sentences = beam_input.shape[0], keys.shape[0]
        if slots is None:
            grid = beam_input.view(sentences, beams, -1)
            return self.attend(grid, keys, values, mask).view(rows, 1, -1)
        queries = self.q_proj(beam_input).view(rows, -1)
        width = queries.shape[1]
        grid = queries.new_zeros(sentences * beams, width).index_copy_(0, slots, queries)
        mixed = self._weighted_values(self._split_heads(grid.view(sentences, beams, width)),
                                      keys, values, mask)
        mixed = mixed.view(-1, width).index_select(0, slots)
        return self.out_proj(mixed.view(rows, 1, width))

    def _split_heads(self, x):
        """``[B, L, heads * head_dim]`` -> ``[B, heads, L, head_dim]``."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def _weighted_values(self, queries, keys, values, mask=None, causal=False):
        """Attention-weighted values with the heads joined again: ``[B, Lq, heads * head_dim]``."""
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask,
                                             is_causal=causal)
        return out.transpose(1, 2).flatten(2)


class FeedForward(nn.Module):
    def __init__(self, dim, ffn_dim):
        super().__init__()
        self.fc1 = LinearSuper(dim, ffn_dim)
        self.fc2 = LinearSuper(ffn_dim, dim)

    def set_active_sizes(self, dim, ffn_dim):
        self.fc1.set_active_sizes(dim, ffn_dim)
        self.fc2.set_active_sizes(ffn_dim, dim)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


# Pre-norm layers (layer norm before each block, residual path left untouched):
# gradients reach every layer unscaled, so the super-network trains stably with
# a short warm-up, and whichever layer a sub-network stops at, its output passes
# through the same final layer norm, which keeps elastic depth well-conditioned.

class EncoderLayer(nn.Module):
    def __init__(self, dim, ffn_dim, heads, head_dim, dropout):
        super().__init__()
        self.attn_norm = LayerNormSuper(dim)
        self.attn = Attention(dim, dim, heads, head_dim)
        self.ffn_norm = LayerNormSuper(dim)
        self.ffn = FeedForward(dim, ffn_dim)
        self.drop = nn.Dropout(dropout)

    def set_active_sizes(self, dim, ffn_dim, heads):
        self.attn_norm.set_active_sizes(dim)
        self.attn.set_active_sizes(dim, dim, heads)
        self.ffn_norm.set_active_sizes(dim)
        self.ffn.set_active_sizes(dim, ffn_dim)

    def forward(self, x, attend_mask):
        h = self.attn_norm(x)
        x = x + self.drop(self.attn(h, h, mask=attend_mask))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


@dataclass
class EncoderOutput:
    """What the decoder attends to: the last encoder layers' outputs and the source padding."""

    layers: list  # the last encoder layers' outputs [B, S, E], final norm applied, oldest first
    padding_mask: torch.Tensor  # [B, S], True at padding

    def memory(self, last_layers):
        """The last ``last_layers`` outputs joined along time, as in HAT, and where to attend.

        Returns the memory ``[B, last_layers * S, E]`` and its attention mask
        ``[B, 1, 1, last_layers * S]`` (True where attending is allowed).
        """
        memory = torch.cat(self.layers[-last_layers:], dim=1)
        attend = ~self.padding_mask.repeat(1, last_layers)
        return memory, attend[:, None, None, :]


class DecoderLayer(nn.Module):
    def __init__(self, dim, encoder_dim, ffn_dim, self_heads, cross_heads, head_dim, dropout):
        super().__init__()
        self.self_norm = LayerNormSuper(dim)
        self.self_attn = Attention(dim, dim, self_heads, head_dim)
        self.cross_norm = LayerNormSuper(dim)
        self.cross_attn = Attention(dim, encoder_dim, cross_heads, head_dim)
        self.ffn_norm = LayerNormSuper(dim)
        self.ffn = FeedForward(dim, ffn_dim)
        self.drop = nn.Dropout(dropout)
        self.attended_encoder_layers = 1  # the sub-network's decoder_ende for this layer

    def set_active_sizes(self, dim, encoder_dim, ffn_dim, self_heads, cross_heads,
                         attended_encoder_layers):
        self.self_norm.set_active_sizes(dim)
        self.self_attn.set_active_sizes(dim, dim, self_heads)
        self.cross_norm.set_active_sizes(dim)
        self.cross_attn.set_active_sizes(dim, encoder_dim, cross_heads)
        self.ffn_norm.set_active_sizes(dim)
        self.ffn.set_active_sizes(dim, ffn_dim)
        record_active_sizes(self, attended_encoder_layers=attended_encoder_layers)

    def forward(self, x, encoder_out: EncoderOutput):
        """Teacher forcing over a whole target ``x`` ``[B, T, dim]``."""
        h = self.self_norm(x)
        x = x + self.drop(self.self_attn(h, h, causal=True))
        memory, attend_mask = encoder_out.memory(self.attended_encoder_layers)
        x = x + self.drop(self.cross_attn(self.cross_norm(x), memory, mask=attend_mask))
        return x + self.drop(self.ffn(self.ffn_norm(x)))

    # -- incremental decoding: the layer's caches are made and grown here ----------------

    def start_decoding(self, encoder_out: EncoderOutput, rows):
        """The layer's decoding caches for ``rows`` beams of the sentences in ``encoder_out``.

        Returns the cross-attention keys, values and mask, computed once per
        sentence (``[B, heads, S', head_dim]``, ``[B, 1, 1, S']``), and an
        empty self-attention cache of ``rows`` rows.
        """
        memory, attend_mask = encoder_out.memory(self.attended_encoder_layers)
        keys, values = self.cross_attn.keys_values(memory)
        empty = keys.new_zeros(rows, self.self_attn.heads, 0, self.self_attn.head_dim)
        return (keys, values, attend_mask), (empty, empty)

    def decode_step(self, x, self_cache, cross, beams, slots=None):
        """One step for the beam rows ``x`` ``[R, 1, dim]``; returns the output and the cache.

        ``self_cache`` holds the past self-attention keys/values ``[R, heads,
        t, head_dim]``; the returned one has this step's appended. ``cross``
        is ``start_decoding``'s keys, values and mask. The rows are the full
        ``[B, beams]`` grid, or with ``slots`` only those slots (see
        ``Attention.attend_beams``).
        """
        h = self.self_norm(x)
        new_keys, new_values = self.self_attn.keys_values(h)
        keys = torch.cat([self_cache[0], new_keys], dim=2)
        values = torch.cat([self_cache[1], new_values], dim=2)
        x = x + self.drop(self.self_attn.attend(h, keys, values))
        x = x + self.drop(self.cross_attn.attend_beams(self.cross_norm(x), *cross, beams, slots))
        return x + self.drop(self.ffn(self.ffn_norm(x))), (keys, values)


@dataclass
class DecoderState:
    """Incremental decoding state of ``B`` sentences with ``K`` beam slots each.

    With ``active`` (``[B, K]`` bool) only the marked slots are decoded: their
    rows, in row-major slot order, are the caches' rows, so a sentence whose
    beam is narrower than the widest costs only its own beams.
    """

    cross: list  # per decoder layer: keys, values [B, H, S', d] and attend mask [B, 1, 1, S']
    cache: list  # per decoder layer: self-attention keys, values [rows, H, t, d]
    beams: int
    step: int = 0
    active: torch.Tensor | None = None  # [B, K] bool; None: every slot

    @property
    def sentences(self):
        return self.cross[0][0].shape[0]

    def active_slots(self):
        """Flat indices of the decoded slots in the ``[B, K]`` grid, or None for all."""
        return None if self.active is None else self.active.reshape(-1).nonzero().squeeze(1)

    def _require_every_slot(self, operation):
        if self.active is not None:
            raise ValueError(f'{operation} needs every beam slot active; this state decodes '
                             f'{int(self.active.sum())} of {self.active.numel()}')

    def reorder(self, beam_index):
        """New beam ``j`` of sentence ``b`` continues old beam ``beam_index[b, j]``."""
        self._require_every_slot('reorder')
        if tuple(beam_index.shape) != (self.sentences, self.beams):
            raise ValueError(f'beam_index shape {tuple(beam_index.shape)} != '
                             f'(sentences, beams) = ({self.sentences}, {self.beams})')
        offsets = torch.arange(self.sentences, device=beam_index.device)[:, None] * self.beams
        rows = (beam_index + offsets).reshape(-1)
        self.cache = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cache]

    def select(self, sentence_index):
        """Keep only the given sentences (e.g. drop finished ones), in that order."""
        self._require_every_slot('select')
        beam = torch.arange(self.beams, device=sentence_index.device)
        rows = (sentence_index[:, None] * self.beams + beam[None, :]).reshape(-1)
        self.cross = [tuple(t.index_select(0, sentence_index) for t in c) for c in self.cross]
        self.cache = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cache]


class SuperTransformer(nn.Module):
    """Encoder-decoder Transformer whose every layer is elastic.

    ``super_shape`` is the sub-network the weights are sized for: the largest
    one of ``space`` for a super-network, the active one for a materialized
    copy. ``subnet`` is the active sub-network.
    """

    def __init__(self, space: DesignSpace, vocab_size, pad_id, bos_id, eos_id, dropout=0.1,
                 super_shape: SubnetConfig | None = None):
        super().__init__()
        for name, value in (('pad_id', pad_id), ('bos_id', bos_id), ('eos_id', eos_id)):
            if not 0 <= value < vocab_size:
                raise ValueError(f'{name}={value} outside the vocabulary 0..{vocab_size - 1}')
        shape = space.largest() if super_shape is None else space.validate(super_shape)
        self.space, self.super_shape, self.dropout = space, shape, dropout
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, pad_id, bos_id, eos_id
        head_dim = space.head_dim
        self.embed = EmbeddingSuper(
            vocab_size, max(shape.encoder_embed_dim, shape.decoder_embed_dim), pad_id)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(shape.encoder_embed_dim, ffn_dim, heads, head_dim, dropout)
            for ffn_dim, heads in zip(shape.encoder_ffn, shape.encoder_heads, strict=True))
        self.encoder_norm = LayerNormSuper(shape.encoder_embed_dim)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(shape.decoder_embed_dim, shape.encoder_embed_dim, ffn_dim, self_heads,
                         cross_heads, head_dim, dropout)
            for ffn_dim, self_heads, cross_heads in zip(
                shape.decoder_ffn, shape.decoder_self_heads, shape.decoder_cross_heads,
                strict=True))
        self.decoder_norm = LayerNormSuper(shape.decoder_embed_dim)
        self.drop = nn.Dropout(dropout)
        self.positions = PositionTable(space.max_positions)
        self.set_subnet(shape)

    # -- choosing the sub-network -------------------------------------------------

    def set_subnet(self, subnet: SubnetConfig):
        """Activate ``subnet``: records sizes in each layer, copies no weight."""
        subnet.validate(self.space)
        if (subnet.encoder_layers > len(self.encoder_layers)
                or subnet.decoder_layers > len(self.decoder_layers)):
            raise ValueError(f'subnet {subnet.key()} is deeper than this model '
                             f'({len(self.encoder_layers)}+{len(self.decoder_layers)} layers)')
        enc, dec = subnet.encoder_embed_dim, subnet.decoder_embed_dim
        for layer, ffn_dim, heads in zip(self.encoder_layers[:subnet.encoder_layers],
                                         subnet.encoder_ffn, subnet.encoder_heads, strict=True):
            layer.set_active_sizes(enc, ffn_dim, heads)
        self.encoder_norm.set_active_sizes(enc)
        for layer, ffn_dim, self_heads, cross_heads, attended in zip(
                self.decoder_layers[:subnet.decoder_layers], subnet.decoder_ffn,
                subnet.decoder_self_heads, subnet.decoder_cross_heads, subnet.decoder_ende,
                strict=True):
            layer.set_active_sizes(dec, enc, ffn_dim, self_heads, cross_heads, attended)
        self.decoder_norm.set_active_sizes(dec)
        record_active_sizes(self, subnet=subnet)

    # -- shared pieces ---------------------------------------------------------------

    def _embed(self, tokens, dim, first_position=0):
        x = self.embed(tokens, dim) * math.sqrt(dim)
        return self.drop(x + self.positions(first_position, tokens.shape[1], dim, x))

    def _active_decoder_layers(self):
        return self.decoder_layers[:self.subnet.decoder_layers]

    def encode(self, src_tokens) -> EncoderOutput:
        """Run the encoder on ``[B, S]`` right-padded source tokens."""
        padding = src_tokens.eq(self.pad_id)
        attend_mask = ~padding[:, None, None, :]
        x = self._embed(src_tokens, self.subnet.encoder_embed_dim)
        layers = self.subnet.encoder_layers
        first_kept = layers - max(self.subnet.decoder_ende)  # what some decoder layer attends to
        outputs = []
        for i, layer in enumerate(self.encoder_layers[:layers]):
            x = layer(x, attend_mask)
            if i >= first_kept:
                outputs.append(self.encoder_norm(x))
        return EncoderOutput(outputs, padding)

    # -- training: teacher forcing -----------------------------------------------------

    def forward(self, src_tokens, tgt_input):
        """Logits ``[B, T, V]`` for every target position (teacher forcing)."""
        encoder_out = self.encode(src_tokens)
        x = self._embed(tgt_input, self.subnet.decoder_embed_dim)
        for layer in self._active_decoder_layers():
            x = layer(x, encoder_out)
        return self.embed.logits(self.decoder_norm(x))

    # -- inference: incremental decoding ---------------------------------------------

    def start_decoding(self, encoder_out: EncoderOutput, beams_per_sentence: int = 1):
        """Decoding state with cross-attention keys/values computed once per sentence."""
        if beams_per_sentence < 1:
            raise ValueError(f'beams_per_sentence={beams_per_sentence} must be >= 1')
        rows = encoder_out.padding_mask.shape[0] * beams_per_sentence
        cross, cache = [], []
        for layer in self._active_decoder_layers():
            layer_cross, layer_cache = layer.start_decoding(encoder_out, rows)
            cross.append(layer_cross)
            cache.append(layer_cache)
        return DecoderState(cross, cache, beams_per_sentence)

    def decode_step(self, tokens, state: DecoderState):
        """Log-probabilities ``[B, K, V]`` of the next token after ``tokens`` ``[B, K]``.

        Slots the state does not decode (``state.active``) get ``-inf`` everywhere.
        """
        b, k = tokens.shape
        if (b, k) != (state.sentences, state.beams):
            raise ValueError(f'tokens shape {(b, k)} != (sentences, beams) = '
                             f'({state.sentences}, {state.beams})')
        slots = state.active_slots()
        inputs = tokens.reshape(b * k, 1) if slots is None else tokens.reshape(-1, 1)[slots]
        x = self._embed(inputs, self.subnet.decoder_embed_dim, state.step)
        grown = []
        for layer, self_cache, cross in zip(self._active_decoder_layers(), state.cache,
                                            state.cross, strict=True):
            x, layer_cache = layer.decode_step(x, self_cache, cross, k, slots)
            grown.append(layer_cache)
        state.cache, state.step = grown, state.step + 1
        logits = self.embed.step_logits(self.decoder_norm(x))
        log_probs = F.log_softmax(logits.float(), dim=-1).view(-1, self.vocab_size)
        if slots is not None:
            log_probs = log_probs.new_full((b * k, self.vocab_size), -math.inf).index_copy_(
                0, slots, log_probs)
        return log_probs.view(b, k, -1)

    # -- compact copies and sizes ----------------------------------------------------

    def materialize(self):
        """A standalone model holding contiguous copies of the active sub-network's weights."""
        param = self.embed.weight
        with torch.device('meta'):  # allocate nothing until the copy
            compact = SuperTransformer(self.space, self.vocab_size, self.pad_id, self.bos_id,
                                       self.eos_id, self.dropout, super_shape=self.subnet)
        compact = compact.to_empty(device=param.device)
        source = dict(self.named_parameters())
        with torch.no_grad():
            for name, p in compact.named_parameters():
                # Sub-networks use the leading slice of every weight: its shape says it all.
                p.copy_(leading(source[name], p.shape))
        compact.set_subnet(self.subnet)
        return compact.to(param.dtype).train(self.training)

    def count_parameters(self, subnet: SubnetConfig | None = None):
        """Parameters a sub-network uses (shared embedding counted once)."""
        subnet = self.subnet if subnet is None else self.space.validate(subnet)
        return count_parameters(subnet, self.vocab_size, self.space.head_dim)


def count_parameters(subnet: SubnetConfig, vocab_size, head_dim):
    """Closed form of the sub-network's size; a test checks it against ``materialize``."""
    def linear(n_in, n_out):
        return n_in * n_out + n_out

    def attention(query_dim, key_value_dim, heads):
        width = heads * head_dim
        return linear(query_dim, width) + 2 * linear(key_value_dim, width) + linear(width,
                                                                                    query_dim)

    def ffn(dim, ffn_dim):
        return linear(dim, ffn_dim) + linear(ffn_dim, dim)

    enc, dec = subnet.encoder_embed_dim, subnet.decoder_embed_dim
    total = vocab_size * max(enc, dec) + 2 * enc + 2 * dec  # embedding, final norms
    for ffn_dim, heads in zip(subnet.encoder_ffn, subnet.encoder_heads, strict=True):
        total += attention(enc, enc, heads) + ffn(enc, ffn_dim) + 2 * 2 * enc
    for ffn_dim, self_heads, cross_heads in zip(subnet.decoder_ffn, subnet.decoder_self_heads,
                                                subnet.decoder_cross_heads, strict=True):
        total += (attention(dec, dec, self_heads) + attention(dec, enc, cross_heads)
                  + ffn(dec, ffn_dim) + 3 * 2 * dec)
    return total
