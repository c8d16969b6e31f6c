"""The CTranslate2 library design, driven by an engine double that records its calls.

The double stands in for CTranslate2 only: what is checked is the order of the
measurements and what the library is built from, not any translation.
"""

from dataclasses import dataclass
import json

import pytest

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


def _design(tmp_path, engine, **overrides):
    config = EngineLibraryConfig(run_dir=tmp_path, candidates=6, beams=(1, 3),
                                 threads=(1, 2), timing_sentences=3, rounds=2,
                                 max_finalists=4, **overrides)
    sentences = ['a b c', 'd e', 'f']
    return design_engine_library(config, engine, lambda s: 1.0 / s.decoder_layers,
                                 sentences, sentences, sentences, progress=False)


def test_each_thread_count_is_timed_in_its_own_block(tmp_path):
    engine = RecordingEngine()
    result = _design(tmp_path, engine)
    timed = [c for c in engine.calls if c[3] == 1]   # the timing loops send one sentence
    threads_in_order = [c[2] for c in timed]
    first_two = threads_in_order.index(2)
    assert 2 not in threads_in_order[:first_two]
    assert 1 not in threads_in_order[first_two:], 'a one-thread run after a two-thread one'
    assert len(result.library.points) >= 1
    for point in result.library.points:
        assert set(point.latency_ms) == {1, 2}
    saved = json.loads((tmp_path / 'measurements.json').read_text())
    assert saved['timing_protocol'] == TIMING_PROTOCOL


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
