"""Resource readers: real readings of this machine, and fake sysfs/procfs trees for parsing."""

import dataclasses
import math
import os
from pathlib import Path
import subprocess
import sys
import time

import pytest

from dyn_dnn_ros.resources import (
    MESSAGE_FIELDS,
    READER_NAMES,
    CapacityConfig,
    ResourceSampler,
    ResourceSnapshot,
    SamplerConfig,
    estimate,
)
from dyn_dnn_ros.resources.cgroup import CgroupQuotaReader
from dyn_dnn_ros.resources.gpu import NvmlReader
from dyn_dnn_ros.resources.jetson import JetsonReader, parse_nvpmodel_query
from dyn_dnn_ros.resources.readers import Reader, parse_cpu_list

# Readers that look at the real machine whatever the roots say.
OFF_HOST = ('nvml', 'jetson')


def write(path: Path, text) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{text}\n')
    return path


# --- the snapshot --------------------------------------------------------------------------

def test_snapshot_has_the_message_fields_and_unknown_defaults():
    names = [f.name for f in dataclasses.fields(ResourceSnapshot)]
    assert [n for n in names if n in MESSAGE_FIELDS] == list(MESSAGE_FIELDS)
    snap = ResourceSnapshot()
    assert math.isnan(snap.cpu_quota) and math.isnan(snap.memory_available_mb)
    assert snap.cpu_count_online == -1 and snap.cpu_count_allowed == -1
    assert snap.cpu_utilization == [] and snap.usable_threads >= 1
    message = snap.message_fields()
    assert list(message) == list(MESSAGE_FIELDS)
    message['unavailable'].append('x')
    assert snap.unavailable == []  # lists are copies



def test_snapshot_fields_match_the_ros_message():
    msg = Path(__file__).resolve().parents[1] / 'msg/HardwareAvailability.msg'
    if not msg.is_file():
        pytest.skip(f'{msg} not present')
    names = [line.split()[1] for line in msg.read_text().splitlines()
             if line.split() and not line.startswith('#')]
    assert [n for n in names if n != 'header'] == list(MESSAGE_FIELDS)

# --- this machine --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def real():
    with ResourceSampler(SamplerConfig()) as sampler:
        time.sleep(0.3)
        sampler.sample()
        time.sleep(0.3)
        yield sampler, sampler.sample()


def test_real_cpu_counts_and_utilisation(real):
    _, snap = real
    assert snap.cpu_count_online == os.cpu_count()
    assert snap.cpu_count_allowed == len(os.sched_getaffinity(0))
    assert len(snap.cpu_utilization) == snap.cpu_count_online
    assert all(0.0 <= u <= 1.0 for u in snap.cpu_utilization)
    assert 0.0 <= snap.cpu_utilization_total <= 1.0
    assert snap.process_cpus >= 0.0
    assert snap.hostname == os.uname().nodename


def test_real_memory(real):
    _, snap = real
    assert 0 < snap.memory_available_mb <= snap.memory_total_mb
    meminfo = Path('/proc/meminfo').read_text()
    total_kb = int(next(ln for ln in meminfo.splitlines() if ln.startswith('MemTotal')).split()[1])
    assert snap.memory_total_mb == pytest.approx(total_kb / 1024)


def test_real_capacity_fields_are_in_range(real):
    _, snap = real
    assert 0.5 <= snap.usable_cpus <= snap.cpu_count_allowed
    assert 1 <= snap.usable_threads <= snap.cpu_count_allowed
    assert 0.0 < snap.availability <= 1.0


def test_real_missing_sources_are_reported_not_faked(real):
    sampler, snap = real
    status = sampler.reader_status()
    assert list(status) == list(READER_NAMES)
    for name in ('cpu', 'cpu_usage', 'memory'):
        assert status[name] == (True, '') and name not in snap.unavailable
    for name, (ok, why) in status.items():
        assert ok == (name not in snap.unavailable)
        assert ok or why  # every missing reader says why
    if not Path('/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq').exists():
        assert 'cpufreq' in snap.unavailable and snap.cpu_freq_current_mhz == []
    if not list(Path('/sys/class/thermal').glob('thermal_zone*/temp')):
        assert 'thermal' in snap.unavailable and snap.temperature_names == []
    if not (list(Path('/sys/class/powercap').glob('intel-rapl:*'))
            or list(Path('/sys/class/hwmon').glob('hwmon*/power*'))
            or list(Path('/sys/class/hwmon').glob('hwmon*/curr*'))):
        assert 'power' in snap.unavailable
    if not Path('/dev/nvidiactl').exists():
        assert 'nvml' in snap.unavailable
        assert snap.gpu_present is False and math.isnan(snap.gpu_utilization)
    if not Path('/etc/nv_tegra_release').exists():
        assert 'jetson' in snap.unavailable and snap.power_mode == ''
    assert len(snap.temperature_names) == len(snap.temperatures_c)
    assert len(snap.power_names) == len(snap.power_w)


