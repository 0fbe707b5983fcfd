"""A function's autoscaler settings: the decorator's (static) ones with the run-time overrides of
`Function.update_autoscaler` / `modal function autoscaler update` laid on top, and the containers that the
settings ask to keep warm (`min_containers`, `buffer_containers`).

Overrides are persisted (store port AutoscalerOverrideStore) and cached here; a redeploy of the function
drops them, as Modal resets overrides on deploy."""

from __future__ import annotations

from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.store.ports import AutoscalerOverrideStore

_FIELDS = ("min_containers", "max_containers", "buffer_containers", "scaledown_window")


def static_settings(fn: api_pb2.Function) -> api_pb2.AutoscalerSettings:
    """The settings a definition asks for, from the current fields or the pre-1.0 ones older clients send."""
    out = api_pb2.AutoscalerSettings()
    out.CopyFrom(fn.autoscaler_settings)
    legacy = {
        "min_containers": fn.warm_pool_size,
        "max_containers": fn.concurrency_limit,
        "buffer_containers": fn._experimental_buffer_containers,
        "scaledown_window": fn.task_idle_timeout_secs,
    }
    for name, value in legacy.items():
        if not out.HasField(name) and value:  # type: ignore[arg-type]
            setattr(out, name, value)
    return out


def warm_target(settings: api_pb2.AutoscalerSettings, busy: int) -> int:
    """Containers to keep up: at least min_containers, and buffer_containers idle beyond the busy ones."""
    want = max(settings.min_containers, busy + settings.buffer_containers)
    return min(want, settings.max_containers) if settings.max_containers else want


def _check(update: api_pb2.AutoscalerSettings) -> None:
    for name in _FIELDS:
        if update.HasField(name) and getattr(update, name) < 0:  # type: ignore[arg-type]
            raise InvalidArgument(f"Autoscaler setting {name} must not be negative")
    if update.HasField("max_containers") and update.max_containers == 0:
        raise InvalidArgument("Autoscaler setting max_containers must be positive")
    if update.HasField("scaledown_window") and update.scaledown_window == 0:
        raise InvalidArgument("Autoscaler setting scaledown_window must be positive")
    unsupported = [f.name for f, _ in update.ListFields() if f.name not in _FIELDS]
    if unsupported:
        raise InvalidArgument(f"Berth's autoscaler does not support the setting(s) {', '.join(unsupported)}")


class AutoscalerOverrides:
    """The persisted overrides, loaded once and then kept in step with every change this server makes."""

    def __init__(self, store: AutoscalerOverrideStore) -> None:
        self._store = store
        self._configs: dict[str, api_pb2.AutoscalerConfiguration] = {}
        self._loaded = False

    async def load(self) -> None:
        """Reads the overrides from the store (at start, and again to see another replica's updates)."""
        found = await self._store.autoscaler_overrides()
        self._configs = {fid: api_pb2.AutoscalerConfiguration.FromString(body) for fid, body in found.items()}
        self._loaded = True

    async def _ensure_loaded(self) -> None:
        if not self._loaded:
            await self.load()

    def function_ids(self) -> list[str]:
        return list(self._configs)

    def configuration(self, function_id: str) -> api_pb2.AutoscalerConfiguration | None:
        return self._configs.get(function_id)

    async def effective(self, function_id: str, fn: api_pb2.Function) -> api_pb2.AutoscalerSettings:
        """The static settings with this function's overrides applied (only the fields that have values)."""
        await self._ensure_loaded()
        out = static_settings(fn)
        config = self._configs.get(function_id)
        if config is not None:
            out.MergeFrom(config.override_settings)
        return out

    async def update(
        self, function_id: str, update: api_pb2.AutoscalerSettings, who: str, now: float
    ) -> api_pb2.AutoscalerConfiguration:
        _check(update)
        await self._ensure_loaded()
        config = api_pb2.AutoscalerConfiguration()
        config.CopyFrom(self._configs.get(function_id, api_pb2.AutoscalerConfiguration()))
        config.override_settings.MergeFrom(update)
        for name in _FIELDS:
            if update.HasField(name):  # type: ignore[arg-type]
                config.override_events[name].CopyFrom(api_pb2.UserActionInfo(timestamp=now, requested_by=who))
        await self._store.put_autoscaler_override(function_id, config.SerializeToString(), now)
        self._configs[function_id] = config
        return config

    async def reset(self, function_id: str) -> None:
        """A redeployed function starts again from its decorator's settings."""
        await self._ensure_loaded()
        if self._configs.pop(function_id, None) is not None:
            await self._store.delete_autoscaler_override(function_id)
