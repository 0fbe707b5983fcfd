"""The warm pool's bookkeeping (berth.worker.sandbox_pool): what is started ahead, for which requests, within
which caps, and when an image's pool empties. Time is passed in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from modal_proto import api_pb2

from berth.domain.spec import BindMount, EgressAllowlist, MountedFile, SandboxSpec, TaskSpec
from berth.worker.sandbox_pool import PoolBook, PoolKey, PoolSettings, function_pool_key, pool_key

KEY = PoolKey("im-1", 0, 0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _spec(**sandbox: object) -> TaskSpec:
    return TaskSpec("ta-1", "fu-1", "ap-1", b"", "", "", image_id="im-1", sandbox=SandboxSpec("sb-1", **sandbox))  # type: ignore[arg-type]


def test_only_requests_a_pooled_container_could_serve_have_a_key() -> None:
    assert pool_key(_spec(), 0, 0.0) == KEY
    assert pool_key(_spec(workdir="/tmp", entrypoint=("sleep", "1")), 256, 0.5) == PoolKey("im-1", 256, 0.5)
    assert pool_key(_spec(block_network=True), 0, 0.0) is None
    assert pool_key(_spec(egress=EgressAllowlist(cidrs=("10.0.0.0/8",))), 0, 0.0) is None
    assert pool_key(replace(_spec(), gpu_requests=(("T4", 1),)), 0, 0.0) is None
    assert pool_key(replace(_spec(), sandbox=None), 0, 0.0) is None


def test_an_image_is_pooled_only_after_it_was_used_and_up_to_its_size() -> None:
    book: PoolBook[str] = PoolBook(PoolSettings(per_image=2), Clock())
    assert not book.to_start(KEY)  # never used: nothing ahead
    assert book.take(KEY) is None  # the first request starts its own
    assert book.to_start(KEY) and book.to_start(KEY) and not book.to_start(KEY)
    assert book.started(KEY, "a") and book.started(KEY, "b")
    assert book.take(KEY) == "a" and book.take(KEY) == "b" and book.take(KEY) is None
    assert book.to_start(KEY)


def test_the_count_and_memory_caps_hold_across_images() -> None:
    book: PoolBook[str] = PoolBook(PoolSettings(per_image=3, max_total=3, max_memory_mb=1000), Clock())
    big, other = PoolKey("im-1", 600, 0.0), PoolKey("im-2", 0, 0.0)
    book.take(big)
    book.take(other)
    assert book.to_start(big) and not book.to_start(big)  # a second 600 MiB one would pass 1000 MiB
    assert book.to_start(other) and book.to_start(other) and not book.to_start(other)  # 3 in all, not 3 per image


def test_an_image_unused_for_idle_s_loses_its_pool() -> None:
    clock = Clock()
    book: PoolBook[str] = PoolBook(PoolSettings(per_image=1, idle_s=60), clock)
    book.take(KEY)
    assert book.to_start(KEY) and book.started(KEY, "a")
    clock.t += 30
    assert book.drop_idle() == []
    clock.t += 31
    assert book.drop_idle() == ["a"] and book.take(KEY) is None  # and the take makes it wanted again
    assert book.to_start(KEY)
    clock.t += 61
    assert not book.started(KEY, "late")  # came up after nobody wanted it: the caller discards it


def test_a_pooled_container_that_ended_leaves_the_pool() -> None:
    book: PoolBook[str] = PoolBook(PoolSettings(per_image=2), Clock())
    book.take(KEY)
    book.to_start(KEY)
    book.started(KEY, "a")
    book.remove("a")
    assert book.take(KEY) is None
    assert book.drop_all() == []


def _function(
    snapshot: bool = False, task_id: str = "ta-1", blocked: bool = False, server: bool = False, **fields: object
) -> TaskSpec:
    args = api_pb2.ContainerArguments(task_id=task_id, function_id="fu-1", checkpoint_id=f"ck-{task_id}")
    args.function_def.checkpointing_enabled = snapshot
    args.function_def.block_network = blocked
    args.function_def.is_server = server
    spec = TaskSpec(task_id, "fu-1", "ap-1", args.SerializeToString(), "", "", image_id="im-1")
    return replace(spec, **fields)  # type: ignore[arg-type]


def test_function_containers_that_need_setting_up_before_they_run_have_no_pool() -> None:
    app_source = [MountedFile("/root/app.py", "0" * 64)]
    assert function_pool_key(_function(files=app_source, env={"SECRET": "x"}), 0, 0.0) == KEY
    assert function_pool_key(_function(), 512, 1.0) == PoolKey("im-1", 512, 1.0)
    assert function_pool_key(_spec(), 0, 0.0) is None  # a sandbox
    assert function_pool_key(_function(binds=[BindMount(Path("/v"), "/data")]), 0, 0.0) is None
    assert function_pool_key(_function(gpu_requests=(("T4", 1),)), 0, 0.0) is None
    assert function_pool_key(_function(source_ip="10.0.0.2"), 0, 0.0) is None
    assert function_pool_key(_function(files=[MountedFile("/opt/tool.py", "0" * 64)]), 0, 0.0) is None
    assert function_pool_key(_function(env={"PYTHONHASHSEED": "0"}), 0, 0.0) is None
    assert function_pool_key(_function(env={"LD_PRELOAD": "x.so"}), 0, 0.0) is None
    assert function_pool_key(_function(blocked=True), 0, 0.0) is None


def test_a_memory_snapshot_function_has_standby_containers_of_its_own() -> None:
    key = function_pool_key(_function(snapshot=True), 0, 0.0)
    assert key is not None and key.snapshot_of and key != KEY
    # the task's own ids do not matter; its function's arguments and files do
    other_task = _function(snapshot=True, task_id="ta-2")
    assert function_pool_key(other_task, 0, 0.0) == key
    other_files = _function(snapshot=True, files=[MountedFile("/root/app.py", "1" * 64)])
    assert function_pool_key(other_files, 0, 0.0) != key
    assert function_pool_key(_function(snapshot=True, server=True), 0, 0.0) == KEY  # a server never checkpoints


def test_buffer_containers_ask_for_more_within_the_caps() -> None:
    book: PoolBook[str] = PoolBook(PoolSettings(per_image=1, max_total=3), Clock())
    book.take(KEY)
    assert [book.to_start(KEY, want=5) for _ in range(4)] == [True, True, True, False]
    off: PoolBook[str] = PoolBook(PoolSettings(per_image=0), Clock())
    off.take(KEY)
    assert not off.to_start(KEY, want=2)  # 0 per image: the pool is off, whatever a function asks
