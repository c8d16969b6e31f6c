"""Batched beam search == a plain one-sentence-at-a-time reference, fixed and dynamic widths."""

import collections
import math
from pathlib import Path
import statistics
import time

import numpy as np
import pytest
import torch

from dyn_dnn_ros.translation import beam_search as beam_search_module
from dyn_dnn_ros.translation.batching import encode_sources
from dyn_dnn_ros.translation.beam_policy import BeamPolicy, width_for
from dyn_dnn_ros.translation.beam_search import (
    BeamSearchConfig,
    beam_search,
    pooled_width,
    select_candidates,
    top_candidates,
)
from dyn_dnn_ros.translation.design.measured_decoding import ReferenceLengths
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.greedy import greedy_decode
from dyn_dnn_ros.translation.supernet import DecoderState, SuperTransformer

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / 'models' / 'translation' / 'spm.model'
TEST_EN = ROOT / 'data' / 'corpus' / 'test.en'
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SENTENCES = 200
STOPS = collections.Counter()  # why reference searches stopped, by policy mode

torch.set_num_threads(1)  # tiny models: one thread avoids contention on a shared CPU


def source_sentences():
    """200 real test sentences through the real tokenizer, or random ids if either is missing."""
    if SPM.is_file() and TEST_EN.is_file():
        from dyn_dnn_ros.translation.tokenizer import Tokenizer
        tokenizer = Tokenizer(SPM)
        lines = [line for line in TEST_EN.read_text(encoding='utf-8').splitlines() if line]
        ids = [tokenizer.encode(line)[:40] for line in lines[:SENTENCES]]
        return [s for s in ids if s], tokenizer.vocab_size
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 30, (SENTENCES,), generator=g).tolist()
    return [torch.randint(4, 500, (n,), generator=g).tolist() for n in lengths], 500


@pytest.fixture(scope='module')
def corpus():
    return source_sentences()


@pytest.fixture(scope='module')
def model(corpus):
    """A small random model made decisive (no near-ties) and EOS-prone (varied lengths)."""
    _, vocab = corpus
    space = DesignSpace(encoder_embed_dim=(32,), decoder_embed_dim=(32,), ffn_dim=(64,),
                        heads=(2,), encoder_layers=(1,), decoder_layers=(1,), ende=(1,),
                        head_dim=16,
                        max_positions=128)
    torch.manual_seed(0)
    model = SuperTransformer(space, vocab, PAD, BOS, EOS, dropout=0.0).eval()
    with torch.no_grad():  # let the decoder layers outweigh the copy-the-input residual path
        for layer in model.decoder_layers:
            for module in layer.modules():
                if hasattr(module, 'super_in'):
                    module.weight.mul_(3.0)
    logits, step_logits, bias = model.embed.logits, model.embed.step_logits, torch.zeros(vocab)
    bias[EOS] = 6.0
    # forward projects through `logits`, decode_step (search and reference) through
    # `step_logits`: both get the same decisive, EOS-prone scores.
    model.embed.logits = lambda x: logits(x) * 2.0 + bias
    model.embed.step_logits = lambda x: step_logits(x) * 2.0 + bias
    return model


@pytest.fixture(scope='module')
def sources(corpus):
    return corpus[0]


