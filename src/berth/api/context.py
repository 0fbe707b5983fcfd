"""The application object the servicers work with: every service of one server, built by berth.wiring.
It also answers the few questions the edge asks of the server as a whole (environment settings, blob URLs,
credentials)."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import Message
from modal_proto import api_pb2

from berth.api.caller import Caller
from berth.api.chain import request_environment
from berth.clock import Clock
from berth.config import Settings
from berth.errors import BerthError
from berth.scheduling.autoscaler import Autoscaler
from berth.scheduling.containers import ContainerService
from berth.scheduling.gauges import Gauges
from berth.scheduling.insights import FunctionInsights
from berth.scheduling.layout import LayoutBuilder
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
from berth.services.images import IMAGE_BUILDER_VERSION, ImageService
from berth.services.inputs import InputService
from berth.services.join_tokens import JoinTokens
from berth.services.logs import LogBus
from berth.services.metering import MeteringService
from berth.services.notify import Notifier
from berth.services.objects import ObjectService
from berth.services.quotas import QuotaService
from berth.services.roles import EnvironmentRoles
from berth.services.signing import Signer
from berth.services.state import StateServices
from berth.services.token_flows import TokenFlows
from berth.services.web import WebService
from berth.services.workspace import WorkspaceService
from berth.store.ports import BlobStore, Stores
from berth.telemetry import Telemetry
from berth.workers.hub import WorkerHub
from berth.workers.port import WorkerPort


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
    worker: WorkerPort
    autoscaler: Autoscaler
    accounts: AccountService
    deployments: DeploymentService
    log_history: LogHistory
    image_builder_version: str = IMAGE_BUILDER_VERSION
    state: StateServices = field(init=False)
    images: ImageService = field(init=False)
    image_names: ImageNames = field(init=False)
    image_collector: ImageCollector = field(init=False)
    web: WebService = field(init=False)
    schedules: ScheduleTrigger = field(init=False)
    join_tokens: JoinTokens = field(init=False)
    signer: Signer = field(init=False)
    sandboxes: SandboxManager = field(init=False)
    function_insights: FunctionInsights = field(init=False)
    call_insights: CallInsights = field(init=False)
    function_metrics: FunctionMetrics = field(init=False)
    telemetry: Telemetry = field(init=False)
    gauges: Gauges = field(init=False)
    replicas: Replicas = field(init=False)
    dashboard: DashboardAccess = field(init=False)
    metering: MeteringService = field(init=False)
    billing: BillingService = field(init=False)
    audit: AuditLog = field(init=False)
    quotas: QuotaService = field(init=False)
    roles: EnvironmentRoles = field(init=False)
    workspace: WorkspaceService = field(init=False)
    token_flows: TokenFlows = field(init=False)
    hub: WorkerHub | None = None  # remote workers (`berth server`); None when the worker is in-process

    def environment(self, name: str) -> api_pb2.EnvironmentGetOrCreateResponse:
        settings = api_pb2.EnvironmentSettings(image_builder_version=self.image_builder_version, webhook_suffix="berth")
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=f"en-{name}", metadata=api_pb2.EnvironmentMetadata(name=name, settings=settings)
        )

    def http_url_for(self, caller: Caller) -> str:
        """The server's HTTP side as this caller reaches it: containers on remote workers through their
        worker's relay, other containers at the container network's address, clients directly."""
        if caller.task_id is not None and self.hub is not None:
            relayed = self.hub.container_http_url(caller.task_id)
            if relayed:
                return relayed
        return self.settings.container_http_url if caller.is_container else self.settings.http_url

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of this server, its gauges read just now."""
        await self.gauges.refresh()
        return self.telemetry.render()

    def blob_url(self, blob_id: str, caller: Caller) -> str:
        return f"{self.http_url_for(caller)}/blobs/{blob_id}"

    # Authenticator
    async def client(self, token_id: str, token_secret: str) -> str | None:
        return await self.accounts.verify(token_id, token_secret)

    async def container(self, task_id: str, secret: str) -> bool:
        return self.tasks.authenticate(task_id, secret)

    async def environment_of(self, object_id: str) -> str | None:
        prefix = object_id.partition("-")[0]
        kinds = {"vo": "volume", "st": "secret", "di": "dict", "qu": "queue"}
        if prefix in kinds:
            obj = await self.stores.state.get(kinds[prefix], object_id)
            return obj.environment if obj is not None else None
        app_id: str | None = None
        if prefix == "ap":
            app_id = object_id
        elif prefix == "fu":
            app_id = await self._app_of_function(object_id)
        elif prefix == "fc":
            call = await self.stores.core.get_call(object_id)
            app_id = await self._app_of_function(call.function_id) if call is not None else None
        elif prefix == "sb":
            try:
                app_id = (await self.sandboxes.get(object_id)).app_id
            except BerthError:
                return None
        if not app_id:
            return None
        app = await self.stores.core.get_app(app_id)
        return app.environment if app is not None else None

    async def authorize(self, caller: Caller, request: Message | None) -> None:
        if caller.token_id is None or request is None or not await self.roles.restricted(caller.token_id):
            return  # containers act for the app that started them; an unrestricted token may do anything
        environment = await request_environment(self, caller, request)
        if environment is not None:
            await self.roles.authorize(caller.token_id, caller.environment, environment, caller.rpc, request)

    async def _app_of_function(self, function_id: str) -> str | None:
        try:
            return (await self.catalog.record(function_id)).app_id
        except BerthError:
            return None
