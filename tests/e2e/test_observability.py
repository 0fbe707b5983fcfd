"""The stock CLI's observability commands against a real server: `modal function info|calls|stats|variants|
metrics`, `modal app info|stats`, `modal container logs -f`, and `FunctionCall.get_call_graph()`. Each reads
what the calls below really did: three successful calls of `square`, one failed call of `broken`, two
variants of `Scaler`, and a `fan_out` whose container maps `cube`."""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import APPS, BIN, BerthServer, modal, sdk, wait_for

SECRET_VALUE = f"never-in-metrics-{secrets.token_hex(8)}"


@dataclass
class Observed:
    name: str
    fan_out_call: str


def _json(berth: BerthServer, *args: str) -> Any:
    run = modal(berth, *args, "--json", timeout=120)
    assert run.returncode == 0, run.output
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def observed(berth: BerthServer) -> Observed:
    name = f"e2e-observed-{secrets.token_hex(3)}"
    secret = modal(berth, "secret", "create", "--force", "e2e-observed-secret", f"OBSERVED_TOKEN={SECRET_VALUE}")
    assert secret.returncode == 0, secret.output
    run = modal(berth, "deploy", str(APPS / "observed.py"), "--name", name, timeout=180)
    assert run.returncode == 0, run.output
    out = sdk(
        berth,
        f"""
        import modal
        square = modal.Function.from_name({name!r}, "square")
        print([square.remote(i) for i in (2, 3, 4)])
        try:
            modal.Function.from_name({name!r}, "broken").remote(7)
        except ValueError as exc:
            print("FAILED", exc)
        scaler = modal.Cls.from_name({name!r}, "Scaler")
        print(scaler(factor=3).scale.remote(2), scaler(factor=5).scale.remote(2))
        call = modal.Function.from_name({name!r}, "fan_out").spawn(3)
        print("SUM", call.get())
        print("CALL", call.object_id)
        """,
    )
    assert "[4, 9, 16]" in out and "FAILED broken on purpose: 7" in out and "6 10" in out and "SUM 9" in out
    call_id = next(line.split()[1] for line in out.splitlines() if line.startswith("CALL "))
    return Observed(name, call_id)


def test_function_calls_lists_each_input_with_its_container_duration_and_status(
    berth: BerthServer, observed: Observed
) -> None:
    calls = _json(berth, "function", "calls", f"{observed.name}/square")
    assert len(calls) == 3
    assert {c["status"] for c in calls} == {"success"}
    assert all(c["container_id"].startswith("ta-") for c in calls)
    assert all(c["execution_time_seconds"] >= 0.2 for c in calls)  # square sleeps 0.2 s
    enqueued = [c["enqueued_at"] for c in calls]
    assert enqueued == sorted(enqueued, reverse=True)  # --tail: newest first

    failed = _json(berth, "function", "calls", f"{observed.name}/broken")
    assert [c["status"] for c in failed] == ["failure"]

    ranged = _json(berth, "function", "calls", f"{observed.name}/square", "--since", "1h")
    assert sorted(c["function_call_id"] for c in ranged) == sorted(c["function_call_id"] for c in calls)

    table = modal(berth, "function", "calls", f"{observed.name}/broken", env={"COLUMNS": "200"})
    assert table.returncode == 0, table.output
    assert "Failure" in table.stdout and "Displaying 1 row" in table.stdout


def test_function_stats_count_successes_failures_and_containers(berth: BerthServer, observed: Observed) -> None:
    stats = _json(berth, "function", "stats", f"{observed.name}/square")
    assert (stats["input_success_count"], stats["input_failure_count"], stats["input_timeout_count"]) == (3, 0, 0)
    assert stats["input_running_at_end_count"] == 0
    execution = stats["input_percentile_stats"]["Execution time (s)"]["percentiles"]
    assert 0.2 <= execution["p50"] <= execution["p99"] < 10
    assert stats["container_total_count"] >= 1 and stats["container_error_count"] == 0
    assert "Startup time (s)" in stats["container_percentile_stats"]

    broken = _json(berth, "function", "stats", f"{observed.name}/broken")
    assert (broken["input_success_count"], broken["input_failure_count"]) == (0, 1)

    text = modal(berth, "function", "stats", f"{observed.name}/broken", "--no-color")
    assert text.returncode == 0, text.output
    assert "1 failed (100.0%)" in text.stdout


