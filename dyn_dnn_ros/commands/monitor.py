"""``dyn-dnn-ros monitor``: print this machine's resource readings once per period."""

import argparse
import math
import sys
import time

from dyn_dnn_ros.resources import ResourceSampler, SamplerConfig, Scenario

HELP = "print this machine's hardware availability readings"


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected seconds, got {text!r}') from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f'must be a positive number of seconds, got {text}')
    return value


def add_arguments(parser):
    parser.add_argument('--seconds', type=_positive_seconds, default=5.0,
                        help='how long to monitor (default: %(default)s)')
    parser.add_argument('--period', type=_positive_seconds, default=1.0,
                        help='seconds between samples (default: %(default)s)')
    parser.add_argument('--scenario', metavar='FILE',
                        help='YAML file of timed overrides, '
                             'e.g. config/scenarios/core_drop.yaml')


def _number(value, spec='.2f'):
    return '-' if math.isnan(value) else format(value, spec)


def format_readers(status) -> str:
    width = max(len(name) for name in status)
    lines = ['readers:']
    for name, (ok, why) in status.items():
        lines.append(f'  {name:<{width}}  ' + ('ok' if ok else f'unavailable: {why}'))
    return '\n'.join(lines)


HEADER = (f'{"t[s]":>6} {"usable":>6} {"thr":>3} {"util":>5} {"per-cpu util":<16} '
          f'{"mem avail/total MB":>18} {"avail":>5}  {"power":<8} overrides')


def format_sample(t, snap) -> str:
    per_cpu = ' '.join(_number(u) for u in snap.cpu_utilization[:8])
    if len(snap.cpu_utilization) > 8:
        per_cpu += ' ...'
    memory = (f'{_number(snap.memory_available_mb, ".0f")}/'
              f'{_number(snap.memory_total_mb, ".0f")}')
    return (f'{t:6.1f} {_number(snap.usable_cpus):>6} {snap.usable_threads:>3} '
            f'{_number(snap.cpu_utilization_total):>5} {per_cpu:<16} {memory:>18} '
            f'{_number(snap.availability):>5}  {snap.power_mode or "-":<8} '
            f'{", ".join(snap.overrides) or "-"}')


def run(args) -> int:
    try:
        scenario = Scenario.load(args.scenario) if args.scenario else None
    except ValueError as exc:
        print(f'dyn-dnn-ros monitor: {exc}', file=sys.stderr)
        return 2
    with ResourceSampler(SamplerConfig(), scenario=scenario) as sampler:
        snapshot = sampler.sample(sampler.start)
        print(f'host {snapshot.hostname}: {snapshot.cpu_count_online} CPUs online, '
              f'{snapshot.cpu_count_allowed} allowed, quota {_number(snapshot.cpu_quota)}'
              + (f', scenario {scenario.name!r} ({scenario.source})' if scenario else ''))
        print(format_readers(sampler.reader_status()))
        print(HEADER, flush=True)
        count = int(args.seconds / args.period + 1e-9)
        try:
            for k in range(1, count + 1):
                # Sleep to absolute deadlines so printing time does not drift the period.
                time.sleep(max(0.0, sampler.start + k * args.period - time.monotonic()))
                now = time.monotonic()
                print(format_sample(now - sampler.start, sampler.sample(now)), flush=True)
        except KeyboardInterrupt:
            return 130
    return 0