def test_burning_a_core_shows_as_our_load_and_machine_load():
    burner = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time\nsys.stdin.readline()\n'
         'end = time.monotonic() + 1.0\nwhile time.monotonic() < end: pass'],
        stdin=subprocess.PIPE)
    try:
        config = SamplerConfig(own_pids=(burner.pid,), disabled=OFF_HOST)
        with ResourceSampler(config) as sampler:
            time.sleep(0.5)
            idle = sampler.sample()  # the burner waits on stdin
            burner.stdin.write(b'go\n')
            burner.stdin.flush()
            time.sleep(1.0)
            busy = sampler.sample()
    finally:
        burner.stdin.close()
        burner.wait(timeout=10)
    online = busy.cpu_count_online
    assert idle.process_cpus < 0.1
    # Other agents share this machine: the burner may not get a whole core.
    assert busy.process_cpus > 0.4
    assert busy.cpu_utilization_total * online >= busy.process_cpus - 0.1
    if idle.cpu_utilization_total < 0.5:  # the machine was not already saturated
        assert busy.cpu_utilization_total > idle.cpu_utilization_total


def test_a_worker_in_another_process_counts_as_ours_once_its_pid_is_known():
    # As the monitor does when a worker's heartbeat names its process.
    burner = subprocess.Popen(
        [sys.executable, '-c', 'import time\nend = time.monotonic() + 3.0\n'
         'while time.monotonic() < end: pass'])
    try:
        with ResourceSampler(SamplerConfig(disabled=OFF_HOST)) as sampler:
            time.sleep(0.5)
            unknown = sampler.sample()          # the burner is another program's load
            sampler.set_worker_pids([burner.pid, os.getpid()])
            assert sampler.own_pids == ('self', str(burner.pid))   # this one not twice
            time.sleep(0.8)
            known = sampler.sample()
            sampler.set_worker_pids([])
            assert sampler.own_pids == ('self',)
    finally:
        burner.kill()
        burner.wait(timeout=10)
    assert unknown.process_cpus < 0.2
    assert known.process_cpus > 0.4            # its whole share, from the first sample
    assert known.usable_cpus > unknown.usable_cpus + 0.3


# --- fake trees: parsing --------------------------------------------------------------------

STAT_BEFORE = """cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 1 2 3"""
# +100 jiffies per CPU: cpu0 75 busy (incl. 5 steal), cpu1 25 busy (10 iowait idle).
STAT_AFTER = """cpu  160 0 135 890 10 0 0 5 0 0
cpu0 100 0 70 425 0 0 0 5 0 0
cpu1 60 0 65 465 10 0 0 0 0 0
intr 1 2 3"""


