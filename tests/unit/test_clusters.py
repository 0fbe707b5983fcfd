"""Gang scheduling's pure parts: the cluster's addresses, where its members go (one worker, or spread over several),
whether the workers can hold a whole cluster now or ever, and what is refused when a clustered function is
defined."""

from __future__ import annotations

import ipaddress

import pytest
from modal_proto import api_pb2

from berth.domain.cluster import ipv4_address, ipv6_address, place, room_for, vni
from berth.domain.spec import WorkerCapacity
from berth.errors import InvalidArgument
from berth.scheduling.clusters import check_definition, cluster_size, never_fits, room_now


def _worker(slots: int, used: int = 0, memory_mb: int = 8192, memory_used: int = 0, name: str = "w") -> WorkerCapacity:
    return WorkerCapacity(name, slots, used, 8.0, 0.0, memory_mb, memory_used)


def test_members_of_a_cluster_get_distinct_private_addresses_on_one_network() -> None:
    v6 = [ipaddress.IPv6Address(ipv6_address("cu-a", r)) for r in range(3)]
    v4 = [ipaddress.IPv4Address(ipv4_address("cu-a", r)) for r in range(3)]
    assert len(set(v6)) == 3 and all(a.is_private and str(a).startswith("fd") for a in v6)
    assert len({ipaddress.IPv6Network(f"{a}/64", strict=False) for a in v6}) == 1
    assert len({ipaddress.IPv4Network(f"{a}/24", strict=False) for a in v4}) == 1
    assert all(str(a).startswith("10.") for a in v4)
    assert ipv6_address("cu-a", 0) == ipv6_address("cu-a", 0) != ipv6_address("cu-b", 0)


def test_a_cluster_goes_to_one_worker_when_one_has_room_for_all_of_it() -> None:
    assert place([("w1", 1), ("w2", 3), ("w3", 4)], 3) == ["w2"] * 3  # the first (least loaded) that takes all


def test_a_cluster_no_worker_can_hold_alone_is_spread_over_as_few_workers_as_can_hold_it() -> None:
    assert place([("w1", 1), ("w2", 2), ("w3", 1)], 3) == ["w2", "w2", "w1"]  # the roomiest first, ranks in a row
    assert place([("w1", 1), ("w2", 1)], 2) == ["w1", "w2"]
    assert place([("w1", 1), ("w2", 1)], 3) is None  # all or nothing: no partial placement
    assert place([], 1) is None


def test_a_workers_room_for_members_is_its_scarcest_resource() -> None:
    assert room_for(8, 10_000, 8.0, 4_000, 0.0) == 2  # memory
    assert room_for(8, None, 8.0, 4_000, 3.0) == 2  # memory not known, CPUs
    assert room_for(1, 10_000, 8.0, 0, 0.0) == 1  # slots
    assert room_for(-1, -5, -1.0, 1, 1.0) == 0


def test_the_workers_together_never_fit_a_cluster_larger_than_their_sum_and_say_why() -> None:
    assert never_fits([], 4, 0) is None  # no worker known yet: wait for one
    assert never_fits([_worker(8)], 8, 0) is None
    assert never_fits([_worker(8), _worker(4)], 12, 0) is None  # spread over both
    reason = never_fits([_worker(8), _worker(4)], 13, 0)
    assert reason is not None and "cluster of 13 containers" in reason and "take 12 containers in all" in reason
    memory = never_fits([_worker(8, memory_mb=4096), _worker(8, memory_mb=4096)], 5, 2048)
    assert memory is not None and "2048 MiB" in memory and "hold 4 of them" in memory
    assert never_fits([_worker(8, memory_mb=4096), _worker(8, memory_mb=4096)], 4, 2048) is None


def test_room_now_takes_a_cluster_on_one_worker_or_spread_over_several() -> None:
    assert room_now([_worker(4, used=2)], 2, 0, 0.0)
    assert room_now([_worker(4, used=3, name="a"), _worker(4, used=3, name="b")], 2, 0, 0.0)  # one free on each
    assert not room_now([_worker(4, used=3, name="a"), _worker(4, used=4, name="b")], 2, 0, 0.0)
    assert not room_now([_worker(4, memory_mb=4096, memory_used=3000)], 2, 1024, 0.0)


def test_each_cluster_has_a_vxlan_id_of_its_own() -> None:
    ids = {vni(f"cu-{i}") for i in range(1000)}
    assert len(ids) > 990 and all(0 < v < 2**24 for v in ids)


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
