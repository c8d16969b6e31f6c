"""CPU counts (online, allowed to this process), utilisation from /proc/stat, cpufreq."""

import math
import os
from pathlib import Path

from dyn_dnn_ros.resources.readers import Reader, parse_cpu_list, read_text, try_float


def allowed_cpu_count() -> int:
    """CPUs this process may run on: its affinity mask, not the machine's count."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def online_cpus(sysfs_root: Path) -> list[int]:
    """Online CPU ids from sysfs, or 0..os.cpu_count()-1 when the file is absent."""
    try:
        return parse_cpu_list(read_text(Path(sysfs_root) / 'devices/system/cpu/online'))
    except OSError:
        return list(range(os.cpu_count() or 1))


class CpuCountReader(Reader):
    """Online CPUs on the host and how many of them ``pid`` may run on."""

    name = 'cpu'

    def __init__(self, sysfs_root: Path, pid: int = 0):
        super().__init__()
        self.sysfs_root = Path(sysfs_root)
        self.pid = pid

    def read(self, snapshot):
        online = online_cpus(self.sysfs_root)
        allowed = os.sched_getaffinity(self.pid) & set(online)
        snapshot.cpu_count_online = len(online)
        snapshot.cpu_count_allowed = len(allowed)


def _cpu_times(line: str) -> tuple[int, int]:
    """(busy, total) jiffies of one /proc/stat ``cpu`` line."""
    # user nice system idle iowait irq softirq steal; guest time is already
    # inside user/nice. Steal counts as busy: another virtual machine had the core.
    values = [int(v) for v in line.split()[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values)
    return total - idle, total


def _process_ticks(stat_path: Path) -> int:
    """Return utime + stime of one process (all its threads), in clock ticks."""
    # The command name in parentheses may contain spaces: split after it.
    rest = stat_path.read_text().rpartition(')')[2].split()
    return int(rest[11]) + int(rest[12])


class CpuUsageReader(Reader):
    """Per-CPU and total utilisation since the previous read, and our processes' share.

    ``pids`` are the processes whose CPU use is "ours" (the inference workers),
    so it is not counted as load from other programs.
    """

    name = 'cpu_usage'

    def __init__(self, procfs_root: Path, pids: tuple = ('self',)):
        super().__init__()
        self.procfs_root = Path(procfs_root)
        self.base_pids = tuple(str(p) for p in pids)
        self.pids = self.base_pids
        self._previous = None  # ({cpu line name: (busy, total)}, {pid: ticks})

    def set_worker_pids(self, pids):
        """Count these processes as ours too (workers in other processes), from now on.

        The ticks of a new one are read at once, so the next sample already
        knows its share; this process itself is never counted twice.
        """
        this = {'self', str(os.getpid())} if 'self' in self.base_pids else set()
        extra = sorted({str(p) for p in pids} - set(self.base_pids) - this)
        new = [pid for pid in extra if pid not in self.pids]
        self.pids = self.base_pids + tuple(extra)
        if self._previous is not None:
            for pid in new:
                try:
                    self._previous[1][pid] = _process_ticks(self.procfs_root / pid / 'stat')
                except (OSError, IndexError, ValueError):
                    pass

    def probe(self):
        path = self.procfs_root / 'stat'
        if not path.is_file():
            return f'{path} not found'
        return ''

    def read(self, snapshot):
        times = {}
        for line in (self.procfs_root / 'stat').read_text().splitlines():
            if line.startswith('cpu'):
                times[line.split()[0]] = _cpu_times(line)
        ticks = {}
        for pid in self.pids:
            try:
                ticks[pid] = _process_ticks(self.procfs_root / pid / 'stat')
            except (OSError, IndexError, ValueError):
                pass  # the process ended; it uses no CPU now
        previous, self._previous = self._previous, (times, ticks)
        if previous is None:
            return
        before, ticks_before = previous

        def utilisation(key):
            if key not in before:
                return math.nan
            busy = times[key][0] - before[key][0]
            total = times[key][1] - before[key][1]
            return min(1.0, max(0.0, busy / total)) if total > 0 else math.nan

        per_cpu = sorted((k for k in times if k != 'cpu'), key=lambda k: int(k[3:]))
        snapshot.cpu_utilization = [utilisation(k) for k in per_cpu]
        snapshot.cpu_utilization_total = utilisation('cpu')
        total_delta = times['cpu'][1] - before.get('cpu', (0, 0))[1]
        if total_delta > 0 and per_cpu:
            own = sum(ticks[p] - ticks_before[p] for p in ticks if p in ticks_before)
            # Aggregate jiffies = CPUs x elapsed time, so this ratio is in CPUs.
            snapshot.process_cpus = own / total_delta * len(per_cpu)


class CpuFreqReader(Reader):
    """Current and maximum frequency of each online CPU from sysfs cpufreq."""

    name = 'cpufreq'

    def __init__(self, sysfs_root: Path):
        super().__init__()
        self.sysfs_root = Path(sysfs_root)

    def _dir(self, cpu):
        return self.sysfs_root / f'devices/system/cpu/cpu{cpu}/cpufreq'

    def probe(self):
        for cpu in online_cpus(self.sysfs_root):
            if not math.isnan(try_float(self._dir(cpu) / 'scaling_cur_freq')):
                return ''
        return f'no readable {self._dir("N")}/scaling_cur_freq'

    def read(self, snapshot):
        current, maximum = [], []
        for cpu in online_cpus(self.sysfs_root):
            # kHz in sysfs; NaN keeps the list aligned when one CPU is unreadable.
            current.append(try_float(self._dir(cpu) / 'scaling_cur_freq') / 1000)
            maximum.append(try_float(self._dir(cpu) / 'cpuinfo_max_freq') / 1000)
        snapshot.cpu_freq_current_mhz = current
        snapshot.cpu_freq_max_mhz = maximum
