"""Training the SuperTransformer: HAT's random sub-networks or the sandwich rule.

Per optimiser step, ``mode='random'`` trains one uniformly sampled sub-network
(HAT); ``mode='sandwich'`` trains the largest, the smallest and
``random_subnets`` sampled ones on the same batch and sums their gradients,
the smaller ones also learning from the largest one's detached predictions
(in-place distillation). ``mode='largest'`` trains only the largest one (a
plain Transformer baseline). Runs on CPU or CUDA, and under ``torchrun`` with
DistributedDataParallel when ``WORLD_SIZE > 1``.
"""

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
import json
import math
import os
from pathlib import Path
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from dyn_dnn_ros.share import share_dir
from dyn_dnn_ros.translation.batching import TokenBatcher, encode_sources
from dyn_dnn_ros.translation.checkpoint import load_training_state, save_model, save_training_state
from dyn_dnn_ros.translation.design_space import DesignSpace
from dyn_dnn_ros.translation.greedy import greedy_decode
from dyn_dnn_ros.translation.supernet import SuperTransformer

REPO_ROOT = share_dir()   # a source checkout: its root; installed: the share folder
MODES = ('sandwich', 'random', 'largest')
CHECKPOINT_NAME = 'checkpoint_last.pt'


@dataclass
class TrainConfig:
    run_dir: Path = REPO_ROOT / 'runs' / 'supernet'
    corpus_dir: Path = REPO_ROOT / 'data' / 'corpus'
    spm_path: Path = REPO_ROOT / 'models' / 'translation' / 'spm.model'
    space_path: Path = REPO_ROOT / 'config' / 'design_space.yaml'
    mode: str = 'sandwich'
    random_subnets: int = 2  # sandwich: sampled sub-networks besides largest and smallest
    distill_weight: float = 0.5  # sandwich: share of the distillation loss for smaller nets
    epochs: int = 30
    max_tokens: int = 4096  # padded tokens per side and micro-batch
    accum: int = 1  # micro-batches per optimiser step
    lr: float = 7e-4  # peak, reached at the end of warm-up
    warmup: int = 1000  # optimiser steps of linear warm-up, then inverse square root
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.0
    clip_norm: float = 1.0  # 0 disables clipping
    label_smoothing: float = 0.1
    dropout: float = 0.1
    device: str = 'auto'  # cpu, cuda or auto
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    seed: int = 1
    resume: bool = False
    init_from: Path | None = None  # start from these weights (e.g. the shipped fp16 model)
    max_steps: int | None = None  # stop early (smoke runs); a checkpoint is still written
    checkpoint_every: int = 1000  # optimiser steps; also at every epoch end
    log_every: int = 50
    valid_sentences: int = 200  # validation subset for BLEU
    max_len_a: float = 1.5
    max_len_b: int = 10
    export_path: Path | None = None  # default: run_dir/model.safetensors

    def validate(self):
        if self.mode not in MODES:
            raise ValueError(f'mode={self.mode!r} not in {MODES}')
        if self.device not in ('cpu', 'cuda', 'auto'):
            raise ValueError(f'device={self.device!r} not in (cpu, cuda, auto)')
        for name in ('epochs', 'max_tokens', 'accum', 'checkpoint_every', 'log_every'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name}={getattr(self, name)} must be >= 1')
        for name in ('random_subnets', 'warmup', 'valid_sentences'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name}={getattr(self, name)} must be >= 0')
        if not self.lr > 0:
            raise ValueError(f'lr={self.lr} must be positive')
        for name in ('distill_weight', 'label_smoothing', 'dropout'):
            if not 0 <= getattr(self, name) < 1 + (name == 'distill_weight'):
                raise ValueError(f'{name}={getattr(self, name)} out of range')
        if self.threads is not None and self.threads < 1:
            raise ValueError(f'threads={self.threads} must be >= 1')
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f'max_steps={self.max_steps} must be >= 1')
        return self

    def to_dict(self):
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class TrainSummary:
    step: int
    epoch: int
    history: list = field(default_factory=list)  # validation results, one per epoch
    export_path: Path | None = None


