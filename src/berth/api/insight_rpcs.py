"""Observability RPCs: what `modal function info|calls|stats|variants|metrics`, `modal app info|stats` and
`FunctionCall.get_call_graph()` read. Each method decodes, calls one service and encodes."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.context import Services


class InsightRpcs:
    s: Services

    async def FunctionGetById(
        self, req: api_pb2.FunctionGetByIdRequest, caller: Caller
    ) -> api_pb2.FunctionGetByIdResponse:
        return await self.s.catalog.by_id(req.function_id)

    async def FunctionGetSchedulingParams(
        self, req: api_pb2.FunctionGetSchedulingParamsRequest, caller: Caller
    ) -> api_pb2.FunctionGetSchedulingParamsResponse:
        return await self.s.function_insights.scheduling_params(req.function_id)

    async def FunctionUpdateSchedulingParams(
        self, req: api_pb2.FunctionUpdateSchedulingParamsRequest, caller: Caller
    ) -> api_pb2.FunctionUpdateSchedulingParamsResponse:
        who = caller.token_id or (f"container {caller.task_id}" if caller.task_id else "berth")
        return await self.s.function_insights.update_scheduling_params(req, who)

    async def FunctionCallFetch(
        self, req: api_pb2.FunctionCallFetchRequest, caller: Caller
    ) -> api_pb2.FunctionCallFetchResponse:
        return await self.s.function_insights.fetch_calls(req)

    async def FunctionCallCount(
        self, req: api_pb2.FunctionCallCountRequest, caller: Caller
    ) -> api_pb2.FunctionCallCountResponse:
        return await self.s.function_insights.count_calls(req)

    async def FunctionGetTimeRangeStats(
        self, req: api_pb2.FunctionGetTimeRangeStatsRequest, caller: Caller
    ) -> api_pb2.FunctionGetTimeRangeStatsResponse:
        return await self.s.function_insights.time_range_stats(req)

    async def FunctionListVariants(
        self, req: api_pb2.FunctionListVariantsRequest, caller: Caller
    ) -> api_pb2.FunctionListVariantsResponse:
        return await self.s.function_insights.list_variants(req)

    async def FunctionGetCurrentStats(
        self, req: api_pb2.FunctionGetCurrentStatsRequest, caller: Caller
    ) -> api_pb2.FunctionStats:
        return await self.s.function_insights.current_stats(req.function_id)

    async def FunctionCallList(
        self, req: api_pb2.FunctionCallListRequest, caller: Caller
    ) -> api_pb2.FunctionCallListResponse:
        return await self.s.call_insights.calls_of_function(req.function_id, self.s.clock.now())

    async def FunctionCallGetInfo(
        self, req: api_pb2.FunctionCallGetInfoRequest, caller: Caller
    ) -> api_pb2.FunctionCallGetInfoResponse:
        return api_pb2.FunctionCallGetInfoResponse(info=await self.s.call_insights.call_info(req.function_call_id))

    async def FunctionGetCallGraph(
        self, req: api_pb2.FunctionGetCallGraphRequest, caller: Caller
    ) -> api_pb2.FunctionGetCallGraphResponse:
        return await self.s.call_insights.call_graph(req.function_call_id)

    async def AppGetInfo(self, req: api_pb2.AppGetInfoRequest, caller: Caller) -> api_pb2.AppGetInfoResponse:
        return await self.s.call_insights.app_info(req.app_id)

    async def AppGetTimeRangeStats(
        self, req: api_pb2.AppGetTimeRangeStatsRequest, caller: Caller
    ) -> api_pb2.AppGetTimeRangeStatsResponse:
        return await self.s.call_insights.app_stats(req, self.s.clock.now())

    async def MetricsGetInfo(
        self, req: api_pb2.MetricsGetInfoRequest, caller: Caller
    ) -> api_pb2.MetricsGetInfoResponse:
        return self.s.function_metrics.schema(req, self.s.clock.now())

    async def FunctionGetMetrics(
        self, req: api_pb2.FunctionGetMetricsRequest, caller: Caller
    ) -> api_pb2.FunctionGetMetricsResponse:
        return await self.s.function_metrics.samples(req, self.s.clock.now())