@pytest.fixture
def fake(tmp_path):
    """A host with 2 CPUs, cpufreq, two thermal zones, RAPL, INA3221 and a 1.5-CPU quota."""
    sys_root, proc, etc = tmp_path / 'sys', tmp_path / 'proc', tmp_path / 'etc'
    cpu = sys_root / 'devices/system/cpu'
    write(cpu / 'online', '0-1')
    for n, (cur, top) in enumerate([(1200000, 2400000), (1800000, 2400000)]):
        write(cpu / f'cpu{n}/cpufreq/scaling_cur_freq', cur)
        write(cpu / f'cpu{n}/cpufreq/cpuinfo_max_freq', top)
    write(proc / 'stat', STAT_BEFORE)
    write(proc / 'meminfo', 'MemTotal:        8000000 kB\nMemFree:  100 kB\n'
                            'MemAvailable:    2048000 kB')
    pid = str(os.getpid())
    write(proc / pid / 'stat', f'{pid} (my (odd) name) R 1 2 3 4 5 6 7 8 9 10 40 10 0 0')
    write(proc / pid / 'cgroup', '0::/robot.slice/worker')
    write(sys_root / 'fs/cgroup/robot.slice/cpu.max', '150000 100000')
    write(sys_root / 'fs/cgroup/robot.slice/worker/cpu.max', 'max 100000')
    thermal = sys_root / 'class/thermal'
    write(thermal / 'thermal_zone0/type', 'cpu-thermal')
    write(thermal / 'thermal_zone0/temp', 45500)
    write(thermal / 'thermal_zone10/type', 'cpu-thermal')
    write(thermal / 'thermal_zone10/temp', 47000)
    write(thermal / 'thermal_zone2/type', 'disabled')  # no temp file: skipped
    rapl = sys_root / 'class/powercap/intel-rapl:0'
    write(rapl / 'name', 'package-0')
    write(rapl / 'energy_uj', 1_000_000)
    write(rapl / 'max_energy_range_uj', 262_143_328_850)
    write(rapl.with_name('intel-rapl:0:0') / 'name', 'core')
    write(rapl.with_name('intel-rapl:0:0') / 'energy_uj', 500_000)
    write(rapl.with_name('intel-rapl:0:0') / 'max_energy_range_uj', 2_000_000)
    # Orin-style INA3221 under hwmon, also linked from class/hwmon (counted once).
    ina = sys_root / 'bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3'
    write(ina / 'name', 'ina3221')
    write(ina / 'in1_label', 'VDD_IN')
    write(ina / 'in1_input', 5000)    # mV
    write(ina / 'curr1_input', 1200)  # mA
    (sys_root / 'class/hwmon').mkdir(parents=True)
    (sys_root / 'class/hwmon/hwmon3').symlink_to(ina)
    write(sys_root / 'class/hwmon/hwmon0/name', 'amdgpu')
    write(sys_root / 'class/hwmon/hwmon0/power1_input', 15_000_000)  # µW
    # Nano-style INA3221 as an IIO device, in mW.
    write(sys_root / 'bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input', 1500)
    write(sys_root / 'bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_0', 'POM_5V_IN')
    config = SamplerConfig(sysfs_root=sys_root, procfs_root=proc, etc_root=etc,
                           own_pids=(os.getpid(),), disabled=OFF_HOST)
    return config, tmp_path


def test_fake_tree_is_parsed(fake):
    config, root = fake
    sampler = ResourceSampler(config, now=100.0)
    write(root / 'proc/stat', STAT_AFTER)
    write(root / f'proc/{os.getpid()}/stat', f'{os.getpid()} (my (odd) name) R 1 2 3 4 5 6 7 8 '
                                              '9 10 80 30 0 0')
    write(root / 'sys/class/powercap/intel-rapl:0/energy_uj', 6_000_000)
    write(root / 'sys/class/powercap/intel-rapl:0:0/energy_uj', 100_000)  # wrapped
    snap = sampler.sample(now=102.0)

    assert snap.unavailable == []
    assert snap.cpu_count_online == 2
    assert snap.cpu_count_allowed == len(os.sched_getaffinity(0) & {0, 1})
    assert snap.cpu_quota == pytest.approx(1.5)  # the parent's limit binds
    assert snap.cpu_utilization == pytest.approx([0.75, 0.25])
    assert snap.cpu_utilization_total == pytest.approx(0.5)
    # 60 of the 200 jiffies that passed on 2 CPUs: 0.6 CPUs.
    assert snap.process_cpus == pytest.approx(0.6)
    assert snap.cpu_freq_current_mhz == [1200.0, 1800.0]
    assert snap.cpu_freq_max_mhz == [2400.0, 2400.0]
    assert snap.memory_total_mb == pytest.approx(8000000 / 1024)
    assert snap.memory_available_mb == pytest.approx(2000.0)
    assert snap.temperature_names == ['cpu-thermal', 'cpu-thermal#2']
    assert snap.temperatures_c == [45.5, 47.0]
    power = dict(zip(snap.power_names, snap.power_w, strict=True))
    assert power == pytest.approx({
        'rapl:package-0': 2.5,             # 5 J in 2 s
        'rapl:package-0/core': 0.8,        # (2e6 - 5e5 + 1e5) µJ in 2 s
        'amdgpu:power1': 15.0,
        'ina3221:VDD_IN': 6.0,             # 5 V x 1.2 A
        'ina3221:POM_5V_IN': 1.5,
    })
    # Capacity: others use 0.5 x 2 - 0.6 = 0.4 CPUs; the 1.5-CPU quota binds
    # (with this process pinned to one CPU, A = 1 and others use nothing).
    allowed = snap.cpu_count_allowed
    assert snap.usable_cpus == pytest.approx(min(allowed - max(0.0, 0.5 * allowed - 0.6), 1.5))
    assert snap.availability == pytest.approx(snap.usable_cpus / 2 * 0.625)


