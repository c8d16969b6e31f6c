"""The CTranslate2 library design, driven by an engine double that records its calls.

The double stands in for CTranslate2 only: what is checked is the order of the
measurements and what the library is built from, not any translation.
"""

from dataclasses import dataclass
import json

import pytest

from dyn_dnn_ros.translation.design import engine_library
from dyn_dnn_ros.translation.design.engine_library import (
    TIMING_PROTOCOL,
    EngineLibraryConfig,
    candidate_subnets,
    design_engine_library,
)
from dyn_dnn_ros.translation.design_space import DesignSpace

SPACE = DesignSpace.from_dict({
    'encoder_embed_dim': [192, 256], 'decoder_embed_dim': [192, 256],
    'ffn_dim': [512, 1024], 'heads': [2, 4], 'encoder_layers': [2],
    'decoder_layers': [1, 2], 'ende': [1, 2], 'head_dim': 64, 'max_positions': 64})


@dataclass
class Outcome:
    text: str


class RecordingEngine:
    """Answers every sentence with itself; costs grow with size, width and threads."""

    space = SPACE

    def __init__(self):
        self.calls = []

    def translate(self, sentences, subnet, width, threads=1):
        self.calls.append((subnet.key(), width, threads, len(sentences)))
        return [Outcome(s) for s in sentences]


def _design(tmp_path, engine, final_engine=None, **overrides):
    config = EngineLibraryConfig(run_dir=tmp_path, candidates=6, beams=(1, 3),
                                 threads=(1, 2), timing_sentences=3, rounds=2,
                                 max_finalists=4, **overrides)
    sentences = ['a b c', 'd e', 'f']
    return design_engine_library(config, engine, lambda s: 1.0 / s.decoder_layers,
                                 sentences, sentences, sentences, progress=False,
                                 final_engine=final_engine)


def _thread_blocks(calls):
    """Thread counts of the one-sentence (timing) calls, with repeats collapsed."""
    blocks = []
    for threads in (c[2] for c in calls if c[3] == 1):
        if not blocks or blocks[-1] != threads:
            blocks.append(threads)
    return blocks


def test_each_thread_count_is_timed_in_its_own_block(tmp_path):
    engine, final = RecordingEngine(), RecordingEngine()
    result = _design(tmp_path, engine, final)
    assert _thread_blocks(engine.calls) == [1, 2], 'a one-thread run after a two-thread one'
    assert _thread_blocks(final.calls) == [1, 2]
    # The winners alone are timed again, in the engine that held nothing else.
    winners = {(p.metrics['key'], p.beam.width) for p in result.library.points}
    timed_again = {(c[0], c[1]) for c in final.calls}
    assert winners <= timed_again
    assert len(timed_again) <= len({(c[0], c[1]) for c in engine.calls if c[3] == 1})
    assert len(result.library.points) >= 1
    for point in result.library.points:
        assert set(point.latency_ms) == {1, 2}
    saved = json.loads((tmp_path / 'measurements.json').read_text())
    assert saved['timing_protocol'] == TIMING_PROTOCOL
    for key, width in winners:
        assert len(saved['final'][f'{key}|{width}|1']) == 2


def test_samples_of_an_older_protocol_are_taken_again_and_the_rest_kept(tmp_path):
    engine = RecordingEngine()
    _design(tmp_path, engine)
    path = tmp_path / 'measurements.json'
    saved = json.loads(path.read_text())
    saved['timing_protocol'] = 'interleaved'
    path.write_text(json.dumps(saved))

    again = RecordingEngine()
    _design(tmp_path, again)
    widths = {c[1] for c in again.calls if c[3] == 1}
    assert widths == {1, 3}, 'the finalists were not timed again'
    assert not [c for c in again.calls if c[3] == 3], 'BLEU, already measured, ran again'

    third = RecordingEngine()
    _design(tmp_path, third)
    assert third.calls == [], 'a complete run of the current protocol measured again'