def batched(model, sources, config, batch=50):
    """Beam search over length-sorted batches (less padding, shorter tails), in input order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results = [None] * len(sources)
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        src = encode_sources([sources[i] for i in chunk], PAD, EOS)
        for i, result in zip(chunk, beam_search(model, src, config), strict=True):
            results[i] = result
    return results


@torch.no_grad()
def reference_search(model, source, config):
    """One sentence, a Python list of hypotheses, each carrying its own key/value cache."""
    policy, alpha = config.beam, config.alpha
    slots = policy.width if policy.mode == 'fixed' else policy.bw_max
    src = torch.tensor([source + [EOS]])
    limit = min(int((len(source) + 1) * config.max_len_a + config.max_len_b),
                model.space.max_positions - 1)
    start = model.start_decoding(model.encode(src), beams_per_sentence=1)
    beams = [([BOS], 0.0, start.cache)]  # (tokens with BOS, cumulative log-prob, own cache)
    best, collected, widths = None, 0, []
    for t in range(limit + 1):
        if t > 0:
            widths.append(len(beams))
        # The hypotheses' caches stacked into one state: a single decoder call per step.
        cache = [tuple(torch.cat([b[2][layer][j] for b in beams]) for j in (0, 1))
                 for layer in range(len(start.cache))]
        state = DecoderState(start.cross, cache, beams=len(beams), step=t)
        last = torch.tensor([[b[0][-1] for b in beams]])
        log_probs = model.decode_step(last, state)[0].double()
        log_probs[:, [PAD, BOS]] = -math.inf
        if t == limit:
            log_probs[:, torch.arange(log_probs.shape[1]) != EOS] = -math.inf
        wanted, candidates = slots + len(beams), []
        for i, (_, score, _) in enumerate(beams):
            values, ids = log_probs[i].topk(wanted)
            candidates += [(score + v, i, tok)
                           for v, tok in zip(values.tolist(), ids.tolist(), strict=True)
                           if v > -math.inf]
        candidates.sort(key=lambda c: -c[0])
        candidates = candidates[:wanted]
        if policy.mode == 'fixed':
            width = slots
        else:
            top = [c[0] for c in candidates[:max(slots, 2)]]
            if len(top) < max(slots, 2):  # too few live candidates to measure: full width
                width = slots
            else:
                spread = top[0] - top[1] if policy.metric == 'gap' else statistics.pstdev(top)
                width = width_for(spread, policy)
        for rank, (score, i, tok) in enumerate(candidates):
            if tok == EOS and rank < width:
                collected += 1
                normalized = score / (t + 1) ** alpha
                if best is None or normalized > best[0]:
                    best = (normalized, score, beams[i][0][1:])
        own = [[(k[i:i + 1], v[i:i + 1]) for k, v in state.cache] for i in range(len(beams))]
        beams = [(beams[i][0] + [tok], score, own[i])
                 for score, i, tok in candidates if tok != EOS][:width]
        enough = collected >= math.ceil(config.patience * width)
        hopeless = (best is not None and beams
                    and beams[0][1] / (limit + 1) ** alpha <= best[0])
        if enough or not beams or hopeless:
            STOPS[policy.mode, 'enough' if enough else 'limit' if not beams else 'bound'] += 1
            return best, t + 1, widths
    raise AssertionError('reference search ran past its length limit')


def assert_same_as_reference(model, sources, config):
    results = batched(model, sources, config)
    assert len(results) == len(sources)
    width_sum = width_steps = 0
    for source, result in zip(sources, results, strict=True):
        (score, log_prob, tokens), steps, widths = reference_search(model, source, config)
        assert result.tokens == tokens
        assert result.steps == steps
        assert result.score == pytest.approx(score, abs=1e-4)
        assert result.log_prob == pytest.approx(log_prob, abs=1e-4)
        assert result.width_sum == sum(widths) and result.width_steps == len(widths)
        width_sum, width_steps = width_sum + sum(widths), width_steps + len(widths)
    assert pooled_width(results) == pytest.approx(width_sum / width_steps)
    return results


@pytest.mark.parametrize('width', [1, 3, 5])
def test_fixed_width_matches_reference_on_200_sentences(model, sources, width):
    assert len(sources) >= 190
    results = assert_same_as_reference(model, sources, BeamSearchConfig(beam=width))
    # The comparison exercised both stopping paths: EOS before and at the length limit.
    limits = [int((len(s) + 1) * 1.5 + 10) for s in sources]
    at_limit = sum(len(r.tokens) == min(lim, 127) for r, lim in zip(results, limits, strict=True))
    assert 0 < at_limit < len(sources)
    assert pooled_width(results) == width  # fixed width: every step carries `width` beams


@pytest.mark.parametrize('metric, sigma', [('std', (0.3, 1.0)), ('gap', (0.2, 2.0))])
def test_dynamic_width_matches_reference(model, sources, metric, sigma):
    policy = BeamPolicy(mode='dynamic', bw_min=1, bw_max=5, sigma_min=sigma[0],
                        sigma_max=sigma[1], metric=metric)
    # All 200 sentences: among the first 60 of the test split, no dynamic search ends
    # by the bound rule, which the last test wants covered.
    results = assert_same_as_reference(model, sources, BeamSearchConfig(beam=policy))
    average = pooled_width(results)
    assert 1.0 < average < 5.0  # the policy really varied the width


def test_batched_dynamic_search_decodes_only_the_active_beams(model, sources, monkeypatch):
    policy = BeamPolicy(mode='dynamic', bw_min=1, bw_max=5, sigma_min=0.3, sigma_max=1.0)
    grid, decoded = [], []
    decode_step = model.decode_step

    def counting(tokens, state):
        grid.append(tokens.numel())
        decoded.append(tokens.numel() if state.active is None else int(state.active.sum()))
        return decode_step(tokens, state)

    monkeypatch.setattr(model, 'decode_step', counting)
    subset = sources[:60]
    results = batched(model, subset, BeamSearchConfig(beam=policy))
    # The decoder's rows are exactly the beams the widths count (plus each
    # sentence's first, BOS-only step), not the padded [sentence, slot] grid.
    assert sum(decoded) == sum(r.width_sum for r in results) + len(subset)
    assert sum(decoded) < 0.9 * sum(grid)


def test_patience_matches_reference_and_searches_longer(model, sources):
    subset = sources[:40]
    standard = batched(model, subset, BeamSearchConfig(beam=3))
    patient = assert_same_as_reference(model, subset, BeamSearchConfig(beam=3, patience=2.0))
    # Same trajectory, stopped later: never fewer steps, never a worse best hypothesis.
    assert all(p.steps >= s.steps for p, s in zip(patient, standard, strict=True))
    assert all(p.score >= s.score - 1e-9 for p, s in zip(patient, standard, strict=True))
    assert sum(p.steps for p in patient) > sum(s.steps for s in standard)
    impatient = assert_same_as_reference(model, subset, BeamSearchConfig(beam=3, patience=0.34))
    assert sum(p.steps for p in impatient) < sum(s.steps for s in standard)


def test_dynamic_forced_to_bw_max_equals_fixed(model, sources):
    subset = sources[:60]
    fixed = batched(model, subset, BeamSearchConfig(beam=4))
    for metric in ('std', 'gap'):
        policy = BeamPolicy(mode='dynamic', bw_min=1, bw_max=4, sigma_min=1e6, sigma_max=2e6,
                            metric=metric)
        dynamic = batched(model, subset, BeamSearchConfig(beam=policy))
        assert [(d.tokens, d.score, d.steps, d.width_sum) for d in dynamic] == \
            [(f.tokens, f.score, f.steps, f.width_sum) for f in fixed]


def test_greedy_is_width_one(model, sources):
    subset = sources[:100]
    src = encode_sources(subset, PAD, EOS)
    greedy = greedy_decode(model, src)
    assert [r.tokens for r in beam_search(model, src, BeamSearchConfig(beam=1))] == greedy


def test_recorded_widths_and_metrics(model, sources):
    policy = BeamPolicy(mode='dynamic', bw_min=2, bw_max=5, sigma_min=0.3, sigma_max=1.0)
    results = batched(model, sources[:50], BeamSearchConfig(beam=policy, record_steps=True))
    for r in results:
        assert len(r.widths) == r.width_steps == r.steps - 1
        assert sum(r.widths) == r.width_sum
        assert all(2 <= w <= 5 for w in r.widths)  # inactive slots are never counted
        assert r.avg_width == pytest.approx(sum(r.widths) / len(r.widths)) if r.widths else True
        assert len(r.metrics['std']) == len(r.metrics['gap']) >= r.steps - 1
        assert all(s >= 0 and g >= 0 for s, g in zip(r.metrics['std'], r.metrics['gap'],
                                                        strict=True))
        assert math.isfinite(r.score) and r.perplexity >= 1.0


@pytest.mark.parametrize('beams,k', [(1, 2), (3, 6), (5, 10), (4, 30)])
def test_two_stage_ranking_equals_one_top_k_over_every_candidate(beams, k):
    generator = torch.Generator().manual_seed(beams * 100 + k)
    rows, vocab = 3, 23
    log_probs = torch.randn(rows, beams, vocab, generator=generator).log_softmax(-1)
    log_probs[:, :, 1] = -math.inf  # a banned token
    scores = torch.randn(rows, beams, generator=generator) * 3
    scores[1, 1:] = -math.inf  # a sentence with one live beam
    expected, index = (scores[:, :, None] + log_probs).view(rows, -1).topk(
        min(k, beams * vocab), dim=1)
    top, parent, token = top_candidates(scores, log_probs, k)
    assert top.shape == expected.shape
    torch.testing.assert_close(top, expected)
    live = torch.isfinite(expected)  # -inf ties may come in any order
    assert torch.equal(parent[live], (index // vocab)[live])
    assert torch.equal(token[live], (index % vocab)[live])
    gathered = scores.gather(1, parent) + log_probs[torch.arange(rows)[:, None], parent, token]
    torch.testing.assert_close(gathered, top)


def test_active_mask_never_selects_inactive_beams():
    vocab, slots = 6, 3
    # Sentence 0 has one active beam, sentence 1 two; inactive slots hold -inf but are
    # given by far the best next-token log-probs, as garbage rows of a real cache might.
    scores = torch.tensor([[-1.0, -math.inf, -math.inf], [-1.0, -2.0, -math.inf]],
                          dtype=torch.float64)
    log_probs = torch.full((2, slots, vocab), -3.0, dtype=torch.float64)
    log_probs[0, 1:], log_probs[1, 2] = 0.0, 0.0
    log_probs[:, :, EOS] = -0.5
    candidates = (scores[:, :, None] + log_probs).view(2, -1)
    top_scores, top_index = candidates.topk(2 * slots, dim=1)
    parent, token = top_index // vocab, top_index % vocab
    finish, keep = select_candidates(top_scores.numpy(), token.numpy(), np.array([3, 3]), EOS)
    finish, keep = torch.from_numpy(finish), torch.from_numpy(keep)
    assert not (parent[0][finish[0] | keep[0]] > 0).any()
    assert not (parent[1][finish[1] | keep[1]] > 1).any()
    assert torch.isfinite(top_scores[finish | keep]).all()
    assert keep.sum(dim=1).tolist() == [3, 3] and finish.sum(dim=1).tolist() == [1, 2]
    # A row with fewer live non-EOS candidates than the width keeps only the live ones.
    dead = torch.tensor([[-1.0, -2.0, -math.inf, -math.inf]], dtype=torch.float64)
    finish, keep = select_candidates(dead.numpy(), np.array([[EOS, 7, 8, 9]]), np.array([4]),
                                     EOS)
    assert keep.tolist() == [[False, True, False, False]]
    assert finish.tolist() == [[True, False, False, False]]


def test_every_beam_ending_at_once_gives_the_empty_hypothesis(model, sources, monkeypatch):
    decode_step = model.decode_step

    def eos_first(tokens, state):
        log_probs = decode_step(tokens, state)
        if state.step == 1:  # the BOS step: EOS outranks everything else by far
            log_probs = log_probs.clone()
            log_probs[..., EOS] = 0.0
            log_probs = torch.log_softmax(log_probs * 50, dim=-1)
        return log_probs

    monkeypatch.setattr(model, 'decode_step', eos_first)
    src = encode_sources(sources[:5], PAD, EOS)
    for width in (1, 4):
        for result in beam_search(model, src, BeamSearchConfig(beam=width, patience=0.25)):
            assert result.tokens == [] and result.steps == 1 and result.avg_width == 1.0
            assert result.length == 1 and math.isfinite(result.score)


def test_zero_length_limit_returns_empty_translations(model, sources):
    src = encode_sources(sources[:3], PAD, EOS)
    results = beam_search(model, src, BeamSearchConfig(beam=3, max_len_a=0, max_len_b=0))
    assert [r.tokens for r in results] == [[], [], []]


def test_target_lengths_fix_every_output_length(model, sources):
    # The model is EOS-prone: left alone, it ends most sentences early.
    src = encode_sources(sources[:4], PAD, EOS)
    lengths = [0, 3, 17, 9]
    for config in (BeamSearchConfig(beam=1), BeamSearchConfig(beam=4), BeamSearchConfig(
            beam=BeamPolicy('dynamic', bw_min=1, bw_max=4, sigma_min=0.1, sigma_max=1.0))):
        results = beam_search(model, src, config, lengths=ReferenceLengths(lengths))
        assert [len(r.tokens) for r in results] == lengths
        assert [r.steps for r in results] == [n + 1 for n in lengths]
        assert all(EOS not in r.tokens for r in results)
    with pytest.raises(ValueError, match='target_lengths'):
        beam_search(model, src, lengths=ReferenceLengths([3, 3]))
    with pytest.raises(ValueError, match='target_lengths'):
        beam_search(model, src, lengths=ReferenceLengths([3, -1, 3, 3]))


@pytest.mark.parametrize('kwargs, name', [
    (dict(beam=0), 'beam.width'),
    (dict(beam='wide'), 'beam'),
    (dict(beam=BeamPolicy('fixed', width=5), alpha=math.nan), 'alpha'),
    (dict(alpha=-1.0), 'alpha'),
    (dict(max_len_a=math.inf), 'max_len_a'),
    (dict(max_len_b=-1), 'max_len_b'),
    (dict(patience=0.0), 'patience'),
    (dict(patience=math.nan), 'patience'),
])
def test_bad_config_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BeamSearchConfig(**kwargs)


def test_bad_source_tensor_is_rejected(model):
    with pytest.raises(ValueError, match='src_tokens'):
        beam_search(model, torch.zeros(0, 3, dtype=torch.long))


def test_zz_reference_comparisons_covered_every_stopping_rule(model, sources):
    """Runs last (by name, in file order): the comparisons stopped by all three rules.

    In a full run the comparisons above filled ``STOPS``; run alone, this test
    makes the comparisons it needs itself.
    """
    if not any(mode == 'fixed' for mode, _ in STOPS):
        for width in (1, 3, 5):
            assert_same_as_reference(model, sources, BeamSearchConfig(beam=width))
        for patience in (2.0, 0.34):
            assert_same_as_reference(model, sources[:40],
                                     BeamSearchConfig(beam=3, patience=patience))
    if not any(mode == 'dynamic' for mode, _ in STOPS):
        policy = BeamPolicy(mode='dynamic', bw_min=1, bw_max=5, sigma_min=0.3, sigma_max=1.0)
        assert_same_as_reference(model, sources, BeamSearchConfig(beam=policy))
    for mode in ('fixed', 'dynamic'):
        assert all(STOPS[mode, rule] > 0 for rule in ('enough', 'limit', 'bound')), STOPS


def _one_layer_model(vocab, dropout=0.0):
    """A small random model (seeded) in eval mode, as the search tests below need."""
    space = DesignSpace(encoder_embed_dim=(32,), decoder_embed_dim=(32,), ffn_dim=(64,),
                        heads=(2,), encoder_layers=(1,), decoder_layers=(1,), ende=(1,),
                        head_dim=16, max_positions=128)
    torch.manual_seed(0)
    return SuperTransformer(space, vocab, PAD, BOS, EOS, dropout=dropout).eval()


def test_a_deadline_stops_the_search_in_time_with_a_hypothesis(corpus, monkeypatch):
    sources, vocab = corpus
    model = _one_layer_model(vocab)
    step_logits, bias = model.embed.step_logits, torch.zeros(vocab)
    bias[EOS] = -30.0   # never ends by itself: every sentence runs to its length limit
    model.embed.step_logits = lambda x: step_logits(x) + bias
    src = encode_sources(sources[:3], PAD, EOS)
    config = BeamSearchConfig(beam=4, max_len_a=0.0, max_len_b=40)
    plain = beam_search(model, src, config)
    assert not any(h.cut for h in plain) and all(len(h.tokens) == 40 for h in plain)
    # A deadline far away changes nothing.
    later = beam_search(model, src, config, deadline=time.monotonic() + 3600)
    assert [h.tokens for h in later] == [h.tokens for h in plain]
    # A deadline already gone: every sentence ends at once, empty but valid.
    gone = beam_search(model, src, config, deadline=time.monotonic() - 1)
    assert all(h.cut and h.tokens == [] and math.isfinite(h.score) for h in gone)
    # Steps of 20 ms on a fake clock and a 90 ms deadline: after the step that
    # ends at 80 ms the next would end past 90, so EOS is forced there and the
    # best hypothesis so far (3 tokens) comes back in time.
    clock = {'now': 0.0}
    original = model.decode_step

    def timed_step(*args, **kwargs):
        clock['now'] += 0.02
        return original(*args, **kwargs)

    model.decode_step = timed_step
    monkeypatch.setattr(beam_search_module.time, 'monotonic', lambda: clock['now'])
    cut = beam_search(model, src[:1], config, deadline=0.09)
    assert clock['now'] == pytest.approx(0.08)
    assert cut[0].cut and len(cut[0].tokens) == 3 and cut[0].steps == 4
    with pytest.raises(ValueError, match='deadline'):
        beam_search(model, src, config, deadline=math.nan)


def test_search_decodes_without_dropout_and_leaves_the_mode_as_it_was(corpus, monkeypatch):
    sources, vocab = corpus
    model = _one_layer_model(vocab, dropout=0.5)
    src = encode_sources(sources[:4], PAD, EOS)
    config = BeamSearchConfig(beam=3)
    expected = [(r.tokens, r.score) for r in beam_search(model, src, config)]
    model.train()
    assert [(r.tokens, r.score) for r in beam_search(model, src, config)] == expected
    assert all(module.training for module in model.modules())
    # A model already in eval mode is not walked again (each walk sets every module's flag).
    model.eval()
    switched = []
    monkeypatch.setattr(model, 'train', lambda mode=True: switched.append(mode))
    assert [(r.tokens, r.score) for r in beam_search(model, src, config)] == expected
    assert switched == [] and not any(module.training for module in model.modules())
