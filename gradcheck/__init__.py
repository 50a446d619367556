"""gradcheck: tells you whether your gradients are right.

Analytic gradients (PyTorch autograd, hand-derived formulas, custom backward code) against a
central-difference engine with error estimates; a verdict per element: pass, fail, inconclusive.
"""

from gradcheck._check import CheckResult, assert_gradients_close, check
from gradcheck._compare import InputComparison, Verdict
from gradcheck._engine import GradientEstimate, estimate_gradient, numerical_gradient
from gradcheck._reference import Autograd, Formula, GradientSource

__all__ = [
    "Autograd",
    "CheckResult",
    "Formula",
    "GradientEstimate",
    "GradientSource",
    "InputComparison",
    "Verdict",
    "assert_gradients_close",
    "check",
    "estimate_gradient",
    "numerical_gradient",
]
__version__ = "0.1.0"
