"""What the dashboard's pages show, read through the same services the observability RPCs use (apps,
deployments, call insights, function insights, state). Each page resolves what the viewer may see first:
an app, function or call of an environment outside the viewer's token scope is 'not found'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modal_proto import api_pb2

from berth.api.context import Services
from berth.errors import NotFound
from berth.services.dashboard_access import Viewer
from berth.store.records import AppRecord, TaskOutcome

# Exited containers are read from the store over this window (live ones come from the scheduler).
CONTAINER_WINDOW_S = 24 * 3600.0
_INPUT_TAIL = 50


async def environment(s: Services, viewer: Viewer, requested: str) -> str:
    """The environment a page shows: the token's own when it is scoped, else the one asked for."""
    if viewer.scope:
        if requested and requested != viewer.scope:
            raise NotFound(f"Environment '{requested}' not found")
        return viewer.scope
    return await s.accounts.require_environment(requested)


async def visible_app(s: Services, viewer: Viewer, app_id: str) -> AppRecord:
    app = await s.apps.get(app_id)
    if not viewer.may_see(app.environment):
        raise NotFound(f"App {app_id} not found")
    return app


async def app_functions(s: Services, app_id: str) -> dict[str, str]:
    """The app's functions by tag (its current layout)."""
    return dict(sorted((await s.apps.layout(app_id)).function_ids.items()))


async def apps_overview(s: Services, env: str) -> list[tuple[api_pb2.AppListResponse.AppListItem, dict[str, str]]]:
    listed = await s.deployments.list_apps(env, lambda app_id: len(s.tasks.of_app(app_id)))
    return [(item, await app_functions(s, item.app_id)) for item in listed.apps]


@dataclass
class ContainerRow:
    task_id: str
    app_id: str
    function_id: str
    function_tag: str
    state: str
    started_at: float
    ended_at: float | None
    reason: str
    cpu: float
    memory_mb: int
    gpu: str


async def _row(s: Services, task_id: str, function_id: str, app_id: str) -> ContainerRow:
    try:
        fn = await s.catalog.definition(function_id)
        tag = (await s.catalog.record(function_id)).tag
    except NotFound:
        fn, tag = api_pb2.Function(), ""
    res = fn.resources
    gpu = f"{res.gpu_config.count}× {res.gpu_config.gpu_type}" if res.gpu_config.count else ""
    return ContainerRow(task_id, app_id, function_id, tag, "", 0.0, None, "", res.milli_cpu / 1000, res.memory_mb, gpu)


async def containers(s: Services, apps: list[AppRecord], now: float, function_id: str = "") -> list[ContainerRow]:
    """Live containers of these apps (from the scheduler) and those that exited in the last day (the store)."""
    app_ids = {a.app_id for a in apps}
    rows: list[ContainerRow] = []
    live = [t for t in list(s.tasks.tasks.values()) if t.app_id in app_ids and not t.sandbox_id]
    for t in live:
        if function_id and t.function_id != function_id:
            continue
        row = await _row(s, t.task_id, t.function_id, t.app_id)
        row.state, row.started_at, row.reason = t.state, t.created_at, t.stop_reason or ""
        rows.append(row)
    seen = {t.task_id for t in live}
    function_ids = [function_id] if function_id else []
    for a in [] if function_id else apps:
        function_ids += (await app_functions(s, a.app_id)).values()
    ended: list[TaskOutcome] = await s.stores.core.tasks_of_functions(function_ids, now - CONTAINER_WINDOW_S, now + 1)
    for outcome in ended:
        task = outcome.task
        if task.task_id in seen:
            continue
        row = await _row(s, task.task_id, task.function_id, task.app_id)
        row.state, row.started_at, row.ended_at = task.state, task.created_at, task.ended_at
        row.reason = outcome.exit_reason or ("failed" if outcome.failed else "")
        rows.append(row)
    return sorted(rows, key=lambda r: r.started_at, reverse=True)


async def app_detail(s: Services, app: AppRecord) -> dict[str, Any]:
    now = s.clock.now()
    info = await s.call_insights.app_info(app.app_id)
    stats = await s.call_insights.app_stats(api_pb2.AppGetTimeRangeStatsRequest(app_id=app.app_id), now)
    history = await s.deployments.history(app.app_id)
    functions = await app_functions(s, app.app_id)
    return {
        "app": app,
        "info": info.info,
        "summaries": info.function_info_summaries,
        "functions": functions,
        "stats": stats,
        "history": history.app_deployment_histories,
        "production": history.production_app_version,
        "containers": await containers(s, [app], now),
    }