def test_function_info_shows_the_autoscaler_settings_by_name_and_by_id(berth: BerthServer, observed: Observed) -> None:
    info = _json(berth, "function", "info", f"{observed.name}/square")
    assert info["name"] == "square"
    assert (info["max_containers"], info["scaledown_window"]) == (3, 42)
    by_id = _json(berth, "function", "info", info["object_id"])
    assert by_id["object_id"] == info["object_id"] and by_id["max_containers"] == 3


def test_function_variants_lists_the_parameterized_instances(berth: BerthServer, observed: Observed) -> None:
    variants = _json(berth, "function", "variants", f"{observed.name}/Scaler.*")
    assert sorted(v["parameters"]["factor"] for v in variants) == [3, 5]
    assert len({v["function_id"] for v in variants}) == 2


def test_function_metrics_preview_and_export_the_calls(berth: BerthServer, observed: Observed) -> None:
    preview = modal(berth, "function", "metrics", f"{observed.name}/square", env={"COLUMNS": "200"})
    assert preview.returncode == 0, preview.output
    assert "calls, containers" in preview.stdout and "calls_enqueued_sum" in preview.stdout

    # Buckets end at the last whole one before --until, as Modal's do: ask up to two minutes from now.
    until = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    export = _json(berth, "function", "metrics", f"{observed.name}/square", "--group", "calls", "--until", until)
    series = {s["name"]: s for s in export["series"]}
    total = sum(p["value"] or 0 for p in series["calls_enqueued_sum"]["points"])
    succeeded = sum(p["value"] or 0 for p in series["calls_succeeded_sum"]["points"])
    assert (total, succeeded) == (3, 3)
    assert max(p["value"] or 0 for p in series["execution_time_max"]["points"]) >= 0.2

    unknown = modal(berth, "function", "metrics", f"{observed.name}/square", "--group", "gpu", "--json")
    assert unknown.returncode != 0 and "gpu" in unknown.output


def test_app_info_lists_the_functions_and_app_stats_counts_their_calls(berth: BerthServer, observed: Observed) -> None:
    info = _json(berth, "app", "info", observed.name)
    assert info["lifecycle"]["state"] == "deployed"
    assert {"square", "broken", "cube", "fan_out", "ticker"} <= set(info["functions"])

    stats = _json(berth, "app", "stats", observed.name)
    by_name = stats["functions"]["by_name"]
    assert by_name["square"]["counts"]["calls"] == {"total": 3, "succeeded": 3, "failed": 0}
    assert by_name["broken"]["counts"]["calls"] == {"total": 1, "succeeded": 0, "failed": 1}
    assert by_name["cube"]["counts"]["calls"]["total"] == 3
    assert stats["deployment_count"] == 1


def test_call_graph_links_the_calls_a_container_made_to_its_input(berth: BerthServer, observed: Observed) -> None:
    out = sdk(
        berth,
        f"""
        import json, modal
        graph = modal.FunctionCall.from_id({observed.fan_out_call!r}).get_call_graph()
        def tree(node):
            return {{"fn": node.function_name, "status": node.status.name, "task": node.task_id,
                     "children": [tree(c) for c in node.children]}}
        print(json.dumps([tree(root) for root in graph]))
        stats = modal.Function.from_name({observed.name!r}, "square").get_current_stats()
        print(json.dumps({{"backlog": stats.backlog, "runners": stats.num_total_runners}}))
        """,
    )
    lines = out.strip().splitlines()
    roots = json.loads(lines[-2])
    assert [(r["fn"], r["status"]) for r in roots] == [("fan_out", "SUCCESS")]
    children = roots[0]["children"]
    assert [(c["fn"], c["status"]) for c in children] == [("cube", "SUCCESS")] * 3
    assert all(c["task"].startswith("ta-") for c in children)
    assert json.loads(lines[-1])["backlog"] == 0


