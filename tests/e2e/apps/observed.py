"""A deployable app for the observability commands: a function called a known number of times, one that
fails, one that calls another from its container (a call graph), a parameterized class (variants), one
that keeps printing (to follow a container's logs) and one that reads a secret (which /metrics must not show)."""

import os
import time

import modal

app = modal.App("e2e-observed")


@app.function(max_containers=3, scaledown_window=42)
def square(x: int) -> int:
    time.sleep(0.2)
    return x * x


@app.function()
def broken(x: int) -> int:
    raise ValueError(f"broken on purpose: {x}")


@app.function()
def cube(x: int) -> int:
    return x * x * x


@app.function()
def fan_out(n: int) -> int:
    return sum(cube.map(range(n)))


@app.function()
def ticker(n: int) -> int:
    for i in range(n):
        print(f"tick {i}", flush=True)
        time.sleep(0.5)
    return n


@app.cls()
class Scaler:
    factor: int = modal.parameter(default=1)

    @modal.method()
    def scale(self, x: int) -> int:
        return self.factor * x


@app.function(secrets=[modal.Secret.from_name("e2e-observed-secret")])
def peek_secret() -> int:
    return len(os.environ["OBSERVED_TOKEN"])
