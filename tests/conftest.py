"""Shared test configuration."""

import os

from hypothesis import settings

# pytester drives the pytest plugin end to end (tests/test_plugin*.py).
pytest_plugins = ["pytester"]

# CI replays the same examples on every run, so a red CI always means a change broke something;
# local runs keep exploring new examples (and the database remembers what they find).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
