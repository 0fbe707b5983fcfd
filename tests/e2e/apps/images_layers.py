"""Images built from several kinds of steps; BERTH_TEST_* variables vary them between runs."""

import os
import pathlib

import modal

HERE = pathlib.Path(__file__).parent
nonce = os.environ.get("BERTH_TEST_NONCE", "0")

layered = (
    modal.Image.debian_slim()
    .run_commands("echo first-layer > /first.txt")
    .env({"BERTH_IMAGE_VAR": "from-env"})
    .run_commands(f"echo second-layer-{nonce} > /second.txt")
    .workdir("/srv/work")
    .add_local_file(HERE / "images_data.txt", "/opt/copied/data.txt", copy=True)
    .add_local_file(HERE / "images_data.txt", "/opt/mounted/data.txt")
)
app = modal.App("e2e-images-layers")


@app.function(image=layered)
def inspect() -> dict[str, str]:
    def read(path: str) -> str:
        return pathlib.Path(path).read_text().strip() if os.path.exists(path) else "<missing>"

    return {
        "first": read("/first.txt"),
        "second": read("/second.txt"),
        "var": os.environ.get("BERTH_IMAGE_VAR", "<unset>"),
        "cwd": os.getcwd(),
        "copied": read("/opt/copied/data.txt"),
        "mounted": read("/opt/mounted/data.txt"),
    }


@app.local_entrypoint()
def main() -> None:
    for key, value in sorted(inspect.remote().items()):
        print(f"{key}={value}")
