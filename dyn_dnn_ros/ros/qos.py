"""QoS profiles chosen by name from a parameter."""

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

QOS_CHOICES = ('sensor_data', 'reliable', 'best_effort')


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
