"""Beam-width benchmark script: chunking, interleaving, assembling and overhead arithmetic.

Pure functions on made-up numbers, plus one check with a tiny random-weight
model that scoring chunk by chunk gives what ``Translator.evaluate`` gives on
the whole set. The real model is never loaded.
"""

from dataclasses import asdict
import math

from bench_scripts import load_bench
import pytest
import torch
from translation_fixtures import write_tiny_model

from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.translator import TranslationOutcome, Translator

torch.set_num_threads(1)  # tiny models on a shared CPU
bench = load_bench('beam_width')


def sentence(text, log_prob=-1.0, tokens=1, width_sum=2, width_steps=1, empty=False):
    """A translation outcome as the state file keeps it."""
    return asdict(TranslationOutcome(
        text=text, status='empty' if empty else 'ok', avg_width=0.0, decoder_layers=1,
        source_tokens=tokens, latency_s=0.0, tokens=[7] * tokens, log_prob=log_prob,
        width_sum=width_sum, width_steps=width_steps))


@pytest.mark.parametrize('count, chunks, multiple', [(500, 10, 8), (24, 3, 8), (7, 3, 1),
                                                     (100, 10, 1), (13, 4, 8), (5, 10, 8)])
def test_chunks_cover_the_items_in_order_on_batch_boundaries(count, chunks, multiple):
    bounds = bench.chunk_bounds(count, chunks, multiple)
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert all(start < stop for start, stop in bounds)
    assert len(bounds) <= chunks
    assert all(stop % multiple == 0 for _, stop in bounds[:-1])
    sizes = [stop - start for start, stop in bounds[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= multiple  # near-equal


def test_chunks_are_fewer_when_there_are_not_enough_batches():
    assert bench.chunk_bounds(500, 10, 8)[:2] == [(0, 48), (48, 104)]
    assert bench.chunk_bounds(5, 10, 8) == [(0, 5)]
    assert bench.chunk_bounds(3, 10) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match='chunks'):
        bench.chunk_bounds(10, 0)


def test_setting_orders_are_seeded_permutations_that_change_per_chunk():
    orders = bench.setting_orders(16, 10, '0 batch 1')
    assert len(orders) == 10
    assert all(sorted(order) == list(range(16)) for order in orders)
    assert len({tuple(order) for order in orders}) == 10
    assert orders == bench.setting_orders(16, 10, '0 batch 1')
    assert orders != bench.setting_orders(16, 10, '0 batch 8')


def test_assemble_joins_chunks_in_input_order_and_adds_up_times():
    fixed = bench.Setting('fixed 2', BeamPolicy('fixed', width=2))
    dynamic = bench.Setting('dyn', BeamPolicy('dynamic', sigma_min=0.1, sigma_max=0.5), 0.5)
    references = ['Das ist ein Haus .', 'Der Hund bellt laut .', 'Sie liest ein Buch .', '']
    units = [
        {fixed.key(): {'seconds': 1.5, 'outcomes': [
            sentence(references[0], -2.0, 5, 10, 5), sentence(references[1], -3.0, 5, 10, 5)]},
         dynamic.key(): {'seconds': 1.0, 'outcomes': [
             sentence(references[0], -2.0, 5, 4, 4), sentence('Der Hund .', -4.0, 2, 9, 3)]}},
        {fixed.key(): {'seconds': 0.5, 'outcomes': [
            sentence(references[2], -1.0, 5, 8, 4), sentence('', 0.0, 0, 0, 0, empty=True)]},
         dynamic.key(): {'seconds': 0.25, 'outcomes': [
             sentence(references[2], -1.0, 5, 1, 1), sentence('', 0.0, 0, 0, 0, empty=True)]}},
    ]
    by_label = {r['label']: r for r in bench.assemble(units, [fixed, dynamic], references)}

    assert by_label['fixed 2']['seconds'] == 2.0
    assert by_label['dyn']['seconds'] == 1.25
    assert by_label['dyn']['patience'] == 0.5 and by_label['dyn']['beam']['mode'] == 'dynamic'
    # Exact translations in input order: corpus BLEU 100 (any shuffle would lose n-grams).
    assert by_label['fixed 2']['bleu'] == pytest.approx(100.0)
    assert by_label['dyn']['bleu'] < 100.0
    # Width pooled over steps, the empty sentence left out: (10+10+8) / (5+5+4).
    assert by_label['fixed 2']['avg_width'] == pytest.approx(2.0)
    assert by_label['dyn']['avg_width'] == pytest.approx((4 + 9 + 1) / (4 + 3 + 1))
    # Perplexity per token, EOS counted, empty sentence left out.
    assert by_label['fixed 2']['perplexity'] == pytest.approx(math.exp(6.0 / 18))
    assert by_label['dyn']['perplexity'] == pytest.approx(math.exp(7.0 / 15))


def test_assemble_refuses_chunks_that_do_not_cover_the_references():
    fixed = bench.Setting('fixed 1', BeamPolicy('fixed', width=1))
    units = [{fixed.key(): {'seconds': 1.0, 'outcomes': [sentence('a')]}}]
    with pytest.raises(ValueError, match='equally many'):
        bench.assemble(units, [fixed], ['a', 'b'])


@pytest.mark.parametrize('chunks', [10, 5, 1])
def test_pair_schedule_alternates_the_order_and_balances_it_over_rounds(chunks):
    schedule = bench.pair_schedule(4 * chunks, chunks)
    assert [chunk for chunk, _ in schedule] == list(range(chunks)) * 4
    for chunk in range(chunks):  # each chunk flips order on every round
        orders = [first for c, first in schedule if c == chunk]
        assert orders == [orders[0], not orders[0]] * 2
    firsts = [first for _, first in schedule]
    assert sum(firsts) == len(firsts) // 2
    if chunks > 1:  # neighbours within a round differ
        assert all(a != b for a, b in zip(firsts[:chunks - 1], firsts[1:chunks], strict=True))


def test_median_interval_narrows_with_more_values():
    assert bench.median_interval([1.0]) == (1.0, 1.0, 1.0)
    assert bench.median_interval([3.0, 1.0, 2.0, 4.0]) == (2.5, 1.0, 4.0)
    values = [1.0 + i / 100 for i in range(100)]
    median, low, high = bench.median_interval(values)
    assert median == pytest.approx(1.495)
    assert values[35] <= low < median < high <= values[64]
    with pytest.raises(ValueError):
        bench.median_interval([])


def test_overhead_summary_gives_total_and_median_pair_ratios():
    pairs = [{'fixed_s': 1.0, 'dynamic_s': 1.02}, {'fixed_s': 2.0, 'dynamic_s': 2.02},
             {'fixed_s': 1.0, 'dynamic_s': 1.1}]
    summary = bench.overhead_summary(3, pairs)
    assert summary['width'] == 3 and summary['pairs'] == 3
    assert summary['fixed_s'] == pytest.approx(4.0)
    assert summary['dynamic_s'] == pytest.approx(4.14)
    assert summary['ratio'] == pytest.approx(4.14 / 4.0)
    assert summary['median_ratio'] == pytest.approx(1.02)
    assert summary['median_ratio_interval'] == pytest.approx([1.01, 1.1])


def test_markdown_says_how_times_and_overhead_were_measured():
    def row(label, seconds, bleu, width, mode='fixed'):
        beam = ({'mode': 'fixed', 'width': int(width)} if mode == 'fixed' else
                {'mode': 'dynamic', 'sigma_min': 0.1, 'sigma_max': 0.5})
        return {'label': label, 'beam': beam, 'patience': 1.0, 'seconds': seconds,
                'bleu': bleu, 'avg_width': width, 'perplexity': 5.0}

    rows = [row('fixed 1', 10.0, 12.0, 1), row('fixed 5', 20.0, 14.0, 5),
            row('dyn std p10/p75 bw 2-5', 15.0, 13.95, 3.3, 'dynamic')]
    overheads = [bench.overhead_summary(3, [{'fixed_s': 1.0, 'dynamic_s': 1.01}] * 4)]
    meta = {'model': 'm', 'subnet': 's', 'sentences': 500, 'threads': 1, 'host': 'h',
            'torch': 't', 'date': 'd', 'command': 'c', 'chunks': 10, 'chunk_size': 50,
            'overhead_chunk': 10, 'overhead_sentences': 100}
    text = bench.markdown({1: rows}, {'std p10/p75': [0.2, 0.8], 'steps': 9}, overheads, meta)
    assert 'interleaved per chunk: the split is cut into 10 contiguous chunks' in text
    assert '| dyn std p10/p75 bw 2-5 | 0.100..0.500 | 1 | 3.30 | 15.00 | 1.50 | 0.75 |' in text
    assert ': dyn std p10/p75 bw 2-5.' in text  # the targets line
    assert 'paired runs' in text and '| 3 | 4 | 4.000 | 4.040 | +1.0% | +1.0% |' in text


def test_scoring_chunk_by_chunk_matches_translator_evaluate(tmp_path):
    model_path, _ = write_tiny_model(tmp_path)
    translator = Translator.load(model_path, batch_size=1, max_len_b=4)
    sources = ['Open the file.', '', 'The dog barks.', 'Close the window now.', 'Yes.']
    references = ['Öffne die Datei.', '', 'Der Hund bellt.', 'Schließ jetzt das Fenster.', 'Ja.']
    beam = BeamPolicy('dynamic', bw_min=1, bw_max=3, sigma_min=0.01, sigma_max=0.2)
    setting = bench.Setting('dyn', beam)
    units = [bench.decode_chunk(translator, sources[start:stop], [setting], [0], 1,
                                _Counter())
             for start, stop in bench.chunk_bounds(len(sources), 2)]
    [assembled] = bench.assemble(units, [setting], references)
    whole = translator.evaluate(sources, references, None, beam)
    assert assembled['bleu'] == pytest.approx(whole.bleu)
    assert assembled['avg_width'] == pytest.approx(whole.avg_width)
    assert assembled['perplexity'] == pytest.approx(whole.perplexity)


class _Counter:
    """Stands in for the tqdm progress bar."""

    def __init__(self):
        self.count = 0

    def update(self, n=1):
        self.count += n
