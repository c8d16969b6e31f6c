"""Thermal reader: every readable ``/sys/class/thermal/thermal_zone*`` in degrees C."""

import math
from pathlib import Path

from dyn_dnn_ros.resources.readers import Reader, read_text, try_float, unique_name


class ThermalReader(Reader):
    name = 'thermal'

    def __init__(self, sysfs_root: Path):
        super().__init__()
        self.root = Path(sysfs_root) / 'class/thermal'

    def _zones(self):
        # Sort numerically so thermal_zone10 follows thermal_zone9.
        zones = self.root.glob('thermal_zone*')
        return sorted(zones, key=lambda p: int(p.name[len('thermal_zone'):] or 0))

    def _readings(self):
        names, values = [], []
        for zone in self._zones():
            millidegrees = try_float(zone / 'temp')
            if math.isnan(millidegrees):
                continue  # disabled zones fail the read (EIO/ENODATA)
            try:
                kind = read_text(zone / 'type') or zone.name
            except OSError:
                kind = zone.name
            names.append(unique_name(kind, names))
            values.append(millidegrees / 1000)
        return names, values

    def probe(self):
        if not self._readings()[0]:
            return f'no readable {self.root}/thermal_zone*/temp'
        return ''

    def read(self, snapshot):
        names, values = self._readings()
        for name, value in zip(names, values, strict=True):
            snapshot.temperature_names.append(unique_name(name, snapshot.temperature_names))
            snapshot.temperatures_c.append(value)
