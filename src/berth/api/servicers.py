"""Core RPC families of the Modal API: apps, objects, functions and containers. Each method decodes,
calls one service and encodes. berth.api.service composes these with the other families; an RPC
that no family serves answers UNIMPLEMENTED."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services

EMPTY = empty_pb2.Empty()


class AppRpcs:
    s: Services

    async def AppCreate(self, req: api_pb2.AppCreateRequest, caller: Caller) -> api_pb2.AppCreateResponse:
        env = await self.s.accounts.require_environment(self.s.accounts.scope(req.environment_name, caller.environment))
        created = await self.s.apps.create(req, env)
        if req.tags:  # modal.App(tags=): billing reports attribute the app's usage to them
            await self.s.metering.set_app_tags(created.app_id, dict(req.tags))
        return created

    async def AppPublish(self, req: api_pb2.AppPublishRequest, caller: Caller) -> api_pb2.AppPublishResponse:
        published = await self.s.deployments.publish(req, caller.client_version)
        await self.s.metering.set_app_tags(req.app_id, dict(req.tags))  # a deploy sets the app's tags whole
        return published

    async def AppHeartbeat(self, req: api_pb2.AppHeartbeatRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.apps.heartbeat(req.app_id)
        return EMPTY

    async def AppClientDisconnect(self, req: api_pb2.AppClientDisconnectRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.apps.client_disconnected(req.app_id)
        return EMPTY

    async def AppStop(self, req: api_pb2.AppStopRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.apps.stop(req.app_id)
        return EMPTY

    async def AppGetLayout(self, req: api_pb2.AppGetLayoutRequest, caller: Caller) -> api_pb2.AppGetLayoutResponse:
        await self.s.apps.get(req.app_id)
        return api_pb2.AppGetLayoutResponse(app_layout=await self.s.layouts.app_layout(req.app_id, []))

    async def AppGetLogs(self, req: api_pb2.AppGetLogsRequest, caller: Caller) -> AsyncIterator[api_pb2.TaskLogsBatch]:
        # `modal container logs -f` names only the container: its app is the container's.
        app_id = req.app_id or (await self.s.function_insights.app_of_task(req.task_id) if req.task_id else "")
        await self.s.apps.get(app_id)
        timeout = min(req.timeout or 55.0, 55.0)
        # A function's own logs (a variant's with --all-variants would carry other function ids: not filtered).
        function_id = req.parametrized_function_id
        async for batch in self.s.logs.follow(app_id, req.last_entry_id, timeout, req.task_id, function_id):
            yield batch

    async def ClientHello(self, req: empty_pb2.Empty, caller: Caller) -> api_pb2.ClientHelloResponse:
        return api_pb2.ClientHelloResponse(image_builder_version=self.s.image_builder_version)


class ObjectRpcs:
    s: Services

    async def MountGetOrCreate(
        self, req: api_pb2.MountGetOrCreateRequest, caller: Caller
    ) -> api_pb2.MountGetOrCreateResponse:
        return await self.s.objects.mount_get_or_create(req)

    async def MountBatchedCheckExistence(
        self, req: api_pb2.MountBatchedCheckExistenceRequest, caller: Caller
    ) -> api_pb2.MountBatchedCheckExistenceResponse:
        missing = await self.s.objects.missing_files(list(req.sha256_hex_hashes))
        return api_pb2.MountBatchedCheckExistenceResponse(missing_sha256_hex_hashes=missing)

    async def MountPutFile(self, req: api_pb2.MountPutFileRequest, caller: Caller) -> api_pb2.MountPutFileResponse:
        return api_pb2.MountPutFileResponse(exists=await self.s.objects.put_file(req))

    async def BlobCreate(self, req: api_pb2.BlobCreateRequest, caller: Caller) -> api_pb2.BlobCreateResponse:
        # One plain PUT URL, in both shapes of the reply: the Python client reads the plural fields, Modal's
        # JavaScript SDK the singular ones. Berth never asks for a multipart upload: its PUT takes a whole blob.
        blob_id = self.s.blobs.new_blob_id()
        url = self.s.blob_url(blob_id, caller)
        return api_pb2.BlobCreateResponse(
            blob_id=blob_id, upload_url=url, blob_ids=[blob_id], upload_urls=api_pb2.UploadUrlList(items=[url])
        )

    async def BlobGet(self, req: api_pb2.BlobGetRequest, caller: Caller) -> api_pb2.BlobGetResponse:
        await self.s.blobs.require_blob(req.blob_id)
        return api_pb2.BlobGetResponse(download_url=self.s.blob_url(req.blob_id, caller))


class FunctionRpcs:
    s: Services

    async def FunctionPrecreate(
        self, req: api_pb2.FunctionPrecreateRequest, caller: Caller
    ) -> api_pb2.FunctionPrecreateResponse:
        return await self.s.catalog.precreate(req)

    async def FunctionCreate(
        self, req: api_pb2.FunctionCreateRequest, caller: Caller
    ) -> api_pb2.FunctionCreateResponse:
        self.s.state.nfs.check_mountable(len(req.function.shared_volume_mounts))
        return await self.s.catalog.create(req)

    async def ClassCreate(self, req: api_pb2.ClassCreateRequest, caller: Caller) -> api_pb2.ClassCreateResponse:
        return await self.s.catalog.create_class(req)

    async def FunctionBindParams(
        self, req: api_pb2.FunctionBindParamsRequest, caller: Caller
    ) -> api_pb2.FunctionBindParamsResponse:
        return await self.s.catalog.bind_params(req)

    async def FunctionMap(self, req: api_pb2.FunctionMapRequest, caller: Caller) -> api_pb2.FunctionMapResponse:
        return await self.s.calls.map(req)

    async def FunctionPutInputs(
        self, req: api_pb2.FunctionPutInputsRequest, caller: Caller
    ) -> api_pb2.FunctionPutInputsResponse:
        return await self.s.calls.put_inputs(req)

    async def FunctionFinishInputs(self, req: api_pb2.FunctionFinishInputsRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.calls.finish_inputs(req)
        return EMPTY

    async def FunctionGetOutputs(
        self, req: api_pb2.FunctionGetOutputsRequest, caller: Caller
    ) -> api_pb2.FunctionGetOutputsResponse:
        return await self.s.calls.get_outputs(req)

    async def FunctionCallCancel(self, req: api_pb2.FunctionCallCancelRequest, caller: Caller) -> empty_pb2.Empty:
        running = await self.s.calls.cancel(req)
        await self.s.containers.cancel_inputs(running, req.terminate_containers)
        return EMPTY

    async def FunctionCallFromId(
        self, req: api_pb2.FunctionCallFromIdRequest, caller: Caller
    ) -> api_pb2.FunctionCallFromIdResponse:
        return await self.s.calls.from_id(req.function_call_id)

    async def FunctionCallGetDataOut(
        self, req: api_pb2.FunctionCallGetDataRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.DataChunk]:
        async for chunk in self.s.calls.stream_data(req.function_call_id, "out", req.last_index):
            yield chunk

    async def FunctionCallGetDataIn(
        self, req: api_pb2.FunctionCallGetDataRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.DataChunk]:
        async for chunk in self.s.calls.stream_data(req.function_call_id, "in", req.last_index):
            yield chunk

    async def FunctionCallPutDataOut(self, req: api_pb2.FunctionCallPutDataRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.calls.put_data(req.function_call_id, "out", list(req.data_chunks))
        return EMPTY

    async def FunctionCallPutDataIn(self, req: api_pb2.FunctionCallPutDataRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.calls.put_data(req.function_call_id, "in", list(req.data_chunks))
        return EMPTY


class ContainerRpcs:
    s: Services

    async def ContainerHello(self, req: empty_pb2.Empty, caller: Caller) -> empty_pb2.Empty:
        self.s.containers.task(caller.task_id)
        return EMPTY

    async def ContainerHeartbeat(
        self, req: api_pb2.ContainerHeartbeatRequest, caller: Caller
    ) -> api_pb2.ContainerHeartbeatResponse:
        return await self.s.containers.heartbeat(caller.task_id)

    async def FunctionGetInputs(
        self, req: api_pb2.FunctionGetInputsRequest, caller: Caller
    ) -> api_pb2.FunctionGetInputsResponse:
        return await self.s.containers.get_inputs(caller.task_id, req, caller.prefetch)

    async def FunctionPutOutputs(self, req: api_pb2.FunctionPutOutputsRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.containers.put_outputs(caller.task_id, req)
        return EMPTY

    async def TaskResult(self, req: api_pb2.TaskResultRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.containers.task_result(caller.task_id, req)
        return EMPTY

    async def FunctionGetDynamicConcurrency(
        self, req: api_pb2.FunctionGetDynamicConcurrencyRequest, caller: Caller
    ) -> api_pb2.FunctionGetDynamicConcurrencyResponse:
        return api_pb2.FunctionGetDynamicConcurrencyResponse(
            concurrency=await self.s.containers.dynamic_concurrency(caller.task_id)
        )
