"""An app whose image has a layer of its own (BERTH_TEST_NONCE varies it), for the dashboard's image builds page."""

import os

import modal

nonce = os.environ.get("BERTH_TEST_NONCE", "0")
image = modal.Image.debian_slim().run_commands(f"echo dashboard-build-{nonce} > /built.txt")
app = modal.App("e2e-dashboard-image")


@app.function(image=image)
def built() -> str:
    with open("/built.txt") as f:
        return f.read().strip()
