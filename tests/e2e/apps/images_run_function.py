"""Image.run_function() as a build step; BERTH_TEST_* variables vary it between runs.

The builder writes /opt/model.txt from its args, kwargs, its env= secret and the image's env; a RUN step
after it copies the file, so a rerun of the builder must rebuild that layer too. REVISION is a global the
builder reads: as on Modal, its local value only keys the step (the container imports this file afresh)."""

import os
import pathlib

import modal

NONCE = os.environ.get("BERTH_TEST_NONCE", "0")
FAIL = os.environ.get("BERTH_TEST_FAIL", "")
SIZE = int(os.environ.get("BERTH_TEST_SIZE", "3"))
REVISION = os.environ.get("BERTH_TEST_REVISION", "r1")


def write_model(name: str, nonce: str, *, size: int = 1, fail: str = "") -> None:
    print(f"builder-ran name={name} nonce={nonce} size={size} revision={REVISION}")
    if fail:
        raise ValueError(f"builder-failed-{fail}")
    secret = os.environ.get("BERTH_BUILD_SECRET", "<unset>")
    image_var = os.environ.get("BERTH_IMAGE_VAR", "<unset>")
    pathlib.Path("/opt/model.txt").write_text(f"{name}:{nonce}:{size}:{secret}:{image_var}\n")


image = (
    modal.Image.debian_slim()
    .env({"BERTH_IMAGE_VAR": "from-image"})
    .run_function(
        write_model,
        args=("weights", NONCE),
        kwargs={"size": SIZE, "fail": FAIL},
        env={"BERTH_BUILD_SECRET": "s3cret"},
    )
    .run_commands("cp /opt/model.txt /opt/after.txt")
)
app = modal.App("e2e-images-run-function")


@app.function(image=image)
def read_model() -> dict[str, str]:
    def read(path: str) -> str:
        return pathlib.Path(path).read_text().strip() if os.path.exists(path) else "<missing>"

    return {
        "model": read("/opt/model.txt"),
        "after": read("/opt/after.txt"),
        "secret": os.environ.get("BERTH_BUILD_SECRET", "<unset>"),
    }


@app.local_entrypoint()
def main() -> None:
    for key, value in sorted(read_model.remote().items()):
        print(f"{key}={value}")