def test_container_logs_follow_streams_that_container_by_its_id(berth: BerthServer, observed: Observed) -> None:
    # The fixture's containers (square keeps its for 42 s) belong to the same app, so the ticker's container
    # is the one that was not there before the call.
    before = {c["container_id"] for c in _json(berth, "container", "list")}
    caller = subprocess.Popen(
        [str(BIN / "python"), "-c", f"import modal; modal.Function.from_name({observed.name!r}, 'ticker').remote(40)"],
        env=berth.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        task_ids: list[str] = []

        def ticker_container() -> bool:
            listed = _json(berth, "container", "list")
            task_ids[:] = [
                c["container_id"] for c in listed if c["app_name"] == observed.name and c["container_id"] not in before
            ]
            return bool(task_ids)

        wait_for(ticker_container, "the ticker's container", timeout=120)
        follower = subprocess.Popen(
            [str(BIN / "modal"), "container", "logs", "-f", task_ids[0]],
            env=berth.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            seen: list[str] = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not any(line.startswith("tick 3") for line in seen):
                try:
                    seen.append(lines.get(timeout=1))
                except queue.Empty:
                    if follower.poll() is not None and lines.empty():
                        break
            assert any(line.startswith("tick 3") for line in seen), "".join(seen)
            assert not any("not found" in line for line in seen)
        finally:
            follower.terminate()
            follower.wait(timeout=30)
    finally:
        caller.terminate()
        caller.wait(timeout=30)


def test_unknown_ids_are_not_found_and_the_server_keeps_serving(berth: BerthServer, observed: Observed) -> None:
    missing_fn = "fu-" + "0" * 22
    for args in (
        ("function", "stats", missing_fn),
        ("function", "calls", missing_fn),
        ("function", "info", missing_fn),
        ("app", "stats", "ap-" + "0" * 22),
        ("container", "logs", "-f", "ta-" + "0" * 22),
    ):
        run = modal(berth, *args, timeout=60)
        assert run.returncode != 0, args
        assert "not found" in run.output.lower(), (args, run.output)
    out = sdk(
        berth,
        """
        import modal
        from modal.exception import NotFoundError
        try:
            modal.FunctionCall.from_id("fc-" + "0" * 22).get_call_graph()
        except NotFoundError as exc:
            print("NOT FOUND", exc)
        """,
    )
    assert "NOT FOUND" in out
    assert _json(berth, "function", "stats", f"{observed.name}/square")["input_success_count"] == 3


def _scrape(berth: BerthServer) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """/metrics as text, and its samples by name and labels (parsed as Prometheus would)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{berth.port + 1}/metrics", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_metrics_count_rpcs_calls_and_containers_and_show_no_secret(berth: BerthServer, observed: Observed) -> None:
    _, before = _scrape(berth)
    out = sdk(
        berth,
        f"""
        import modal
        print(modal.Function.from_name({observed.name!r}, "square").remote(5))
        print(modal.Function.from_name({observed.name!r}, "peek_secret").remote())
        """,
    )
    assert out.split() == ["25", str(len(SECRET_VALUE))]
    text, after = _scrape(berth)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("berth_inputs_finished_total", function="square", status="success") == 1
    assert moved("berth_inputs_finished_total", function="peek_secret", status="success") == 1
    # The fixture's failed call of `broken`, at least: the metric is labelled by function name, and other apps on
    # this session's server (the dashboard's) have a `broken` function too.
    assert _value(after, "berth_inputs_finished_total", function="broken", status="failure") >= 1
    assert moved("berth_call_latency_seconds_count", function="square") == 1
    assert moved("berth_rpc_requests_total", method="FunctionMap", code="OK") == 2
    assert moved("berth_rpc_requests_total", method="FunctionGet", code="OK") >= 2
    assert moved("berth_cold_starts_total", function="peek_secret") == 1
    assert moved("berth_cold_start_duration_seconds_count", function="peek_secret") == 1
    assert _value(after, "berth_worker_slots", kind="total") > 0
    assert _value(after, "berth_worker_memory_bytes", kind="total") > 0
    assert _value(after, "berth_containers", state="running") >= 1
    assert "berth_queue_depth" in text and "berth_image_build_duration_seconds" in text

    # An unserved RPC and an unknown id count as errors, by code.
    modal(berth, "function", "stats", "fu-" + "1" * 22, timeout=60)
    _, errors = _scrape(berth)
    assert _value(errors, "berth_rpc_requests_total", method="FunctionGetById", code="NOT_FOUND") >= 1

    assert SECRET_VALUE not in text
    assert berth.env["MODAL_TOKEN_SECRET"] not in text
