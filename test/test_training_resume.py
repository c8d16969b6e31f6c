"""Stopping and resuming training, early stopping, checkpoint averaging, time limits.

The central property: a run stopped by a signal (in a step or in a
validation) and resumed ends with bit-identical weights, history and
exported model to a run that was never stopped, on CPU.
"""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_fixtures import make_trainer, reversal_pairs, write_tiny_corpus

from dyn_dnn_ros.translation.checkpoint import load_model
from dyn_dnn_ros.translation.model_selection import EarlyStopping, average_state_dicts
from dyn_dnn_ros.translation.training import TrainConfig, should_resume, train
from dyn_dnn_ros.translation.training_state import StopSignals
from dyn_dnn_ros.translation.valid_scoring import spread_indices

torch.set_num_threads(1)  # tiny models: one thread avoids contention on a shared CPU

ROOT = Path(__file__).resolve().parents[1]
TIMING = ('wall_seconds', 'train_seconds', 'tokens_per_s', 'valid_seconds')


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def saved_weights(run_dir):
    return torch.load(Path(run_dir) / 'checkpoint_last.pt', weights_only=True)['model']


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_stopped_in_a_step_and_in_a_validation_then_resumed_equals_one_run(tmp_path):
    options = dict(epochs=3, max_steps=30, random_subnets=2, average=2, patience=0)
    straight = make_trainer(tmp_path / 'straight', **options)
    assert straight.steps_in_epoch(0) == 20  # so step 13 is mid-epoch and 20 validates
    reference = straight.fit()
    assert reference.finished == 'max_steps' and reference.step == 30

    # Ctrl-C in the middle of step 14's epoch: the step finishes, a checkpoint is saved.
    first = make_trainer(tmp_path / 'stopped', **options)
    take_step = first.train_step

    def step_then_ctrl_c(batches):
        stats = take_step(batches)
        if first.step == 13:
            signal.raise_signal(signal.SIGINT)
        return stats

    first.train_step = step_then_ctrl_c
    stopped = first.fit()
    assert (stopped.stopped_by, stopped.step, stopped.export_path) == ('SIGINT', 13, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored

    # SIGTERM during the validation at the end of epoch 1: it is cut short and redone.
    second = make_trainer(tmp_path / 'stopped', **options)
    second.resume()
    assert (second.step, second.epoch, second.step_in_epoch) == (13, 0, 13)
    score_bleu = second.validator._bleu

    def sigterm_then_bleu(*args):
        signal.raise_signal(signal.SIGTERM)
        return score_bleu(*args)

    second.validator._bleu = sigterm_then_bleu
    stopped = second.fit()
    assert (stopped.stopped_by, stopped.step, stopped.history) == ('SIGTERM', 20, [])

    third = make_trainer(tmp_path / 'stopped', **options)
    third.resume()
    assert third.validated_step == 0 and third.validation_due()
    resumed = third.fit()
    assert (resumed.finished, resumed.step) == ('max_steps', 30)

    assert_same_weights(saved_weights(tmp_path / 'straight' / 'run'),
                        saved_weights(tmp_path / 'stopped' / 'run'))
    assert [r['step'] for r in resumed.history] == [20, 30]
    assert without_timing(resumed.history) == without_timing(reference.history)
    assert resumed.history[-1]['tokens_seen'] == reference.history[-1]['tokens_seen']
    assert_same_weights(load_model(reference.export_path).state_dict(),
                        load_model(resumed.export_path).state_dict())


def cli_train(run_dir, corpus, space, *extra):
    from translation_fixtures import SPM
    return [sys.executable, '-m', 'dyn_dnn_ros.cli', 'translation', 'train',
            '--out', str(run_dir), '--corpus-dir', str(corpus), '--space', str(space),
            '--spm', str(SPM), '--device', 'cpu', '--threads', '1', '--max-tokens', '96',
            '--epochs', '1000', '--valid-every', '4', '--valid-sentences', '4',
            '--warmup', '5', '--log-every', '1', '--seed', '5', '--no-progress', *extra]


def test_the_command_stops_on_sigterm_and_a_rerun_continues_it_exactly(tmp_path):
    corpus, space = write_tiny_corpus(tmp_path)
    run = tmp_path / 'run'
    env = dict(os.environ, TQDM_DISABLE='1', PYTHONPATH=str(ROOT))
    process = subprocess.Popen(cli_train(run, corpus, space), cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            log = run / 'log.jsonl'
            if log.is_file() and log.read_text().count('"loss"') >= 2:
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]
    state = torch.load(run / 'checkpoint_last.pt', weights_only=True)
    stopped_at = state['progress']['step']
    assert f'stopped by SIGTERM at step {stopped_at}' in out and stopped_at >= 2
    assert not (run / 'model.safetensors').exists()

    total = stopped_at + 5
    done = subprocess.run(cli_train(run, corpus, space, '--max-steps', str(total)), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'at step {stopped_at}' in done.stdout + done.stderr  # "resuming ... at step N"
    assert f'trained {total} steps' in done.stdout and 'max_steps' in done.stdout
    assert 'tokenizing' not in done.stderr  # --no-progress: no bar at all, the data's included

    from translation_fixtures import SPM
    straight = train(TrainConfig(
        run_dir=tmp_path / 'straight', corpus_dir=corpus, space_path=space, spm_path=SPM,
        device='cpu', threads=1, max_tokens=96, epochs=1000, valid_every=4,
        valid_sentences=4, warmup=5, log_every=1, seed=5, max_steps=total,
        progress_bar=False))
    assert straight.step == total
    assert_same_weights(saved_weights(tmp_path / 'straight'), saved_weights(run))
    history = json.loads((run / 'history.json').read_text())['validations']
    assert without_timing(history) == without_timing(straight.history)


def test_resume_refuses_other_settings_or_data_and_accepts_new_limits(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2)
    trainer.fit()
    for changed, message in ((dict(lr=1e-3), "lr: checkpoint 0.003, now 0.001"),
                             (dict(accum=2), 'accum x ranks: checkpoint 1, now 2'),
                             (dict(train_pairs=reversal_pairs(199, seed=1)), 'training data')):
        other = make_trainer(tmp_path, **changed)
        with pytest.raises(ValueError, match=message):
            other.resume()
    relaxed = make_trainer(tmp_path, max_steps=4, epochs=5, patience=9, max_minutes=60,
                           checkpoint_every=7, device='cpu')
    relaxed.resume()
    assert relaxed.step == 2 and relaxed.fit().step == 4


def test_resume_modes(tmp_path):
    config = TrainConfig(run_dir=tmp_path, resume='auto')
    assert should_resume(config) is False
    with pytest.raises(ValueError, match='resume: no checkpoint'):
        should_resume(TrainConfig(run_dir=tmp_path, resume='require'))
    (tmp_path / 'checkpoint_last.pt').write_bytes(b'')
    assert should_resume(config) is True
    with pytest.raises(ValueError, match='exists: resume it'):
        should_resume(TrainConfig(run_dir=tmp_path, resume='never'))
    with pytest.raises(ValueError, match="resume='yes'"):
        TrainConfig(resume='yes').validate()


def scripted_validation(trainer, bleu_per_validation):
    """Make the trainer's validations return these mean BLEU scores, in order."""
    scores = iter(bleu_per_validation)

    def evaluate(model, device, stop_requested=lambda: False):
        bleu = next(scores)
        return {end: {'valid_nll': 2.0, 'bleu': bleu} for end in ('largest', 'smallest')}

    trainer.validator.evaluate = evaluate


@pytest.mark.parametrize('average_bleu, exported', [(16.0, 'average'), (11.0, 'best')])
def test_early_stopping_keeps_the_best_snapshots_and_exports_their_average_if_better(
        tmp_path, average_bleu, exported):
    trainer = make_trainer(tmp_path, epochs=100, valid_every=2, patience=2, average=2)
    # validations at steps 2, 4, 6, 8: the best at 4, then two without improvement
    scripted_validation(trainer, [10.0, 14.0, 12.0, 13.0, average_bleu])
    summary = trainer.fit()
    run = tmp_path / 'run'
    assert (summary.finished, summary.step) == ('early_stop', 8)
    assert [r['improved'] for r in summary.history] == [True, True, False, False]
    assert sorted(p.name for p in (run / 'snapshots').iterdir()) == [
        'step_00000004.pt', 'step_00000008.pt']
    snapshots = [torch.load(run / 'snapshots' / name, weights_only=True)
                 for name in ('step_00000004.pt', 'step_00000008.pt')]
    shipped = load_model(summary.export_path).state_dict()
    if exported == 'average':
        expected = {k: (snapshots[0][k] + snapshots[1][k]) / 2 for k in shipped}
        assert summary.export['weights'].startswith('the average of 2 best snapshots')
        assert summary.export['validation']['metric'] == average_bleu
    else:
        expected = snapshots[0]
        assert summary.export['weights'] == 'the best validated weights (step 4)'
        assert summary.export['validation']['step'] == 4
        best = load_model(run / 'model_best.safetensors').state_dict()
        assert_same_weights(best, shipped)
    for name, tensor in shipped.items():
        torch.testing.assert_close(tensor, expected[name], atol=2e-3, rtol=2e-3)
    final = json.loads((run / 'history.json').read_text())['final']
    assert final['reason'] == 'early_stop' and final['weights'] == summary.export['weights']


def test_time_limit_finishes_with_a_validation_of_the_last_weights(tmp_path):
    trainer = make_trainer(tmp_path, epochs=100, max_minutes=1e-6)
    summary = trainer.fit()
    assert (summary.finished, summary.step) == ('max_minutes', 1)
    assert [r['step'] for r in summary.history] == [1]
    assert summary.export_path.is_file()


def test_checkpoints_follow_the_clock_as_well_as_the_step_count(tmp_path, monkeypatch):
    saves = []

    def count_saves(trainer):
        original = trainer.save_checkpoint
        trainer.save_checkpoint = lambda: (saves.append(trainer.step), original())

    trainer = make_trainer(tmp_path / 'clock', max_steps=4, checkpoint_minutes=1e-9,
                           checkpoint_every=1000, valid_every=100)
    count_saves(trainer)
    trainer.fit()
    assert saves[:4] == [1, 2, 3, 4]
    saves.clear()
    trainer = make_trainer(tmp_path / 'steps', max_steps=4, checkpoint_every=2,
                           valid_every=100)
    count_saves(trainer)
    trainer.fit()
    assert saves[:2] == [2, 4]


def test_early_stopping_and_averaging_by_themselves(tmp_path):
    stopping = EarlyStopping(patience=2)
    assert [stopping.update(m, step) for step, m in enumerate([1.0, 3.0, 3.0, 2.0])] == [
        True, True, False, False]
    assert stopping.should_stop and (stopping.best, stopping.best_step) == (3.0, 1)
    assert not EarlyStopping(patience=0, since_best=50).should_stop
    paths = []
    for i, value in enumerate((1.0, 2.0, 6.0)):
        paths.append(tmp_path / f'{i}.pt')
        torch.save({'w': torch.full((2,), value), 'b': torch.tensor([float(i)])}, paths[-1])
    averaged = average_state_dicts(paths)
    assert averaged['w'].tolist() == [3.0, 3.0] and averaged['b'].tolist() == [1.0]


def test_bleu_subset_spreads_over_the_split_and_a_second_ctrl_c_interrupts():
    assert spread_indices(10, 4) == [0, 2, 5, 7]
    assert spread_indices(3, 8) == [0, 1, 2]
    stop, before = StopSignals(), signal.getsignal(signal.SIGTERM)
    with stop.installed():
        signal.raise_signal(signal.SIGINT)
        assert stop.requested == 'SIGINT'
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before

