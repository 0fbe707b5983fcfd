"""Functions that tests/e2e/test_js_sdk.py deploys with `modal deploy` and calls from Modal's JavaScript SDK.
The SDK sends arguments and reads results as CBOR, so each function returns plain CBOR values."""

import hashlib
import os
import time
from pathlib import Path

import modal

app = modal.App("berth-js-sdk")


@app.function()
def add(a: int, b: int) -> int:
    return a + b


@app.function()
def describe(*args: object, **kwargs: object) -> dict[str, object]:
    """What arrived, with Python's type names, so the caller can see CBOR decoded to native types."""
    return {
        "args": list(args),
        "kwargs": kwargs,
        "types": [type(a).__name__ for a in args],
    }


@app.function()
def digest(data: bytes) -> dict[str, object]:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.function()
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


@app.function()
def shout(word: str) -> str:
    print(f"shouting {word}")
    return word.upper()


@app.function()
def fail(message: str) -> None:
    raise ValueError(message)


@app.function()
def read_env(key: str) -> str | None:
    return os.environ.get(key)


@app.function()
def read_file(mount: str, name: str) -> str | None:
    """A file under a Volume the caller mounted at /root/<mount>. The process runtime presents mounts under
    /root only, and its /root is the task directory ($HOME); on Modal that is /root too."""
    path = Path.home() / mount / name
    return path.read_text() if path.exists() else None


@app.function()
def pattern(n: int) -> bytes:
    """n bytes counting 0..250 over and over: a large result comes back through a blob."""
    return (bytes(range(251)) * (n // 251 + 1))[:n]


@app.cls()
class Greeter:
    greeting: str = modal.parameter(default="hello")

    @modal.method()
    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}"


@app.function(max_containers=1)
def one_at_a_time(seconds: float) -> float:
    """One container, one input at a time: further calls wait in the backlog."""
    time.sleep(seconds)
    return seconds
