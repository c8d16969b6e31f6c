"""Timing a CTranslate2 library's points again, driven by an engine double that sleeps."""

from dataclasses import replace
import time

import pytest

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.design.engine_retime import retime_library
from dyn_dnn_ros.translation.design_space import DesignSpace

SPACE = DesignSpace.from_dict({
    'encoder_embed_dim': [192], 'decoder_embed_dim': [192], 'ffn_dim': [512],
    'heads': [2], 'encoder_layers': [2], 'decoder_layers': [1, 2, 3], 'ende': [1],
    'head_dim': 64, 'max_positions': 64})
SENTENCES = ['a b c', 'd e', 'f']


class SleepingEngine:
    """Takes 1 ms per decoder layer and beam width, doubled on two threads."""

    def __init__(self):
        self.calls = []
        source = {'weights_sha256': 'w', 'quantization': 'int8'}
        self.cache = type('Cache', (), {'source': source})()

    def translate(self, sentences, subnet, width, threads=1):
        self.calls.append((subnet.key(), width, threads))
        time.sleep(0.001 * subnet.decoder_layers * width * threads * len(sentences))
        return [None] * len(sentences)


def _library(engine='ctranslate2'):
    points = []
    for i, layers in enumerate((1, 2, 3)):
        subnet = replace(SPACE.smallest(), decoder_layers=layers, decoder_ffn=(512,) * layers,
                         decoder_self_heads=(2,) * layers, decoder_cross_heads=(2,) * layers,
                         decoder_ende=(1,) * layers)
        # Latencies as if made on a machine five times slower, all in one proportion.
        points.append(OperatingPoint(f'p{i}', 'translation', subnet.to_dict(),
                                     {1: 5.0 * layers, 2: 10.0 * layers}, 20.0 + i,
                                     beam=BeamPolicy('fixed', width=1)))
    return OperatingPointLibrary('translation', 'cpu', 'bleu', points, engine=engine,
                                 compute_type='int8' if engine == 'ctranslate2' else 'float32',
                                 meta={'source': 'test'})


def test_points_keep_their_setting_and_quality_and_get_this_machines_latency(tmp_path):
    library = _library()
    retimed = retime_library(library, SleepingEngine(), SENTENCES, tmp_path, rounds=3,
                             progress=False)
    assert [p.name for p in retimed.points] == [p.name for p in library.points]
    for before, after in zip(library.points, retimed.points, strict=True):
        assert (after.subnet, after.beam, after.quality) == \
            (before.subnet, before.beam, before.quality)
        assert set(after.latency_ms) == {1, 2}
        layers = before.subnet['decoder_layers']
        # ~1 ms a layer on one thread, ~2 on two; sleeping never takes less.
        assert 1.0 * layers <= after.latency_ms[1] < 1.0 * layers + 4.0
        assert 2.0 * layers <= after.latency_ms[2] < 2.0 * layers + 4.0
    assert 'timed again' in retimed.meta['timing'] and retimed.meta['source'] == 'test'
    assert (retimed.engine, retimed.compute_type) == ('ctranslate2', 'int8')


def test_a_point_the_new_figures_push_off_the_front_is_dropped(tmp_path):
    library = _library()
    # p1 (two layers) claims more quality than p2 (three layers): once timed
    # again it is both faster and better, so p2 can no longer be chosen.
    library.points[1] = replace(library.points[1], quality=30.0)
    retimed = retime_library(library, SleepingEngine(), SENTENCES, tmp_path, rounds=2,
                             progress=False)
    assert [p.name for p in retimed.points] == ['p0', 'p1']


def test_a_rerun_resumes_and_another_library_in_the_folder_is_refused(tmp_path):
    retime_library(_library(), SleepingEngine(), SENTENCES, tmp_path, rounds=2,
                   progress=False)
    again = SleepingEngine()
    retime_library(_library(), again, SENTENCES, tmp_path, rounds=2, progress=False)
    assert again.calls == [], 'a finished re-timing measured again'
    other = _library()
    other.points = other.points[:2]
    with pytest.raises(ValueError, match='measured with another points'):
        retime_library(other, SleepingEngine(), SENTENCES, tmp_path, rounds=2, progress=False)


def test_a_torch_library_is_refused_before_any_timing(tmp_path):
    engine = SleepingEngine()
    with pytest.raises(ValueError, match='made for torch float32 on cpu'):
        retime_library(_library('torch'), engine, SENTENCES, tmp_path, progress=False)
    assert engine.calls == []
