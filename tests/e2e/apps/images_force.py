"""A layer built with force_build=True: every run builds it again, the layers below it stay cached."""

import pathlib

import modal

image = modal.Image.debian_slim().run_commands("cat /proc/sys/kernel/random/uuid > /stamp", force_build=True)
app = modal.App("e2e-images-force", image=image)


@app.function()
def stamp() -> str:
    return pathlib.Path("/stamp").read_text().strip()


@app.local_entrypoint()
def main() -> None:
    print(f"stamp={stamp.remote()}")
