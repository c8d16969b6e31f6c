"""Batched beam search with a fixed or a dynamic (per sentence, per step) beam width.

Layout. Sentences are rows; every sentence owns ``K`` beam slots, ``K`` being
the fixed width or the policy's ``bw_max``. Slot ``j`` of a sentence is active
when its cumulative score is finite; inactive slots hold ``-inf``, so every
candidate they spawn scores ``-inf`` and is never selected. Active beams are
always packed into the leading slots, and the tensors are cut to the widest
active sentence at each step. The decoder runs only on the active slots'
rows (``DecoderState.active``), so a narrower beam is less decoder work for
that sentence even when another sentence of the batch is wider; the scores
stay in the ``[sentence, slot]`` grid, where they are ranked together.

One step, for all sentences at once:

1. ``decode_step`` gives next-token log-probabilities of every active beam;
   a sentence at its length limit may only emit EOS. The length limit and
   the tokens banned before it come from a length rule: ``SourceLengthLimit``
   (a multiple of the source length) unless the caller gives another, such
   as the latency measurement's reference lengths.
2. Candidates = beam score + token log-prob, ranked per sentence over
   ``beam x vocab`` (``top_candidates``: per beam, then per sentence).
3. The width for the next step: fixed, or the dynamic policy applied to the
   spread of each sentence's best ``K`` candidates (``beam_policy``).
4. EOS candidates ranked within the width become finished hypotheses, scored
   ``log_prob / length ** alpha`` (length counts the EOS); the best ``width``
   other candidates become the new beams (fairseq's rule).
5. A sentence stops when it has collected ``ceil(patience * width)`` finished
   hypotheses (patience 1 is the standard stop; Kasai et al. 2022), when no
   beam is left, or early, when no running beam can still beat its best
   finished hypothesis. The bound for that test: extending a beam only adds
   log-probs <= 0, so its final log-prob ``s'`` is at most its current ``s``
   (<= 0); dividing a non-positive number by a larger ``length ** alpha``
   raises it, so ``s' / L ** alpha <= s / L_max ** alpha`` where ``L_max`` is
   the longest length the limit allows. Comparing with the *best* finished
   score (not the worst kept) is exact for the 1-best result returned here and
   stops no later.

Finished sentences leave the batch, and their caches with them.

Deadline (anytime decoding, beyond the papers). With a ``deadline`` (a
``time.monotonic()`` value), a step after which the next one would end past
the deadline (judged by the duration of the step just taken) forces EOS on
every running beam, as the length limit does: the result is the best
hypothesis found by then, finished or cut, and is marked ``cut``. A robot
needs a late answer less than a slightly shorter one in time.
"""

from dataclasses import dataclass, field
import math
import time

import numpy as np
import torch

from dyn_dnn_ros.translation.beam_policy import (
    BeamPolicy,
    candidate_metric,
    max_width,
    policy_widths,
)
from dyn_dnn_ros.translation.eval_mode import evaluating
from dyn_dnn_ros.translation.outcome import pooled_width  # noqa: F401  (re-exported)
from dyn_dnn_ros.validation import is_finite_number, require_finite


@dataclass(frozen=True)
class BeamSearchConfig:
    """How to search: ``beam`` is a width (fixed) or a ``BeamPolicy``; the rest is shared."""

    beam: BeamPolicy | int = 5
    alpha: float = 1.0  # length penalty: score = log_prob / length ** alpha
    max_len_a: float = 1.5  # at most a * source_length + b target tokens (EOS excluded)
    max_len_b: float = 10
    patience: float = 1.0  # stop after ceil(patience * width) finished hypotheses
    record_steps: bool = False  # keep per-step widths and spread metrics (calibration)

    def __post_init__(self):
        if isinstance(self.beam, int) and not isinstance(self.beam, bool):
            object.__setattr__(self, 'beam', BeamPolicy(mode='fixed', width=self.beam))
        if not isinstance(self.beam, BeamPolicy):
            raise ValueError(f'beam: expected a width or a BeamPolicy, got {self.beam!r}')
        require_finite('alpha', self.alpha, 0)
        require_finite('max_len_a', self.max_len_a, 0)
        require_finite('max_len_b', self.max_len_b, 0)
        require_finite('patience', self.patience, 0, strict=True)

    @property
    def width(self) -> int:
        """Beam slots per sentence: the fixed width or the policy's ``bw_max``."""
        return max_width(self.beam)


