"""Launch files, parameter files and package.xml agree with what setup installs.

`launch`/`launch_ros` are not installable here, so the launch files are read
as Python syntax: every executable of this package they start must be a
console script, every config file they name must exist and be installed,
every launch argument they use must be declared and described, and a node of
another package must be an exec_depend that a launch argument can switch off.
package.xml must declare, as rosdep keys, what the launch files and the
package's code import (a host's `rosdep install` then brings it), and
docs/ros_host.md must name exactly the launch files' arguments.
"""

import ast
from glob import glob
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import rclpy
from rclpy.parameter import Parameter
import yaml

from dyn_dnn_ros.ros.nodes import manager, perception, resource_monitor, translation
from dyn_dnn_ros.ros.nodes.resource_monitor import ResourceMonitorNode
from dyn_dnn_ros.runtime import worker_parameters

NODE_NAMES = [resource_monitor.NODE_NAME, translation.NODE_NAME, perception.NODE_NAME,
              manager.NODE_NAME]

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
PACKAGE = 'dyn_dnn_ros'
ROS_HOST_DOC = ROOT / 'docs' / 'ros_host.md'

# Third-party modules imported under dyn_dnn_ros/ -> rosdep key that installs them.
# Keys checked against ros/rosdistro rosdep/python.yaml (python3-* keys) and the
# ROS distribution (package names). There is no `python3-torch` key: torch comes
# only as the pip key python3-pytorch-pip.
ROSDEP_KEYS = {
    'yaml': 'python3-yaml',
    'numpy': 'python3-numpy',
    'scipy': 'python3-scipy',
    'sklearn': 'python3-sklearn',
    'matplotlib': 'python3-matplotlib',
    'tqdm': 'python3-tqdm',
    'torch': 'python3-pytorch-pip',
    'rclpy': 'rclpy',
    'std_msgs': 'std_msgs',
    'sensor_msgs': 'sensor_msgs',
    'diagnostic_msgs': 'diagnostic_msgs',
    'diagnostic_updater': 'diagnostic_updater',
    'rcl_interfaces': 'rcl_interfaces',
    'ament_index_python': 'ament_index_python',
    'dyn_dnn_ros_interfaces': 'dyn_dnn_ros_interfaces',
    'launch': 'launch',
    'launch_ros': 'launch_ros',
}
# Modules without any rosdep key (no system-package key, no -pip key) -> the pip
# distribution to install: package.xml says so in a comment and docs/ros_host.md
# gives the pip command.
PIP_ONLY = {
    'sentencepiece': 'sentencepiece',
    'ctranslate2': 'ctranslate2',
    'sacrebleu': 'sacrebleu',
    'safetensors': 'safetensors',
    'pynvml': 'nvidia-ml-py',
    'jtop': 'jetson-stats',
}


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


def calls(tree, name):
    """Calls of ``name(...)`` (a bare name, as the launch files import them)."""
    return [n for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, 'id', None) == name]


def first_string(call):
    if call.args and isinstance(call.args[0], ast.Constant) and \
            isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def declared_arguments(tree):
    """DeclareLaunchArgument name -> its description ('' where there is none)."""
    declared = {}
    for call in calls(tree, 'DeclareLaunchArgument'):
        description = keyword(call, 'description')
        declared[first_string(call)] = description if isinstance(description, str) else ''
    return declared


def used_arguments(node):
    return {first_string(call) for call in calls(node, 'LaunchConfiguration')}


def package_xml_dependencies(kinds=('depend', 'exec_depend')):
    root = ElementTree.parse(ROOT / 'package.xml').getroot()
    return {element.text.strip() for kind in kinds for element in root.findall(kind)}


def package_xml_comments():
    return ' '.join(re.findall(r'<!--(.*?)-->', (ROOT / 'package.xml').read_text(), re.S))


def imported_modules(paths):
    """Top-level modules that ``paths`` import (absolute imports and import_module('x'))."""
    modules = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == \
                    'import_module' and first_string(node):
                names = [first_string(node)]
            for name in names:
                modules.setdefault(name.split('.')[0], set()).add(str(path.relative_to(ROOT)))
    return modules


def third_party(modules):
    return {name: where for name, where in modules.items()
            if name not in sys.stdlib_module_names and name != PACKAGE}


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


