"""Fixtures shared by the whole suite: the engines the scale-out backends run on. Each module in this list
brings the fixtures that start one of them (the contract suite and the e2e smoke on PostgreSQL use them).

The list lives here, at the top of the tests, because pytest refuses `pytest_plugins` in a nested
conftest when it collects the whole tree (`pytest tests`)."""

pytest_plugins = [
    "tests.contract.pg_fixtures",
]
