"""Driving scripts/local-cluster.sh from tests: its commands, and the stock client's environment for it."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "local-cluster.sh"


def cluster_cmd(*args: object, timeout: float = 300, runtime: str | None = None) -> str:
    """One local-cluster.sh command (its stdout); `runtime` sets the workers' (BERTH_CLUSTER_RUNTIME)."""
    env = {**os.environ, "BERTH_CLUSTER_RUNTIME": runtime} if runtime else None
    out = subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def client_env(root: Path, replica: int = 1) -> dict[str, str]:
    """The modal client's environment for the cluster under `root`, talking to replica 1 (as
    `local-cluster.sh env` gives it) or to another replica, which serves loopback in plain too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    for assignment in shlex.split(cluster_cmd("env", root).removeprefix("export ")):
        key, _, value = assignment.partition("=")
        env[key] = value
    if replica != 1:
        state = json.loads((root / "cluster.json").read_text())
        env["MODAL_SERVER_URL"] = f"http://127.0.0.1:{state['ports'][replica - 1]}"
    env["MODAL_CONFIG_PATH"] = str(root / "client.toml")
    return env