def installed_share_files():
    """Files setup.py's share_files(...) patterns install under share/dyn_dnn_ros."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    patterns = [arg.value for call in calls(tree, 'share_files') for arg in call.args
                if isinstance(arg, ast.Constant)]
    assert patterns, 'setup.py: no share_files(...) patterns found'
    return {Path(p).as_posix() for pattern in patterns
            for p in glob(pattern, root_dir=ROOT, recursive=True) if (ROOT / p).is_file()}


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_config_files_the_launch_file_names_exist_and_are_installed(path):
    """PathJoinSubstitution([config, 'a', 'b.xml']) names config/a/b.xml; setup installs it."""
    tree = ast.parse(path.read_text())
    installed = installed_share_files()
    named = []
    for call in calls(tree, 'PathJoinSubstitution'):
        parts = call.args[0].elts if call.args and isinstance(call.args[0], ast.List) else []
        if parts and getattr(parts[0], 'id', None) == 'config' and \
                all(isinstance(p, ast.Constant) for p in parts[1:]):
            named.append('/'.join(['config'] + [p.value for p in parts[1:]]))
    assert named, f'{path.name} names no config file'
    for relative in named:
        assert (ROOT / relative).is_file(), f'{path.name}: {relative} does not exist'
        assert relative in installed, f'{path.name}: setup.py does not install {relative}'


def test_the_generated_libraries_and_reduced_spaces_are_installed():
    """A node on a ROS host finds its default library in share/.../config/generated."""
    generated = {p.relative_to(ROOT).as_posix()
                 for p in (ROOT / 'config' / 'generated').glob('*.yaml')}
    assert 'config/generated/operating_points_translation_cpu.yaml' in generated
    assert generated <= installed_share_files()


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_every_launch_argument_used_is_declared_with_a_description(path):
    tree = ast.parse(path.read_text())
    declared = declared_arguments(tree)
    undeclared = used_arguments(tree) - set(declared)
    assert not undeclared, f'{path.name}: LaunchConfiguration of undeclared {sorted(undeclared)}'
    undescribed = [name for name, description in declared.items() if not description.strip()]
    assert not undescribed, f'{path.name}: DeclareLaunchArgument without description: ' \
                            f'{undescribed}'


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_nodes_of_other_packages_are_exec_depends_a_launch_argument_can_switch_off(path):
    """A node of another package is an exec_depend, and a launch argument leaves it out.

    A host without the package gets `package '<name>' not found` after the other
    nodes started, and those stay as orphans.
    """
    tree = ast.parse(path.read_text())
    declared = declared_arguments(tree)
    dependencies = package_xml_dependencies()
    for call in calls(tree, 'Node'):
        package = keyword(call, 'package')
        assert isinstance(package, str), f'{path.name}: Node with a non-literal package'
        if package == PACKAGE:
            continue
        assert package in dependencies, f'package.xml: {package} ({path.name}) is no exec_depend'
        condition = next((kw.value for kw in call.keywords if kw.arg == 'condition'), None)
        assert condition is not None, f'{path.name}: {package} node has no condition='
        switches = used_arguments(condition) & set(declared)
        assert switches, f'{path.name}: the condition of the {package} node names no ' \
                         'declared launch argument'


def test_what_the_launch_files_import_is_an_exec_depend():
    modules = third_party(imported_modules(LAUNCH_FILES))
    assert {'launch', 'launch_ros'} <= set(modules)
    missing = {name: sorted(where) for name, where in modules.items()
               if ROSDEP_KEYS.get(name) not in package_xml_dependencies()}
    assert not missing, f'package.xml lacks exec_depends for {missing}'


def test_every_third_party_module_of_the_package_has_its_rosdep_key_or_pip_note():
    modules = third_party(imported_modules(sorted((ROOT / PACKAGE).rglob('*.py'))))
    unknown = {name: sorted(where)[:3] for name, where in modules.items()
               if name not in ROSDEP_KEYS and name not in PIP_ONLY}
    assert not unknown, (f'imports without a known rosdep key: {unknown}; look the module up '
                         'in ros/rosdistro rosdep/python.yaml and add it to ROSDEP_KEYS (and '
                         'package.xml), or to PIP_ONLY (and package.xml\'s comment, '
                         'docs/ros_host.md) where no key exists')
    dependencies = package_xml_dependencies()
    missing = {ROSDEP_KEYS[name]: sorted(where)[:3] for name, where in modules.items()
               if name in ROSDEP_KEYS and ROSDEP_KEYS[name] not in dependencies}
    assert not missing, f'package.xml lacks exec_depends {missing}'
    comments, doc = package_xml_comments(), ROS_HOST_DOC.read_text()
    pip_lines = ' '.join(line for line in doc.splitlines() if re.search(r'pip3? install', line))
    for name in set(modules) & set(PIP_ONLY):
        distribution = PIP_ONLY[name]
        assert re.search(rf'\b{re.escape(distribution)}\b', comments), \
            f'package.xml: say in a comment that {distribution} has no rosdep key'
        assert re.search(rf'\b{re.escape(distribution)}\b', pip_lines), \
            f'docs/ros_host.md: no pip install line for {distribution}'


def test_every_python_key_in_package_xml_is_real_and_used():
    """A python3-* key must exist in rosdep (python3-torch does not) and serve an import."""
    modules = third_party(imported_modules(sorted((ROOT / PACKAGE).rglob('*.py'))))
    wanted = {ROSDEP_KEYS[name] for name in modules if name in ROSDEP_KEYS}
    python_keys = {key for key in package_xml_dependencies() if key.startswith('python3-')}
    unknown = python_keys - set(ROSDEP_KEYS.values())
    assert not unknown, f'package.xml: {sorted(unknown)} are not known rosdep keys'
    unused = python_keys - wanted
    assert not unused, f'package.xml: nothing under {PACKAGE}/ imports what {sorted(unused)} ' \
                       'install'


def documented_arguments():
    """Launch file -> arguments from docs/ros_host.md's table under '## Launch arguments'."""
    text = ROS_HOST_DOC.read_text()
    section = text.split('## Launch arguments', 1)[1].split('\n## ', 1)[0]
    documented = {path.name: set() for path in LAUNCH_FILES}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) < 2 or not cells[0].startswith('`'):
            continue
        name = cells[0].strip('`')
        files = re.findall(r'[\w]+\.launch\.py', cells[1])
        assert files, f'docs/ros_host.md: argument {name} names no launch file'
        for launch_file in files:
            assert launch_file in documented, f'docs/ros_host.md: no launch/{launch_file}'
            documented[launch_file].add(name)
    return documented, text


