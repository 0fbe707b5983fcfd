"""Gang scheduling's pure parts: the cluster's addresses, whether a worker can hold a whole cluster now or ever,
and what is refused when a clustered function is defined."""

from __future__ import annotations

import ipaddress

import pytest
from modal_proto import api_pb2

from berth.domain.cluster import ipv4_address, ipv6_address
from berth.domain.spec import WorkerCapacity
from berth.errors import InvalidArgument
from berth.scheduling.clusters import check_definition, cluster_size, never_fits, room_now


def _worker(slots: int, used: int = 0, memory_mb: int = 8192, memory_used: int = 0) -> WorkerCapacity:
    return WorkerCapacity("w", slots, used, 8.0, 0.0, memory_mb, memory_used)


def test_members_of_a_cluster_get_distinct_private_addresses_on_one_network() -> None:
    v6 = [ipaddress.IPv6Address(ipv6_address("cu-a", r)) for r in range(3)]
    v4 = [ipaddress.IPv4Address(ipv4_address("cu-a", r)) for r in range(3)]
    assert len(set(v6)) == 3 and all(a.is_private and str(a).startswith("fd") for a in v6)
    assert len({ipaddress.IPv6Network(f"{a}/64", strict=False) for a in v6}) == 1
    assert len({ipaddress.IPv4Network(f"{a}/24", strict=False) for a in v4}) == 1
    assert all(str(a).startswith("10.") for a in v4)
    assert ipv6_address("cu-a", 0) == ipv6_address("cu-a", 0) != ipv6_address("cu-b", 0)


def test_a_cluster_larger_than_every_worker_never_fits_and_says_why() -> None:
    assert never_fits([], 4, 0) is None  # no worker known yet: wait for one
    assert never_fits([_worker(8)], 8, 0) is None
    reason = never_fits([_worker(8), _worker(4)], 9, 0)
    assert reason is not None and "cluster of 9 containers" in reason and "takes 8 containers" in reason
    memory = never_fits([_worker(8, memory_mb=4096)], 4, 2048)
    assert memory is not None and "4096 MiB" in memory


def test_room_now_needs_one_worker_with_all_the_slots_free() -> None:
    assert room_now([_worker(4, used=2)], 2, 0, 0.0)
    assert not room_now([_worker(4, used=3), _worker(4, used=3)], 2, 0, 0.0)  # 2 free slots, but on two workers
    assert not room_now([_worker(4, memory_mb=4096, memory_used=3000)], 2, 1024, 0.0)


def test_cluster_definitions_refuse_what_berth_cannot_honour() -> None:
    assert cluster_size(api_pb2.Function(_experimental_group_size=1)) == 0
    assert cluster_size(api_pb2.Function(_experimental_group_size=4)) == 4
    check_definition(api_pb2.Function(_experimental_group_size=2, i6pn_enabled=True))
    with pytest.raises(InvalidArgument, match="i6pn networking outside clustered functions"):
        check_definition(api_pb2.Function(i6pn_enabled=True))
    with pytest.raises(InvalidArgument, match="fabric_size"):
        check_definition(api_pb2.Function(_experimental_group_size=4, _experimental_fabric_size=2))
    with pytest.raises(InvalidArgument, match="at most 250"):
        check_definition(api_pb2.Function(_experimental_group_size=251))
