"""Redis adapters: the contents of dicts and queues (`RedisDictStore`, `RedisQueueStore`), and the buses
that carry wake-ups (`RedisWakeBus`) and live logs (`RedisLogFanout`) between server replicas. Every key of
one object shares a hash tag (`{<object id>}`), so the multi-key scripts stay within one slot."""

from __future__ import annotations

from berth.store.redis.dicts import RedisDictStore
from berth.store.redis.logfanout import RedisLogFanout
from berth.store.redis.queues import RedisQueueStore
from berth.store.redis.wakebus import RedisWakeBus

__all__ = ["RedisDictStore", "RedisLogFanout", "RedisQueueStore", "RedisWakeBus"]
