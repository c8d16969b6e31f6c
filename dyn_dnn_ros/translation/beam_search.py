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
    slots, device = config.width, src.device
    sentences, ban = _start_sentences(model, src, config, lengths)
    beams = _start_beams(model, src, device)
    not_eos = torch.ones(model.vocab_size, dtype=torch.bool, device=device)
    not_eos[model.eos_id] = False
    slot_rank = np.arange(slots + slots)

    clock = _StepClock(deadline)
    for t in range(int(sentences.limit.max()) + 1):
        active = np.isfinite(beams.scores).sum(axis=1)
        log_probs, forced = _next_log_probs(model, beams, sentences, t, ban, clock, not_eos)
        candidates = _rank_candidates(beams.scores, log_probs, slots, device)
        # Cumulative scores, not step log-probs: the search ranks candidates by
        # cumulative score, so their spread says whether the runners-up still
        # have a chance; step log-probs of different parents are not comparable.
        # (A spread needs two scores, hence at least two even when slots == 1.)
        ranked = candidates.scores[:, :max(slots, 2)]
        width = _next_widths(config.beam, ranked, slots)
        _count_step(sentences, beams.sentence, t, active, ranked, forced, config.record_steps)
        finish, keep = select_candidates(candidates.scores, candidates.token, width,
                                         model.eos_id)
        _keep_best_finished(sentences, beams, candidates, finish, t, config.alpha)
        going = _still_going(sentences, beams.sentence, candidates, keep, width,
                             config.patience)
        if not going.any():
            break
        _continue_beams(beams, candidates, keep, going, slot_rank, device)

    return _results(sentences, config.record_steps)


@dataclass
class _Sentences:
    """Per sentence (indexed by sentence number): its length limit and the best found so far."""

    limit: np.ndarray  # tokens before EOS
    longest_norm: np.ndarray  # (limit + 1) ** alpha: the longest hypothesis's length penalty
    best_score: np.ndarray  # -inf until a hypothesis finishes
    best_log_prob: np.ndarray
    best_tokens: np.ndarray  # [n, limit.max() + 1]; PAD after best_length
    best_length: np.ndarray
    collected: np.ndarray  # finished hypotheses so far
    steps: np.ndarray
    width_sum: np.ndarray
    width_steps: np.ndarray
    cut: np.ndarray
    trace: list  # (sentence numbers, active beams, std, gap, forced) per step if recording


def _start_sentences(model, src, config, lengths):
    """Each sentence's length limit, with nothing found yet; and the length rule's ``ban``."""
    n = src.shape[0]
    limit, ban = lengths.start(model, src, config)
    # Targets stay inside the positions the model was trained on.
    limit = limit.clamp(max=model.space.max_positions - 1).cpu()
    longest_norm = ((limit + 1).double() ** config.alpha).numpy()
    limit = limit.numpy()
    sentences = _Sentences(
        limit=limit, longest_norm=longest_norm,
        best_score=np.full(n, -math.inf), best_log_prob=np.full(n, -math.inf),
        best_tokens=np.full((n, int(limit.max()) + 1), model.pad_id, dtype=np.int64),
        best_length=np.zeros(n, dtype=np.int64), collected=np.zeros(n, dtype=np.int64),
        steps=np.zeros(n, dtype=np.int64), width_sum=np.zeros(n, dtype=np.int64),
        width_steps=np.zeros(n, dtype=np.int64), cut=np.zeros(n, dtype=bool), trace=[])
    return sentences, ban


@dataclass
class _Beams:
    """Per running sentence (row): its beams, packed into the leading slots."""

    sentence: np.ndarray  # sentence number of each row
    history: np.ndarray  # [rows, slots, t + 1] tokens of each beam, BOS first
    scores: np.ndarray  # [rows, slots] float32 cumulative log-probs; -inf: no beam
    occupied: np.ndarray | None  # which slots hold a beam (None: all); the state's ``active``
    tokens: torch.Tensor  # [rows, slots] each slot's last token: the decoder's next input
    state: object  # the model's DecoderState


def _start_beams(model, src, device):
    """Every sentence starts with the single BOS beam."""
    n = src.shape[0]
    return _Beams(sentence=np.arange(n),
                  history=np.full((n, 1, 1), model.bos_id, dtype=np.int64),
                  scores=np.zeros((n, 1), dtype=np.float32), occupied=None,
                  tokens=torch.full((n, 1), model.bos_id, dtype=torch.long, device=device),
                  state=model.start_decoding(model.encode(src), beams_per_sentence=1))


