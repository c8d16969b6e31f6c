"""Scoring on the validation split: NLL and greedy BLEU of the largest and smallest sub-networks.

The model-selection metric is the mean greedy BLEU of the two ends of the
design space, so early stopping and checkpoint averaging favour weights that
serve the whole range of sub-networks, not just the largest. Without BLEU
(no detokenizer or references) the metric is the negative mean NLL, so
higher is better either way.
"""

import torch
import torch.nn.functional as F

from dyn_dnn_ros.translation.batching import TokenBatcher, encode_sources
from dyn_dnn_ros.translation.eval_mode import evaluating
from dyn_dnn_ros.translation.greedy import greedy_decode

ENDS = ('largest', 'smallest')
GREEDY_BATCH = 64  # sentences decoded together


class ValidationInterrupted(Exception):
    """A stop was requested while validating; the validation is redone on resume."""


def label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index):
    """Summed label-smoothed cross entropy and plain NLL over non-padding targets.

    The smoothed target puts ``1 - epsilon`` on the reference and spreads
    ``epsilon`` uniformly over the vocabulary (as ``F.cross_entropy`` does).
    """
    mask = target.ne(ignore_index)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.mean(dim=-1)
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    return loss[mask].sum(), nll[mask].sum()


def spread_indices(total, count):
    """``count`` indices spread evenly over ``range(total)``.

    A split is grouped by source (package), so its first sentences would
    come from a few packages only; an even spread samples all of them.
    """
    count = min(count, total)
    return [i * total // count for i in range(count)]


def selection_metric(results):
    """The number early stopping and averaging maximise, and its name."""
    if all(results[end].get('bleu') is not None for end in ENDS):
        return sum(results[end]['bleu'] for end in ENDS) / len(ENDS), 'mean BLEU'
    if all(results[end].get('valid_nll') is not None for end in ENDS):
        return -sum(results[end]['valid_nll'] for end in ENDS) / len(ENDS), '-mean NLL'
    return None, None


class Validator:
    """Scores a SuperTransformer on validation pairs; ``stop_requested`` can cut it short."""

    def __init__(self, pairs, references=None, detokenize=None, max_tokens=4096,
                 bleu_sentences=300, max_len_a=1.5, max_len_b=10):
        self.pairs = list(pairs)
        self.references = references
        self.detokenize = detokenize
        self.max_tokens = max_tokens
        self.bleu_subset = spread_indices(len(self.pairs), bleu_sentences)
        self.max_len_a, self.max_len_b = max_len_a, max_len_b

    @torch.no_grad()
    def evaluate(self, model, device, stop_requested=lambda: False):
        """``{'largest': {'valid_nll', 'bleu'}, 'smallest': {...}}``; None where not computable.

        Raises ``ValidationInterrupted`` when ``stop_requested()`` turns true.
        The active sub-network is restored afterwards.
        """
        space, before = model.space, model.subnet
        results = {}
        with evaluating(model):
            try:
                for end in ENDS:
                    model.set_subnet(getattr(space, end)())
                    results[end] = {
                        'valid_nll': self._nll(model, device, stop_requested),
                        'bleu': self._bleu(model, device, stop_requested)}
            finally:
                model.set_subnet(before)
        return results

    def _nll(self, model, device, stop_requested):
        if not self.pairs:
            return None
        batcher = TokenBatcher(self.pairs, self.max_tokens, model.pad_id, model.bos_id,
                               model.eos_id)
        total, tokens = 0.0, 0
        for indices in batcher.epoch_batches(0):
            if stop_requested():
                raise ValidationInterrupted
            batch = batcher.collate(indices).to(device)
            lprobs = F.log_softmax(model(batch.src, batch.tgt_input).float(), dim=-1)
            total += label_smoothed_nll_loss(lprobs, batch.tgt_output, 0.0,
                                             model.pad_id)[1].item()
            tokens += batch.tgt_tokens
        return total / tokens

    def _bleu(self, model, device, stop_requested):
        if not self.bleu_subset or self.detokenize is None or self.references is None:
            return None
        import sacrebleu
        subset = sorted(self.bleu_subset, key=lambda i: len(self.pairs[i][0]))  # less padding
        hypotheses = {}
        for start in range(0, len(subset), GREEDY_BATCH):
            if stop_requested():
                raise ValidationInterrupted
            chunk = subset[start:start + GREEDY_BATCH]
            src = encode_sources([self.pairs[i][0] for i in chunk], model.pad_id,
                                 model.eos_id).to(device)
            outputs = greedy_decode(model, src, self.max_len_a, self.max_len_b)
            for i, ids in zip(chunk, outputs, strict=True):
                hypotheses[i] = self.detokenize(ids)
        return sacrebleu.corpus_bleu([hypotheses[i] for i in self.bleu_subset],
                                     [[self.references[i] for i in self.bleu_subset]]).score
