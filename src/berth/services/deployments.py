"""Deployed apps: publishing a version, looking objects up by app name, history, rollback and staged versions.

A staged version (`modal deploy --staged`) is recorded in the history with its definitions but never served:
the live version is the newest one that is not staged, until `modal app promote APP vN` deploys the staged
vN as a new PROMOTION version. `modal app rollback` without a version counts back over live versions only,
and refuses a staged one by number (promote it instead), so a rollback never serves code that was never live."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable

from modal._utils.name_utils import is_valid_object_name
from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from berth.services.apps import AppService
from berth.services.catalog import Catalog, function_data, handle_metadata
from berth.store.ports import DeploymentStore
from berth.store.records import DeploymentRecord, FunctionRecord

_STOPPED = frozenset({api_pb2.APP_STATE_STOPPED, api_pb2.APP_STATE_STOPPING})

RollOver = Callable[[str], Awaitable[None]]

_STAGED = api_pb2.DEPLOYMENT_TYPE_STAGED


def _live(history: list[DeploymentRecord]) -> list[DeploymentRecord]:
    """The versions that went live, oldest first: the last one is what the app serves."""
    return [d for d in history if d.deployment_type != _STAGED]


def _check_name(name: str) -> None:
    if not is_valid_object_name(name):
        raise InvalidArgument(
            f"Invalid App name: '{name}'.\n\nNames may contain only alphanumeric characters, dashes, periods, "
            "and underscores, must be shorter than 64 characters, and cannot conflict with App ID strings."
        )


class DeploymentService:
    def __init__(self, deployments: DeploymentStore, apps: AppService, catalog: Catalog, clock: Clock) -> None:
        self._deployments = deployments
        self.store = deployments
        self._apps = apps
        self._catalog = catalog
        self._clock = clock
        self.roll_over: RollOver | None = None

    async def app_id_by_name(self, environment: str, name: str) -> str:
        app = await self._deployments.deployed_app(environment, name)
        return app.app_id if app else ""

    async def by_name(self, environment: str, name: str) -> api_pb2.AppGetByDeploymentNameResponse:
        resp = api_pb2.AppGetByDeploymentNameResponse(environment_name=environment)
        app = await self._deployments.last_app_named(environment, name)
        if app is None:
            return resp
        if app.state == api_pb2.APP_STATE_DEPLOYED:
            resp.app_id = app.app_id
        else:
            resp.previous_app_id = app.app_id
        resp.lifecycle.CopyFrom(await self.lifecycle(app.app_id))
        return resp

    async def lifecycle(self, app_id: str) -> api_pb2.AppLifecycle:
        app = await self._apps.get(app_id)
        history = await self._deployments.deployments(app_id)
        lc = api_pb2.AppLifecycle(app_state=app.state, created_at=app.created_at, created_by="berth")  # type: ignore[arg-type]
        if live := _live(history):
            lc.deployed_at, lc.version, lc.deployed_by = live[-1].deployed_at, live[-1].version, "berth"
        if app.stopped_at:
            lc.stopped_at, lc.stopped_by = app.stopped_at, "berth"
        return lc

    async def app_metadata(self, app_id: str) -> api_pb2.AppHandleMetadata:
        """What `App.info()` shows (Python and JS): description, environment, lifecycle and functions by name.
        AppGetOrCreate hands it to `App.lookup` and `apps.fromName`; AppGetInfo adds per-function summaries."""
        app = await self._apps.get(app_id)
        md = api_pb2.AppHandleMetadata(
            app_id=app_id,
            description=app.description or app.name,
            environment_name=app.environment,
            lifecycle=await self.lifecycle(app_id),
        )
        md.functions.update((await self._apps.layout(app_id)).function_ids)
        return md

    async def publish(self, req: api_pb2.AppPublishRequest, client_version: str) -> api_pb2.AppPublishResponse:
        if req.app_state != api_pb2.APP_STATE_DEPLOYED:
            return await self._apps.publish(req)
        _check_name(req.name)
        app = await self._apps.get(req.app_id)
        if req.staged:
            return await self._stage(req, client_version)
        holder = await self._deployments.deployed_app(app.environment, req.name)
        if holder is not None and holder.app_id != req.app_id:
            raise AlreadyExists(f"App '{req.name}' is already deployed in environment '{app.environment}'")
        was_deployed = app.state == api_pb2.APP_STATE_DEPLOYED
        resp = await self._apps.publish(req)
        history = await self._deployments.deployments(req.app_id)
        await self._deployments.add_deployment(
            DeploymentRecord(
                req.app_id,
                (history[-1].version if history else 0) + 1,
                resp.deployed_at,
                req.deployment_tag,
                client_version,
                0,
                req.commit_info.SerializeToString(),
                await self._snapshot(req.app_id),
                api_pb2.DEPLOYMENT_TYPE_STANDARD,
            )
        )
        if was_deployed and self.roll_over is not None:
            await self.roll_over(req.app_id)
        return resp

    async def running_function_ids(self, environments: list[str]) -> list[str]:
        """The functions of every running app in these environments (the autoscaler's warm-pool candidates
        after a restart)."""
        found: list[str] = []
        for environment in environments:
            for app in await self._deployments.list_apps(environment):
                if await self._apps.is_running(app.app_id):
                    found.extend((await self._apps.layout(app.app_id)).function_ids.values())
        return found

    async def _stage(self, req: api_pb2.AppPublishRequest, client_version: str) -> api_pb2.AppPublishResponse:
        """`modal deploy --staged`: record the new definitions as a STAGED version and keep serving the live
        one. FunctionCreate already replaced the definitions of the app's existing functions (it comes before
        AppPublish), so those of the live version are put back; the layout is left as it is."""
        app = await self._apps.get(req.app_id)
        history = await self._deployments.deployments(req.app_id)
        live = _live(history)
        if app.state != api_pb2.APP_STATE_DEPLOYED or not live:
            raise FailedPrecondition(
                f"App '{req.name}' has no live version to stage a new one next to: deploy it first with "
                "`modal deploy` (without --staged)"
            )
        layout = api_pb2.AppLayout()
        layout.function_ids.update(req.function_ids)
        layout.class_ids.update(req.class_ids)
        snapshot = await self._snapshot(req.app_id, layout)
        await self._apply_snapshot(req.app_id, live[-1].snapshot)
        version, now = history[-1].version + 1, self._clock.now()
        await self._deployments.add_deployment(
            DeploymentRecord(
                req.app_id,
                version,
                now,
                req.deployment_tag,
                client_version,
                0,
                req.commit_info.SerializeToString(),
                snapshot,
                _STAGED,
            )
        )
        warning = api_pb2.Warning(
            message=f"Staged as v{version}; v{live[-1].version} stays live. "
            f"Run `modal app promote {req.name} v{version}` to deploy it."
        )
        return api_pb2.AppPublishResponse(
            url=self._apps.page_url(req.app_id), deployed_at=now, server_warnings=[warning]
        )

    async def rollover(self, app_id: str) -> api_pb2.AppRolloverResponse:
        """`modal app rollover`: deploy the current version again, as a new version that refers back to it, so
        new containers replace the running ones (those finish their inputs first)."""
        app = await self._apps.get(app_id)
        history = await self._deployments.deployments(app_id)
        live = _live(history)
        if app.state != api_pb2.APP_STATE_DEPLOYED or not live:
            raise FailedPrecondition(f"App {app_id} is not deployed")
        current, now = live[-1], self._clock.now()
        await self._deployments.add_deployment(
            DeploymentRecord(
                app_id,
                history[-1].version + 1,
                now,
                current.tag,
                current.client_version,
                current.version,
                current.commit_info,
                current.snapshot,
                api_pb2.DEPLOYMENT_TYPE_ROLLOVER,
            )
        )
        if self.roll_over is not None:
            await self.roll_over(app_id)
        return api_pb2.AppRolloverResponse(url=self._apps.page_url(app_id), deployed_at=now)

    async def promote(self, app_id: str, version: int) -> api_pb2.AppPromoteResponse:
        """`modal app promote APP vN`: deploy the staged vN as a new PROMOTION version that refers back to it."""
        app = await self._apps.get(app_id)
        history = await self._deployments.deployments(app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED or not _live(history):
            raise FailedPrecondition(f"App {app_id} is not deployed")
        target = next((d for d in history if d.version == version), None)
        if target is None:
            raise NotFound(f"App {app_id} has no deployment version v{version}")
        if target.deployment_type != _STAGED:
            raise FailedPrecondition(
                f"Version v{version} of App {app_id} is not a staged version: only versions deployed with "
                f"`modal deploy --staged` can be promoted (use `modal app rollback APP v{version}` to redeploy it)"
            )
        now = await self._redeploy(app_id, history, target, api_pb2.DEPLOYMENT_TYPE_PROMOTION)
        return api_pb2.AppPromoteResponse(url=self._apps.page_url(app_id), deployed_at=now)

    async def _apply_snapshot(self, app_id: str, snapshot: bytes) -> api_pb2.AppLayout:
        snap = json.loads(snapshot)
        layout: api_pb2.AppLayout = api_pb2.AppLayout.FromString(base64.b64decode(snap["layout"]))
        for function_id, definition in snap["functions"].items():
            tag = next((t for t, fid in layout.function_ids.items() if fid == function_id), "")
            await self._catalog.redefine(FunctionRecord(function_id, app_id, tag, base64.b64decode(definition)))
        return layout

    async def _snapshot(self, app_id: str, layout: api_pb2.AppLayout | None = None) -> bytes:
        """The app's layout (or this one) and the definitions of its functions."""
        layout = layout or await self._apps.layout(app_id)
        functions = {}
        for function_id in layout.function_ids.values():
            rec = await self._catalog.record(function_id)
            functions[function_id] = base64.b64encode(rec.definition).decode()
        body = {"layout": base64.b64encode(layout.SerializeToString()).decode(), "functions": functions}
        return json.dumps(body).encode()

    async def rollback(self, app_id: str, version: int) -> api_pb2.AppRollbackResponse:
        """`modal app rollback APP [vN]`: without a version (-1, -2...) count back over the versions that went
        live; a staged version, never live, is refused by number (`modal app promote` deploys it)."""
        history = await self._deployments.deployments(app_id)
        live = _live(history)
        if not live:
            raise NotFound(f"App {app_id} has no deployments")
        target = next((d for d in history if d.version == version), None) if version > 0 else None
        if target is None and version <= 0 and len(live) >= 2:
            target = live[version - 2] if -version < len(live) - 1 else None
        if target is None:
            raise NotFound(f"App {app_id} has no deployment version {version}")
        if target.deployment_type == _STAGED:
            raise FailedPrecondition(
                f"Version v{version} of App {app_id} is staged and has never been live: deploy it with "
                f"`modal app promote APP v{version}`"
            )
        now = await self._redeploy(app_id, history, target, api_pb2.DEPLOYMENT_TYPE_ROLLBACK)
        return api_pb2.AppRollbackResponse(url=self._apps.page_url(app_id), deployed_at=now)

    async def _redeploy(
        self, app_id: str, history: list[DeploymentRecord], target: DeploymentRecord, deployment_type: int
    ) -> float:
        """Serve `target`'s definitions as a new version that refers back to it; new containers replace the
        running ones. Returns when it was deployed."""
        layout = await self._apply_snapshot(app_id, target.snapshot)
        app = await self._apps.get(app_id)
        await self._apps.publish(
            api_pb2.AppPublishRequest(
                app_id=app_id,
                name=app.name,
                app_state=api_pb2.APP_STATE_DEPLOYED,
                function_ids=layout.function_ids,
                class_ids=layout.class_ids,
            )
        )
        now = self._clock.now()
        await self._deployments.add_deployment(
            DeploymentRecord(
                app_id,
                history[-1].version + 1,
                now,
                target.tag,
                target.client_version,
                target.version,
                target.commit_info,
                target.snapshot,
                deployment_type,
            )
        )
        if self.roll_over is not None:
            await self.roll_over(app_id)
        return now

    async def history(self, app_id: str) -> api_pb2.AppDeploymentHistoryResponse:
        """Newest first, except that the live version leads: `modal app history` highlights the first row
        (and sorts the table by version itself)."""
        await self._apps.get(app_id)
        records = await self._deployments.deployments(app_id)
        live = _live(records)
        resp = api_pb2.AppDeploymentHistoryResponse()
        production = live[-1].version if live else 0
        for rec in sorted(reversed(records), key=lambda d: d.version != production):
            resp.app_deployment_histories.add(
                app_id=app_id,
                version=rec.version,
                deployed_at=rec.deployed_at,
                tag=rec.tag,
                client_version=rec.client_version,
                rollback_version=rec.rollback_version,
                rollback_allowed=rec.deployment_type != _STAGED,
                commit_info=api_pb2.CommitInfo.FromString(rec.commit_info),
                deployed_by="berth",
                deployment_type=rec.deployment_type,
            )
        if live:
            resp.production_app_version = live[-1].version
        return resp

    async def _deployed(self, environment: str, app_name: str) -> api_pb2.AppLayout:
        app = await self._deployments.deployed_app(environment, app_name)
        if app is None:
            raise NotFound(f"App '{app_name}' not found in environment '{environment}'")
        return await self._apps.layout(app.app_id)

    async def function_get(self, req: api_pb2.FunctionGetRequest, environment: str) -> api_pb2.FunctionGetResponse:
        layout = await self._deployed(environment, req.app_name)
        function_id = layout.function_ids.get(req.object_tag)
        if function_id is None:
            raise NotFound(f"Function '{req.object_tag}' not found in app '{req.app_name}'")
        rec = await self._catalog.record(function_id)
        fn = api_pb2.Function.FromString(rec.definition)
        return api_pb2.FunctionGetResponse(
            function_id=function_id, handle_metadata=handle_metadata(fn, rec.app_id), function=function_data(fn)
        )

    async def class_get(self, req: api_pb2.ClassGetRequest, environment: str) -> api_pb2.ClassGetResponse:
        layout = await self._deployed(environment, req.app_name)
        class_id = layout.class_ids.get(req.object_tag)
        if class_id is None:
            raise NotFound(f"Class '{req.object_tag}' not found in app '{req.app_name}'")
        return api_pb2.ClassGetResponse(class_id=class_id, handle_metadata=await self._catalog.class_metadata(class_id))

    async def live_apps(self, environment: str) -> list[str]:
        """Apps of the environment that are running or deployed (not stopped)."""
        return [a.app_id for a in await self._deployments.list_apps(environment) if a.state not in _STOPPED]

    async def list_apps(self, environment: str, running_tasks: Callable[[str], int]) -> api_pb2.AppListResponse:
        resp = api_pb2.AppListResponse()
        for app in await self._deployments.list_apps(environment):
            resp.apps.add(
                app_id=app.app_id,
                description=app.name or app.description,
                state=app.state,
                created_at=app.created_at,
                stopped_at=app.stopped_at or 0,
                name=app.name,
                n_running_tasks=running_tasks(app.app_id),
            )
        return resp

    async def get_or_create(
        self, req: api_pb2.AppGetOrCreateRequest, environment: str
    ) -> api_pb2.AppGetOrCreateResponse:
        _check_name(req.app_name)
        app_id = await self.app_id_by_name(environment, req.app_name)
        if app_id:
            return api_pb2.AppGetOrCreateResponse(app_id=app_id, handle_metadata=await self.app_metadata(app_id))
        if req.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
            raise NotFound(f"App '{req.app_name}' not found in environment '{environment}'")
        created = await self._apps.create(
            api_pb2.AppCreateRequest(description=req.app_name, app_state=api_pb2.APP_STATE_DEPLOYED), environment
        )
        await self._apps.publish(
            api_pb2.AppPublishRequest(app_id=created.app_id, name=req.app_name, app_state=api_pb2.APP_STATE_DEPLOYED)
        )
        return api_pb2.AppGetOrCreateResponse(
            app_id=created.app_id, handle_metadata=await self.app_metadata(created.app_id)
        )
