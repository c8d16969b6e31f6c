"""Elastic layers: one super-sized weight, of which a sub-network uses the leading part.

Read top to bottom:

- ``leading``: the one slicing rule. A sub-network takes the *first*
  rows/columns of every weight, so its weights are views of the super
  weights and switching sub-networks copies nothing. ``materialize`` in the
  model uses the same rule to copy a sub-network out.
- ``active_parameters``: a layer's weight and bias cut to its active sizes;
  during inference it keeps the cut views between calls.
- ``LinearSuper`` and ``LayerNormSuper``: elastic ``nn.Linear`` and
  ``nn.LayerNorm``. Each keeps its own active sizes, set through
  ``set_active_sizes`` by the model's ``set_subnet``; nothing global is read.
- ``EmbeddingSuper``: the token embedding, shared by encoder, decoder and the
  output projection.
- ``sinusoidal_positions`` and ``PositionTable``: fixed position embeddings.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F


def record_active_sizes(module, **sizes):
    """Record active sizes (plain ints) on ``module``.

    Writes the instance dict directly: ``nn.Module.__setattr__`` searches the
    parameters, buffers and submodules on every write, and ``set_subnet`` makes
    a few hundred writes, so going through it would make switching noticeably
    slower.
    """
    module.__dict__.update(sizes)


def _check(name, value, limit):
    if not 0 < value <= limit:
        raise ValueError(f'{name}={value} outside 1..{limit} of this layer')
    return value


def leading(tensor, sizes):
    """The first ``sizes[i]`` entries along each dimension ``i`` of ``tensor``: a view."""
    return tensor[tuple(slice(n) for n in sizes)]


def active_parameters(module, sizes):
    """``module.weight`` cut to ``sizes`` and ``module.bias`` to ``sizes[0]``.

    Three ways to the same values:

    - at full size, the parameters themselves: a slice's backward would
      allocate and fill a zero gradient first;
    - with gradients on (training), slices taken at each call, so autograd
      follows them into the parameters;
    - with gradients off (inference), slices kept between calls. Slicing costs
      a few operator calls per weight and a decoding step calls every active
      layer, so re-slicing at each call is a visible share of a small
      sub-network's decoding time. The kept slices are views, so they follow
      in-place weight changes by themselves; a weight that moves (``.to()``,
      ``.half()``, a new ``Parameter``) changes its address, which rebuilds
      them. Kept in the instance dict, not as a buffer: never saved, never
      trained.
    """
    weight, bias = module.weight, module.bias
    if sizes == weight.shape:
        return weight, bias
    if torch.is_grad_enabled():
        return leading(weight, sizes), None if bias is None else bias[:sizes[0]]
    key = (sizes, weight.data_ptr(), None if bias is None else bias.data_ptr())
    kept = module.__dict__.get('_inference_slices')
    if kept is None or kept[0] != key:
        kept = (key, leading(weight.detach(), sizes),
                None if bias is None else bias.detach()[:sizes[0]])
        module.__dict__['_inference_slices'] = kept
    return kept[1], kept[2]


class LinearSuper(nn.Module):
    """``nn.Linear`` on the first ``in_dim`` inputs and ``out_dim`` outputs of its super weight."""

    def __init__(self, super_in, super_out, bias=True):
        super().__init__()
        self.super_in, self.super_out = super_in, super_out
        self.weight = nn.Parameter(torch.empty(super_out, super_in))
        self.bias = nn.Parameter(torch.zeros(super_out)) if bias else None
        nn.init.xavier_uniform_(self.weight)
        self.in_dim, self.out_dim = super_in, super_out

    def set_active_sizes(self, in_dim, out_dim):
        record_active_sizes(self, in_dim=_check('in_dim', in_dim, self.super_in),
                            out_dim=_check('out_dim', out_dim, self.super_out))

    def forward(self, x):
        return F.linear(x, *active_parameters(self, (self.out_dim, self.in_dim)))

    def extra_repr(self):
        return f'{self.in_dim}/{self.super_in} -> {self.out_dim}/{self.super_out}'


class LayerNormSuper(nn.Module):
    """``nn.LayerNorm`` over the first ``dim`` features, with their weight and bias."""

    def __init__(self, super_dim):
        super().__init__()
        self.super_dim = super_dim
        self.weight = nn.Parameter(torch.ones(super_dim))
        self.bias = nn.Parameter(torch.zeros(super_dim))
        self.dim = super_dim

    def set_active_sizes(self, dim):
        record_active_sizes(self, dim=_check('dim', dim, self.super_dim))

    def forward(self, x):
        sizes = (self.dim,)
        return F.layer_norm(x, sizes, *active_parameters(self, sizes))

    def extra_repr(self):
        return f'{self.dim}/{self.super_dim}'


class EmbeddingSuper(nn.Module):
    """Token embedding shared by encoder, decoder and output projection.

    Every token keeps its row; a sub-network uses the leading columns. The
    encoder and decoder may use different widths of the one table, so the
    width is an argument of ``forward`` rather than stored state.
    """

    def __init__(self, num_embeddings, super_dim, padding_idx):
        super().__init__()
        self.super_dim, self.padding_idx = super_dim, padding_idx
        self.weight = nn.Parameter(torch.empty(num_embeddings, super_dim))
        nn.init.normal_(self.weight, mean=0.0, std=super_dim ** -0.5)
        with torch.no_grad():
            self.weight[padding_idx].zero_()

    def forward(self, tokens, dim):
        return F.embedding(tokens, self._columns(dim), self.padding_idx)

    def logits(self, x):
        """Project hidden states ``[..., d]`` onto the vocabulary (tied weights)."""
        return F.linear(x, self._columns(x.shape[-1]))

    def step_logits(self, x):
        """``logits`` for the few rows of one decoding step, from a transposed copy.

        With the table as ``[vocab, d]``, a product with 4 or more rows takes a
        slower path in the CPU BLAS; the same product with ``[d, vocab]``
        (contiguous, and its leading ``d`` rows stay contiguous) is clearly
        faster. The copy is rebuilt whenever the weight changes (training,
        loading); with gradients wanted it is not used.
        """
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.logits(x)
        return x @ self._transposed()[:_check('embed dim', x.shape[-1], self.super_dim)]

    def _transposed(self):
        weight = self.weight
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = self.__dict__.get('_transposed_cache')
        if cached is None or cached[0] != key:
            cached = (key, weight.detach().t().contiguous())
            self.__dict__['_transposed_cache'] = cached  # not a buffer: never saved
        return cached[1]

    def _columns(self, dim):
        _check('embed dim', dim, self.super_dim)
        return self.weight if dim == self.super_dim else self.weight[:, :dim]


def sinusoidal_positions(positions, dim):
    """Fixed sinusoidal position embeddings ``[len(positions), dim]`` (fairseq's layout).

    Row ``i`` depends only on ``positions[i]``, so a table computed once for
    ``arange(n)`` holds exactly the rows a later call would compute.
    """
    half = dim // 2
    inv_freq = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32)
                         * -(math.log(10000.0) / (half - 1)))
    angles = positions.float()[:, None] * inv_freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class PositionTable:
    """Sinusoidal positions tabulated once per width, for the rows a step needs.

    A decoder step embeds one position for all its beams; computing the sines
    anew cost several small operators every step. Not a module buffer:
    nothing to save, and the width is chosen per sub-network.
    """

    def __init__(self, length):
        self.length = length
        self._tables = {}

    def __call__(self, first, count, dim, like):
        """Rows ``first .. first + count - 1`` of width ``dim``, dtype and device of ``like``."""
        if first + count > self.length:  # past the table: computed for this call only
            positions = torch.arange(first, first + count, device=like.device)
            return sinusoidal_positions(positions, dim).to(like.dtype)
        key = (dim, like.device, like.dtype)
        table = self._tables.get(key)
        if table is None:
            positions = torch.arange(self.length, device=like.device)
            table = self._tables[key] = sinusoidal_positions(positions, dim).to(like.dtype)
        return table[first:first + count]
