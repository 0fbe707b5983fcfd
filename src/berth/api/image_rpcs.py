"""The image RPC family: define an image (building it when the runtime needs real images) and follow
its build log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services


class ImageRpcs:
    s: Services

    async def ImageGetOrCreate(
        self, req: api_pb2.ImageGetOrCreateRequest, caller: Caller
    ) -> api_pb2.ImageGetOrCreateResponse:
        return await self.s.images.get_or_create(req)

    async def ImageJoinStreaming(
        self, req: api_pb2.ImageJoinStreamingRequest, caller: Caller
    ) -> AsyncIterator[api_pb2.ImageJoinStreamingResponse]:
        async for response in self.s.images.join(req.image_id, req.last_entry_id, req.timeout):
            yield response

    async def ImageFromId(self, req: api_pb2.ImageFromIdRequest, caller: Caller) -> api_pb2.ImageFromIdResponse:
        return api_pb2.ImageFromIdResponse(image_id=req.image_id, metadata=await self.s.images.from_id(req.image_id))
