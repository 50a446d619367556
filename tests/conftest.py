"""Shared test configuration."""

# pytester drives the pytest plugin end to end (tests/test_plugin*.py).
pytest_plugins = ["pytester"]
