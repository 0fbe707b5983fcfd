"""Dashboard sign-in with time passed in: a link works once and only before it expires, a session ends when it
expires or its token is revoked, and a scoped token's viewer sees only its environment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from berth.services.accounts import AccountService
from berth.services.dashboard_access import LINK_TTL_S, SESSION_TTL_S, DashboardAccess
from berth.store.sqlite import SqliteStore
from berth.store.sqlite.deployments import DeploymentStore


class StepClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[DashboardAccess, AccountService, StepClock]]:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    clock = StepClock()
    accounts = AccountService(store, DeploymentStore(store.connection), clock)
    yield DashboardAccess(store, accounts, clock), accounts, clock
    await store.close()


async def test_a_link_signs_in_once(parts: tuple[DashboardAccess, AccountService, StepClock]) -> None:
    access, _, _ = parts
    token_id, code = await access.create_link()
    session = await access.redeem(code)
    assert session is not None
    viewer = await access.viewer(session)
    assert viewer is not None and viewer.token_id == token_id and viewer.scope == ""
    assert await access.redeem(code) is None


async def test_a_link_expires_unused(parts: tuple[DashboardAccess, AccountService, StepClock]) -> None:
    access, _, clock = parts
    _, code = await access.create_link()
    clock.t += LINK_TTL_S + 1
    assert await access.redeem(code) is None


async def test_a_session_ends_when_it_expires(parts: tuple[DashboardAccess, AccountService, StepClock]) -> None:
    access, accounts, clock = parts
    token_id, secret = await accounts.create_token()
    session = await access.sign_in(token_id, secret)
    assert session is not None and await access.viewer(session) is not None
    clock.t += SESSION_TTL_S + 1
    assert await access.viewer(session) is None


async def test_revoking_the_token_ends_its_sessions_and_unused_links(
    parts: tuple[DashboardAccess, AccountService, StepClock],
) -> None:
    access, accounts, _ = parts
    token_id, code = await access.create_link()
    unused_token, unused = await access.create_link()
    _, other = await access.create_link()
    session = await access.redeem(code)
    assert session is not None
    await accounts.revoke_token(token_id)
    await accounts.revoke_token(unused_token)
    assert await access.viewer(session) is None
    assert await access.redeem(unused) is None
    assert await access.redeem(other) is not None  # another link has its own token: still valid


async def test_a_wrong_secret_or_signed_out_session_sees_nothing(
    parts: tuple[DashboardAccess, AccountService, StepClock],
) -> None:
    access, accounts, _ = parts
    token_id, secret = await accounts.create_token()
    assert await access.sign_in(token_id, "wrong") is None
    assert await access.viewer("") is None and await access.viewer("made-up") is None
    session = await access.sign_in(token_id, secret)
    assert session is not None
    await access.sign_out(session)
    assert await access.viewer(session) is None


async def test_a_scoped_token_sees_only_its_environment(
    parts: tuple[DashboardAccess, AccountService, StepClock],
) -> None:
    access, accounts, _ = parts
    await accounts.create_environment("dev")
    _, code = await access.create_link("dev")
    session = await access.redeem(code)
    assert session is not None
    viewer = await access.viewer(session)
    assert viewer is not None and viewer.may_see("dev") and not viewer.may_see("main")
