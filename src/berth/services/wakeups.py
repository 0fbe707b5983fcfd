"""Wake-ups shared by several server replicas: the in-process `Notifier`, plus a bus (store/redis) that
carries every notify to the other replicas, which re-notify their own waiters.

Local waiters never wait on the bus: `notify` wakes them first, then queues the key for publishing.

The register-before-check rule of notify.py holds across replicas. A writer persists its change, then
notifies, so the publication leaves after the write. A waiter on another replica registers locally, then
checks the store. If its check missed the write, the write came after the check, so the publication came
after the registration and, the bus being subscribed, re-notifies the still registered waiter. The bus
loses messages only while its subscription is down; when it is confirmed again, `notify_all` wakes every
local waiter, whose re-check then sees any write made during the gap (those writes precede the
resubscription). A publication that cannot reach Redis is retried until it does. What remains is a
waiter's own poll deadline (at most 55 s in the services, after which the client polls again)."""

from __future__ import annotations

from berth.services.notify import Notifier
from berth.store.ports import WakeBus


class ReplicaNotifier(Notifier):
    def __init__(self, bus: WakeBus) -> None:
        super().__init__()
        self._bus = bus

    async def start(self) -> None:
        await self._bus.start(self._wake_local, self.notify_all)

    def notify(self, key: str, at_most: int | None = None) -> None:
        super().notify(key, at_most)
        self._bus.publish(key)  # other replicas wake all theirs: they cannot know how many were woken here

    def _wake_local(self, key: str) -> None:
        super().notify(key)

    async def close(self) -> None:
        await self._bus.close()


async def open_notifier(bus: WakeBus | None) -> Notifier:
    """The in-process notifier, or one shared with the other replicas through `bus`, started."""
    if bus is None:
        return Notifier()
    notifier = ReplicaNotifier(bus)
    await notifier.start()
    return notifier
