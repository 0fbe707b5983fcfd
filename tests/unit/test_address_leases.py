"""Container addresses on berth0 are leased across every process on the host, one file per address: a container
torn down twice must not free an address another container holds by then."""

from __future__ import annotations

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
