"""Gang scheduling (`@modal.clustered(size=N)`): N containers of one function start together or not at all,
learn their rank and their peers' addresses through TaskClusterHello, and each take every input of the cluster.

Rank 0 claims inputs as any container does and holds their leases; the other ranks (followers) receive a copy of
each input rank 0 took, and their outputs are dropped, so the caller gets rank 0's result, as on Modal. One
member that stops takes the whole cluster with it: the autoscaler starts a fresh one for what is still queued."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from modal_proto import api_pb2

from berth.domain.cluster import MAX_CLUSTER_SIZE, ClusterSpec, ipv4_address, place, room_for
from berth.domain.spec import WorkerCapacity
from berth.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from berth.services.notify import Notifier

HELLO_TIMEOUT_S = 300.0
FOLLOWER_POLL_S = 20.0


def cluster_size(fn: api_pb2.Function) -> int:
    """How many containers one cluster of `fn` is; 0 for a function that is not clustered."""
    return fn._experimental_group_size if fn._experimental_group_size > 1 else 0


def check_definition(fn: api_pb2.Function) -> None:
    """What Berth cannot honour about a clustered function is refused by name when it is created."""
    size = fn._experimental_group_size
    if size > MAX_CLUSTER_SIZE:
        raise InvalidArgument(f"Berth supports clusters of at most {MAX_CLUSTER_SIZE} containers, not {size}")
    if fn.i6pn_enabled and size < 1:
        raise InvalidArgument(
            "Berth does not support i6pn networking outside clustered functions: only the containers of one "
            "@modal.clustered cluster share a private network"
        )
    if size > 0 and fn._experimental_fabric_size:
        raise InvalidArgument("Berth does not support RDMA fabrics for clustered functions (fabric_size)")


async def check_cluster_definition(app_id: str, function_id: str, fn: api_pb2.Function, final: bool) -> None:
    """The catalog's hook for check_definition."""
    check_definition(fn)


def never_fits(workers: list[WorkerCapacity], size: int, memory_mb: int, cpu: float = 0.0) -> str | None:
    """Why the workers together, even empty, could never hold all of a cluster's containers at once (a cluster
    may span workers); None when they could, or while no worker is known."""
    if not workers:
        return None
    slots = sum(w.slots for w in workers)
    if slots < size:
        return (
            f"A cluster of {size} containers cannot be scheduled: the workers connected to this server "
            f"({_workers(workers)}) take {slots} containers in all"
        )
    hold = sum(room_for(w.slots, w.memory_mb or None, w.cpu, memory_mb, cpu) for w in workers)
    if hold < size:
        each = " and ".join(x for x in (f"{memory_mb} MiB" if memory_mb else "", f"{cpu:g} CPUs" if cpu else "") if x)
        return (
            f"A cluster of {size} containers of {each} cannot be scheduled: the workers connected to this server "
            f"({_workers(workers)}, {sum(w.memory_mb for w in workers)} MiB and {sum(w.cpu for w in workers):g} CPUs "
            f"in all) hold {hold} of them"
        )
    return None


def _workers(workers: list[WorkerCapacity]) -> str:
    return "1 worker" if len(workers) == 1 else f"{len(workers)} workers"


def room_now(workers: list[WorkerCapacity], size: int, memory_mb: int, cpu: float) -> bool:
    """Whether the workers can take all `size` containers now, on one worker or spread over several."""
    room = [
        (
            w.worker_id,
            room_for(
                w.slots - w.slots_used,
                w.memory_mb - w.memory_used_mb if w.memory_mb else None,
                w.cpu - w.cpu_used,
                memory_mb,
                cpu,
            ),
        )
        for w in workers
    ]
    return place(room, size) is not None


@dataclass
class Cluster:
    cluster_id: str
    function_id: str
    app_id: str
    size: int
    started_at: float
    task_ids: list[str] = field(default_factory=list)  # by rank
    ipv6: dict[int, str] = field(default_factory=dict)  # what each rank said in its hello
    # What rank 0 took and some follower has not been handed yet; inputs[0] is the `trimmed`-th it took.
    inputs: list[api_pb2.FunctionGetInputsItem] = field(default_factory=list)
    trimmed: int = 0
    delivered: dict[str, int] = field(default_factory=dict)  # follower task → how many of rank 0's it was handed

    def trim(self) -> None:
        """Forget what every follower already has."""
        followers = self.task_ids[1:]
        low = min((self.delivered.get(t, 0) for t in followers), default=self.trimmed + len(self.inputs))
        if low > self.trimmed:
            del self.inputs[: low - self.trimmed]
            self.trimmed = low

    ended: bool = False

    def specs(self) -> list[ClusterSpec]:
        return [ClusterSpec(self.cluster_id, rank, self.size) for rank in range(self.size)]

    def stats(self) -> api_pb2.ClusterStats:
        return api_pb2.ClusterStats(
            app_id=self.app_id, task_ids=self.task_ids, cluster_id=self.cluster_id, started_at=self.started_at
        )


