"""MODAL_FORCE_BUILD=1 rebuilds every layer of an image; without it an unchanged image is cached.
The base is Debian's python:3.11 equivalent with no steps of its own, so a forced rebuild stays cheap."""

import pathlib

import modal

image = modal.Image.from_registry("python:3.11-slim-bookworm").run_commands(
    "cat /proc/sys/kernel/random/uuid > /stamp-env"
)
app = modal.App("e2e-images-force-env", image=image)


@app.function()
def stamp() -> str:
    return pathlib.Path("/stamp-env").read_text().strip()


@app.local_entrypoint()
def main() -> None:
    print(f"stamp={stamp.remote()}")