@dataclass
class Hypothesis:
    """The best translation of one sentence and how the search got there."""

    tokens: list[int]  # target ids, no BOS/EOS
    score: float  # log_prob / length ** alpha
    log_prob: float  # summed token log-probs, EOS included
    steps: int  # decoder steps the sentence took
    width_sum: int  # active beams decoded, summed over the steps after the first
    width_steps: int  # steps counted in width_sum
    widths: list[int] | None = None  # per step after the first (record_steps)
    metrics: dict = field(default_factory=dict)  # 'std'/'gap' per step (record_steps)
    cut: bool = False  # the deadline stopped the search before it ended by itself

    @property
    def length(self) -> int:
        return len(self.tokens) + 1  # EOS

    @property
    def avg_width(self) -> float:
        # A sentence that ended at its first step only ever decoded the BOS beam.
        return self.width_sum / self.width_steps if self.width_steps else 1.0

    @property
    def perplexity(self) -> float:
        return math.exp(-self.log_prob / self.length)


def top_candidates(scores, log_probs, k):
    """The ``k`` best ``scores[r, b] + log_probs[r, b, v]`` of each row, best first.

    ``scores`` ``[R, K]``, ``log_probs`` ``[R, K, V]``. Returns their values,
    parent beams and tokens, each ``[R, k]`` (fewer when ``K * V < k``). Two
    stages: the best ``k`` tokens of every beam, then the best ``k`` of those.
    That is the same set as one top-k over ``K x V`` (a candidate among a row's
    best ``k`` is among its own beam's best ``k``, and adding the beam's score
    keeps the order within a beam) at less cost: PyTorch runs a top-k over one
    long row on one thread, ``K`` rows of ``V`` are shared among the threads,
    and the second stage sees only ``K * k`` values.
    """
    rows, beams, vocab = log_probs.shape
    per_beam = min(k, vocab)
    best, token = log_probs.topk(per_beam, dim=2)
    if beams == 1:  # one beam's best are already the row's best, in order
        return scores + best[:, 0], torch.zeros_like(token[:, 0]), token[:, 0]
    top, flat = (scores[:, :, None] + best).view(rows, beams * per_beam).topk(
        min(k, beams * per_beam), dim=1)
    return top, flat // per_beam, token.view(rows, -1).gather(1, flat)


def _advance(state, rows, parent, active, was_active, device):
    """Keep sentences ``rows``; new slot ``j`` of row ``r`` continues slot ``parent[r, j]``.

    ``active`` (``[rows, slots]`` bool, or None for all) marks the slots that
    hold a beam, ``was_active`` the same before this step (NumPy arrays).
    ``DecoderState.select`` and ``reorder`` keep every slot of a fixed count;
    here count and occupancy change with the width, so the caches are
    re-indexed directly, in a single ``index_select`` per tensor.
    """
    if len(rows) != state.sentences:
        kept = torch.from_numpy(rows).to(device)
        state.cross = [tuple(t.index_select(0, kept) for t in c) for c in state.cross]
    if was_active is None:
        source = rows[:, None] * state.beams + parent
    else:  # cache row of each old slot: its rank among the active slots
        rank = (np.cumsum(was_active.reshape(-1)) - 1).reshape(was_active.shape)
        source = rank[rows[:, None], parent]
    cache_rows = torch.from_numpy(source.reshape(-1) if active is None else source[active])
    cache_rows = cache_rows.to(device)
    state.cache = [(k.index_select(0, cache_rows), v.index_select(0, cache_rows))
                   for k, v in state.cache]
    state.beams = parent.shape[1]
    state.active = None if active is None else torch.from_numpy(active).to(device)


def select_candidates(top_scores, top_tokens, width, eos_id):
    """Split ranked candidates ``[R, k]`` into those that finish and those that continue.

    EOS candidates ranked within ``width`` (``[R]``) finish; the best ``width``
    non-EOS candidates continue. Candidates scoring ``-inf`` (spawned by
    inactive slots or banned tokens) do neither. NumPy arrays in and out.
    """
    live = np.isfinite(top_scores)
    is_eos = top_tokens == eos_id
    rank = np.arange(top_scores.shape[1])
    finish = live & is_eos & (rank[None, :] < width[:, None])
    going = live & ~is_eos
    keep = going & (np.cumsum(going, axis=1) <= width[:, None])
    return finish, keep


