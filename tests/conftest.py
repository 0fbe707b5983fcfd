"""Fixture plugins shared by the suites: real backing services, each started once per session and only
when a test asks for it. pytest reads `pytest_plugins` only from a top-level conftest (a nested one fails
`pytest tests`, what CI runs), so the contract suite's engine fixtures are listed here."""

pytest_plugins = [
    "tests.contract.pg_fixtures",
    "tests.contract.redis_fixtures",
    "tests.contract.s3_fixtures",
    "tests.contract.backends",
]
