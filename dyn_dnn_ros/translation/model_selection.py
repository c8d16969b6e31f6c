"""Early stopping and checkpoint averaging over validated snapshots of a training run.

Every validation may keep an fp32 snapshot of the weights; only the best
``keep`` (by the validation metric) stay on disk. At the end of training their
element-wise mean is the averaged model, which usually scores a little better
than any one of them (Vaswani et al. average the last checkpoints; the best
ones suit early stopping, where the last ones are the ones that stopped
improving).
"""

from dataclasses import dataclass
import math
from pathlib import Path

import torch

from dyn_dnn_ros.files import atomic_output

SNAPSHOT_FOLDER = 'snapshots'


@dataclass
class EarlyStopping:
    """Stop after ``patience`` validations in a row without a better metric; 0 never stops."""

    patience: int
    best: float = -math.inf
    best_step: int | None = None
    since_best: int = 0

    def update(self, metric, step):
        """Record a validation; True when ``metric`` is the best so far."""
        if metric is not None and metric > self.best:
            self.best, self.best_step, self.since_best = metric, step, 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self):
        return self.patience > 0 and self.since_best >= self.patience

    def state(self):
        return {'best': self.best, 'best_step': self.best_step, 'since_best': self.since_best}

    def load(self, state):
        self.best, self.best_step = state['best'], state['best_step']
        self.since_best = state['since_best']


class SnapshotKeeper:
    """The best ``keep`` validated fp32 snapshots of one run, as files in ``run_dir/snapshots``."""

    def __init__(self, run_dir, keep):
        self.folder = Path(run_dir) / SNAPSHOT_FOLDER
        self.keep = keep
        self.kept = []  # [{'step', 'metric', 'file'}], best first

    def offer(self, model, step, metric):
        """Save ``model``'s weights if they rank among the best ``keep``; True when saved."""
        if metric is None or self.keep < 1:
            return False
        if len(self.kept) >= self.keep and metric <= self.kept[-1]['metric']:
            return False
        name = f'step_{step:08d}.pt'
        with atomic_output(self.folder / name) as tmp:
            torch.save({k: v.detach().to('cpu', torch.float32)
                        for k, v in model.state_dict().items()}, tmp)
        self.kept.append({'step': step, 'metric': metric, 'file': name})
        # Ties keep the earlier snapshot first: fewer steps for the same score.
        self.kept.sort(key=lambda s: (-s['metric'], s['step']))
        for dropped in self.kept[self.keep:]:
            (self.folder / dropped['file']).unlink(missing_ok=True)
        del self.kept[self.keep:]
        return True

    def paths(self):
        return [self.folder / s['file'] for s in self.kept]

    def state(self):
        return [dict(s) for s in self.kept]

    def load(self, state):
        """Restore the list saved by ``state``; return the files that are gone (left out)."""
        kept = [dict(s) for s in state]
        self.kept = [s for s in kept if (self.folder / s['file']).is_file()]
        return [s['file'] for s in kept if s not in self.kept]


def average_state_dicts(paths):
    """Element-wise mean of the fp32 state dicts saved at ``paths``."""
    if not paths:
        raise ValueError('nothing to average')
    total = None
    for path in paths:
        state = torch.load(path, map_location='cpu', weights_only=True)
        if total is None:
            total = {k: v.to(torch.float64) for k, v in state.items()}
        else:
            if state.keys() != total.keys():
                raise ValueError(f'{path}: other tensors than {paths[0]}')
            for k, v in state.items():
                total[k] += v
    return {k: (v / len(paths)).to(torch.float32) for k, v in total.items()}


def export_weights(model, snapshots: SnapshotKeeper, history, evaluate):
    """Load into ``model`` the weights to ship; return their description and validation.

    Two or more snapshots: their average, validated by ``evaluate()`` (the
    validation results of ``model``), unless it scores below the best single
    snapshot, which is then chosen. One: the best validated weights. None
    (no validation data, or ``average=0``): the weights as they are.
    """
    from dyn_dnn_ros.translation.valid_scoring import selection_metric

    paths = snapshots.paths()
    if not paths:
        return 'the last weights', history[-1] if history else None
    best = snapshots.kept[0]
    best_record = next((r for r in history if r['step'] == best['step']), None)
    best_weights = torch.load(paths[0], map_location='cpu', weights_only=True)
    if len(paths) > 1:
        model.load_state_dict(average_state_dicts(paths))
        results = evaluate()
        metric = selection_metric(results)[0]
        if metric is not None and metric >= best['metric']:
            steps = sorted(s['step'] for s in snapshots.kept)
            flat = {f'{end}_{key}': value for end, scores in results.items()
                    for key, value in scores.items()}
            return (f'the average of {len(paths)} best snapshots (steps {steps})',
                    dict(flat, metric=metric))
        print(f'the average of {len(paths)} snapshots validated worse ({metric:.3f}) than the '
              f'best one ({best["metric"]:.3f}); the best one is exported instead')
    model.load_state_dict(best_weights)
    return f'the best validated weights (step {best["step"]})', best_record
