"""Scenario files: validation that names file and field, timed overrides, the monitor command."""

import math
import os
from pathlib import Path

import pytest

from dyn_dnn_ros.cli import main
from dyn_dnn_ros.resources import (
    READER_NAMES,
    ResourceSampler,
    ResourceSnapshot,
    SamplerConfig,
    Scenario,
)

SCENARIOS = Path(__file__).resolve().parents[1] / 'config/scenarios'


def scenario_file(tmp_path, text, name='bad.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_scenarios_load():
    core_drop = Scenario.load(SCENARIOS / 'core_drop.yaml')
    assert core_drop.name == 'core_drop' and core_drop.duration == 40.0
    assert [core_drop.overrides_at(t) for t in (0.0, 9.99, 10.0, 39.9, 40.0, 1e6)] == [
        {}, {}, {'cpus': 1}, {'cpus': 1}, {}, {}]
    five_watts = Scenario.load(SCENARIOS / 'power_mode_5w.yaml')
    assert five_watts.overrides_at(5.0) == {'power_mode': '5W', 'cpus': 2, 'freq_scale': 0.65}
    assert five_watts.overrides_at(35.0) == {}


@pytest.mark.parametrize('text, message', [
    ('steps:\n  - at: 1\n    set: {cpus: -2}\n',
     'steps[0].set.cpus: must be a positive integer, got -2'),
    ('steps:\n  - at: 1\n    set: {cpus: 1.5}\n', 'steps[0].set.cpus: must be a positive integer'),
    ('steps:\n  - at: 1\n    set: {cpus: true}\n',
     'steps[0].set.cpus: must be a positive integer'),
    ('steps:\n  - at: 1\n    set: {cores: 1}\n', 'steps[0].set.cores: unknown field'),
    ('steps:\n  - at: -1\n    set: {cpus: 1}\n', 'steps[0].at: must be a finite number'),
    ('steps:\n  - at: .nan\n    set: {cpus: 1}\n', 'steps[0].at: must be a finite number'),
    ('steps:\n  - set: {cpus: 1}\n', 'steps[0].at: missing'),
    ('steps:\n  - at: 5\n    set: {cpus: 1}\n  - at: 2\n    clear: [cpus]\n',
     'steps[1].at: steps must be in time order, 2 s comes after 5 s'),
    ('steps:\n  - at: 1\n    clear: [cpus, turbo]\n', "steps[0].clear[1]: unknown field 'turbo'"),
    ('steps:\n  - at: 1\n    clear: cpus\n', 'steps[0].clear: must be a list'),
    ('steps:\n  - at: 1\n', 'steps[0]: needs "set" and/or "clear"'),
    ('steps:\n  - at: 1\n    set: {cpu_utilization: 1.5}\n',
     'steps[0].set.cpu_utilization: must be between 0 and 1, got 1.5'),
    ('steps:\n  - at: 1\n    set: {freq_scale: 0}\n',
     'steps[0].set.freq_scale: must be in (0, 1]'),
    ('steps:\n  - at: 1\n    set: {gpu_available: maybe}\n',
     'steps[0].set.gpu_available: must be true or false'),
    ('steps:\n  - at: 1\n    set: {memory_available_mb: -5}\n',
     'steps[0].set.memory_available_mb: must be a finite number >= 0'),
    ('steps:\n  - at: 1\n    set: {power_mode: ""}\n',
     'steps[0].set.power_mode: must be a non-empty'),
    ('steps:\n  - at: 1\n    sett: {cpus: 1}\n', 'steps[0].sett: unknown key'),
    ('steps:\n  - [1, 2]\n', 'steps[0]: must be a mapping'),
    ('steps: []\n', 'steps: must be a non-empty list'),
    ('name: x\n', 'steps: must be a non-empty list'),
    ('name: x\nloop: true\nsteps: []\n', 'loop: unknown key'),
    ('- at: 1\n', 'top level: must be a mapping'),
    ('', 'top level: must be a mapping'),
    ('steps: [\n', 'malformed YAML'),
])
def test_bad_scenarios_name_file_and_field(tmp_path, text, message):
    path = scenario_file(tmp_path, text)
    with pytest.raises(ValueError) as error:
        Scenario.load(path)
    assert str(error.value).startswith(f'{path}: ')
    assert message in str(error.value)
    assert '\n' not in str(error.value)


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ValueError, match='nope.yaml: scenario file not found'):
        Scenario.load(tmp_path / 'nope.yaml')


