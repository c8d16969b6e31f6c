"""The resource sampler: owns the readers and their delta state, returns snapshots."""

from dataclasses import dataclass, field
from pathlib import Path
import socket
import time

from dyn_dnn_ros.resources.capacity import CapacityConfig
from dyn_dnn_ros.resources.cgroup import CgroupQuotaReader
from dyn_dnn_ros.resources.cpu import CpuCountReader, CpuFreqReader, CpuUsageReader
from dyn_dnn_ros.resources.gpu import NvmlReader
from dyn_dnn_ros.resources.jetson import JetsonReader
from dyn_dnn_ros.resources.memory import MemoryReader
from dyn_dnn_ros.resources.power import PowerReader
from dyn_dnn_ros.resources.scenario import apply_overrides
from dyn_dnn_ros.resources.snapshot import ResourceSnapshot
from dyn_dnn_ros.resources.thermal import ThermalReader
from dyn_dnn_ros.validation import require_int

READER_NAMES = ('cpu', 'cgroup', 'cpu_usage', 'cpufreq', 'memory', 'thermal', 'power',
                'nvml', 'jetson')


@dataclass(frozen=True)
class SamplerConfig:
    """Where and what to read.

    ``own_pids``: processes whose CPU use is ours (the inference workers),
    not load from other programs; empty means this process. The first one
    also decides the CPU affinity and cgroup that are read. The roots point
    readers at a fake tree in tests.
    """

    sysfs_root: Path = Path('/sys')
    procfs_root: Path = Path('/proc')
    etc_root: Path = Path('/etc')
    own_pids: tuple[int, ...] = ()
    gpu_index: int = 0
    disabled: tuple[str, ...] = ()
    capacity: CapacityConfig = field(default_factory=CapacityConfig)

    def __post_init__(self):
        for name in self.disabled:
            if name not in READER_NAMES:
                raise ValueError(f'disabled: unknown reader {name!r}; known: '
                                 f'{", ".join(READER_NAMES)}')
        for pid in self.own_pids:
            require_int('own_pids', pid, 1)
        require_int('gpu_index', self.gpu_index, 0)


def default_readers(config: SamplerConfig) -> list:
    """One reader per source, in the order they fill the snapshot."""
    pids = config.own_pids or ('self',)
    readers = [
        CpuCountReader(config.sysfs_root, pid=config.own_pids[0] if config.own_pids else 0),
        CgroupQuotaReader(config.sysfs_root, config.procfs_root, pid=pids[0]),
        CpuUsageReader(config.procfs_root, pids),
        CpuFreqReader(config.sysfs_root),
        MemoryReader(config.procfs_root),
        ThermalReader(config.sysfs_root),
        PowerReader(config.sysfs_root),
        NvmlReader(config.gpu_index),
        JetsonReader(config.etc_root),
    ]
    return [r for r in readers if r.name not in config.disabled]


class ResourceSampler:
    """Reads every source into a :class:`ResourceSnapshot`, with optional scenario overrides.

    Utilisation and energy are deltas, so the constructor takes a first,
    discarded reading at ``now``; a scenario's clock also starts then. A
    reader that raises is listed in ``unavailable`` for that sample and its
    error kept in :meth:`reader_status`. ``usable_cpus``, ``usable_threads``
    and ``availability`` follow :func:`dyn_dnn_ros.resources.capacity.estimate`.
    """

    def __init__(self, config: SamplerConfig = SamplerConfig(), scenario=None, readers=None,
                 now: float | None = None):
        self.config = config
        self.scenario = scenario
        self.readers = default_readers(config) if readers is None else list(readers)
        self.hostname = socket.gethostname()
        self.start = time.monotonic() if now is None else now
        self.sample(self.start)

    def sample(self, now: float | None = None) -> ResourceSnapshot:
        now = time.monotonic() if now is None else now
        snapshot = ResourceSnapshot(hostname=self.hostname, stamp=now)
        for reader in self.readers:
            if not reader.available():
                snapshot.unavailable.append(reader.name)
                continue
            try:
                reader.read(snapshot)
                reader.error = ''
            except Exception as exc:  # one broken source must not stop the others
                reader.error = f'{type(exc).__name__}: {exc}'
                snapshot.unavailable.append(reader.name)
        overrides = self.scenario.overrides_at(now - self.start) if self.scenario else {}
        return apply_overrides(snapshot, overrides, self.config.capacity)

    def set_worker_pids(self, pids) -> None:
        """Count these processes' CPU use as ours too, not other programs' load."""
        for reader in self.readers:
            if isinstance(reader, CpuUsageReader):
                reader.set_worker_pids(pids)

    @property
    def own_pids(self) -> tuple:
        """The processes whose CPU use counts as ours ('self' is this one)."""
        return next((r.pids for r in self.readers if isinstance(r, CpuUsageReader)), ())

    def reader_status(self) -> dict[str, tuple[bool, str]]:
        """Reader name -> (readable now, why not: probe reason or last error)."""
        return {r.name: (r.available() and not r.error, r.reason or r.error)
                for r in self.readers}

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
