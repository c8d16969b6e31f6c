"""The sentences every sub-network translates when the latency dataset times it.

One source sentence at a time (batch 1), as at run time. The sentences are a
fixed, seeded set of K validation pairs shared by every config; each keeps
the length of its reference translation, which reference-length decoding
(``measured_decoding``) decodes to.
"""

from dataclasses import dataclass
import random

import torch

from dyn_dnn_ros.translation.batching import encode_sources


@dataclass(frozen=True)
class Workload:
    """The sentences every sub-network translates when timed, and their reference lengths."""

    sources: tuple  # token-id lists
    target_lengths: tuple  # tokens of each reference translation, EOS excluded

    def __post_init__(self):
        if not self.sources:
            raise ValueError('workload: need at least one sentence')
        if len(self.target_lengths) != len(self.sources):
            raise ValueError(f'workload: {len(self.sources)} sentences but '
                             f'{len(self.target_lengths)} target lengths')


def load_workload(corpus_dir, tokenizer, count, seed, max_positions) -> Workload:
    """``count`` validation pairs drawn with ``seed``: every config's workload."""
    from dyn_dnn_ros.translation.translator import read_split
    sources, references = read_split(corpus_dir, 'valid')
    encoded = zip(map(tokenizer.encode, sources), map(tokenizer.encode, references), strict=True)
    pairs = [(src, len(ref)) for src, ref in encoded
             if 0 < len(src) < max_positions and 0 < len(ref) < max_positions - 1]
    if len(pairs) < count:
        raise ValueError(f'{corpus_dir}: valid split has {len(pairs)} usable sentence pairs, '
                         f'fewer than the {count} the workload needs')
    chosen = random.Random(seed).sample(pairs, count)
    return Workload(tuple(src for src, _ in chosen), tuple(length for _, length in chosen))


def source_tensors(model, workload: Workload, device) -> list[tuple[torch.Tensor, int]]:
    """``([1, S] tensor, reference length)`` per workload sentence, on ``device``."""
    return [(encode_sources([ids], model.pad_id, model.eos_id).to(device), length)
            for ids, length in zip(workload.sources, workload.target_lengths, strict=True)]