class SourceLengthLimit:
    """The length rule of translation: at most ``max_len_a * S + max_len_b`` tokens.

    ``S`` is the source length without padding; EOS may come at any step. A
    length rule is asked once per search, by ``start(model, src, config)``,
    for each sentence's limit (tokens before EOS, ``[B]``) and for a
    ``ban(log_probs, step, limits, forced)`` that sets to -inf, in place, the
    ``[rows, beams, vocab]`` log-probabilities of the tokens the running
    sentences may not emit at ``step``. ``limits`` and ``forced`` (NumPy, per
    running sentence): their limits, and which of them must end at this step
    (the search then leaves them only EOS).
    """

    def start(self, model, src, config):
        limit = (src.ne(model.pad_id).sum(dim=1).float() * config.max_len_a
                 + config.max_len_b).long()
        # Neither PAD nor BOS can appear inside a translation.
        never = torch.tensor([model.pad_id, model.bos_id], device=src.device)

        def ban(log_probs, step, limits, forced):
            log_probs.index_fill_(2, never, -math.inf)

        return limit, ban


@torch.no_grad()
def beam_search(model, src_tokens, config: BeamSearchConfig = BeamSearchConfig(),
                deadline=None, *, lengths=None):
    """Translate ``[B, S]`` source ids (with EOS, right-padded) with the active sub-network.

    Returns one ``Hypothesis`` per sentence, in input order. ``deadline``: a
    ``time.monotonic()`` value by which the search should have returned.
    ``lengths``: the length rule (see ``SourceLengthLimit``, the default).
    """
    if deadline is not None and not is_finite_number(deadline):
        raise ValueError(f'deadline: must be a finite time.monotonic() value, got {deadline}')
    if src_tokens.dim() != 2 or src_tokens.shape[0] == 0:
        raise ValueError(f'src_tokens: expected a non-empty [B, S] tensor, '
                         f'got shape {tuple(src_tokens.shape)}')
    with evaluating(model):
        return _search(model, src_tokens, config, deadline,
                       SourceLengthLimit() if lengths is None else lengths)


