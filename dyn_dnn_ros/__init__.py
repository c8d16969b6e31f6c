"""dyn_dnn_ros: run-time switchable deep networks for ROS 2 robots."""

__version__ = '0.1.0'
