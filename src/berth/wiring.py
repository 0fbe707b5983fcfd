"""Builds the object graph of one Berth server and its local worker from Settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.clock import Clock, SystemClock
from berth.config import Settings
from berth.scheduling.autoscaler import Autoscaler
from berth.scheduling.layout import LayoutBuilder
from berth.scheduling.schedules import ScheduleTrigger
from berth.scheduling.tasks import TaskManager
from berth.services.accounts import AccountService
from berth.services.apps import AppService
from berth.services.calls import CallService
from berth.services.catalog import Catalog
from berth.services.containers import ContainerService
from berth.services.deployments import DeploymentService
from berth.services.history import LogHistory
from berth.services.images import IMAGE_BUILDER_VERSION, ImageService
from berth.services.inputs import InputService
from berth.services.logs import LogBus
from berth.services.notify import Notifier
from berth.services.objects import ObjectService
from berth.services.state import StateServices, build_state
from berth.services.web import WebService
from berth.store.factory import Stores, open_blobs, open_stores
from berth.store.ports import BlobStore, ObjectStore
from berth.worker.agent import LocalWorker
from berth.worker.gpu import GpuPool
from berth.worker.gpu import detect as detect_gpus
from berth.worker.runtime import Runtime
from berth.worker.spec import TaskSpec

log = logging.getLogger("berth.wiring")


def make_runtime(name: str, settings: Settings | None = None, images: ImageService | None = None) -> Runtime:
    if name == "process":
        from berth.worker.runtime.process import ProcessRuntime

        log.warning("runtime 'process': containers are plain subprocesses with NO isolation (developer option)")
        return ProcessRuntime()
    from berth.worker.runtime.factory import check_runtime_name, make_oci_runtime

    check_runtime_name(name)
    if settings is None or images is None:
        raise ValueError(f"The {name} runtime needs the settings and the image service")
    ca = Path(settings.ca_bundle) if Path(settings.ca_bundle).is_file() else None
    return make_oci_runtime(name, settings.image_cache_dir, images.manifest, ca, settings.task_dir)


def build_images(
    settings: Settings,
    store: ObjectStore,
    clock: Clock,
    blobs: BlobStore,
    objects: ObjectService,
    state: StateServices,
) -> ImageService:
    from berth.worker.runtime.factory import image_backend

    ca = Path(settings.ca_bundle) if Path(settings.ca_bundle).is_file() else None
    backend = image_backend(
        settings.runtime,
        settings.image_cache_dir,
        settings.data_dir,
        ca,
        settings.insecure_registries,
        python_mirror=settings.python_mirror,
    )
    builder, manifests = (backend.builder, backend.manifests) if backend else (None, None)
    return ImageService(store, clock, blobs, objects.mount_files, state.secrets.env, builder, manifests)


@dataclass
class Services:
    settings: Settings
    stores: Stores
    clock: Clock
    notifier: Notifier
    logs: LogBus
    blobs: BlobStore
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
    accounts: AccountService
    deployments: DeploymentService
    log_history: LogHistory
    image_builder_version: str = IMAGE_BUILDER_VERSION
    state: StateServices = field(init=False)
    images: ImageService = field(init=False)
    web: WebService = field(init=False)
    schedules: ScheduleTrigger = field(init=False)

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
        return await self.accounts.verify(token_id, token_secret)

    async def container(self, task_id: str, secret: str) -> bool:
        return self.tasks.authenticate(task_id, secret)


async def recover(services: Services) -> None:
    """After a restart (clean or kill -9): no container of the previous process is alive, so their
    leases go back to the queue, and clients of ephemeral apps get a heartbeat window to come back."""
    released = await services.stores.core.release_all_leases()
    await services.stores.core.end_stale_tasks(services.clock.now())
    for app in await services.deployments.store.running_apps():
        if app.state in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING):
            services.apps.track(app.app_id)
    if released:
        log.info("requeued %d inputs held by containers of the previous server process", released)


async def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    stores = await open_stores(settings)
    store = stores.core
    notifier = Notifier()
    deployment_store = stores.history
    log_history = LogHistory(deployment_store)
    logs = LogBus(log_history.record)
    blobs = await open_blobs(settings)
    catalog = Catalog(store)
    apps = AppService(store, logs, clock, settings.http_url, settings.app_heartbeat_timeout_s)
    objects = ObjectService(store, blobs, clock, settings.python_mirror)
    inputs = InputService(store, catalog, notifier, clock)
    calls = CallService(store, catalog, inputs, notifier, clock, settings.max_object_bytes)
    state = build_state(settings, stores.state, blobs, notifier, clock)
    layouts = LayoutBuilder(catalog, apps, objects, blobs, state.secrets, state.volumes)

    def on_output(spec: TaskSpec, fd: int, text: str) -> None:
        logs.output(spec.app_id, spec.task_id, spec.function_id, fd, text)

    holder: dict[str, TaskManager] = {}

    async def on_exit(spec: TaskSpec, code: int) -> None:
        await holder["tasks"].on_exit(spec, code)

    images = build_images(settings, store, clock, blobs, objects, state)
    images.function_layout = layouts.container_arguments  # Image.run_function()
    runtime = make_runtime(settings.runtime, settings, images)
    worker = LocalWorker(runtime, settings.task_dir, on_output, on_exit, GpuPool(detect_gpus()))
    tasks = TaskManager(store, worker, inputs, layouts, logs, notifier, clock, settings.container_api_url)
    holder["tasks"] = tasks
    containers = ContainerService(tasks, inputs, catalog, notifier, clock)

    async def stop_app(app_id: str) -> None:
        await tasks.stop_app_tasks(app_id, "app stopped")

    apps.on_stop = stop_app
    accounts = AccountService(store, deployment_store, clock)
    deployments = DeploymentService(deployment_store, apps, catalog, clock)
    deployments.roll_over = tasks.roll_over
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
        settings.retention_s,
    )
    services = Services(
        settings,
        stores,
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
        accounts,
        deployments,
        log_history,
    )
    services.state = state
    services.images = images
    wire_web(services)
    return services


def wire_web(s: Services) -> None:
    """The web front door and the schedule trigger; both see every definition through catalog hooks."""
    web_store = s.stores.web
    s.web = WebService(
        web_store, s.stores.core, s.apps, s.calls, s.containers, s.notifier, s.blobs, s.clock, s.settings.container_host
    )
    s.schedules = ScheduleTrigger(web_store, s.stores.core, s.apps, s.inputs, s.notifier, s.clock)
    s.catalog.definition_hooks += [s.schedules.register, s.web.assign_urls]