def two_cpu_snapshot(**values):
    base = dict(cpu_count_online=2, cpu_count_allowed=2, cpu_utilization=[0.1, 0.1],
                cpu_utilization_total=0.1, process_cpus=0.0, memory_total_mb=4000.0,
                memory_available_mb=3000.0, gpu_present=True, gpu_name='Orin',
                gpu_utilization=0.2)
    return ResourceSnapshot(**{**base, **values})


def test_core_drop_applies_at_the_scripted_time_and_clears():
    scenario = Scenario.load(SCENARIOS / 'core_drop.yaml')
    real = two_cpu_snapshot()
    before = scenario.apply(real, 5.0)
    during = scenario.apply(real, 15.0)
    after = scenario.apply(real, 45.0)
    assert before.overrides == [] and after.overrides == []
    assert before.usable_cpus == pytest.approx(1.8) and before.usable_threads == 2
    assert during.overrides == ['cpus=1']
    assert during.cpu_count_allowed == 1 and during.usable_threads == 1
    assert during.usable_cpus == pytest.approx(0.9)  # 1 CPU minus 10 % load of others
    assert during.availability == pytest.approx(0.45)
    assert (after.cpu_count_allowed, after.usable_threads) == (2, 2)
    assert real.overrides == [] and real.cpu_count_allowed == 2  # input untouched


def test_power_mode_scales_frequency_or_availability():
    scenario = Scenario.load(SCENARIOS / 'power_mode_5w.yaml')
    with_freq = scenario.apply(two_cpu_snapshot(cpu_freq_current_mhz=[2000.0, 2000.0],
                                                cpu_freq_max_mhz=[2000.0, 2000.0]), 6.0)
    assert with_freq.power_mode == '5W'
    assert with_freq.overrides == ['cpus=2', 'freq_scale=0.65', 'power_mode=5W']
    assert with_freq.cpu_freq_current_mhz == pytest.approx([1300.0, 1300.0])
    assert with_freq.availability == pytest.approx(1.8 / 2 * 0.65)
    without_freq = scenario.apply(two_cpu_snapshot(), 6.0)
    assert without_freq.availability == pytest.approx(1.8 / 2 * 0.65)


def test_load_gpu_and_memory_overrides(tmp_path):
    path = scenario_file(tmp_path, 'name: stress\nsteps:\n  - at: 0\n    set: '
                                   '{cpu_utilization: 0.5, gpu_available: false, '
                                   'memory_available_mb: 9000}\n', 'stress.yaml')
    snap = Scenario.load(path).apply(two_cpu_snapshot(), 0.0)
    assert snap.cpu_utilization == pytest.approx([0.6, 0.6])
    assert snap.usable_cpus == pytest.approx(2 - 1.2) and snap.usable_threads == 1
    assert snap.gpu_present is False and snap.gpu_name == ''
    assert math.isnan(snap.gpu_utilization)
    assert snap.memory_available_mb == 4000.0  # capped at the total
    assert snap.overrides == ['cpu_utilization=0.5', 'gpu_available=false',
                              'memory_available_mb=9000']


def test_sampler_applies_scenario_on_real_readings():
    scenario = Scenario.load(SCENARIOS / 'core_drop.yaml')
    config = SamplerConfig(disabled=('nvml', 'jetson'))
    with ResourceSampler(config, scenario=scenario, now=1000.0) as sampler:
        during = sampler.sample(now=1015.0)
        after = sampler.sample(now=1045.0)
    assert during.overrides == ['cpus=1']
    assert during.cpu_count_allowed == 1 and during.usable_threads == 1
    assert 0.5 <= during.usable_cpus <= 1.0
    assert after.overrides == []
    assert after.cpu_count_allowed == len(os.sched_getaffinity(0))


