"""A volume shared by containers on different workers of a cluster: each reports the worker it ran on
(its HOME is under that worker's data dir). The cluster's workers use the process runtime, whose /root is the
task directory ($HOME), so the functions reach the mount through it — on Modal that is /root."""

import os

import modal

app = modal.App("e2e-cluster-volume")
vol = modal.Volume.from_name("cluster-vol", create_if_missing=True)


@app.function(volumes={"/root/data": vol})
def write(name: str, text: str, commit: bool) -> str:
    data = os.path.join(os.environ["HOME"], "data")
    os.makedirs(f"{data}/sub", exist_ok=True)
    with open(f"{data}/sub/{name}", "w") as f:
        f.write(text)
    if commit:
        vol.commit()
    return os.environ["HOME"]


@app.function(volumes={"/root/data": vol})
def read_all() -> tuple[dict[str, str], str]:
    vol.reload()
    data = os.path.join(os.environ["HOME"], "data")
    found = {}
    for dirpath, _, names in os.walk(data):
        for name in names:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, data)] = open(path).read()
    return found, os.environ["HOME"]


@app.local_entrypoint()
def main(step: str) -> None:
    if step == "write":
        print("HOME", write.remote("a.txt", "one", False))
    elif step == "commit":
        print("HOME", write.remote("c.txt", "three", True))
    else:
        found, home = read_all.remote()
        print("FOUND", sorted(found.items()))
        print("HOME", home)
