"""The arithmetic behind the observability RPCs: statuses, durations, percentiles and time buckets."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from modal_proto import api_pb2

from berth.errors import InvalidArgument
from berth.services import input_stats as st
from berth.store.records import InputRecord

GS = api_pb2.GenericResult


def _input(state: str, status: int = 0, started: float | None = None, finished: float | None = None) -> InputRecord:
    return InputRecord("in-1", "fc-1", "fu-1", "", state, "ta-1", 0, 10.0, started, finished, status)


def test_an_input_reads_as_pending_running_or_how_it_ended() -> None:
    assert st.call_status(_input("queued")) == api_pb2.FUNCTION_CALL_INPUT_STATUS_PENDING
    assert st.call_status(_input("leased")) == api_pb2.FUNCTION_CALL_INPUT_STATUS_RUNNING
    done = _input("done", GS.GENERIC_STATUS_TIMEOUT)
    assert st.call_status(done) == api_pb2.FUNCTION_CALL_INPUT_STATUS_TIMEOUT
    assert st.outcome(done) == "timed_out"
    assert st.outcome(_input("done", GS.GENERIC_STATUS_INIT_FAILURE)) == "failed"
    assert st.outcome(_input("done", GS.GENERIC_STATUS_SUCCESS)) == "succeeded"
    assert st.outcome(_input("leased")) == "open"


def test_durations_need_both_ends() -> None:
    assert st.execution_s(_input("done", 1, started=12.0, finished=15.5)) == 3.5
    assert st.latency_s(_input("done", 1, started=12.0, finished=15.5)) == 5.5
    assert st.execution_s(_input("leased", started=12.0)) is None
    assert st.latency_s(_input("queued")) is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    dist = st.distribution(values)
    assert dist is not None
    assert [(p.percentile_basis_points, p.value) for p in dist.percentiles] == [(5000, 50), (9000, 90), (9900, 99)]
    assert st.percentile([7.0], 9900) == 7.0
    assert st.distribution([None, None]) is None


def test_buckets_start_on_boundaries_and_whole_ones_stop_before_until() -> None:
    assert st.bucket_starts(125.0, 300.0, 60) == [120.0, 180.0, 240.0]
    assert st.whole_buckets(125.0, 300.0, 60) == [120.0, 180.0, 240.0]
    assert st.whole_buckets(125.0, 299.0, 60) == [120.0, 180.0]
    assert st.pick_bucket_secs(0, 3600, None) == 60
    assert st.pick_bucket_secs(0, 86400, None) == 900
    assert st.pick_bucket_secs(0, 3600, 300) == 300


def test_a_window_defaults_to_the_hour_before_now_and_must_not_be_empty() -> None:
    assert st.window(Timestamp(), Timestamp(), now=7200.0) == (3600.0, 7200.0)
    assert st.window(Timestamp(seconds=100), Timestamp(seconds=200, nanos=500_000_000), now=0) == (100.0, 200.5)
    with pytest.raises(InvalidArgument):
        st.window(Timestamp(seconds=200), Timestamp(seconds=100), now=0)
