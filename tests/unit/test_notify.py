"""The notifier wakes every waiter on a key, or only as many as asked (one idle container per queued input)."""

from __future__ import annotations

import asyncio

from berth.services.notify import Notifier


async def _woken(notifier: Notifier, waiters: int, at_most: int | None) -> int:
    async def wait() -> bool:
        with notifier.listen("fn:1", f"task:{id(asyncio.current_task())}") as waiter:
            return await waiter.wait(0.2)

    tasks = [asyncio.create_task(wait()) for _ in range(waiters)]
    await asyncio.sleep(0.01)  # all registered
    notifier.notify("fn:1", at_most)
    return sum(await asyncio.gather(*tasks))


def test_notify_wakes_every_waiter_or_only_as_many_as_asked() -> None:
    assert asyncio.run(_woken(Notifier(), 5, None)) == 5
    assert asyncio.run(_woken(Notifier(), 5, 2)) == 2
    assert asyncio.run(_woken(Notifier(), 2, 9)) == 2


def test_a_waiter_already_woken_through_another_key_does_not_count() -> None:
    async def run() -> int:
        notifier = Notifier()
        first = asyncio.create_task(_wait_on(notifier, "fn:1", "task:a"))
        second = asyncio.create_task(_wait_on(notifier, "fn:1", "task:b"))
        await asyncio.sleep(0.01)
        notifier.notify("task:a")  # wakes the first through its own key; it stays in fn:1's set until it leaves
        notifier.notify("fn:1", at_most=1)
        return sum(await asyncio.gather(first, second))

    assert asyncio.run(run()) == 2


async def _wait_on(notifier: Notifier, *keys: str) -> bool:
    with notifier.listen(*keys) as waiter:
        return await waiter.wait(0.2)
