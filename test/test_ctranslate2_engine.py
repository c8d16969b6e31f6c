"""The CTranslate2 engine: same tokens as the torch engine, refusals, model cache, deadlines."""

from dataclasses import replace
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from translation_fixtures import ROOT, SPM, tiny_space, write_tiny_model

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.translation.beam_policy import BeamPolicy
from dyn_dnn_ros.translation.ctranslate2_export import (
    NotExpressible,
    SuperWeights,
    check_expressible,
    export_subnet,
)
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
from dyn_dnn_ros.translation.engines.ctranslate2_engine import OpenMPPools
from dyn_dnn_ros.translation.engines.model_cache import RECORD_FILE
from dyn_dnn_ros.translation.outcome import read_split
from dyn_dnn_ros.translation.tokenizer import Tokenizer

CORPUS = ROOT / 'data' / 'corpus'


def expressible(subnet):
    """``subnet`` with every decoder layer attending to the last encoder layer only."""
    return replace(subnet, decoder_ende=(1,) * subnet.decoder_layers)


@pytest.fixture(scope='module')
def shipped_engines(tmp_path_factory):
    cache = tmp_path_factory.mktemp('ct2-cache')
    torch_engine = create_engine(EngineConfig(engine='torch', batch_size=8))
    ct2_engine = create_engine(EngineConfig(engine='ctranslate2', compute_type='float32',
                                            cache_dir=cache, batch_size=1,
                                            vocabulary_map='full'))
    return torch_engine, ct2_engine


def test_float32_export_gives_the_torch_engines_tokens(shipped_engines):
    torch_engine, ct2_engine = shipped_engines
    space = torch_engine.space
    sources, _ = read_split(CORPUS, 'test', limit=40)
    # The smallest sub-network, and one whose decoder's self- and cross-attention
    # have different head counts (exported with zero-padded heads).
    padded = replace(expressible(space.largest()), decoder_cross_heads=(space.heads[0],)
                     * space.largest().decoder_layers)
    for subnet in (expressible(space.smallest()), padded):
        want = torch_engine.translate(sources, subnet, BeamPolicy('fixed', width=5), threads=1)
        got = ct2_engine.translate(sources, subnet, BeamPolicy('fixed', width=5), threads=1)
        same = sum(a.tokens == b.tokens for a, b in zip(want, got, strict=True))
        # Score ties aside (float summation order), every sentence matches.
        assert same >= len(sources) - 1, (subnet.key(), same)
        for a, b in zip(want, got, strict=True):
            if a.tokens == b.tokens:
                assert b.text == a.text
                assert b.log_prob == pytest.approx(a.log_prob, abs=0.05)
                assert not b.cut


def test_a_decoder_attending_to_several_encoder_layers_is_refused_naming_the_field(
        shipped_engines):
    _, ct2_engine = shipped_engines
    largest = ct2_engine.space.largest()
    assert max(largest.decoder_ende) > 1
    with pytest.raises(NotExpressible, match='decoder_ende'):
        ct2_engine.translate(['Open the file'], largest)
    with pytest.raises(NotExpressible, match='decoder_cross_heads'):
        check_expressible(replace(expressible(largest), decoder_cross_heads=(
            ct2_engine.space.heads[0],) * largest.decoder_layers), heads='uniform')


def test_dynamic_beam_width_is_a_torch_engine_feature(shipped_engines):
    _, ct2_engine = shipped_engines
    with pytest.raises(ValueError, match='dynamic beam width is a feature of the torch'):
        ct2_engine.translate(['Open the file'], expressible(ct2_engine.space.smallest()),
                             BeamPolicy('dynamic', bw_min=1, bw_max=4))


