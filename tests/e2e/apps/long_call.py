"""Starts a call that sleeps for a long time and writes its container's pid where the test can see it."""

import os
import sys
import time

import modal

app = modal.App("e2e-long-call")


@app.function()
def sleeper(note: str) -> None:
    with open(note, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(300)


if __name__ == "__main__":
    with app.run():
        sleeper.spawn(sys.argv[1])
        time.sleep(300)
