"""`dyn-dnn-ros bringup` starts every node in one process from ros__parameters files."""

import os
from pathlib import Path
import subprocess
import sys

import pytest
from translation_fixtures import SPM, write_tiny_model
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ros
def test_bringup_runs_all_nodes_in_one_process(tmp_path):
    model, library = write_tiny_model(tmp_path)
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({
        '/**/translation_node': {'ros__parameters': {
            'model_path': str(model), 'spm_path': str(SPM), 'library_path': str(library)}},
        '/**/dnn_manager': {'ros__parameters': {'translation_library': str(library)}},
    }))
    result = subprocess.run(
        [sys.executable, '-m', 'dyn_dnn_ros.cli', 'bringup', '--params-file',
         str(ROOT / 'config' / 'dyn_dnn_ros.yaml'), '--params-file', str(params),
         '--seconds', '3', '--namespace', '/bringup_test'],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST'))
    assert result.returncode in (0, 1), result.stderr
    running = next(line for line in result.stdout.splitlines() if 'running' in line)
    for node in ('resource_monitor', 'translation_node', 'dnn_manager'):
        assert node in running
    # The perception node starts when its library has been built (see the README).
    if 'perception_node' not in running:
        assert 'perception_node not started' in result.stderr


def test_bringup_reports_a_missing_parameter_file(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'dyn_dnn_ros.cli', 'bringup', '--params-file',
         str(tmp_path / 'nope.yaml'), '--seconds', '1'],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'nope.yaml' in result.stderr
