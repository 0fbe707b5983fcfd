"""Berth's container loop with inputs waiting in the container (BERTH_PREFETCH_MIN makes it prefetch 8 whatever
they take): a cancelled waiting input never runs, and each input's timeout starts when it starts."""

import json
import time

import modal

app = modal.App("e2e-prefetch")
prefetch = modal.Secret.from_dict({"BERTH_PREFETCH_MIN": "8"})
seen = modal.Dict.from_name("e2e-prefetch-seen", create_if_missing=True)


@app.function(secrets=[prefetch], max_containers=1)
def step(name: str, seconds: float) -> str:
    seen[f"{name}-start"] = time.time()
    time.sleep(seconds)
    return name


@app.function(secrets=[prefetch], max_containers=1, timeout=2)
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.function(max_containers=1)
def once(name: str) -> str:
    seen[name] = seen.get(name, 0) + 1
    time.sleep(3)
    return name


def wait_seen(key: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while key not in seen:
        assert time.monotonic() < deadline, f"{key} never started"
        time.sleep(0.05)


@app.local_entrypoint()
def main() -> None:
    seen.clear()
    # X holds the only container while A, B and C queue; the fetch after X takes all three. A runs, B and C wait.
    x = step.spawn("X", 1.5)
    wait_seen("X-start")
    a, b, c = (step.spawn(n, s) for n, s in (("A", 3.0), ("B", 0.0), ("C", 0.0)))
    wait_seen("A-start")
    b.cancel()
    results = {"X": x.get(), "A": a.get(), "C": c.get()}
    try:
        b.get()
        results["B"] = "returned"
    except Exception as exc:
        results["B"] = type(exc).__name__
    results["B-ran"] = "B-start" in seen
    # Three inputs of 1.2 s each, all in the container at once, under a 2 s timeout: each finishes, because its
    # timeout starts when it does; one of 3 s times out, and the input that waited behind it runs elsewhere.
    results["timed"] = list(slow.map([1.2, 1.2, 1.2]))
    results["timeout"] = [
        r if isinstance(r, float) else type(r).__name__ for r in slow.map([0.2, 3.0, 0.3], return_exceptions=True)
    ]
    # Cancelled with terminate_containers=True: the container is stopped and its input is not run again.
    doomed = once.spawn("T")
    wait_seen("T")
    doomed.cancel(terminate_containers=True)
    results["after-terminate"] = once.remote("U")
    time.sleep(2)
    results["T-runs"] = seen["T"]
    print("RESULT " + json.dumps(results))
