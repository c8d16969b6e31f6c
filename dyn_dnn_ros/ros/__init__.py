"""Small ROS 2 helpers shared by the nodes (diagnostics, QoS, parameters)."""
