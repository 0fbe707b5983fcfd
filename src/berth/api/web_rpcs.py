"""Container listing and stopping, which `modal serve` and `modal deploy --strategy recreate` use to
retire the containers of the previous version, and `modal container list/stop` to manage them."""

from __future__ import annotations

import signal

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import NotFound, Unimplemented
from berth.services.servers import NO_CURL_TOKENS
from berth.store.records import AppRecord


class WebRpcs:
    s: Services

    async def TaskList(self, req: api_pb2.TaskListRequest, caller: Caller) -> api_pb2.TaskListResponse:
        resp = api_pb2.TaskListResponse()
        apps: dict[str, AppRecord] = {}
        for task in list(self.s.tasks.tasks.values()):
            if req.app_id and task.app_id != req.app_id:
                continue
            if task.app_id not in apps:
                apps[task.app_id] = await self.s.apps.get(task.app_id)
            app = apps[task.app_id]
            if req.environment_name and app.environment != req.environment_name:
                continue
            started = task.first_input_at or 0.0
            resp.tasks.add(
                task_id=task.task_id,
                app_id=task.app_id,
                app_description=app.description,
                enqueued_at=task.created_at,
                started_at=started,
            )
        return resp

    async def TaskGetInfo(self, req: api_pb2.TaskGetInfoRequest, caller: Caller) -> api_pb2.TaskGetInfoResponse:
        """One container's times, live or finished (`modal container stop` and `logs` read it first)."""
        live = self.s.tasks.tasks.get(req.task_id)
        record = await self.s.stores.core.get_task(req.task_id)
        if record is None and live is None:
            raise NotFound(f"Container {req.task_id} not found")
        info = api_pb2.TaskInfo(id=req.task_id)
        if live is not None:
            info.enqueued_at = live.created_at
            info.started_at = live.first_input_at or live.created_at
            return api_pb2.TaskGetInfoResponse(app_id=live.app_id, info=info)
        assert record is not None
        info.enqueued_at = info.started_at = record.created_at
        info.finished_at = record.ended_at or record.created_at  # not live in this server: it has ended
        info.result.status = api_pb2.GenericResult.GENERIC_STATUS_TERMINATED
        return api_pb2.TaskGetInfoResponse(app_id=record.app_id, info=info)

    async def ContainerStop(self, req: api_pb2.ContainerStopRequest, caller: Caller) -> api_pb2.ContainerStopResponse:
        task = self.s.tasks.tasks.get(req.task_id)
        if task is None:
            if await self.s.stores.core.get_task(req.task_id) is None:
                raise NotFound(f"Container {req.task_id} not found")
            return api_pb2.ContainerStopResponse()  # already stopped
        busy = task.inflight > 0
        self.s.tasks.drain(task, "stopped by request")
        if busy and not req.graceful:
            self.s.worker.signal(task.task_id, signal.SIGTERM)
        return api_pb2.ContainerStopResponse()

    async def CurlGetAuthToken(
        self, req: api_pb2.CurlAuthTokenRequest, caller: Caller
    ) -> api_pb2.CurlAuthTokenResponse:
        raise Unimplemented(NO_CURL_TOKENS)
