"""Versioned schema migrations of the SQL backends. Each backend has a folder of numbered files
(`0001_initial.sql`, `0002_...sql`), shipped as package data; a backend records the versions it applied
in a `schema_migrations` table and applies the missing ones in order, each in its own transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load(source: str | Path) -> list[Migration]:
    """The migrations of a backend ("sqlite", "postgres") or of a folder, in version order."""
    folder: Traversable | Path = resources.files(__package__).joinpath(source) if isinstance(source, str) else source
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a version in {folder}: {versions}")
    return found


def latest(source: str | Path) -> int:
    return max((m.version for m in load(source)), default=0)
