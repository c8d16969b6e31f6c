"""bench/system_processes.py: its figures, and a short run of the system as separate processes."""

import json
import math
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

from bench_scripts import BENCH_DIR, load_bench
import pytest

from dyn_dnn_ros.demo.metrics import ResultRecord

system_processes = load_bench('system_processes')
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = BENCH_DIR / 'system_processes.py'


def record(rid, received_s, status, point):
    return ResultRecord(rid, 0.0, received_s, status, point, 10.0, 0.0, 80.0, '', '')


def alive(pid):
    """Running (a zombie has ended: only its exit status is left)."""
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != 'Z'


def test_shares_switches_and_burn_reaction():
    assert system_processes.shares([2, 1, 2, 2]) == {'1': 0.25, '2': 0.75}
    assert system_processes.shares([]) == {}
    # Arrival order counts; results that ran no inference carry no point.
    results = [record('a', 1.0, 'ok', 'p1'), record('c', 3.0, 'partial', 'p2'),
               record('b', 2.0, 'ok', 'p1'), record('d', 4.0, 'dropped', 'p1'),
               record('e', 5.0, 'lost', ''), record('f', 6.0, 'truncated', 'p1')]
    assert system_processes.point_switches(results) == 2
    samples = [(0.0, 2), (0.9, 2), (1.2, 2), (1.4, 1), (3.1, 1), (4.5, 2)]
    reaction = system_processes.burn_reaction(samples, 1.0, 3.0)
    assert reaction['usable_threads_before'] == 2
    assert reaction['dropped_to_1_after_s'] == pytest.approx(0.4)
    assert reaction['back_after_stop_s'] == pytest.approx(1.5)
    never = system_processes.burn_reaction([(0.0, 2), (1.5, 2), (3.5, 1)], 1.0, 3.0)
    assert never['dropped_to_1_after_s'] == 'never'   # only after the burner stopped
    assert never['back_after_stop_s'] == 'never'
    assert system_processes.burn_reaction([(0.0, 1)], 1.0, 3.0)['dropped_to_1_after_s'] == \
        'already 1'
    assert system_processes.json_ready({'a': (math.nan, 1.0), 2: math.inf}) == \
        {'a': [None, 1.0], '2': None}


def run_bench(out, *extra, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), '--out', str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ros
def test_short_run_with_burn_and_restart_reports_every_figure_and_leaves_no_process(tmp_path):
    out = tmp_path / 'system.json'
    # The burn (0.5-2 s) ends before the kill (2.5 s); the requests sent while no worker
    # listened are never answered, so the drain always runs its full time: a short one.
    done = run_bench(out, '--seconds', '6', '--rate', '6', '--burn', '1.5', '--burn-at', '0.5',
                     '--restart', '--restart-at', '2.5', '--restart-wait', '10', '--drain', '2',
                     '--stop-grace', '5')
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'complete_in_budget' in done.stdout and 'restart' in done.stdout
    data = json.loads(out.read_text())
    figures = data['figures']
    outcomes = figures['outcomes']
    assert set(outcomes) == {'complete_in_budget', 'cut_at_deadline', 'late', 'dropped',
                             'failed'}
    assert sum(outcomes.values()) == pytest.approx(1.0)
    assert figures['requests_sent'] >= 34   # 6/s for 6 s (more if the restart needed it)
    assert len(data['results']) == figures['requests_sent']
    for share in ('usable_threads_share', 'result_threads_share'):
        assert sum(figures[share].values()) == pytest.approx(1.0), share
    assert isinstance(figures['operating_point_switches'], int)
    burn = figures['burn']
    for key in ('usable_threads_before', 'dropped_to_1_after_s', 'back_after_stop_s'):
        assert key in burn
    restart = figures['restart']
    for key in ('manager_status_left_ok_after_s', 'new_serving_after_start_s',
                'first_new_inference_at_managers_setting', 'manager_point',
                'unanswered_while_no_worker_listened', 'sent_while_no_worker_listened'):
        assert key in restart
    # The new instance came up and answered (the stream waits for it).
    assert isinstance(restart['new_serving_after_start_s'], float)
    assert restart['first_new_result'] is not None
    assert restart['old_pid'] != restart['new_pid']
    # Every process the bench started has ended: nodes (killed one included) and burner.
    assert len(figures['pids']) == 5
    assert not [pid for pid in figures['pids'] if alive(pid)]
    assert figures['exit_codes'][f'translation_node:{restart["old_pid"]}'] == -signal.SIGKILL


@pytest.mark.ros
def test_ctrl_c_stops_the_bench_and_every_node(tmp_path):
    bench = subprocess.Popen([sys.executable, str(SCRIPT), '--out', str(tmp_path / 'x.json'),
                              '--seconds', '60', '--stop-grace', '5'],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lines = []
    try:
        deadline = time.monotonic() + 90
        for line in bench.stdout:   # 'up: ...' names the pids, then the stream starts
            lines.append(line)
            if line.startswith('stream:') or time.monotonic() > deadline:
                break
        pids = [int(p) for p in re.findall(r'pid (\d+)', ''.join(lines))]
        assert len(pids) == 3, ''.join(lines)
        time.sleep(1.0)
        bench.send_signal(signal.SIGINT)
        output, _ = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
    assert bench.returncode == 130, ''.join(lines) + output
    assert 'interrupted' in output
    assert not (tmp_path / 'x.json').exists()
    assert not [pid for pid in pids if alive(pid)]
