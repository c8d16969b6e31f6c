"""Design-space exploration of WeNet (Algorithm 2 of the WeNet paper).

Start from the full network. Each iteration splits one layer one step
further (1 -> 2 -> 4 -> 8 -> 16 groups): every layer is tried in turn, each
candidate's latency ``t`` and validation accuracy ``a`` are measured, and the
candidate with the smallest ``t / a`` is kept, until the best candidate's
accuracy falls below a threshold. The Pareto set of everything visited
(latency vs accuracy) becomes the perception operating-point library.

Each candidate's batch-norm statistics are calibrated on the training split
before its accuracy is measured (``calibrate``): the per-pattern statistics
alone lose tens of points of accuracy on this model (the training summary in
the model's YAML lists both for the uniform widths). The calibrations of
the library points are saved with the model, so switching to a point
switches its statistics too.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path
import shutil
import time

import torch
from tqdm import tqdm

from dyn_dnn_ros.operating_points import OperatingPoint, OperatingPointLibrary
from dyn_dnn_ros.perception.datasets import DataConfig, load_dataset
from dyn_dnn_ros.perception.profiling import (
    LatencyConfig,
    count_active_params,
    count_macs,
    measure_latencies_ms,
    measure_switching_us,
)
from dyn_dnn_ros.perception.training import calibrate, evaluate
from dyn_dnn_ros.perception.wenet import (
    META_FILE,
    WEIGHTS_FILE,
    load_model,
    save_calibrations,
)
from dyn_dnn_ros.resources.hardware import hardware_description
from dyn_dnn_ros.share import portable_path
from dyn_dnn_ros.validation import require_in_interval, require_int, require_ints

UNIFORM_GROUPS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class DSEConfig:
    threshold: float = 0.93        # minimum validation accuracy of an accepted step
    search_threads: int = 1
    library_threads: tuple = (1, 2)
    latency: LatencyConfig = LatencyConfig()
    max_points: int = 8
    calibrate: bool = True         # exact batch-norm statistics per visited configuration
    calibration_images: int = 0    # how many training images calibrate; 0: all

    def __post_init__(self):
        require_in_interval('dse.threshold', self.threshold, '[0, 1]', noun='an accuracy')
        require_int('dse.search_threads', self.search_threads, 1)
        require_ints('dse.library_threads', self.library_threads, 1)
        if self.search_threads not in self.library_threads:
            raise ValueError(f'dse.search_threads: {self.search_threads} must be one of '
                             f'library_threads {self.library_threads}, so plots compare '
                             'like with like')
        require_int('dse.calibration_images', self.calibration_images, 0)
        require_int('dse.max_points', self.max_points, 2)

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ValueError(f'dse: expected a mapping, got {data!r}')
        data = dict(data)
        latency = {k: data.pop(k) for k in ('warmup', 'repeats', 'trim', 'rounds') if k in data}
        unknown = set(data) - {'threshold', 'search_threads', 'library_threads', 'max_points',
                               'calibrate', 'calibration_images'}
        if unknown:
            raise ValueError(f'dse: unknown field(s) {sorted(unknown)}')
        if 'library_threads' in data:
            data['library_threads'] = tuple(data['library_threads'])
        return cls(latency=LatencyConfig(**latency), **data)


@dataclass
class DSEPoint:
    groups: object          # GroupConfig
    latency_ms: float       # at DSEConfig.search_threads
    val_accuracy: float
    macs: int
    iteration: int
    chosen: bool = False
    test_accuracy: float = math.nan


@dataclass
class DSEResult:
    visited: list = field(default_factory=list)      # every measured config, in order
    trajectory: list = field(default_factory=list)   # the accepted steps, full network first


def _measure(model, candidates, val, config, iteration, calibration):
    """Latency (interleaved), validation accuracy and MACs of each candidate."""
    for groups in candidates:
        if calibration is not None and groups.key() not in model.calibrations:
            calibrate(model, groups, calibration)
    latencies = measure_latencies_ms([(model, c) for c in candidates], config.search_threads,
                                     config.latency)
    return [DSEPoint(groups, latency, evaluate(model, groups, val), count_macs(model, groups),
                     iteration) for groups, latency in zip(candidates, latencies, strict=True)]


def _efficiency(point):
    """The paper's selection criterion t / a (lower is better)."""
    return point.latency_ms / max(point.val_accuracy, 1e-9)


