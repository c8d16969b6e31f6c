"""Where the design pipeline times sub-networks: the device and its CPU thread counts."""

import torch

from dyn_dnn_ros.resources.cpu import allowed_cpu_count
from dyn_dnn_ros.validation import require_ints

DEVICES = ('cpu', 'cuda')


def check_device(device) -> str:
    if device not in DEVICES:
        raise ValueError(f'device: must be one of {DEVICES}, got {device!r}')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('device: cuda requested but CUDA is not available on this machine')
    return device


def default_threads(device) -> tuple[int, ...]:
    """Every count 1..N on CPU; on CUDA the host threads matter little, so only N."""
    n = allowed_cpu_count()
    return tuple(range(1, n + 1)) if device == 'cpu' else (n,)


def check_thread_counts(threads) -> tuple:
    """``threads`` as a tuple, refused unless it holds integers >= 1 and at least one."""
    return require_ints('threads', threads, 1)
