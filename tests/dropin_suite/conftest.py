"""A suite written the way library test suites call ``torch.autograd.gradcheck``.

It runs only when ``DROPIN_CHECKER`` is set (the main suite leaves it alone):

* ``DROPIN_CHECKER=torch``: torch's own checker;
* ``DROPIN_CHECKER=gradcheck``: ``gradcheck.torch.gradcheck`` swapped in for it, as a user who
  migrates with one line would (the tests below are unchanged either way).

``DROPIN_RECORD=path.json`` writes, per test, its outcome and the seconds spent inside checker
calls (``benchmarks/bench_dropin.py`` and ``tests/test_dropin_suite.py`` read it).
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

import pytest

CHECKER = os.environ.get("DROPIN_CHECKER", "")
if not CHECKER:
    collect_ignore_glob = ["*.py"]
else:
    import torch
    import torch.autograd

    torch.set_num_threads(1)
    if CHECKER == "gradcheck":
        from gradcheck.torch import gradcheck as _chosen
    elif CHECKER == "torch":
        _chosen = torch.autograd.gradcheck
    else:
        raise ValueError(f"DROPIN_CHECKER={CHECKER!r}: use 'torch' or 'gradcheck'")

    _SPENT: dict[str, float] = {}
    _CURRENT = [""]

    @functools.wraps(_chosen)
    def _timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return _chosen(*args, **kwargs)
        finally:
            _SPENT[_CURRENT[0]] = _SPENT.get(_CURRENT[0], 0.0) + time.perf_counter() - start

    # One untimed call first, so that the first test does not pay for either checker's imports.
    _warm = torch.rand(3, dtype=torch.float64, requires_grad=True)
    _chosen(torch.sin, (_warm,))
    _chosen(torch.sin, (_warm,), fast_mode=True)

    # The swap: the tests call torch.autograd.gradcheck, or import it by name after this ran.
    torch.autograd.gradcheck = _timed  # type: ignore[assignment]

    _OUTCOMES: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(item: pytest.Item) -> None:
        _CURRENT[0] = item.nodeid

    def pytest_runtest_logreport(report: pytest.TestReport) -> None:
        if report.when == "call" or report.outcome != "passed":
            entry = _OUTCOMES.setdefault(report.nodeid, {"outcome": "passed"})
            if report.outcome != "passed":
                entry["outcome"] = report.outcome
                entry["message"] = str(report.longrepr)[-4000:]

    def pytest_sessionfinish(session: pytest.Session) -> None:
        path = os.environ.get("DROPIN_RECORD")
        if not path:
            return
        for nodeid, entry in _OUTCOMES.items():
            entry["checker_seconds"] = _SPENT.get(nodeid, 0.0)
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"checker": CHECKER, "tests": _OUTCOMES}, out, indent=1)
