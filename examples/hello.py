"""A first Berth app: squares numbers remotely, prints from the container, maps over a range."""

import sys

import modal

app = modal.App("berth-hello")


@app.function()
def square(x: int) -> int:
    stream = sys.stdout if x % 2 == 0 else sys.stderr
    print(f"squaring {x} in a container", file=stream)
    return x * x


@app.local_entrypoint()
def main(n: int = 10) -> None:
    print("square.remote(7) =", square.remote(7))
    print(f"sum of squares below {n} =", sum(square.map(range(n))))
