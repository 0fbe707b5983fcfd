"""Container addresses on berth0 are leased across every process on the host, one file per address: a container
torn down twice must not free an address another container holds by then."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from berth.worker import network


@pytest.fixture
def leases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(network, "_LEASES", tmp_path)
    return tmp_path


def test_addresses_are_leased_once_each_and_freed_for_the_next(leases: Path) -> None:
    a = network._lease_address("berth-a")
    b = network._lease_address("berth-b")
    assert a != b
    network._release_address(a, "berth-a")
    assert network._lease_address("berth-c") == a  # the lowest free address is handed out again
    assert (leases / a).read_text() == "berth-c"


def test_a_second_teardown_does_not_free_the_address_its_next_holder_leased(leases: Path) -> None:
    a = network._lease_address("berth-a")
    network._release_address(a, "berth-a")
    assert network._lease_address("berth-c") == a
    network._release_address(a, "berth-a")  # berth-a torn down again
    assert (leases / a).read_text() == "berth-c"
    assert network._lease_address("berth-d") != a  # so no third container shares berth-c's address
    network._release_address(a, "berth-a")  # and freeing one that is gone already is no error
    network._release_address("10.255.255.254", "berth-x")


def test_two_containers_starting_together_never_share_a_dead_containers_address(
    leases: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's members set up their networks at once. Both used to find the same stale lease (its container
    gone with a killed server), both took it over, and the two members shared one address."""
    dead = leases / str(next(iter(network.SUBNET.hosts())) + 1)  # the first address containers get
    dead.write_text("berth-ta-long-gone")
    os.utime(dead, (time.time() - 3600, time.time() - 3600))
    both_reclaiming = threading.Barrier(2)

    def drop_snat(address: str) -> None:  # reached by whoever takes the dead lease over: wait for the other one
        with contextlib.suppress(threading.BrokenBarrierError):
            both_reclaiming.wait(timeout=1)
        if threading.current_thread().name == "b":  # and b goes on only once a has taken the address
            time.sleep(0.3)

    monkeypatch.setattr(network, "_drop_snat", drop_snat)
    got: dict[str, str] = {}
    threads = [
        threading.Thread(target=lambda n=n: got.update({n: network._lease_address(n)}), name=n) for n in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["a"] != got["b"]
    assert {(leases / got[n]).read_text() for n in "ab"} == {"a", "b"}
    assert dead.name in got.values()  # the dead container's address went to one of them
