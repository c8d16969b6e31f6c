"""Operating-point libraries made for different devices, timed on this one.

The Dynamic-DNN poster's advice, "GPUs prefer shallow and wide, CPUs deep
and narrow: sample separately", measured: every point (sub-network and beam)
of each library is timed here with the latency dataset's protocol, all
libraries in the same rounds (one set of rounds per beam width) and on one
drift-probe scale. Printed per point: the BLEU its library recorded, its
latency on its own device and here. Then, per library, how many of its
points another library's points dominate here (as fast or faster, and as
good or better BLEU). The library made for this device should lose few, the
other many. Writes a PNG of BLEU against latency here (under runs/bench/
unless ``--plot`` names another path). Timings are kept in the run folder, so
a rerun resumes.

    .venv/bin/python bench/cross_device.py --device cpu
    PYTHONPATH=. python3 bench/cross_device.py --device cuda   # on a GPU machine
"""

import argparse
import json
from pathlib import Path
import sys
import time

from dyn_dnn_ros.operating_points import load_timed_libraries
from dyn_dnn_ros.share import data_path, library_path, runs_path
from dyn_dnn_ros.translation.design.devices import check_device, default_threads
from dyn_dnn_ros.translation.design.latency_dataset import load_model_and_tokenizer, measure_pairs
from dyn_dnn_ros.translation.design.pareto import dominated, pareto_front
from dyn_dnn_ros.translation.design.timing_protocol import LatencyProtocol
from dyn_dnn_ros.translation.design.workload import load_workload
from dyn_dnn_ros.translation.design_space import SubnetConfig

PLOT_DIR = runs_path('bench')
COLOURS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--library', type=Path, nargs='+',
                        default=[library_path('translation', 'cpu', 'torch'),
                                 library_path('translation', 'cuda')],
                        help='libraries to time here (default: %(default)s)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (default: all usable ones)')
    parser.add_argument('--run-dir', type=Path, default=runs_path('cross_device'))
    parser.add_argument('--corpus-dir', type=Path, default=data_path('corpus'))
    parser.add_argument('--plot', type=Path, default=None,
                        help=f'PNG to write (default: {PLOT_DIR}/cross_device_DEVICE.png; '
                             'the shipped one: docs/cross_device_DEVICE.png)')
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads: must be >= 1, got {args.threads}')
    return args


def default_plot(device) -> Path:
    return PLOT_DIR / f'cross_device_{device}.png'


def losses_here(entries) -> dict:
    """Per library, its points that a point of another library dominates here.

    ``entries``: (library index, point, latency here) triples; quality is the
    library's BLEU, so higher is better.
    """
    lost = {}
    for index, point, ms in entries:
        others = [(o_ms, -o.quality) for o_index, o, o_ms in entries if o_index != index]
        if dominated((ms, -point.quality), others):
            lost.setdefault(index, []).append(point.name)
    return lost


def plot(path, libraries, entries, device, threads):
    import matplotlib
    matplotlib.use('Agg')  # files only, never a window
    import matplotlib.pyplot as plt

    from dyn_dnn_ros.translation.design.plots import save_figure
    fig, axis = plt.subplots(figsize=(7.5, 5), constrained_layout=True)
    for index, library in enumerate(libraries):
        colour = COLOURS[index % len(COLOURS)]
        points = [(ms, p.quality) for i, p, ms in entries if i == index]
        axis.scatter(*zip(*points, strict=True), s=22, c=colour,
                     label=f'library made on {library.device} ({len(points)} points)')
        front = pareto_front(points, lambda q: q[0], lambda q: q[1])
        axis.step(*zip(*front, strict=True), where='post', c=colour, alpha=0.6,
                  label=f'its front here ({len(front)} points)')
    axis.set_xlabel(f'latency on {device}, {threads} thread(s) (ms per sentence)')
    axis.set_ylabel('BLEU (as recorded by each library)')
    axis.set_title(f'Operating-point libraries timed on {device}')
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(fig, path)


def main(argv=None):
    args = parse_args(argv)
    began = time.perf_counter()
    device = check_device(args.device)
    threads = args.threads or default_threads(device)[-1]
    protocol = LatencyProtocol()
    try:
        libraries = load_timed_libraries(args.library, protocol.workload)
    except ValueError as err:
        sys.exit(str(err))
    model, tokenizer = load_model_and_tokenizer(None, None, device)
    workload = load_workload(args.corpus_dir, tokenizer, protocol.sentences,
                             protocol.sentence_seed, model.space.max_positions)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    by_beam = {}
    for index, library in enumerate(libraries):
        for point in library.points:
            key = json.dumps(point.beam.to_dict(), sort_keys=True)
            by_beam.setdefault(key, (point.beam, []))[1].append((index, point))
    entries = []
    for number, (beam, points) in enumerate(by_beam.values()):
        configs = [SubnetConfig.from_dict(p.subnet) for _, p in points]
        rows = measure_pairs(model, [(cfg, threads) for cfg in configs], workload, protocol,
                             args.run_dir / f'{device}_beam{number}.csv', device, beam,
                             desc=f'timing {beam.describe()}',
                             samples_path=args.run_dir / f'{device}.samples.jsonl')
        entries += [(i, p, row.latency_ms) for (i, p), row in zip(points, rows, strict=True)]

    print(f'{"library":<8} {"point":<12} {"beam":<15} {"BLEU":>6} {"own ms":>8} '
          f'{"here ms":>8}  (own: the library\'s device, its ranking thread count; here: '
          f'{device}, {threads} thread(s))')
    for index, point, ms in entries:
        library = libraries[index]
        own = point.latency_ms[int(library.meta['rank_threads'])]
        print(f'{library.device:<8} {point.name:<12} {point.beam.describe():<15} '
              f'{point.quality:6.2f} {own:8.2f} {ms:8.2f}')
    lost = losses_here(entries)
    for index, library in enumerate(libraries):
        names = lost.get(index, [])
        print(f'{args.library[index].name}: {len(names)} of {len(library.points)} points '
              f'dominated here by another library\'s' + (f' ({", ".join(names)})' if names
                                                           else ''))
    path = args.plot or default_plot(device)
    plot(path, libraries, entries, device, threads)
    print(f'wrote {path} in {time.perf_counter() - began:.0f} s')


if __name__ == '__main__':
    main()
