"""The wake-up bus between server replicas on Redis pub/sub: one channel, each message the sender's
origin tag followed by the key. A replica skips its own messages (it woke its waiters already).

Pub/sub delivers at most once, and nothing while a subscriber is disconnected. So `on_resync` runs each
time the subscription is (re)confirmed by the server, the first time included; the notifier then wakes
all its waiters, who re-check the store, which covers whatever was published during the gap. Publishing
is asynchronous (a notify is synchronous and must not wait on the network): keys wait in a set, and a
sender retries them until Redis takes them; a late or repeated wake-up only costs a re-check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

log = logging.getLogger("berth.store.redis.wakebus")

CHANNEL = "berth:notify"
_RETRY_S = (0.05, 0.2, 1.0)
_POLL_S = 1.0


class RedisWakeBus:
    def __init__(self, client: Redis, channel: str = CHANNEL) -> None:
        self._redis = client
        self._channel = channel
        self._origin = secrets.token_hex(8).encode()
        self._pending: dict[str, None] = {}
        self._has_pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def start(self, on_key: Callable[[str], None], on_resync: Callable[[], None], timeout: float = 10) -> None:
        """Returns once the first subscription is live: from then on no publication is missed unnoticed."""

        def on_body(body: bytes) -> None:
            with contextlib.suppress(UnicodeDecodeError):
                on_key(body.decode())

        await self._start(on_body, on_resync, timeout)

    async def _start(self, on_body: Callable[[bytes], None], on_resync: Callable[[], None], timeout: float) -> None:
        subscribed = asyncio.Event()

        def resynced() -> None:
            subscribed.set()
            on_resync()

        self._tasks = [
            asyncio.create_task(self._receive(on_body, resynced)),
            asyncio.create_task(self._send()),
        ]
        try:
            await asyncio.wait_for(subscribed.wait(), timeout)
        except TimeoutError:
            await self.close()
            raise ConnectionError(f"no subscription to Redis wake-ups within {timeout:g} s; is it reachable?") from None

    @classmethod
    def from_url(cls, url: str) -> RedisWakeBus:
        # Keepalive and periodic PINGs: a subscriber on a dead connection would otherwise wait silently.
        return cls(Redis.from_url(url, socket_keepalive=True, health_check_interval=15))

    def publish(self, key: str) -> None:
        self._pending[key] = None
        self._has_pending.set()

    async def close(self) -> None:
        # The loops also stop on the flag: redis-py may swallow a cancellation that lands inside a command.
        self._closed = True
        self._has_pending.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._redis.aclose()

    async def _send(self) -> None:
        failures = 0
        while not self._closed:
            await self._has_pending.wait()
            if self._closed:
                return
            # Take the whole set: a key notified again while this batch is in flight stays pending and is
            # sent again, since its new write may come after the first message was already delivered.
            bodies = self._take()
            self._has_pending.clear()
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for body in bodies:
                        pipe.publish(self._channel, self._origin + body)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning("could not publish %d messages on %s, retrying: %s", len(bodies), self._channel, exc)
                self._put_back(bodies)
                await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
                failures += 1
                continue
            failures = 0

    def _take(self) -> list[bytes]:
        keys, self._pending = list(self._pending), {}
        return [key.encode() for key in keys]

    def _put_back(self, bodies: list[bytes]) -> None:
        for body in bodies:
            self.publish(body.decode())

    async def _receive(self, on_body: Callable[[bytes], None], on_resync: Callable[[], None]) -> None:
        failures = 0
        while not self._closed:
            subscribed = False

            def resynced() -> None:
                nonlocal subscribed
                subscribed = True
                on_resync()

            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._relay(pubsub, on_body, resynced)
            except (RedisError, OSError) as exc:
                log.warning("wake-up subscription lost, resubscribing: %s", exc)
            failures = 0 if subscribed else failures + 1
            await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])

    async def _relay(self, pubsub: PubSub, on_body: Callable[[bytes], None], on_resync: Callable[[], None]) -> None:
        # Polls rather than blocks, so that the client's health check (a PING every health_check_interval)
        # runs even when no one notifies, and a dead connection surfaces as an error here.
        while not self._closed:
            message = await pubsub.get_message(timeout=_POLL_S)
            if message is None:
                continue
            if message["type"] == "subscribe":
                on_resync()
            elif message["type"] == "message":
                data: bytes = message["data"]
                if not data.startswith(self._origin):
                    on_body(data[len(self._origin) :])
