"""What a training run writes for people: its history (JSON and CSV) and learning curve (PNG).

One record per validation, flat so a spreadsheet opens the CSV as it is:
optimiser step, epoch, tokens seen (source + target, padding excluded, all
ranks), wall and training seconds, training tokens/s since the previous
validation, and per end of the design space its validation NLL and greedy
BLEU.
"""

import csv
import io
import json

from dyn_dnn_ros.files import write_atomic
from dyn_dnn_ros.translation.valid_scoring import ENDS

HISTORY_JSON = 'history.json'
HISTORY_CSV = 'history.csv'
LEARNING_CURVE = 'learning_curve.png'


def validation_record(results, *, step, epoch, tokens_seen, wall_seconds, train_seconds,
                      tokens_per_s, valid_seconds, metric, metric_name, improved):
    record = {'step': step, 'epoch': epoch, 'tokens_seen': tokens_seen,
              'wall_seconds': round(wall_seconds, 1), 'train_seconds': round(train_seconds, 1),
              'tokens_per_s': None if tokens_per_s is None else round(tokens_per_s, 1),
              'valid_seconds': round(valid_seconds, 1)}
    for end in ENDS:
        record[f'{end}_valid_nll'] = results[end]['valid_nll']
        record[f'{end}_bleu'] = results[end]['bleu']
    record.update(metric=metric, metric_name=metric_name, improved=improved)
    return record


def write_history(run_dir, validations, final=None):
    """``history.json`` (validations and the final model) and ``history.csv`` (validations)."""
    write_atomic(run_dir / HISTORY_JSON, json.dumps(
        {'validations': validations, 'final': final}, indent=1).encode())
    if not validations:
        return
    buffer = io.StringIO()
    fields = list(validations[0])
    writer = csv.DictWriter(buffer, fields, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(validations)
    write_atomic(run_dir / HISTORY_CSV, buffer.getvalue().encode())


def plot_learning_curve(path, validations, title):
    """Validation BLEU (or NLL without BLEU) of the largest and smallest vs tokens seen."""
    import matplotlib
    matplotlib.use('Agg')  # files only, never a window
    import matplotlib.pyplot as plt

    from dyn_dnn_ros.translation.design.plots import save_figure

    use_bleu = all(r[f'{end}_bleu'] is not None for r in validations for end in ENDS)
    key, label = ('bleu', 'validation BLEU (greedy)') if use_bleu else (
        'valid_nll', 'validation NLL per token')
    fig, axis = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    tokens = [r['tokens_seen'] / 1e6 for r in validations]
    for end, colour in zip(ENDS, ('tab:blue', 'tab:orange'), strict=True):
        values = [r[f'{end}_{key}'] for r in validations]
        axis.plot(tokens, values, 'o-', ms=3, c=colour, label=f'{end} sub-network')
    best = [r for r in validations if r['improved']]
    if best:
        axis.axvline(best[-1]['tokens_seen'] / 1e6, c='0.5', ls='--', lw=1,
                     label=f'best so far (step {best[-1]["step"]})')
    axis.set_xlabel('tokens seen (millions, source + target)')
    axis.set_ylabel(label)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc='lower right' if use_bleu else 'upper right', fontsize=9)
    save_figure(fig, path)


class StepMeter:
    """Training throughput for the progress bar (smoothed) and the log (per window of steps)."""

    def __init__(self, bar):
        self.bar = bar
        self.speed = None  # tokens/s, exponentially smoothed over steps
        self._reset()

    def _reset(self):
        self.tokens, self.seconds, self.loss, self.steps = 0, 0.0, 0.0, 0

    def step(self, stats, seconds, epoch, lr):
        speed = stats['tokens'] / seconds
        self.speed = speed if self.speed is None else 0.9 * self.speed + 0.1 * speed
        self.tokens += stats['tokens']
        self.seconds += seconds
        self.loss += sum(stats['loss']) / len(stats['loss'])
        self.steps += 1
        self.bar.update()
        self.bar.set_postfix(epoch=epoch, loss=f'{stats["loss"][0]:.3f}',
                             tok_s=f'{self.speed:.0f}', lr=f'{lr:.2e}')

    def window(self):
        """Mean loss and tokens/s since the previous call."""
        record = {'loss': self.loss / self.steps, 'tokens_per_s': self.tokens / self.seconds}
        self._reset()
        return record