def greedy_search(model, val, config, calibration=None, progress=True):
    """Run Algorithm 2 on ``model`` with validation split ``val``.

    ``calibration``: training images to calibrate each candidate's batch-norm
    statistics on (None: use the per-pattern statistics as they are).
    """
    space = model.space
    current = _measure(model, [space.full()], val, config, 0, calibration)[0]
    current.chosen = True
    result = DSEResult([current], [current])
    most_steps = sum(len(c) - 1 for c in space.choices)
    with tqdm(total=most_steps, desc='wenet-dse', unit='step', disable=not progress,
              dynamic_ncols=True) as bar:
        for iteration in range(1, most_steps + 1):
            candidates = [space.step_up(current.groups, i) for i in range(len(space.layers))]
            points = _measure(model, [c for c in candidates if c is not None], val, config,
                              iteration, calibration)
            result.visited.extend(points)
            best = min(points, key=_efficiency)
            if best.val_accuracy < config.threshold:
                break
            best.chosen = True
            result.trajectory.append(best)
            current = best
            bar.update()
            bar.set_postfix(ms=f'{best.latency_ms:.2f}', acc=f'{best.val_accuracy:.3f}',
                            mmacs=f'{best.macs / 1e6:.1f}')
    return result


def pareto_front(points):
    """Points no other point beats on both latency (lower) and accuracy (higher)."""
    front = []
    for p in sorted(points, key=lambda p: (p.latency_ms, -p.val_accuracy)):
        if not front or p.val_accuracy > front[-1].val_accuracy:
            front.append(p)
    return front[::-1]  # most accurate (slowest) first


def faster_steps(trajectory):
    """The trajectory points that are faster than every point before them."""
    kept = []
    for point in trajectory:
        if not kept or point.latency_ms < kept[-1].latency_ms:
            kept.append(point)
    return kept


def thin(points, count):
    """At most ``count`` points, spread evenly over the latency range, both ends kept."""
    if len(points) <= count:
        return list(points)
    slowest = max(p.latency_ms for p in points)
    fastest = min(p.latency_ms for p in points)
    picks = set()
    for i in range(count):
        target = slowest + (fastest - slowest) * i / (count - 1)
        picks.add(min(range(len(points)), key=lambda j: abs(points[j].latency_ms - target)))
    return [points[j] for j in sorted(picks)]


def library_points(result, count):
    """Operating points from a search: its trajectory, monotone in latency, thinned.

    Algorithm 2's accepted steps are its answer. The Pareto set of all visited
    points is kept as well, but on a task this easy validation accuracy is
    flat within its noise (one image of 270 is 0.4 points), and the set then
    collapses to a handful of configurations that happened to score high.
    """
    return thin(faster_steps(result.trajectory), count)


def build_library(model, points, val, test, config, meta):
    """Re-measure ``points`` at every library thread count and test them."""
    full_macs = count_macs(model, model.space.full())
    cases = [(model, p.groups) for p in points]
    latencies = {t: measure_latencies_ms(cases, t, config.latency)
                 for t in config.library_threads}
    library_points = []
    for index, point in enumerate(points):
        groups = point.groups
        latency = {t: round(latencies[t][index], 4) for t in config.library_threads}
        point.test_accuracy = evaluate(model, groups, test)
        library_points.append(OperatingPoint(
            name=f'pe_cpu_{_letter(index)}', target='perception', subnet=groups.to_dict(),
            latency_ms=latency, quality=point.test_accuracy, predicted_latency_ms=math.nan,
            metrics={'flops': 2 * point.macs, 'macs': point.macs,
                     'flops_fraction': round(point.macs / full_macs, 4),
                     'val_accuracy': evaluate(model, groups, val),
                     'params_active': count_active_params(model, groups),
                     'key': groups.key()}))
    return OperatingPointLibrary(target='perception', device='cpu', quality_metric='accuracy',
                                 points=library_points, meta=meta)


