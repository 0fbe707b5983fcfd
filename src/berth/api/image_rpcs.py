"""The image RPC family: define an image (building it when the runtime needs real images) and follow
its build log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
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

    async def _environment(self, requested: str, caller: Caller) -> str:
        return await self.s.accounts.require_environment(self.s.accounts.scope(requested, caller.environment))

    async def _tag_environment(self, tag: str, requested: str, caller: Caller) -> str:
        """A name's environment: its own prefix ('env/name:tag'), else the request's, else the caller's."""
        prefix = tag.rpartition("/")[0]
        return await self._environment(prefix or requested, caller)

    async def ImagePublish(self, req: api_pb2.ImagePublishRequest, caller: Caller) -> api_pb2.ImagePublishResponse:
        env = await self._tag_environment(req.tag, req.environment_name, caller)
        await self.s.images.from_id(req.image_id)
        revision = await self.s.image_names.publish(req.image_id, req.tag, env, caller.token_id or "berth")
        return api_pb2.ImagePublishResponse(image_id=req.image_id, revision_id=revision.revision_id)

    async def ImageGetByTag(self, req: api_pb2.ImageGetByTagRequest, caller: Caller) -> api_pb2.ImageGetByTagResponse:
        env = await self._tag_environment(req.tag, req.environment_name, caller)
        return api_pb2.ImageGetByTagResponse(image_id=await self.s.image_names.resolve(req.tag, env))

    async def ImageListTags(self, req: api_pb2.ImageListTagsRequest, caller: Caller) -> api_pb2.ImageListTagsResponse:
        return await self.s.image_names.list_tags(req, await self._environment(req.environment_name, caller))

    async def ImageTagRevisions(
        self, req: api_pb2.ImageTagRevisionsRequest, caller: Caller
    ) -> api_pb2.ImageTagRevisionsResponse:
        env = await self._tag_environment(req.tag, req.environment_name, caller)
        return await self.s.image_names.revisions(req, env)

    async def ImageNameDelete(self, req: api_pb2.ImageNameDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.image_collector.delete_name(req.tag, await self._tag_environment(req.tag, "", caller))
        return empty_pb2.Empty()

    async def ImageDelete(self, req: api_pb2.ImageDeleteRequest, caller: Caller) -> empty_pb2.Empty:
        await self.s.image_collector.delete_image(req.image_id)
        return empty_pb2.Empty()

    async def ImageBuildChainGet(
        self, req: api_pb2.ImageBuildChainGetRequest, caller: Caller
    ) -> api_pb2.ImageBuildChainGetResponse:
        return api_pb2.ImageBuildChainGetResponse(build_steps=await self.s.images.build_chain(req.image_id))
