"""Metered resource use, as it crosses the worker port: per task and per minute bucket, the integrals of
CPU (core-seconds), memory (GiB-seconds) and GPUs (GPU-seconds) a worker measured over that minute."""

from __future__ import annotations

from dataclasses import dataclass

BUCKET_S = 60  # usage is kept per task and minute; reports roll the minutes up into hours and days


def bucket_of(t: float) -> int:
    """The start of the minute bucket `t` (unix seconds) falls in."""
    return int(t // BUCKET_S) * BUCKET_S


@dataclass(frozen=True)
class UsageSample:
    """What one task used during one minute bucket (or the part of it measured since the last report)."""

    task_id: str
    app_id: str
    function_id: str  # "" for a sandbox
    sandbox_id: str  # "" for a function's container
    bucket: int  # unix seconds, a multiple of BUCKET_S
    cpu_s: float  # CPU core-seconds
    memory_gib_s: float  # GiB-seconds of memory in use (sampled each second)
    gpu_s: float = 0.0  # GPU-seconds: GPUs assigned × seconds
    gpu_type: str = ""  # what the GPUs were asked for as (e.g. "A100"), "" without GPUs