def _letter(index):
    letters = 'abcdefghijklmnopqrstuvwxyz'
    return letters[index] if index < len(letters) else f'{index}'


def measure_uniform(model, val, test, config, threads=None, calibration=None):
    """The baselines: every layer at the same group count."""
    threads = threads or (config.search_threads,)
    subnets = [model.space.uniform(n) for n in UNIFORM_GROUPS]
    latencies = {t: measure_latencies_ms([(model, s) for s in subnets], t, config.latency)
                 for t in threads}
    rows = []
    for index, (n, groups) in enumerate(zip(UNIFORM_GROUPS, subnets, strict=True)):
        if calibration is not None and groups.key() not in model.calibrations:
            calibrate(model, groups, calibration)
        rows.append({'groups': n, 'macs': count_macs(model, groups),
                     'latency_ms': {t: latencies[t][index] for t in threads},
                     'val_accuracy': evaluate(model, groups, val),
                     'test_accuracy': evaluate(model, groups, test)})
    return rows


def explore(model, val, test, config, calibration=None, progress=True):
    """Search, pick the library points and measure the baselines; returns a summary dict.

    Afterwards the model keeps the calibrations of the trajectory, the library
    points and the uniform baselines only.
    """
    result = greedy_search(model, val, config, calibration, progress)
    for point in result.trajectory:
        point.test_accuracy = evaluate(model, point.groups, test)
    chosen = library_points(result, config.max_points)
    pareto = pareto_front(result.visited)
    switching = measure_switching_us(model)
    meta = {'source': 'dyn-dnn-ros wenet-dse (WeNet Algorithm 2)',
            'host': hardware_description(), 'torch_version': str(torch.__version__),
            'created': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
            'threshold': config.threshold, 'search_threads': config.search_threads,
            'latency': {'batch': 1, 'warmup': config.latency.warmup,
                        'repeats': config.latency.repeats, 'trim': config.latency.trim,
                        'rounds': config.latency.rounds, 'interleaved': True},
            'visited': len(result.visited), 'trajectory': len(result.trajectory),
            'layers': list(model.space.layers),
            'batch_norm': 'calibrated per configuration' if calibration is not None
                          else 'per-pattern statistics'}
    # The library says how it was made; the search's other figures (its front,
    # the uniform baselines, switching times) are results, returned to the
    # command that prints and plots them, not carried in the library.
    library = build_library(model, chosen, val, test, config, meta)
    uniform = measure_uniform(model, val, test, config, config.library_threads, calibration)
    keep = {p.groups.key() for p in result.trajectory + chosen}
    keep |= {model.space.uniform(n).key() for n in UNIFORM_GROUPS}
    model.calibrations = {k: v for k, v in model.calibrations.items() if k in keep}
    return {'result': result, 'library': library, 'uniform': uniform, 'pareto': pareto,
            'switching_us': switching}


def ablation(models, test, config, calibration=None, threads=1):
    """Uniform widths 1/16 .. full of each named model: accuracy and latency.

    Accuracy twice: with the per-pattern batch-norm statistics as trained, and
    calibrated for the configuration (when ``calibration`` images are given).
    """
    widths = sorted(UNIFORM_GROUPS, reverse=True)
    per_pattern = {}
    for n in widths:
        for name, model in models.items():
            groups = model.space.uniform(n)
            model.calibrations.pop(groups.key(), None)
            per_pattern[name, n] = evaluate(model, groups, test)
            if calibration is not None:  # before timing: all cases run the same code
                calibrate(model, groups, calibration)
    cases = [(model, model.space.uniform(n)) for n in widths for model in models.values()]
    latencies = iter(measure_latencies_ms(cases, threads, config.latency))
    rows = []
    for n in widths:
        row = {'groups': n}
        for name, model in models.items():
            groups = model.space.uniform(n)
            row[name] = {'per_pattern': per_pattern[name, n], 'ms': next(latencies),
                         'macs': count_macs(model, groups),
                         'calibrated': (evaluate(model, groups, test)
                                        if calibration is not None else math.nan)}
        rows.append(row)
    return rows


