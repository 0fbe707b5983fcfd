import os

import modal

if os.environ.get("MODAL_IS_REMOTE") == "1":
    raise RuntimeError("this module refuses to import in a container")

app = modal.App("e2e-import-error")


@app.function()
def never_runs() -> int:
    return 1


@app.local_entrypoint()
def main() -> None:
    print(list(never_runs.map(range(3))))
