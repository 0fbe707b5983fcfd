"""Holds a secret in a running crun container until the test has looked at the data dir."""

import os
import sys
import time

import modal

app = modal.App("e2e-secret-holder")


@app.function(secrets=[modal.Secret.from_dict({"HELD_SECRET": sys.argv[1] if len(sys.argv) > 1 else ""})])
def hold(seconds: float, flag: str) -> str:
    modal.Dict.from_name(flag, create_if_missing=True)["running"] = True
    time.sleep(seconds)
    return os.environ["HELD_SECRET"]


if __name__ == "__main__":
    with app.run():
        flag = sys.argv[2]
        call = hold.spawn(8, flag)
        while not modal.Dict.from_name(flag, create_if_missing=True).get("running"):
            time.sleep(0.2)
        print("RUNNING", flush=True)
        print(call.get(timeout=120), flush=True)
