"""Pure logic of the state objects: volume path rules, bind mounts on the process runtime, the state store's
atomic queue and dict operations, ephemeral reaping and the secrets key."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from modal_proto import api_pb2

from berth.domain.spec import BindMount, TaskSpec
from berth.errors import AlreadyExists, InvalidArgument, NotFound
from berth.services.notify import Notifier
from berth.services.queues import QueueService
from berth.services.secrets import SecretService, load_or_create_key
from berth.services.state_objects import EPHEMERAL_TTL_S, NamedObjects
from berth.services.volume_fs import VolumeDir, relative
from berth.store.sqlite.migrate import migrate
from berth.store.sqlite.state import SqliteStateStore
from berth.worker.files import LocalFiles
from berth.worker.runtime.process import ProcessRuntime, link_bind


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
def store() -> Iterator[SqliteStateStore]:
    db = sqlite3.connect(":memory:", isolation_level=None)
    migrate(db)
    yield SqliteStateStore(db)
    db.close()


@pytest.mark.parametrize(
    ("path", "expected"), [("/a/b", "a/b"), ("a//b/", "a/b"), ("", "."), ("/", "."), ("./a/./b", "a/b")]
)
def test_client_paths_are_relative_to_the_volume_root(path: str, expected: str) -> None:
    assert relative(path) == PurePosixPath(expected)


@pytest.mark.parametrize("path", ["..", "../x", "/a/../../b", "a/.."])
def test_paths_with_dotdot_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument, match="outside the volume"):
        relative(path)


def test_a_symlink_inside_the_volume_cannot_lead_outside_it(tmp_path: Path) -> None:
    root, outside = tmp_path / "vol", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("host file")
    (root / "escape").symlink_to(outside)
    vol = VolumeDir(root, tmp_path)
    with pytest.raises(InvalidArgument, match="resolves outside the volume"):
        vol.read_range("escape/secret.txt", 0, 100)


def test_copy_follows_cp_semantics(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    (root / "d").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "d" / "b.txt").write_text("b")
    vol = VolumeDir(root, tmp_path)
    vol.copy(["a.txt"], "renamed.txt", recursive=False)
    vol.copy(["a.txt", "d/b.txt"], "into", recursive=False)
    vol.copy(["d"], "d2", recursive=True)
    assert (root / "renamed.txt").read_text() == "a"
    assert sorted(p.name for p in (root / "into").iterdir()) == ["a.txt", "b.txt"]
    assert (root / "d2" / "b.txt").read_text() == "b"
    with pytest.raises(InvalidArgument, match="recursive"):
        vol.copy(["d"], "d3", recursive=False)
    with pytest.raises(NotFound):
        vol.copy(["missing"], "x", recursive=False)


def test_process_runtime_binds_under_root_and_its_cleanup_keeps_the_volume(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data.txt").write_text("keep me")
    workdir = tmp_path / "task"
    (workdir / "root").mkdir(parents=True)
    link_bind(workdir, BindMount(volume, "/root/mnt/vol"))
    assert (workdir / "root" / "mnt" / "vol" / "data.txt").read_text() == "keep me"
    spec = TaskSpec("ta-1", "fu-1", "ap-1", b"", "", "")
    asyncio.run(ProcessRuntime(LocalFiles(tmp_path)).cleanup(spec, workdir))
    assert not workdir.exists()
    assert (volume / "data.txt").read_text() == "keep me"


def test_process_runtime_refuses_mounts_outside_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only mount volumes under /root, not at /mnt/data"):
        link_bind(tmp_path, BindMount(tmp_path, "/mnt/data"))


async def test_a_full_partition_takes_no_part_of_a_put(store: SqliteStateStore) -> None:
    assert await store.queue_push("qu-1", b"", [b"1", b"2"], 0.0, max_items=3, ttl_s=60)
    assert not await store.queue_push("qu-1", b"", [b"3", b"4"], 0.0, max_items=3, ttl_s=60)
    assert await store.queue_push("qu-1", b"p", [b"x"], 0.0, max_items=3, ttl_s=60)
    assert await store.queue_len("qu-1", b"") == 2
    assert await store.queue_pop("qu-1", b"", 10) == [b"1", b"2"]
    assert await store.queue_pop("qu-1", b"", 10) == []
    assert await store.queue_stats("qu-1") == (1, 1)


async def test_a_partition_is_cleared_its_ttl_after_the_last_put(store: SqliteStateStore) -> None:
    clock = FakeClock()
    queues = QueueService(store, Notifier(), clock)
    created = await queues.get_or_create(
        api_pb2.QueueGetOrCreateRequest(object_creation_type=api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)
    )
    qid = created.queue_id
    await queues.put(
        api_pb2.QueuePutRequest(queue_id=qid, values=[b"short"], partition_key=b"s", partition_ttl_seconds=10)
    )
    await queues.put(api_pb2.QueuePutRequest(queue_id=qid, values=[b"default"]))
    clock.t += 9
    await queues.put(
        api_pb2.QueuePutRequest(queue_id=qid, values=[b"again"], partition_key=b"s", partition_ttl_seconds=10)
    )
    clock.t += 9  # 18 s after the first put, 9 s after the last one
    assert await queues.length(api_pb2.QueueLenRequest(queue_id=qid, partition_key=b"s")) == 2
    clock.t += 2
    assert await queues.length(api_pb2.QueueLenRequest(queue_id=qid, partition_key=b"s")) == 0
    assert await queues.length(api_pb2.QueueLenRequest(queue_id=qid, total=True)) == 1
    clock.t += 24 * 3600
    assert await queues.get(api_pb2.QueueGetRequest(queue_id=qid, n_values=5)) == []


async def test_skip_if_exists_writes_nothing_when_a_key_exists(store: SqliteStateStore) -> None:
    assert await store.dict_put("di-1", [(b"k", b"v1")], 0.0, only_new=True)
    assert not await store.dict_put("di-1", [(b"k", b"v2"), (b"new", b"n")], 0.0, only_new=True)
    assert await store.dict_get("di-1", b"k") == b"v1"
    assert await store.dict_get("di-1", b"new") is None
    assert await store.dict_pop("di-1", b"k") == b"v1"
    assert await store.dict_len("di-1", 100) == 0


async def test_ephemeral_objects_are_reaped_once_their_heartbeats_stop(store: SqliteStateStore) -> None:
    clock = FakeClock()
    dicts = NamedObjects(store, clock, "dict", "Dict", "di")
    gone, _ = await dicts.resolve("", "", api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)
    kept, _ = await dicts.resolve("", "", api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)
    named, _ = await dicts.resolve("named", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    clock.t += EPHEMERAL_TTL_S - 1
    await dicts.heartbeat(kept.object_id)
    clock.t += 2
    assert [o.object_id for o in await dicts.reap_expired()] == [gone.object_id]
    await dicts.require(kept.object_id)
    await dicts.require(named.object_id)
    with pytest.raises(NotFound):
        await dicts.require(gone.object_id)


def test_secrets_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    key = load_or_create_key(None, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(None, path) == key
    with pytest.raises(ValueError, match="Fernet key"):
        load_or_create_key("not-a-key", path)


async def test_secret_values_are_stored_encrypted(store: SqliteStateStore, tmp_path: Path) -> None:
    secrets = SecretService(store, FakeClock(), load_or_create_key(None, tmp_path / "k"))
    req = api_pb2.SecretGetOrCreateRequest(
        deployment_name="s",
        object_creation_type=api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
        env_dict={"K": "v4lue"},
    )
    reply = await secrets.get_or_create(req)
    obj = await store.get("secret", reply.secret_id)
    assert obj is not None and obj.body is not None and b"v4lue" not in obj.body
    assert await secrets.env(reply.secret_id) == {"K": "v4lue"}
    assert list(reply.metadata.keys) == ["K"]


async def test_creation_types_follow_the_modal_api(store: SqliteStateStore) -> None:
    dicts = NamedObjects(store, FakeClock(), "dict", "Dict", "di")
    with pytest.raises(NotFound, match="Dict 'd' not found in environment 'main'"):
        await dicts.resolve("d", "", api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED)
    made, created = await dicts.resolve("d", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS)
    assert created and made.object_id.startswith("di-")
    with pytest.raises(AlreadyExists):
        await dicts.resolve("d", "main", api_pb2.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS)
    assert (await dicts.resolve("d", "main", api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED))[0] == made
    other_env, created = await dicts.resolve("d", "dev", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    assert created and other_env.object_id != made.object_id
    with pytest.raises(InvalidArgument, match="need a name"):
        await dicts.resolve("", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    with pytest.raises(InvalidArgument, match="cannot have a name"):
        await dicts.resolve("d", "", api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL)
    with pytest.raises(InvalidArgument, match="Invalid Dict name"):
        await dicts.resolve("bad/name", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    second, _ = await dicts.resolve("e", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    with pytest.raises(AlreadyExists):
        await dicts.rename(second.object_id, "d")
    assert (await dicts.rename(second.object_id, "f")).name == "f"