def test_fake_tree_first_reading_has_no_deltas(fake):
    config, _ = fake
    snap = ResourceSampler(config, now=5.0).sample(now=5.0)  # no time has passed
    assert snap.cpu_utilization == [] or all(math.isnan(u) for u in snap.cpu_utilization)
    assert all(math.isnan(w) for n, w in zip(snap.power_names, snap.power_w, strict=True)
               if n.startswith('rapl'))


def test_empty_tree_reports_every_reader_unavailable(tmp_path):
    config = SamplerConfig(sysfs_root=tmp_path, procfs_root=tmp_path, disabled=OFF_HOST)
    sampler = ResourceSampler(config)
    snap = sampler.sample()
    assert snap.unavailable == ['cgroup', 'cpu_usage', 'cpufreq', 'memory', 'thermal', 'power']
    status = sampler.reader_status()
    assert str(tmp_path / 'meminfo') in status['memory'][1]
    assert snap.cpu_count_online == os.cpu_count()  # falls back to the real count
    assert math.isnan(snap.memory_total_mb) and snap.cpu_freq_current_mhz == []


@pytest.mark.parametrize('lines, files, quota', [
    ('0::/', {'cpu.max': 'max 100000'}, math.nan),
    ('0::/a', {'a/cpu.max': '50000 100000'}, 0.5),
    # cgroup v1 with a combined cpu,cpuacct mount
    ('5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc',
     {'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '200000',
      'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000'}, 2.0),
    ('2:cpu:/', {'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000'}, math.nan),
    # in a container without a cgroup namespace the host path is not mounted
    ('0::/host/path/ctr', {'unified/cpu.max': '300000 100000'}, 3.0),
])
def test_cgroup_quota(tmp_path, lines, files, quota):
    write(tmp_path / 'proc/self/cgroup', lines)
    for name, text in files.items():
        write(tmp_path / 'sys/fs/cgroup' / name, text)
    reader = CgroupQuotaReader(tmp_path / 'sys', tmp_path / 'proc')
    assert reader.available(), reader.reason
    snap = ResourceSnapshot()
    reader.read(snap)
    assert snap.cpu_quota == pytest.approx(quota, nan_ok=True)


def test_cgroup_without_cpu_controller_is_unavailable(tmp_path):
    write(tmp_path / 'proc/self/cgroup', '4:memory:/x')
    reader = CgroupQuotaReader(tmp_path / 'sys', tmp_path / 'proc')
    assert not reader.available() and 'cpu.max' in reader.reason


def test_parse_cpu_list():
    assert parse_cpu_list('0-3,6,8-9\n') == [0, 1, 2, 3, 6, 8, 9]
    with pytest.raises(ValueError, match='bad CPU list'):
        parse_cpu_list('3-1')


def test_jetson_power_mode_from_nvpmodel(tmp_path):
    write(tmp_path / 'etc/nv_tegra_release', '# R35 (release), REVISION: 4.1')
    script = write(tmp_path / 'bin/nvpmodel', '#!/bin/sh\necho "NV Power Mode: MODE_15W"\n'
                                              'echo 2')
    script.chmod(0o755)
    reader = JetsonReader(tmp_path / 'etc', nvpmodel=str(script))
    assert reader.available(), reader.reason
    snap = ResourceSnapshot()
    reader.read(snap)
    assert snap.power_mode == 'MODE_15W'
    with pytest.raises(ValueError, match='NV Power Mode'):
        parse_nvpmodel_query('nvpmodel: command failed')
    assert not JetsonReader(tmp_path / 'nowhere').available()


class FakeNvml:
    """Mimics the pynvml functions the reader calls, as a GPU would answer them."""

    NVML_CLOCK_SM, NVML_TEMPERATURE_GPU = 1, 0

    class NVMLError(Exception):
        """pynvml's base error."""

    def __init__(self, fail_init=False):
        self.fail_init, self.shutdowns = fail_init, 0

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError('Driver Not Loaded')

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ('handle', index)

    def nvmlDeviceGetName(self, handle):
        return b'NVIDIA H100 80GB HBM3'

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type('Memory', (), {'used': 3 * 2**30, 'total': 80 * 2**30})()

    def nvmlDeviceGetUtilizationRates(self, handle):
        return type('Rates', (), {'gpu': 37, 'memory': 5})()

    def nvmlDeviceGetClockInfo(self, handle, clock):
        return 1755

    def nvmlDeviceGetMaxClockInfo(self, handle, clock):
        return 1980

    def nvmlDeviceGetTemperature(self, handle, sensor):
        raise self.NVMLError('Not Supported')

    def nvmlDeviceGetPowerUsage(self, handle):
        return 123456  # mW


