"""How the latency dataset times one sub-network: its settings, one sample and the result.

A *sample* is the mean time per sentence of one pass over the workload's K
sentences, after ``warmup`` untimed translations (every sample follows a
sub-network switch, as at run time). A (config, thread count) gets
``repeats`` samples, one per round; the fastest and slowest ``trim``
fraction of them are dropped and the rest averaged (the paper's trimmed
mean, ``dyn_dnn_ros.timing.trimmed_stats``). ``mode`` says how long each
sentence is decoded (``measured_decoding``); ``reference_every`` how often
the drift probe runs (``sample_log``).
"""

from dataclasses import dataclass

from dyn_dnn_ros.timing import TRIM_INTERVAL
from dyn_dnn_ros.validation import require_in_interval, require_int

MODES = ('reference', 'eos', 'fixed')


@dataclass(frozen=True)
class LatencyProtocol:
    beam: int = 5  # deployment beam width
    sentences: int = 3  # K: fixed validation sentences per sample
    sentence_seed: int = 0
    warmup: int = 1  # untimed translations of one workload sentence before every sample
    repeats: int = 10  # R: samples per (config, thread count), one per round
    trim: float = 0.1  # fraction of the samples dropped at each end
    # 'reference': reference-length decoding; 'eos': the model decides the length;
    # 'fixed': fixed_length steps with EOS banned (the paper)
    mode: str = 'reference'
    fixed_length: int = 30
    reference_every: int = 10  # drift probe after this many samples of a thread count; 0: off

    def __post_init__(self):
        for name, low in (('beam', 1), ('sentences', 1), ('warmup', 0), ('repeats', 1),
                          ('fixed_length', 1), ('reference_every', 0)):
            require_int(f'latency.{name}', getattr(self, name), low)
        require_in_interval('latency.trim', self.trim, TRIM_INTERVAL)
        if self.mode not in MODES:
            raise ValueError(f'latency.mode: must be one of {MODES}, got {self.mode!r}')

    @property
    def workload(self) -> str:
        """What was timed and how, as recorded in the CSV: rows of one file must agree on it."""
        length = {'reference': 'ref', 'eos': 'eos'}.get(self.mode, f'fixed{self.fixed_length}')
        drift = f'-probe{self.reference_every}' if self.reference_every else ''
        return f'{length}-k{self.sentences}-seed{self.sentence_seed}{drift}'


@dataclass(frozen=True)
class Sample:
    ms: float  # mean time per sentence of one pass over the workload
    steps: float  # mean decoder steps per sentence


@dataclass(frozen=True)
class Timing:
    latency_ms: float  # trimmed mean time per sentence
    std_ms: float
    n: int  # samples kept
    decoder_steps: float  # mean decoder steps per sentence