# -- losses ------------------------------------------------------------------------


def label_smoothed_nll_loss(lprobs, target, epsilon, ignore_index):
    """Summed label-smoothed cross entropy and plain NLL over non-padding targets.

    The smoothed target puts ``1 - epsilon`` on the reference and spreads
    ``epsilon`` uniformly over the vocabulary (as ``F.cross_entropy`` does).
    """
    mask = target.ne(ignore_index)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    smooth = -lprobs.mean(dim=-1)
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    return loss[mask].sum(), nll[mask].sum()


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
    """Owns the model, optimiser, batches and checkpoints of one training run."""

    def __init__(self, config: TrainConfig, model: SuperTransformer, train_pairs,
                 valid_pairs=(), valid_references=None, detokenize=None, device='cpu',
                 rank=0, world_size=1):
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
        self.valid_pairs = list(valid_pairs)
        self.valid_references = valid_references
        self.detokenize = detokenize
        self.sampler = random.Random(config.seed)  # identical on every rank: same sub-networks
        self.step, self.epoch, self.step_in_epoch = 0, 0, 0
        self.best_valid = math.inf
        self.history = []
        self.run_dir = Path(config.run_dir)
        self.use_amp = config.amp and self.device.type == 'cuda'

    # -- one step ----------------------------------------------------------------

    def subnets_for_step(self):
        space = self.model.space
        if self.config.mode == 'largest':
            return [space.largest()]
        if self.config.mode == 'random':
            return [space.sample(self.sampler)]
        return ([space.largest(), space.smallest()]
                + [space.sample(self.sampler) for _ in range(self.config.random_subnets)])

    def train_step(self, batches):
        """One optimiser step over ``batches`` (the micro-batches of gradient accumulation).

        Returns per-token losses of each sub-network (label-smoothed and NLL) and
        the number of source + target tokens.
        """
        cfg, model, pad = self.config, self.model, self.model.pad_id
        if not batches:
            raise ValueError('train_step needs at least one micro-batch')
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        subnets = self.subnets_for_step()
        distill = cfg.mode == 'sandwich' and cfg.distill_weight > 0
        target_tokens = sum(b.tgt_tokens for b in batches)
        # Mean over sub-networks, so the loss scale (and so clipping) is the same in every mode.
        scale = 1.0 / (target_tokens * len(subnets))
        losses, nlls = [0.0] * len(subnets), [0.0] * len(subnets)
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
                losses[i] += loss.item()
                nlls[i] += nll.item()
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
        return {
            'loss': [x / target_tokens for x in losses],
            'nll': [x / target_tokens for x in nlls],
            'subnets': [s.key() for s in subnets],
            'tokens': sum(b.src_tokens + b.tgt_tokens for b in batches),
        }

    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type='cuda', dtype=torch.bfloat16)
        return nullcontext()

    # -- validation --------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self):
        """Validation NLL per token (all pairs) and greedy BLEU (subset), largest and smallest."""
        model, space = self.model, self.model.space
        model.eval()
        results = {}
        for name, subnet in (('largest', space.largest()), ('smallest', space.smallest())):
            model.set_subnet(subnet)
            results[name] = {'valid_nll': self._valid_nll()}
            bleu = self._valid_bleu()
            if bleu is not None:
                results[name]['bleu'] = bleu
        model.train()
        return results

    def _valid_nll(self):
        if not self.valid_pairs:
            return None
        batcher = TokenBatcher(self.valid_pairs, self.config.max_tokens, self.model.pad_id,
                               self.model.bos_id, self.model.eos_id)
        total, tokens = 0.0, 0
        for indices in batcher.epoch_batches(0):
            batch = batcher.collate(indices).to(self.device)
            lprobs = F.log_softmax(self.model(batch.src, batch.tgt_input).float(), dim=-1)
            total += label_smoothed_nll_loss(lprobs, batch.tgt_output, 0.0,
                                             self.model.pad_id)[1].item()
            tokens += batch.tgt_tokens
        return total / tokens

    def _valid_bleu(self):
        count = min(self.config.valid_sentences, len(self.valid_pairs))
        if not count or self.detokenize is None or self.valid_references is None:
            return None
        import sacrebleu
        sources = [self.valid_pairs[i][0] for i in range(count)]
        order = sorted(range(count), key=lambda i: len(sources[i]))  # less padding
        hypotheses = [None] * count
        for start in range(0, count, 64):
            chunk = order[start:start + 64]
            src = encode_sources([sources[i] for i in chunk], self.model.pad_id,
                                 self.model.eos_id).to(self.device)
            outputs = greedy_decode(self.model, src, self.config.max_len_a,
                                    self.config.max_len_b)
            for i, ids in zip(chunk, outputs, strict=True):
                hypotheses[i] = self.detokenize(ids)
        return sacrebleu.corpus_bleu(hypotheses, [list(self.valid_references[:count])]).score

    # -- checkpoints ---------------------------------------------------------------

    @property
    def checkpoint_path(self):
        return self.run_dir / CHECKPOINT_NAME

    def save_checkpoint(self):
        if self.rank != 0:
            return
        progress = {
            'step': self.step, 'epoch': self.epoch, 'step_in_epoch': self.step_in_epoch,
            'sampler': self.sampler.getstate(), 'best_valid': self.best_valid,
            'history': self.history, 'accum': self.config.accum,
            'world_size': self.world_size, 'config': self.config.to_dict(),
        }
        save_training_state(self.checkpoint_path, self.model, self.optimizer, self.scheduler,
                            progress)

    def resume(self, path=None):
        path = Path(path) if path is not None else self.checkpoint_path
        progress = load_training_state(path, self.model, self.optimizer, self.scheduler)
        for name, ours in (('accum', self.config.accum), ('world_size', self.world_size)):
            if progress[name] != ours:
                raise ValueError(f'{path}: saved with {name}={progress[name]}, now {ours}; '
                                 'the epoch could not be replayed')
        version, internal, gauss = progress['sampler']
        self.sampler.setstate((version, tuple(internal), gauss))
        self.step, self.epoch = progress['step'], progress['epoch']
        self.step_in_epoch = progress['step_in_epoch']
        self.best_valid, self.history = progress['best_valid'], progress['history']

    # -- the loop --------------------------------------------------------------------

    def fit(self):
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / 'log.jsonl', 'a') if self.rank == 0 else None
        try:
            while self.epoch < cfg.epochs:
                if self._train_epoch(log):
                    break  # max_steps reached
                self._end_epoch(log)
        finally:
            if log is not None:
                log.close()
        return TrainSummary(self.step, self.epoch, self.history)

    def _train_epoch(self, log):
        """Train the rest of the current epoch; True when ``max_steps`` stopped it."""
        cfg = self.config
        batches = self.batcher.epoch_batches(self.epoch, self.rank, self.world_size)
        steps = len(batches) // cfg.accum
        bar = tqdm(total=steps, initial=self.step_in_epoch, disable=self.rank != 0,
                   desc=f'epoch {self.epoch + 1}/{cfg.epochs}', unit='step', dynamic_ncols=True)
        window = {'tokens': 0, 'seconds': 0.0, 'loss': 0.0, 'steps': 0}
        speed = None
        try:
            for s in range(self.step_in_epoch, steps):
                micro = [self.batcher.collate(indices)
                         for indices in batches[s * cfg.accum:(s + 1) * cfg.accum]]
                start = time.perf_counter()
                stats = self.train_step(micro)
                seconds = time.perf_counter() - start
                self.step_in_epoch = s + 1
                step_speed = stats['tokens'] / seconds
                speed = step_speed if speed is None else 0.9 * speed + 0.1 * step_speed
                window['tokens'] += stats['tokens']
                window['seconds'] += seconds
                window['loss'] += sum(stats['loss']) / len(stats['loss'])
                window['steps'] += 1
                bar.update()
                bar.set_postfix(loss=f'{stats["loss"][0]:.3f}', tok_s=f'{speed:.0f}',
                                lr=f'{self.scheduler.get_last_lr()[0]:.2e}')
                if log is not None and (self.step % cfg.log_every == 0 or self.step == 1):
                    self._log(log, {
                        'step': self.step, 'epoch': self.epoch + 1,
                        'loss': window['loss'] / window['steps'],
                        'loss_per_subnet': stats['loss'], 'nll_per_subnet': stats['nll'],
                        'tokens_per_s': window['tokens'] / window['seconds'],
                        'lr': self.scheduler.get_last_lr()[0]})
                    window = {'tokens': 0, 'seconds': 0.0, 'loss': 0.0, 'steps': 0}
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    self.save_checkpoint()
                    return True
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
        return False

    def _end_epoch(self, log):
        self.epoch += 1
        self.step_in_epoch = 0
        if self.rank == 0:
            results = self.evaluate()
            results.update(epoch=self.epoch, step=self.step)
            self.history.append(results)
            self._log(log, {'valid': results})
            tqdm.write(f'epoch {self.epoch} validation: {json.dumps(results)}')
            nll = results['largest']['valid_nll']
            if nll is not None and nll < self.best_valid:
                self.best_valid = nll
                save_model(self.run_dir / 'model_best.safetensors', self.model,
                           {'step': self.step, 'epoch': self.epoch, 'valid': results})
        self.save_checkpoint()
        if self.world_size > 1:
            torch.distributed.barrier()

    @staticmethod
    def _log(log, record):
        log.write(json.dumps(record) + '\n')
        log.flush()


