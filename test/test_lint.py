"""Linters as tests, as ROS 2 packages do with ament_flake8/ament_pep257/ament_xmllint."""

from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from catkin_pkg.package import parse_package
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XMLS = [ROOT / 'package.xml', ROOT / 'interfaces' / 'package.xml']


def test_ruff_flake8_and_pep257_rules():
    """Pyflakes, pycodestyle, import order, pep257 docstrings and bugbear (ruff.toml)."""
    targets = [p for p in ('dyn_dnn_ros', 'test', 'bench', 'launch', 'setup.py')
               if (ROOT / p).exists()]
    result = subprocess.run([sys.executable, '-m', 'ruff', 'check', '--no-cache', *targets],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('path', PACKAGE_XMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_xml_is_well_formed_and_valid(path):
    ElementTree.parse(path)  # well-formed XML
    package = parse_package(path)  # format-3 rules (names, e-mails, deps) as ament checks them
    package.validate()
    assert package.package_format == 3
    if shutil.which('xmllint'):
        result = subprocess.run(['xmllint', '--noout', str(path)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stderr


def test_python_package_and_interfaces_agree():
    main = parse_package(ROOT / 'package.xml')
    interfaces = parse_package(ROOT / 'interfaces' / 'package.xml')
    assert main.name == 'dyn_dnn_ros' and interfaces.name == 'dyn_dnn_ros_interfaces'
    assert main.version == interfaces.version
    assert 'dyn_dnn_ros_interfaces' in {d.name for d in main.build_depends + main.exec_depends}
    assert main.get_build_type() == 'ament_python'
    assert interfaces.get_build_type() == 'ament_cmake'