def ablation_markdown(rows, threads=1):
    names = [k for k in rows[0] if k != 'groups']

    def width(row):
        return 'full' if row['groups'] == 1 else f'1/{row["groups"]}'

    def accuracy(cell):
        value = cell['per_pattern'] if math.isnan(cell['calibrated']) else cell['calibrated']
        return f'{100 * value:.1f} %'

    lines = ['## Channel shuffle (cf. WeNet Table II)', '',
             '| width | MMACs | ' + ' | '.join(f'{n}: accuracy | {n}: ms' for n in names) + ' |',
             '|---' * (2 + 2 * len(names)) + '|']
    for row in rows:
        cells = ' | '.join(f'{accuracy(row[n])} | {row[n]["ms"]:.3f}' for n in names)
        lines.append(f'| {width(row)} | {row[names[0]]["macs"] / 1e6:.1f} | {cells} |')
    lines += ['', f'Test accuracy on the 270-image digits test split (batch-norm statistics '
              f'calibrated per configuration); latency: batch 1, {threads} CPU thread(s), '
              'trimmed mean.', '',
              '## Batch-norm statistics: per pattern vs calibrated per configuration', '',
              '| width | ' + ' | '.join(f'{n}: per-pattern | {n}: calibrated' for n in names)
              + ' |', '|---' * (1 + 2 * len(names)) + '|']
    for row in rows:
        cells = ' | '.join(f'{100 * row[n]["per_pattern"]:.1f} % | '
                           f'{100 * row[n]["calibrated"]:.1f} %' for n in names)
        lines.append(f'| {width(row)} | {cells} |')
    lines += ['', 'Per-pattern: the running statistics each (layer, group count) batch norm '
              'collected during training, shared by every sub-network that used that pattern. '
              'Calibrated: recomputed for the whole configuration on the training split.']
    return '\n'.join(lines) + '\n'