def test_nvml_reader_fields():
    nvml = FakeNvml()
    reader = NvmlReader(0, nvml=nvml)
    assert reader.available()
    snap = ResourceSnapshot()
    reader.read(snap)
    assert snap.gpu_present and snap.gpu_name == 'NVIDIA H100 80GB HBM3'
    assert snap.gpu_utilization == pytest.approx(0.37)
    assert (snap.gpu_freq_mhz, snap.gpu_freq_max_mhz) == (1755.0, 1980.0)
    assert (snap.gpu_memory_used_mb, snap.gpu_memory_total_mb) == (3072.0, 81920.0)
    assert snap.temperature_names == []  # unsupported query: left out, not invented
    assert snap.power_names == ['gpu0'] and snap.power_w == pytest.approx([123.456])
    reader.close()
    assert nvml.shutdowns == 1
    assert NvmlReader(1, nvml=FakeNvml()).reason == 'no GPU with index 1 (1 found)'
    assert 'Driver Not Loaded' in NvmlReader(0, nvml=FakeNvml(fail_init=True)).reason


class Broken(Reader):
    name = 'broken'

    def read(self, snapshot):
        raise OSError(5, 'Input/output error')


class BrokenProbe(Reader):
    name = 'broken_probe'

    def probe(self):
        raise PermissionError('denied')


def test_a_failing_reader_is_marked_unavailable_not_fatal(fake):
    config, _ = fake
    from dyn_dnn_ros.resources.sampler import default_readers
    sampler = ResourceSampler(config, readers=[Broken(), BrokenProbe(),
                                               *default_readers(config)])
    snap = sampler.sample()
    assert snap.unavailable == ['broken', 'broken_probe']
    assert snap.memory_total_mb > 0  # the other readers still read
    status = sampler.reader_status()
    assert status['broken'] == (False, 'OSError: [Errno 5] Input/output error')
    assert status['broken_probe'] == (False, 'probe failed: PermissionError: denied')


# --- capacity ------------------------------------------------------------------------------

def snapshot(**values):
    base = dict(cpu_count_online=4, cpu_count_allowed=4, cpu_utilization_total=0.0,
                process_cpus=0.0)
    return ResourceSnapshot(**{**base, **values})


@pytest.mark.parametrize('values, usable, threads', [
    ({}, 4.0, 4),
    ({'cpu_utilization_total': 0.5}, 2.0, 2),                       # others use 2 CPUs
    ({'cpu_utilization_total': 0.5, 'process_cpus': 2.0}, 4.0, 4),  # that load is ours
    ({'cpu_utilization_total': 0.55}, 1.8, 2),                      # within the margin
    ({'cpu_utilization_total': 0.6}, 1.6, 1),
    ({'cpu_utilization_total': 1.0}, 0.5, 1),                       # floor
    ({'cpu_quota': 1.5}, 1.5, 1),
    ({'cpu_count_allowed': 2, 'cpu_utilization_total': math.nan}, 2.0, 2),
])
def test_usable_cpus_formula(values, usable, threads):
    snap = estimate(snapshot(**values))
    assert snap.usable_cpus == pytest.approx(usable)
    assert snap.usable_threads == threads
    assert snap.availability == pytest.approx(usable / 4)


def test_availability_follows_frequency_and_margin_is_configurable():
    snap = estimate(snapshot(cpu_freq_current_mhz=[1000.0, 2000.0, math.nan, 2500.0],
                             cpu_freq_max_mhz=[2000.0, 2000.0, 2000.0, 2000.0]))
    assert snap.availability == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    snap = estimate(snapshot(cpu_utilization_total=0.55), CapacityConfig(rounding_margin=0.0))
    assert snap.usable_threads == 1
    with pytest.raises(ValueError, match='rounding_margin'):
        CapacityConfig(rounding_margin=1.0)


def test_sampler_config_validation():
    with pytest.raises(ValueError, match="disabled: unknown reader 'gpu'"):
        SamplerConfig(disabled=('gpu',))
    with pytest.raises(ValueError, match='own_pids'):
        SamplerConfig(own_pids=(-1,))