def call_state(info: api_pb2.FunctionCallInfo) -> str:
    """queued, running, failed or done: a call is open while any input is, and failed if any input did."""
    if info.pending_inputs.total:
        started = any(i.started_at for i in info.pending_inputs.latest)
        return "running" if started else "queued"
    if info.failed_inputs.total or info.timeout_inputs.total:
        return "failed"
    return "cancelled" if info.cancelled_inputs.total and not info.succeeded_inputs.total else "done"


INPUT_STATUS = {
    api_pb2.FUNCTION_CALL_INPUT_STATUS_PENDING: "queued",
    api_pb2.FUNCTION_CALL_INPUT_STATUS_RUNNING: "running",
    api_pb2.FUNCTION_CALL_INPUT_STATUS_SUCCESS: "succeeded",
    api_pb2.FUNCTION_CALL_INPUT_STATUS_FAILURE: "failed",
    api_pb2.FUNCTION_CALL_INPUT_STATUS_TIMEOUT: "timed out",
    api_pb2.FUNCTION_CALL_INPUT_STATUS_TERMINATED: "cancelled",
}


async def function_detail(s: Services, app: AppRecord, function_id: str) -> dict[str, Any]:
    now = s.clock.now()
    record = await s.catalog.record(function_id)
    calls = await s.call_insights.calls_of_function(function_id, now)
    tail = api_pb2.FunctionCallFetchRequest(function_id=function_id)
    tail.tail.count = _INPUT_TAIL
    inputs = await s.function_insights.fetch_calls(tail)
    return {
        "app": app,
        "function_id": function_id,
        "tag": record.tag,
        "definition": await s.catalog.definition(function_id),
        "stats": await s.function_insights.current_stats(function_id),
        "calls": [(c, call_state(c)) for c in calls.function_calls],
        "inputs": inputs.function_call_inputs,
        "input_status": INPUT_STATUS,
        "containers": await containers(s, [app], now, function_id),
    }


async def visible_function(s: Services, viewer: Viewer, function_id: str) -> AppRecord:
    return await visible_app(s, viewer, (await s.catalog.record(function_id)).app_id)


async def visible_call(s: Services, viewer: Viewer, call_id: str) -> tuple[AppRecord, str]:
    call = await s.stores.core.get_call(call_id)
    if call is None:
        raise NotFound(f"Function call {call_id} not found")
    return await visible_function(s, viewer, call.function_id), call.function_id


async def call_detail(s: Services, app: AppRecord, function_id: str, call_id: str) -> dict[str, Any]:
    info = await s.call_insights.call_info(call_id)
    graph = await s.call_insights.call_graph(call_id)
    return {
        "app": app,
        "function_id": function_id,
        "info": info,
        "state": call_state(info),
        "graph": graph,
        "categories": [
            ("pending", info.pending_inputs),
            ("succeeded", info.succeeded_inputs),
            ("failed", info.failed_inputs),
            ("timed out", info.timeout_inputs),
            ("cancelled", info.cancelled_inputs),
        ],
    }


async def storage(s: Services, env: str) -> dict[str, Any]:
    """Names only: a secret's values never reach the dashboard."""
    state = s.state
    secrets = await state.secrets.list_secrets(api_pb2.SecretListRequest(environment_name=env))
    volumes = await state.volumes.list_volumes(api_pb2.VolumeListRequest(environment_name=env))
    dicts = await state.dicts.list_dicts(api_pb2.DictListRequest(environment_name=env))
    queues = await state.queues.list_queues(api_pb2.QueueListRequest(environment_name=env))
    return {
        "secrets": [(i.label, i.created_at) for i in secrets.items],
        "volumes": [(i.label, i.created_at) for i in volumes.items],
        "dicts": [(i.name, i.created_at) for i in dicts.dicts],
        "queues": [(i.name, i.created_at, i.num_partitions, i.total_size) for i in queues.queues],
    }


@dataclass
class ImageBuild:
    image_id: str
    app_id: str
    status: str
    log: str


async def image_builds(s: Services, viewer: Viewer) -> list[ImageBuild]:
    """This process's image builds, newest first, of apps the viewer may see (a scoped token sees only the builds
    its environment's apps asked for)."""
    out: list[ImageBuild] = []
    for image_id, app_id, status, log in reversed(s.images.builds()):
        if viewer.scope:
            try:
                await visible_app(s, viewer, app_id)
            except NotFound:
                continue
        out.append(ImageBuild(image_id, app_id, status, log))
    return out