def plot_pareto(path, result, library, uniform, threads=1):
    """Accuracy vs latency and vs MACs: DSE trajectory, library points, uniform baselines."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    trajectory = result.trajectory
    for ax, x_of, label in (
            (axes[0], 'latency', f'latency (ms, batch 1, {threads} thread)'),
            (axes[1], 'macs', 'compute (million MACs)')):
        def x(latency, macs, which=x_of):
            return latency if which == 'latency' else macs / 1e6
        ax.plot([x(p.latency_ms, p.macs) for p in trajectory],
                [100 * p.test_accuracy for p in trajectory], '-', color='0.6', lw=1,
                marker='.', label='DSE trajectory')
        ax.plot([x(p.latency_ms[threads], p.metrics['macs']) for p in library.points],
                [100 * p.quality for p in library.points], 'o', color='tab:blue', ms=8,
                label='library points (DSE)')
        for p in library.points:
            ax.annotate(p.name.rsplit('_', 1)[-1], (x(p.latency_ms[threads], p.metrics['macs']),
                                                    100 * p.quality),
                        textcoords='offset points', xytext=(4, 4), fontsize=8,
                        color='tab:blue')
        ax.plot([x(r['latency_ms'][threads], r['macs']) for r in uniform],
                [100 * r['test_accuracy'] for r in uniform], 's--', color='tab:orange',
                label='uniform groups')
        for r in uniform:
            name = 'full' if r['groups'] == 1 else f'1/{r["groups"]}'
            ax.annotate(name, (x(r['latency_ms'][threads], r['macs']),
                               100 * r['test_accuracy']),
                        textcoords='offset points', xytext=(4, -11), fontsize=8,
                        color='tab:orange')
        ax.set_xlabel(label)
        ax.set_ylabel('test accuracy (%)')
        ax.grid(alpha=0.3)
        ax.legend(loc='lower right', fontsize=8)
    axes[1].set_xscale('log')
    fig.suptitle('WeNet on handwritten digits: design-space exploration vs uniform width')
    fig.savefig(path, dpi=120)
    plt.close(fig)


def dataset_of(saved):
    """The data splits a saved model was trained on, checked against its preprocessing."""
    if 'data' not in saved.meta:
        raise ValueError('model meta has no "data" section: which data was it trained on?')
    dataset = load_dataset(DataConfig(**saved.meta['data']))
    if not math.isclose(dataset.preprocess.mean, saved.preprocess.mean, abs_tol=1e-5):
        raise ValueError('the data no longer normalise like the model\'s training data '
                         f'(mean {dataset.preprocess.mean:.5f} vs {saved.preprocess.mean:.5f})')
    return dataset


def _copy_model(model_dir, model_out):
    """Weights and YAML of ``model_dir`` into ``model_out`` (nothing when they are one folder)."""
    model_out.mkdir(parents=True, exist_ok=True)
    if model_out.resolve() == model_dir.resolve():
        return
    for name in (WEIGHTS_FILE, META_FILE):
        shutil.copyfile(model_dir / name, model_out / name)


def run_dse(model_dir, config, library_path, plot_path=None, ablation_dir=None,
            ablation_path=None, progress=True, model_out=None):
    """Explore a trained model, write its library (and plot / ablation table).

    With ``config.calibrate``, the batch-norm calibrations of the points found
    go to ``model_out`` (None: ``model_dir`` itself), which receives a copy of
    the model's weights and YAML when it is another folder; the library names
    that folder, whose calibrations match its points. When ``model_out`` is
    another folder, ``model_dir`` is left as it was.
    """
    model_dir = Path(model_dir)
    model_out = model_dir if model_out is None or not config.calibrate else Path(model_out)
    saved = load_model(model_dir)
    dataset = dataset_of(saved)
    calibration = None
    if config.calibrate:
        calibration = dataset.train.images[:config.calibration_images or None]
    saved.model.calibrations.clear()  # this run's points are calibrated all alike
    previous = torch.get_num_threads()
    # Accuracy passes on one thread too: on a shared machine a second one mostly waits.
    torch.set_num_threads(config.search_threads)
    try:
        summary = explore(saved.model, dataset.val, dataset.test, config, calibration,
                          progress)
        if config.calibrate:
            _copy_model(model_dir, model_out)
            save_calibrations(model_out, saved.model)
        summary['library'].meta['model'] = str(portable_path(model_out))
        summary['library'].save(library_path)
        if plot_path is not None:
            plot_pareto(plot_path, summary['result'], summary['library'], summary['uniform'],
                        config.search_threads)
        if ablation_dir is not None:
            other = load_model(ablation_dir)
            if other.model.config.shuffle == saved.model.config.shuffle:
                raise ValueError(f'ablation: {model_dir} and {ablation_dir} both have '
                                 f'shuffle={saved.model.config.shuffle}')
            if other.preprocess != saved.preprocess:
                raise ValueError(f'ablation: {ablation_dir} was trained on other data than '
                                 f'{model_dir}')
            models = [('shuffle', saved.model), ('no shuffle', other.model)]
            if not saved.model.config.shuffle:
                models.reverse()
            rows = ablation(dict(models), dataset.test, config, calibration,
                            config.search_threads)
            summary['ablation'] = ablation_markdown(rows, config.search_threads)
            if ablation_path is not None:
                ablation_path.parent.mkdir(parents=True, exist_ok=True)
                ablation_path.write_text('# WeNet ablations\n\n' + summary['ablation'],
                                         encoding='utf-8')
    finally:
        torch.set_num_threads(previous)
    return summary
