"""CPU quota of a process's cgroup (v2 ``cpu.max`` or v1 CFS quota/period), in CPUs."""

import math
from pathlib import Path

from dyn_dnn_ros.resources.readers import Reader, read_text


def _v2_quota(directory: Path) -> float | None:
    """Quota in CPUs from ``cpu.max`` ('max' = unlimited = inf); None if no file."""
    try:
        quota, _, period = read_text(directory / 'cpu.max').partition(' ')
    except OSError:
        return None
    if quota == 'max':
        return math.inf
    return float(quota) / float(period or 100000)


def _v1_quota(directory: Path) -> float | None:
    """Quota in CPUs from ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (-1 = unlimited)."""
    try:
        quota = float(read_text(directory / 'cpu.cfs_quota_us'))
        period = float(read_text(directory / 'cpu.cfs_period_us'))
    except OSError:
        return None
    return math.inf if quota < 0 or period <= 0 else quota / period


class CgroupQuotaReader(Reader):
    """The tightest CPU quota on the path from the process's cgroup up to the root.

    Limits nest: a child may declare 4 CPUs under a parent capped at 2, so the
    effective quota is the minimum over all ancestors. NaN when there is none.
    """

    name = 'cgroup'

    def __init__(self, sysfs_root: Path, procfs_root: Path, pid='self'):
        super().__init__()
        self.cgroup_root = Path(sysfs_root) / 'fs/cgroup'
        self.membership = Path(procfs_root) / str(pid) / 'cgroup'

    def _hierarchies(self):
        """(mount point, cgroup path, quota function) for each CPU hierarchy of the pid."""
        found = []
        for line in self.membership.read_text().splitlines():
            hierarchy, controllers, path = line.split(':', 2)
            relative = path.lstrip('/')
            if hierarchy == '0' and not controllers:
                # Unified (v2) tree: at the root, or under 'unified' on hybrid hosts.
                for mount in (self.cgroup_root, self.cgroup_root / 'unified'):
                    found.append((mount, relative, _v2_quota))
            elif 'cpu' in controllers.split(','):
                for mount_name in ('cpu', 'cpu,cpuacct', 'cpuacct,cpu'):
                    found.append((self.cgroup_root / mount_name, relative, _v1_quota))
        return found

    def quota(self) -> tuple[bool, float]:
        """(whether any quota file was found, quota in CPUs or NaN)."""
        any_file, tightest = False, math.inf
        for mount, relative, read_quota in self._hierarchies():
            directory = mount / relative
            if not directory.is_dir():
                # Inside a container without a cgroup namespace the path names
                # the host's tree; the container sees its own cgroup at the mount.
                directory = mount
            while True:
                value = read_quota(directory)
                if value is not None:
                    any_file, tightest = True, min(tightest, value)
                if directory == mount or mount not in directory.parents:
                    break
                directory = directory.parent
        return any_file, (tightest if math.isfinite(tightest) else math.nan)

    def probe(self):
        if not self.membership.is_file():
            return f'{self.membership} not found'
        if not self.quota()[0]:
            return f'no cpu.max or cpu.cfs_quota_us under {self.cgroup_root}'
        return ''

    def read(self, snapshot):
        snapshot.cpu_quota = self.quota()[1]
