"""The Modal API servicer, composed of one mixin per RPC family. Add a family here to serve it."""

from __future__ import annotations

from berth.api.cluster_rpcs import ClusterRpcs
from berth.api.context import Services
from berth.api.deploy_rpcs import AccountRpcs, DeploymentRpcs
from berth.api.governance_rpcs import GovernanceRpcs
from berth.api.image_rpcs import ImageRpcs
from berth.api.insight_rpcs import InsightRpcs
from berth.api.nfs_rpcs import NetworkFileSystemRpcs
from berth.api.proxy_rpcs import ProxyRpcs
from berth.api.sandbox_rpcs import SandboxRpcs
from berth.api.servicers import AppRpcs, ContainerRpcs, FunctionRpcs, ObjectRpcs
from berth.api.state_rpcs import DictRpcs, QueueRpcs, SecretRpcs, VolumeRpcs
from berth.api.web_rpcs import WebRpcs
from berth.api.workspace_rpcs import WorkspaceRpcs


class ModalServicer(
    AppRpcs,
    ObjectRpcs,
    FunctionRpcs,
    ContainerRpcs,
    DeploymentRpcs,
    AccountRpcs,
    WebRpcs,
    SecretRpcs,
    DictRpcs,
    QueueRpcs,
    VolumeRpcs,
    NetworkFileSystemRpcs,
    ImageRpcs,
    SandboxRpcs,
    WorkspaceRpcs,
    InsightRpcs,
    GovernanceRpcs,
    ClusterRpcs,
    ProxyRpcs,
):
    def __init__(self, services: Services) -> None:
        self.s = services
