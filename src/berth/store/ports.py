"""The storage ports: one small Protocol per aggregate. Services and scheduling depend on these and never
on a backend; `store/sqlite` (the embedded default) and the scale-out backends implement them, and the
contract suite in tests/contract runs the same checks against every implementation.

Compare-and-set is part of the contract, not an accident of a driver that happens not to yield:
- `InputStore.claim_inputs` takes a row only while it is still queued (two claimers never get one input);
- `InputStore.requeue_input` and `finish_input` change a row only while it is still leased by the
  holder that was read (a late or foreign writer changes nothing and is told so);
- `ScheduleStore.record_tick` claims a tick once, whichever replica asks first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from berth.store.governance_records import AuditEntry, Quota, UsageRow
from berth.store.records import (
    AppRecord,
    CallRecord,
    DeploymentRecord,
    Endpoint,
    FunctionRecord,
    InputLease,
    InputRecord,
    InputState,
    OutputRecord,
    ReplicaRecord,
    ScheduleRow,
    StateObject,
    TaskOutcome,
    TaskRecord,
    TickRow,
    TokenRecord,
)


class TokenStore(Protocol):
    """Client tokens, stored as digests, optionally scoped to one environment."""

    async def add_token(self, token_id: str, secret_hash: str, environment: str | None, now: float) -> None: ...
    async def add_service_user(
        self, token_id: str, secret_hash: str, name: str, now: float, expires_at: float | None
    ) -> bool:
        """A named token; False when a live token already has that name."""
        ...

    async def token(self, token_id: str, now: float) -> tuple[str, str] | None:
        """(secret hash, environment scope or '') of a token that is live now: not revoked, disabled or expired."""
        ...

    async def tokens(self) -> list[tuple[str, str, float, float | None]]: ...
    async def token_records(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""
        ...

    async def revoke_token(self, token_id: str, now: float) -> bool: ...
    async def set_token_disabled(self, token_id: str, disabled_at: float | None) -> bool:
        """Disables (a time) or enables (None) a token that is not revoked; False if there is none."""
        ...


class DashboardGrantStore(Protocol):
    """Dashboard sign-ins, by the digest of their secret: one-time links and sessions ('link' | 'session'),
    each acting as one client token."""

    async def add_dashboard_grant(self, digest: str, kind: str, token_id: str, expires_at: float) -> None: ...
    async def redeem_dashboard_link(self, digest: str, now: float) -> str | None:
        """The token of an unused, unexpired link, marking it used (atomically: a link works once); else None."""
        ...

    async def dashboard_session(self, digest: str, now: float) -> str | None:
        """The token of an unexpired session, or None."""
        ...

    async def end_dashboard_session(self, digest: str) -> None: ...


class EnvironmentStore(Protocol):
    async def add_environment(self, name: str, now: float) -> bool: ...
    async def environments(self) -> list[tuple[str, float]]: ...
    async def delete_environment(self, name: str) -> bool: ...
    async def rename_environment(self, old: str, new: str) -> bool:
        """Renames an environment and moves everything in it (apps, tokens, named objects, roles) along, in
        one transaction; False when `old` does not exist. `new` must not exist."""
        ...


class AppStore(Protocol):
    async def put_app(self, app: AppRecord) -> None: ...
    async def get_app(self, app_id: str) -> AppRecord | None: ...
    async def set_app_state(self, app_id: str, state: int, stopped_at: float | None = None) -> None: ...
    async def delete_app(self, app_id: str) -> None: ...
    async def app_heartbeat(self, app_id: str, now: float) -> None:
        """The app's client is alive at `now`; any replica may have received the heartbeat."""
        ...

    async def silent_apps(self, before: float) -> list[str]:
        """Ephemeral and initializing apps whose client last beat (or, never beating, was created) before `before`."""
        ...

    async def touch_live_apps(self, now: float) -> None:
        """Give every ephemeral and initializing app a fresh heartbeat (its client gets a window after a restart)."""
        ...


