"""Gang-scheduled functions: an all-reduce over the cluster's private link (plain sockets, no torch), a probe that
tries to reach a cluster from an ordinary container, and a cluster too big for any worker. `all_reduce_across`
is the same all-reduce with members too big for two to share one worker (tests/cluster: a cluster that spans
workers), and a bulk transfer that needs the link's MTU right."""

import fcntl
import socket
import struct
import time

import modal
import modal.experimental

app = modal.App("e2e-clustered")
PORT = 29511
BULK = 4 << 20  # bytes each follower also sends rank 0: full-size segments, which an MTU too large would lose


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("MemTotal:"))


# Over half of this host's memory: no worker on this host holds two (tests/cluster's workers all share it).
MEMBER_MB = _memory_mb() * 3 // 5


def _connect(addr: str, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection((addr, PORT), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(min(n - len(data), 1 << 16))
        if not chunk:
            raise ConnectionError(f"the peer closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def _all_reduce(value: int, rank: int, ips: list[str], bulk: int = 0) -> int:
    """Sum `value` over every rank: the others send theirs (and `bulk` bytes) to rank 0, which sends back the
    total."""
    if rank == 0:
        srv = socket.socket(socket.AF_INET6)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((ips[0], PORT))
        srv.listen()
        conns = [srv.accept()[0] for _ in ips[1:]]
        for c in conns:
            c.settimeout(60)
        total = value + sum(struct.unpack("!q", _read(c, 8))[0] for c in conns)
        assert all(_read(c, bulk) == b"x" * bulk for c in conns)
        for c in conns:
            c.sendall(struct.pack("!q", total))
            c.close()
        srv.close()
        return total
    conn = _connect(ips[0], time.monotonic() + 180)  # rank 0's container may start well after this one under load
    conn.settimeout(60)
    conn.sendall(struct.pack("!q", value) + b"x" * bulk)
    total = struct.unpack("!q", _read(conn, 8))[0]
    conn.close()
    return total


def _mtu(ifname: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = fcntl.ioctl(s.fileno(), 0x8921, struct.pack("16si", ifname.encode(), 0))  # SIOCGIFMTU
        return int(struct.unpack("16si", ifreq)[1])


@app.function(timeout=240)
@modal.clustered(size=2)
def all_reduce(q: modal.Queue) -> dict:
    return _member(q, 0)


@app.function(timeout=240, memory=MEMBER_MB)
@modal.clustered(size=2)
def all_reduce_across(q: modal.Queue) -> dict:
    return _member(q, BULK)


def _member(q: modal.Queue, bulk: int) -> dict:
    info = modal.experimental.get_cluster_info()
    cluster = modal.Cluster.from_context()
    total = _all_reduce(10 * (info.rank + 1), info.rank, info.container_ips, bulk)
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
        "mtu": _mtu("i6pn0"),
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
