"""Camera frames that reach the perception node, by Fast DDS transport setting.

A camera driver publishes ``sensor_msgs/Image`` best effort (SensorData QoS)
from its own process; the perception node (its default ``qos:=sensor_data``)
classifies what arrives and answers every image it classifies. This bench
starts ``perception_node`` as a separate process, as ``launch/*.launch.py``
do, and plays the camera from a second process: N frames per size at 10 Hz,
then counts per size

- ``classified``: results with status OK (the fraction printed is of frames sent);
- ``received``: frames the node's subscription got (its ``received`` counter on
  ``/diagnostics``); ``sent - received`` never arrived;
- ``superseded``: received but replaced by a newer frame before inference
  started (the node keeps one image waiting), so not lost by the transport;
- the node's per-image latency (median, ms), to see whether it keeps up.

Settings, each in fresh processes (Fast DDS reads its configuration when a
process's first ROS context starts):

- ``none``: Fast DDS defaults in both processes (FASTDDS_* variables removed);
- ``node_only``: the shipped profile (config/fastdds/large_images.xml) in the
  node's process only: what ``ros2 launch`` gives the nodes it starts, beside a
  camera driver started elsewhere with Fast DDS's defaults;
- ``shipped``: the shipped profile in both processes (node and camera);
- ``camera_only``: the shipped profile in the camera's process only;
- ``large_data``: FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA in both processes.

The first three run by default (--settings chooses).

    .venv/bin/python bench/camera_qos.py --frames 50
    .venv/bin/python bench/camera_qos.py --frames 20 --sizes 640x480 --settings none shipped

The run uses its own ROS domain (random, 101-199, unless --domain) and
namespace, so it neither sees nor disturbs a running system.
"""

import argparse
import json
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # a source checkout without an installed package
    sys.path.insert(0, str(ROOT))

# setting -> which processes load the shipped profile, or other FASTDDS_* variables
SETTINGS = ('none', 'node_only', 'camera_only', 'shipped', 'large_data')
DEFAULT_SETTINGS = ('none', 'node_only', 'shipped')
DEFAULT_SIZES = ('640x480', '1280x720', '1920x1080')
NAMESPACE = '/camera_qos_bench'


def parse_size(text):
    width, height = (int(v) for v in text.lower().split('x'))
    return width, height


def transport_env(setting, side, profile):
    """The FASTDDS_* variables of one process (``side``: 'node' or 'camera')."""
    if setting == 'large_data':
        return {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}
    if setting == 'shipped' or setting == f'{side}_only':
        return {'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)}
    return {}


def base_env(domain):
    env = {k: v for k, v in os.environ.items()
           if k not in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS',
                        'RMW_FASTRTPS_USE_QOS_FROM_XML')}
    env['ROS_DOMAIN_ID'] = str(domain)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


def node_executable():
    """``perception_node``: beside this Python (a venv), in the ament prefix (colcon), on PATH."""
    candidates = [Path(sys.executable).parent / 'perception_node']
    try:
        from ament_index_python.packages import get_package_prefix
        candidates.append(Path(get_package_prefix('dyn_dnn_ros')) / 'lib' / 'dyn_dnn_ros'
                          / 'perception_node')
    except (ImportError, LookupError, OSError):   # not installed with colcon, not sourced
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    found = shutil.which('perception_node')
    return [found] if found else [sys.executable, '-m', 'dyn_dnn_ros.ros.nodes.perception']


def node_command(extra=()):
    """``perception_node --ros-args ...`` as the launch file runs it (SensorData QoS).

    No manager runs here to send the node a setting, so it subscribes at once
    (``wait_for_setting_s:=0``) instead of after waiting for one.
    """
    from dyn_dnn_ros.share import config_path
    return node_executable() + [
        '--ros-args', '-r', '__node:=perception_node', '-r', f'__ns:={NAMESPACE}',
        '--params-file', str(config_path('dyn_dnn_ros.yaml')),
        '-p', 'qos:=sensor_data', '-p', 'device:=cpu', '-p', 'wait_for_setting_s:=0.0',
        *extra]


