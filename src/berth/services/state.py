"""The state services apps share (volumes, secrets, dicts, queues), built together on one state store."""

from __future__ import annotations

from dataclasses import dataclass

from berth.clock import Clock
from berth.config import Settings
from berth.services.dicts import DictService
from berth.services.network_file_systems import NetworkFileSystemService
from berth.services.notify import Notifier
from berth.services.proxies import ProxyService
from berth.services.queues import QueueService
from berth.services.secrets import SecretService, load_or_create_key
from berth.services.volume_heads import VolumeHeads
from berth.services.volumes import VolumeService
from berth.store.ports import BlobStore, StateStore


@dataclass
class StateServices:
    volumes: VolumeService
    secrets: SecretService
    dicts: DictService
    queues: QueueService
    nfs: NetworkFileSystemService
    proxies: ProxyService


def build_state(
    settings: Settings, store: StateStore, blobs: BlobStore, notifier: Notifier, clock: Clock
) -> StateServices:
    key = load_or_create_key(settings.secrets_key, settings.secrets_key_path)
    return StateServices(
        volumes=VolumeService(
            store,
            blobs,
            clock,
            settings.volume_dir,
            settings.max_object_bytes,
            VolumeHeads(store, blobs) if settings.remote_workers else None,
        ),
        secrets=SecretService(store, clock, key),
        dicts=DictService(store, clock),
        queues=QueueService(store, notifier, clock),
        nfs=NetworkFileSystemService(
            store, blobs, clock, settings.data_dir / "nfs", settings.max_object_bytes, not settings.remote_workers
        ),
        proxies=ProxyService(store, clock),
    )
