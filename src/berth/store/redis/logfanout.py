"""Live app logs between server replicas on Redis pub/sub. A container's output reaches the replica its
worker is joined to; a client may follow the app's logs on another one. Each replica publishes the batches
it receives, and appends the others' to its own live view. History is not carried here: the origin
replica records it in the log store. Delivery is at most once, like every pub/sub message, and a backlog
the sender cannot publish is bounded (the oldest batches are dropped first, with a warning)."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from berth.store.redis.wakebus import RedisWakeBus

log = logging.getLogger("berth.store.redis.logfanout")

CHANNEL = "berth:logs"
_BACKLOG = 10_000


class RedisLogFanout(RedisWakeBus):
    def __init__(self, client: Redis, channel: str = CHANNEL) -> None:
        super().__init__(client, channel)
        self._queue: collections.deque[bytes] = collections.deque(maxlen=_BACKLOG)

    @classmethod
    def from_url(cls, url: str) -> RedisLogFanout:
        return cls(Redis.from_url(url, socket_keepalive=True, health_check_interval=15))

    async def start_fanout(self, on_batch: Callable[[str, bytes], None], timeout: float = 10) -> None:
        def on_body(body: bytes) -> None:
            app_id, sep, payload = body.partition(b"\n")
            if sep:
                on_batch(app_id.decode(errors="replace"), payload)

        await self._start(on_body, lambda: None, timeout)

    def publish_batch(self, app_id: str, payload: bytes) -> None:
        if len(self._queue) == self._queue.maxlen:
            log.warning("live log backlog for other replicas is full; dropping the oldest batch")
        self._queue.append(app_id.encode() + b"\n" + payload)
        self._has_pending.set()

    def _take(self) -> list[bytes]:
        bodies = list(self._queue)
        self._queue.clear()
        return bodies

    def _put_back(self, bodies: list[bytes]) -> None:
        self._queue.extendleft(reversed(bodies))
