"""The server's Prometheus metrics (`/metrics` on its HTTP port), in one registry per server so that several
servers in one process (tests) never share counters.

Counters and histograms move where things happen: every RPC (the chain in api/chain.py), every input that
finishes (services/inputs.py), every container started and its first input (scheduling), every image build.
Gauges of the present state (queue depth, containers by state, worker capacity) are set just before each
scrape (scheduling/gauges.py). Labels carry ids and names only, never arguments, outputs or secrets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: from a warm round trip (ms) to a long call or a cold image build.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
_BUILD_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rpc_requests = Counter(
            "berth_rpc_requests", "gRPC requests served, by method and status code", ["method", "code"], registry=r
        )
        self.rpc_duration = Histogram(
            "berth_rpc_duration_seconds",
            "Time to serve a gRPC request",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inputs_finished = Counter(
            "berth_inputs_finished",
            "Inputs finished, by function and result status",
            ["function_id", "function", "status"],
            registry=r,
        )
        self.call_latency = Histogram(
            "berth_call_latency_seconds",
            "Time from an input's enqueue to its result, by function",
            ["function_id", "function"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cold_starts = Counter(
            "berth_cold_starts", "Containers started, by function", ["function_id", "function"], registry=r
        )
        self.cold_start_duration = Histogram(
            "berth_cold_start_duration_seconds",
            "Time from a container's creation to its first input, by function",
            ["function_id", "function"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.image_builds = Histogram(
            "berth_image_build_duration_seconds",
            "Image build durations, by result",
            ["result"],
            buckets=_BUILD_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "berth_queue_depth", "Inputs waiting for a container, by function", ["function_id", "function"], registry=r
        )
        self.containers = Gauge("berth_containers", "Containers by state", ["state"], registry=r)
        self.worker_slots = Gauge("berth_worker_slots", "Container slots per worker", ["worker", "kind"], registry=r)
        self.worker_cpu = Gauge("berth_worker_cpu_cores", "CPU cores per worker", ["worker", "kind"], registry=r)
        self.worker_memory = Gauge("berth_worker_memory_bytes", "Memory per worker", ["worker", "kind"], registry=r)

    def rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_requests.labels(method, code).inc()
        self.rpc_duration.labels(method).observe(seconds)

    def input_finished(self, function_id: str, function: str, status: str, latency_s: float) -> None:
        self.inputs_finished.labels(function_id, function, status).inc()
        self.call_latency.labels(function_id, function).observe(max(0.0, latency_s))

    def container_started(self, function_id: str, function: str) -> None:
        self.cold_starts.labels(function_id, function).inc()

    def first_input(self, function_id: str, function: str, since_created_s: float) -> None:
        self.cold_start_duration.labels(function_id, function).observe(max(0.0, since_created_s))

    def image_built(self, ok: bool, seconds: float) -> None:
        self.image_builds.labels("success" if ok else "failure").observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
