"""Placement and lifecycle of task containers: the task registry, the autoscaler and the lease reaper."""
