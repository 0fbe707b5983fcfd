"""Plain records the store hands out. Protobuf payloads stay as bytes; services decode them."""

from __future__ import annotations

from dataclasses import dataclass

# The SQL columns of AppRecord and TaskRecord, in field order (every SQL backend selects them so).
APP_COLS = "app_id, name, description, state, environment, created_at, stopped_at"
TASK_COLS = "task_id, function_id, app_id, state, secret_hash, created_at, ended_at, replica_id"


@dataclass
class ReplicaRecord:
    replica_id: str
    name: str
    started_at: float
    seen_at: float
    info: bytes


@dataclass
class AppRecord:
    app_id: str
    name: str
    description: str
    state: int
    environment: str
    created_at: float
    stopped_at: float | None = None


@dataclass
class TokenRecord:
    token_id: str
    environment: str  # '' for every environment
    created_at: float
    revoked_at: float | None
    name: str | None  # a service user's name
    disabled_at: float | None
    expires_at: float | None


TOKEN_COLS = "token_id, coalesce(environment, ''), created_at, revoked_at, name, disabled_at, expires_at"


# The tables with an environment column, which an environment's rename moves along.
# Tables whose rows belong to an environment by name: a rename moves them (usage too, so that billing by
# environment follows it; the audit log keeps the name an action was taken under). Quotas are keyed by scope.
ENVIRONMENT_TABLES = ("apps", "tokens", "objects", "state_objects", "environment_roles", "usage_minutes")


@dataclass
class FunctionRecord:
    function_id: str
    app_id: str
    tag: str
    definition: bytes  # api_pb2.Function
    bound_from: str | None = None
    serialized_params: bytes = b""
    options: bytes = b""  # api_pb2.FunctionOptions


@dataclass
class CallRecord:
    call_id: str
    function_id: str
    call_type: int
    invocation_type: int
    return_exceptions: bool
    num_inputs: int
    inputs_finished: bool
    created_at: float
    parent_input_id: str = ""  # the input whose container made this call; "" for a call from a client


@dataclass
class InputLease:
    """An input handed to a container: who holds it, until when, and which attempt this is."""

    input_id: str
    call_id: str
    function_id: str
    idx: int
    payload: bytes  # api_pb2.FunctionInput
    invocation_type: int
    attempt: int
    holder: str
    deadline: float | None


@dataclass
class InputState:
    input_id: str
    call_id: str
    function_id: str
    idx: int
    state: str
    holder: str | None
    attempt: int
    payload: bytes
    created_at: float = 0.0  # when it was enqueued


@dataclass
class OutputRecord:
    seq: int
    call_id: str
    input_id: str
    idx: int
    result: bytes  # api_pb2.GenericResult
    data_format: int
    retry_count: int


@dataclass
class TaskRecord:
    task_id: str
    function_id: str
    app_id: str
    state: str
    secret_hash: str
    created_at: float
    ended_at: float | None = None
    replica_id: str = ""  # the server replica that started it (several replicas on one database)


@dataclass
class TaskOutcome:
    """A container as observability reads it: its record, whether it failed, and when it took its first input."""

    task: TaskRecord
    failed: bool
    first_input_at: float | None
    exit_reason: str = ""  # why it ended, '' while it runs


@dataclass
class InputRecord:
    """One input as observability reads it: its call, its last attempt's times and how it ended."""

    input_id: str
    call_id: str
    function_id: str
    method_name: str
    state: str  # queued | leased | done
    holder: str | None  # the task that holds or last held it
    attempt: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    status: int  # api_pb2.GenericResult.GenericStatus once done, else 0


@dataclass
class StateObject:
    object_id: str
    kind: str  # volume | secret | dict | queue
    name: str | None
    environment: str
    ephemeral: bool
    app_id: str | None
    version: int
    body: bytes | None  # secrets: the encrypted environment
    created_at: float
    heartbeat_at: float


@dataclass
class DeploymentRecord:
    app_id: str
    version: int
    deployed_at: float
    tag: str
    client_version: str
    rollback_version: int
    commit_info: bytes
    snapshot: bytes  # api_pb2.AppLayout plus function definitions, see services/deployments.py
    deployment_type: int  # api_pb2.DeploymentType; a STAGED version never went live


@dataclass
class Endpoint:
    key: str
    port: int
    app_id: str
    function_id: str
    method_name: str
    requires_auth: bool


@dataclass
class ScheduleRow:
    function_id: str
    app_id: str
    spec: bytes  # api_pb2.Schedule
    anchor: float
    next_tick: float


@dataclass
class TickRow:
    function_id: str
    tick_at: float
    call_id: str
    input_id: str
    state: str  # pending → fired