@pytest.mark.parametrize('width', [1, 4])
def test_a_deadline_caps_decoding_and_marks_the_answer_cut(shipped_engines, width):
    _, ct2_engine = shipped_engines
    subnet = expressible(ct2_engine.space.smallest())
    text = ('The robot drives to the kitchen, picks up the red cup from the table and '
            'brings it back to the charging station before the battery runs low.')
    full = ct2_engine.translate([text], subnet, width, threads=1)[0]
    assert not full.cut and len(full.tokens) > 5
    # A deadline already due: nothing is decoded, and the answer says it was cut.
    cut = ct2_engine.translate([text], subnet, width, threads=1,
                               deadline=time.monotonic())[0]
    assert cut.cut and cut.tokens == [] and cut.text == ''
    # Time for a few steps only: a shorter, cut translation.
    cost = ct2_engine._cost(subnet, 1, width)
    some = ct2_engine.translate([text], subnet, width, threads=1,
                                deadline=time.monotonic() + cost.first_s + 2.5 * cost.step_s)[0]
    assert some.cut and 1 <= len(some.tokens) < len(full.tokens)
    # A distant deadline changes nothing.
    late = ct2_engine.translate([text], subnet, width, threads=1,
                                deadline=time.monotonic() + 60.0)[0]
    assert late.tokens == full.tokens and not late.cut


class Owner:
    """Stands for an engine: its models, and ``unload`` as the engine's."""

    def __init__(self):
        self._models = {}

    def unload(self, key):
        self._models.pop(key, None)


def test_multi_thread_models_beyond_the_cpus_are_unloaded_least_recently_used_first():
    pools, first, second = OpenMPPools(budget=2), Owner(), Owner()
    for owner, key in ((first, 'a'), (second, 'b')):
        pools.make_room(owner, key, threads=2)
        owner._models[key] = 'model'
    first._models['one-thread'] = 'model'   # never counted, never unloaded
    pools.used(first, 'a')                   # 'b' is now the least recently used
    pools.make_room(first, 'c', threads=2)
    assert set(first._models) == {'a', 'one-thread'} and second._models == {}
    assert pools.held == 2
    pools.forget(first, 'c')                 # its load failed
    assert pools.held == 1
    # One model over the budget on its own (1 CPU) is still loaded: it was asked for.
    alone = OpenMPPools(budget=0)
    alone.make_room(first, 'wide', threads=4)
    assert alone.held == 3


def test_a_two_thread_model_keeps_its_pool_only_while_the_cpus_allow(shipped_engines,
                                                                     monkeypatch):
    _, ct2_engine = shipped_engines
    # 2 CPUs: one pool thread besides the process's first.
    monkeypatch.setattr(ct2_engine, 'pools', OpenMPPools(budget=1))
    small = expressible(ct2_engine.space.smallest())
    other = replace(small, decoder_ffn=(ct2_engine.space.ffn_dim[-1],) * small.decoder_layers)
    sentences = ['Open the file', 'The robot is ready.']
    before = ct2_engine.translate(sentences, small, 2, threads=2)
    ct2_engine.translate(sentences, other, 2, threads=2)
    assert (small.key(), 2) not in ct2_engine.loaded and (other.key(), 2) in ct2_engine.loaded
    again = ct2_engine.translate(sentences, small, 2, threads=2)   # loaded again on demand
    assert [o.tokens for o in again] == [o.tokens for o in before]
    assert ct2_engine.pools.held == 1


LOAD_AND_COUNT_THREADS = """
import os, sys
from dataclasses import replace
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
engine = create_engine(EngineConfig(engine='ctranslate2', cache_dir=sys.argv[1]))
small = engine.space.smallest()
small = replace(small, decoder_ende=(1,) * small.decoder_layers)
engine.translate(['Open the file'], small, 1, threads=1)   # export outside the count
before = len(os.listdir('/proc/self/task'))
engine.translate(['Open the file'], small, 2, threads=2)
print(len(os.listdir('/proc/self/task')) - before)
"""


def test_loading_a_two_thread_model_leaves_no_pool_on_the_callers_thread(tmp_path):
    # The model's worker and its one pool thread, and nothing on the thread
    # that loaded it: a pool there would count against the CPUs for good.
    added = subprocess.run([sys.executable, '-c', LOAD_AND_COUNT_THREADS, str(tmp_path)],
                           capture_output=True, text=True, check=True, timeout=120)
    assert added.stdout.split()[-1] == '2', added.stdout + added.stderr


