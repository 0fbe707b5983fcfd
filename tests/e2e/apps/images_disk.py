"""An image whose build step writes BERTH_TEST_FILL_MB megabytes (0: the plain debian_slim image)."""

import os

import modal

FILL_MB = int(os.environ.get("BERTH_TEST_FILL_MB", "0"))
image = modal.Image.debian_slim()
if FILL_MB:
    image = image.run_commands(f"dd if=/dev/zero of=/filler bs=1M count={FILL_MB}")

app = modal.App("berth-disk", image=image)


@app.function()
def ping() -> str:
    return "pong"


@app.local_entrypoint()
def main():
    print("ping:", ping.remote())
