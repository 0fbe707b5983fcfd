"""Gang-scheduled clusters (`@modal.clustered`): a member's hello (its rank and its peers' addresses) and
`modal.Cluster.from_id`. The scheduling is in berth.scheduling.clusters."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services


class ClusterRpcs:
    s: Services

    async def TaskClusterHello(
        self, req: api_pb2.TaskClusterHelloRequest, caller: Caller
    ) -> api_pb2.TaskClusterHelloResponse:
        return await self.s.tasks.clusters.hello(caller.task_id, req)

    async def ClusterGet(self, req: api_pb2.ClusterGetRequest, caller: Caller) -> api_pb2.ClusterGetResponse:
        return self.s.tasks.clusters.get(req.cluster_id)