def test_ros_host_doc_names_exactly_the_launch_arguments():
    documented, text = documented_arguments()
    for path in LAUNCH_FILES:
        declared = set(declared_arguments(ast.parse(path.read_text())))
        assert documented[path.name] == declared, (
            f'{path.name}: declared but not in docs/ros_host.md: '
            f'{sorted(declared - documented[path.name])}; documented but not declared: '
            f'{sorted(documented[path.name] - declared)}')
    # `ros2 launch dyn_dnn_ros <file> name:=value` examples use only that file's arguments.
    for launch_file, rest in re.findall(r'ros2 launch dyn_dnn_ros (\S+)([^\n`]*)', text):
        assert launch_file in documented, f'docs/ros_host.md: no launch/{launch_file}'
        for name in re.findall(r'(\w+):=', rest):
            assert name in documented[launch_file], \
                f'docs/ros_host.md: {launch_file} has no argument {name}'


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
            # Declared by name, or by the constant runtime/worker_parameters.py gives it.
            spellings = {f"ParameterSpec('{parameter}'"} | {
                f'ParameterSpec({constant},' for constant, value in vars(worker_parameters).items()
                if constant.isupper() and value == parameter}
            assert any(s in source for s in spellings), f'{node_name}.{parameter}'


def test_readme_names_exactly_the_bringup_arguments():
    """The README's table of bringup.launch.py's arguments is what the file declares."""
    text = (ROOT / 'README.md').read_text()
    table = text.split('`bringup.launch.py` starts', 1)[1].split('\n\n', 2)[1]
    listed = {cells[0].strip('` ') for line in table.splitlines()
              if (cells := line.strip('|').split('|')) and cells[0].strip().startswith('`')}
    declared = set(declared_arguments(ast.parse((ROOT / 'launch' / 'bringup.launch.py')
                                               .read_text())))
    assert listed == declared
