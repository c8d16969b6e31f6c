"""The training loop of the SuperTransformer: steps, validation, checkpoints, export.

Every rank draws the same sub-networks at a step (their sampler's seed is
the step's), so DistributedDataParallel replicas train the same ones; the
dropout masks are the rank's own. A step's gradient is the mean over all
ranks' target tokens, as one process with the same global batch computes it.
"""

from contextlib import nullcontext
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dyn_dnn_ros.translation.batching import TokenBatcher
from dyn_dnn_ros.translation.checkpoint import load_training_state, save_model, save_training_state
from dyn_dnn_ros.translation.model_selection import EarlyStopping, SnapshotKeeper, export_weights
from dyn_dnn_ros.translation.supernet import SuperTransformer
from dyn_dnn_ros.translation.training_config import TrainConfig
from dyn_dnn_ros.translation.training_report import (
    LEARNING_CURVE,
    StepMeter,
    plot_learning_curve,
    validation_record,
    write_history,
)
from dyn_dnn_ros.translation.training_state import (
    STATE_FORMAT,
    StopSignals,
    data_fingerprint,
    resume_mismatches,
)
from dyn_dnn_ros.translation.valid_scoring import (
    ValidationInterrupted,
    Validator,
    label_smoothed_nll_loss,
    selection_metric,
)

CHECKPOINT_NAME = 'checkpoint_last.pt'
BEST_NAME = 'model_best.safetensors'
EXPORT_NAME = 'model.safetensors'
EXPORT_LIMIT_MB = 50  # a model file larger than this is not shipped in the repository


@dataclass
class TrainSummary:
    step: int
    epoch: int
    history: list = field(default_factory=list)  # one record per validation
    finished: str | None = None  # why training ended: epochs, max_steps, max_minutes, early_stop
    stopped_by: str | None = None  # the signal that stopped it first (resumable)
    export_path: Path | None = None
    export: dict | None = None  # what was exported and its validation


# -- losses ------------------------------------------------------------------------


def distillation_loss(lprobs, teacher_lprobs, target, ignore_index):
    """Summed KL(teacher || student) over non-padding target positions."""
    kl = F.kl_div(lprobs, teacher_lprobs, log_target=True, reduction='none').sum(-1)
    return kl[target.ne(ignore_index)].sum()


def inverse_sqrt_schedule(warmup):
    """LR multiplier: linear warm-up to 1, then decay with 1/sqrt(step)."""
    def factor(step):
        step = max(step, 1)
        if warmup == 0:
            return 1.0
        return min(step / warmup, math.sqrt(warmup / step))
    return factor


# -- the trainer -----------------------------------------------------------------


