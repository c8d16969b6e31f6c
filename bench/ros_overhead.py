"""Request -> result overhead of the running system over DDS, by process setting.

The run-time target is on the time a translation spends outside inference:
request published -> result received, minus the worker's measured latency
(DDS both ways, executor wake-ups, hand-over to the worker thread). The whole
system shares one process, one GIL and, on a small board, the cores the
inference threads use, so process settings may move that time:

- ``default``: as shipped;
- ``gil-0.5ms``: ``sys.setswitchinterval(0.0005)`` (Python's default is 5 ms,
  the longest a woken thread waits for a busy one to yield the GIL);
- ``omp-passive``: ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep at once
  after a parallel region instead of spinning on a core the executor threads
  could use.

Each setting runs in a fresh interpreter, in interleaved rounds so that a
slow minute of the machine hits every setting alike: the demo's system
(resource monitor, translation node, manager, a driver node, one executor
thread each) serves test-split sentences at a steady rate under one budget,
with no resource events. Printed: overhead p10/p50/p90 per setting, pooled
over rounds, and p50 relative to the first setting.

    .venv/bin/python bench/ros_overhead.py --rounds 3 --seconds 20
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

# name -> (extra environment, GIL switch interval in s or None for Python's)
VARIANTS = {
    'default': ({}, None),
    'gil-0.5ms': ({}, 0.0005),
    'omp-passive': ({'OMP_WAIT_POLICY': 'PASSIVE'}, None),
}


def child(variant, seconds, rate_hz, budget_ms):
    """One run in this interpreter; prints the per-request overheads as JSON."""
    from dyn_dnn_ros.demo.plan import DemoPlan, Event
    from dyn_dnn_ros.demo.runner import DemoConfig, default_threads, load_sentences, run_once
    from dyn_dnn_ros.share import data_path, library_path

    interval = VARIANTS[variant][1]
    if interval is not None:
        sys.setswitchinterval(interval)
    plan = DemoPlan(seconds, rate_hz, (Event(0.0, 'budget', budget_ms),))
    config = DemoConfig(plan=plan, library_path=str(library_path('translation', 'cpu')),
                        sentences=load_sentences(data_path('corpus')),
                        threads=default_threads(), namespace='/bench_overhead')
    run = run_once('dynamic', config)
    answered = [r for r in run.results if r.status in ('ok', 'truncated')]
    print(json.dumps({'overhead_ms': [r.response_ms - r.latency_ms for r in answered],
                      'latency_ms': [r.latency_ms for r in answered],
                      'on_time': sum(r.response_ms <= r.budget_ms for r in answered),
                      'sent': len(run.results)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=20.0, help='per run')
    parser.add_argument('--rate', type=float, default=4.0, help='requests per second')
    parser.add_argument('--budget', type=float, default=150.0, help='ms')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS),
                        help='settings to compare (the first is the reference)')
    parser.add_argument('--child', choices=list(VARIANTS), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.seconds, args.rate, args.budget)
        return
    pooled = {name: {'overhead_ms': [], 'latency_ms': [], 'on_time': 0, 'sent': 0}
              for name in args.variants}
    for round_index in range(args.rounds):
        for variant in args.variants:
            env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
                       **VARIANTS[variant][0])
            out = subprocess.run(
                [sys.executable, __file__, '--child', variant, '--seconds', str(args.seconds),
                 '--rate', str(args.rate), '--budget', str(args.budget)],
                capture_output=True, text=True, check=True, env=env)
            data = json.loads(out.stdout.strip().splitlines()[-1])
            for key in ('overhead_ms', 'latency_ms'):
                pooled[variant][key] += data[key]
            pooled[variant]['on_time'] += data['on_time']
            pooled[variant]['sent'] += data['sent']
            print(f'round {round_index + 1}/{args.rounds}, {variant}: overhead p50 '
                  f'{statistics.median(data["overhead_ms"]):.2f} ms over '
                  f'{len(data["overhead_ms"])} results', file=sys.stderr, flush=True)
    reference = statistics.median(pooled[args.variants[0]]['overhead_ms'])
    print(f'{args.rounds} interleaved rounds of {args.seconds:g} s at {args.rate:g} requests/s, '
          f'budget {args.budget:g} ms, {os.cpu_count()} CPUs\n')
    print('| setting | results | overhead p10 | p50 | p90 | p50 / reference | '
          'median latency | on time |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for variant, data in pooled.items():
        overhead = data['overhead_ms']
        print(f'| {variant} | {len(overhead)} | {np.percentile(overhead, 10):.2f} ms | '
              f'{statistics.median(overhead):.2f} ms | {np.percentile(overhead, 90):.2f} ms | '
              f'{statistics.median(overhead) / reference:.2f}x | '
              f'{statistics.median(data["latency_ms"]):.1f} ms | '
              f'{100 * data["on_time"] / max(1, data["sent"]):.1f} % |')


if __name__ == '__main__':
    main()
