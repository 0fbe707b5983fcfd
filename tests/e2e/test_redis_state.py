"""The dict and queue end-to-end checks again, on a `berth up` whose dict and queue contents live in Redis
(BERTH_REDIS_URL), driven by the real modal CLI and SDK. The checks are imported from test_dicts and
test_queues, so both backends answer the same ones; `berth` below overrides the suite's server for this
module only. A last check looks in Redis itself, so a server that quietly kept using SQLite would fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis

from berth.devservices.redis import RedisServer, RedisUnavailable, start_redis
from tests.e2e.conftest import BerthServer, modal, sdk, start_server, stop_server
from tests.e2e.test_dicts import (
    test_dict_api_stores_picklable_keys_and_values,
    test_ephemeral_dict_and_queue_are_shared_with_a_container,
    test_modal_dict_cli_creates_lists_shows_clears_and_deletes,
)
from tests.e2e.test_queues import (
    test_blocking_get_returns_an_item_put_while_it_waits,
    test_many_concurrent_producers_and_consumers_neither_lose_nor_duplicate,
    test_modal_queue_cli_creates_lists_peeks_measures_clears_and_deletes,
    test_queue_api_is_fifo_per_partition,
)

__all__ = [
    "test_dict_api_stores_picklable_keys_and_values",
    "test_ephemeral_dict_and_queue_are_shared_with_a_container",
    "test_modal_dict_cli_creates_lists_shows_clears_and_deletes",
    "test_blocking_get_returns_an_item_put_while_it_waits",
    "test_many_concurrent_producers_and_consumers_neither_lose_nor_duplicate",
    "test_modal_queue_cli_creates_lists_peeks_measures_clears_and_deletes",
    "test_queue_api_is_fifo_per_partition",
]


@pytest.fixture(scope="module")
def redis_for_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = start_redis(tmp_path_factory.mktemp("redis-e2e"))
    except RedisUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def berth(tmp_path_factory: pytest.TempPathFactory, redis_for_state: RedisServer) -> Iterator[BerthServer]:
    data_dir = tmp_path_factory.mktemp("berth-redis") / "data"
    server = start_server(data_dir, extra_env={"BERTH_REDIS_URL": redis_for_state.url})
    yield server
    stop_server(server)


def test_contents_are_in_redis_and_gone_from_it_when_deleted(berth: BerthServer, redis_for_state: RedisServer) -> None:
    made = modal(berth, "dict", "create", "e2e-redis-proof")
    assert made.returncode == 0, made.output
    put = modal(berth, "queue", "create", "e2e-redis-proof-q")
    assert put.returncode == 0, put.output
    sdk(
        berth,
        """
        import modal
        modal.Dict.from_name("e2e-redis-proof")["k"] = "v"
        modal.Queue.from_name("e2e-redis-proof-q").put("item")
        """,
    )
    with Redis.from_url(redis_for_state.url) as client:
        assert client.keys("berth:dict:*") and client.keys("berth:queue:*")
        before = len(client.keys("berth:*"))
        for kind, name in (("dict", "e2e-redis-proof"), ("queue", "e2e-redis-proof-q")):
            gone = modal(berth, kind, "delete", name, "--yes")
            assert gone.returncode == 0, gone.output
        assert len(client.keys("berth:*")) == before - 6
