"""Training the SuperTransformer: HAT's random sub-networks or the sandwich rule.

Per optimiser step, ``mode='random'`` trains one uniformly sampled sub-network
(HAT); ``mode='sandwich'`` trains the largest, the smallest and
``random_subnets`` sampled ones on the same batch and sums their gradients,
the smaller ones also learning from the largest one's detached predictions
(in-place distillation). ``mode='largest'`` trains only the largest one (a
plain Transformer baseline). Runs on CPU or CUDA, and under ``torchrun`` with
DistributedDataParallel when ``WORLD_SIZE > 1``.

A run is resumable at any optimiser step: the sub-networks and dropout masks
of step n come from seeds of (seed, n, rank), and the batches of an epoch
from (seed, epoch), so a resumed run computes what an uninterrupted one
would have. Validation (greedy BLEU of the largest and smallest) drives early
stopping, and the best validated snapshots are averaged into the exported
model.

The pieces: ``training_config`` (the settings), ``trainer`` (steps, the loop,
checkpoints), ``valid_scoring`` (NLL, greedy BLEU, the selection metric),
``model_selection`` (early stopping, snapshots, averaging),
``training_state`` (signals, what a resume must match) and
``training_report`` (history and learning curve). This module reads the
corpus, sets up ``torchrun``'s process group and runs the whole thing.
"""

from dataclasses import replace
import gc
import os
from pathlib import Path

import torch
from tqdm import tqdm

from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.trainer import (
    CHECKPOINT_NAME,
    Trainer,
    TrainSummary,
    distillation_loss,
    inverse_sqrt_schedule,
)
from dyn_dnn_ros.translation.training_config import MODES, RESUME_MODES, TrainConfig
from dyn_dnn_ros.translation.valid_scoring import label_smoothed_nll_loss

# Importers of this module find the whole training API here.
__all__ = ['CHECKPOINT_NAME', 'MODES', 'RESUME_MODES', 'TrainConfig', 'TrainSummary', 'Trainer',
           'distillation_loss', 'inverse_sqrt_schedule', 'label_smoothed_nll_loss',
           'load_pairs', 'should_resume', 'train']


# -- data and the whole run --------------------------------------------------------


def load_pairs(corpus_dir, split, tokenizer, max_positions, progress=True):
    """Tokenized ``(src_ids, tgt_ids)`` pairs of ``split`` and their raw target lines.

    Pairs with an empty side or a side longer than ``max_positions - 1`` tokens
    (room for BOS/EOS) are dropped.
    """
    corpus_dir = Path(corpus_dir)
    src_path, tgt_path = corpus_dir / f'{split}.en', corpus_dir / f'{split}.de'
    for path in (src_path, tgt_path):
        if not path.is_file():
            raise ValueError(f'corpus file {path} does not exist')
    src_lines = src_path.read_text(encoding='utf-8').splitlines()
    tgt_lines = tgt_path.read_text(encoding='utf-8').splitlines()
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f'{src_path} has {len(src_lines)} lines but {tgt_path} has '
                         f'{len(tgt_lines)}')
    pairs, references = [], []
    for src, tgt in tqdm(zip(src_lines, tgt_lines, strict=True), total=len(src_lines),
                         desc=f'tokenizing {split}', unit='pair', leave=False,
                         disable=not progress):
        s, t = tokenizer.encode(src), tokenizer.encode(tgt)
        if 0 < len(s) < max_positions and 0 < len(t) < max_positions:
            pairs.append((s, t))
            references.append(tgt)
    return pairs, references


def _distributed_setup(device_option):
    """(rank, world_size, device) from torchrun's environment, initialising the group."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    use_cuda = device_option == 'cuda' or (device_option == 'auto' and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError('device=cuda but CUDA is not available')
    device = torch.device(f'cuda:{local_rank}' if use_cuda else 'cpu')
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1:
        torch.distributed.init_process_group(backend='nccl' if use_cuda else 'gloo')
        return torch.distributed.get_rank(), world_size, device
    return 0, 1, device


def should_resume(config: TrainConfig):
    """Whether ``config.run_dir`` holds a checkpoint to continue, by ``config.resume``."""
    checkpoint = Path(config.run_dir) / CHECKPOINT_NAME
    if config.resume == 'require' and not checkpoint.is_file():
        raise ValueError(f'resume: no checkpoint at {checkpoint}')
    if config.resume == 'never' and checkpoint.is_file():
        raise ValueError(f'{checkpoint} exists: resume it or choose another run folder')
    return checkpoint.is_file()


def train(config: TrainConfig) -> TrainSummary:
    """Train a SuperTransformer on the corpus (or continue a run) and export fp16 weights."""
    from dyn_dnn_ros.translation.tokenizer import Tokenizer

    config.validate()
    if config.corpus_dir is None:
        from dyn_dnn_ros.translation.corpus import DEFAULT_CONFIG_PATH, load_corpus_config
        config = replace(config, corpus_dir=load_corpus_config(DEFAULT_CONFIG_PATH).out_dir)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    resuming = should_resume(config)
    rank, world_size, device = _distributed_setup(config.device)
    trainer = None
    try:
        torch.manual_seed(config.seed)  # same initial weights everywhere (DDP also broadcasts)
        tokenizer = Tokenizer(config.spm_path)
        space = DesignSpace.from_yaml(config.space_path)
        progress = config.progress_bar and rank == 0
        train_pairs, _ = load_pairs(config.corpus_dir, 'train', tokenizer, space.max_positions,
                                    progress)
        valid_pairs, references = load_pairs(config.corpus_dir, 'valid', tokenizer,
                                             space.max_positions, progress)
        if not train_pairs:
            raise ValueError(f'no usable training pairs in {config.corpus_dir}')
        model = SuperTransformer(space, tokenizer.vocab_size, tokenizer.pad_id,
                                 tokenizer.bos_id, tokenizer.eos_id, dropout=config.dropout)
        if config.init_from is not None and not resuming:
            # Weights only: a fresh optimiser and schedule continue training a
            # shipped model when its run folder (optimiser state) is gone.
            from dyn_dnn_ros.translation.checkpoint import load_model
            initial = load_model(config.init_from)
            if initial.space != space or initial.vocab_size != model.vocab_size:
                raise ValueError(f'init_from: {config.init_from} has another design space '
                                 'or vocabulary than this run')
            model.load_state_dict(initial.state_dict())
        trainer = Trainer(config, model, train_pairs, valid_pairs, references,
                          tokenizer.decode, device, rank, world_size,
                          export_metadata={'tokenizer': str(config.spm_path),
                                           'mode': config.mode})
        if resuming:
            trainer.resume()
            if rank == 0:
                tqdm.write(f'resuming {trainer.checkpoint_path} at step {trainer.step} '
                           f'(epoch {trainer.epoch + 1}, {trainer.tokens_seen} tokens seen)')
        summary = trainer.fit()
        if world_size > 1:
            # Leave together: rank 0 exports after the others have finished their steps.
            torch.distributed.barrier()
        return summary
    finally:
        if world_size > 1:
            # The DDP reducer holds the process group; a gloo group torn down after
            # a peer has exited can wait forever in its destructor, so release it
            # here, while every rank is still present.
            trainer = model = None
            gc.collect()
            torch.distributed.destroy_process_group()
