"""QoS profiles chosen by name from a parameter, and the transport set-up for large images.

Camera images of 640x480 rgb8 (0.92 MB) and larger published best effort
(SensorData QoS) by another process mostly never arrive with Fast DDS's
default transports: the publisher's shared-memory segment (0.5 MB by
default) holds too few of a sample's fragments while the subscriber reads
them, and fragments that are overwritten lose the whole sample. The profile
shipped as ``config/fastdds/large_images.xml`` keeps the same transports
(shared memory and UDPv4) with a 16 MB segment. What matters is the
*publisher's* segment: the camera driver's process needs the profile too.
``bench/camera_qos.py`` and ``docs/ros_host.md`` give the measurements.
"""

import os

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

QOS_CHOICES = ('sensor_data', 'reliable', 'best_effort')

# Fast DDS reads these when the first ROS context of a process starts.
PROFILES_FILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
BUILTIN_TRANSPORTS_VARIABLE = 'FASTDDS_BUILTIN_TRANSPORTS'
TRANSPORT_VARIABLES = (PROFILES_FILE_VARIABLE, BUILTIN_TRANSPORTS_VARIABLE)
TRANSPORT_PROFILE = ('fastdds', 'large_images.xml')   # under config/


def qos_profile(name: str, depth: int = 10) -> QoSProfile:
    """``sensor_data`` (best effort, keep last 5), ``reliable`` or ``best_effort``."""
    if name == 'sensor_data':
        return qos_profile_sensor_data
    if name == 'reliable':
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE)
    if name == 'best_effort':
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.BEST_EFFORT)
    raise ValueError(f'qos: must be one of {", ".join(QOS_CHOICES)}; got {name!r}')


def shipped_transport_profile():
    """Path of the shipped Fast DDS profile (shared memory with a 16 MB segment, UDPv4)."""
    from dyn_dnn_ros.share import config_path
    return config_path(*TRANSPORT_PROFILE)


def transport_environment(environ=None, profile=None):
    """Variables to add to ``environ`` so Fast DDS loads a transport profile.

    ``profile=None`` (the default) asks for the shipped profile unless the
    environment already chose Fast DDS's transports (``FASTDDS_DEFAULT_PROFILES_FILE``
    or ``FASTDDS_BUILTIN_TRANSPORTS`` set and not empty): then the user's
    setting wins and nothing is added. ``profile=''`` adds nothing; a path
    given explicitly is used whatever the environment holds.
    """
    environ = os.environ if environ is None else environ
    if profile == '':
        return {}
    if profile is None:
        if any(environ.get(name) for name in TRANSPORT_VARIABLES):
            return {}
        profile = shipped_transport_profile()
    return {PROFILES_FILE_VARIABLE: str(profile)}


def describe_transports(environ=None):
    """One line naming the Fast DDS transport setting in force, for start-up logs."""
    environ = os.environ if environ is None else environ
    chosen = [f'{name}={environ[name]}' for name in TRANSPORT_VARIABLES if environ.get(name)]
    return ', '.join(chosen) if chosen else "Fast DDS's default transports"
