"""NVIDIA GPU reader through NVML (the nvidia-ml-py ``pynvml`` module)."""

import importlib
import math

from dyn_dnn_ros.resources.readers import Reader, unique_name


class NvmlReader(Reader):
    """Name, utilisation, SM clock, memory, temperature and power of one GPU.

    A missing library, driver or device makes the reader unavailable; it
    never raises out of ``probe``. ``nvml`` replaces the ``pynvml`` module
    (tests pass a double that mimics its functions).
    """

    name = 'nvml'

    def __init__(self, index: int = 0, nvml=None):
        super().__init__()
        self.index = index
        self._nvml = nvml
        self._handle = None

    def probe(self):
        try:
            nvml = self._nvml or importlib.import_module('pynvml')
        except ImportError:
            return 'pynvml (nvidia-ml-py) is not installed'
        try:
            nvml.nvmlInit()
        except Exception as exc:  # pynvml raises NVMLError subclasses per cause
            return f'NVML init failed: {exc}'
        count = nvml.nvmlDeviceGetCount()
        if self.index >= count:
            nvml.nvmlShutdown()
            return f'no GPU with index {self.index} ({count} found)'
        self._nvml = nvml
        self._handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
        return ''

    def _optional(self, function, *args):
        """Run a query some GPUs lack (MIG, consumer boards); NaN when unsupported."""
        try:
            return function(self._handle, *args)
        except self._nvml.NVMLError:
            return math.nan

    def read(self, snapshot):
        nvml = self._nvml
        name = nvml.nvmlDeviceGetName(self._handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(self._handle)
        rates = self._optional(nvml.nvmlDeviceGetUtilizationRates)
        clock = self._optional(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM)
        clock_max = self._optional(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM)
        temperature = self._optional(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
        milliwatts = self._optional(nvml.nvmlDeviceGetPowerUsage)

        snapshot.gpu_present = True
        snapshot.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        snapshot.gpu_utilization = rates.gpu / 100 if not isinstance(rates, float) else rates
        snapshot.gpu_freq_mhz = float(clock)
        snapshot.gpu_freq_max_mhz = float(clock_max)
        snapshot.gpu_memory_used_mb = memory.used / 2**20
        snapshot.gpu_memory_total_mb = memory.total / 2**20
        label = f'gpu{self.index}'
        if not math.isnan(temperature):
            snapshot.temperature_names.append(unique_name(label, snapshot.temperature_names))
            snapshot.temperatures_c.append(float(temperature))
        if not math.isnan(milliwatts):
            snapshot.power_names.append(unique_name(label, snapshot.power_names))
            snapshot.power_w.append(milliwatts / 1000)

    def close(self):
        if self._handle is not None:
            self._handle = None
            self._nvml.nvmlShutdown()
