"""DistributedDataParallel training: two gloo processes on the CPU against one process.

Two ranks with one micro-batch each see the same global batch as one process
with two accumulated micro-batches, so they must compute the same losses and
(within float rounding) the same weights, and the replicas must stay
bit-identical: they train the same sub-networks at every step and average
their gradients. The two processes are started once; each first takes
training steps, then runs ``train`` as under ``torchrun`` (its environment
variables), through validation, early-stopping bookkeeping and export.
"""

from datetime import timedelta
import gc
import json
import os
from pathlib import Path
import socket

import pytest
import torch
import torch.multiprocessing as mp
from training_fixtures import make_trainer, write_tiny_corpus

from dyn_dnn_ros.translation.training import TrainConfig, train

STEPS = 4
# No dropout: the ranks' masks differ from one process's, the gradients would too.
OPTIONS = dict(dropout=0.0, random_subnets=2, max_tokens=48, lr=3e-3, warmup=2)


def run_steps(trainer, steps):
    records = []
    for _ in range(steps):
        stats = trainer.train_step(trainer.next_micro_batches())
        trainer._advance_position()
        records.append({k: stats[k] for k in ('loss', 'nll', 'subnets', 'tokens')})
    return records


def command_config(folder, run_dir, **overrides):
    """The ``train`` settings of the whole-run check, with the tiny corpus in ``folder``."""
    from translation_fixtures import SPM
    folder = Path(folder)
    options = dict(run_dir=run_dir, corpus_dir=folder / 'corpus', spm_path=SPM,
                   space_path=folder / 'space.yaml', device='cpu', threads=1, max_tokens=64,
                   max_steps=4, valid_every=2, valid_sentences=4, warmup=2, seed=7,
                   progress_bar=False)
    options.update(overrides)
    return TrainConfig(**options)


def ddp_rank(rank, world_size, folder, port):
    """One rank: STEPS steps with a Trainer, then a whole ``train`` run as torchrun starts it."""
    torch.set_num_threads(1)
    folder = Path(folder)
    torch.distributed.init_process_group('gloo', init_method=f'file://{folder / "rendezvous"}',
                                         rank=rank, world_size=world_size,
                                         timeout=timedelta(seconds=120))
    try:
        trainer = make_trainer(folder / f'steps{rank}', rank=rank, world_size=world_size,
                               **OPTIONS)
        records = run_steps(trainer, STEPS)
        torch.save({'weights': trainer.model.state_dict(), 'records': records},
                   folder / f'rank{rank}.pt')
        torch.distributed.barrier()
    finally:
        trainer = None  # the DDP reducer holds the group: release it before the group
        gc.collect()
        torch.distributed.destroy_process_group()

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), TQDM_DISABLE='1')
    summary = train(command_config(folder, folder / 'ddp'))
    (folder / f'summary{rank}.json').write_text(json.dumps({
        'step': summary.step, 'finished': summary.finished,
        'validated': [r['step'] for r in summary.history],
        'exported': summary.export_path is not None}))


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    write_tiny_corpus(folder, repeats=8)
    with socket.socket() as probe:  # a free port for the process group's store
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    mp.spawn(ddp_rank, args=(2, str(folder), port), nprocs=2, join=True)
    return folder


def test_two_replicas_stay_identical_and_match_one_process_with_the_same_batch(two_ranks):
    ranks = [torch.load(two_ranks / f'rank{r}.pt', weights_only=True) for r in (0, 1)]
    for name, tensor in ranks[0]['weights'].items():
        assert torch.equal(tensor, ranks[1]['weights'][name]), name
    assert ranks[0]['records'] == ranks[1]['records']  # same sub-networks, summed statistics
    subnets = [r['subnets'] for r in ranks[0]['records']]
    assert len({tuple(s[2:]) for s in subnets}) == STEPS  # random ones, drawn anew each step

    torch.set_num_threads(1)
    single = make_trainer(two_ranks / 'single_steps', accum=2, **OPTIONS)
    records = run_steps(single, STEPS)
    for ddp, one in zip(ranks[0]['records'], records, strict=True):
        assert ddp['subnets'] == one['subnets'] and ddp['tokens'] == one['tokens']
        torch.testing.assert_close(ddp['loss'], one['loss'], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ddp['nll'], one['nll'], rtol=1e-5, atol=1e-6)
    changed = 0
    initial = make_trainer(two_ranks / 'initial', **OPTIONS).model.state_dict()
    for name, tensor in single.model.state_dict().items():
        if name.endswith('k_proj.bias'):
            # A key bias shifts every attention score of a query alike, which softmax
            # ignores: its true gradient is 0, and Adam scales the rounding noise
            # left in its place up to steps of the learning rate's size.
            continue
        torch.testing.assert_close(ranks[0]['weights'][name], tensor, rtol=1e-4, atol=1e-5)
        changed += not torch.equal(tensor, initial[name])
    assert changed > len(initial) // 2  # the steps moved most tensors


def test_a_whole_run_on_two_ranks_agrees_with_one_process_and_continues_in_one(two_ranks):
    summaries = [json.loads((two_ranks / f'summary{r}.json').read_text()) for r in (0, 1)]
    for summary in summaries:
        assert (summary['step'], summary['finished']) == (4, 'max_steps')
    assert summaries[0]['validated'] == [2, 4] and summaries[0]['exported']
    assert summaries[1]['validated'] == [] and not summaries[1]['exported']  # rank 0's work
    history = json.loads((two_ranks / 'ddp' / 'history.json').read_text())
    assert [r['step'] for r in history['validations']] == [2, 4]
    assert (two_ranks / 'ddp' / 'model.safetensors').is_file()

    # Dropout differs per rank, so the weights differ from one process's; the data
    # position and the tokens seen do not.
    single = train(command_config(two_ranks, two_ranks / 'single', accum=2))
    ddp_state = torch.load(two_ranks / 'ddp' / 'checkpoint_last.pt', weights_only=True)
    single_state = torch.load(two_ranks / 'single' / 'checkpoint_last.pt', weights_only=True)
    for key in ('step', 'epoch', 'step_in_epoch', 'tokens_seen', 'global_batch'):
        assert ddp_state['progress'][key] == single_state['progress'][key], key
    assert ddp_state['progress']['global_batch'] == 2 and single.step == 4

    # Two ranks x one micro-batch is one process x two: the run continues in one process.
    resumed = train(command_config(two_ranks, two_ranks / 'ddp', accum=2, max_steps=6))
    assert resumed.step == 6 and [r['step'] for r in resumed.history] == [2, 4, 6]