class DeploymentStore(Protocol):
    """Apps by name and the deployment history of each."""

    async def deployed_app(self, environment: str, name: str) -> AppRecord | None: ...
    async def last_app_named(self, environment: str, name: str) -> AppRecord | None: ...
    async def list_apps(self, environment: str) -> list[AppRecord]: ...
    async def running_apps(self) -> list[AppRecord]: ...
    async def add_deployment(self, rec: DeploymentRecord) -> None: ...
    async def deployments(self, app_id: str) -> list[DeploymentRecord]: ...


class LogStore(Protocol):
    def add_log_now(self, app_id: str, now: float, batch: bytes) -> None:
        """Called from the log pump, which must not reorder entries: an implementation that cannot
        write synchronously queues the batch in order and writes it soon after."""

    async def logs_between(self, app_id: str, since: float, until: float, limit: int) -> list[tuple[float, bytes]]: ...
    async def log_times(self, app_id: str, since: float, until: float) -> list[float]: ...


class FunctionStore(Protocol):
    async def put_function(self, fn: FunctionRecord) -> None: ...
    async def get_function(self, function_id: str) -> FunctionRecord | None: ...
    async def find_bound_function(self, parent_id: str, params: bytes, options: bytes) -> str | None: ...
    async def put_class(self, class_id: str, app_id: str, tag: str, metadata: bytes) -> None: ...
    async def get_class(self, class_id: str) -> tuple[str, bytes] | None: ...
    async def bound_functions(self, parent_id: str) -> list[FunctionRecord]:
        """The variants of a function (bound parameters or options), newest first."""
        ...


class ObjectStore(Protocol):
    """Generic objects addressed by id or content key: mounts, images, app layouts."""

    async def put_object(
        self,
        kind: str,
        object_id: str,
        body: bytes,
        now: float,
        *,
        key: str | None = None,
        name: str | None = None,
        namespace: int = 0,
        environment: str = "",
        app_id: str | None = None,
    ) -> None: ...
    async def get_object(self, kind: str, object_id: str) -> bytes | None: ...
    async def object_by_key(self, kind: str, key: str) -> tuple[str, bytes] | None: ...


class CallStore(Protocol):
    """Function calls, their outputs and their data channels."""

    async def create_call(self, call: CallRecord) -> None: ...
    async def get_call(self, call_id: str) -> CallRecord | None: ...
    async def finish_call_inputs(self, call_id: str, num_inputs: int | None = None) -> None: ...
    async def open_inputs_of_call(self, call_id: str) -> list[InputState]: ...
    async def unfinished_count(self, call_id: str) -> int: ...
    async def outputs_after(
        self, call_id: str, cursor: int, limit: int, idx_range: tuple[int, int] | None = None
    ) -> list[OutputRecord]:
        """Outputs after `cursor` in commit order; with `idx_range` (inclusive), only those inputs' outputs."""
        ...

    async def delete_outputs(self, seqs: Sequence[int]) -> None: ...
    async def put_chunks(self, call_id: str, direction: str, chunks: Iterable[tuple[int, bytes]]) -> None: ...
    async def chunks_after(self, call_id: str, direction: str, last_index: int) -> list[tuple[int, bytes]]: ...
    async def drop_call_data(self, call_id: str) -> None: ...
    async def prune(self, before: float) -> int: ...


