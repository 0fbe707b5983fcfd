"""Which loop a function container runs: Berth's (berth.worker.berth_loop: prefetched inputs, merged outputs) on
top of modal's entrypoint, or modal's entrypoint alone (BERTH_CONTAINER_LOOP=stock, for comparison)."""

from __future__ import annotations

import os

from berth.domain.spec import TaskSpec

ENV = "BERTH_CONTAINER_LOOP"


def enabled() -> bool:
    return os.environ.get(ENV, "berth") != "stock"


def command(spec: TaskSpec, loop_path: str) -> list[str]:
    """The container's command: a sandbox's own, else modal's entrypoint, through Berth's loop when it is on."""
    if spec.sandbox is None and enabled():
        return ["python", loop_path]
    return list(spec.command)
