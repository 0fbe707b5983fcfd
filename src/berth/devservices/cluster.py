"""A whole Berth cluster on this machine, for tests, the bench and anyone trying Berth on many "hosts":
PostgreSQL, Redis and a SeaweedFS S3 server on loopback, a `berth server` on PostgreSQL + Redis + S3 that
serves TLS on a private bridge, and N `berth worker`s, each in its own network namespace behind that
bridge. Everything lives under DIR; `scripts/local-cluster.sh` is the command line:

    up DIR N [R]        start it all (R server replicas on the one database, default 1); returns once every
                        replica serves and every worker has joined (worker I joins replica (I-1)%R+1 first)
    env DIR             the exports a modal client needs (as `berth env` prints them), for replica 1
    kill-worker DIR I   SIGKILL worker I (1..N)
    restart-server DIR R  SIGKILL server replica R (1..R) and start it again under the same name and port
    cut-worker DIR I    take worker I's network down (heal-worker DIR I brings it back)
    down DIR            stop everything this cluster started and remove its namespaces and links

Workers run the process runtime unless BERTH_CLUSTER_RUNTIME names another (crun, runc, runsc): then each
sets up container isolation inside its own namespace, as it would on a host of its own.

Only processes this module started are signalled, by the pids it recorded in DIR/cluster.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def _names(root: Path) -> dict[str, Any]:
    """Interface and namespace names (15 characters at most) and a /24 that are stable for this DIR."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()
    tag = digest[:4]
    subnet = 10 + int(digest[4:8], 16) % 200
    return {"tag": tag, "bridge": f"blc{tag}", "prefix": f"10.251.{subnet}"}


def _state_path(root: Path) -> Path:
    return root / "cluster.json"


def _load(root: Path) -> dict[str, Any]:
    return dict(json.loads(_state_path(root).read_text()))


def _save(root: Path, state: dict[str, Any]) -> None:
    _state_path(root).write_text(json.dumps(state, indent=2))


def _wait(check: Any, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _start_services(root: Path, state: dict[str, Any]) -> dict[str, str]:
    from berth.devservices.postgres import start as start_postgres
    from berth.devservices.redis import start_redis
    from berth.devservices.s3 import start_seaweed_s3

    # As root, postgres runs as the `postgres` user, which may not be able to enter DIR (a 0700 temp dir):
    # its files go to a directory of its own under /tmp, linked from DIR and removed by `down`.
    pg_dir = Path(tempfile.mkdtemp(prefix="berth-lc-pg-"))
    pg_dir.chmod(0o755)
    (root / "postgres").symlink_to(pg_dir)
    state["postgres_dir"] = str(pg_dir)
    _save(root, state)
    pg = start_postgres(pg_dir)
    state["pids"]["postgres"] = pg.proc.pid
    _save(root, state)
    redis = start_redis(root / "redis")
    state["pids"]["redis"] = redis.proc.pid
    _save(root, state)
    s3 = start_seaweed_s3(root / "s3")
    state["pids"]["s3"] = s3.proc.pid  # its own process group
    _save(root, state)
    return {"BERTH_DATABASE_URL": pg.url(), "BERTH_REDIS_URL": redis.url, "BERTH_BLOBS_URL": s3.blobs_url("berth")}


def _network(root: Path, n: int) -> dict[str, Any]:
    names = _names(root)
    bridge, prefix = names["bridge"], names["prefix"]
    _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "add", f"{prefix}.1/24", "dev", bridge)
    _ip("link", "set", bridge, "up")
    for i in range(1, n + 1):
        ns, host_end = f"{bridge}-w{i}", f"{bridge}w{i}"
        _ip("netns", "add", ns)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", host_end, "master", bridge)
        _ip("link", "set", host_end, "up")
        _ip("-n", ns, "addr", "add", f"{prefix}.{10 + i}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    return names


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    return proc.pid


def _berth_status(data_dir: Path) -> bool:
    return subprocess.run([BIN / "berth", "status", "--data-dir", data_dir], capture_output=True).returncode == 0


def up(root: Path, n: int, replicas: int = 1) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if _state_path(root).exists():
        raise SystemExit(f"{root} already holds a cluster; run `down {root}` first")
    runtime = os.environ.get("BERTH_CLUSTER_RUNTIME", "process")
    state: dict[str, Any] = {
        "n": n,
        "replicas": replicas,
        "runtime": runtime,
        "pids": {"workers": {}, "servers": {}},
        **_names(root),
    }
    _save(root, state)
    try:
        _up(root, n, state)
    except BaseException:
        down(root)
        raise


def _server_dir(root: Path, r: int) -> Path:
    return root / ("server" if r == 1 else f"server{r}")


def _server_log(root: Path, r: int) -> Path:
    return root / ("server.log" if r == 1 else f"server{r}.log")


def _start_server(root: Path, state: dict[str, Any], r: int) -> None:
    """Replica r on its own port of the bridge address; replicas after the first share the first one's CA, so
    workers check every replica with one --ca."""
    data_dir = _server_dir(root, r)
    if r > 1 and not (data_dir / "tls").exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(_server_dir(root, 1) / "tls", data_dir / "tls")
        for leaf in data_dir.joinpath("tls").glob("server*"):
            leaf.unlink()  # its own server certificate is issued at start
    listen = f"{state['prefix']}.1:{state['ports'][r - 1]}"
    argv = [str(BIN / "berth"), "server", "--data-dir", str(data_dir), "--listen", listen, "--tls"]
    argv += ["--replica-name", f"replica{r}"]
    state["pids"]["servers"][str(r)] = _spawn(argv, _server_log(root, r), {**os.environ, **state["engines"]})
    _save(root, state)
    _wait(lambda: _berth_status(data_dir), f"berth server replica {r} to serve")


def _up(root: Path, n: int, state: dict[str, Any]) -> None:
    state["engines"] = _start_services(root, state)
    _network(root, n)
    state["network"] = True
    from berth.devservices.postgres import free_port

    state["ports"] = [free_port() for _ in range(state["replicas"])]
    for r in range(1, state["replicas"] + 1):
        _start_server(root, state, r)
    token = subprocess.run(  # in the servers' database, so with its engines' settings
        [BIN / "berth", "join-token", "create", "--data-dir", _server_dir(root, 1)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **state["engines"]},
    ).stdout.strip()
    for i in range(1, n + 1):
        state["pids"]["workers"][str(i)] = _start_worker(root, state, i, token)
        _save(root, state)
    logs = [_server_log(root, r) for r in range(1, state["replicas"] + 1)]
    for i in range(1, n + 1):
        _wait(
            lambda i=i: any(f"worker w{i} joined" in log.read_text(errors="replace") for log in logs),
            f"worker {i} to join",
        )


def restart_server(root: Path, r: int) -> None:
    state = _load(root)
    pid = state["pids"]["servers"][str(r)]
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, 10)
    _start_server(root, state, r)