class _StepClock:
    """Tells, after each decoder step, whether the next one would end past the deadline."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.step_began = time.monotonic()

    def next_step_too_late(self):
        if self.deadline is None:
            return False
        # The next step is judged to take as long as the one just taken.
        now = time.monotonic()
        too_late = now + (now - self.step_began) >= self.deadline
        self.step_began = now
        return too_late


def _next_log_probs(model, beams, sentences, t, ban, clock, not_eos):
    """Next-token log-probs of the running beams, and which rows may only emit EOS now.

    A row must end at its length limit, and every row when the deadline leaves
    no time for another step (those not at their limit are marked ``cut``).
    """
    log_probs = model.decode_step(beams.tokens, beams.state)
    row_limit = sentences.limit[beams.sentence]
    forced = row_limit == t
    if clock.next_step_too_late():
        sentences.cut[beams.sentence[~forced]] = True
        forced = np.ones_like(forced)
    ban(log_probs, t, row_limit, forced)
    if forced.any():
        only_eos = torch.from_numpy(forced).to(not_eos.device)[:, None, None] & not_eos
        log_probs = log_probs.masked_fill(only_eos, -math.inf)
    return log_probs, forced


@dataclass
class _Candidates:
    """The best candidates of each running sentence, best first, ``[rows, k]`` NumPy arrays."""

    scores: np.ndarray  # float64 cumulative log-probs
    parent: np.ndarray  # the slot each candidate extends
    token: np.ndarray


def _rank_candidates(scores, log_probs, slots, device):
    """Beam scores ``[rows, beams]`` + next-token log-probs, ranked per sentence."""
    # Up to one EOS per beam sits among the best, so slots + beams candidates
    # always hold `slots` continuations.
    top, parent, token = top_candidates(torch.from_numpy(scores).to(device), log_probs,
                                        slots + scores.shape[1])
    # Small from here on: exact float64 bookkeeping costs nothing.
    return _Candidates(scores=top.cpu().numpy().astype(np.float64),
                       parent=parent.cpu().numpy(), token=token.cpu().numpy())


def _next_widths(policy, ranked, slots):
    """Each running sentence's width for the next step, from its best candidates' spread."""
    if policy.mode == 'dynamic':
        return policy_widths(candidate_metric(ranked, policy.metric), policy)
    return np.full(ranked.shape[0], slots, dtype=np.int64)


def _count_step(sentences, sentence, t, active, ranked, forced, record_steps):
    """Count step ``t`` for the running sentences (and trace it when recording)."""
    if record_steps:
        sentences.trace.append((sentence, active, candidate_metric(ranked, 'std'),
                                candidate_metric(ranked, 'gap'), forced))
    if t > 0:
        sentences.width_sum[sentence] += active
        sentences.width_steps[sentence] += 1
    sentences.steps[sentence] = t + 1


def _keep_best_finished(sentences, beams, candidates, finish, t, alpha):
    """Score the hypotheses finishing at step ``t``; keep any that beats its sentence's best."""
    sentence = beams.sentence
    sentences.collected[sentence] += finish.sum(axis=1)
    finished_score = np.where(finish, candidates.scores / float(t + 1) ** alpha, -math.inf)
    step_rank = finished_score.argmax(axis=1)
    step_best = finished_score[np.arange(len(sentence)), step_rank]
    better = step_best > sentences.best_score[sentence]
    if better.any():
        row = better.nonzero()[0]
        winner = sentence[row]
        sentences.best_score[winner] = step_best[row]
        sentences.best_log_prob[winner] = candidates.scores[row, step_rank[row]]
        parent = candidates.parent[row, step_rank[row]]
        sentences.best_tokens[winner, :t] = beams.history[row, parent, 1:]
        sentences.best_length[winner] = t


def _still_going(sentences, sentence, candidates, keep, width, patience):
    """Which running sentences need another step (see the module docstring, point 5)."""
    kept = keep.sum(axis=1)
    best_running = np.where(keep, candidates.scores, -math.inf).max(axis=1)
    hopeless = best_running / sentences.longest_norm[sentence] <= sentences.best_score[sentence]
    enough = sentences.collected[sentence] >= np.ceil(patience * width).astype(np.int64)
    return ~(enough | hopeless | (kept == 0))


def _continue_beams(beams, candidates, keep, going, slot_rank, device):
    """Make the kept candidates of the ``going`` rows the new beams; the other rows leave."""
    # Kept candidates first, in rank order; later slots are inactive.
    count = keep.shape[1]
    order = np.argsort(np.where(keep, slot_rank[:count], count), axis=1, kind='stable')
    live_rows = going.nonzero()[0]
    new_width = int(keep[live_rows].sum(axis=1).max())
    chosen = order[live_rows, :new_width]
    picked = (live_rows[:, None], chosen)
    parent, occupied, tokens = candidates.parent[picked], keep[picked], candidates.token[picked]
    beams.scores = np.where(occupied, candidates.scores[picked], -math.inf).astype(np.float32)
    beams.history = np.concatenate([beams.history[live_rows[:, None], parent],
                                    tokens[:, :, None]], axis=2)
    occupied = None if occupied.all() else occupied
    _advance(beams.state, live_rows, parent, occupied, beams.occupied, device)
    beams.occupied = occupied
    beams.tokens = torch.from_numpy(tokens).to(device)
    beams.sentence = beams.sentence[live_rows]


def _results(sentences, record_steps):
    """One ``Hypothesis`` per sentence, in sentence order."""
    s = sentences
    if not np.isfinite(s.best_score).all():
        missing = (~np.isfinite(s.best_score)).nonzero()[0].tolist()
        raise RuntimeError(f'beam search ended sentences {missing} without a hypothesis')
    tokens, lengths = s.best_tokens.tolist(), s.best_length.tolist()
    results = [
        Hypothesis(tokens=row[:length], score=score, log_prob=log_prob, steps=step,
                   width_sum=wsum, width_steps=wsteps, cut=was_cut)
        for row, length, score, log_prob, step, wsum, wsteps, was_cut in zip(
            tokens, lengths, s.best_score.tolist(), s.best_log_prob.tolist(), s.steps.tolist(),
            s.width_sum.tolist(), s.width_steps.tolist(), s.cut.tolist(), strict=True)]
    if record_steps:
        _attach_trace(results, s.trace)
    return results


def _attach_trace(results, trace):
    """Per-step widths and spread metrics of each sentence, from the search's trace."""
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
