"""An image whose one step runs long enough to kill the server in the middle of building it; the step's output
depends on CHAOS_MARK, so each test run builds it afresh."""

import os

import modal

MARK = os.environ.get("CHAOS_MARK", "unset")
image = modal.Image.debian_slim().run_commands(
    f"echo building-{MARK} && sleep 8 && echo {MARK} > /built-a && sleep 1 && echo {MARK} > /built-b"
)
app = modal.App("e2e-build-chaos", image=image)


@app.function()
def built() -> str:
    return open("/built-a").read().strip() + "," + open("/built-b").read().strip()


@app.local_entrypoint()
def main() -> None:
    print("BUILT " + built.remote())
