"""A real `berth up` on PostgreSQL (BERTH_DATABASE_URL) runs an app with the stock `modal run`, and its
state lands in that database, not in a SQLite file. A database that is down stops `berth up` with an
error that names it without the password."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg

from berth.devservices.postgres import free_port
from tests.e2e.conftest import BIN, modal, start_server, stop_server


async def _count(url: str, table: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


def test_modal_run_works_against_a_server_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", extra_env={"BERTH_DATABASE_URL": postgres_url})
    try:
        run = modal(server, "run", "basics.py", "--n", "6", "--label", "pg")
        assert run.returncode == 0, run.output + server.log()
        assert "remote=36" in run.stdout and "label=pg" in run.stdout
    finally:
        assert stop_server(server) == 0, server.log()
    assert not (tmp_path / "data" / "berth.db").exists()
    for table in ("apps", "functions", "calls", "inputs", "tasks", "logs"):
        assert asyncio.run(_count(postgres_url, table)) > 0, table


def test_berth_up_names_a_database_that_is_down_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://berth:s3cret-pw@127.0.0.1:{free_port()}/berth"
    proc = subprocess.run(
        [BIN / "berth", "up", "--data-dir", tmp_path / "data", "--port", str(free_port()), "--runtime", "process"],
        env={"PATH": str(BIN) + ":/usr/bin:/bin", "BERTH_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "berth: cannot connect to PostgreSQL at postgresql://berth:***@127.0.0.1" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
