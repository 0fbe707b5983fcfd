"""A map long enough to kill the server in the middle of it."""

import time

import modal

app = modal.App("e2e-restart-map")


@app.function()
def square(x: int) -> int:
    time.sleep(0.01)
    return x * x


@app.local_entrypoint()
def main(n: int = 1500) -> None:
    out = list(square.map(range(n)))
    assert out == [x * x for x in range(n)], "outputs missing, repeated or out of order"
    print("MAP OK", len(out))