# -- the camera process ---------------------------------------------------------------
class Camera:
    """Publishes frames (SensorData QoS) and collects the node's results and counters."""

    def __init__(self, namespace=NAMESPACE):
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from dyn_dnn_ros.ros.spin import NodeSpinner
        from dyn_dnn_ros_interfaces.msg import ClassificationResult
        self.rclpy, self.Image = rclpy, Image
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('camera', namespace=namespace, context=self.context)
        self.publisher = self.node.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.lock = threading.Lock()
        self.results = {}      # frame id -> (status, latency_ms)
        self.counters = None   # (stamp s, received, superseded) of the latest diagnostics
        self.results_sub = self.node.create_subscription(
            ClassificationResult, 'classification_results', self._on_result, 1000)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 100)
        self.ok_status = ClassificationResult.STATUS_OK
        self.spinner = NodeSpinner(context=self.context)
        self.spinner.add(self.node)
        self.spinner.start()

    def _on_result(self, msg):
        with self.lock:
            self.results[msg.header.frame_id] = (msg.status, msg.latency_ms)

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if not status.name.startswith('perception_node'):
                continue
            values = {kv.key: kv.value for kv in status.values}
            if 'received' in values and 'superseded' in values:
                with self.lock:
                    self.counters = (time.monotonic(), int(values['received']),
                                     int(values['superseded']))

    def wait_ready(self, timeout):
        """Until the node's image subscription and result publisher are matched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.publisher.get_subscription_count() > 0
                    and self.results_sub.get_publisher_count() > 0):
                return True
            time.sleep(0.05)
        return False

    def counters_after(self, moment, timeout=5.0):
        """The node's (received, superseded) from a diagnostics message later than ``moment``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                counters = self.counters
            if counters is not None and counters[0] > moment:
                return counters[1:]
            time.sleep(0.05)
        return None

    def play(self, width, height, frames, rate_hz, settle_s):
        """Publish ``frames`` images of one size at ``rate_hz``; counts for that size."""
        import numpy as np
        rng = np.random.default_rng(width * height)
        data = rng.integers(0, 256, size=width * height * 3, dtype=np.uint8).tobytes()
        before = self.counters_after(time.monotonic() - 0.1)
        prefix = f'{width}x{height}/'
        start = time.monotonic()
        for i in range(frames):
            delay = start + i / rate_hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = self.Image(width=width, height=height, encoding='rgb8', step=width * 3)
            msg.data = data
            msg.header.frame_id = f'{prefix}{i}'
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.publisher.publish(msg)
        sent_at = time.monotonic()
        time.sleep(settle_s)   # the last frames' results, and a diagnostics period
        after = self.counters_after(sent_at + 0.2)
        with self.lock:
            mine = [v for k, v in self.results.items() if k.startswith(prefix)]
        classified = [latency for status, latency in mine if status == self.ok_status]
        row = {'size': f'{width}x{height}', 'sent': frames, 'classified': len(classified),
               'answered': len(mine),
               'latency_ms_p50': float(np.median(classified)) if classified else None}
        if before is not None and after is not None:
            row['received'] = after[0] - before[0]
            row['superseded'] = after[1] - before[1]
        return row

    def close(self):
        self.spinner.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def camera_main(sizes, frames, rate_hz, settle_s, ready_timeout):
    """The camera process: waits for the node, plays every size, prints one JSON line."""
    started = time.monotonic()
    camera = Camera()
    try:
        if not camera.wait_ready(ready_timeout):
            print(json.dumps({'error': f'perception node not matched within {ready_timeout} s'}))
            return 1
        ready_s = time.monotonic() - started
        time.sleep(1.0)   # discovery of the remaining endpoints settles
        rows = [camera.play(*parse_size(size), frames, rate_hz, settle_s) for size in sizes]
        print(json.dumps({'ready_s': ready_s, 'rows': rows}), flush=True)
        return 0
    finally:
        camera.close()


