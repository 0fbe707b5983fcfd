"""Exercises @app.cls: lifecycle hooks, parameters, options, concurrency and batching."""

import asyncio
import json
import os

import modal

app = modal.App("e2e-classes")


@app.cls()
class Counter:
    @modal.enter()
    def setup(self) -> None:
        self.base = 100
        print("ENTER-HOOK-RAN")

    @modal.method()
    def add(self, x: int) -> int:
        return self.base + x

    @modal.method()
    def pid(self) -> int:
        return os.getpid()

    @modal.exit()
    def teardown(self) -> None:
        print("EXIT-HOOK-RAN")


@app.cls()
class Greeter:
    greeting: str = modal.parameter(default="hello")
    times: int = modal.parameter(default=1)

    @modal.method()
    def greet(self, name: str) -> str:
        return " ".join([f"{self.greeting} {name}"] * self.times)


@app.cls(max_containers=1)
@modal.concurrent(max_inputs=5)
class Concurrent:
    @modal.method()
    async def wait(self, i: int) -> int:
        await asyncio.sleep(1)
        return os.getpid()


@app.cls()
class Batcher:
    @modal.batched(max_batch_size=4, wait_ms=500)
    def double(self, xs: list[int]) -> list[int]:
        print(f"BATCH-SIZE {len(xs)}")
        return [x * 2 for x in xs]


@app.function()
@modal.batched(max_batch_size=3, wait_ms=300)
def batched_fn(xs: list[int]) -> list[int]:
    return [x + len(xs) * 1000 for x in xs]


def main() -> dict:
    out: dict = {}
    c = Counter()
    out["method"] = c.add.remote(1)
    out["same_container"] = len({c.pid.remote() for _ in range(3)})
    out["param_default"] = Greeter().greet.remote("ann")
    out["param_set"] = Greeter(greeting="hi", times=2).greet.remote("bob")
    out["with_options"] = Counter.with_options(timeout=30)().add.remote(5)
    out["concurrent_pids"] = len(set(Concurrent().wait.map(range(5))))
    out["batched_method"] = list(Batcher().double.map(range(8)))
    out["batched_fn"] = sorted(batched_fn.map(range(3)))
    return out


if __name__ == "__main__":
    with app.run():
        result = main()
    print("RESULT " + json.dumps(result))
