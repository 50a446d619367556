"""Shared test configuration."""

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import settings

# pytester drives the pytest plugin end to end (tests/test_plugin*.py).
pytest_plugins = ["pytester"]

# CI replays the same examples on every run, so a red CI always means a change broke something;
# local runs keep exploring new examples (and the database remembers what they find).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def fresh_python() -> Callable[[str], None]:
    """Runs code in a new interpreter (so imports start from nothing); it must print 'ok'."""

    def run(code: str) -> None:
        __tracebackhide__ = True
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"

    return run
