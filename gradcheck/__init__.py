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
    from gradcheck._cases.case import Case as Case
    from gradcheck._cases.case import Descent as Descent
    from gradcheck._cases.case import case as case
    from gradcheck._cases.case import descent as descent
    from gradcheck._cases.case import normal as normal
    from gradcheck._cases.case import uniform as uniform
    from gradcheck._cases.descent import DescentResult as DescentResult
    from gradcheck._cases.runner import CaseResult as CaseResult
    from gradcheck._cases.runner import RunResult as RunResult
    from gradcheck._cases.runner import run as run
    from gradcheck._check.check import assert_gradients_close as assert_gradients_close
    from gradcheck._check.check import check as check
    from gradcheck._check.result import Beyond as Beyond
    from gradcheck._check.result import CheckResult as CheckResult
    from gradcheck._judge.contract import BackwardContract as BackwardContract
    from gradcheck._judge.contract import check_contract as check_contract
    from gradcheck._judge.loop import Numerics as Numerics
    from gradcheck._judge.screen import Screen as Screen
    from gradcheck._judge.taylor import TaylorResult as TaylorResult
    from gradcheck._judge.taylor import taylor_test as taylor_test
    from gradcheck._judge.verdict import InputComparison as InputComparison
    from gradcheck._judge.verdict import Verdict as Verdict
    from gradcheck._numerics.engine import GradientEstimate as GradientEstimate
    from gradcheck._numerics.engine import estimate_gradient as estimate_gradient
    from gradcheck._numerics.engine import numerical_gradient as numerical_gradient
    from gradcheck._sources.reference import Autograd as Autograd
    from gradcheck._sources.reference import Formula as Formula
    from gradcheck._sources.reference import GradientSource as GradientSource

# Each public name and the private module that defines it.
_EXPORTS: dict[str, str] = {
    "CheckResult": "gradcheck._check.result",
    "assert_gradients_close": "gradcheck._check.check",
    "check": "gradcheck._check.check",
    "InputComparison": "gradcheck._judge.verdict",
    "Verdict": "gradcheck._judge.verdict",
    "Numerics": "gradcheck._judge.loop",
    "Beyond": "gradcheck._check.result",
    "BackwardContract": "gradcheck._judge.contract",
    "check_contract": "gradcheck._judge.contract",
    "Screen": "gradcheck._judge.screen",
    "TaylorResult": "gradcheck._judge.taylor",
    "taylor_test": "gradcheck._judge.taylor",
    "GradientEstimate": "gradcheck._numerics.engine",
    "estimate_gradient": "gradcheck._numerics.engine",
    "numerical_gradient": "gradcheck._numerics.engine",
    "Autograd": "gradcheck._sources.reference",
    "Formula": "gradcheck._sources.reference",
    "GradientSource": "gradcheck._sources.reference",
    "Case": "gradcheck._cases.case",
    "Descent": "gradcheck._cases.case",
    "case": "gradcheck._cases.case",
    "descent": "gradcheck._cases.case",
    "normal": "gradcheck._cases.case",
    "uniform": "gradcheck._cases.case",
    "CaseResult": "gradcheck._cases.runner",
    "DescentResult": "gradcheck._cases.descent",
    "RunResult": "gradcheck._cases.runner",
    "run": "gradcheck._cases.runner",
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
