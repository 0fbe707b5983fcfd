"""Builds the object graph of one Berth server and its local worker from Settings."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.clock import Clock, SystemClock
from berth.config import Settings
from berth.scheduling.autoscaler import Autoscaler
from berth.scheduling.layout import LayoutBuilder
from berth.scheduling.schedules import ScheduleTrigger
from berth.scheduling.tasks import TaskManager
from berth.services.apps import AppService
from berth.services.blobs import LocalBlobStore
from berth.services.calls import CallService
from berth.services.catalog import Catalog
from berth.services.containers import ContainerService
from berth.services.inputs import InputService
from berth.services.logs import LogBus
from berth.services.notify import Notifier
from berth.services.objects import IMAGE_BUILDER_VERSION, ObjectService
from berth.services.state import StateServices, build_state
from berth.services.web import WebService
from berth.store.sqlite import SqliteStore
from berth.store.sqlite.web import WebStore
from berth.worker.agent import LocalWorker
from berth.worker.runtime import Runtime
from berth.worker.spec import TaskSpec


def make_runtime(name: str) -> Runtime:
    if name == "process":
        from berth.worker.runtime.process import ProcessRuntime

        return ProcessRuntime()
    raise ValueError(f"Unknown runtime {name!r}; available: process")


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    clock: Clock
    notifier: Notifier
    logs: LogBus
    blobs: LocalBlobStore
    catalog: Catalog
    apps: AppService
    objects: ObjectService
    inputs: InputService
    calls: CallService
    layouts: LayoutBuilder
    tasks: TaskManager
    containers: ContainerService
    worker: LocalWorker
    autoscaler: Autoscaler
    image_builder_version: str = IMAGE_BUILDER_VERSION
    web: WebService = field(init=False)
    schedules: ScheduleTrigger = field(init=False)
    state: StateServices = field(init=False)

    def environment(self, name: str) -> api_pb2.EnvironmentGetOrCreateResponse:
        settings = api_pb2.EnvironmentSettings(image_builder_version=self.image_builder_version, webhook_suffix="berth")
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=f"en-{name}", metadata=api_pb2.EnvironmentMetadata(name=name, settings=settings)
        )

    def blob_url(self, blob_id: str, caller: Caller) -> str:
        base = self.settings.container_http_url if caller.is_container else self.settings.http_url
        return f"{base}/blobs/{blob_id}"

    # Authenticator
    async def client(self, token_id: str, token_secret: str) -> str | None:
        stored = await self.store.token_hash(token_id)
        digest = hashlib.sha256(token_secret.encode()).hexdigest()
        if stored is None or not hmac.compare_digest(stored, digest):
            return None
        return ""

    async def container(self, task_id: str, secret: str) -> bool:
        return self.tasks.authenticate(task_id, secret)


async def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    store = await SqliteStore.open(settings.db_path)
    notifier = Notifier()
    logs = LogBus()
    blobs = LocalBlobStore(settings.blob_dir)
    catalog = Catalog(store)
    apps = AppService(store, logs, clock, settings.http_url)
    objects = ObjectService(store, blobs, clock)
    inputs = InputService(store, catalog, notifier, clock)
    calls = CallService(store, catalog, inputs, notifier, clock, settings.max_object_bytes)
    state = build_state(settings, store.connection, blobs, notifier, clock)
    layouts = LayoutBuilder(catalog, apps, objects, blobs, state.secrets, state.volumes)

    def on_output(spec: TaskSpec, fd: int, text: str) -> None:
        logs.output(spec.app_id, spec.task_id, spec.function_id, fd, text)

    holder: dict[str, TaskManager] = {}

    async def on_exit(spec: TaskSpec, code: int) -> None:
        await holder["tasks"].on_exit(spec, code)

    worker = LocalWorker(make_runtime(settings.runtime), settings.task_dir, on_output, on_exit)
    tasks = TaskManager(store, worker, inputs, layouts, logs, notifier, clock, settings.container_server_url)
    holder["tasks"] = tasks
    containers = ContainerService(tasks, inputs, catalog, notifier, clock)

    async def stop_app(app_id: str) -> None:
        await tasks.stop_app_tasks(app_id, "app stopped")

    apps.on_stop = stop_app
    autoscaler = Autoscaler(
        store,
        tasks,
        catalog,
        apps,
        inputs,
        notifier,
        clock,
        settings.worker_slots,
        settings.default_max_containers,
        settings.default_scaledown_s,
    )
    services = Services(
        settings,
        store,
        clock,
        notifier,
        logs,
        blobs,
        catalog,
        apps,
        objects,
        inputs,
        calls,
        layouts,
        tasks,
        containers,
        worker,
        autoscaler,
    )
    services.state = state
    wire_web(services)
    return services


def wire_web(s: Services) -> None:
    """The web front door and the schedule trigger; both see every definition through catalog hooks."""
    web_store = WebStore(s.store.connection)
    s.web = WebService(
        web_store, s.store, s.apps, s.calls, s.containers, s.notifier, s.blobs, s.clock, s.settings.container_host
    )
    s.schedules = ScheduleTrigger(web_store, s.store, s.apps, s.inputs, s.notifier, s.clock)
    s.catalog.definition_hooks += [s.schedules.register, s.web.assign_urls]
