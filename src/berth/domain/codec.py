"""JSON for the records that cross the worker port (TaskSpec, ImageBuildSpec, ImageInfo, ...), driven by
their type hints: bytes and protobuf messages travel as base64, Paths as strings, tuples as lists."""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message

T = TypeVar("T")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def encode(value: Any) -> Any:
    """A dataclass (or anything inside one) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Message):
        return base64.b64encode(value.SerializeToString()).decode()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Any) -> T:
    """The inverse of `encode` for a dataclass type; ValueError when the data does not fit."""
    return typing.cast(T, _decode(cls, data))


def _decode(hint: Any, data: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), data)
    if origin is list:
        return [_decode(args[0], v) for v in _list(data)]
    if origin is tuple:
        items = _list(data)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in items)
        return tuple(_decode(a, v) for a, v in zip(args, items, strict=True))
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        return {_decode(args[0], k): _decode(args[1], v) for k, v in data.items()}
    return _decode_leaf(hint, data)


def _decode_leaf(hint: Any, data: Any) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {hint.__name__}")
        hints = _hints(hint)
        fields = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{k: _decode(hints[k], v) for k, v in data.items() if k in fields})
    if isinstance(hint, type) and issubclass(hint, Message):
        message: Message = hint.FromString(base64.b64decode(data))  # type: ignore[attr-defined]
        return message
    if hint is bytes:
        return base64.b64decode(data)
    if hint is Path:
        return Path(data)
    if hint is float and isinstance(data, int):
        return float(data)
    if hint in (str, int, float, bool) and not isinstance(data, hint):
        raise ValueError(f"expected {hint.__name__}, got {type(data).__name__}")
    return data


def _list(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise ValueError(f"expected a list, got {type(data).__name__}")
    return data
