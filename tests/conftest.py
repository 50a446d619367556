"""Shared test configuration."""

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import settings

# pytester drives the pytest plugin end to end (tests/test_plugin*.py).
pytest_plugins = ["pytester"]

# Every run replays the same examples (derandomized, no example database), on CI and on a fresh
# clone alike, so a red run always means a change broke something. To look for new examples:
# `pytest --hypothesis-profile=explore` (or HYPOTHESIS_PROFILE=explore); what it finds goes in
# as an @example with a test of its own.
settings.register_profile("replay", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "replay"))


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
