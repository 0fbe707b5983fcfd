"""Images that cannot be built; BERTH_TEST_BAD picks which."""

import os

import modal

nonce = os.environ.get("BERTH_TEST_NONCE", "0")
images = {
    "failing-step": lambda: modal.Image.debian_slim().run_commands(f"echo step-output-{nonce}; exit 3"),
    "no-such-package": lambda: modal.Image.debian_slim().pip_install("berth-no-such-package-0xdead"),
    "no-such-apt": lambda: modal.Image.debian_slim().apt_install("berth-no-such-apt-package"),
    "python-version": lambda: modal.Image.debian_slim(python_version="3.12"),
    "instruction": lambda: modal.Image.debian_slim().dockerfile_commands(["ONBUILD RUN echo hi"]),
    "registry": lambda: modal.Image.from_registry("registry.berth-unreachable.example/team/app:1"),
}
app = modal.App("e2e-images-bad", image=images[os.environ.get("BERTH_TEST_BAD", "failing-step")]())


@app.function()
def noop() -> int:
    return 1


@app.local_entrypoint()
def main() -> None:
    print(f"noop={noop.remote()}")