def cluster_key(cluster_id: str) -> str:
    return f"cluster:{cluster_id}"


class Clusters:
    """The live clusters of this server's containers, by id and by member task."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._clusters: dict[str, Cluster] = {}
        self._of_task: dict[str, Cluster] = {}

    def add(self, cluster: Cluster) -> None:
        self._clusters[cluster.cluster_id] = cluster
        for task_id in cluster.task_ids:
            self._of_task[task_id] = cluster

    def of_task(self, task_id: str) -> Cluster | None:
        return self._of_task.get(task_id)

    def member_left(self, task_id: str) -> None:
        cluster = self._of_task.pop(task_id, None)
        if cluster is None:
            return
        cluster.ended = True
        self._notifier.notify(cluster_key(cluster.cluster_id))
        if not any(t in self._of_task for t in cluster.task_ids):
            self._clusters.pop(cluster.cluster_id, None)

    def get(self, cluster_id: str) -> api_pb2.ClusterGetResponse:
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            raise NotFound(f"Cluster {cluster_id} not found")
        return api_pb2.ClusterGetResponse(cluster=cluster.stats())

    async def hello(
        self, task_id: str | None, req: api_pb2.TaskClusterHelloRequest
    ) -> api_pb2.TaskClusterHelloResponse:
        """Each member says its address; all are answered once every member has (a barrier, as on Modal)."""
        cluster = self._of_task.get(task_id or "")
        if cluster is None or (req.task_id and req.task_id != task_id):
            raise PermissionDenied("TaskClusterHello must come from a container of a clustered function")
        rank = cluster.task_ids.index(task_id or "")
        cluster.ipv6[rank] = req.container_ip
        key = cluster_key(cluster.cluster_id)
        self._notifier.notify(key)
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while len(cluster.ipv6) < cluster.size and not cluster.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FailedPrecondition(
                    f"Only {len(cluster.ipv6)} of the {cluster.size} containers of cluster {cluster.cluster_id} "
                    f"started within {HELLO_TIMEOUT_S:g} s"
                )
            with self._notifier.listen(key) as waiter:
                if len(cluster.ipv6) >= cluster.size or cluster.ended:
                    break
                await waiter.wait(min(remaining, 1.0))
        if cluster.ended:
            raise NotFound(f"Cluster {cluster.cluster_id} stopped before all its containers started")
        return api_pb2.TaskClusterHelloResponse(
            cluster_id=cluster.cluster_id,
            cluster_rank=rank,
            container_ips=[cluster.ipv6[r] for r in range(cluster.size)],
            container_ipv4_ips=[ipv4_address(cluster.cluster_id, r) for r in range(cluster.size)],
        )

    # inputs: rank 0 claims, the followers get copies

    def taken(self, task_id: str, items: list[api_pb2.FunctionGetInputsItem]) -> None:
        """Rank 0 took these inputs: every follower gets them too."""
        cluster = self._of_task.get(task_id)
        if cluster is None or not items or cluster.task_ids[0] != task_id:
            return
        cluster.inputs.extend(items)
        self._notifier.notify(cluster_key(cluster.cluster_id))

    async def follower_inputs(self, task_id: str, accepting: bool) -> api_pb2.FunctionGetInputsResponse:
        cluster = self._of_task.get(task_id)
        assert cluster is not None
        deadline = time.monotonic() + FOLLOWER_POLL_S
        while accepting and not cluster.ended:
            with self._notifier.listen(cluster_key(cluster.cluster_id)) as waiter:
                start = cluster.delivered.get(task_id, 0)
                taken = cluster.trimmed + len(cluster.inputs)
                if start < taken:
                    items = cluster.inputs[start - cluster.trimmed :]
                    cluster.delivered[task_id] = taken
                    cluster.trim()
                    return api_pb2.FunctionGetInputsResponse(inputs=items)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return api_pb2.FunctionGetInputsResponse()
                await waiter.wait(min(remaining, 1.0))
            await asyncio.sleep(0)
        return api_pb2.FunctionGetInputsResponse(inputs=[api_pb2.FunctionGetInputsItem(kill_switch=True)])
