"""Launch files and parameter files agree with what setup installs.

`launch`/`launch_ros` are not installable here, so the launch files are read
as Python syntax: every executable of this package they start must be a
console script, and every config file they name must exist.
"""

import ast
from pathlib import Path
import re

import pytest
import rclpy
from rclpy.parameter import Parameter
import yaml

from dyn_dnn_ros.nodes import manager, perception, resource_monitor, translation
from dyn_dnn_ros.nodes.resource_monitor import ResourceMonitorNode

NODE_NAMES = [resource_monitor.NODE_NAME, translation.NODE_NAME, perception.NODE_NAME,
              manager.NODE_NAME]

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))


def console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.match(r'^\s*([\w-]+)\s*=\s*[\w.]+:\w+\s*$', node.value)
            if match:
                scripts.add(match.group(1))
    return scripts


def keyword(call, name):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_there_are_launch_files():
    assert LAUNCH_FILES


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_installed_executables_and_files(path):
    tree = ast.parse(path.read_text())
    scripts = console_scripts()
    started = []
    for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call)]:
        if getattr(call.func, 'id', None) == 'Node' and keyword(call, 'package') == 'dyn_dnn_ros':
            executable = keyword(call, 'executable')
            assert executable in scripts, f'{path.name}: {executable} is not a console script'
            started.append(executable)
    assert started, f'{path.name} starts no dyn_dnn_ros node'
    for constant in [n for n in ast.walk(tree) if isinstance(n, ast.Constant)]:
        if isinstance(constant.value, str) and constant.value.endswith('.yaml'):
            assert (ROOT / 'config' / constant.value).is_file(), constant.value
    assert 'def generate_launch_description' in path.read_text()


def parameter_files():
    return [p for p in sorted((ROOT / 'config').glob('*.yaml'))
            if any('ros__parameters' in v for v in (yaml.safe_load(p.read_text()) or {}).values()
                   if isinstance(v, dict))]


def test_parameter_files_use_the_ros_parameters_layout():
    files = parameter_files()
    assert {p.name for p in files} >= {'resource_monitor.yaml', 'diagnostic_aggregator.yaml',
                                       'dyn_dnn_ros.yaml'}
    for path in files:
        for node_name, section in yaml.safe_load(path.read_text()).items():
            assert set(section) == {'ros__parameters'}, f'{path.name}: {node_name}'


def test_aggregator_groups_every_node_of_the_package():
    analyzers = yaml.safe_load((ROOT / 'config' / 'diagnostic_aggregator.yaml').read_text())
    prefixes = [prefix for analyzer in analyzers['analyzers']['ros__parameters'].values()
                if isinstance(analyzer, dict) for prefix in analyzer['startswith']]
    for node_name in NODE_NAMES:
        assert any(f'{node_name}: status'.startswith(p) for p in prefixes), node_name


def test_monitor_reads_its_parameter_file():
    context = rclpy.Context()
    rclpy.init(context=context, args=['--ros-args', '--params-file',
                                      str(ROOT / 'config' / 'resource_monitor.yaml'),
                                      '-p', 'rate_hz:=7.0'])
    try:
        node = ResourceMonitorNode(context=context,
                                   parameter_overrides=[Parameter('frame_id', value='robot')])
        assert node.params.value('rate_hz') == 7.0
        assert node.params.value('frame_id') == 'robot'
        assert node.get_parameter('diagnostic_updater.period').value == 1.0
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_system_parameter_file_names_only_declared_parameters():
    """Every parameter in config/dyn_dnn_ros.yaml is one its node declares."""
    import inspect
    sections = yaml.safe_load((ROOT / 'config' / 'dyn_dnn_ros.yaml').read_text())
    # '/**/name' matches the node in any namespace, as the bringup's --namespace needs.
    assert set(sections) == {f'/**/{name}' for name in NODE_NAMES}
    modules = {resource_monitor.NODE_NAME: resource_monitor, translation.NODE_NAME: translation,
               perception.NODE_NAME: perception, manager.NODE_NAME: manager}
    for key, section in sections.items():
        node_name = key.removeprefix('/**/')
        source = inspect.getsource(modules[node_name])
        for parameter in section['ros__parameters']:
            assert f"ParameterSpec('{parameter}'" in source, f'{node_name}.{parameter}'
