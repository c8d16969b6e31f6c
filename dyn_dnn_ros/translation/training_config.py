"""Settings of a SuperTransformer training run, in one explicit dataclass."""

from dataclasses import asdict, dataclass
from pathlib import Path

from dyn_dnn_ros.share import config_path, model_path, runs_path
from dyn_dnn_ros.validation import require_in_interval, require_int, require_positive

MODES = ('sandwich', 'random', 'largest')
RESUME_MODES = ('auto', 'require', 'never')


@dataclass
class TrainConfig:
    run_dir: Path = runs_path('train')
    corpus_dir: Path | None = None  # None: where `translation corpus` writes (config/corpus.yaml)
    spm_path: Path = model_path('translation', 'spm.model')
    space_path: Path = config_path('design_space.yaml')
    mode: str = 'sandwich'
    random_subnets: int = 2  # sandwich: sampled sub-networks besides largest and smallest
    distill_weight: float = 0.5  # sandwich: share of the distillation loss for smaller nets
    epochs: int = 30
    max_tokens: int = 4096  # padded tokens per side and micro-batch
    accum: int = 1  # micro-batches per optimiser step (per rank)
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
    resume: str = 'auto'  # auto: continue run_dir's checkpoint if there is one; require; never
    init_from: Path | None = None  # start from these weights (e.g. the shipped fp16 model)
    max_steps: int | None = None  # optimiser steps in all, resumed runs included
    max_minutes: float | None = None  # wall time in all, resumed runs included
    checkpoint_every: int = 1000  # optimiser steps between checkpoints ...
    checkpoint_minutes: float = 10.0  # ... or minutes, whichever comes first
    log_every: int = 50
    valid_every: int = 0  # optimiser steps between validations; 0: at the end of every epoch
    valid_sentences: int = 300  # greedy BLEU subset, spread over the valid split
    patience: int = 5  # validations without a better metric before stopping; 0: never
    average: int = 5  # best validated snapshots averaged into the export; 1: the best; 0: last
    max_len_a: float = 1.5
    max_len_b: int = 10
    export_path: Path | None = None  # default: run_dir/model.safetensors
    progress_bar: bool = True

    def validate(self):
        if self.mode not in MODES:
            raise ValueError(f'mode={self.mode!r} not in {MODES}')
        if self.device not in ('cpu', 'cuda', 'auto'):
            raise ValueError(f'device={self.device!r} not in (cpu, cuda, auto)')
        if self.resume not in RESUME_MODES:
            raise ValueError(f'resume={self.resume!r} not in {RESUME_MODES}')
        for name in ('epochs', 'max_tokens', 'accum', 'checkpoint_every', 'log_every'):
            require_int(name, getattr(self, name), 1)
        for name in ('random_subnets', 'warmup', 'valid_sentences', 'valid_every', 'patience',
                     'average'):
            require_int(name, getattr(self, name), 0)
        require_positive('lr', self.lr)
        require_positive('checkpoint_minutes', self.checkpoint_minutes, 'minutes')
        require_in_interval('distill_weight', self.distill_weight, '[0, 1]')
        for name in ('label_smoothing', 'dropout'):
            require_in_interval(name, getattr(self, name), '[0, 0.99]')
        require_int('threads', self.threads, 1, none_allowed=True)
        require_int('max_steps', self.max_steps, 1, none_allowed=True)
        if self.max_minutes is not None:
            require_positive('max_minutes', self.max_minutes, 'minutes')
        return self

    def to_dict(self):
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

