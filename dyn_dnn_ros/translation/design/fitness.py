"""Fitness of a sub-network in the search: its validation loss, cached per config.

The loss is the teacher-forced negative log-likelihood per target token of
the inherited sub-network (weights as trained, no fine-tuning) on a fixed,
seeded subset of the validation split. It depends on the config alone, not on
the latency constraint, so one cache serves every search of a sweep. HAT
re-evaluates the parents every iteration; here they are looked up.
"""

import json
import math
from pathlib import Path
import random

import torch
import torch.nn.functional as F

from dyn_dnn_ros.files import file_digest, json_digest, write_atomic
from dyn_dnn_ros.translation.batching import TokenBatcher
from dyn_dnn_ros.translation.design_space import SubnetConfig
from dyn_dnn_ros.translation.eval_mode import evaluating
from dyn_dnn_ros.translation.training import label_smoothed_nll_loss, load_pairs
from dyn_dnn_ros.validation import is_finite_number, require_int

CACHE_FORMAT = 'dyn_dnn_ros.fitness_cache/1'


def validation_subset(corpus_dir, tokenizer, count, seed, max_positions):
    """``count`` tokenized (source, target) validation pairs, drawn with ``seed``."""
    require_int('fitness sentences', count, 1)
    pairs, _ = load_pairs(corpus_dir, 'valid', tokenizer, max_positions)
    if len(pairs) < count:
        raise ValueError(f'{corpus_dir}: valid split has {len(pairs)} usable pairs, fewer '
                         f'than the {count} asked for')
    return random.Random(seed).sample(pairs, count)


class ValidationLoss:
    """Teacher-forced NLL per target token of a sub-network on fixed validation pairs."""

    def __init__(self, model, pairs, max_tokens=4096, device='cpu'):
        if not pairs:
            raise ValueError('fitness: need at least one validation pair')
        self.model = model
        batcher = TokenBatcher(list(pairs), max_tokens, model.pad_id, model.bos_id,
                               model.eos_id)
        self.batches = [batcher.collate(i).to(device) for i in batcher.epoch_batches(0)]
        self.tokens = sum(b.tgt_tokens for b in self.batches)

    @torch.no_grad()
    def __call__(self, cfg: SubnetConfig) -> float:
        model = self.model
        model.set_subnet(cfg)
        total = 0.0
        with evaluating(model):
            for batch in self.batches:
                lprobs = F.log_softmax(model(batch.src, batch.tgt_input).float(), dim=-1)
                total += label_smoothed_nll_loss(lprobs, batch.tgt_output, 0.0,
                                                 model.pad_id)[1].item()
        return total / self.tokens


class FitnessCache:
    """Config key -> validation loss, saved as JSON with what produced the losses.

    ``fingerprint`` (model file, subset size and seed, ...) guards against
    reusing losses of another model or subset: a file with a different one is
    refused rather than silently mixed in.
    """

    def __init__(self, path=None, fingerprint=None):
        self.path = Path(path) if path is not None else None
        self.fingerprint = dict(fingerprint or {})
        self.losses = {}
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self):
        try:
            data = json.loads(self.path.read_text(encoding='utf-8'))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f'{self.path}: cannot read fitness cache: {err}') from None
        if not isinstance(data, dict) or data.get('format') != CACHE_FORMAT:
            raise ValueError(f'{self.path}: not a fitness cache (expected format '
                             f'{CACHE_FORMAT!r})')
        if data.get('fingerprint') != self.fingerprint:
            raise ValueError(f'{self.path}: losses were computed with '
                             f'{data.get("fingerprint")}, this run uses {self.fingerprint}; '
                             'use another cache file')
        losses = data.get('losses')
        if not isinstance(losses, dict):
            raise ValueError(f'{self.path}: losses must be a mapping key -> loss')
        for key, loss in losses.items():
            if not is_finite_number(loss) or loss < 0:
                raise ValueError(f'{self.path}: loss of {key} must be a finite number >= 0, '
                                 f'got {loss!r}')
        self.losses = {k: float(v) for k, v in losses.items()}

    def __contains__(self, key):
        return key in self.losses

    def __len__(self):
        return len(self.losses)

    def get(self, key):
        return self.losses.get(key)

    def put(self, key, loss):
        self.losses[key] = float(loss)

    def save(self):
        if self.path is None:
            return
        data = {'format': CACHE_FORMAT, 'fingerprint': self.fingerprint, 'losses': self.losses}
        write_atomic(self.path, json.dumps(data, indent=0, sort_keys=True).encode())


class CachedFitness:
    """``evaluate(cfg)`` looked up by config key; ``calls`` counts real evaluations."""

    def __init__(self, evaluate, cache: FitnessCache | None = None):
        self.evaluate = evaluate
        self.cache = FitnessCache() if cache is None else cache
        self.calls = 0

    def __call__(self, cfg: SubnetConfig) -> float:
        key = cfg.key()
        loss = self.cache.get(key)
        if loss is None:
            loss = float(self.evaluate(cfg))
            if not math.isfinite(loss):
                raise ValueError(f'fitness of {key} is not finite ({loss})')
            self.calls += 1
            self.cache.put(key, loss)
        return loss

    def save(self):
        self.cache.save()


def make_fitness(model, tokenizer, corpus_dir, sentences, seed, cache_path, model_path,
                 device='cpu') -> CachedFitness:
    """The search's cached validation-loss fitness for ``model`` (loaded from ``model_path``)."""
    pairs = validation_subset(corpus_dir, tokenizer, sentences, seed, model.space.max_positions)
    fingerprint = {'model_sha1': file_digest(model_path, 'sha1'), 'sentences': sentences,
                   'seed': seed, 'pairs_sha256': json_digest(pairs)}
    return CachedFitness(ValidationLoss(model, pairs, device=device),
                         FitnessCache(cache_path, fingerprint))
