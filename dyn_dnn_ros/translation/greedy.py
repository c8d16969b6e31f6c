"""Greedy decoding with the incremental decoder (validation BLEU; beam search comes later)."""

import torch

from dyn_dnn_ros.translation.eval_mode import evaluating


@torch.no_grad()
def greedy_decode(model, src_tokens, max_len_a=1.5, max_len_b=10):
    """Translate ``[B, S]`` source ids (with EOS, right-padded) with the active sub-network.

    Returns one list of target ids per sentence, without BOS/EOS. A sentence
    stops at EOS or after ``max_len_a * source_length + max_len_b`` tokens.
    """
    with evaluating(model):
        src_lengths = src_tokens.ne(model.pad_id).sum(dim=1)
        limits = (src_lengths.float() * max_len_a + max_len_b).long().tolist()
        state = model.start_decoding(model.encode(src_tokens), beams_per_sentence=1)
        outputs = [[] for _ in limits]
        alive = list(range(len(limits)))  # sentence numbers of the rows still decoding
        tokens = torch.full((len(alive), 1), model.bos_id, dtype=torch.long,
                            device=src_tokens.device)
        while alive:
            best = model.decode_step(tokens, state).argmax(dim=-1)  # [alive, 1]
            keep = []
            for row, (sentence, token) in enumerate(zip(alive, best[:, 0].tolist(), strict=True)):
                if token != model.eos_id:
                    outputs[sentence].append(token)
                if token != model.eos_id and len(outputs[sentence]) < limits[sentence]:
                    keep.append(row)
            if len(keep) < len(alive):  # drop finished sentences from the caches
                index = torch.tensor(keep, dtype=torch.long, device=src_tokens.device)
                state.select(index)
                best = best.index_select(0, index)
                alive = [alive[row] for row in keep]
            tokens = best
        return outputs
