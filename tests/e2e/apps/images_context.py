"""Images that take files from the client: from_dockerfile with a build context, pip_install of a
requirements file, and add_local_python_source."""

import pathlib

import modal

HERE = pathlib.Path(__file__).parent
from_dockerfile = modal.Image.from_dockerfile(HERE / "images_ctx" / "Dockerfile", context_dir=HERE / "images_ctx")
with_requirements = (
    modal.Image.debian_slim()
    .pip_install_from_requirements(str(HERE / "images_ctx" / "requirements.txt"))
    .add_local_python_source("images_pkg")
)
app = modal.App("e2e-images-context")


@app.function(image=from_dockerfile)
def dockerfile_files() -> dict[str, str]:
    import os

    return {
        "copy": pathlib.Path("/app/copy-of-data.txt").read_text().strip(),
        "greeting": pathlib.Path("/app/greeting.txt").read_text().strip(),
        "env": os.environ.get("GREETING", ""),
    }


@app.function(image=with_requirements)
def requirements_and_source() -> dict[str, str]:
    import images_pkg
    import six

    return {"six": six.__version__, "pkg": images_pkg.VALUE}


@app.local_entrypoint()
def main() -> None:
    for key, value in sorted({**dockerfile_files.remote(), **requirements_and_source.remote()}.items()):
        print(f"{key}={value}")