class InputStore(Protocol):
    """Queued inputs and their leases (holder, deadline, attempt)."""

    async def add_inputs(
        self, call_id: str, function_id: str, items: Iterable[tuple[str, int, str, bytes]], now: float
    ) -> None: ...
    async def claim_inputs(
        self, function_id: str, holder: str, limit: int, now: float, timeout_s: float | None
    ) -> list[InputLease]: ...
    async def restart_leases(self, holder: str, input_ids: Sequence[str], now: float, deadline: float | None) -> None:
        """Start again, at `now` and with `deadline`, the leases `holder` still holds on these inputs. A deadline of
        None: they wait, prefetched, in the container, and have not started (nothing times them out yet)."""
        ...

    async def get_input(self, input_id: str) -> InputState | None: ...
    async def inputs_held_by(self, holder: str) -> list[InputState]: ...
    async def requeue_input(self, input_id: str, attempt: int, not_before: float, holder: str | None = None) -> bool:
        """Put an input back in the queue. With `holder` given, only while that holder still leases it."""
        ...

    async def finish_input(
        self, input_id: str, holder: str | None, result: bytes, data_format: int, now: float, status: int = 0
    ) -> OutputRecord | None:
        """Mark the input done at `now` with `status` (the result's GenericStatus) and append its output."""
        ...

    async def finish_held_inputs(
        self, holder: str, outputs: Sequence[tuple[str, bytes, int, int]], now: float
    ) -> list[tuple[OutputRecord, float] | None]:
        """finish_input for several inputs `holder` holds, given as (input id, result, data format, status), in one
        transaction. For each: its output and when the input was enqueued, or None where `holder` no longer
        holds it (the output is dropped)."""
        ...

    async def queued_counts(self, now: float) -> dict[str, int]: ...
    async def has_future_inputs(self, now: float) -> float | None: ...
    async def expired_leases(self, now: float) -> list[InputState]: ...
    async def queued_inputs_of_function(self, function_id: str) -> list[InputState]: ...
    async def release_all_leases(self) -> int: ...
    async def request_cancel(self, input_id: str, holder: str, terminate: bool) -> bool:
        """Ask the container that holds a running input to cancel it (or to stop, with `terminate`); False when
        `holder` no longer holds it."""
        ...

    async def take_cancels(self, holder: str) -> list[tuple[str, bool]]:
        """The (input id, terminate) cancellations asked of `holder` for inputs it still holds, each once."""
        ...


class ActivityStore(Protocol):
    """What observability reads: the inputs, calls and containers of functions over a time window
    (kept as long as the retention period keeps calls and tasks)."""

    async def inputs_of_functions(
        self, function_ids: Sequence[str], since: float, until: float, limit: int, newest_first: bool
    ) -> list[InputRecord]:
        """Inputs enqueued in [since, until), at most `limit`, oldest or newest first."""
        ...

    async def inputs_of_calls(self, call_ids: Sequence[str]) -> list[InputRecord]: ...
    async def calls_made_by(self, input_ids: Sequence[str]) -> list[CallRecord]:
        """The calls whose parent is one of these inputs (made from inside their containers)."""
        ...

    async def tasks_of_functions(self, function_ids: Sequence[str], since: float, until: float) -> list[TaskOutcome]:
        """Containers alive at some point in [since, until): created before `until`, not ended before `since`."""
        ...


class TaskStore(Protocol):
    async def put_task(self, task: TaskRecord) -> None: ...
    async def end_task(
        self, task_id: str, state: str, now: float, result: bytes | None, exit_reason: str = ""
    ) -> None: ...
    async def set_task_result(self, task_id: str, result: bytes) -> None: ...
    async def get_task(self, task_id: str) -> TaskRecord | None: ...
    async def end_stale_tasks(self, now: float) -> None: ...
    async def open_tasks(self, function_id: str) -> int:
        """Tasks of the function not ended yet, whichever replica started them."""
        ...


