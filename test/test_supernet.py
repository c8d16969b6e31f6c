"""SuperTransformer: incremental decoding == teacher forcing, materialize, sizes, checkpoints."""

from pathlib import Path
import random
import time

import pytest
import torch
import torch.nn.functional as F

from dyn_dnn_ros.translation.checkpoint import load_model, read_header, save_model
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import DecoderState, SuperTransformer

CONFIG = Path(__file__).resolve().parents[1] / 'config'
VOCAB, PAD, BOS, EOS = 50, 0, 2, 3

torch.set_num_threads(1)  # tiny models: one thread avoids contention on a shared CPU


@pytest.fixture(scope='module')
def space():
    return DesignSpace(encoder_embed_dim=(32, 48), decoder_embed_dim=(32, 48),
                       ffn_dim=(32, 64), heads=(1, 2, 3), encoder_layers=(2, 3),
                       decoder_layers=(1, 2, 3), head_dim=16, max_positions=64)


@pytest.fixture(scope='module')
def model(space):
    torch.manual_seed(0)
    return SuperTransformer(space, VOCAB, PAD, BOS, EOS).eval()


def random_source(batch=3, length=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (batch, length), generator=g)
    for b in range(batch):  # different lengths, EOS then padding
        n = length - 2 * b
        src[b, n - 1] = EOS
        src[b, n:] = PAD
    return src


def teacher_forced_log_probs(model, src, tgt):
    """``tgt`` ``[B, K, T]`` -> log-probs ``[B, K, T, V]`` from the full forward pass."""
    b, k, t = tgt.shape
    logits = model(src.repeat_interleave(k, dim=0), tgt.reshape(b * k, t))
    return torch.log_softmax(logits, dim=-1).view(b, k, t, -1)


@torch.no_grad()
def test_incremental_decoding_matches_forward(model, space):
    rng = random.Random(0)
    src = random_source()
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        model.set_subnet(space.sample(rng))
        beams, steps = 3, 7
        tgt = torch.randint(4, VOCAB, (3, beams, steps), generator=g)
        tgt[..., 0] = BOS
        expected = teacher_forced_log_probs(model, src, tgt)
        state = model.start_decoding(model.encode(src), beams_per_sentence=beams)
        got = torch.stack([model.decode_step(tgt[:, :, t], state) for t in range(steps)], dim=2)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_cross_attention_keys_are_per_sentence(model, space):
    model.set_subnet(space.largest())
    state = model.start_decoding(model.encode(random_source()), beams_per_sentence=4)
    keys, values, mask = state.cross[0]
    assert keys.shape[0] == 3 and mask.shape[0] == 3  # sentences, not sentences x beams
    assert state.cache[0][0].shape[0] == 12  # self-attention caches are per beam


def test_step_logits_follow_the_weights_they_are_copied_from():
    from dyn_dnn_ros.translation.elastic import EmbeddingSuper
    torch.manual_seed(0)
    embed = EmbeddingSuper(VOCAB, 48, PAD)
    x = torch.randn(5, 1, 32)
    with torch.no_grad():
        torch.testing.assert_close(embed.step_logits(x), embed.logits(x))
        embed.weight.mul_(2.0)  # an optimiser step or a load changes the weight in place
        torch.testing.assert_close(embed.step_logits(x), embed.logits(x))
        full = torch.randn(2, 48)
        torch.testing.assert_close(embed.step_logits(full), embed.logits(full))
    assert 'weight' in embed.state_dict() and len(embed.state_dict()) == 1
    # With gradients wanted, the projection stays on the parameter itself.
    embed.step_logits(x).sum().backward()
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0


def test_inference_slices_follow_sizes_and_weights():
    from dyn_dnn_ros.translation.elastic import LayerNormSuper, LinearSuper
    torch.manual_seed(0)
    linear, norm = LinearSuper(48, 40), LayerNormSuper(48)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()

    def check(dtype=torch.float32):
        # Starts with the sizes the previous call ended with, so a kept slice is
        # what the first comparison reads.
        for in_dim, out_dim in ((16, 40), (32, 24), (48, 8), (16, 40)):
            linear.set_active_sizes(in_dim, out_dim)
            norm.set_active_sizes(in_dim)
            x = torch.randn(5, 1, in_dim, dtype=dtype)
            expected = F.linear(x, linear.weight[:out_dim, :in_dim], linear.bias[:out_dim])
            torch.testing.assert_close(linear(x), expected)
            torch.testing.assert_close(
                norm(x), F.layer_norm(x, (in_dim,), norm.weight[:in_dim], norm.bias[:in_dim]))

    with torch.no_grad():
        check()
        kept = linear.__dict__['_inference_slices']
        linear(torch.randn(2, 16))
        assert linear.__dict__['_inference_slices'] is kept  # reused, not rebuilt
        linear.weight.mul_(2.0), norm.bias.add_(1.0)  # in place: an optimiser step, a load
        check()
    linear.double(), norm.double()  # moved: new storage, the slices are rebuilt
    with torch.no_grad():
        check(torch.float64)
    assert set(linear.state_dict()) == {'weight', 'bias'}
    assert set(norm.state_dict()) == {'weight', 'bias'}
    # With gradients wanted, the slices are taken from the parameters each call.
    linear.set_active_sizes(32, 24)
    linear(torch.randn(3, 32, dtype=torch.float64)).sum().backward()
    assert linear.weight.grad[:24, :32].abs().sum() > 0
    assert linear.weight.grad[24:].abs().sum() == 0


