"""The client side of a load run, `python load_client.py remote N`: N callers of `.remote()` at once with the
stock SDK against the server in MODAL_SERVER_URL; prints one JSON line: latencies (s) and errors."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "apps"))
from load_app import app, square  # noqa: E402


async def remote(n: int) -> dict[str, object]:
    """n callers of square.remote at once, in one app run."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        started = time.monotonic()
        try:
            result = await square.remote.aio(i)
            if result != i * i:
                errors.append(f"{i}: wrong result {result}")
        except Exception as exc:
            errors.append(f"{i}: {type(exc).__name__}: {exc}"[:300])
        latencies.append(time.monotonic() - started)

    async with app.run.aio():
        await square.remote.aio(-1)  # a warm container first: the burst measures calls, not a cold start
        await asyncio.gather(*(one(i) for i in range(n)))
    return {"latencies": latencies, "errors": errors}


if __name__ == "__main__":
    kind, count = sys.argv[1], int(sys.argv[2])
    out = asyncio.run(remote(count))
    print("LOAD " + json.dumps(out))