class Trainer:
    """Owns the model, optimiser, batches, validation and checkpoints of one training run."""

    def __init__(self, config: TrainConfig, model: SuperTransformer, train_pairs,
                 valid_pairs=(), valid_references=None, detokenize=None, device='cpu',
                 rank=0, world_size=1, export_metadata=None):
        self.config = config.validate()
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.model = model.to(self.device)
        self.net = self.model
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel
            # Sub-networks skip decoder layers, so some parameters get no gradient.
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None,
                find_unused_parameters=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr,
                                          betas=tuple(config.betas), eps=1e-8,
                                          weight_decay=config.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, inverse_sqrt_schedule(config.warmup))
        ids = (model.pad_id, model.bos_id, model.eos_id)
        self.batcher = TokenBatcher(list(train_pairs), config.max_tokens, *ids, seed=config.seed)
        self.data = data_fingerprint(self.batcher.pairs)
        self._epoch_cache = (None, None)
        if self.steps_in_epoch(0) == 0:
            raise ValueError(f'{len(self.batcher)} batches are too few for one step of '
                             f'{config.accum} micro-batches on {world_size} ranks')
        self.validator = Validator(valid_pairs, valid_references, detokenize, config.max_tokens,
                                   config.valid_sentences, config.max_len_a, config.max_len_b)
        self.run_dir = Path(config.run_dir)
        self.early_stopping = EarlyStopping(config.patience)
        self.snapshots = SnapshotKeeper(self.run_dir, config.average)
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.tokens_seen = 0  # source + target tokens without padding, all ranks
        self.train_seconds = 0.0  # inside optimiser steps
        self.wall_seconds = 0.0  # the whole run: steps, validations, checkpoints
        self.validated_step = 0  # step of the latest validation; 0: none yet
        self.time_up = False  # max_minutes reached, agreed by every rank
        self.history = []
        self.use_amp = config.amp and self.device.type == 'cuda'
        self.export_metadata = dict(export_metadata or {})
        self.stop = StopSignals()
        self._log_file = None  # log.jsonl while fit runs on rank 0
        self._last_checkpoint = time.monotonic()

    # -- data position ------------------------------------------------------------

    def epoch_batches(self, epoch):
        if self._epoch_cache[0] != epoch:
            self._epoch_cache = (epoch, self.batcher.epoch_batches(epoch, self.rank,
                                                                   self.world_size))
        return self._epoch_cache[1]

    def steps_in_epoch(self, epoch):
        return len(self.epoch_batches(epoch)) // self.config.accum

    def next_micro_batches(self):
        accum, s = self.config.accum, self.step_in_epoch
        return [self.batcher.collate(indices)
                for indices in self.epoch_batches(self.epoch)[s * accum:(s + 1) * accum]]

    def _advance_position(self):
        self.step_in_epoch += 1
        if self.step_in_epoch >= self.steps_in_epoch(self.epoch):
            self.epoch, self.step_in_epoch = self.epoch + 1, 0

    # -- one step ----------------------------------------------------------------

    def subnets_for_step(self, sampler):
        space = self.model.space
        if self.config.mode == 'largest':
            return [space.largest()]
        if self.config.mode == 'random':
            return [space.sample(sampler)]
        return ([space.largest(), space.smallest()]
                + [space.sample(sampler) for _ in range(self.config.random_subnets)])

    def train_step(self, batches):
        """One optimiser step over ``batches`` (this rank's micro-batches of the step).

        Every rank draws the same sub-networks (the sampler's seed is the step's,
        not the rank's) and its own dropout masks. Returns per-token losses of
        each sub-network (label-smoothed and NLL) and the source + target
        tokens, all over every rank's batches.
        """
        cfg, model, pad = self.config, self.model, self.model.pad_id
        if not batches:
            raise ValueError('train_step needs at least one micro-batch')
        step_seed = cfg.seed * 1_000_003 + self.step
        sampler = random.Random(step_seed)
        torch.manual_seed((step_seed << 16) + self.rank)  # dropout masks of this step and rank
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        subnets = self.subnets_for_step(sampler)
        distill = cfg.mode == 'sandwich' and cfg.distill_weight > 0
        local_targets = sum(b.tgt_tokens for b in batches)
        local_tokens = local_targets + sum(b.src_tokens for b in batches)
        target_tokens = self._sum_over_ranks([local_targets])[0]
        # DDP averages gradients over ranks; times the world size, every replica gets
        # the gradient of the mean over all ranks' target tokens, as one process with
        # the same global batch would, however the tokens split. Over sub-networks
        # it is a mean, so the loss scale (and clipping) is the same in every mode.
        scale = self.world_size / (target_tokens * len(subnets))
        losses = torch.zeros(len(subnets), dtype=torch.float64, device=self.device)
        nlls = torch.zeros_like(losses)
        for batch in batches:
            batch = batch.to(self.device)
            teacher = None
            for i, subnet in enumerate(subnets):
                model.set_subnet(subnet)
                with self._autocast():
                    logits = self.net(batch.src, batch.tgt_input)
                lprobs = F.log_softmax(logits.float(), dim=-1)
                loss, nll = label_smoothed_nll_loss(lprobs, batch.tgt_output,
                                                    cfg.label_smoothing, pad)
                losses[i] += loss.detach()
                nlls[i] += nll.detach()
                if distill and i == 0:
                    teacher = lprobs.detach()  # subnets[0] is the largest
                elif teacher is not None:
                    kd = distillation_loss(lprobs, teacher, batch.tgt_output, pad)
                    loss = (1.0 - cfg.distill_weight) * loss + cfg.distill_weight * kd
                # Backward right away, one sub-network at a time: each DDP forward is
                # followed by its own synchronising backward. Syncing only the last one
                # (no_sync) would drop gradients of layers only earlier sub-networks used
                # (pytorch/pytorch#69031).
                (loss * scale).backward()
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        totals = self._sum_over_ranks(torch.cat([
            losses, nlls, torch.tensor([local_tokens], dtype=torch.float64, device=self.device)]))
        n = len(subnets)
        tokens = int(totals[-1])
        self.tokens_seen += tokens
        return {
            'loss': [x / target_tokens for x in totals[:n]],
            'nll': [x / target_tokens for x in totals[n:2 * n]],
            'subnets': [s.key() for s in subnets],
            'tokens': tokens,
        }

    def _sum_over_ranks(self, values):
        """``values`` (numbers or a float64 tensor) summed over every rank, as floats."""
        if self.world_size == 1:  # numbers stay on the host: no device round trip
            return values.tolist() if torch.is_tensor(values) else [float(v) for v in values]
        if not torch.is_tensor(values):
            values = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        return values.tolist()

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type='cuda', dtype=torch.bfloat16)
        return nullcontext()

    # -- validation --------------------------------------------------------------

    def evaluate(self):
        """Validation NLL (all pairs) and greedy BLEU (subset) of the largest and smallest."""
        return self.validator.evaluate(self.model, self.device)

    def validation_due(self):
        if self.step == 0 or self.validated_step == self.step:
            return False
        if self.config.valid_every:
            return self.step % self.config.valid_every == 0
        return self.step_in_epoch == 0  # the step that ended an epoch

    def validate(self):
        """Validate at this step (rank 0) and share the outcome; False when a stop cut it short."""
        record = None
        if self.rank == 0:
            start = time.perf_counter()
            try:
                results = self.validator.evaluate(self.model, self.device,
                                                  lambda: self.stop.requested is not None)
                record = self._record_validation(results, time.perf_counter() - start)
            except ValidationInterrupted:
                pass
        if self.world_size > 1:
            shared = [None if record is None else self.early_stopping.state()]
            torch.distributed.broadcast_object_list(shared, src=0)
            if shared[0] is None:
                return False
            self.early_stopping.load(shared[0])
        elif record is None:
            return False
        self.validated_step = self.step
        return True

    def _record_validation(self, results, seconds):
        metric, metric_name = selection_metric(results)
        improved = self.early_stopping.update(metric, self.step)
        previous = self.history[-1] if self.history else {'tokens_seen': 0, 'train_seconds': 0}
        spent = self.train_seconds - previous['train_seconds']
        record = validation_record(
            results, step=self.step, epoch=self.epoch, tokens_seen=self.tokens_seen,
            wall_seconds=self.wall_seconds, train_seconds=self.train_seconds,
            tokens_per_s=(self.tokens_seen - previous['tokens_seen']) / spent if spent else None,
            valid_seconds=seconds, metric=metric, metric_name=metric_name, improved=improved)
        self.history.append(record)
        if improved:
            save_model(self.run_dir / BEST_NAME, self.model,
                       dict(self.export_metadata, step=self.step, validation=record))
        self.snapshots.offer(self.model, self.step, metric)
        self._write_reports()
        self._log({'valid': record})
        tqdm.write(f'step {self.step} validation: ' + ', '.join(
            f'{k} {v:.3f}' for k, v in record.items()
            if k.endswith(('_bleu', '_nll')) and v is not None)
            + (' (best so far)' if improved else f' ({self.early_stopping.since_best} '
               'without improvement)'))
        return record

    def _write_reports(self, final=None):
        write_history(self.run_dir, self.history, final)
        if self.history:
            plot_learning_curve(self.run_dir / LEARNING_CURVE, self.history,
                                f'{self.config.mode} training, validation')

    # -- checkpoints ---------------------------------------------------------------

    @property
    def checkpoint_path(self):
        return self.run_dir / CHECKPOINT_NAME

    def save_checkpoint(self):
        self._last_checkpoint = time.monotonic()
        if self.rank != 0:
            return
        progress = {
            'format': STATE_FORMAT,
            'step': self.step, 'epoch': self.epoch, 'step_in_epoch': self.step_in_epoch,
            'tokens_seen': self.tokens_seen, 'train_seconds': self.train_seconds,
            'wall_seconds': self.wall_seconds, 'validated_step': self.validated_step,
            'history': self.history, 'early_stopping': self.early_stopping.state(),
            'snapshots': self.snapshots.state(), 'global_batch': self._global_batch(),
            'config': self.config.to_dict(), 'data': self.data,
        }
        save_training_state(self.checkpoint_path, self.model, self.optimizer, self.scheduler,
                            progress)

    def _global_batch(self):
        """Micro-batches per optimiser step over all ranks: it sets which batches a step takes."""
        return self.config.accum * self.world_size

    def resume(self, path=None):
        path = Path(path) if path is not None else self.checkpoint_path
        progress = load_training_state(path, self.model, self.optimizer, self.scheduler)
        if progress.get('format') != STATE_FORMAT:
            raise ValueError(f'{path}: written by another version of the trainer; start a new '
                             'run folder with --init-from to keep its weights')
        problems = resume_mismatches(progress['config'], self.config.to_dict(), progress['data'],
                                     self.data)
        if progress['global_batch'] != self._global_batch():
            problems.append(f'accum x ranks: checkpoint {progress["global_batch"]}, '
                            f'now {self._global_batch()}')
        if problems:
            raise ValueError(f'{path}: not the same run, so it cannot be continued ('
                             + '; '.join(problems) + '); start a new run folder, with '
                             '--init-from to keep the weights')
        self.step, self.epoch = progress['step'], progress['epoch']
        self.step_in_epoch = progress['step_in_epoch']
        for name in ('tokens_seen', 'train_seconds', 'wall_seconds', 'validated_step'):
            setattr(self, name, progress[name])
        self.history = progress['history']
        self.early_stopping.load(progress['early_stopping'])
        missing = self.snapshots.load(progress['snapshots'])
        if missing and self.rank == 0:
            tqdm.write(f'snapshots missing, left out of averaging: {missing}')
        limit = self.config.max_minutes
        self.time_up = limit is not None and self.wall_seconds >= limit * 60

    def _checkpoint_due(self):
        return (self.step % self.config.checkpoint_every == 0
                or time.monotonic() - self._last_checkpoint >= self.config.checkpoint_minutes * 60)

    # -- the loop --------------------------------------------------------------------

    def finish_reason(self):
        cfg = self.config
        if self.early_stopping.should_stop:
            return 'early_stop'
        if self.epoch >= cfg.epochs:
            return 'epochs'
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return 'max_steps'
        if self.time_up:
            return 'max_minutes'
        return None

    def fit(self):
        """Train until a finish reason or a stop signal; export the model when finished."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        planned = self.steps_in_epoch(0) * cfg.epochs
        if cfg.max_steps is not None:
            planned = min(planned, cfg.max_steps)
        bar = tqdm(total=max(planned, self.step), initial=self.step, unit='step',
                   disable=self.rank != 0 or not cfg.progress_bar, dynamic_ncols=True)
        self._log_file = open(self.run_dir / 'log.jsonl', 'a') if self.rank == 0 else None
        try:
            with self.stop.installed():
                stopped_by = self._loop(bar)
        finally:
            bar.close()
            if self._log_file is not None:
                self._log_file.close()
            self._log_file = None
        self.save_checkpoint()
        summary = TrainSummary(self.step, self.epoch, self.history, stopped_by=stopped_by)
        if stopped_by is None:
            summary.finished = self.finish_reason()
            if self.rank == 0:
                summary.export_path, summary.export = self._export(summary.finished)
        return summary

    def _loop(self, bar):
        """Steps and validations until a finish reason (None) or a stop request (its signal)."""
        cfg = self.config
        clock_start, wall_before = time.monotonic(), self.wall_seconds
        meter = StepMeter(bar)
        while True:
            self.wall_seconds = wall_before + time.monotonic() - clock_start
            if self.validation_due():
                if not self.validate():
                    return self.stop.requested or 'a stop request on rank 0'
                self.save_checkpoint()
            if self.finish_reason() is not None:
                if self.validated_step != self.step and self.step > 0:
                    if not self.validate():  # the last weights are candidates too
                        return self.stop.requested or 'a stop request on rank 0'
                return None
            micro = self.next_micro_batches()
            start = time.perf_counter()
            stats = self.train_step(micro)
            seconds = time.perf_counter() - start
            self.train_seconds += seconds
            self._advance_position()
            self.wall_seconds = wall_before + time.monotonic() - clock_start
            over_time = cfg.max_minutes is not None and self.wall_seconds >= cfg.max_minutes * 60
            stop_votes, time_votes = self._sum_over_ranks(
                [self.stop.requested is not None, over_time])
            self.time_up = time_votes > 0
            lr = self.scheduler.get_last_lr()[0]
            meter.step(stats, seconds, self.epoch + (self.step_in_epoch > 0), lr)
            if self.step % cfg.log_every == 0 or self.step == 1:
                self._log(dict(
                    step=self.step, epoch=self.epoch, **meter.window(),
                    loss_per_subnet=stats['loss'], nll_per_subnet=stats['nll'],
                    tokens_seen=self.tokens_seen, wall_seconds=round(self.wall_seconds, 1),
                    lr=lr))
            if stop_votes > 0:
                return self.stop.requested or 'a stop request on another rank'
            if self._checkpoint_due():
                self.save_checkpoint()

    def _export(self, reason):
        """Save the chosen weights (see ``export_weights``) as fp16 safetensors."""
        chosen, results = export_weights(self.model, self.snapshots, self.history,
                                         lambda: self.validator.evaluate(self.model, self.device))
        path = Path(self.config.export_path or self.run_dir / EXPORT_NAME)
        save_model(path, self.model, dict(self.export_metadata, step=self.step,
                                          epoch=self.epoch, finished=reason, weights=chosen))
        megabytes = path.stat().st_size / 1e6
        if megabytes > EXPORT_LIMIT_MB:
            tqdm.write(f'warning: {path} has {megabytes:.1f} MB, more than the '
                       f'{EXPORT_LIMIT_MB} MB a shipped model may have')
        export = {'reason': reason, 'step': self.step, 'weights': chosen, 'path': str(path),
                  'megabytes': round(megabytes, 2), 'validation': results,
                  'wall_seconds': round(self.wall_seconds, 1),
                  'train_seconds': round(self.train_seconds, 1), 'tokens_seen': self.tokens_seen,
                  'tokens_per_s': (round(self.tokens_seen / self.train_seconds, 1)
                                   if self.train_seconds else None)}
        self._write_reports(final=export)
        tqdm.write(f'exported {chosen} to {path} ({megabytes:.1f} MB)')
        return path, export

    def _log(self, record):
        if self._log_file is not None:  # rank 0, inside fit
            self._log_file.write(json.dumps(record) + '\n')
            self._log_file.flush()
