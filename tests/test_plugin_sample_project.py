"""pytest --gradcheck on a sample user project (tests/sample_project), in a real subprocess: the
custom autograd.Function whose backward is wrong fails at its case, the right one passes."""

from __future__ import annotations

import shutil
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample_project"


def test_pytest_gradcheck_catches_the_wrong_backward_and_points_at_its_case(pytester):
    shutil.copytree(
        SAMPLE,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", ".*cache"),
    )
    cases = (pytester.path / "gradient_cases" / "functions.py").read_text().splitlines()
    line = next(n for n, text in enumerate(cases, 1) if text.startswith("tanh = case("))
    result = pytester.runpytest_subprocess("--gradcheck", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "gradient_cases/functions.py::cube[[]autograd-float64] PASSED*",
            "gradient_cases/functions.py::tanh[[]autograd-float64] FAILED*",
            "*_ gradcheck case tanh[[]autograd-float64] _*",
            f"FAIL: tanh[[]autograd-float64] (gradient_cases/functions.py:{line})",
            "  fail: autograd vs numerical (native float64)*",
            "*input*index*analytic*numeric*abs err*rel err*tolerance*verdict",
            "FAILED gradient_cases/functions.py::tanh[[]autograd-float64] - FAIL: *",
        ]
    )
    assert "Traceback" not in result.stdout.str()
