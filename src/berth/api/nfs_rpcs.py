"""The NetworkFileSystem RPC family (Modal's SharedVolume* RPCs): decode, call the NetworkFileSystem service,
encode."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services
from berth.api.state_rpcs import scope

EMPTY = empty_pb2.Empty()


class NetworkFileSystemRpcs:
    s: Services

    async def SharedVolumeGetOrCreate(
        self, req: api_pb2.SharedVolumeGetOrCreateRequest, caller: Caller
    ) -> api_pb2.SharedVolumeGetOrCreateResponse:
        await scope(self.s, req, caller)
        return api_pb2.SharedVolumeGetOrCreateResponse(shared_volume_id=await self.s.state.nfs.get_or_create(req))

    async def SharedVolumeHeartbeat(self, req: api_pb2.SharedVolumeHeartbeatRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.nfs.objects.heartbeat(req.shared_volume_id)
        return EMPTY

    async def SharedVolumeList(
        self, req: api_pb2.SharedVolumeListRequest, caller: Caller
    ) -> api_pb2.SharedVolumeListResponse:
        await scope(self.s, req, caller)
        items = await self.s.state.nfs.list_named(req.environment_name)
        return api_pb2.SharedVolumeListResponse(items=items, environment_name=req.environment_name)

    async def SharedVolumeDelete(self, req: api_pb2.SharedVolumeDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.state.nfs.objects.delete(req.shared_volume_id)
        return EMPTY

    async def SharedVolumePutFile(
        self, req: api_pb2.SharedVolumePutFileRequest, caller: Caller
    ) -> api_pb2.SharedVolumePutFileResponse:
        await self.s.state.nfs.put_file(req)
        return api_pb2.SharedVolumePutFileResponse(exists=True)

    async def SharedVolumeGetFile(
        self, req: api_pb2.SharedVolumeGetFileRequest, caller: Caller
    ) -> api_pb2.SharedVolumeGetFileResponse:
        return await self.s.state.nfs.get_file(req)

    async def SharedVolumeListFiles(
        self, req: api_pb2.SharedVolumeListFilesRequest, caller: Caller
    ) -> api_pb2.SharedVolumeListFilesResponse:
        entries = [e async for batch in self.s.state.nfs.list_files(req.shared_volume_id, req.path) for e in batch]
        return api_pb2.SharedVolumeListFilesResponse(entries=entries)

    async def SharedVolumeListFilesStream(
        self, req: api_pb2.SharedVolumeListFilesRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.SharedVolumeListFilesResponse]:
        async for entries in self.s.state.nfs.list_files(req.shared_volume_id, req.path):
            yield api_pb2.SharedVolumeListFilesResponse(entries=entries)

    async def SharedVolumeRemoveFile(
        self, req: api_pb2.SharedVolumeRemoveFileRequest, caller: Caller
    ) -> empty_pb2.Empty:
        await self.s.state.nfs.remove_file(req)
        return EMPTY
