"""The end-to-end adaptation demo: plan, real CPU load, metrics, timeline plot."""
