"""Runs inside an Image.run_function() build container as `python /__berth/run_function.py`: loads the
builder function the way modal's container entrypoint does (import its module from the automounted
source, or unpickle a serialized one), calls it once with its (args, kwargs) and writes how it ended to
/__berth/result.json. It needs only the modal client that the container gets at /pkg."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback
from pathlib import Path
from typing import Any

INNER = Path("/__berth")


def _load(function_def: Any) -> Any:
    import modal
    from modal._serialization import deserialize
    from modal_proto import api_pb2

    if function_def.definition_type == api_pb2.Function.DEFINITION_TYPE_SERIALIZED:
        return deserialize(function_def.function_serialized, None)
    module = importlib.import_module(function_def.module_name)
    f = getattr(module, function_def.implementation_name or function_def.function_name)
    return f.get_raw_f() if isinstance(f, modal.Function) else f


async def _drain(gen: Any) -> None:
    async for _ in gen:
        pass


def _call(f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    result = f(*args, **kwargs)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    elif inspect.isasyncgen(result):
        asyncio.run(_drain(result))
    elif inspect.isgenerator(result):
        for _ in result:
            pass


def main() -> int:
    # The app's own modules are mounted, not part of the image: keep their bytecode out of the layer.
    sys.dont_write_bytecode = True
    result = INNER / "result.json"
    try:
        from modal._serialization import deserialize_data_format
        from modal_proto import api_pb2

        function_def = api_pb2.Function.FromString((INNER / "function.bin").read_bytes())
        given = api_pb2.FunctionInput.FromString((INNER / "input.bin").read_bytes())
        args, kwargs = ((), {})
        if given.args:
            args, kwargs = deserialize_data_format(given.args, given.data_format, None)
        _call(_load(function_def), tuple(args), dict(kwargs))
    except Exception as exc:
        sys.stdout.flush()
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:  # start at the user's code
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        result.write_text(json.dumps({"exception": f"{type(exc).__name__}: {exc}", "traceback": text}))
        return 1
    sys.stdout.flush()
    result.write_text(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