# -- one setting: node process + camera process -----------------------------------
def run_setting(setting, sizes, frames, rate_hz, domain, profile, settle_s=2.5,
                ready_timeout=120.0, node_log=None):
    """Start the node and the camera with ``setting``'s transports; the camera's report."""
    env = base_env(domain)
    node_env = dict(env, **transport_env(setting, 'node', profile))
    camera_env = dict(env, **transport_env(setting, 'camera', profile))
    node = subprocess.Popen(node_command(), env=node_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        camera = subprocess.run(
            [sys.executable, __file__, '--camera', '--frames', str(frames), '--rate', str(rate_hz),
             '--settle', str(settle_s), '--ready-timeout', str(ready_timeout), '--sizes', *sizes],
            env=camera_env, capture_output=True, text=True, timeout=ready_timeout + 60
            + len(sizes) * (frames / rate_hz + settle_s + 10))
        lines = [line for line in camera.stdout.splitlines() if line.startswith('{')]
        report = json.loads(lines[-1]) if lines else {
            'error': f'camera exited {camera.returncode}: {camera.stderr[-2000:]}'}
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
        try:
            out, _ = node.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            out, _ = node.communicate()
    if node_log is not None:
        node_log.write(f'--- {setting} ---\n{out}')
    report['setting'] = setting
    return report


def format_table(reports, sizes):
    """Frames classified per size (rows) and setting (columns), with the counters."""
    settings = [r['setting'] for r in reports]
    lines = ['classified / sent (received, superseded; node latency p50) per setting',
             f'{"size":<10}' + ''.join(f'{s:>34}' for s in settings)]
    for size in sizes:
        cells = []
        for report in reports:
            row = next((r for r in report.get('rows', []) if r['size'] == size), None)
            if row is None:
                cells.append(f'{report.get("error", "no data")[:33]:>34}')
                continue
            fraction = row['classified'] / row['sent']
            counters = (f'r {row["received"]}, s {row["superseded"]}'
                        if 'received' in row else 'no diagnostics')
            latency = (f'{row["latency_ms_p50"]:.0f} ms' if row['latency_ms_p50'] is not None
                       else '-')
            cells.append(f'{row["classified"]:>3}/{row["sent"]:<3} {fraction:4.0%} '
                         f'({counters}; {latency})')
        lines.append(f'{size:<10}' + ''.join(f'{c:>34}' for c in cells))
    lines.append('node start to first match (s): ' + ', '.join(
        f'{r["setting"]} {r["ready_s"]:.1f}' for r in reports if 'ready_s' in r))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=50, help='frames per size')
    parser.add_argument('--rate', type=float, default=10.0, help='frames per second')
    parser.add_argument('--sizes', nargs='+', default=list(DEFAULT_SIZES),
                        help='WIDTHxHEIGHT rgb8 (default: %(default)s)')
    parser.add_argument('--settings', nargs='+', default=list(DEFAULT_SETTINGS),
                        choices=SETTINGS)
    parser.add_argument('--profile', default=None,
                        help='Fast DDS profile of the "shipped" setting '
                             '(default: config/fastdds/large_images.xml)')
    parser.add_argument('--domain', type=int, default=None,
                        help='ROS_DOMAIN_ID of the run (default: random 101-199)')
    parser.add_argument('--json', default=None, help='also write the reports here')
    parser.add_argument('--node-log', default=None, help="write the node's output here")
    parser.add_argument('--camera', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--settle', type=float, default=2.5, help=argparse.SUPPRESS)
    parser.add_argument('--ready-timeout', type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for size in args.sizes:
        parse_size(size)
    if args.camera:
        return camera_main(args.sizes, args.frames, args.rate, args.settle, args.ready_timeout)

    from dyn_dnn_ros.ros.qos import shipped_transport_profile
    profile = args.profile or shipped_transport_profile()
    domain = args.domain if args.domain is not None else random.SystemRandom().randint(101, 199)
    print(f'ROS_DOMAIN_ID={domain}; {args.frames} frames per size at {args.rate:g} Hz, '
          f'SensorData QoS; profile {profile}', flush=True)
    reports = []
    log = open(args.node_log, 'w') if args.node_log else None
    try:
        for setting in args.settings:
            report = run_setting(setting, args.sizes, args.frames, args.rate, domain, profile,
                                 settle_s=args.settle, ready_timeout=args.ready_timeout,
                                 node_log=log)
            reports.append(report)
            print(f'{setting}: {json.dumps(report)}', flush=True)
    finally:
        if log is not None:
            log.close()
    print(format_table(reports, args.sizes))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
