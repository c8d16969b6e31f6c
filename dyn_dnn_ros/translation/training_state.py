"""Stopping and resuming a training run: signals, and what must not change on resume.

A resumed run replays the rest of an epoch from its seed, so it is the same
run only with the same data and the same settings that shape the trajectory
(batches, sub-networks, optimiser, schedule, validation cadence). Settings
that only say when to stop or how to report (epochs, step and time limits,
patience, device, threads, checkpoint cadence) may change between runs.
"""

from contextlib import contextmanager
import signal
import threading
import zlib

# TrainConfig fields that must match the checkpoint's for a resume to continue the same run.
# accum is not one: accum x ranks must match (the trainer checks), so a run of two ranks
# continues in one process with twice the accumulation.
TRAJECTORY_FIELDS = (
    'mode', 'random_subnets', 'distill_weight', 'max_tokens', 'lr', 'warmup', 'betas',
    'weight_decay', 'clip_norm', 'label_smoothing', 'dropout', 'seed', 'valid_every',
    'valid_sentences', 'average')
STATE_FORMAT = 'dyn_dnn_ros.training/2'


def data_fingerprint(pairs):
    """Count and CRC-32 of tokenized pairs: a resume on other data would replay wrong batches."""
    crc = 0
    for src, tgt in pairs:
        crc = zlib.crc32(repr((src, tgt)).encode(), crc)
    return {'pairs': len(pairs), 'crc32': crc}


def resume_mismatches(saved_config, config_dict, saved_data, data):
    """Human-readable differences that forbid continuing the saved run."""
    problems = []
    for name in TRAJECTORY_FIELDS:
        theirs, ours = saved_config.get(name), config_dict.get(name)
        if isinstance(theirs, (list, tuple)) and isinstance(ours, (list, tuple)):
            theirs, ours = list(theirs), list(ours)
        if theirs != ours:
            problems.append(f'{name}: checkpoint {theirs!r}, now {ours!r}')
    if saved_data != data:
        problems.append(f'training data: checkpoint {saved_data}, now {data}')
    return problems


class StopSignals:
    """SIGINT and SIGTERM ask for a clean stop; a second SIGINT interrupts at once.

    Installed only from the main thread (Python delivers signals there); in
    any other thread the handlers stay as they are and nothing is requested.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None  # the signal's name once one arrived
        self._previous = {}

    def _handle(self, number, frame):
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name

    @contextmanager
    def installed(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._previous.clear()