def test_empty_and_overlong_text_get_the_torch_engines_statuses(shipped_engines):
    _, ct2_engine = shipped_engines
    subnet = expressible(ct2_engine.space.smallest())
    empty, long_one = ct2_engine.translate(['   ', 'open ' * 400], subnet, 1,
                                           max_source_tokens=20)
    assert (empty.status, empty.text) == ('empty', '')
    assert long_one.status == 'truncated' and long_one.source_tokens == 20


def test_the_model_cache_rebuilds_a_model_made_from_other_weights(tmp_path):
    model_path, _ = write_tiny_model(tmp_path / 'a', seed=0)
    cache = tmp_path / 'cache'
    config = EngineConfig(engine='ctranslate2', model_path=model_path, spm_path=SPM,
                          cache_dir=cache, compute_type='int8')
    subnet = expressible(tiny_space().smallest())
    first = create_engine(config)
    before = first.translate(['Open the file'], subnet, 2)[0]
    assert first.cache.exports == 1
    record = json.loads((first.cache.folder(subnet) / RECORD_FILE).read_text())
    assert record['subnet'] == subnet.to_dict() and record['quantization'] == 'int8'
    # The same weights again: the cached model is used as it is.
    again = create_engine(config)
    assert again.translate(['Open the file'], subnet, 2)[0].tokens == before.tokens
    assert again.cache.exports == 0
    # Other weights under the same file name: stale, exported again.
    other, _ = write_tiny_model(tmp_path / 'b', seed=1)
    shutil.copy(other, model_path)
    third = create_engine(config)
    third.translate(['Open the file'], subnet, 2)
    assert third.cache.exports == 1


def test_the_ctranslate2_run_time_path_does_not_import_torch(tmp_path):
    model_path, _ = write_tiny_model(tmp_path)
    script = f"""
import sys
from dyn_dnn_ros.translation.engines import EngineConfig, create_engine
from dyn_dnn_ros.translation.engines.ctranslate2_engine import OpenMPPools
engine = create_engine(EngineConfig(engine='ctranslate2', model_path={str(model_path)!r},
                                    spm_path={str(SPM)!r}, cache_dir={str(tmp_path / 'c')!r}))
subnet = engine.space.smallest()
print(engine.translate(['Open the file'], subnet, 2)[0].status)
assert 'torch' not in sys.modules, 'torch was imported'
"""
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'ok'


def test_a_library_made_for_another_engine_or_device_is_refused_naming_both(tmp_path):
    _, library_path = write_tiny_model(tmp_path)
    library = OperatingPointLibrary.load(library_path)
    assert (library.engine, library.compute_type) == ('torch', 'float32')
    library.check_runs_on('torch', 'cpu')
    with pytest.raises(ValueError, match='made for torch float32 on cpu, this worker runs '
                                         'ctranslate2 on cpu'):
        library.check_runs_on('ctranslate2', 'cpu')
    with pytest.raises(ValueError, match='made for torch float32 on cpu, this worker runs '
                                         'torch on cuda'):
        library.check_runs_on('torch', 'cuda')
    saved = replace(library, engine='ctranslate2', compute_type='int8')
    saved.save(tmp_path / 'ct2.yaml')
    loaded = OperatingPointLibrary.load(tmp_path / 'ct2.yaml')
    assert (loaded.engine, loaded.compute_type) == ('ctranslate2', 'int8')


def test_exporting_leaves_the_super_weights_as_they_were(tmp_path):
    # CTranslate2's converter changes the arrays it is given; an export must hand
    # it copies, or every later export from the same weights is corrupted.
    model_path, _ = write_tiny_model(tmp_path)
    weights = SuperWeights.load(model_path)
    before = {name: tensor.copy() for name, tensor in weights.tensors.items()}
    vocabulary = Tokenizer(SPM).pieces()
    space = tiny_space()
    for i, subnet in enumerate((expressible(space.smallest()), expressible(space.largest()))):
        export_subnet(weights, subnet, vocabulary, tmp_path / f'm{i}', 'int8')
    changed = [n for n, t in weights.tensors.items() if not np.array_equal(t, before[n])]
    assert changed == []
