"""Exercises the call forms of modal.Function; prints one JSON object of results."""

import asyncio
import json
import time

import modal

app = modal.App("e2e-calls")


@app.function()
def inc(x: int) -> int:
    return x + 1


@app.function()
def maybe_fail(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad {x}")
    return x


@app.function()
def add(a: int, b: int) -> int:
    return a + b


@app.function()
def slow(x: float) -> float:
    time.sleep(x)
    return x


@app.function()
def gen(n: int):
    for i in range(n):
        yield i * 10


@app.function()
async def agen(n: int):
    for i in range(n):
        yield f"a{i}"
        await asyncio.sleep(0)


async def aio_part() -> dict:
    r = await inc.remote.aio(41)
    mapped = [x async for x in inc.map.aio(range(5))]
    items = [x async for x in gen.remote_gen.aio(3)]
    return {"aio_remote": r, "aio_map": mapped, "aio_gen": items}


def main() -> dict:
    out: dict = {}
    out["map_in_order"] = list(inc.map(range(10_000))) == list(range(1, 10_001))
    out["map_unordered"] = sorted(inc.map(range(50), order_outputs=False))
    res = list(maybe_fail.map(range(6), return_exceptions=True))
    out["return_exceptions"] = [repr(r) if isinstance(r, Exception) else r for r in res]
    out["starmap"] = list(add.starmap([(1, 2), (3, 4)]))
    inc.for_each(range(5))
    out["for_each"] = "ok"
    call = slow.spawn(0.2)
    out["spawn_get"] = call.get(timeout=60)
    again = modal.FunctionCall.from_id(call.object_id)
    out["from_id_get"] = again.get(timeout=60)
    calls = [inc.spawn(i) for i in range(3)]
    out["gather"] = modal.FunctionCall.gather(*calls)
    pending = slow.spawn(30)
    try:
        pending.get(timeout=0.5)
        out["get_timeout"] = "no timeout"
    except TimeoutError:
        out["get_timeout"] = "TimeoutError"
    pending.cancel()
    try:
        pending.get(timeout=30)
        out["cancelled"] = "finished"
    except Exception as exc:  # noqa: BLE001
        out["cancelled"] = type(exc).__name__
    out["spawn_map"] = inc.spawn_map(range(5)) is None
    many = inc.experimental_spawn_map(range(10, 20))
    out["spawn_map_index"] = [many.get(index=k, timeout=60) for k in (7, 0, 3)]
    out["spawn_map_iter"] = list(many.iter(start=2, end=6))
    out["gen"] = list(gen.remote_gen(4))
    out["agen"] = list(agen.remote_gen(3))
    out.update(asyncio.run(aio_part()))
    return out


if __name__ == "__main__":
    with app.run():
        result = main()
    print("RESULT " + json.dumps(result))
