"""The backend every contract test runs on: each test runs once per backend, against stores opened the
way a server opens them (berth.store.factory.open_stores). The engines' fixtures come from the
`pytest_plugins` list in tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from berth.config import Settings
from berth.store.factory import Stores, open_stores

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    return Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[Stores]:
    opened = await open_stores(settings)
    yield opened
    await opened.close()


@pytest.fixture
async def replica(settings: Settings) -> AsyncIterator[Stores]:
    """A second server's stores on the same database (for SQLite: a second connection to the same file)."""
    opened = await open_stores(settings)
    yield opened
    await opened.close()
