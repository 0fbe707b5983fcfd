"""RPC families of the state objects apps share: volumes, secrets, dicts and queues. Each method decodes,
calls one service and encodes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services

EMPTY = empty_pb2.Empty()


async def scope(s: Services, req: Any, caller: Caller) -> None:
    """Names resolve in the request's environment, which must exist and which the caller's token may use."""
    req.environment_name = await s.accounts.require_environment(
        s.accounts.scope(req.environment_name, caller.environment)
    )


class SecretRpcs:
    s: Services

    async def SecretGetOrCreate(
        self, req: api_pb2.SecretGetOrCreateRequest, caller: Caller
    ) -> api_pb2.SecretGetOrCreateResponse:
        await scope(self.s, req, caller)
        return await self.s.state.secrets.get_or_create(req)

    async def SecretGetInfo(self, req: api_pb2.SecretGetInfoRequest, caller: Caller) -> api_pb2.SecretGetInfoResponse:
        return await self.s.state.secrets.info(req.secret_id)

    async def SecretUpdate(self, req: api_pb2.SecretUpdateRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.secrets.update(req)
        return EMPTY

    async def SecretList(self, req: api_pb2.SecretListRequest, caller: Caller) -> api_pb2.SecretListResponse:
        await scope(self.s, req, caller)
        return await self.s.state.secrets.list_secrets(req)

    async def SecretDelete(self, req: api_pb2.SecretDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.secrets.delete(req.secret_id)
        return EMPTY


class DictRpcs:
    s: Services

    async def DictGetOrCreate(
        self, req: api_pb2.DictGetOrCreateRequest, caller: Caller
    ) -> api_pb2.DictGetOrCreateResponse:
        await scope(self.s, req, caller)
        return await self.s.state.dicts.get_or_create(req)

    async def DictGetById(self, req: api_pb2.DictGetByIdRequest, caller: Caller) -> api_pb2.DictGetByIdResponse:
        return await self.s.state.dicts.get_by_id(req.dict_id)

    async def DictHeartbeat(self, req: api_pb2.DictHeartbeatRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.dicts.objects.heartbeat(req.dict_id)
        return EMPTY

    async def DictList(self, req: api_pb2.DictListRequest, caller: Caller) -> api_pb2.DictListResponse:
        await scope(self.s, req, caller)
        return await self.s.state.dicts.list_dicts(req)

    async def DictDelete(self, req: api_pb2.DictDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.dicts.objects.delete(req.dict_id)
        return EMPTY

    async def DictGet(self, req: api_pb2.DictGetRequest, caller: Caller) -> api_pb2.DictGetResponse:
        value = await self.s.state.dicts.get(req.dict_id, req.key)
        return api_pb2.DictGetResponse(found=value is not None, value=value or b"")

    async def DictContains(self, req: api_pb2.DictContainsRequest, caller: Caller) -> api_pb2.DictContainsResponse:
        return api_pb2.DictContainsResponse(found=await self.s.state.dicts.get(req.dict_id, req.key) is not None)

    async def DictLen(self, req: api_pb2.DictLenRequest, caller: Caller) -> api_pb2.DictLenResponse:
        return api_pb2.DictLenResponse(len=await self.s.state.dicts.length(req.dict_id))

    async def DictUpdate(self, req: api_pb2.DictUpdateRequest, caller: Caller) -> api_pb2.DictUpdateResponse:
        return api_pb2.DictUpdateResponse(created=await self.s.state.dicts.update(req))

    async def DictPop(self, req: api_pb2.DictPopRequest, caller: Caller) -> api_pb2.DictPopResponse:
        value = await self.s.state.dicts.pop(req.dict_id, req.key)
        return api_pb2.DictPopResponse(found=value is not None, value=value or b"")

    async def DictClear(self, req: api_pb2.DictClearRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.dicts.clear(req.dict_id)
        return EMPTY

    async def DictContents(self, req: api_pb2.DictContentsRequest, caller: Caller) -> AsyncIterator[api_pb2.DictEntry]:
        for key, value in await self.s.state.dicts.contents(req.dict_id):
            yield api_pb2.DictEntry(key=key, value=value if req.values else b"")


class QueueRpcs:
    s: Services

    async def QueueGetOrCreate(
        self, req: api_pb2.QueueGetOrCreateRequest, caller: Caller
    ) -> api_pb2.QueueGetOrCreateResponse:
        await scope(self.s, req, caller)
        return await self.s.state.queues.get_or_create(req)

    async def QueueGetById(self, req: api_pb2.QueueGetByIdRequest, caller: Caller) -> api_pb2.QueueGetByIdResponse:
        return await self.s.state.queues.get_by_id(req.queue_id)

    async def QueueHeartbeat(self, req: api_pb2.QueueHeartbeatRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.queues.objects.heartbeat(req.queue_id)
        return EMPTY

    async def QueueList(self, req: api_pb2.QueueListRequest, caller: Caller) -> api_pb2.QueueListResponse:
        await scope(self.s, req, caller)
        return await self.s.state.queues.list_queues(req)

    async def QueueDelete(self, req: api_pb2.QueueDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.queues.objects.delete(req.queue_id)
        return EMPTY

    async def QueuePut(self, req: api_pb2.QueuePutRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.queues.put(req)
        return EMPTY

    async def QueueGet(self, req: api_pb2.QueueGetRequest, caller: Caller) -> api_pb2.QueueGetResponse:
        return api_pb2.QueueGetResponse(values=await self.s.state.queues.get(req))

    async def QueueNextItems(
        self, req: api_pb2.QueueNextItemsRequest, caller: Caller
    ) -> api_pb2.QueueNextItemsResponse:
        return api_pb2.QueueNextItemsResponse(items=await self.s.state.queues.next_items(req))

    async def QueueLen(self, req: api_pb2.QueueLenRequest, caller: Caller) -> api_pb2.QueueLenResponse:
        return api_pb2.QueueLenResponse(len=await self.s.state.queues.length(req))

    async def QueueClear(self, req: api_pb2.QueueClearRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.queues.clear(req)
        return EMPTY


class VolumeRpcs:
    s: Services

    def _http_base(self, caller: Caller) -> str:
        return self.s.http_url_for(caller)

    async def VolumeGetOrCreate(
        self, req: api_pb2.VolumeGetOrCreateRequest, caller: Caller
    ) -> api_pb2.VolumeGetOrCreateResponse:
        await scope(self.s, req, caller)
        return await self.s.state.volumes.get_or_create(req)

    async def VolumeGetById(self, req: api_pb2.VolumeGetByIdRequest, caller: Caller) -> api_pb2.VolumeGetByIdResponse:
        return await self.s.state.volumes.get_by_id(req.volume_id)

    async def VolumeHeartbeat(self, req: api_pb2.VolumeHeartbeatRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.objects.heartbeat(req.volume_id)
        return EMPTY

    async def VolumeList(self, req: api_pb2.VolumeListRequest, caller: Caller) -> api_pb2.VolumeListResponse:
        await scope(self.s, req, caller)
        return await self.s.state.volumes.list_volumes(req)

    async def VolumeDelete(self, req: api_pb2.VolumeDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.objects.delete(req.volume_id)
        return EMPTY

    async def VolumeRename(self, req: api_pb2.VolumeRenameRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.objects.rename(req.volume_id, req.name)
        return EMPTY

    async def VolumeCommit(self, req: api_pb2.VolumeCommitRequest, caller: Caller) -> api_pb2.VolumeCommitResponse:
        return await self.s.state.volumes.commit(req.volume_id, caller.task_id)

    async def VolumeReload(self, req: api_pb2.VolumeReloadRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.reload(req.volume_id, caller.task_id)
        return EMPTY

    async def VolumePutFiles(self, req: api_pb2.VolumePutFilesRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.put_files(req)
        return EMPTY

    async def VolumePutFiles2(
        self, req: api_pb2.VolumePutFiles2Request, caller: Caller
    ) -> api_pb2.VolumePutFiles2Response:
        return await self.s.state.volumes.put_files2(req, self._http_base(caller))

    async def VolumeGetFile(self, req: api_pb2.VolumeGetFileRequest, caller: Caller) -> api_pb2.VolumeGetFileResponse:
        return await self.s.state.volumes.get_file(req)

    async def VolumeGetFile2(
        self, req: api_pb2.VolumeGetFile2Request, caller: Caller
    ) -> api_pb2.VolumeGetFile2Response:
        return await self.s.state.volumes.get_file2(req, self._http_base(caller))

    async def VolumeListFiles(
        self, req: api_pb2.VolumeListFilesRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.VolumeListFilesResponse]:
        async for entries in self.s.state.volumes.list_files(req.volume_id, req.path, req.recursive):
            yield api_pb2.VolumeListFilesResponse(entries=entries)

    async def VolumeListFiles2(
        self, req: api_pb2.VolumeListFiles2Request, caller: Caller
    ) -> AsyncIterator[api_pb2.VolumeListFiles2Response]:
        async for entries in self.s.state.volumes.list_files(req.volume_id, req.path, req.recursive):
            yield api_pb2.VolumeListFiles2Response(entries=entries)

    async def VolumeRemoveFile(self, req: api_pb2.VolumeRemoveFileRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.remove(req.volume_id, req.path, req.recursive)
        return EMPTY

    async def VolumeRemoveFile2(self, req: api_pb2.VolumeRemoveFile2Request, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.remove(req.volume_id, req.path, req.recursive)
        return EMPTY

    async def VolumeCopyFiles(self, req: api_pb2.VolumeCopyFilesRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.copy(req.volume_id, list(req.src_paths), req.dst_path, req.recursive)
        return EMPTY

    async def VolumeCopyFiles2(self, req: api_pb2.VolumeCopyFiles2Request, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.volumes.copy(req.volume_id, list(req.src_paths), req.dst_path, req.recursive)
        return EMPTY
