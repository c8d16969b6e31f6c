"""Which thread loads the model matters: translation latency by thread layout.

The nodes serve inference on one background thread (``InferenceWorker``).
With PyTorch's OpenMP intra-op pool, where the model was loaded changed
multi-threaded inference speed several-fold on a 2-core machine. This runs the
same translations, side by side in fresh interpreters, with:

- ``main``: load and translate on the main thread (the reference);
- ``worker-loads``: load and translate on one worker thread (what the nodes do);
- ``main-loads``: load on the main thread, translate on a worker thread;
- ``two-workers``: like ``worker-loads``, while a second worker thread has
  loaded and run the WeNet model (the one-process bringup) and then idles.

Each layout reports the median and mean latency per sentence of the library's
best translation point at 1 and at all threads, and the ratio to ``main``.

    .venv/bin/python bench/worker_thread.py --sentences 30
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

LAYOUTS = ('main', 'worker-loads', 'main-loads', 'two-workers')


def measure(layout, threads, sentences):
    """Runs in a fresh interpreter; prints one JSON line per thread count."""
    import torch

    from dyn_dnn_ros.operating_points import OperatingPointLibrary
    from dyn_dnn_ros.share import data_path, library_path
    from dyn_dnn_ros.translation.design_space import SubnetConfig
    from dyn_dnn_ros.translation.translator import Translator, read_split

    library = OperatingPointLibrary.load(library_path('translation', 'cpu', 'torch'))
    best = library.by_quality()[0]
    subnet = SubnetConfig.from_dict(best.subnet)
    sources, _ = read_split(data_path('corpus'), 'test', sentences)
    state = {}

    def load():
        state['translator'] = Translator.load()

    def translate():
        translator = state['translator']
        for count in threads:
            torch.set_num_threads(count)
            translator.translate(sources[:3], subnet=subnet, beam=best.beam)  # warm-up
            times = []
            for source in sources:
                began = time.perf_counter()
                translator.translate([source], subnet=subnet, beam=best.beam)
                times.append((time.perf_counter() - began) * 1000.0)
            print(json.dumps({'layout': layout, 'threads': count,
                              'median_ms': statistics.median(times),
                              'mean_ms': statistics.mean(times)}), flush=True)

    def on_thread(*steps):
        thread = threading.Thread(target=lambda: [step() for step in steps])
        thread.start()
        thread.join()

    if layout == 'two-workers':
        def perception():
            from dyn_dnn_ros.perception.wenet import load_model
            from dyn_dnn_ros.share import model_path
            model = load_model(model_path('perception', 'wenet')).model.eval()
            with torch.inference_mode():
                model(torch.zeros(8, 1, 32, 32))
        on_thread(perception)
    if layout == 'main':
        load()
        translate()
    elif layout == 'main-loads':
        load()
        on_thread(translate)
    else:
        on_thread(load, translate)


def main(argv=None):
    from dyn_dnn_ros.resources.cpu import allowed_cpu_count

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sentences', type=int, default=30, help='test sentences per setting')
    parser.add_argument('--threads', type=int, nargs='+', default=None,
                        help='torch thread counts (default: 1 and all usable CPUs)')
    parser.add_argument('--layout', choices=LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = args.threads or sorted({1, allowed_cpu_count()})
    if args.layout:
        measure(args.layout, threads, args.sentences)
        return 0
    rows = []
    for layout in LAYOUTS:
        out = subprocess.run([sys.executable, __file__, '--layout', layout, '--sentences',
                              str(args.sentences), '--threads', *map(str, threads)],
                             capture_output=True, text=True, check=True).stdout
        rows += [json.loads(line) for line in out.splitlines() if line.startswith('{')]
    reference = {r['threads']: r['median_ms'] for r in rows if r['layout'] == 'main'}
    print(f'{"layout":<14} {"threads":>7} {"median ms":>10} {"mean ms":>9} {"x main":>7}')
    for r in rows:
        print(f'{r["layout"]:<14} {r["threads"]:>7} {r["median_ms"]:>10.1f} '
              f'{r["mean_ms"]:>9.1f} {r["median_ms"] / reference[r["threads"]]:>7.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
