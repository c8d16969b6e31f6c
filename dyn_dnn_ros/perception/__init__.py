"""Perception: WeNet, a CNN that enables more or fewer weight blocks at run time."""