def _search(model, src, config, deadline, lengths):
    # The decoder's tensors stay on the model's device; the bookkeeping of the few
    # ranked candidates per sentence runs in NumPy, where each of its ~60 small
    # operations per step costs a microsecond instead of a PyTorch dispatch.
    policy, slots, alpha = config.beam, config.width, config.alpha
    dynamic = policy.mode == 'dynamic'
    device, vocab, eos = src.device, model.vocab_size, model.eos_id
    n = src.shape[0]

    # Per sentence (indexed by sentence number). Targets stay inside the positions
    # the model was trained on.
    limit, ban = lengths.start(model, src, config)
    limit = limit.clamp(max=model.space.max_positions - 1).cpu()
    longest_norm = ((limit + 1).double() ** alpha).numpy()
    limit = limit.numpy()
    best_score = np.full(n, -math.inf)
    best_log_prob = np.full(n, -math.inf)
    best_tokens = np.full((n, int(limit.max()) + 1), model.pad_id, dtype=np.int64)
    best_length = np.zeros(n, dtype=np.int64)
    collected = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    width_sum = np.zeros(n, dtype=np.int64)
    width_steps = np.zeros(n, dtype=np.int64)
    cut = np.zeros(n, dtype=bool)
    trace = []  # (sentence numbers, active beams, std, gap, forced) per step if recording

    # Per running sentence (row). Every sentence starts with the single BOS beam.
    sentence = np.arange(n)
    history = np.full((n, 1, 1), model.bos_id, dtype=np.int64)
    scores = np.zeros((n, 1), dtype=np.float32)
    occupied = None  # which slots hold a beam (None: all); the decoder state's ``active``
    tokens = torch.full((n, 1), model.bos_id, dtype=torch.long, device=device)
    state = model.start_decoding(model.encode(src), beams_per_sentence=1)
    not_eos = torch.ones(vocab, dtype=torch.bool, device=device)
    not_eos[eos] = False
    slot_rank = np.arange(slots + slots)

    step_began = time.monotonic()
    for t in range(int(limit.max()) + 1):
        rows, beams = scores.shape
        active = np.isfinite(scores).sum(axis=1)
        log_probs = model.decode_step(tokens, state)
        row_limit = limit[sentence]
        forced = row_limit == t
        if deadline is not None:
            now = time.monotonic()
            if now + (now - step_began) >= deadline:
                cut[sentence[~forced]] = True
                forced = np.ones_like(forced)
            step_began = now
        ban(log_probs, t, row_limit, forced)
        if forced.any():
            only_eos = torch.from_numpy(forced).to(device)[:, None, None] & not_eos
            log_probs = log_probs.masked_fill(only_eos, -math.inf)
        # Up to one EOS per beam sits among the best, so slots + beams candidates
        # always hold `slots` continuations.
        top, parent, token = top_candidates(torch.from_numpy(scores).to(device), log_probs,
                                            slots + beams)
        # Small from here on: exact float64 bookkeeping costs nothing.
        top_scores = top.cpu().numpy().astype(np.float64)
        parent, token = parent.cpu().numpy(), token.cpu().numpy()

        # Cumulative scores, not step log-probs: the search ranks candidates by
        # cumulative score, so their spread says whether the runners-up still
        # have a chance; step log-probs of different parents are not comparable.
        # (A spread needs two scores, hence at least two even when slots == 1.)
        ranked = top_scores[:, :max(slots, 2)]
        if dynamic:
            width = policy_widths(candidate_metric(ranked, policy.metric), policy)
        else:
            width = np.full(rows, slots, dtype=np.int64)
        if config.record_steps:
            trace.append((sentence, active, candidate_metric(ranked, 'std'),
                          candidate_metric(ranked, 'gap'), forced))
        if t > 0:
            width_sum[sentence] += active
            width_steps[sentence] += 1
        steps[sentence] = t + 1

        finish, keep = select_candidates(top_scores, token, width, eos)
        collected[sentence] += finish.sum(axis=1)
        finished_score = np.where(finish, top_scores / float(t + 1) ** alpha, -math.inf)
        step_rank = finished_score.argmax(axis=1)
        step_best = finished_score[np.arange(rows), step_rank]
        better = step_best > best_score[sentence]
        if better.any():
            row = better.nonzero()[0]
            winner = sentence[row]
            best_score[winner] = step_best[row]
            best_log_prob[winner] = top_scores[row, step_rank[row]]
            best_tokens[winner, :t] = history[row, parent[row, step_rank[row]], 1:]
            best_length[winner] = t

        kept = keep.sum(axis=1)
        best_running = np.where(keep, top_scores, -math.inf).max(axis=1)
        hopeless = best_running / longest_norm[sentence] <= best_score[sentence]
        enough = collected[sentence] >= np.ceil(config.patience * width).astype(np.int64)
        going = ~(enough | hopeless | (kept == 0))
        if not going.any():
            break

        # Kept candidates first, in rank order; later slots are inactive.
        candidates = keep.shape[1]
        order = np.argsort(np.where(keep, slot_rank[:candidates], candidates), axis=1,
                           kind='stable')
        live_rows = going.nonzero()[0]
        new_width = int(kept[live_rows].max())
        chosen = order[live_rows, :new_width]
        picked = (live_rows[:, None], chosen)
        parent_beam, now_occupied, next_tokens = parent[picked], keep[picked], token[picked]
        scores = np.where(now_occupied, top_scores[picked], -math.inf).astype(np.float32)
        history = np.concatenate([history[live_rows[:, None], parent_beam],
                                  next_tokens[:, :, None]], axis=2)
        now_occupied = None if now_occupied.all() else now_occupied
        _advance(state, live_rows, parent_beam, now_occupied, occupied, device)
        occupied = now_occupied
        tokens = torch.from_numpy(next_tokens).to(device)
        sentence = sentence[live_rows]

    return _results(best_tokens, best_length, best_score, best_log_prob, steps, width_sum,
                    width_steps, cut, trace if config.record_steps else None)


def _results(best_tokens, best_length, best_score, best_log_prob, steps, width_sum,
             width_steps, cut, trace):
    if not np.isfinite(best_score).all():
        missing = (~np.isfinite(best_score)).nonzero()[0].tolist()
        raise RuntimeError(f'beam search ended sentences {missing} without a hypothesis')
    tokens, lengths = best_tokens.tolist(), best_length.tolist()
    results = [
        Hypothesis(tokens=row[:length], score=score, log_prob=log_prob, steps=step,
                   width_sum=wsum, width_steps=wsteps, cut=was_cut)
        for row, length, score, log_prob, step, wsum, wsteps, was_cut in zip(
            tokens, lengths, best_score.tolist(), best_log_prob.tolist(), steps.tolist(),
            width_sum.tolist(), width_steps.tolist(), cut.tolist(), strict=True)]
    if trace is not None:
        for result in results:
            result.widths, result.metrics = [], {'std': [], 'gap': []}
        for t, (sentence, active, std, gap, forced) in enumerate(trace):
            numbers, active, forced = sentence.tolist(), active.tolist(), forced.tolist()
            std, gap = std.tolist(), gap.tolist()
            for i, number in enumerate(numbers):
                result = results[number]
                if t > 0:
                    result.widths.append(active[i])
                if not forced[i]:  # only EOS was allowed: the spread means nothing
                    result.metrics['std'].append(std[i])
                    result.metrics['gap'].append(gap[i])
    return results
