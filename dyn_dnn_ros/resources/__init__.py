"""Hardware resource readings (CPU, memory, GPU, thermal, power) without ROS.

``ResourceSampler(SamplerConfig()).sample()`` returns a :class:`ResourceSnapshot`
whose fields match the ROS message; :class:`Scenario` scripts overrides on top.
"""

from dyn_dnn_ros.resources.capacity import CapacityConfig, estimate
from dyn_dnn_ros.resources.sampler import READER_NAMES, ResourceSampler, SamplerConfig
from dyn_dnn_ros.resources.scenario import Scenario, apply_overrides
from dyn_dnn_ros.resources.snapshot import MESSAGE_FIELDS, ResourceSnapshot

__all__ = [
    'CapacityConfig', 'MESSAGE_FIELDS', 'READER_NAMES', 'ResourceSampler', 'ResourceSnapshot',
    'SamplerConfig', 'Scenario', 'apply_overrides', 'estimate',
]