class ReplicaStore(Protocol):
    """The server replicas sharing this database. A replica is alive while it beats; the tasks it started are
    recorded with its id (TaskRecord.replica_id), and when it stops beating their leases go back to the queue."""

    async def join_replica(self, replica: ReplicaRecord) -> None:
        """Register a replica, forgetting earlier incarnations of the same name (a restart names itself alike)."""
        ...

    async def replica_beat(self, replica_id: str, now: float, info: bytes) -> bool:
        """Mark the replica alive; False when it was declared dead meanwhile (its row is gone)."""
        ...

    async def leave_replica(self, replica_id: str) -> None: ...
    async def live_replicas(self, seen_after: float) -> list[ReplicaRecord]: ...
    async def release_orphans(self, seen_after: float, now: float) -> list[str]:
        """Forget replicas not seen after `seen_after`; then end every open task whose replica is gone and put
        the inputs those tasks held back in the queue, without counting an attempt. Returns the functions
        whose inputs went back."""
        ...


class SandboxIndexStore(Protocol):
    """The running sandboxes of every replica: names unique among an app's running sandboxes, listing, and
    terminate requests for the replica that runs one. A sandbox's own record (result, router, tags) is an
    object (ObjectStore); this holds only what the replicas must agree on."""

    async def add_sandbox(self, sandbox_id: str, app_id: str, name: str, now: float) -> str | None:
        """Register a running sandbox. None when added; when another running sandbox of the app holds `name`,
        nothing is added and that sandbox's id is returned."""
        ...

    async def end_sandbox(self, sandbox_id: str, now: float) -> None:
        """It is no longer running: gone from the listing, and its name is free."""
        ...

    async def running_sandboxes(self, app_id: str) -> list[str]:
        """Ids of the app's running sandboxes (every app's for ""), newest first."""
        ...

    async def running_sandbox_named(self, app_id: str, name: str) -> str | None: ...
    async def request_sandbox_stop(self, sandbox_id: str, now: float) -> bool:
        """Ask whichever replica runs it to terminate it; False when it is not running."""
        ...

    async def sandbox_stops_requested(self, sandbox_ids: Sequence[str]) -> list[str]:
        """Of these running sandboxes, those a terminate was requested for."""
        ...


class StateObjectStore(Protocol):
    """Named and ephemeral volumes, secrets, dicts and queues (the objects, not their contents)."""

    async def put(self, obj: StateObject) -> None: ...
    async def create(self, obj: StateObject) -> bool:
        """Stores a new object unless its id, or its name (of its kind, in its environment), is taken;
        returns whether it did. Unlike put, it never replaces what a concurrent writer stored."""
        ...

    async def get(self, kind: str, object_id: str) -> StateObject | None: ...
    async def by_name(self, kind: str, environment: str, name: str) -> StateObject | None: ...
    async def list_named(self, kind: str, environment: str, created_before: float, limit: int) -> list[StateObject]: ...
    async def set_body(self, object_id: str, body: bytes) -> None: ...
    async def set_body_if(self, object_id: str, expected: bytes | None, body: bytes) -> bool:
        """Compare-and-set: stores `body` only if the object's body is still `expected` (None: no body yet)."""
        ...

    async def rename(self, object_id: str, name: str) -> None: ...
    async def heartbeat(self, object_id: str, now: float) -> bool: ...
    async def delete(self, object_id: str) -> None: ...
    async def expired_ephemeral(self, kind: str, before: float) -> list[StateObject]: ...


class DictStore(Protocol):
    async def dict_get(self, dict_id: str, key: bytes) -> bytes | None: ...
    async def dict_put(
        self, dict_id: str, entries: Sequence[tuple[bytes, bytes]], now: float, only_new: bool
    ) -> bool: ...
    async def dict_pop(self, dict_id: str, key: bytes) -> bytes | None: ...
    async def dict_len(self, dict_id: str, cap: int) -> int: ...
    async def dict_clear(self, dict_id: str) -> None: ...
    async def dict_entries(self, dict_id: str) -> list[tuple[bytes, bytes]]: ...


