"""An app whose image needs apt and uv: what 02_building_containers/import_sklearn.py builds."""

import os
import socket
import sys

import modal

image = modal.Image.debian_slim().apt_install("libgomp1").uv_pip_install("scikit-learn")
app = modal.App("e2e-images-sklearn", image=image)

with image.imports():
    import numpy as np
    from sklearn import datasets, linear_model


@app.function()
def fit() -> float:
    print("Inside run!")
    x, y = datasets.load_diabetes(return_X_y=True)
    model = linear_model.LinearRegression().fit(x[:, np.newaxis, 2], y)
    return float(model.coef_[0])


@app.function()
def environment() -> dict[str, object]:
    """What the container sees of its world."""
    with open("/etc/os-release") as f:
        os_release = f.read()
    with open("/berth-written-by-container", "w") as f:
        f.write("x")
    return {
        "os_release": os_release,
        "python": sys.version,
        "executable": sys.executable,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "root_entries": sorted(os.listdir("/")),
        "pip_config": os.environ.get("PIP_CONFIG_FILE"),
        "cwd": os.getcwd(),
    }


@app.function()
def exists(paths: list[str]) -> dict[str, bool]:
    return {p: os.path.exists(p) for p in paths}


@app.local_entrypoint()
def main() -> None:
    print(f"coef={fit.remote():.3f}")
