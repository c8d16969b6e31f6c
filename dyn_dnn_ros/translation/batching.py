"""Token-count batches of sentence pairs for training a translation model.

Sentences are sorted by length so a batch wastes little padding, batches are
filled up to ``max_tokens`` padded tokens, and the batch order is shuffled per
epoch from a seed, so an epoch can be replayed exactly on resume.
"""

from dataclasses import dataclass
import random

import torch

from dyn_dnn_ros.validation import require_int


@dataclass
class Batch:
    src: torch.Tensor  # [B, S]: source ids + EOS, right-padded
    tgt_input: torch.Tensor  # [B, T]: BOS + target ids, right-padded
    tgt_output: torch.Tensor  # [B, T]: target ids + EOS, right-padded
    pad_id: int

    @property
    def src_tokens(self):
        return int(self.src.ne(self.pad_id).sum())

    @property
    def tgt_tokens(self):
        return int(self.tgt_output.ne(self.pad_id).sum())

    def to(self, device):
        return Batch(self.src.to(device), self.tgt_input.to(device), self.tgt_output.to(device),
                     self.pad_id)


def _pad(rows, pad_id):
    out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(pairs, pad_id, bos_id, eos_id):
    """Turn ``(src_ids, tgt_ids)`` pairs (no BOS/EOS) into one padded ``Batch``."""
    if not pairs:
        raise ValueError('cannot collate an empty list of sentence pairs')
    src = _pad([list(s) + [eos_id] for s, _ in pairs], pad_id)
    tgt_in = _pad([[bos_id] + list(t) for _, t in pairs], pad_id)
    tgt_out = _pad([list(t) + [eos_id] for _, t in pairs], pad_id)
    return Batch(src, tgt_in, tgt_out, pad_id)


def encode_sources(sentences, pad_id, eos_id):
    """Source ids (no EOS) -> the ``[B, S]`` tensor the encoder expects."""
    return _pad([list(s) + [eos_id] for s in sentences], pad_id)


class TokenBatcher:
    """Groups pairs into batches of at most ``max_tokens`` padded tokens (per side)."""

    def __init__(self, pairs, max_tokens, pad_id, bos_id, eos_id, seed=0):
        require_int('max_tokens', max_tokens, 1)
        self.pairs, self.max_tokens, self.seed = pairs, max_tokens, seed
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        # +1 for the EOS (source, target output) or BOS (target input) each side gains.
        self.lengths = [(len(s) + 1, len(t) + 1) for s, t in pairs]
        for i, (s, t) in enumerate(self.lengths):
            if max(s, t) > max_tokens:
                raise ValueError(f'pair {i} has {max(s, t)} tokens, more than '
                                 f'max_tokens={max_tokens}')
        self._count = len(self.epoch_batches(0))

    def __len__(self):
        return self._count

    def epoch_batches(self, epoch, rank=0, world_size=1):
        """Lists of pair indices for ``epoch``; under DDP, this rank's equal share."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.pairs)))
        rng.shuffle(order)  # ties in length land in different batches every epoch
        order.sort(key=lambda i: self.lengths[i])
        batches, current, longest = [], [], 0
        for i in order:
            longer = max(longest, *self.lengths[i])
            if current and (len(current) + 1) * longer > self.max_tokens:
                batches.append(current)
                current, longer = [], max(self.lengths[i])
            current.append(i)
            longest = longer
        if current:
            batches.append(current)
        rng.shuffle(batches)
        if world_size > 1:  # every rank must run the same number of steps
            batches = batches[:len(batches) - len(batches) % world_size][rank::world_size]
        return batches

    def collate(self, indices):
        return collate([self.pairs[i] for i in indices], self.pad_id, self.bos_id, self.eos_id)
