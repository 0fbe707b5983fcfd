"""Dict entries in Redis, with the SQLite store's behaviour method for method.

Keys of dict `<id>`: `berth:dict:{<id>}` (hash: pickled key -> pickled value), `berth:dict:{<id>}:order`
(sorted set: key -> write sequence) and `berth:dict:{<id>}:seq` (the sequence counter). The order set
gives `dict_entries` the SQLite order: insertion order, a rewritten key moving to the end (SQLite's
INSERT OR REPLACE gives the row a new rowid)."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

# Writes all entries, or none when only_new and any key exists: one script, so no other client's write
# can land between the check and the writes.
_PUT = """
local n = (#ARGV - 1) / 2
if ARGV[1] == '1' then
  for i = 2, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then return 0 end
  end
end
local seq = redis.call('INCRBY', KEYS[3], n) - n
for i = 2, #ARGV, 2 do
  seq = seq + 1
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], seq, ARGV[i])
end
return 1
"""


def _keys(dict_id: str) -> tuple[str, str, str]:
    base = f"berth:dict:{{{dict_id}}}"
    return base, f"{base}:order", f"{base}:seq"


def _bytes(value: object) -> bytes:
    # The client is opened without decode_responses: replies are bytes.
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value


class RedisDictStore:
    def __init__(self, client: Redis) -> None:
        self._redis = client
        self._put = client.register_script(_PUT)

    async def dict_get(self, dict_id: str, key: bytes) -> bytes | None:
        value = await self._redis.hget(_keys(dict_id)[0], key)
        return None if value is None else _bytes(value)

    async def dict_put(self, dict_id: str, entries: Sequence[tuple[bytes, bytes]], now: float, only_new: bool) -> bool:
        """Writes the entries; with only_new, writes none if any key exists. Returns whether it wrote."""
        args: list[bytes] = [b"1" if only_new else b"0"]
        for key, value in entries:
            args += [key, value]
        return bool(await self._put(keys=list(_keys(dict_id)), args=args))

    async def dict_pop(self, dict_id: str, key: bytes) -> bytes | None:
        entries, order, _ = _keys(dict_id)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.hget(entries, key)
            tx.hdel(entries, key)
            tx.zrem(order, key)
            value, _, _ = await tx.execute()
        return None if value is None else bytes(value)

    async def dict_len(self, dict_id: str, cap: int) -> int:
        return min(int(await self._redis.hlen(_keys(dict_id)[0])), cap)

    async def dict_clear(self, dict_id: str) -> None:
        await self._redis.delete(*_keys(dict_id))

    async def dict_entries(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        entries, order, _ = _keys(dict_id)
        async with self._redis.pipeline(transaction=True) as tx:
            tx.zrange(order, 0, -1)
            tx.hgetall(entries)
            keys, values = await tx.execute()
        return [(bytes(k), bytes(values[k])) for k in keys]

    async def drop(self, dict_id: str) -> None:
        """Removes every key of the dict (its object was deleted)."""
        await self.dict_clear(dict_id)
