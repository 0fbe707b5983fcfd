"""Starts a call that prints a marker and sleeps, so a test can kill the server under a running container."""

import time

import modal

app = modal.App("e2e-isolation-sleeper")


@app.function()
def sleeper() -> None:
    print("SLEEPER-STARTED", flush=True)
    time.sleep(300)


if __name__ == "__main__":
    with modal.enable_output(), app.run():
        sleeper.remote()