def test_the_extremes_of_the_space_are_always_candidates():
    subnets = candidate_subnets(SPACE, 4, seed=0)
    keys = [s.key() for s in subnets]
    assert len(keys) == len(set(keys)) == 6
    assert subnets[0].decoder_layers == 1 and subnets[1].decoder_layers == 2
    assert all(set(s.decoder_ende) == {1} for s in subnets)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match='threads'):
        EngineLibraryConfig(threads=())
    with pytest.raises(ValueError, match='rounds'):
        EngineLibraryConfig(rounds=0)
    with pytest.raises(ValueError, match='quality_split'):
        EngineLibraryConfig(quality_split='train')


class InterruptedEngine(RecordingEngine):
    """Stops the run (as Ctrl-C would) at its ``stop_at``-th call."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at

    def translate(self, sentences, subnet, width, threads=1):
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return super().translate(sentences, subnet, width, threads)


@pytest.mark.parametrize('fraction', [0.05, 0.3, 0.6, 0.75, 0.95])
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch, fraction):
    def timing(engine, subnet, width, threads, sentences):
        engine.translate(sentences[:1], subnet, width, threads=threads)
        return subnet.encoder_embed_dim * subnet.decoder_layers * width / threads / 100

    monkeypatch.setattr(engine_library, 'time_per_sentence', timing)
    whole = RecordingEngine()
    expected = _design(tmp_path / 'whole', whole)

    first = InterruptedEngine(round(fraction * len(whole.calls)))
    with pytest.raises(KeyboardInterrupt):
        _design(tmp_path / 'resumed', first)
    rest = RecordingEngine()
    resumed = _design(tmp_path / 'resumed', rest)
    # Resumed from the last save: the same shuffled order from there on, nothing
    # saved measured again.
    assert rest.calls and rest.calls == whole.calls[len(whole.calls) - len(rest.calls):]
    assert len(rest.calls) < len(whole.calls)
    assert resumed.finalists == expected.finalists
    assert [p.to_dict() for p in resumed.library.points] == \
        [p.to_dict() for p in expected.library.points]
    saved = [json.loads((tmp_path / d / 'measurements.json').read_text())
             for d in ('whole', 'resumed')]
    assert saved[0] == saved[1]


class CachedEngine(RecordingEngine):
    """The double with the model cache's record of what its models are made from."""

    def __init__(self, weights='w1', compute_type='int8'):
        super().__init__()
        self.cache = type('Cache', (), {'source': {'weights_sha256': weights,
                                                   'quantization': compute_type}})()


@pytest.mark.parametrize('change, field', [
    (dict(weights='w2'), 'engine'),
    (dict(compute_type='float32'), 'engine'),
    (dict(sentences=['other', 'text', 'here']), 'quality_sentences_sha256'),
])
def test_a_run_folder_refuses_measurements_of_other_weights_data_or_compute_type(
        tmp_path, change, field):
    _design(tmp_path, CachedEngine())
    sentences = change.pop('sentences', None)
    other = CachedEngine(**change)
    config = EngineLibraryConfig(run_dir=tmp_path, candidates=6, beams=(1, 3), threads=(1, 2),
                                 timing_sentences=3, rounds=2, max_finalists=4)
    same = ['a b c', 'd e', 'f']
    with pytest.raises(ValueError, match=f'measured with another {field} than this run'):
        design_engine_library(config, other, lambda s: 1.0 / s.decoder_layers, same,
                              sentences or same, sentences or same, progress=False)
    assert other.calls == [], 'measured before refusing'
    again = CachedEngine()
    _design(tmp_path, again)   # the same basis still resumes: nothing to measure
    assert again.calls == []


def test_measurements_that_do_not_record_their_basis_are_refused(tmp_path):
    _design(tmp_path, RecordingEngine())
    path = tmp_path / 'measurements.json'
    saved = json.loads(path.read_text())
    del saved['basis']
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match='do not record what they were made with'):
        _design(tmp_path, RecordingEngine())
