"""What a function call and an app look like from outside: a call's inputs by status and its call graph
(`FunctionCall.get_call_graph()`, the end of `modal function logs --function-call`), an app's functions and
its stats over a time window (`modal app info|stats`). Read from the store's records of calls, inputs and
containers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modal_proto import api_pb2

from berth.errors import NotFound
from berth.services import input_stats as st
from berth.services.apps import AppService
from berth.services.catalog import Catalog
from berth.services.deployments import DeploymentService
from berth.store.ports import ActivityStore, CallStore, DeploymentStore, FunctionStore
from berth.store.records import InputRecord, TaskOutcome

MAX_GRAPH_INPUTS = 10_000
MAX_SCAN = 100_000
_LATEST = 10  # inputs listed per category of a call
_MAX_CALLS = 100


class CallActivityStore(ActivityStore, CallStore, FunctionStore, Protocol):
    """Calls, their inputs, the containers that ran them and the variants of functions."""


def _input_infos(records: Sequence[InputRecord]) -> list[api_pb2.InputInfo]:
    latest = sorted(records, key=lambda r: r.created_at, reverse=True)[:_LATEST]
    return [
        api_pb2.InputInfo(
            input_id=r.input_id,
            task_id=r.holder or "",
            started_at=r.started_at or 0.0,
            finished_at=r.finished_at or 0.0,
        )
        for r in latest
    ]


def _category(records: Sequence[InputRecord]) -> api_pb2.InputCategoryInfo:
    return api_pb2.InputCategoryInfo(total=len(records), latest=_input_infos(records))


def _call_counts(inputs: Sequence[InputRecord]) -> api_pb2.AppCallCounts:
    done = [r for r in inputs if r.state == "done"]
    succeeded = sum(1 for r in done if st.outcome(r) == "succeeded")
    return api_pb2.AppCallCounts(total=len(done), succeeded=succeeded, failed=len(done) - succeeded)


def _container_counts(tasks: Sequence[TaskOutcome]) -> api_pb2.AppContainerCounts:
    return api_pb2.AppContainerCounts(
        container_errors=sum(1 for t in tasks if t.failed), container_active_count=len(tasks)
    )


class CallInsights:
    def __init__(
        self,
        store: CallActivityStore,
        catalog: Catalog,
        apps: AppService,
        deployments: DeploymentService,
        history: DeploymentStore,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._apps = apps
        self._deployments = deployments
        self._history = history

    async def call_info(self, call_id: str) -> api_pb2.FunctionCallInfo:
        call = await self._store.get_call(call_id)
        if call is None:
            raise NotFound(f"Function call {call_id} not found")
        inputs = await self._store.inputs_of_calls([call_id])
        by_outcome: dict[str, list[InputRecord]] = {"succeeded": [], "failed": [], "timed_out": [], "open": []}
        cancelled = [r for r in inputs if r.state == "done" and r.status == st.GS.GENERIC_STATUS_TERMINATED]
        for r in inputs:
            if r not in cancelled:
                by_outcome[st.outcome(r)].append(r)
        return api_pb2.FunctionCallInfo(
            function_call_id=call_id,
            created_at=call.created_at,
            scheduled_at=call.created_at,
            pending_inputs=_category(by_outcome["open"]),
            failed_inputs=_category(by_outcome["failed"]),
            succeeded_inputs=_category(by_outcome["succeeded"]),
            timeout_inputs=_category(by_outcome["timed_out"]),
            cancelled_inputs=_category(cancelled),
            total_inputs=max(call.num_inputs, len(inputs)),
        )

    async def calls_of_function(self, function_id: str, now: float) -> api_pb2.FunctionCallListResponse:
        """The function's most recent calls (those of its last inputs), newest first."""
        await self._catalog.record(function_id)
        recent = await self._store.inputs_of_functions([function_id], 0.0, now + 1, MAX_SCAN, newest_first=True)
        call_ids = list(dict.fromkeys(r.call_id for r in recent))[:_MAX_CALLS]
        return api_pb2.FunctionCallListResponse(function_calls=[await self.call_info(c) for c in call_ids])

    async def call_graph(self, call_id: str) -> api_pb2.FunctionGetCallGraphResponse:
        """The call, its inputs, the calls those inputs made from their containers, and so on down."""
        root = await self._store.get_call(call_id)
        if root is None:
            raise NotFound(f"Function call {call_id} not found")
        resp = api_pb2.FunctionGetCallGraphResponse()
        calls = [root]
        while calls:
            for call in calls:
                fn = await self._catalog.definition(call.function_id)
                resp.function_calls.add(
                    function_call_id=call.call_id,
                    parent_input_id=call.parent_input_id,
                    function_name=fn.function_name,
                    module_name=fn.module_name,
                )
            inputs = await self._store.inputs_of_calls([c.call_id for c in calls])
            for r in inputs:
                status = r.status if r.state == "done" else 0
                resp.inputs.add(input_id=r.input_id, status=status, function_call_id=r.call_id, task_id=r.holder or "")
            if len(resp.inputs) >= MAX_GRAPH_INPUTS:
                resp.truncated = True
                break
            calls = await self._store.calls_made_by([r.input_id for r in inputs])
        return resp

    async def app_info(self, app_id: str) -> api_pb2.AppGetInfoResponse:
        resp = api_pb2.AppGetInfoResponse(info=await self._deployments.app_metadata(app_id))
        for function_id in resp.info.functions.values():
            fn = await self._catalog.definition(function_id)
            summary = resp.function_info_summaries[function_id]
            if fn.resources.gpu_config.count:
                summary.gpu_config.append(fn.resources.gpu_config)
            if fn.HasField("schedule"):
                summary.schedule.CopyFrom(fn.schedule)
            if fn.webhook_config.type != api_pb2.WEBHOOK_TYPE_UNSPECIFIED:
                summary.web_function = True
                summary.requires_proxy_auth = fn.webhook_config.requires_proxy_auth
        return resp

    async def app_stats(
        self, req: api_pb2.AppGetTimeRangeStatsRequest, now: float
    ) -> api_pb2.AppGetTimeRangeStatsResponse:
        """Completed calls and containers per function of the app's current layout, over [since, until)."""
        await self._apps.get(req.app_id)
        since, until = st.window(req.since, req.until, now)
        layout = await self._apps.layout(req.app_id)
        resp = api_pb2.AppGetTimeRangeStatsResponse(
            since=st.timestamp(since),
            until=st.timestamp(until),
            lifecycle=await self._deployments.lifecycle(req.app_id),
        )
        all_inputs: list[InputRecord] = []
        all_tasks: list[TaskOutcome] = []
        for tag, function_id in sorted(layout.function_ids.items()):
            ids = [function_id, *(v.function_id for v in await self._store.bound_functions(function_id))]
            inputs = await self._store.inputs_of_functions(ids, since, until, MAX_SCAN, newest_first=False)
            tasks = await self._store.tasks_of_functions(ids, since, until)
            entry = resp.functions.by_name[tag]
            entry.object_id = function_id
            entry.counts.calls.CopyFrom(_call_counts(inputs))
            entry.counts.containers.CopyFrom(_container_counts(tasks))
            all_inputs += inputs
            all_tasks += tasks
        resp.functions.total.calls.CopyFrom(_call_counts(all_inputs))
        resp.functions.total.containers.CopyFrom(_container_counts(all_tasks))
        deployed = [d for d in await self._history.deployments(req.app_id) if since <= d.deployed_at < until]
        resp.deployment_count = len(deployed)
        return resp
