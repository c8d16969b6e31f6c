"""How the latency dataset decodes a workload sentence: for how many steps, by which search.

By default each sentence is decoded for exactly as many tokens as its
reference translation has (``reference``: EOS banned before, forced there):
the lengths follow real sentences, and every sub-network does the same
number of decoder steps, so the latency is a property of the architecture
the predictor can learn. Letting each sub-network stop at its own EOS
(``eos``) makes the latency follow output lengths that no architecture
feature predicts; the paper's fixed 30 steps (``fixed``) is also offered.

Only measurements decode this way; translation uses ``beam_search`` with its
own length rule.
"""

from dataclasses import dataclass
import math

import torch

from dyn_dnn_ros.translation.beam_search import BeamSearchConfig, beam_search, top_candidates
from dyn_dnn_ros.translation.eval_mode import evaluating


@dataclass(frozen=True)
class ReferenceLengths:
    """A ``beam_search`` length rule: exactly ``target_lengths[i]`` tokens, then EOS.

    EOS is banned until a sentence's length and forced there, so every
    sub-network decodes the same lengths (see ``SourceLengthLimit`` for the
    rule's interface).
    """

    target_lengths: tuple  # tokens before EOS, one per sentence of the batch

    def start(self, model, src, config):
        lengths = torch.as_tensor(self.target_lengths, dtype=torch.long, device=src.device)
        if lengths.shape != (src.shape[0],) or bool((lengths < 0).any()):
            raise ValueError(f'target_lengths: expected {src.shape[0]} lengths >= 0, '
                             f'got {lengths.tolist()}')
        eos = model.eos_id
        never = torch.tensor([model.pad_id, model.bos_id], device=src.device)
        never_nor_eos = torch.tensor([model.pad_id, model.bos_id, eos], device=src.device)

        def ban(log_probs, step, limits, forced):
            # PAD and BOS never; EOS while a sentence has not reached its length.
            early = (limits > step) & ~forced
            if early.all():
                log_probs.index_fill_(2, never_nor_eos, -math.inf)
            else:
                log_probs.index_fill_(2, never, -math.inf)
                if early.any():
                    log_probs[:, :, eos].masked_fill_(
                        torch.from_numpy(early).to(src.device)[:, None], -math.inf)

        return lengths, ban


@torch.no_grad()
def fixed_length_search(model, src, width, length) -> int:
    """Beam search of exactly ``length`` steps with EOS forbidden (the paper's protocol)."""
    with evaluating(model):
        device = src.device
        state = model.start_decoding(model.encode(src), beams_per_sentence=width)
        tokens = torch.full((1, width), model.bos_id, dtype=torch.long, device=device)
        # Only the first slot is live at the start, as if the search began with one beam.
        scores = torch.full((1, width), -math.inf, device=device)
        scores[0, 0] = 0.0
        for _ in range(length):
            log_probs = model.decode_step(tokens, state)
            log_probs[:, :, model.eos_id] = -math.inf
            scores, parent, tokens = top_candidates(scores, log_probs, width)
            state.reorder(parent)
    return length


def workload_decoder(model, protocol, beam):
    """A function (``[1, S]`` source, reference length) -> decoder steps, for ``protocol.mode``."""
    if protocol.mode == 'fixed':
        if beam.mode != 'fixed':
            raise ValueError('latency.mode: fixed-length timing needs a fixed beam width, '
                             f'got {beam.describe()}')
        return lambda src, _: fixed_length_search(model, src, beam.width, protocol.fixed_length)
    config = BeamSearchConfig(beam=beam)
    if protocol.mode == 'reference':
        return lambda src, length: beam_search(model, src, config,
                                               lengths=ReferenceLengths((length,)))[0].steps
    return lambda src, _: beam_search(model, src, config)[0].steps
