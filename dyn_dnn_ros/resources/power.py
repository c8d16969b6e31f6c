"""Power reader: Intel RAPL energy counters and hwmon/INA3221 power rails, in watts."""

import math
from pathlib import Path
import re

from dyn_dnn_ros.resources.readers import Reader, read_float, read_text, unique_name


class _RaplZone:
    """Average power of one RAPL zone from the growth of its energy counter."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self._last = None  # (energy in µJ, monotonic time)

    def watts(self, now: float) -> float:
        energy = read_float(self.directory / 'energy_uj')
        last, self._last = self._last, (energy, now)
        if last is None or not now > last[1]:
            return math.nan
        delta = energy - last[0]
        if delta < 0:  # the counter wrapped around
            delta += read_float(self.directory / 'max_energy_range_uj')
        return delta / 1e6 / (now - last[1])


class _Rail:
    """An instantaneous power reading: hwmon µW, V x I, or INA3221 IIO mW."""

    def __init__(self, name, power=None, volts_and_amps=None, scale=1.0):
        self.name, self.power, self.volts_and_amps, self.scale = name, power, volts_and_amps, scale

    def watts(self, now: float) -> float:
        if self.power is not None:
            return read_float(self.power) * self.scale
        voltage, current = self.volts_and_amps  # mV and mA
        return read_float(voltage) * read_float(current) / 1e6


def _label(directory: Path, *candidates: str, default: str) -> str:
    for candidate in candidates:
        try:
            return read_text(directory / candidate)
        except OSError:
            continue
    return default


def rapl_zones(sysfs_root: Path) -> list[_RaplZone]:
    zones = []
    for directory in sorted(Path(sysfs_root).glob('class/powercap/intel-rapl:*')):
        # Sub-zones (intel-rapl:0:1) are listed beside their package; name them
        # after it so "core" of two sockets stays distinguishable.
        parts = directory.name.split(':')
        name = _label(directory, 'name', default=directory.name)
        if len(parts) > 2:
            parent = directory.with_name(':'.join(parts[:2]))
            name = f'{_label(parent, "name", default=parent.name)}/{name}'
        zones.append(_RaplZone(directory, f'rapl:{name}'))
    return zones


def hwmon_rails(sysfs_root: Path) -> list[_Rail]:
    root = Path(sysfs_root)
    directories = [*root.glob('class/hwmon/hwmon*'),
                   *root.glob('bus/i2c/drivers/ina3221*/*/hwmon/hwmon*')]
    rails, seen = [], set()
    for directory in sorted(directories):
        if directory.resolve() in seen:  # class/hwmon links to the i2c device
            continue
        seen.add(directory.resolve())
        chip = _label(directory, 'name', default=directory.name)
        for power in sorted(directory.glob('power*_input')) + sorted(
                directory.glob('power*_average')):
            channel = re.match(r'power(\d+)_', power.name).group(1)
            label = _label(directory, f'power{channel}_label', default=f'power{channel}')
            rails.append(_Rail(f'{chip}:{label}', power=power, scale=1e-6))  # µW
        if any(r.name.startswith(f'{chip}:') for r in rails):
            continue
        # INA3221 under hwmon (Jetson Orin): bus voltage in{N} (mV) x curr{N} (mA).
        for current in sorted(directory.glob('curr*_input')):
            channel = re.match(r'curr(\d+)_', current.name).group(1)
            voltage = directory / f'in{channel}_input'
            if voltage.is_file():
                label = _label(directory, f'in{channel}_label', f'curr{channel}_label',
                               default=f'rail{channel}')
                rails.append(_Rail(f'{chip}:{label}', volts_and_amps=(voltage, current)))
    # INA3221 as an IIO device (Jetson Nano/TX2/Xavier): in_power{N}_input in mW.
    for device in sorted(root.glob('bus/i2c/drivers/ina3221*/*/iio:device*')):
        for power in sorted(device.glob('in_power*_input')):
            channel = re.match(r'in_power(\d+)_', power.name).group(1)
            label = _label(device, f'rail_name_{channel}', default=f'power{channel}')
            rails.append(_Rail(f'ina3221:{label}', power=power, scale=1e-3))
    return rails


class PowerReader(Reader):
    name = 'power'

    def __init__(self, sysfs_root: Path):
        super().__init__()
        self.sysfs_root = Path(sysfs_root)
        self.sources = []

    def probe(self):
        problems = []
        for source in rapl_zones(self.sysfs_root) + hwmon_rails(self.sysfs_root):
            try:
                source.watts(math.nan)  # also primes RAPL counters
            except (OSError, ValueError) as exc:
                # RAPL energy is root-only on most kernels since CVE-2020-8694.
                problems.append(f'{source.name}: {type(exc).__name__}: {exc}')
                continue
            self.sources.append(source)
        if self.sources:
            return ''
        if problems:
            return 'no readable power source (' + '; '.join(problems[:3]) + ')'
        return (f'no RAPL zone under {self.sysfs_root}/class/powercap and no power/INA3221 '
                f'channel under {self.sysfs_root}/class/hwmon')

    def read(self, snapshot):
        values = [source.watts(snapshot.stamp) for source in self.sources]
        for source, watts in zip(self.sources, values, strict=True):
            snapshot.power_names.append(unique_name(source.name, snapshot.power_names))
            snapshot.power_w.append(watts)
