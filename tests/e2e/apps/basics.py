import sys

import modal

app = modal.App("e2e-basics")


@app.function()
def square(x: int) -> int:
    print(f"stdout from square({x})")
    print(f"stderr from square({x})", file=sys.stderr)
    return x * x


@app.function()
def shout() -> None:
    print("SHOUT-FROM-CONTAINER")


@app.local_entrypoint()
def main(n: int, label: str = "none") -> None:
    print(f"remote={square.remote(n)}")
    print(f"local={square.local(n + 1)}")
    print(f"label={label}")
