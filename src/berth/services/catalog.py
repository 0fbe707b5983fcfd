"""Function and class definitions: ids, handle metadata and the options of bound (parametrized) functions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from google.protobuf.message import Message
from modal_proto import api_pb2

from berth.domain import gpu
from berth.errors import InvalidArgument, NotFound
from berth.ids import new_id
from berth.store.ports import FunctionStore
from berth.store.records import FunctionRecord

_PICKLE = [api_pb2.DATA_FORMAT_PICKLE]
# Called with (app_id, function_id, definition, final) before a definition is handed out; may fill in
# server-assigned fields (web URLs) or refuse it (a malformed schedule). final=False at precreate.
DefinitionHook = Callable[[str, str, api_pb2.Function, bool], Awaitable[None]]


def copy_common_fields(src: Message, dst: Message) -> None:
    """Copy every field that both messages declare with the same name and type."""
    dst_fields = dst.DESCRIPTOR.fields_by_name
    for field, value in src.ListFields():
        other = dst_fields.get(field.name)
        if other is None or other.type != field.type or other.is_repeated != field.is_repeated:
            continue
        if field.message_type is not None and other.message_type.full_name != field.message_type.full_name:
            continue
        target = getattr(dst, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def method_metadata(name: str, method: api_pb2.MethodDefinition) -> api_pb2.FunctionHandleMetadata:
    return api_pb2.FunctionHandleMetadata(
        function_name=method.function_name,
        function_type=method.function_type,
        is_method=True,
        use_method_name=name,
        web_url=method.web_url,
        function_schema=method.function_schema,
        supported_input_formats=list(method.supported_input_formats) or _PICKLE,
        supported_output_formats=list(method.supported_output_formats) or _PICKLE,
    )


def handle_metadata(fn: api_pb2.Function, app_id: str) -> api_pb2.FunctionHandleMetadata:
    md = api_pb2.FunctionHandleMetadata(
        function_name=fn.function_name,
        function_type=fn.function_type,
        app_id=app_id,
        is_method=fn.is_method,
        web_url=fn.web_url,
        function_schema=fn.function_schema,
        class_parameter_info=fn.class_parameter_info,
        supported_input_formats=list(fn.supported_input_formats) or _PICKLE,
        supported_output_formats=list(fn.supported_output_formats) or _PICKLE,
    )
    for name, method in fn.method_definitions.items():
        md.method_handle_metadata[name].CopyFrom(method_metadata(name, method))
    return md


def function_data(fn: api_pb2.Function) -> api_pb2.FunctionData:
    """The FunctionData view of a definition, which clients parse after create and lookup."""
    data = api_pb2.FunctionData(ranked_functions=[api_pb2.FunctionData.RankedFunction(rank=0, function=fn)])
    copy_common_fields(fn, data)
    return data


def apply_options(fn: api_pb2.Function, options: api_pb2.FunctionOptions) -> api_pb2.Function:
    """The definition of a function bound with `with_options`/`with_concurrency`/`with_batching`."""
    out = api_pb2.Function()
    out.CopyFrom(fn)
    for name in ("resources", "retry_policy"):
        if options.HasField(name):
            getattr(out, name).CopyFrom(getattr(options, name))
    for name in (
        "concurrency_limit",
        "timeout_secs",
        "task_idle_timeout_secs",
        "warm_pool_size",
        "max_concurrent_inputs",
        "target_concurrent_inputs",
        "batch_max_size",
        "batch_linger_ms",
    ):
        if cast(Any, options).HasField(name):
            setattr(out, name, getattr(options, name))
    if options.replace_secret_ids:
        del out.secret_ids[:]
        out.secret_ids.extend(options.secret_ids)
    else:
        out.secret_ids.extend(options.secret_ids)
    if options.replace_volume_mounts:
        del out.volume_mounts[:]
        out.volume_mounts.extend(options.volume_mounts)
    if options.HasField("concurrency_limit"):
        out.autoscaler_settings.max_containers = options.concurrency_limit
    if options.HasField("warm_pool_size"):
        out.autoscaler_settings.min_containers = options.warm_pool_size
    if options.HasField("task_idle_timeout_secs"):
        out.autoscaler_settings.scaledown_window = options.task_idle_timeout_secs
    if options.HasField("buffer_containers"):
        out.autoscaler_settings.buffer_containers = options.buffer_containers
    return out


class Catalog:
    """Function definitions, cached in memory (they never change once created, only get replaced)."""

    def __init__(self, store: FunctionStore) -> None:
        self._store = store
        self._cache: dict[str, FunctionRecord] = {}
        self._parsed: dict[str, api_pb2.Function] = {}
        self.definition_hooks: list[DefinitionHook] = []

    async def record(self, function_id: str) -> FunctionRecord:
        rec = self._cache.get(function_id)
        if rec is None:
            rec = await self._store.get_function(function_id)
            if rec is None:
                raise NotFound(f"Function {function_id} not found")
            self._cache[function_id] = rec
        return rec

    def _remember(self, rec: FunctionRecord) -> None:
        self._cache[rec.function_id] = rec
        self._parsed.pop(rec.function_id, None)

    async def put(self, rec: FunctionRecord) -> None:
        await self._store.put_function(rec)
        self._remember(rec)

    async def redefine(self, rec: FunctionRecord) -> None:
        """Put back a definition FunctionCreate once accepted (a rollback, a promotion, or the live version after
        a staged deploy replaced it): the definition hooks run again, so the function's schedule, web URLs
        and autoscaler settings are those of the definition it now has."""
        fn = api_pb2.Function.FromString(rec.definition)
        for hook in self.definition_hooks:
            await hook(rec.app_id, rec.function_id, fn, True)
        await self.put(FunctionRecord(rec.function_id, rec.app_id, rec.tag, fn.SerializeToString()))

    async def definition(self, function_id: str) -> api_pb2.Function:
        """The parsed definition, shared and cached: callers must not modify it."""
        fn = self._parsed.get(function_id)
        if fn is None:
            fn = api_pb2.Function.FromString((await self.record(function_id)).definition)
            self._parsed[function_id] = fn
        return fn

    async def precreate(self, req: api_pb2.FunctionPrecreateRequest) -> api_pb2.FunctionPrecreateResponse:
        function_id = req.existing_function_id or new_id("fu")
        fn = api_pb2.Function(
            function_name=req.function_name,
            function_type=req.function_type,
            webhook_config=req.webhook_config,
            function_schema=req.function_schema,
            supported_input_formats=req.supported_input_formats,
            supported_output_formats=req.supported_output_formats,
        )
        for name, method in req.method_definitions.items():
            fn.method_definitions[name].CopyFrom(method)
        for hook in self.definition_hooks:
            await hook(req.app_id, function_id, fn, False)
        return api_pb2.FunctionPrecreateResponse(
            function_id=function_id, handle_metadata=handle_metadata(fn, req.app_id)
        )

    async def create(self, req: api_pb2.FunctionCreateRequest) -> api_pb2.FunctionCreateResponse:
        if req.HasField("function"):
            fn = req.function
        elif req.HasField("function_data") and req.function_data.ranked_functions:
            fn = api_pb2.Function()
            ranked = sorted(req.function_data.ranked_functions, key=lambda r: r.rank)
            fn.CopyFrom(ranked[0].function)
            copy_common_fields(req.function_data, fn)
            if len(ranked) > 1:  # gpu=[...]: the worker takes the best one it can meet
                fn.experimental_options[gpu.FALLBACKS_KEY] = gpu.fallbacks_option([r.function for r in ranked[1:]])
        else:
            raise InvalidArgument("FunctionCreate needs a function definition")
        if not req.app_id:
            raise InvalidArgument("FunctionCreate needs an app_id")
        function_id = req.existing_function_id or new_id("fu")
        for hook in self.definition_hooks:
            await hook(req.app_id, function_id, fn, True)
        tag = fn.function_name
        rec = FunctionRecord(function_id, req.app_id, tag, fn.SerializeToString())
        await self.put(rec)
        data = function_data(fn)
        return api_pb2.FunctionCreateResponse(
            function_id=function_id, function=fn, handle_metadata=handle_metadata(fn, req.app_id), function_data=data
        )

    async def bind_params(self, req: api_pb2.FunctionBindParamsRequest) -> api_pb2.FunctionBindParamsResponse:
        parent = await self.record(req.function_id)
        options = req.function_options.SerializeToString() if req.HasField("function_options") else b""
        existing = await self._store.find_bound_function(parent.function_id, req.serialized_params, options)
        fn = api_pb2.Function.FromString(parent.definition)
        if req.HasField("function_options"):
            fn = apply_options(fn, req.function_options)
        if existing is None:
            existing = new_id("fu")
            rec = FunctionRecord(
                existing,
                parent.app_id,
                parent.tag,
                fn.SerializeToString(),
                parent.function_id,
                req.serialized_params,
                options,
            )
            await self.put(rec)
        return api_pb2.FunctionBindParamsResponse(
            bound_function_id=existing, handle_metadata=handle_metadata(fn, parent.app_id)
        )

    async def create_class(self, req: api_pb2.ClassCreateRequest) -> api_pb2.ClassCreateResponse:
        class_id = req.existing_class_id or new_id("cs")
        md = api_pb2.ClassHandleMetadata()
        await self._store.put_class(class_id, req.app_id, "", md.SerializeToString())
        return api_pb2.ClassCreateResponse(class_id=class_id, handle_metadata=md)

    async def class_metadata(self, class_id: str) -> api_pb2.ClassHandleMetadata:
        row = await self._store.get_class(class_id)
        if row is None:
            raise NotFound(f"Class {class_id} not found")
        md: api_pb2.ClassHandleMetadata = api_pb2.ClassHandleMetadata.FromString(row[1])
        return md

    async def by_id(self, function_id: str) -> api_pb2.FunctionGetByIdResponse:
        """A function or a variant by id (`modal function info fu-...`); a variant names its base."""
        rec = await self.record(function_id)
        fn = await self.definition(function_id)
        md = handle_metadata(fn, rec.app_id)
        md.base_function_id = rec.bound_from or ""
        return api_pb2.FunctionGetByIdResponse(function=function_data(fn), handle_metadata=md)
