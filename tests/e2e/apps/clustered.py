"""Gang-scheduled functions: an all-reduce over the cluster's private link (plain sockets, no torch), a probe that
tries to reach a cluster from an ordinary container, and a cluster too big for any worker."""

import socket
import struct
import time

import modal
import modal.experimental

app = modal.App("e2e-clustered")
PORT = 29511


def _connect(addr: str, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((addr, PORT), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _all_reduce(value: int, rank: int, ips: list[str]) -> int:
    """Sum `value` over every rank: the others send theirs to rank 0, which sends back the total."""
    if rank == 0:
        srv = socket.socket(socket.AF_INET6)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((ips[0], PORT))
        srv.listen()
        conns = [srv.accept()[0] for _ in ips[1:]]
        total = value + sum(struct.unpack("!q", c.recv(8))[0] for c in conns)
        for c in conns:
            c.sendall(struct.pack("!q", total))
            c.close()
        srv.close()
        return total
    conn = _connect(ips[0], time.monotonic() + 60)
    conn.sendall(struct.pack("!q", value))
    total = struct.unpack("!q", conn.recv(8))[0]
    conn.close()
    return total


@app.function(timeout=240)
@modal.clustered(size=2)
def all_reduce(q: modal.Queue) -> dict:
    info = modal.experimental.get_cluster_info()
    cluster = modal.Cluster.from_context()
    total = _all_reduce(10 * (info.rank + 1), info.rank, info.container_ips)
    if info.rank == 0:  # hold the cluster's address open until an ordinary container has tried it
        srv = socket.socket(socket.AF_INET6)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("::", PORT))
        srv.listen()
        q.put({"ipv6": info.container_ips[0], "ipv4": info.container_ipv4_ips[0]})
        q.get(partition="stop", timeout=120)
        srv.close()
    return {
        "rank": info.rank,
        "total": total,
        "ips": info.container_ips,
        "ipv4s": info.container_ipv4_ips,
        "cluster_id": info.cluster_id,
        "rank_via_cluster": cluster.container_rank(),
        "container_ids": cluster.container_ids(),
        "i6pn": socket.getaddrinfo("i6pn.modal.local", None, socket.AF_INET6)[0][4][0],
    }


@app.function()
def reach(addr: str) -> str:
    try:
        socket.create_connection((addr, PORT), timeout=3).close()
        return "connected"
    except OSError as exc:
        return f"refused: {exc}"


@app.function()
@modal.experimental.clustered(size=40)
def too_big() -> int:
    return 1


@app.function()
@modal.clustered(size=2)
def echo_rank(seen: modal.Dict, x: int) -> tuple:
    """Every rank gets every input; each notes it, and the caller gets rank 0's answer."""
    rank = modal.experimental.get_cluster_info().rank
    seen[f"{rank}:{x}"] = True
    return (rank, x)
