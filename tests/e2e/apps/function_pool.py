"""Functions of one image for tests/e2e/test_function_pool.py: each input in a container of its own
(single_use_containers), so that every call after the first can come from the standby pool."""

import os
import socket

import modal

app = modal.App("function-pool")
image = modal.Image.debian_slim()


def seen() -> dict[str, object]:
    return {
        "task": os.environ.get("MODAL_TASK_ID"),
        "headers": os.environ.get("MODAL_OVERRIDE_HEADERS", ""),
        "host": socket.gethostname(),
        "root": sorted(os.listdir("/root")),
        "cwd": os.getcwd(),
        "a": os.environ.get("POOL_A"),
        "b": os.environ.get("POOL_B"),
        "nice": os.nice(0),
    }


@app.function(image=image, secrets=[modal.Secret.from_dict({"POOL_A": "a-secret"})], single_use_containers=True)
def first(x: int) -> dict[str, object]:
    with open("/root/left-behind", "w") as f:
        f.write("first was here")
    return {**seen(), "x": x * 2}


@app.function(image=image, secrets=[modal.Secret.from_dict({"POOL_B": "b-secret"})], single_use_containers=True)
def second(x: int) -> dict[str, object]:
    return {**seen(), "x": x * 3}


@app.cls(image=image, enable_memory_snapshot=True, single_use_containers=True)
class Snapshotted:
    @modal.enter(snap=True)
    def load(self) -> None:
        self.events = [["snap", os.environ.get("MODAL_TASK_ID")]]
        self.weights = "loaded before the snapshot"

    @modal.enter(snap=False)
    def start(self) -> None:
        self.events.append(["after", os.environ.get("MODAL_TASK_ID")])

    @modal.method()
    def run(self) -> dict[str, object]:
        task = os.environ.get("MODAL_TASK_ID")
        return {"events": self.events, "weights": self.weights, "task": task, "nice": os.nice(0)}


@app.cls(image=image, enable_memory_snapshot=True, single_use_containers=True)
class SnapshotUsesApi:
    """A snap=True hook that calls Modal's API: refused in a standby (it has no task yet); containers start fresh."""

    @modal.enter(snap=True)
    def load(self) -> None:
        modal.Dict.from_name("function-pool-snap-api", create_if_missing=True)["seen"] = True

    @modal.method()
    def run(self) -> str | None:
        return os.environ.get("MODAL_TASK_ID")
