"""GPU requests: what a container gets for gpu=, and how a request no worker can meet waits."""

import os
import subprocess

import modal

app = modal.App("berth-gpu")


def describe() -> dict:
    smi = None
    try:
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as exc:
        smi = f"no nvidia-smi: {exc}"
    cuda = None
    try:
        import torch  # only where the worker's Python has it (a GPU machine)

        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "smi": smi, "cuda": cuda}


@app.function(gpu="T4")
def on_t4() -> dict:
    return describe()


@app.function(gpu="H100")
def on_h100() -> dict:
    return describe()


@app.function(gpu=["T4", "any"])
def t4_or_any() -> dict:
    return describe()


@app.function()
def on_cpu() -> dict:
    return describe()


@app.local_entrypoint()
def main(wait: float = 5.0, want: str = "T4"):
    target = {"T4": on_t4, "H100": on_h100, "ranked": t4_or_any}[want]
    call = target.spawn()
    try:
        print("RESULT", want, call.get(timeout=wait))
    except TimeoutError:
        print("STILL QUEUED", want)
    print("CPU", on_cpu.remote())
