"""Queue items in Redis, with the SQLite store's behaviour method for method.

Keys of queue `<id>`: one sorted set per partition, `berth:queue:{<id>}:p:<partition hex>`, scored by a
sequence number from `berth:queue:{<id>}:seq`; and `berth:queue:{<id>}:parts` (hash: partition hex ->
expiry time) naming every partition that may hold items. A member is the sequence number as 16 hex digits
followed by the value, so equal values stay distinct members and the score is the item's stable entry id
for `queue_items_after`. The counter survives clears (a cursor never sees an id twice); only `drop`
removes it.

Pops are ZPOPMIN, which removes and returns in one command, so no item reaches two poppers. Pushes and
expiry are scripts, so the per-partition cap holds under concurrent pushers. Times come from the caller's
clock, never Redis's, like the SQLite store (tests move time by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

_PREFIX_LEN = 16

# KEYS: items, parts, seq. ARGV: max_items, partition hex, expires_at, values...
_PUSH = """
local n = #ARGV - 3
if redis.call('ZCARD', KEYS[1]) + n > tonumber(ARGV[1]) then return 0 end
local seq = redis.call('INCRBY', KEYS[3], n) - n
for i = 4, #ARGV do
  seq = seq + 1
  redis.call('ZADD', KEYS[1], seq, string.format('%016x', seq) .. ARGV[i])
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# The partition keys are derived from the parts hash: all share the queue's hash tag, hence its slot.
# KEYS: parts. ARGV: items key prefix, now.
_EXPIRE = """
local now = tonumber(ARGV[2])
local parts = redis.call('HGETALL', KEYS[1])
for i = 1, #parts, 2 do
  if tonumber(parts[i + 1]) < now then
    redis.call('DEL', ARGV[1] .. parts[i])
    redis.call('HDEL', KEYS[1], parts[i])
  end
end
return 0
"""

# Returns {non-empty partitions, items}. KEYS: parts. ARGV: items key prefix.
_STATS = """
local parts = redis.call('HKEYS', KEYS[1])
local nonempty, total = 0, 0
for _, p in ipairs(parts) do
  local n = redis.call('ZCARD', ARGV[1] .. p)
  if n > 0 then nonempty = nonempty + 1 end
  total = total + n
end
return {nonempty, total}
"""

# Deletes every partition's items and the parts hash; with ARGV[2] = '1' the counter too.
# KEYS: parts, seq. ARGV: items key prefix, drop counter.
_CLEAR_ALL = """
for _, p in ipairs(redis.call('HKEYS', KEYS[1])) do
  redis.call('DEL', ARGV[1] .. p)
end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
return 0
"""


class _Keys:
    def __init__(self, queue_id: str) -> None:
        base = f"berth:queue:{{{queue_id}}}"
        self.parts = f"{base}:parts"
        self.seq = f"{base}:seq"
        self.items_prefix = f"{base}:p:"

    def items(self, partition: bytes) -> str:
        return self.items_prefix + partition.hex()


def _value(member: bytes) -> bytes:
    return bytes(member[_PREFIX_LEN:])


class RedisQueueStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client
        self._push = client.register_script(_PUSH)
        self._expire = client.register_script(_EXPIRE)
        self._stats = client.register_script(_STATS)
        self._clear_all = client.register_script(_CLEAR_ALL)

    async def queue_len(self, queue_id: str, partition: bytes | None) -> int:
        keys = _Keys(queue_id)
        if partition is None:
            return (await self.queue_stats(queue_id))[1]
        return int(await self._redis.zcard(keys.items(partition)))

    async def queue_push(
        self, queue_id: str, partition: bytes, values: Sequence[bytes], now: float, max_items: int, ttl_s: float
    ) -> bool:
        """Appends all values, or none when that would take the partition past max_items. The partition
        then expires ttl_s after this put."""
        keys = _Keys(queue_id)
        args: list[bytes | str | int] = [max_items, partition.hex(), repr(now + ttl_s), *values]
        return bool(await self._push(keys=[keys.items(partition), keys.parts, keys.seq], args=args))

    async def queue_expire(self, queue_id: str, now: float) -> None:
        """Clears the partitions whose last put is older than their TTL."""
        keys = _Keys(queue_id)
        await self._expire(keys=[keys.parts], args=[keys.items_prefix, repr(now)])

    async def queue_pop(self, queue_id: str, partition: bytes, n: int) -> list[bytes]:
        popped = cast(list[tuple[bytes, float]], await self._redis.zpopmin(_Keys(queue_id).items(partition), n))
        return [_value(member) for member, _ in popped]

    async def queue_items_after(self, queue_id: str, partition: bytes, after: int, n: int) -> list[tuple[int, bytes]]:
        rows = cast(
            list[tuple[bytes, float]],
            await self._redis.zrangebyscore(
                _Keys(queue_id).items(partition), f"({after}", "+inf", start=0, num=n, withscores=True
            ),
        )
        return [(int(score), _value(member)) for member, score in rows]

    async def queue_clear(self, queue_id: str, partition: bytes | None) -> None:
        keys = _Keys(queue_id)
        if partition is None:
            await self._clear_all(keys=[keys.parts, keys.seq], args=[keys.items_prefix, "0"])
        else:
            await self._redis.delete(keys.items(partition))

    async def queue_stats(self, queue_id: str) -> tuple[int, int]:
        """(number of non-empty partitions, total items)."""
        keys = _Keys(queue_id)
        nonempty, total = await self._stats(keys=[keys.parts], args=[keys.items_prefix])
        return int(nonempty), int(total)

    async def drop(self, queue_id: str) -> None:
        """Removes every key of the queue, its counter included (its object was deleted)."""
        keys = _Keys(queue_id)
        await self._clear_all(keys=[keys.parts, keys.seq], args=[keys.items_prefix, "1"])
