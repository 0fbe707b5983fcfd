"""Run on a remote worker with an OCI runtime: reports what its container sees (its own root filesystem and
pid namespace, not the worker host's) and which addresses it can open a connection to."""

import json
import os
import socket

import modal

app = modal.App("e2e-oci-worker")


@app.function(image=modal.Image.debian_slim())
def look(host_path: str, targets: list[str]) -> dict[str, object]:
    reach = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            reach[target] = "open"
        except OSError as exc:
            reach[target] = type(exc).__name__
    return {
        "host_path_visible": os.path.exists(host_path),
        "pid1": open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode(),
        "server_url": os.environ.get("MODAL_SERVER_URL", ""),
        "reach": reach,
    }


@app.local_entrypoint()
def main(host_path: str, targets: str) -> None:
    print("LOOK " + json.dumps(look.remote(host_path, targets.split(","))))
