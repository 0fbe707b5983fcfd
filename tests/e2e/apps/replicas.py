"""Work for two server replicas: the client talks to one, the only worker is joined to the other."""

import sys
import time

import modal

app = modal.App("e2e-replicas")


@app.function()
def shout(x: int) -> int:
    print(f"container says {x}", flush=True)
    return x * 2


@app.function()
def sleepy(note: str) -> str:
    with open(note, "w") as f:
        f.write("running")
    for _ in range(600):
        time.sleep(0.1)
    return "not cancelled"


@app.local_entrypoint()
def main(note: str) -> None:
    print(f"RESULT {shout.remote(21)}")
    call = sleepy.spawn(note)
    for _ in range(600):
        try:
            if open(note).read() == "running":
                break
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    started = time.monotonic()
    call.cancel()
    try:
        outcome = call.get(timeout=45)
    except Exception as exc:  # noqa: BLE001
        outcome = type(exc).__name__
    print(f"CANCEL {outcome} after {time.monotonic() - started:.0f}s")
    sys.stdout.flush()
