"""Training: losses, batching, sandwich rule, learning, resume, greedy decoding, a full fit."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from training_fixtures import BOS, EOS, PAD, SPACE, VOCAB, make_trainer, reversal_pairs

from dyn_dnn_ros.translation.batching import TokenBatcher, collate
from dyn_dnn_ros.translation.checkpoint import load_model
from dyn_dnn_ros.translation.greedy import greedy_decode
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.training import (
    TrainConfig,
    Trainer,
    distillation_loss,
    inverse_sqrt_schedule,
    label_smoothed_nll_loss,
)

torch.set_num_threads(1)  # tiny models: one thread avoids contention on a shared CPU


# -- losses and schedule ------------------------------------------------------------


def test_label_smoothing_matches_torch_and_is_sane():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, VOCAB, generator=g)
    target = torch.randint(4, VOCAB, (2, 5), generator=g)
    target[1, 3:] = PAD
    lprobs = F.log_softmax(logits, dim=-1)
    loss, nll = label_smoothed_nll_loss(lprobs, target, 0.1, PAD)
    expected = F.cross_entropy(logits.view(-1, VOCAB), target.view(-1), ignore_index=PAD,
                               label_smoothing=0.1, reduction='sum')
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert nll.item() == pytest.approx(F.cross_entropy(
        logits.view(-1, VOCAB), target.view(-1), ignore_index=PAD, reduction='sum').item(),
        rel=1e-5)
    # uniform prediction: every token costs log V, smoothed or not
    uniform = torch.full((1, 3, VOCAB), -math.log(VOCAB))
    loss, nll = label_smoothed_nll_loss(uniform, torch.tensor([[5, 6, PAD]]), 0.1, PAD)
    assert loss.item() == pytest.approx(2 * math.log(VOCAB))
    assert nll.item() == pytest.approx(2 * math.log(VOCAB))
    # a confident correct prediction has ~0 NLL but pays for smoothing
    confident = F.log_softmax(torch.nn.functional.one_hot(torch.tensor([[5]]), VOCAB) * 30.0, -1)
    loss, nll = label_smoothed_nll_loss(confident.float(), torch.tensor([[5]]), 0.1, PAD)
    assert nll.item() < 1e-6 and 0.1 * 25 < loss.item() < 0.1 * 31


def test_distillation_loss_is_zero_for_identical_predictions():
    lprobs = F.log_softmax(torch.randn(2, 4, VOCAB), dim=-1)
    target = torch.tensor([[5, 6, 7, PAD], [5, PAD, PAD, PAD]])
    assert distillation_loss(lprobs, lprobs, target, PAD).item() == pytest.approx(0, abs=1e-5)
    other = F.log_softmax(torch.randn(2, 4, VOCAB), dim=-1)
    assert distillation_loss(lprobs, other, target, PAD).item() > 0


def test_inverse_sqrt_schedule():
    f = inverse_sqrt_schedule(100)
    assert f(1) == pytest.approx(0.01) and f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(1.0) and f(400) == pytest.approx(0.5)


# -- batching -----------------------------------------------------------------------


def test_collate_adds_bos_eos_and_pads():
    batch = collate([([5, 6, 7], [8]), ([9], [10, 11])], PAD, BOS, EOS)
    assert batch.src.tolist() == [[5, 6, 7, EOS], [9, EOS, PAD, PAD]]
    assert batch.tgt_input.tolist() == [[BOS, 8, PAD], [BOS, 10, 11]]
    assert batch.tgt_output.tolist() == [[8, EOS, PAD], [10, 11, EOS]]
    assert batch.src_tokens == 6 and batch.tgt_tokens == 5


def test_token_batches_cover_everything_within_budget():
    pairs = reversal_pairs(300, seed=4)
    batcher = TokenBatcher(pairs, 40, PAD, BOS, EOS, seed=5)
    batches = batcher.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        batch = batcher.collate(b)
        assert batch.src.numel() <= 40 and batch.tgt_output.numel() <= 40
    assert batcher.epoch_batches(0) == batches  # replayable on resume
    assert batcher.epoch_batches(1) != batches  # reshuffled per epoch
    shards = [batcher.epoch_batches(0, rank, 3) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for b in s for i in b]
    assert len(flat) == len(set(flat))
    with pytest.raises(ValueError, match='pair 0 has 9 tokens'):
        TokenBatcher([([4] * 8, [5])], 8, PAD, BOS, EOS)


# -- training -----------------------------------------------------------------------


def test_sandwich_step_visits_largest_smallest_and_random(tmp_path):
    trainer = make_trainer(tmp_path, random_subnets=2)
    batch = trainer.batcher.collate(trainer.batcher.epoch_batches(0)[0])
    stats = trainer.train_step([batch])
    assert stats['subnets'][0] == SPACE.largest().key()
    assert stats['subnets'][1] == SPACE.smallest().key()
    assert len(stats['subnets']) == 4 and len(stats['loss']) == 4
    assert all(0 < x < 2 * math.log(VOCAB) for x in stats['loss'])
    assert trainer.step == 1
    # gradients reached the deepest layer (only the largest uses it) and the embedding
    assert trainer.model.decoder_layers[1].ffn.fc1.weight.grad.abs().sum() > 0


def test_random_mode_samples_one_subnet_per_step(tmp_path):
    trainer = make_trainer(tmp_path, mode='random')
    batch = trainer.batcher.collate(trainer.batcher.epoch_batches(0)[0])
    keys = {trainer.train_step([batch])['subnets'][0] for _ in range(6)}
    assert len(keys) > 1


def fixed_batch_loss(trainer, batch, subnet):
    model = trainer.model
    model.eval()
    model.set_subnet(subnet)
    with torch.no_grad():
        lprobs = F.log_softmax(model(batch.src, batch.tgt_input), dim=-1)
        return (label_smoothed_nll_loss(lprobs, batch.tgt_output, 0.0, PAD)[1]
                / batch.tgt_tokens).item()


def test_training_steps_reduce_the_loss(tmp_path):
    trainer = make_trainer(tmp_path, random_subnets=1, accum=2)
    batch = collate(reversal_pairs(12, seed=7), PAD, BOS, EOS)
    before = {name: fixed_batch_loss(trainer, batch, cfg)
              for name, cfg in (('largest', SPACE.largest()), ('smallest', SPACE.smallest()))}
    for _ in range(40):
        trainer.train_step([batch, batch])
    after = {name: fixed_batch_loss(trainer, batch, cfg)
             for name, cfg in (('largest', SPACE.largest()), ('smallest', SPACE.smallest()))}
    for name in before:
        assert after[name] < 0.6 * before[name], (name, before[name], after[name])


def test_resume_restores_position_optimizer_and_schedule(tmp_path):
    first = make_trainer(tmp_path)
    for _ in range(3):
        first.train_step(first.next_micro_batches())
        first._advance_position()
    first.save_checkpoint()

    second = make_trainer(tmp_path)  # fresh weights, fresh optimiser
    second.resume()
    assert (second.step, second.step_in_epoch, second.tokens_seen) == (
        3, 3, first.tokens_seen)
    assert second.scheduler.last_epoch == first.scheduler.last_epoch
    state_a, state_b = first.optimizer.state_dict(), second.optimizer.state_dict()
    for key, value in state_a['state'].items():
        torch.testing.assert_close(state_b['state'][key]['exp_avg'], value['exp_avg'])
    # The next step's sub-networks and dropout masks come from the step's seeds,
    # not from whatever the random state was: both continue alike.
    torch.manual_seed(12345)
    first_stats = first.train_step(first.next_micro_batches())
    second_stats = second.train_step(second.next_micro_batches())
    assert first_stats['subnets'] == second_stats['subnets']
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_rejects_a_different_model(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.save_checkpoint()
    other = SuperTransformer(SPACE, VOCAB + 1, PAD, BOS, EOS)
    config = TrainConfig(run_dir=tmp_path / 'run')
    with pytest.raises(ValueError, match='checkpoint_last.pt: checkpoint vocab_size=24'):
        Trainer(config, other, reversal_pairs(10, 0)).resume()


def test_greedy_decode_agrees_with_teacher_forcing(tmp_path):
    trainer = make_trainer(tmp_path)
    batch = collate(reversal_pairs(4, seed=8), PAD, BOS, EOS)
    for _ in range(15):
        trainer.train_step([batch])
    model = trainer.model
    model.set_subnet(SPACE.largest())
    model.train()
    outputs = greedy_decode(model, batch.src, max_len_a=1.0, max_len_b=3)
    assert model.training  # mode restored
    model.eval()
    for row, ids in enumerate(outputs):
        src_len = int(batch.src[row].ne(PAD).sum())
        assert len(ids) <= src_len + 3 and EOS not in ids
        with torch.no_grad():
            logits = model(batch.src[row:row + 1], torch.tensor([[BOS] + ids]))
        predicted = logits.argmax(-1)[0].tolist()
        assert predicted[:len(ids)] == ids  # each greedy choice is the argmax
        if len(ids) < src_len + 3:
            assert predicted[len(ids)] == EOS  # stopped early only at EOS


def test_fit_writes_logs_history_curve_checkpoints_and_a_loadable_model(tmp_path):
    trainer = make_trainer(tmp_path, epochs=3, mode='sandwich', average=2)
    summary = trainer.fit()
    run = tmp_path / 'run'
    assert summary.epoch == 3 and summary.step == 3 * len(trainer.batcher.epoch_batches(0))
    assert summary.finished == 'epochs' and summary.stopped_by is None
    records = [json.loads(line) for line in (run / 'log.jsonl').read_text().splitlines()]
    steps = [r for r in records if 'step' in r and 'loss' in r]
    assert steps and all(r['tokens_per_s'] > 0 for r in steps)
    valid = [r['valid'] for r in records if 'valid' in r]
    assert [v['step'] for v in valid] == [summary.step // 3 * k for k in (1, 2, 3)]
    assert all(0 <= v[f'{end}_bleu'] <= 100 for v in valid for end in ('largest', 'smallest'))
    nll = [v['largest_valid_nll'] for v in valid]
    assert nll[-1] < nll[0] and nll[-1] < math.log(VOCAB)  # it learned something
    # history: the same validations, with tokens seen, throughput and wall time
    history = json.loads((run / 'history.json').read_text())
    assert history['validations'] == valid == summary.history
    tokens = [v['tokens_seen'] for v in valid]
    assert tokens[0] > 0 and tokens == sorted(tokens) and len(set(tokens)) == 3
    assert all(v['tokens_per_s'] > 0 and v['wall_seconds'] >= v['train_seconds'] > 0
               for v in valid)
    rows = (run / 'history.csv').read_text().splitlines()
    assert rows[0].startswith('step,epoch,tokens_seen,') and len(rows) == 4
    png = (run / 'learning_curve.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 5000
    final = history['final']
    assert final['reason'] == 'epochs' and final['tokens_seen'] == tokens[-1]
    assert final['megabytes'] < 50 and final['tokens_per_s'] > 0
    assert (run / 'checkpoint_last.pt').is_file()
    assert len(list((run / 'snapshots').glob('*.pt'))) == 2  # the best two of three
    for name in ('model_best.safetensors', 'model.safetensors'):
        assert load_model(run / name).vocab_size == VOCAB
    assert summary.export_path == run / 'model.safetensors'


def test_max_steps_stops_early_and_resumes_mid_epoch(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=3)
    summary = trainer.fit()
    assert summary.step == 3 and summary.epoch == 0
    resumed = make_trainer(tmp_path, max_steps=5)
    resumed.resume()
    assert resumed.step_in_epoch == 3
    assert resumed.fit().step == 5


def test_config_validation():
    with pytest.raises(ValueError, match="mode='hat' not in"):
        TrainConfig(mode='hat').validate()
    with pytest.raises(ValueError, match='accum: must be an integer >= 1, got 0'):
        TrainConfig(accum=0).validate()
    with pytest.raises(ValueError, match="device='tpu'"):
        TrainConfig(device='tpu').validate()


def test_init_from_starts_training_from_saved_weights(tmp_path):
    from translation_fixtures import SPM, tiny_space, write_tiny_model
    import yaml

    from dyn_dnn_ros.translation.checkpoint import load_model
    from dyn_dnn_ros.translation.training import TrainConfig, train

    corpus = tmp_path / 'corpus'
    corpus.mkdir()
    english = ['Open the file', 'Save the document', 'Close the window', 'Print the page']
    german = ['Datei öffnen', 'Dokument speichern', 'Fenster schließen', 'Seite drucken']
    for split in ('train', 'valid'):
        (corpus / f'{split}.en').write_text('\n'.join(english * 3) + '\n')
        (corpus / f'{split}.de').write_text('\n'.join(german * 3) + '\n')
    space_path = tmp_path / 'space.yaml'
    space_path.write_text(yaml.safe_dump(tiny_space().to_dict()))
    initial_path, _ = write_tiny_model(tmp_path, seed=3)
    config = TrainConfig(run_dir=tmp_path / 'run', corpus_dir=corpus, spm_path=SPM,
                         space_path=space_path, epochs=1, max_steps=1, lr=1e-9, warmup=0,
                         device='cpu', threads=1, valid_sentences=2, init_from=initial_path)
    summary = train(config)
    trained = load_model(summary.export_path).state_dict()
    initial = load_model(initial_path).state_dict()
    # One step at a negligible learning rate: the weights are the ones loaded.
    assert all(torch.allclose(trained[k], initial[k], atol=1e-3) for k in initial)

    other = tmp_path / 'other.yaml'
    data = tiny_space().to_dict()
    data['ffn_dim'] = [64]
    other.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match='init_from'):
        train(TrainConfig(run_dir=tmp_path / 'run2', corpus_dir=corpus, spm_path=SPM,
                          space_path=other, epochs=1, max_steps=1, device='cpu', threads=1,
                          init_from=initial_path))