def test_monitor_command_prints_readers_and_samples(tmp_path, capsys):
    path = scenario_file(tmp_path, 'name: one_core\nsteps:\n  - at: 0\n    set: {cpus: 1}\n',
                         'one_core.yaml')
    assert main(['monitor', '--seconds', '0.4', '--period', '0.2', '--scenario', str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    readers = out[out.index('readers:') + 1:][:len(READER_NAMES)]
    assert [line.split()[0] for line in readers] == list(READER_NAMES)
    samples = [line for line in out if line.rstrip().endswith('cpus=1')]
    assert len(samples) == 2
    assert [float(line.split()[0]) for line in samples] == pytest.approx([0.2, 0.4], abs=0.15)
    assert all(int(line.split()[2]) == 1 for line in samples)  # one thread under cpus=1


def test_monitor_command_rejects_bad_input(tmp_path, capsys):
    path = scenario_file(tmp_path, 'steps:\n  - at: 1\n    set: {cpus: 0}\n')
    assert main(['monitor', '--seconds', '0.1', '--scenario', str(path)]) == 2
    assert f'{path}: steps[0].set.cpus: must be a positive integer' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['monitor', '--period', '0'])
    assert 'must be a positive number of seconds' in capsys.readouterr().err


def test_a_file_that_is_no_scenario_is_named_not_echoed(tmp_path):
    # A password file read as YAML is one long string; the reason once held all of it.
    lines = [f'user{i}:x:{1000 + i}:{1000 + i}:User {i}:/home/user{i}:/bin/sh'
             for i in range(200)]
    path = scenario_file(tmp_path, '\n'.join(lines) + '\n', 'passwd')
    with pytest.raises(ValueError) as error:
        Scenario.load(path)
    message = str(error.value)
    assert message.startswith(f'{path}: top level: must be a mapping')
    assert 'user0:x' in message             # a short excerpt helps to recognise the file
    assert 'user199' not in message and len(message) < len(str(path)) + 200


@pytest.mark.parametrize('text, field', [
    ('steps: "' + 'x' * 5000 + '"\n', 'steps: must be a non-empty list'),
    ('name: [' + ', '.join(['1'] * 3000) + ']\nsteps: []\n', 'name: must be a non-empty string'),
    ('steps:\n  - at: 1\n    set:\n      ? ' + 'k' * 5000 + '\n      : 1\n', 'unknown field'),
    ('steps:\n  - at: 1\n    set: {power_mode: [' + ', '.join(['5'] * 3000) + ']}\n',
     'power_mode: must be a non-empty string'),
])
def test_long_values_are_cut_to_an_excerpt(tmp_path, text, field):
    path = scenario_file(tmp_path, text)
    with pytest.raises(ValueError, match=field) as error:
        Scenario.load(path)
    assert len(str(error.value)) < len(str(path)) + 250


def test_what_is_not_a_regular_small_file_is_refused_unread(tmp_path):
    with pytest.raises(ValueError, match='not a regular file'):
        Scenario.load(tmp_path)                       # a directory
    with pytest.raises(ValueError, match='not a regular file'):
        Scenario.load(os.devnull)                     # a device: never read
    big = tmp_path / 'big.yaml'
    big.write_text('# ' + 'x' * (2 << 20) + '\n')
    with pytest.raises(ValueError, match='big.yaml: too large'):
        Scenario.load(big)


def test_unusable_file_names_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match=r'a\\x00b: not a usable file name'):
        Scenario.load(tmp_path / 'a\0b')
    with pytest.raises(ValueError, match='File name too long') as error:
        Scenario.load('/' + 'a' * 5000)
    assert len(str(error.value)) < 300