# -- data and the whole run --------------------------------------------------------


def load_pairs(corpus_dir, split, tokenizer, max_positions):
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
                         desc=f'tokenizing {split}', unit='pair', leave=False):
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


def train(config: TrainConfig) -> TrainSummary:
    """Train a SuperTransformer on the corpus and export it as fp16 safetensors."""
    from dyn_dnn_ros.translation.tokenizer import Tokenizer

    config.validate()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    checkpoint = Path(config.run_dir) / CHECKPOINT_NAME
    if config.resume and not checkpoint.is_file():
        raise ValueError(f'resume: no checkpoint at {checkpoint}')
    if not config.resume and checkpoint.is_file():
        raise ValueError(f'{checkpoint} exists: resume it or choose another run directory')
    rank, world_size, device = _distributed_setup(config.device)
    try:
        torch.manual_seed(config.seed)  # same initial weights everywhere (DDP also broadcasts)
        tokenizer = Tokenizer(config.spm_path)
        space = DesignSpace.from_yaml(config.space_path)
        train_pairs, _ = load_pairs(config.corpus_dir, 'train', tokenizer, space.max_positions)
        valid_pairs, references = load_pairs(config.corpus_dir, 'valid', tokenizer,
                                             space.max_positions)
        if not train_pairs:
            raise ValueError(f'no usable training pairs in {config.corpus_dir}')
        model = SuperTransformer(space, tokenizer.vocab_size, tokenizer.pad_id,
                                 tokenizer.bos_id, tokenizer.eos_id, dropout=config.dropout)
        if config.init_from is not None and not config.resume:
            # Weights only: a fresh optimiser and schedule continue training a
            # shipped model when its run folder (optimiser state) is gone.
            from dyn_dnn_ros.translation.checkpoint import load_model
            initial = load_model(config.init_from)
            if initial.space != space or initial.vocab_size != model.vocab_size:
                raise ValueError(f'init_from: {config.init_from} has another design space '
                                 'or vocabulary than this run')
            model.load_state_dict(initial.state_dict())
        trainer = Trainer(config, model, train_pairs, valid_pairs, references,
                          tokenizer.decode, device, rank, world_size)
        if config.resume:
            trainer.resume(checkpoint)  # restores rank 0's random state
        if rank > 0 or not config.resume:
            torch.manual_seed(config.seed + 1000 * rank + trainer.step)  # own dropout per rank
        summary = trainer.fit()
        if rank == 0:
            summary.export_path = Path(config.export_path or Path(config.run_dir)
                                       / 'model.safetensors')
            save_model(summary.export_path, model.cpu(), {
                'tokenizer': str(config.spm_path), 'step': summary.step,
                'epoch': summary.epoch, 'mode': config.mode})
        return summary
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()

