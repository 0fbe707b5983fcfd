"""Failures a caller must see clearly: remote exceptions, crashes, retries, timeouts; and big payloads."""

import json
import os
import sys
import time
import traceback

import modal

app = modal.App("e2e-faults")


class CustomError(Exception):
    pass


def deep_helper(x: int) -> None:
    raise CustomError(f"custom failure for {x}")


@app.function()
def raises(x: int) -> None:
    deep_helper(x)


@app.function()
def crash() -> None:
    os._exit(3)


@app.function(retries=modal.Retries(max_retries=2, initial_delay=0.1, backoff_coefficient=1.0))
def flaky(marker: str) -> int:
    # Crashes the container on the first two attempts, succeeds on the third.
    attempts = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as f:
        f.write(str(attempts + 1))
    if attempts < 2:
        os._exit(1)
    return attempts


@app.function(retries=1)
def always_fails() -> None:
    raise RuntimeError("still failing")


@app.function(timeout=2)
def sleeper(s: float) -> str:
    time.sleep(s)
    return "woke"


@app.function()
def echo_big(data: bytes) -> bytes:
    return data[::-1] + b"!" * (3 * 1024 * 1024)


def capture(fn, *args) -> dict:
    try:
        return {"ok": fn(*args)}
    except BaseException as exc:  # noqa: BLE001
        return {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }


def main(marker: str) -> dict:
    out: dict = {}
    out["raises"] = capture(raises.remote, 7)
    out["crash"] = capture(crash.remote)
    out["flaky"] = capture(flaky.remote, marker)
    out["always_fails"] = capture(always_fails.remote)
    out["timeout"] = capture(sleeper.remote, 30)
    out["after_timeout"] = capture(sleeper.remote, 0)
    big = os.urandom(3 * 1024 * 1024)
    res = echo_big.remote(big)
    out["big_roundtrip"] = res[: len(big)] == big[::-1] and len(res) == 6 * 1024 * 1024
    return out


if __name__ == "__main__":
    with app.run():
        result = main(sys.argv[1])
    print("RESULT " + json.dumps(result))
