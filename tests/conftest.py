"""Fixture plugins for the whole suite: real backing services, each started once per session and only
when a test asks for it.

The list lives here, not in tests/contract/conftest.py: pytest refuses `pytest_plugins` in a conftest
below the top level once it collects more than that directory (`pytest tests`, what CI runs)."""

pytest_plugins = ["tests.contract.s3_fixtures"]
