"""Container reuse and autoscaling, seen through the pids of the processes that ran each input."""

import json
import os
import time

import modal

app = modal.App("e2e-scaling")


@app.function(max_containers=3)
def busy(s: float) -> int:
    time.sleep(s)
    return os.getpid()


@app.function()
def warm(_: int = 0) -> int:
    return os.getpid()


@app.function(scaledown_window=2)
def short_lived(_: int = 0) -> int:
    return os.getpid()


def main() -> dict:
    out: dict = {}
    out["busy_pids"] = len(set(busy.map([1.0] * 9)))
    out["warm_pids"] = len({warm.remote() for _ in range(5)})
    first = short_lived.remote()
    time.sleep(6)
    out["after_window_new_container"] = short_lived.remote() != first
    return out


if __name__ == "__main__":
    with app.run():
        result = main()
    print("RESULT " + json.dumps(result))
