"""Keyed wake-ups for long polls. A waiter registers before it checks the store, so a notification
that lands between the check and the wait is not lost. Between server replicas, services/wakeups.py keeps
that rule true."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Waiter:
    def __init__(self, fut: asyncio.Future[None]) -> None:
        self._fut = fut

    async def wait(self, timeout: float) -> bool:
        if timeout <= 0:
            return self._fut.done()
        try:
            await asyncio.wait_for(asyncio.shield(self._fut), timeout)
            return True
        except TimeoutError:
            return False


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def notify(self, key: str, at_most: int | None = None) -> None:
        """Wakes the waiters on `key`, or only `at_most` of them (one idle container per queued input, say: each
        woken waiter re-checks the store, so what the first ones leave is taken by the next they wake)."""
        if at_most is None:
            for fut in self._waiters.pop(key, ()):
                if not fut.done():
                    fut.set_result(None)
            return
        bucket = self._waiters.get(key)
        woken = 0
        while bucket and woken < at_most:
            fut = bucket.pop()
            if not fut.done():
                fut.set_result(None)
                woken += 1
        if bucket is not None and not bucket:
            del self._waiters[key]

    def notify_all(self) -> None:
        """Wakes every waiter, for when wake-ups may have been missed: each re-checks the store."""
        for key in list(self._waiters):
            Notifier.notify(self, key)

    async def close(self) -> None:
        """Nothing to release in one process; a notifier shared between replicas stops its bus."""

    @contextlib.contextmanager
    def listen(self, *keys: str) -> Iterator[Waiter]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        try:
            yield Waiter(fut)
        finally:
            for key in keys:
                bucket = self._waiters.get(key)
                if bucket is not None:
                    bucket.discard(fut)
                    if not bucket:
                        del self._waiters[key]
            if not fut.done():
                fut.cancel()
