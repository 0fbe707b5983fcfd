"""What a container is told about its world: ContainerArguments with a complete app layout,
the files of its mounts, the environment from its secrets and the volumes bound into it."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.domain.spec import BindMount, BuiltArguments, MountedFile
from berth.errors import NotFound
from berth.services.apps import AppService
from berth.services.buckets import bucket_mounts
from berth.services.catalog import Catalog, handle_metadata
from berth.services.network_file_systems import NetworkFileSystemService
from berth.services.objects import ObjectService
from berth.services.proxies import ProxyService
from berth.services.secrets import SecretService
from berth.services.volumes import VolumeService


class LayoutBuilder:
    def __init__(
        self,
        catalog: Catalog,
        apps: AppService,
        objects: ObjectService,
        secrets: SecretService,
        volumes: VolumeService,
        nfs: NetworkFileSystemService,
        proxies: ProxyService,
    ) -> None:
        self._catalog = catalog
        self._apps = apps
        self._objects = objects
        self._secrets = secrets
        self._volumes = volumes
        self._nfs = nfs
        self._proxies = proxies

    async def app_layout(self, app_id: str, extra_ids: list[str]) -> api_pb2.AppLayout:
        published = await self._apps.layout(app_id)
        layout = api_pb2.AppLayout()
        layout.function_ids.update(published.function_ids)
        layout.class_ids.update(published.class_ids)
        seen: set[str] = set()
        for function_id in published.function_ids.values():
            fn = await self._catalog.definition(function_id)
            layout.objects.add(object_id=function_id, function_handle_metadata=handle_metadata(fn, app_id))
            seen.add(function_id)
        for class_id in published.class_ids.values():
            md = await self._catalog.class_metadata(class_id)
            layout.objects.add(object_id=class_id, class_handle_metadata=md)
            seen.add(class_id)
        for object_id in extra_ids:
            if object_id not in seen:
                seen.add(object_id)
                if object_id.startswith("vo-"):
                    layout.objects.append(await self._volumes.layout_object(object_id))
                else:
                    layout.objects.append(await self._objects.layout_object(object_id))
        return layout

    async def container_arguments(self, function_id: str) -> BuiltArguments:
        rec = await self._catalog.record(function_id)
        fn = api_pb2.Function.FromString(rec.definition)
        deps = [d.object_id for d in fn.object_dependencies]
        args = api_pb2.ContainerArguments(
            function_id=function_id,
            app_id=rec.app_id,
            function_def=fn,
            serialized_params=rec.serialized_params,
            environment_name="main",
            app_layout=await self.app_layout(rec.app_id, deps),
        )
        env = await self._secrets.merged_env(fn.secret_ids)
        files = await self._mounted_files(fn.mount_ids)
        binds = [await self._volumes.bind(m) for m in fn.volume_mounts]
        binds += [await self._nfs.bind(m) for m in fn.shared_volume_mounts]
        source_ip = await self.proxy_source_ip(fn.proxy_id)
        buckets = await bucket_mounts(fn.cloud_bucket_mounts, self._secrets.env)
        return BuiltArguments(args, env, files, binds, source_ip, buckets)

    async def _mounted_files(self, mount_ids: list[str]) -> list[MountedFile]:
        files: list[MountedFile] = []
        for mount_id in mount_ids:
            try:
                mount_files = await self._objects.mount_files(mount_id)
            except NotFound:
                continue
            files.extend(MountedFile(f.filename, f.sha256_hex, f.mode) for f in mount_files)
        return files

    async def sandbox_parts(self, sb: api_pb2.Sandbox) -> tuple[dict[str, str], list[MountedFile], list[BindMount]]:
        """A sandbox's environment (its secrets), files (its mounts) and volumes."""
        env = await self._secrets.merged_env(sb.secret_ids)
        env.update(sb.environment_variables.contents)
        files = await self._mounted_files(list(sb.mount_ids))
        binds = [await self._volumes.bind(m) for m in sb.volume_mounts]
        binds += [await self._nfs.bind(m) for m in sb.nfs_mounts]
        return env, files, binds

    async def proxy_source_ip(self, proxy_id: str) -> str:
        """The address a container with this proxy (or none: "") sends from; "" for the worker's own."""
        return await self._proxies.source_ip(proxy_id) if proxy_id else ""

    async def secret_env(self, secret_id: str) -> dict[str, str]:
        return await self._secrets.env(secret_id)
