"""HAT-style SuperTransformer: one weight-sharing encoder-decoder, many sub-networks.

Read top to bottom: attention and feed-forward blocks, encoder and decoder
layers, then the model with its three entry points: ``forward`` (teacher
forcing, for training), ``encode`` + ``start_decoding`` + ``decode_step``
(incremental decoding with key/value caches, for search) and ``materialize``
(a compact copy of the active sub-network, for the fastest inference).

Every elastic layer slices the leading rows/columns of its super weight, so
``set_subnet`` only records sizes. Heads have a fixed width (``head_dim``), so
fewer heads means less compute, not narrower heads.
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
    set_active,
)


class Attention(nn.Module):
    """Multi-head attention with fixed-width heads and an elastic head count."""

    def __init__(self, q_dim, kv_dim, heads, head_dim):
        super().__init__()
        self.head_dim, self.heads = head_dim, heads
        width = heads * head_dim
        self.q_proj = LinearSuper(q_dim, width)
        self.k_proj = LinearSuper(kv_dim, width)
        self.v_proj = LinearSuper(kv_dim, width)
        self.out_proj = LinearSuper(width, q_dim)

    def set_sample(self, q_dim, kv_dim, heads):
        width = heads * self.head_dim
        self.q_proj.set_sample(q_dim, width)
        self.k_proj.set_sample(kv_dim, width)
        self.v_proj.set_sample(kv_dim, width)
        self.out_proj.set_sample(width, q_dim)
        set_active(self, heads=heads)

    def split_heads(self, x):
        """``[B, L, heads * head_dim]`` -> ``[B, heads, L, head_dim]``."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def queries(self, x):
        return self.split_heads(self.q_proj(x))

    def keys_values(self, x):
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def mix(self, q, k, v, mask=None, causal=False):
        """Attention-weighted values with the heads joined again: ``[B, Lq, heads * head_dim]``."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        return out.transpose(1, 2).flatten(2)

    def attend(self, q, k, v, mask=None, causal=False):
        """Attention output projected back to the model width: ``[B, Lq, q_dim]``."""
        return self.out_proj(self.mix(q, k, v, mask, causal))


class FeedForward(nn.Module):
    def __init__(self, dim, ffn_dim):
        super().__init__()
        self.fc1 = LinearSuper(dim, ffn_dim)
        self.fc2 = LinearSuper(ffn_dim, dim)

    def set_sample(self, dim, ffn_dim):
        self.fc1.set_sample(dim, ffn_dim)
        self.fc2.set_sample(ffn_dim, dim)

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

    def set_sample(self, dim, ffn_dim, heads):
        self.attn_norm.set_sample(dim)
        self.attn.set_sample(dim, dim, heads)
        self.ffn_norm.set_sample(dim)
        self.ffn.set_sample(dim, ffn_dim)

    def forward(self, x, attend_mask):
        h = self.attn_norm(x)
        x = x + self.drop(self.attn.attend(self.attn.queries(h), *self.attn.keys_values(h),
                                           mask=attend_mask))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


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
        self.ende = 1

    def set_sample(self, dim, encoder_dim, ffn_dim, self_heads, cross_heads, ende):
        self.self_norm.set_sample(dim)
        self.self_attn.set_sample(dim, dim, self_heads)
        self.cross_norm.set_sample(dim)
        self.cross_attn.set_sample(dim, encoder_dim, cross_heads)
        self.ffn_norm.set_sample(dim)
        self.ffn.set_sample(dim, ffn_dim)
        set_active(self, ende=ende)

    def cross_keys_values(self, encoder_out):
        """Keys, values and mask over the last ``ende`` encoder layers, joined along time."""
        memory = torch.cat(encoder_out.layers[-self.ende:], dim=1)
        attend = ~encoder_out.padding_mask.repeat(1, self.ende)
        return (*self.cross_attn.keys_values(memory), attend[:, None, None, :])

    def _cross_block(self, x, cross):
        keys, values, attend = cross
        q = self.cross_attn.queries(self.cross_norm(x))
        return x + self.drop(self.cross_attn.attend(q, keys, values, mask=attend))

    def _cross_block_slots(self, x, cross, slots, beams):
        """``_cross_block`` for rows ``[R, 1, dim]`` filling ``slots`` of a ``[B, beams]`` grid.

        The query projection and everything after attention run on the R rows;
        only attention itself sees the padded grid, because a sentence's
        queries must sit together against its one encoder memory.
        """
        keys, values, attend = cross
        attn, rows = self.cross_attn, x.shape[0]
        q = attn.q_proj(self.cross_norm(x)).view(rows, -1)
        grid = q.new_zeros(keys.shape[0] * beams, q.shape[1]).index_copy_(0, slots, q)
        mixed = attn.mix(attn.split_heads(grid.view(keys.shape[0], beams, -1)), keys, values,
                         mask=attend)
        mixed = mixed.view(-1, q.shape[1]).index_select(0, slots)
        return x + self.drop(attn.out_proj(mixed.view(rows, 1, -1)))

    def _ffn_block(self, x):
        return x + self.drop(self.ffn(self.ffn_norm(x)))

    def forward(self, x, cross):
        """Teacher forcing over a whole target ``x`` ``[B, T, dim]``."""
        h = self.self_norm(x)
        x = x + self.drop(self.self_attn.attend(self.self_attn.queries(h),
                                                *self.self_attn.keys_values(h), causal=True))
        return self._ffn_block(self._cross_block(x, cross))

    def step(self, x, cache, cross, beams, slots=None):
        """One decoding step; ``x`` is ``[R, 1, dim]``, ``cache`` the past keys/values.

        ``R = B*K`` rows, or with ``slots`` (flat indices into the ``[B, K]``
        grid) only the rows of those slots.
        """
        h = self.self_norm(x)
        k, v = self.self_attn.keys_values(h)
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        x = x + self.drop(self.self_attn.attend(self.self_attn.queries(h), k, v))
        # The K beams of a sentence are K query rows against that sentence's one
        # encoder memory, so cross keys/values exist once per sentence, not per beam.
        if slots is not None:
            return self._ffn_block(self._cross_block_slots(x, cross, slots, beams)), (k, v)
        rows, _, dim = x.shape
        x = self._cross_block(x.view(rows // beams, beams, dim), cross).view(rows, 1, dim)
        return self._ffn_block(x), (k, v)


@dataclass
class EncoderOutput:
    layers: list  # last up-to-3 encoder layer outputs [B, S, E], final norm applied, oldest first
    padding_mask: torch.Tensor  # [B, S], True at padding

    def select(self, sentence_index):
        return EncoderOutput([x.index_select(0, sentence_index) for x in self.layers],
                             self.padding_mask.index_select(0, sentence_index))


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

    ``shape`` is the sub-network the weights are sized for: the largest one of
    ``space`` for a super-network, the active one for a materialized copy.
    """

    def __init__(self, space: DesignSpace, vocab_size, pad_id, bos_id, eos_id, dropout=0.1,
                 shape: SubnetConfig | None = None):
        super().__init__()
        for name, value in (('pad_id', pad_id), ('bos_id', bos_id), ('eos_id', eos_id)):
            if not 0 <= value < vocab_size:
                raise ValueError(f'{name}={value} outside the vocabulary 0..{vocab_size - 1}')
        shape = space.largest() if shape is None else space.validate(shape)
        self.space, self.shape, self.dropout = space, shape, dropout
        self.vocab_size, self.pad_id, self.bos_id, self.eos_id = vocab_size, pad_id, bos_id, eos_id
        hd = space.head_dim
        self.embed = EmbeddingSuper(
            vocab_size, max(shape.encoder_embed_dim, shape.decoder_embed_dim), pad_id)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(shape.encoder_embed_dim, f, h, hd, dropout)
            for f, h in zip(shape.encoder_ffn, shape.encoder_heads, strict=True))
        self.encoder_norm = LayerNormSuper(shape.encoder_embed_dim)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(shape.decoder_embed_dim, shape.encoder_embed_dim, f, hs, hc, hd, dropout)
            for f, hs, hc in zip(shape.decoder_ffn, shape.decoder_self_heads,
                                 shape.decoder_cross_heads, strict=True))
        self.decoder_norm = LayerNormSuper(shape.decoder_embed_dim)
        self.drop = nn.Dropout(dropout)
        self.positions = PositionTable(space.max_positions)
        self.set_subnet(shape)

    # -- choosing the sub-network -------------------------------------------------

    def set_subnet(self, cfg: SubnetConfig):
        """Activate ``cfg``: records sizes in each layer, copies no weight."""
        cfg.validate(self.space)
        if (cfg.encoder_layers > len(self.encoder_layers)
                or cfg.decoder_layers > len(self.decoder_layers)):
            raise ValueError(f'subnet {cfg.key()} is deeper than this model '
                             f'({len(self.encoder_layers)}+{len(self.decoder_layers)} layers)')
        enc, dec = cfg.encoder_embed_dim, cfg.decoder_embed_dim
        for layer, f, h in zip(self.encoder_layers[:cfg.encoder_layers], cfg.encoder_ffn,
                               cfg.encoder_heads, strict=True):
            layer.set_sample(enc, f, h)
        self.encoder_norm.set_sample(enc)
        for layer, f, hs, hc, e in zip(self.decoder_layers[:cfg.decoder_layers], cfg.decoder_ffn,
                                       cfg.decoder_self_heads, cfg.decoder_cross_heads,
                                       cfg.decoder_ende, strict=True):
            layer.set_sample(dec, enc, f, hs, hc, e)
        self.decoder_norm.set_sample(dec)
        set_active(self, subnet=cfg)

    # -- shared pieces ---------------------------------------------------------------

    def _embed(self, tokens, dim, first_position=0):
        x = self.embed(tokens, dim) * math.sqrt(dim)
        return self.drop(x + self.positions(first_position, tokens.shape[1], dim, x))

    def _active_decoder_layers(self):
        return self.decoder_layers[:self.subnet.decoder_layers]

    # -- training: teacher forcing -----------------------------------------------------

    def encode(self, src_tokens) -> EncoderOutput:
        """Run the encoder on ``[B, S]`` right-padded source tokens."""
        padding = src_tokens.eq(self.pad_id)
        attend = ~padding[:, None, None, :]
        x = self._embed(src_tokens, self.subnet.encoder_embed_dim)
        keep = max(self.subnet.decoder_ende)
        outputs = []
        for i, layer in enumerate(self.encoder_layers[:self.subnet.encoder_layers]):
            x = layer(x, attend)
            if i >= self.subnet.encoder_layers - keep:
                outputs.append(self.encoder_norm(x))
        return EncoderOutput(outputs, padding)

    def forward(self, src_tokens, tgt_input):
        """Logits ``[B, T, V]`` for every target position (teacher forcing)."""
        encoder_out = self.encode(src_tokens)
        x = self._embed(tgt_input, self.subnet.decoder_embed_dim)
        for layer in self._active_decoder_layers():
            x = layer(x, layer.cross_keys_values(encoder_out))
        return self.embed.logits(self.decoder_norm(x))

    # -- inference: incremental decoding ---------------------------------------------

    def start_decoding(self, encoder_out: EncoderOutput, beams_per_sentence: int = 1):
        """Decoding state with cross-attention keys/values computed once per sentence."""
        if beams_per_sentence < 1:
            raise ValueError(f'beams_per_sentence={beams_per_sentence} must be >= 1')
        rows = encoder_out.padding_mask.shape[0] * beams_per_sentence
        cross, cache = [], []
        for layer in self._active_decoder_layers():
            cross.append(layer.cross_keys_values(encoder_out))
            empty = cross[-1][0].new_zeros(rows, layer.self_attn.heads, 0, self.space.head_dim)
            cache.append((empty, empty))
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
        new_cache = []
        for layer, cache, cross in zip(self._active_decoder_layers(), state.cache, state.cross,
                                       strict=True):
            x, kv = layer.step(x, cache, cross, k, slots)
            new_cache.append(kv)
        state.cache, state.step = new_cache, state.step + 1
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
                                       self.eos_id, self.dropout, shape=self.subnet)
        compact = compact.to_empty(device=param.device)
        source = dict(self.named_parameters())
        with torch.no_grad():
            for name, p in compact.named_parameters():
                # Sub-networks use the leading slice of every weight: its shape says it all.
                p.copy_(source[name][tuple(slice(0, n) for n in p.shape)])
        compact.set_subnet(self.subnet)
        return compact.to(param.dtype).train(self.training)

    def count_parameters(self, cfg: SubnetConfig | None = None):
        """Parameters a sub-network uses (shared embedding counted once)."""
        cfg = self.subnet if cfg is None else self.space.validate(cfg)
        return count_parameters(cfg, self.vocab_size, self.space.head_dim)


def count_parameters(cfg: SubnetConfig, vocab_size, head_dim):
    """Closed form of the sub-network's size; a test checks it against ``materialize``."""
    def linear(n_in, n_out):
        return n_in * n_out + n_out

    def attention(q_dim, kv_dim, heads):
        width = heads * head_dim
        return linear(q_dim, width) + 2 * linear(kv_dim, width) + linear(width, q_dim)

    def ffn(dim, ffn_dim):
        return linear(dim, ffn_dim) + linear(ffn_dim, dim)

    enc, dec = cfg.encoder_embed_dim, cfg.decoder_embed_dim
    total = vocab_size * max(enc, dec) + 2 * enc + 2 * dec  # embedding, final norms
    for f, h in zip(cfg.encoder_ffn, cfg.encoder_heads, strict=True):
        total += attention(enc, enc, h) + ffn(enc, f) + 2 * 2 * enc
    for f, hs, hc in zip(cfg.decoder_ffn, cfg.decoder_self_heads, cfg.decoder_cross_heads,
                         strict=True):
        total += attention(dec, dec, hs) + attention(dec, enc, hc) + ffn(dec, f) + 3 * 2 * dec
    return total
