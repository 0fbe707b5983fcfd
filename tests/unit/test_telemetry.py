"""The server's metrics: the chain counts every request by method and code (refused ones included), each
server has its own registry, and the Grafana dashboard in deploy/grafana queries only metrics and labels
that a server exports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from grpclib.exceptions import GRPCError
from prometheus_client.parser import text_string_to_metric_families

from berth.api.chain import build_mapping
from berth.server import generated_handlers
from berth.telemetry import Telemetry

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "berth.json"


class _Auth:
    async def client(self, token_id: str, token_secret: str) -> str | None:
        return "" if token_secret == "good" else None

    async def container(self, task_id: str, secret: str) -> bool:
        return False


class _Stream:
    def __init__(self, secret: str) -> None:
        self.metadata = {"x-modal-token-id": "tk-1", "x-modal-token-secret": secret}


class _OneRpc:
    async def AppHeartbeat(self, req: Any, caller: Any) -> Any:
        raise AssertionError("not reached: the stream has no request")


def _samples(telemetry: Telemetry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    families = text_string_to_metric_families(telemetry.render().decode())
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def _exercised() -> Telemetry:
    """A registry in which every metric has at least one sample."""
    t = Telemetry()
    t.rpc("AppHeartbeat", "OK", 0.01)
    t.input_finished("fu-1", "square", "success", 0.5)
    t.container_started("fu-1", "square")
    t.first_input("fu-1", "square", 1.0)
    t.image_built(True, 12.0)
    t.queue_depth.labels("fu-1", "square").set(3)
    t.containers.labels("running").set(1)
    for gauge in (t.worker_slots, t.worker_cpu, t.worker_memory):
        gauge.labels("local", "total").set(1)
    return t


def test_the_chain_counts_refused_and_unserved_requests_by_code() -> None:
    telemetry = Telemetry()
    mapping = build_mapping(generated_handlers(), _OneRpc(), _Auth(), 1024, telemetry.rpc)
    for path, secret in (("AppHeartbeat", "bad"), ("SandboxCreate", "good"), ("SandboxCreate", "good")):
        with pytest.raises(GRPCError):
            asyncio.run(mapping[f"/modal.client.ModalClient/{path}"].func(_Stream(secret)))
    samples = _samples(telemetry)
    total = "berth_rpc_requests_total"
    assert samples[(total, frozenset({("method", "AppHeartbeat"), ("code", "UNAUTHENTICATED")}))] == 1
    assert samples[(total, frozenset({("method", "SandboxCreate"), ("code", "UNIMPLEMENTED")}))] == 2
    assert samples[("berth_rpc_duration_seconds_count", frozenset({("method", "SandboxCreate")}))] == 2


def test_each_server_has_its_own_registry() -> None:
    one, two = Telemetry(), Telemetry()
    one.container_started("fu-1", "f")
    key = ("berth_cold_starts_total", frozenset({("function_id", "fu-1"), ("function", "f")}))
    assert _samples(one)[key] == 1
    assert key not in _samples(two)


def test_the_grafana_dashboard_queries_only_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["panels"]
    exported: dict[str, set[str]] = {}
    for name, labels in _samples(_exercised()):
        exported.setdefault(name, {"job"}).update(k for k, _ in labels)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    queried: set[str] = set()
    for expr in exprs:
        names = set(re.findall(r"\bberth_[a-z_]+", expr))
        assert names, expr
        unknown = names - set(exported)
        assert not unknown, f"{expr} names metrics no server exports: {unknown}"
        queried |= names
        for group in re.findall(r"by \(([^)]*)\)", expr):
            labels = {label.strip() for label in group.split(",")}
            assert all(labels <= exported[n] for n in names), f"{expr} groups by labels {labels} not on {names}"
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in queried}
    for required in ("berth_queue_depth", "berth_call_latency_seconds", "berth_containers", "berth_cold_starts"):
        assert required in families
    for required in ("berth_image_build_duration_seconds", "berth_worker_slots", "berth_rpc_requests"):
        assert required in families