class QueueStore(Protocol):
    async def queue_len(self, queue_id: str, partition: bytes | None) -> int: ...
    async def queue_push(
        self, queue_id: str, partition: bytes, values: Sequence[bytes], now: float, max_items: int, ttl_s: float
    ) -> bool: ...
    async def queue_expire(self, queue_id: str, now: float) -> None: ...
    async def queue_pop(self, queue_id: str, partition: bytes, n: int) -> list[bytes]: ...
    async def queue_items_after(
        self, queue_id: str, partition: bytes, after: int, n: int
    ) -> list[tuple[int, bytes]]: ...
    async def queue_clear(self, queue_id: str, partition: bytes | None) -> None: ...
    async def queue_stats(self, queue_id: str) -> tuple[int, int]: ...


class EndpointStore(Protocol):
    """Web endpoint URLs (one listening port each) and proxy-auth tokens."""

    async def endpoint_by_key(self, key: str) -> Endpoint | None: ...
    async def endpoint_by_port(self, port: int) -> Endpoint | None: ...
    async def endpoints(self) -> list[Endpoint]: ...
    async def put_endpoint(self, ep: Endpoint, now: float) -> None: ...
    async def move_endpoint(self, key: str, port: int) -> None: ...
    async def add_token(self, token_id: str, secret_hash: str, now: float) -> None: ...
    async def token_hash(self, token_id: str) -> str | None: ...
    async def tokens(self) -> list[tuple[str, float, float | None]]: ...
    async def revoke_token(self, token_id: str, now: float) -> bool: ...


class ScheduleStore(Protocol):
    async def schedule(self, function_id: str) -> ScheduleRow | None: ...
    async def put_schedule(self, row: ScheduleRow) -> None: ...
    async def delete_schedule(self, function_id: str) -> None: ...
    async def due_schedules(self, now: float) -> list[ScheduleRow]: ...
    async def earliest_tick(self) -> float | None: ...
    async def record_tick(self, tick: TickRow, next_tick: float) -> bool: ...
    async def pending_ticks(self) -> list[TickRow]: ...
    async def mark_fired(self, function_id: str, tick_at: float) -> None: ...
    async def prune_ticks(self, before: float) -> int: ...
    async def ticks(self, function_id: str) -> list[TickRow]: ...


class AutoscalerOverrideStore(Protocol):
    """Autoscaler settings changed at run time, one serialized api_pb2.AutoscalerConfiguration per function
    (the override settings and who set each). They outlive a restart; a redeploy deletes them."""

    async def put_autoscaler_override(self, function_id: str, configuration: bytes, now: float) -> None: ...
    async def autoscaler_overrides(self) -> dict[str, bytes]: ...
    async def delete_autoscaler_override(self, function_id: str) -> None: ...


class EnvironmentRoleStore(Protocol):
    """Roles assigned to tokens per environment ('contributor', 'viewer', 'no-access')."""

    async def set_environment_role(self, environment: str, token_id: str, role: str | None) -> None:
        """Assigns a role, or removes the assignment (role None) so the token's default applies."""
        ...

    async def environment_roles(self) -> list[tuple[str, str, str]]:
        """Every assignment as (environment, token id, role)."""
        ...


class CoreStore(
    AppStore,
    FunctionStore,
    ObjectStore,
    CallStore,
    InputStore,
    ActivityStore,
    TaskStore,
    TokenStore,
    DashboardGrantStore,
    ReplicaStore,
    SandboxIndexStore,
    AutoscalerOverrideStore,
    EnvironmentRoleStore,
    Protocol,
):
    """The aggregates a relational backend holds together."""

    async def close(self) -> None: ...


class HistoryStore(DeploymentStore, EnvironmentStore, LogStore, Protocol):
    """Deployments, environments and persisted logs."""


class StateStore(StateObjectStore, DictStore, QueueStore, Protocol):
    """State objects with the contents of dicts and queues."""


class WebStore(EndpointStore, ScheduleStore, Protocol):
    """The web front door's endpoints and tokens, and the schedule trigger's ticks."""


