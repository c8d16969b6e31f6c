"""How much of this machine our workers can use now: the usable_* and availability fields."""

from dataclasses import dataclass
import math

from dyn_dnn_ros.validation import require_in_interval


@dataclass(frozen=True)
class CapacityConfig:
    """Tuning of :func:`estimate`.

    ``rounding_margin``: usable CPUs within this much of the next whole CPU
    count as it (1.8 CPUs -> 2 threads with the default 0.25).
    ``min_usable_cpus``: floor of ``usable_cpus``; a starved process still
    gets some time slices, and 0 would make every latency infinite.
    """

    rounding_margin: float = 0.25
    min_usable_cpus: float = 0.5

    def __post_init__(self):
        require_in_interval('rounding_margin', self.rounding_margin, '[0, 1)')
        require_in_interval('min_usable_cpus', self.min_usable_cpus, '(0, 1]')


def _or(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def frequency_factor(current_mhz: list[float], max_mhz: list[float]) -> float:
    """Mean of current/max frequency over CPUs where both are known; 1 when none is."""
    ratios = [min(1.0, c / m) for c, m in zip(current_mhz, max_mhz, strict=False)
              if not math.isnan(c) and m > 0]
    return sum(ratios) / len(ratios) if ratios else 1.0


def estimate(snapshot, config: CapacityConfig = CapacityConfig(), freq_scale: float = 1.0):
    """Fill ``usable_cpus``, ``usable_threads`` and ``availability`` of ``snapshot`` in place.

    With A = cpu_count_allowed, Q = cpu_quota, U = cpu_utilization_total and
    P = CPUs used by our own processes (``process_cpus``)::

        other        = max(0, U x A - P)            # load of other programs
        usable_cpus  = max(min_usable_cpus, min(A - other, Q))
        usable_threads = max(1, floor(usable_cpus + rounding_margin))
        availability = clamp(usable_cpus / cpu_count_online
                             x mean(freq_current / freq_max) x freq_scale, 0, 1)

    Unknown U or P count as 0, an absent quota as no limit, unreadable
    frequencies as full speed. The quota caps our own use rather than the
    CPUs other programs load, so it is applied after subtracting their load:
    with 8 CPUs, 5 busy elsewhere and a 2-CPU quota we still get 2.
    A scenario's ``cpus`` override arrives here already folded into A.
    """
    online = snapshot.cpu_count_online if snapshot.cpu_count_online > 0 else 1
    allowed = snapshot.cpu_count_allowed if snapshot.cpu_count_allowed > 0 else online
    other = max(0.0, _or(snapshot.cpu_utilization_total, 0.0) * allowed
                - _or(snapshot.process_cpus, 0.0))
    usable = min(allowed - other, _or(snapshot.cpu_quota, math.inf))
    usable = max(config.min_usable_cpus, usable)
    factor = frequency_factor(snapshot.cpu_freq_current_mhz, snapshot.cpu_freq_max_mhz)
    snapshot.usable_cpus = usable
    snapshot.usable_threads = max(1, math.floor(usable + config.rounding_margin))
    snapshot.availability = min(1.0, max(0.0, usable / online * factor * freq_scale))
    return snapshot
