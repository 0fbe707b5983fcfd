"""Fixture plugins shared by the suites. pytest reads `pytest_plugins` only from a top-level conftest
(a nested one fails `pytest tests`), so the contract suite's engine fixtures are listed here; they start
nothing until a test asks for them."""

pytest_plugins = ["tests.contract.redis_fixtures", "tests.contract.backends"]
