"""An app whose image is pulled from a registry: BERTH_TEST_IMAGE names it, BERTH_TEST_REGISTRY_USER and
BERTH_TEST_REGISTRY_PASSWORD (if set) go in a registry Secret, BERTH_TEST_ADD_PYTHON asks for add_python,
BERTH_TEST_FORCE=1 forces the build, and a run_commands layer goes on top of the pulled image."""

import os
import pathlib

import modal

secret = None
if os.environ.get("BERTH_TEST_REGISTRY_USER"):
    secret = modal.Secret.from_dict(
        {
            "REGISTRY_USERNAME": os.environ["BERTH_TEST_REGISTRY_USER"],
            "REGISTRY_PASSWORD": os.environ["BERTH_TEST_REGISTRY_PASSWORD"],
        }
    )
image = modal.Image.from_registry(
    os.environ.get("BERTH_TEST_IMAGE", "in-the-container"),  # the container imports this module too
    secret=secret,
    add_python=os.environ.get("BERTH_TEST_ADD_PYTHON") or None,
    force_build=os.environ.get("BERTH_TEST_FORCE") == "1",
).run_commands("echo layered-on-top > /x")
app = modal.App("e2e-registry", image=image)


@app.function()
def look() -> dict[str, str]:
    import sys

    return {
        "marker": pathlib.Path("/berth-marker.txt").read_text().strip(),
        "layer": pathlib.Path("/x").read_text().strip(),
        "env": os.environ.get("BERTH_IMAGE_ENV", ""),
        "python": sys.executable,
        "version": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


@app.local_entrypoint()
def main() -> None:
    print(f"result={look.remote()}")
