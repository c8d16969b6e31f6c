"""ROS 2 nodes: thin adapters from the core to topics, services and parameters."""
