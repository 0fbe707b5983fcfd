"""Calls a deployed app by name from a separate process, as another program would."""

import json
import sys

import modal

app_name = sys.argv[1]
out: dict = {}
out["function"] = modal.Function.from_name(app_name, "version").remote()
out["cls"] = modal.Cls.from_name(app_name, "Model")().predict.remote(21)
out["lookup"] = modal.App.lookup(app_name).app_id.startswith("ap-")
try:
    modal.Function.from_name(app_name, "no_such_function").remote()
    out["missing_function"] = "found"
except modal.exception.NotFoundError as exc:
    out["missing_function"] = str(exc)
try:
    modal.Function.from_name("no-such-app", "version").remote()
    out["missing_app"] = "found"
except modal.exception.NotFoundError as exc:
    out["missing_app"] = str(exc)
print("RESULT " + json.dumps(out))
