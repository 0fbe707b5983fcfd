"""App lifecycle: create, publish the layout, heartbeats, disconnect and stop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from modal_proto import api_pb2

from berth.clock import Clock
from berth.errors import NotFound
from berth.ids import new_id
from berth.services.logs import LogBus
from berth.store.ports import AppStore, ObjectStore
from berth.store.records import AppRecord

StopHook = Callable[[str], Awaitable[None]]

_RUNNING = frozenset(
    {
        api_pb2.APP_STATE_EPHEMERAL,
        api_pb2.APP_STATE_DETACHED,
        api_pb2.APP_STATE_DEPLOYED,
        api_pb2.APP_STATE_INITIALIZING,
        api_pb2.APP_STATE_DETACHED_DISCONNECTED,
        api_pb2.APP_STATE_UNSPECIFIED,
    }
)


class AppLayoutStore(AppStore, ObjectStore, Protocol):
    """Apps and their layouts (kept as objects of kind 'layout')."""


class AppService:
    def __init__(
        self, store: AppLayoutStore, logs: LogBus, clock: Clock, base_url: str, heartbeat_timeout_s: float = 60.0
    ) -> None:
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._store = store
        self._logs = logs
        self._clock = clock
        self._base_url = base_url
        self._layouts: dict[str, api_pb2.AppLayout] = {}
        self.on_stop: StopHook | None = None

    async def get(self, app_id: str) -> AppRecord:
        app = await self._store.get_app(app_id)
        if app is None:
            raise NotFound(f"App {app_id} not found")
        return app

    async def is_running(self, app_id: str) -> bool:
        app = await self._store.get_app(app_id)
        return app is not None and app.state in _RUNNING

    async def create(self, req: api_pb2.AppCreateRequest, environment: str) -> api_pb2.AppCreateResponse:
        app_id = new_id("ap")
        now = self._clock.now()
        state = req.app_state or api_pb2.APP_STATE_EPHEMERAL
        await self._store.put_app(AppRecord(app_id, "", req.description, state, environment, now))
        url = f"{self._base_url}/apps/{app_id}"
        return api_pb2.AppCreateResponse(app_id=app_id, app_page_url=url, app_logs_url=url + "/logs")

    async def publish(self, req: api_pb2.AppPublishRequest) -> api_pb2.AppPublishResponse:
        app = await self.get(req.app_id)
        layout = api_pb2.AppLayout()
        layout.function_ids.update(req.function_ids)
        layout.class_ids.update(req.class_ids)
        await self._store.put_object("layout", req.app_id, layout.SerializeToString(), self._clock.now())
        self._layouts[req.app_id] = layout
        if req.name:
            app.name = req.name
        if req.app_state:
            app.state = req.app_state
        await self._store.put_app(app)
        return api_pb2.AppPublishResponse(url=f"{self._base_url}/apps/{req.app_id}", deployed_at=self._clock.now())

    def page_url(self, app_id: str) -> str:
        return f"{self._base_url}/apps/{app_id}"

    async def layout(self, app_id: str) -> api_pb2.AppLayout:
        cached = self._layouts.get(app_id)
        if cached is not None:
            return cached
        body = await self._store.get_object("layout", app_id)
        layout = api_pb2.AppLayout.FromString(body) if body else api_pb2.AppLayout()
        self._layouts[app_id] = layout
        return layout

    async def heartbeat(self, app_id: str) -> None:
        await self.get(app_id)
        await self._store.app_heartbeat(app_id, self._clock.now())

    async def client_disconnected(self, app_id: str) -> None:
        app = await self.get(app_id)
        if app.state == api_pb2.APP_STATE_DETACHED:
            app.state = api_pb2.APP_STATE_DETACHED_DISCONNECTED
            await self._store.put_app(app)
            self._logs.release_followers(app_id)
            return
        if app.state == api_pb2.APP_STATE_INITIALIZING:
            await self.discard(app_id)
        elif app.state in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_UNSPECIFIED):
            await self.stop(app_id)

    async def stop(self, app_id: str) -> None:
        app = await self.get(app_id)
        if app.state == api_pb2.APP_STATE_STOPPED:
            return
        await self._store.set_app_state(app_id, api_pb2.APP_STATE_STOPPED, self._clock.now())
        if self.on_stop is not None:
            await self.on_stop(app_id)
        self._logs.app_done(app_id)

    async def discard(self, app_id: str) -> None:
        """An abandoned deploy leaves nothing behind: its containers stop and its records go."""
        await self.stop(app_id)
        await self._store.delete_app(app_id)
        self._layouts.pop(app_id, None)

    async def expect_heartbeats(self) -> None:
        """After a restart: every live app's client gets a full heartbeat window to come back."""
        await self._store.touch_live_apps(self._clock.now())

    async def silent_apps(self) -> list[str]:
        """Ephemeral and initializing apps whose client stopped sending heartbeats (to whichever replica)."""
        return await self._store.silent_apps(self._clock.now() - self._heartbeat_timeout_s)