def _start_worker(root: Path, state: dict[str, Any], i: int, token: str) -> int:
    ns = f"{state['bridge']}-w{i}"
    count = state["replicas"]
    order = [(i - 1 + k) % count for k in range(count)]  # its own replica first, then the others
    server = ",".join(f"https://{state['prefix']}.1:{state['ports'][k]}" for k in order)
    # nsenter, not `ip netns exec`: that mounts a sysfs of the namespace's own over /sys, which hides the
    # cgroup2 tree an OCI runtime puts its containers in.
    argv = ["nsenter", f"--net=/var/run/netns/{ns}", str(BIN / "berth"), "worker", "--server", server]
    argv += ["--ca", str(root / "server" / "tls" / "ca.pem"), "--join-token", token, "--name", f"w{i}"]
    argv += ["--data-dir", str(root / f"w{i}"), "--runtime", state.get("runtime", "process"), "--slots", "8"]
    return _spawn(argv, root / f"w{i}.log")


def env(root: Path) -> None:
    out = subprocess.run([BIN / "berth", "env", "--data-dir", root / "server"], capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip())


def kill_worker(root: Path, i: int) -> None:
    pid = _load(root)["pids"]["workers"][str(i)]
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def link_worker(root: Path, i: int, up_: bool) -> None:
    state = _load(root)
    _ip("link", "set", f"{state['bridge']}w{i}", "up" if up_ else "down")


def _signal(pid: int | None, sig: int, group: bool = False) -> None:
    if pid is None:
        return
    try:
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pid: int | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    _signal(pid, signal.SIGKILL)


def down(root: Path) -> None:
    if not _state_path(root).exists():
        return
    state = _load(root)
    pids = state["pids"]
    for pid in pids["workers"].values():
        _signal(pid, signal.SIGTERM, group=True)
    for pid in pids["workers"].values():
        _wait_gone(pid, 20)
    for i in range(1, state["n"] + 1):  # what is left in a namespace is ours: a killed worker's containers
        ns = f"{state['bridge']}-w{i}"
        found = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in map(int, found):
            _signal(pid, signal.SIGKILL)
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", f"{state['bridge']}w{i}", check=False)
    servers = list(pids.get("servers", {}).values())
    for pid in servers:
        _signal(pid, signal.SIGINT)
    for pid in servers:
        _wait_gone(pid, 60)
    _signal(pids.get("postgres"), signal.SIGINT)
    _signal(pids.get("redis"), signal.SIGTERM)
    _signal(pids.get("s3"), signal.SIGTERM, group=True)
    for name in ("postgres", "redis"):
        _wait_gone(pids.get(name), 30)
    _wait_gone(pids.get("s3"), 5)
    _signal(pids.get("s3"), signal.SIGKILL, group=True)
    _ip("link", "del", state["bridge"], check=False)
    if state.get("postgres_dir"):
        shutil.rmtree(state["postgres_dir"], ignore_errors=True)
        (root / "postgres").unlink(missing_ok=True)
    _state_path(root).unlink()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, root = argv[0], Path(argv[1]).resolve()
    if command == "up" and len(argv) in (3, 4):
        up(root, int(argv[2]), int(argv[3]) if len(argv) == 4 else 1)
    elif command == "restart-server" and len(argv) == 3:
        restart_server(root, int(argv[2]))
    elif command == "env":
        env(root)
    elif command == "kill-worker" and len(argv) == 3:
        kill_worker(root, int(argv[2]))
    elif command in ("cut-worker", "heal-worker") and len(argv) == 3:
        link_worker(root, int(argv[2]), command == "heal-worker")
    elif command == "down":
        down(root)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
