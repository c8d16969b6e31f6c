"""What a group configuration costs: multiply-accumulates, active parameters, latency.

MACs are counted analytically from each conv/linear layer's shape and group
count (spatial sizes come from one traced forward pass). Latency is measured
with the package's timing protocol (``dyn_dnn_ros/timing.py``): batch 1,
warm-up, repeat in interleaved rounds, drop the fastest and slowest ``trim``
fraction and average the rest, at an explicit CPU thread count.
"""

from dataclasses import dataclass
from functools import partial
import random
import time

import torch
from torch import nn

from dyn_dnn_ros.perception.weight_enabling import GroupConv2d, GroupLinear, SwitchableBatchNorm
from dyn_dnn_ros.timing import (
    TRIM_INTERVAL,
    round_orders,
    timed_call,
    torch_threads,
    trimmed_stats,
)
from dyn_dnn_ros.validation import require_in_interval, require_int


@dataclass(frozen=True)
class LatencyConfig:
    warmup: int = 20
    repeats: int = 100
    trim: float = 0.1  # fraction dropped at each end
    rounds: int = 5    # measurements of several configs interleave in this many rounds

    def __post_init__(self):
        require_int('latency.warmup', self.warmup, 0)
        require_int('latency.repeats', self.repeats, 1)
        require_int('latency.rounds', self.rounds, 1)
        if self.rounds > self.repeats:
            raise ValueError(f'latency.rounds: {self.rounds} must not exceed repeats '
                             f'{self.repeats}')
        require_in_interval('latency.trim', self.trim, TRIM_INTERVAL)


def _conv_macs(layer, output):
    kernel = layer.kernel_size
    kernel = kernel[0] * kernel[1] if isinstance(kernel, tuple) else kernel * kernel
    return output[0].numel() * layer.in_channels // layer.groups * kernel


def count_macs(model, config):
    """Multiply-accumulates of one image through ``model`` under group ``config``."""
    model.set_groups(config)
    total = 0

    def hook(layer, _inputs, output):
        nonlocal total
        if isinstance(layer, (GroupConv2d, nn.Conv2d)):
            total += _conv_macs(layer, output)
        elif isinstance(layer, GroupLinear):
            total += layer.out_channels * layer.in_channels // layer.groups
        else:
            total += layer.out_features * layer.in_features

    kinds = (GroupConv2d, GroupLinear, nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    size = model.config.input_size
    try:
        with torch.inference_mode():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, model.config.in_channels, size, size))
            model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total


def count_active_params(model, config):
    """Parameters a sub-network uses: enabled blocks and its own batch norms only."""
    model.set_groups(config)
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, (GroupConv2d, GroupLinear)):
            total -= module.weight.numel() - module.weight.numel() // module.groups
        elif isinstance(module, SwitchableBatchNorm):
            total -= sum(p.numel() for norm in module.norms.values()
                         if norm is not module.active() for p in norm.parameters())
    return total


def measure_latency_ms(model, config, threads, latency=LatencyConfig()):
    """Trimmed-mean wall time of one batch-1 forward pass with ``threads`` CPU threads."""
    return measure_latencies_ms([(model, config)], threads, latency)[0]


def measure_latencies_ms(cases, threads, latency=LatencyConfig()):
    """Latency of several (model, group config) cases, measured interleaved.

    Each round runs every case in turn (``warmup / rounds`` untimed passes
    after switching, then ``repeats / rounds`` timed ones), so a busy spell on
    a shared machine slows all of them alike rather than whichever ran then.
    """
    require_int('threads', threads, 1)
    warmup = -(-latency.warmup // latency.rounds)
    timed = -(-latency.repeats // latency.rounds)
    times = [[] for _ in cases]
    with torch_threads(threads), torch.inference_mode():
        for _, order in round_orders(list(zip(cases, times, strict=True)), latency.rounds):
            for (model, config), case_times in order:
                model.eval()
                model.set_groups(config)
                size = model.config.input_size
                x = torch.randn(1, model.config.in_channels, size, size)
                for _ in range(warmup):
                    model(x)
                for _ in range(timed):
                    case_times.append(timed_call(partial(model, x))[1])
    return [trimmed_stats(t, latency.trim)[0] * 1e3 for t in times]


def measure_switching_us(model, count=1000, seed=0):
    """Percentiles of ``model.set_groups`` over random configs, in microseconds.

    Wall-clock time includes any moment the OS scheduled the thread away (on
    a busy machine that sets the tail); thread CPU time is the switch's own cost.
    """
    rng = random.Random(seed)
    configs = [model.space.random(rng) for _ in range(count)]
    wall, cpu = [], []
    for config in configs:
        wall_start, cpu_start = time.perf_counter_ns(), time.thread_time_ns()
        model.set_groups(config)
        cpu.append((time.thread_time_ns() - cpu_start) / 1e3)
        wall.append((time.perf_counter_ns() - wall_start) / 1e3)
    wall.sort()
    cpu.sort()

    def percentile(values, q):
        return values[min(len(values) - 1, int(len(values) * q))]

    return {'p50': percentile(wall, 0.5), 'p99': percentile(wall, 0.99), 'max': wall[-1],
            'cpu_p50': percentile(cpu, 0.5), 'cpu_p99': percentile(cpu, 0.99), 'count': count}
