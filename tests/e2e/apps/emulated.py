"""Emulator mode: a function that asks for a GPU no worker has, and one whose image asks for a Python this machine
cannot provide (Debian carries 3.11 and 3.13; 3.12 needs a python-build-standalone mirror)."""

import os
import sys

import modal

app = modal.App("e2e-emulated")


@app.function(gpu="A100")
def on_gpu() -> dict:
    return {"emulated": os.environ.get("BERTH_EMULATED_GPU"), "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


@app.function(image=modal.Image.debian_slim(python_version="3.12"))
def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
