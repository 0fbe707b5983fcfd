"""An app for the dashboard tests: a function that runs and prints (run through `modal run`), one that fails,
and one that keeps printing numbered lines (to watch live logs arrive in the page)."""

import time

import modal

app = modal.App("e2e-dashboard")


@app.function()
def greet(name: str) -> str:
    print(f"greeting {name}")
    return f"hello {name}"


@app.function()
def broken(x: int) -> int:
    raise ValueError(f"broken on purpose: {x}")


@app.function()
def ticker(marker: str, count: int) -> int:
    for i in range(count):
        print(f"{marker} tick {i}", flush=True)
        time.sleep(0.5)
    return count


@app.local_entrypoint()
def main(name: str = "dashboard") -> None:
    print(greet.remote(name))
    try:
        broken.remote(1)
    except ValueError:
        print("broken failed as expected")
