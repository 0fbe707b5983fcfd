"""Sandbox RPCs: decode, call the SandboxManager, encode. V2 lifecycle; and V1, which the 1.6.4 client takes
for `pty=True` and `gpu=` (so `modal shell`), for `from_name` and `list`, and for a sandbox with a V1 id. Exec
goes to the worker's command router, not here; so does a V2 sandbox's own stdio. A V1 sandbox's stdout and
stderr come through here (SandboxGetLogs, from the app's log stream)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.errors import NotFound
from berth.scheduling import tunnels
from berth.scheduling.sandboxes import SandboxRecord

_MAX_WAIT_S = 55.0
_LOG_POLL_S = 1.0  # how long one pass over the app's log waits before re-checking whether the sandbox ended
_LIST_PAGE = 100


def _tags(tags: dict[str, str]) -> list[api_pb2.SandboxTag]:
    return [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in tags.items()]


def _metadata(record: SandboxRecord) -> api_pb2.SandboxHandleMetadata:
    md = api_pb2.SandboxHandleMetadata(app_id=record.app_id)
    if record.result is not None:
        md.result.CopyFrom(record.result)
    return md


class SandboxRpcs:
    s: Services

    async def SandboxCreateV2(
        self, req: api_pb2.SandboxCreateV2Request, caller: Caller
    ) -> api_pb2.SandboxCreateV2Response:
        await self.s.apps.get(req.app_id)
        record = await self.s.sandboxes.create(req)
        return api_pb2.SandboxCreateV2Response(
            sandbox_id=record.sandbox_id,
            task_id=record.task_id,
            metadata=_metadata(record),
            command_router_access=_for_client(self.s.sandboxes.router_access(record), caller),
            tunnels=await self.s.sandboxes.tunnel_data(record.sandbox_id),
        )

    async def SandboxCreate(self, req: api_pb2.SandboxCreateRequest, caller: Caller) -> api_pb2.SandboxCreateResponse:
        """V1 create: the same sandbox as SandboxCreateV2 (secrets arrive as definition.secret_ids)."""
        await self.s.apps.get(req.app_id)
        v2 = api_pb2.SandboxCreateV2Request(app_id=req.app_id, definition=req.definition, tags=req.tags)
        record = await self.s.sandboxes.create(v2, v1=True)
        return api_pb2.SandboxCreateResponse(sandbox_id=record.sandbox_id, metadata=_metadata(record))

    async def SandboxGetTaskId(
        self, req: api_pb2.SandboxGetTaskIdRequest, caller: Caller
    ) -> api_pb2.SandboxGetTaskIdResponse:
        """The task is running once create returns (it starts the container before answering), so
        wait_until_ready has nothing to wait for."""
        return await self.SandboxGetTaskIdV2(req, caller)

    async def SandboxWait(self, req: api_pb2.SandboxWaitRequest, caller: Caller) -> api_pb2.SandboxWaitResponse:
        return await self.SandboxWaitV2(req, caller)

    async def SandboxTerminate(
        self, req: api_pb2.SandboxTerminateRequest, caller: Caller
    ) -> api_pb2.SandboxTerminateResponse:
        return await self.SandboxTerminateV2(req, caller)

    async def SandboxStdinWrite(
        self, req: api_pb2.SandboxStdinWriteRequest, caller: Caller
    ) -> api_pb2.SandboxStdinWriteResponse:
        await self.s.sandboxes.write_stdin(req.sandbox_id, req.index, req.input, req.eof)
        return api_pb2.SandboxStdinWriteResponse()

    async def SandboxGetLogs(
        self, req: api_pb2.SandboxGetLogsRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.TaskLogsBatch]:
        """A V1 sandbox's stdout or stderr from `last_entry_id` on, then `eof` once it has ended; returns
        early (no eof) after `timeout`, and the client asks again from its last entry id."""
        record = await self.s.sandboxes.get(req.sandbox_id)
        cursor = req.last_entry_id
        deadline = time.monotonic() + min(req.timeout or _MAX_WAIT_S, _MAX_WAIT_S)
        while True:
            ended = (await self.s.sandboxes.get(req.sandbox_id)).result is not None
            async for batch in self.s.logs.follow(record.app_id, cursor, _LOG_POLL_S, record.task_id):
                cursor = batch.entry_id or cursor
                ended = ended or batch.app_done
                items = [i for i in batch.items if i.data and i.file_descriptor == req.file_descriptor]
                if items:
                    yield api_pb2.TaskLogsBatch(task_id=record.task_id, entry_id=cursor, items=items)
            if ended:  # one more pass after the end was seen: the last output arrives before the exit
                yield api_pb2.TaskLogsBatch(task_id=record.task_id, entry_id=cursor, eof=True)
                return
            if time.monotonic() >= deadline:
                return

    async def SandboxWaitV2(self, req: api_pb2.SandboxWaitRequest, caller: Caller) -> api_pb2.SandboxWaitResponse:
        record = await self.s.sandboxes.wait(req.sandbox_id, min(max(req.timeout, 0.0), _MAX_WAIT_S))
        resp = api_pb2.SandboxWaitResponse(metadata=_metadata(record))
        if record.result is not None:
            resp.result.CopyFrom(record.result)
        return resp

    async def SandboxTerminateV2(
        self, req: api_pb2.SandboxTerminateRequest, caller: Caller
    ) -> api_pb2.SandboxTerminateResponse:
        existing = await self.s.sandboxes.terminate(req.sandbox_id)
        return api_pb2.SandboxTerminateResponse(existing_result=existing)

    async def SandboxGetTaskIdV2(
        self, req: api_pb2.SandboxGetTaskIdRequest, caller: Caller
    ) -> api_pb2.SandboxGetTaskIdResponse:
        record = await self.s.sandboxes.get(req.sandbox_id)
        return api_pb2.SandboxGetTaskIdResponse(task_id=record.task_id, task_result=record.result)

    async def SandboxGetCommandRouterAccess(
        self, req: api_pb2.SandboxGetCommandRouterAccessRequest, caller: Caller
    ) -> api_pb2.SandboxGetCommandRouterAccessResponse:
        if req.sandbox_id:
            access = self.s.sandboxes.router_access(await self.s.sandboxes.get(req.sandbox_id))
        else:
            access = self.s.sandboxes.task_router_access(req.task_id)
        access = _for_client(access, caller)
        return api_pb2.SandboxGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)

    async def TaskGetCommandRouterAccess(
        self, req: api_pb2.TaskGetCommandRouterAccessRequest, caller: Caller
    ) -> api_pb2.TaskGetCommandRouterAccessResponse:
        if req.task_id not in self.s.tasks.tasks:
            raise NotFound(f"Task {req.task_id} is not running")
        access = _for_client(self.s.sandboxes.task_router_access(req.task_id), caller)
        return api_pb2.TaskGetCommandRouterAccessResponse(url=access.url, jwt=access.jwt)

    async def SandboxGetTunnelsV2(
        self, req: api_pb2.SandboxGetTunnelsRequest, caller: Caller
    ) -> api_pb2.SandboxGetTunnelsResponse:
        """The tunnels are open once create returns, so there is nothing to wait for."""
        return api_pb2.SandboxGetTunnelsResponse(tunnels=await self.s.sandboxes.tunnel_data(req.sandbox_id))

    async def SandboxGetTunnels(
        self, req: api_pb2.SandboxGetTunnelsRequest, caller: Caller
    ) -> api_pb2.SandboxGetTunnelsResponse:
        return await self.SandboxGetTunnelsV2(req, caller)

    async def TunnelStart(self, req: api_pb2.TunnelStartRequest, caller: Caller) -> api_pb2.TunnelStartResponse:
        address = await tunnels.forward(self.s.worker, caller.task_id, req)
        return api_pb2.TunnelStartResponse(
            host=address.host,
            port=address.port,
            unencrypted_host=address.unencrypted_host,
            unencrypted_port=address.unencrypted_port,
        )

    async def TunnelStop(self, req: api_pb2.TunnelStopRequest, caller: Caller) -> api_pb2.TunnelStopResponse:
        return api_pb2.TunnelStopResponse(exists=await tunnels.stop_forward(self.s.worker, caller.task_id, req.port))

    async def SandboxTagsSetV2(self, req: api_pb2.SandboxTagsSetRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.sandboxes.set_tags(req.sandbox_id, {t.tag_name: t.tag_value for t in req.tags})
        return empty_pb2.Empty()

    async def SandboxTagsGetV2(
        self, req: api_pb2.SandboxTagsGetRequest, caller: Caller
    ) -> api_pb2.SandboxTagsGetResponse:
        return api_pb2.SandboxTagsGetResponse(tags=_tags(await self.s.sandboxes.tags(req.sandbox_id)))

    async def SandboxGetFromNameV2(
        self, req: api_pb2.SandboxGetFromNameRequest, caller: Caller
    ) -> api_pb2.SandboxGetFromNameResponse:
        env = req.environment_name or caller.environment or "main"
        try:
            app_id = await self.s.deployments.app_id_by_name(env, req.app_name)
        except NotFound as exc:
            raise NotFound(f"App '{req.app_name}' not found in environment '{env}'") from exc
        record = await self.s.sandboxes.by_name(app_id, req.sandbox_name)
        return api_pb2.SandboxGetFromNameResponse(sandbox_id=record.sandbox_id, metadata=_metadata(record))

    async def SandboxGetFromName(
        self, req: api_pb2.SandboxGetFromNameRequest, caller: Caller
    ) -> api_pb2.SandboxGetFromNameResponse:
        return await self.SandboxGetFromNameV2(req, caller)

    async def SandboxListV2(self, req: api_pb2.SandboxListRequest, caller: Caller) -> api_pb2.SandboxListResponse:
        tags = {t.tag_name: t.tag_value for t in req.tags}
        found = await self.s.sandboxes.running(req.app_id, tags, req.before_timestamp, _LIST_PAGE)
        resp = api_pb2.SandboxListResponse()
        for record in found:
            resp.sandboxes.add(
                id=record.sandbox_id,
                created_at=record.created_at,
                app_id=record.app_id,
                tags=_tags(record.tags),
                name=record.name,
                image_id=record.image_id,
                timeout_secs=record.timeout_s,
                idle_timeout_secs=record.idle_timeout_s,
                task_info=api_pb2.TaskInfo(id=record.task_id, sandbox_id=record.sandbox_id),
                metadata=_metadata(record),
            )
        return resp

    async def SandboxList(self, req: api_pb2.SandboxListRequest, caller: Caller) -> api_pb2.SandboxListResponse:
        """The 1.6.4 client lists through the V1 RPC unless told otherwise; it lists V2 sandboxes too."""
        return await self.SandboxListV2(req, caller)


_LIBMODAL = frozenset({api_pb2.CLIENT_TYPE_LIBMODAL, api_pb2.CLIENT_TYPE_LIBMODAL_JS, api_pb2.CLIENT_TYPE_LIBMODAL_GO})


def _for_client(access: api_pb2.CommandRouterAccess, caller: Caller) -> api_pb2.CommandRouterAccess:
    """The router URL as the caller's SDK takes it. The Python client takes http:// when its server is on
    localhost and speaks plain HTTP/2 to it. The libmodal SDKs (JS, Go) refuse any scheme but https, and
    speak plain HTTP/2 to an https router exactly when their server is on localhost: the one case a router
    without TLS serves. So they get the same address under https://."""
    if caller.client_type in _LIBMODAL and access.url.startswith("http://"):
        return api_pb2.CommandRouterAccess(url="https://" + access.url.removeprefix("http://"), jwt=access.jwt)
    return access
