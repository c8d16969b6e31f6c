"""How the package times a network: thread count, warm-up, interleaved rounds, trimmed mean.

The latency dataset of translation and the perception profiler share it:

- the work runs at an explicit PyTorch thread count, restored afterwards;
- a few untimed calls after every switch warm the caches up (the caller
  runs them: what a warm-up is differs per network);
- the timed work of several cases is taken in rounds, each visiting every
  case once, so a slow phase of a shared machine spreads over all cases
  instead of landing on a few;
- the fastest and slowest ``trim`` fraction of a case's timings are dropped
  and the rest averaged.
"""

from contextlib import contextmanager
import math
import random
import statistics
import time

import torch

# Trim fractions a timing accepts: dropping half at each end would leave nothing.
TRIM_INTERVAL = '[0, 0.5)'


@contextmanager
def torch_threads(count):
    """PyTorch runs on ``count`` CPU threads inside the block, as many as before after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synchronizer(device):
    """What a timer calls to wait for ``device``'s queued work; None on the CPU, which has none."""
    device = torch.device(device)
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return None


def timed_call(run, synchronize=None):
    """``run()``'s result and the wall-clock seconds it took.

    ``synchronize`` (see ``synchronizer``) runs before the clock starts and
    before it stops, so queued device work is neither counted twice nor missed.
    """
    if synchronize is not None:
        synchronize()
    start = time.perf_counter()
    result = run()
    if synchronize is not None:
        synchronize()
    return result, time.perf_counter() - start


def round_orders(cases, rounds, shuffled=False):
    """``(round, cases in that round's order)`` for each of ``rounds`` rounds.

    ``shuffled``: each round in its own order, seeded by the round number, so a
    resumed run visits the cases as the interrupted one did.
    """
    for round_ in range(rounds):
        order = list(cases)
        if shuffled:
            random.Random(round_).shuffle(order)
        yield round_, order


def trimmed_stats(samples, trim) -> tuple[float, float, int]:
    """Mean, standard deviation and count of ``samples`` without the extreme ``trim`` fractions."""
    values = sorted(samples)
    if not values:
        raise ValueError('samples: need at least one timing')
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f'samples: timings must be finite and >= 0, got {values}')
    cut = int(len(values) * trim)
    kept = values[cut:len(values) - cut]
    return statistics.fmean(kept), statistics.pstdev(kept), len(kept)
