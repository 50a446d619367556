"""gradcheck: tells you whether your gradients are right.

Analytic gradients (PyTorch autograd, hand-derived formulas, custom backward code) against a
central-difference engine with error estimates; a verdict per element: pass, fail, inconclusive.

The public names load on first use (PEP 562): pytest imports ``gradcheck.pytest_plugin`` in the
session of everyone who installs the package, and that must not cost a NumPy import. To add a
public name, list it in ``_EXPORTS`` and in the ``TYPE_CHECKING`` block (a test checks they agree).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradcheck._beyond import Beyond as Beyond
    from gradcheck._case import Case as Case
    from gradcheck._case import Descent as Descent
    from gradcheck._case import case as case
    from gradcheck._case import descent as descent
    from gradcheck._case import normal as normal
    from gradcheck._case import uniform as uniform
    from gradcheck._check import CheckResult as CheckResult
    from gradcheck._check import assert_gradients_close as assert_gradients_close
    from gradcheck._check import check as check
    from gradcheck._compare import InputComparison as InputComparison
    from gradcheck._compare import Verdict as Verdict
    from gradcheck._contract import BackwardContract as BackwardContract
    from gradcheck._contract import check_contract as check_contract
    from gradcheck._engine import GradientEstimate as GradientEstimate
    from gradcheck._engine import estimate_gradient as estimate_gradient
    from gradcheck._engine import numerical_gradient as numerical_gradient
    from gradcheck._loop import Numerics as Numerics
    from gradcheck._reference import Autograd as Autograd
    from gradcheck._reference import Formula as Formula
    from gradcheck._reference import GradientSource as GradientSource
    from gradcheck._runner import CaseResult as CaseResult
    from gradcheck._runner import DescentResult as DescentResult
    from gradcheck._runner import RunResult as RunResult
    from gradcheck._runner import run as run
    from gradcheck._screen import Screen as Screen
    from gradcheck._taylor import TaylorResult as TaylorResult
    from gradcheck._taylor import taylor_test as taylor_test

# Each public name and the private module that defines it.
_EXPORTS: dict[str, str] = {
    "CheckResult": "gradcheck._check",
    "assert_gradients_close": "gradcheck._check",
    "check": "gradcheck._check",
    "InputComparison": "gradcheck._compare",
    "Verdict": "gradcheck._compare",
    "Numerics": "gradcheck._loop",
    "Beyond": "gradcheck._beyond",
    "BackwardContract": "gradcheck._contract",
    "check_contract": "gradcheck._contract",
    "Screen": "gradcheck._screen",
    "TaylorResult": "gradcheck._taylor",
    "taylor_test": "gradcheck._taylor",
    "GradientEstimate": "gradcheck._engine",
    "estimate_gradient": "gradcheck._engine",
    "numerical_gradient": "gradcheck._engine",
    "Autograd": "gradcheck._reference",
    "Formula": "gradcheck._reference",
    "GradientSource": "gradcheck._reference",
    "Case": "gradcheck._case",
    "Descent": "gradcheck._case",
    "case": "gradcheck._case",
    "descent": "gradcheck._case",
    "normal": "gradcheck._case",
    "uniform": "gradcheck._case",
    "CaseResult": "gradcheck._runner",
    "DescentResult": "gradcheck._runner",
    "RunResult": "gradcheck._runner",
    "run": "gradcheck._runner",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
