"""Memory reader: available and total RAM from /proc/meminfo."""

from pathlib import Path

from dyn_dnn_ros.resources.readers import Reader


def read_meminfo(path: Path) -> dict[str, float]:
    """Fields of /proc/meminfo in kB, e.g. ``{'MemTotal': 16318252.0, ...}``."""
    values = {}
    for line in Path(path).read_text().splitlines():
        key, _, rest = line.partition(':')
        parts = rest.split()
        if parts:
            try:
                values[key.strip()] = float(parts[0])
            except ValueError:
                continue
    return values


class MemoryReader(Reader):
    name = 'memory'

    def __init__(self, procfs_root: Path):
        super().__init__()
        self.path = Path(procfs_root) / 'meminfo'

    def probe(self):
        return '' if self.path.is_file() else f'{self.path} not found'

    def read(self, snapshot):
        info = read_meminfo(self.path)
        if 'MemTotal' not in info:
            raise ValueError(f'{self.path}: no MemTotal line')
        total = info['MemTotal']
        # MemAvailable appeared in Linux 3.14; before it, free + page cache is
        # the usual estimate of what a new allocation can get.
        available = info.get('MemAvailable', info.get('MemFree', 0) + info.get('Cached', 0))
        snapshot.memory_total_mb = total / 1024
        snapshot.memory_available_mb = available / 1024
