"""The sweep's Pareto plot: searched sub-networks against random ones, and the library.

Left: validation loss vs measured latency. BLEU for a thousand random
sub-networks would cost hours, so the random cloud is compared on the
search's own objective (teacher-forced validation loss), against the searched
winners (and the anchors) at the deployment beam. Right: BLEU vs measured latency of every
measured candidate (winners x beam policies), the library's points named.
"""

import io

import matplotlib

matplotlib.use('Agg')  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

from dyn_dnn_ros.files import write_atomic  # noqa: E402
from dyn_dnn_ros.translation.design.pareto import dominated  # noqa: E402


def loss_panel(axis, cloud, searched, unit, searched_label, title, undominated=()):
    """Random sub-networks as a cloud, searched ones as a line: validation loss vs latency.

    ``cloud``, ``searched`` and ``undominated`` are (ms, validation loss) pairs;
    ``undominated`` (random ones no searched one dominates) are ringed.
    """
    if cloud:
        xs, ys = zip(*cloud, strict=True)
        axis.scatter(xs, ys, s=9, c='0.65', alpha=0.7, linewidths=0,
                     label=f'random sub-networks ({len(cloud)}, uniform sampling)')
    if undominated:
        xs, ys = zip(*undominated, strict=True)
        axis.scatter(xs, ys, s=16, facecolors='none', edgecolors='tab:orange',
                     label=f'not dominated ({len(undominated)})')
    if searched:
        xs, ys = zip(*sorted(searched), strict=True)
        axis.plot(xs, ys, 'o-', c='tab:red', ms=5, label=searched_label)
    axis.set_xlabel(unit)
    axis.set_ylabel('validation loss (NLL per token, lower is better)')
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc='upper right', fontsize=9)


def loss_plot(path, cloud, searched, unit, searched_label, title, undominated=()):
    """``loss_panel`` alone, as a PNG written to ``path`` (atomically)."""
    fig, axis = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    loss_panel(axis, cloud, searched, unit, searched_label, title, undominated)
    save_figure(fig, path)


def save_figure(fig, path):
    """Write ``fig`` as a PNG to ``path`` atomically and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=120)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def pareto_plot(path, cloud, candidates, library, deployment, threads, device, front=None):
    """Write the two-panel PNG to ``path`` (atomically).

    ``front``: (ms, validation loss) of the searched sub-networks as timed with the
    cloud; None takes the candidates' own measurements.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
    unit = f'measured latency, ms ({device}, {threads} thread{"s" * (threads != 1)}, batch 1)'

    searched = front if front is not None else [
        (c.latency_ms[threads], c.val_loss) for c in candidates if c.beam == deployment]
    undominated = [p for p in cloud if not dominated(p, searched)]
    loss_panel(left, cloud, searched, unit, 'searched: winners, finalists, the space\'s '
               'smallest and largest', f'Search objective: validation loss '
               f'({deployment.describe()})', undominated)

    others = [c for c in candidates
              if not any(p.metrics.get('key') == c.key and p.beam == c.beam
                         for p in library.points)]
    if others:
        right.scatter([c.latency_ms[threads] for c in others], [c.bleu for c in others],
                      marker='x', c='0.5', s=25, label='measured, not on the front')
    points = sorted(library.points, key=lambda p: p.latency_ms[threads])
    right.plot([p.latency_ms[threads] for p in points], [p.quality for p in points], 'o-',
               c='tab:blue', ms=5, label=f'library ({len(points)} points)')
    for p in points:
        right.annotate(f'{p.name}\n{p.beam.describe() if p.beam else ""}',
                       (p.latency_ms[threads], p.quality), textcoords='offset points',
                       xytext=(4, -10), fontsize=6.5)
    right.set_xlabel(unit)
    right.set_ylabel('BLEU')
    right.set_title('Operating points: measured Pareto front (BLEU)')
    right.grid(alpha=0.3)
    right.legend(loc='best', fontsize=9)

    fig.suptitle('Searched vs random sub-networks: the random cloud is compared on validation '
                 'loss (BLEU of every random sub-network would cost hours); BLEU is measured for '
                 'the searched candidates' if cloud else
                 'Searched sub-networks (no random cloud in this run; '
                 'bench/front_vs_random.py compares one)', fontsize=9)
    save_figure(fig, path)
