"""The machine-wide layer cache drops what no image can use any more, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from berth.worker.layers import LayerStore

DAY = 86400.0


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_prune_removes_replaced_layers_and_abandoned_builds_only(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    current = store.commit("k1", store.new_tmp())
    replaced = store.commit("k2", store.new_tmp())
    newer = store.commit("k2", store.new_tmp())  # a force_build swaps k2's index entry to a new directory
    in_use = store.commit("k3", store.new_tmp())
    store.commit("k3", store.new_tmp())  # k3 replaced too, but a running container still mounts the old one
    abandoned = store.new_tmp()
    building = store.new_tmp()
    fresh_orphan = store.commit("k4", store.new_tmp())
    store.commit("k4", store.new_tmp())
    for path in (current, replaced, newer, in_use, abandoned, building):
        _age(path, 2 * DAY)
    mounts = f"1 2 0:1 / {building}/merged rw - overlay overlay rw,lowerdir={in_use}:/base,upperdir=/x\n"

    removed = store.prune(DAY, mounts=mounts)

    assert sorted(removed) == sorted([replaced, abandoned])
    for kept in (current, newer, in_use, building, fresh_orphan):
        assert kept.is_dir(), kept
    assert store.get("k1") == current and store.get("k2") == newer
