"""A deployable app. VERSION is rewritten by the tests to check redeploys and rollbacks."""

import time

import modal

VERSION = "v1"

app = modal.App("e2e-deployable")


@app.function()
def version() -> str:
    return VERSION


@app.function()
def slow_version(seconds: float, started_flag: str = "") -> str:
    if started_flag:  # tell the caller this attempt is running (a named modal.Dict)
        modal.Dict.from_name(started_flag, create_if_missing=True)["started"] = True
    time.sleep(seconds)
    return VERSION


@app.cls()
class Model:
    @modal.method()
    def predict(self, x: int) -> str:
        return f"{VERSION}:{x * 2}"