def test_position_table_rows_equal_positions_computed_one_by_one():
    from dyn_dnn_ros.translation.elastic import PositionTable, sinusoidal_positions
    table, like = PositionTable(16), torch.zeros(1)
    for first, count, dim in ((0, 7, 32), (9, 1, 32), (3, 5, 48), (14, 4, 32), (20, 2, 48)):
        expected = sinusoidal_positions(torch.arange(first, first + count), dim)
        assert torch.equal(table(first, count, dim, like), expected)  # past 16 too
    assert table(2, 3, 32, torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


@torch.no_grad()
def test_reorder_and_select_follow_the_chosen_beams(model, space):
    model.set_subnet(space.sample(random.Random(5)))
    src, beams = random_source(), 3
    g = torch.Generator().manual_seed(2)
    tgt = torch.randint(4, VOCAB, (3, beams, 8), generator=g)
    tgt[..., 0] = BOS
    beam_index = torch.tensor([[2, 2, 0], [1, 0, 1], [0, 1, 2]])
    # After reordering at step 4, new beam j continues old beam beam_index[b, j]'s prefix.
    reordered = tgt.clone()
    reordered[:, :, :4] = torch.gather(tgt[:, :, :4], 1,
                                       beam_index[:, :, None].expand(-1, -1, 4))
    expected = teacher_forced_log_probs(model, src, reordered)

    state = model.start_decoding(model.encode(src), beams_per_sentence=beams)
    for t in range(4):
        model.decode_step(tgt[:, :, t], state)
    state.reorder(beam_index)
    got = torch.stack([model.decode_step(reordered[:, :, t], state) for t in range(4, 6)], 2)
    torch.testing.assert_close(got, expected[:, :, 4:6], atol=1e-5, rtol=0)

    keep = torch.tensor([2, 0])  # drop sentence 1, swap the others
    state.select(keep)
    got = model.decode_step(reordered[keep][:, :, 6], state)
    torch.testing.assert_close(got, expected[keep][:, :, 6], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='tokens shape'):
        model.decode_step(reordered[:, :, 7], state)


@torch.no_grad()
def test_decoding_only_active_slots_matches_the_full_grid(model, space):
    src, beams, steps = random_source(), 3, 5
    active = torch.tensor([[True, True, False], [True, False, False], [True, True, True]])
    g = torch.Generator().manual_seed(6)
    for cfg in (space.largest(), space.sample(random.Random(7))):
        model.set_subnet(cfg)
        tgt = torch.randint(4, VOCAB, (3, beams, steps), generator=g)
        full = model.start_decoding(model.encode(src), beams_per_sentence=beams)
        expected = torch.stack([model.decode_step(tgt[:, :, t], full) for t in range(steps)], 2)
        start = model.start_decoding(model.encode(src), beams_per_sentence=1)
        rows = active.sum().item()
        empty = [tuple(t.new_zeros(rows, *t.shape[1:]) for t in c) for c in start.cache]
        part = DecoderState(start.cross, empty, beams=beams, active=active)
        got = torch.stack([model.decode_step(tgt[:, :, t], part) for t in range(steps)], 2)
        assert part.cache[0][0].shape[0] == rows  # only the active slots were decoded
        torch.testing.assert_close(got[active], expected[active], atol=1e-5, rtol=0)
        assert torch.isneginf(got[~active]).all()
        with pytest.raises(ValueError, match='every beam slot'):
            part.reorder(torch.zeros(3, beams, dtype=torch.long))


@torch.no_grad()
def test_materialize_is_compact_and_equal(model, space):
    src = random_source()
    tgt = torch.randint(4, VOCAB, (3, 6), generator=torch.Generator().manual_seed(3))
    tgt[:, 0] = BOS
    rng = random.Random(4)
    for cfg in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
        model.set_subnet(cfg)
        compact = model.materialize()
        assert compact.subnet == cfg and not compact.training
        assert all(p.is_contiguous() for p in compact.parameters())
        assert sum(p.numel() for p in compact.parameters()) == model.count_parameters(cfg)
        assert compact.decoder_layers[0].ffn.fc1.weight.shape == (cfg.decoder_ffn[0],
                                                                   cfg.decoder_embed_dim)
        torch.testing.assert_close(compact(src, tgt), model(src, tgt), atol=1e-5, rtol=0)
        state_a = model.start_decoding(model.encode(src), 2)
        state_b = compact.start_decoding(compact.encode(src), 2)
        step = tgt[:, None, :1].expand(-1, 2, -1)[:, :, 0]
        torch.testing.assert_close(compact.decode_step(step, state_b),
                                   model.decode_step(step, state_a), atol=1e-5, rtol=0)
        with pytest.raises(ValueError):  # a compact copy cannot grow
            if cfg != space.largest():
                compact.set_subnet(space.largest())
            else:
                raise ValueError('largest: nothing larger to try')


def test_set_subnet_copies_nothing_and_is_fast(model, space):
    pointers = [p.data_ptr() for p in model.parameters()]
    configs = [space.sample(random.Random(i)) for i in range(50)]
    times = []
    for cfg in configs:
        start = time.perf_counter()
        model.set_subnet(cfg)
        times.append(time.perf_counter() - start)
    assert [p.data_ptr() for p in model.parameters()] == pointers
    times.sort()
    assert times[len(times) // 2] < 1e-3, f'median set_subnet {times[len(times) // 2]:.6f} s'
    # heads have a fixed width, so the head count changes the projection size
    cfg = configs[-1]
    layer = model.encoder_layers[0].attn
    assert layer.q_proj.out_dim == cfg.encoder_heads[0] * space.head_dim
    with pytest.raises(ValueError, match='decoder_ffn'):
        model.set_subnet(cfg.__class__(**{**cfg.__dict__, 'decoder_ffn': (99,) *
                                         cfg.decoder_layers}))


def test_parameter_counts_order(model, space):
    small = model.count_parameters(space.smallest())
    big = model.count_parameters(space.largest())
    assert small < big == sum(p.numel() for p in model.parameters())


def test_paper_space_builds_and_runs():
    paper = DesignSpace.from_yaml(CONFIG / 'design_space_paper.yaml')
    torch.manual_seed(0)
    model = SuperTransformer(paper, 8000, PAD, BOS, EOS).eval()
    assert model.count_parameters() == sum(p.numel() for p in model.parameters())
    model.set_subnet(paper.smallest())
    src = torch.tensor([[5, 6, 7, EOS]])
    with torch.no_grad():
        assert model(src, torch.tensor([[BOS, 9]])).shape == (1, 2, 8000)


def test_model_file_round_trip(tmp_path, model, space):
    path = tmp_path / 'model.safetensors'
    save_model(path, model, {'note': 'test'})
    assert read_header(path)['metadata'] == {'note': 'test'}
    loaded = load_model(path)
    assert loaded.space == space and loaded.vocab_size == VOCAB
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        assert b.dtype == torch.float32, name
        torch.testing.assert_close(b, a.half().float(), atol=0, rtol=0)
    cfg = space.sample(random.Random(9))
    model.set_subnet(cfg)
    loaded.set_subnet(cfg)
    src = random_source()
    tgt = torch.full((3, 1), BOS)
    with torch.no_grad():  # fp16 storage: close, not equal
        torch.testing.assert_close(loaded(src, tgt), model(src, tgt), atol=5e-2, rtol=0)

    compact_path = tmp_path / 'compact.safetensors'
    save_model(compact_path, model.materialize())
    assert load_model(compact_path).super_shape == cfg


def test_bad_model_files_fail_at_load(tmp_path, model):
    path = tmp_path / 'model.safetensors'
    save_model(path, model)
    corrupt = tmp_path / 'corrupt.safetensors'
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match='corrupt.safetensors'):
        load_model(corrupt)
    with pytest.raises(ValueError, match='does not exist'):
        load_model(tmp_path / 'absent.safetensors')

    # a header claiming a different vocabulary than the tensors hold
    import json

    from safetensors.torch import load_file, save_file
    header = read_header(path)
    header['vocab_size'] = VOCAB + 1
    mismatched = tmp_path / 'mismatched.safetensors'
    save_file(load_file(path), mismatched, metadata={'dyn_dnn_ros': json.dumps(header)})
    with pytest.raises(ValueError, match=r'mismatched.safetensors: tensor embed.weight has shape'):
        load_model(mismatched)
    plain = tmp_path / 'plain.safetensors'
    save_file({'x': torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match='plain.safetensors: no .dyn_dnn_ros. header'):
        load_model(plain)
