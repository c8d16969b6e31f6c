"""One reading of this machine's compute resources, shaped like the ROS message."""

from dataclasses import dataclass, field, fields

NAN = float('nan')

# Fields of the HardwareAvailability ROS message (less its header), in order. The dataclass
# carries two more (``stamp``, ``process_cpus``) that only the core uses.
MESSAGE_FIELDS = (
    'hostname',
    'cpu_count_online', 'cpu_count_allowed', 'cpu_quota',
    'cpu_utilization', 'cpu_utilization_total',
    'cpu_freq_current_mhz', 'cpu_freq_max_mhz',
    'memory_available_mb', 'memory_total_mb',
    'gpu_present', 'gpu_name', 'gpu_utilization', 'gpu_freq_mhz', 'gpu_freq_max_mhz',
    'gpu_memory_used_mb', 'gpu_memory_total_mb',
    'temperature_names', 'temperatures_c',
    'power_names', 'power_w', 'power_mode',
    'usable_cpus', 'usable_threads', 'availability',
    'unavailable', 'overrides',
)


@dataclass
class ResourceSnapshot:
    """Readings at one instant; NaN, -1 or empty where a value could not be read."""

    hostname: str = ''
    cpu_count_online: int = -1
    cpu_count_allowed: int = -1
    cpu_quota: float = NAN
    cpu_utilization: list[float] = field(default_factory=list)
    cpu_utilization_total: float = NAN
    cpu_freq_current_mhz: list[float] = field(default_factory=list)
    cpu_freq_max_mhz: list[float] = field(default_factory=list)
    memory_available_mb: float = NAN
    memory_total_mb: float = NAN
    gpu_present: bool = False
    gpu_name: str = ''
    gpu_utilization: float = NAN
    gpu_freq_mhz: float = NAN
    gpu_freq_max_mhz: float = NAN
    gpu_memory_used_mb: float = NAN
    gpu_memory_total_mb: float = NAN
    temperature_names: list[str] = field(default_factory=list)
    temperatures_c: list[float] = field(default_factory=list)
    power_names: list[str] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    power_mode: str = ''
    usable_cpus: float = NAN
    usable_threads: int = 1
    availability: float = NAN
    unavailable: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    # Not published: monotonic time of the sample (seconds), and the CPUs our
    # own processes used since the previous sample (kept out of "other" load).
    stamp: float = NAN
    process_cpus: float = NAN

    def message_fields(self) -> dict:
        """Exactly the message's fields, lists copied: ``Msg(**snapshot.message_fields())``."""
        return {name: _copied(getattr(self, name)) for name in MESSAGE_FIELDS}

    def copy(self) -> 'ResourceSnapshot':
        return ResourceSnapshot(**{f.name: _copied(getattr(self, f.name)) for f in fields(self)})


def _copied(value):
    return list(value) if isinstance(value, list) else value
