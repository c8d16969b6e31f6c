"""Run-time pieces shared by the worker nodes (no rclpy)."""
