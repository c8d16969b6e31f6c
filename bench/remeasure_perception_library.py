"""Re-measure the latencies of a perception library's points on this machine.

`dyn-dnn-ros perception dse` measures while it searches; on a busy
machine those numbers are disturbed. This keeps the library's points and
qualities and replaces their measured latency at every thread count 1..N
with a fresh, interleaved measurement (``profiling.measure_latencies_ms``),
e.g. on the robot itself or on an idle development machine. The re-measured
library goes under runs/bench/; ``--out`` naming the ``--library`` file
replaces that one:

    .venv/bin/python bench/remeasure_perception_library.py
"""

import argparse
from dataclasses import replace
import datetime
from pathlib import Path
import sys

from dyn_dnn_ros.operating_points import OperatingPointLibrary
from dyn_dnn_ros.perception.profiling import LatencyConfig, measure_latencies_ms
from dyn_dnn_ros.perception.wenet import GroupConfig, load_model
from dyn_dnn_ros.resources.cpu import allowed_cpu_count
from dyn_dnn_ros.share import library_path, model_path, runs_path

DEFAULT_OUT = runs_path('bench', 'perception_library_remeasured.yaml')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--library', default=str(library_path('perception', 'cpu')),
                        help='library whose points are re-measured (default: %(default)s)')
    parser.add_argument('--model', default=str(model_path('perception', 'wenet')))
    parser.add_argument('--repeats', type=int, default=200)
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT,
                        help='library to write (default: %(default)s); name the --library '
                             'file to replace it')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    library = OperatingPointLibrary.load(args.library)
    model = load_model(args.model).model
    cases = [(model, GroupConfig.from_dict(p.subnet, model.space)) for p in library.points]
    latency = LatencyConfig(warmup=40, repeats=args.repeats, rounds=5)
    threads = range(1, allowed_cpu_count() + 1)
    measured = {t: measure_latencies_ms(cases, t, latency) for t in threads}
    library.points = [replace(p, latency_ms={t: round(measured[t][i], 4) for t in threads})
                      for i, p in enumerate(library.points)]
    # The library's latency record says how its figures were measured: now this way.
    library.meta['latency'] = {
        'batch': 1, 'warmup': latency.warmup, 'repeats': latency.repeats, 'trim': latency.trim,
        'rounds': latency.rounds, 'interleaved': True,
        'command': ' '.join(['python', *sys.argv]),   # no interpreter path of this machine
        'measured': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    library.meta.pop('latency_remeasured', None)
    library.save(args.out)
    for point in library.points:
        print(f'{point.name:4} acc {point.quality:.4f}  ' + '  '.join(
            f'{t} thr {ms:6.3f} ms' for t, ms in sorted(point.latency_ms.items())))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
