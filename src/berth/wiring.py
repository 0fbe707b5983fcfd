"""Builds the object graph of one Berth server and its local worker from Settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from berth.api.context import Services
from berth.clock import Clock, SystemClock
from berth.config import Settings
from berth.domain.spec import TaskSpec
from berth.errors import BerthError, NotFound
from berth.scheduling.autoscaler import Autoscaler
from berth.scheduling.clusters import check_cluster_definition
from berth.scheduling.containers import ContainerService
from berth.scheduling.gauges import Gauges
from berth.scheduling.insights import FunctionInsights
from berth.scheduling.layout import LayoutBuilder
from berth.scheduling.overrides import AutoscalerOverrides
from berth.scheduling.replicas import Replicas
from berth.scheduling.sandboxes import SandboxManager
from berth.scheduling.schedules import ScheduleTrigger
from berth.scheduling.tasks import TaskManager
from berth.services.accounts import AccountService
from berth.services.apps import AppService
from berth.services.audit import AuditLog
from berth.services.billing import BillingService
from berth.services.call_insights import CallInsights
from berth.services.calls import CallService
from berth.services.catalog import Catalog
from berth.services.dashboard_access import DashboardAccess
from berth.services.deployments import DeploymentService
from berth.services.function_metrics import FunctionMetrics
from berth.services.history import LogHistory
from berth.services.image_gc import ImageCollector
from berth.services.image_names import ImageNames
from berth.services.images import ImageService
from berth.services.inputs import InputService
from berth.services.join_tokens import JoinTokens
from berth.services.logs import LogBus
from berth.services.metering import MeteringService
from berth.services.objects import ObjectService
from berth.services.quotas import LiveTask, QuotaService
from berth.services.roles import EnvironmentRoles
from berth.services.servers import refuse_servers
from berth.services.signing import Signer
from berth.services.state import build_state
from berth.services.token_flows import TokenFlows
from berth.services.wakeups import open_notifier
from berth.services.web import WebService
from berth.services.workspace import WorkspaceService
from berth.store.factory import open_blobs, open_log_fanout, open_stores, open_wake_bus
from berth.telemetry import Telemetry
from berth.tls import issue_cert_pem, issue_server_cert
from berth.worker.agent import LocalWorker
from berth.worker.assemble import local_worker
from berth.worker.files import StoreFiles
from berth.workers.hub import WorkerHub
from berth.workers.port import WorkerPort

log = logging.getLogger("berth.wiring")


async def recover(services: Services) -> None:
    """After a restart (clean or kill -9). On an exclusive database (SQLite) no container of the previous
    process is alive, so all leases go back to the queue. On a shared one, other replicas' containers are,
    so only what dead replicas (this one's earlier incarnation among them) held goes back. Clients of
    ephemeral apps get a heartbeat window to come back."""
    await services.replicas.join()
    if services.settings.exclusive_database:
        released = await services.stores.core.release_all_leases()
        await services.stores.core.end_stale_tasks(services.clock.now())
        if released:
            log.info("requeued %d inputs held by containers of the previous server process", released)
    await services.replicas.release_orphans()
    await services.apps.expect_heartbeats()


async def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    stores = await open_stores(settings)
    store = stores.core
    notifier = await open_notifier(open_wake_bus(settings))
    deployment_store = stores.history
    log_history = LogHistory(deployment_store)
    logs = LogBus(log_history.record)
    fanout = open_log_fanout(settings)
    if fanout is not None:
        await logs.share(fanout)
    blobs = await open_blobs(settings)
    catalog = Catalog(store)
    apps = AppService(store, logs, clock, settings.http_url, settings.app_heartbeat_timeout_s)
    objects = ObjectService(store, blobs, clock, settings.python_mirror)
    inputs = InputService(store, catalog, notifier, clock)
    calls = CallService(store, catalog, inputs, notifier, clock, settings.max_object_bytes)
    state = build_state(settings, stores.state, blobs, notifier, clock)
    layouts = LayoutBuilder(catalog, apps, objects, state.secrets, state.volumes, state.nfs, state.proxies)

    def on_output(spec: TaskSpec, fd: int, text: str) -> None:
        logs.output(spec.app_id, spec.task_id, spec.function_id, fd, text)

    holder: dict[str, TaskManager] = {}

    async def on_exit(spec: TaskSpec, code: int) -> None:
        await holder["tasks"].on_exit(spec, code)

    join_tokens = JoinTokens(store, clock)
    hub: WorkerHub | None = None
    worker: WorkerPort
    if settings.remote_workers:
        worker = hub = WorkerHub(on_output, on_exit, join_tokens.verify)
        state.volumes.task_volume = hub.task_volume
    else:
        worker = local = local_worker(settings, StoreFiles(blobs.local_file), on_output, on_exit)
    images = ImageService(store, clock, blobs, objects.mount_files, state.secrets.env, worker)
    images.function_layout = layouts.container_arguments  # Image.run_function()
    images.keep_log = log_history.record  # `modal image logs`: a build's lines, kept as its app's logs
    tasks = TaskManager(store, worker, inputs, layouts, logs, notifier, clock, settings.container_api_url)
    tasks.emulate = settings.emulate
    catalog.definition_hooks.append(tasks.warn_emulated)
    holder["tasks"] = tasks
    # On an exclusive database (SQLite) there is one replica, whatever its port: a restart replaces it.
    name = "embedded" if settings.exclusive_database else settings.effective_replica_name
    replicas = Replicas(store, tasks, worker, notifier, clock, name)
    tasks.replica_id = replicas.replica_id
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
        settings.default_max_containers,
        settings.default_scaledown_s,
        settings.retention_s,
        AutoscalerOverrides(store),
    )
    catalog.definition_hooks += [refuse_servers, check_cluster_definition, autoscaler.on_definition]

    async def warm_candidates() -> list[str]:
        return await deployments.running_function_ids(await accounts.names())

    autoscaler.warm_candidates = warm_candidates
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
    services.replicas = replicas
    autoscaler.peers = replicas
    services.join_tokens = join_tokens
    services.dashboard = DashboardAccess(store, accounts, clock)
    services.roles = EnvironmentRoles(store, clock)
    services.token_flows = TokenFlows(accounts, services.roles, clock)
    services.workspace = WorkspaceService(store, stores.web, services.roles, clock, services.image_builder_version)
    services.signer = Signer(store, clock)
    await services.signer.load()
    worker.trust_grants(services.signer.public_pem)
    if hub is not None:  # each remote worker's tunnels get a certificate from this server's CA for its address
        hub.issue_tunnel_cert = lambda host: issue_cert_pem(settings.tls_dir, [host, "localhost", "127.0.0.1"])
    if hub is None:  # an in-process worker's router resolves named secrets of execs right here
        local.resolve_secrets(state.secrets.merged_env)
        local.publish_snapshots(images.register_snapshot)
        # Its tunnels terminate TLS with a certificate from the data dir's CA (clients trust tls/ca.pem).
        names = [local.tunnel_host, "localhost", "127.0.0.1"]
        local.serve_tunnels(*await asyncio.to_thread(issue_server_cert, settings.tls_dir, names, "tunnels"))
    services.sandboxes = SandboxManager(
        store,
        tasks,
        layouts,
        worker,
        services.signer,
        notifier,
        clock,
        settings.container_api_url,
        settings.sandbox_queue_s,
    )
    services.hub = hub
    services.images = images
    services.image_names = ImageNames(stores.state, clock)
    services.image_collector = ImageCollector(
        services.image_names, images, worker, lambda: images_in_use(services), accounts.names
    )
    wire_web(services)
    wire_insights(services)
    wire_governance(services, local if hub is None else None)
    return services


def wire_governance(s: Services, local: LocalWorker | None) -> None:
    """Metering (usage from the in-process worker or from remote workers through the hub), billing over it,
    the audit log, and quotas (checked by the autoscaler, sandbox creation and function definitions)."""
    s.metering = MeteringService(s.stores.governance, s.stores.core, s.clock)
    s.billing = BillingService(s.stores.governance, s.metering)
    s.audit = AuditLog(s.stores.governance, s.clock)

    async def sandbox_tags(sandbox_id: str) -> dict[str, str]:
        try:
            return dict((await s.sandboxes.get(sandbox_id)).tags)
        except BerthError:
            return {}

    s.metering.sandbox_tags = sandbox_tags
    s.quotas = QuotaService(s.stores.governance, s.stores.core, s.stores.web, s.audit, s.clock)
    s.quotas.live_tasks = lambda: [
        LiveTask(t.app_id, t.function_id, t.sandbox_id) for t in s.tasks.tasks.values() if t.state != "stopped"
    ]
    s.autoscaler.quota_blocker = s.quotas.container_blocker
    s.sandboxes.quota_check = s.quotas.check_sandbox
    s.catalog.definition_hooks.insert(0, s.quotas.check_definition)  # before schedules and URLs are registered
    if local is not None:
        local.meter_usage(s.metering.sink)
    elif s.hub is not None:
        s.hub.on_usage = s.metering.sink


async def images_in_use(s: Services) -> set[str]:
    """Images a running sandbox or a function of a running or deployed app uses (the image collector keeps them)."""
    used = {r.image_id for r in s.sandboxes.live.values() if r.result is None and r.image_id}
    for env in await s.accounts.names():
        for app_id in await s.deployments.live_apps(env):
            for function_id in (await s.apps.layout(app_id)).function_ids.values():
                with contextlib.suppress(NotFound):
                    used.add((await s.catalog.definition(function_id)).image_id)
    return used


def wire_insights(s: Services) -> None:
    """What the observability RPCs read: the store's records of inputs and containers, and live tasks."""
    store = s.stores.core
    s.function_insights = FunctionInsights(
        store,
        s.catalog,
        s.tasks,
        s.clock,
        s.settings.default_max_containers,
        s.settings.default_scaledown_s,
        s.autoscaler,
    )
    s.call_insights = CallInsights(store, s.catalog, s.apps, s.deployments, s.stores.history)
    s.function_metrics = FunctionMetrics(store, s.catalog)
    s.telemetry = Telemetry()
    s.inputs.telemetry = s.tasks.telemetry = s.containers.telemetry = s.images.telemetry = s.telemetry
    s.gauges = Gauges(s.telemetry, s.tasks, store, s.catalog, s.worker, s.clock)


def wire_web(s: Services) -> None:
    """The web front door and the schedule trigger; both see every definition through catalog hooks."""
    web_store = s.stores.web
    s.web = WebService(
        web_store,
        s.stores.core,
        s.apps,
        s.calls,
        s.containers.cancel_inputs,
        s.notifier,
        s.blobs,
        s.clock,
        s.settings.container_host,
    )
    s.schedules = ScheduleTrigger(web_store, s.stores.core, s.apps, s.inputs, s.notifier, s.clock)
    s.catalog.definition_hooks += [s.schedules.register, s.web.assign_urls]