class BlobStore(Protocol):
    """Blob bodies (by blob id) and the content-addressed files of mounts (by sha256), local or remote.

    Every operation that may touch the network is async. Ids and hashes are checked first: a malformed
    one is InvalidArgument, never a path or a key. A missing body or file is NotFound; a store that
    cannot be reached is Unavailable, naming where it looked."""

    def new_blob_id(self) -> str: ...
    async def write_blob(self, blob_id: str, data: bytes) -> str:
        """Stores a blob body; returns its MD5 hex digest (the ETag clients check)."""
        ...

    async def read_blob(self, blob_id: str) -> bytes: ...
    async def has_blob(self, blob_id: str) -> bool: ...
    async def require_blob(self, blob_id: str) -> None: ...
    async def has_file(self, sha256_hex: str) -> bool: ...
    async def put_file(self, sha256_hex: str, data: bytes) -> None:
        """Stores a file under its sha256; content that does not hash to that name is InvalidArgument."""
        ...

    async def read_file(self, sha256_hex: str) -> bytes: ...
    async def local_file(self, sha256_hex: str) -> Path:
        """A path on this host holding the file: the stored file itself where the store is local, else
        a copy fetched once into a cache (written atomically, so a reader never sees half a file)."""
        ...

    @property
    def scratch_dir(self) -> Path:
        """A directory on this host for large temporary files (on disk, not a small tmpfs)."""
        ...


class GovernanceStore(Protocol):
    """Metered usage (per task and minute bucket), the rates it is priced at, app tags, the audit log and
    quotas. Usage is additive: adding a row for a (task, bucket) that exists adds to its integrals, so a
    worker may report a minute in several parts."""

    async def add_usage(self, rows: Sequence[UsageRow]) -> None: ...
    async def usage_between(self, start: float, end: float) -> list[UsageRow]:
        """Rows whose bucket starts in [start, end), oldest first."""
        ...

    async def set_rates(self, rates: dict[str, str]) -> None:
        """Sets these resources' rates (decimal strings); an empty string removes one."""
        ...

    async def rates(self) -> dict[str, str]: ...
    async def set_app_tags(self, app_id: str, tags: dict[str, str]) -> None:
        """Replaces the app's tags."""
        ...

    async def app_tags(self, app_id: str) -> dict[str, str]: ...
    async def append_audit(self, entry: AuditEntry) -> None: ...
    async def audit_entries(self, since: float, until: float, limit: int, before_seq: int = 0) -> list[AuditEntry]:
        """Entries with since <= at < until, newest first, at most `limit`; with before_seq, only those
        appended before that one (the next page)."""
        ...

    async def count_audit(self, since: float, until: float) -> int: ...
    async def set_quota(self, quota: Quota) -> None:
        """Sets a quota; a negative limit removes it."""
        ...

    async def quotas(self) -> list[Quota]: ...


@dataclass
class Stores:
    """One store per port group, as a server uses them (see store/factory.py)."""

    core: CoreStore
    history: HistoryStore
    state: StateStore
    web: WebStore
    governance: GovernanceStore
    # Connections the stores hold beside the core store's (a Redis client), closed with it.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self.closers:
            await close()
        await self.core.close()


class LogFanout(Protocol):
    """Carries live app log batches (serialized TaskLogsBatch) between server replicas, at most once; the
    history stays in the LogStore. `close` ends it."""

    async def start_fanout(self, on_batch: Callable[[str, bytes], None], timeout: float = 10) -> None: ...
    def publish_batch(self, app_id: str, payload: bytes) -> None: ...
    async def close(self) -> None: ...


class WakeBus(Protocol):
    """Carries wake-up keys between server replicas. Delivery is at most once and asynchronous; `on_resync`
    runs each time this replica's subscription is confirmed (at start and after any gap), so that its
    waiters re-check the store. `start` returns once the first subscription is live."""

    async def start(self, on_key: Callable[[str], None], on_resync: Callable[[], None]) -> None: ...
    def publish(self, key: str) -> None: ...
    async def close(self) -> None: ...
