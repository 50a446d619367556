"""The public surface is what it should be: one curated __all__, each name importable, typed."""

from __future__ import annotations

from pathlib import Path

import gradcheck

EXPECTED_PUBLIC_NAMES = {
    "Autograd",
    "CheckResult",
    "Formula",
    "GradientEstimate",
    "GradientSource",
    "InputComparison",
    "Numerics",
    "Screen",
    "Verdict",
    "assert_gradients_close",
    "check",
    "estimate_gradient",
    "numerical_gradient",
    # Declare, Load, Collect (issue 3): cases and the run API.
    "Case",
    "CaseResult",
    "Descent",
    "DescentResult",
    "RunResult",
    "case",
    "descent",
    "normal",
    "run",
    "uniform",
    # Edges (issue 6): the Taylor-remainder second opinion.
    "TaylorResult",
    "taylor_test",
    # Beyond first order (issue 16): forward mode, order 2, the backward's contract.
    "BackwardContract",
    "Beyond",
    "check_contract",
}


def test_all_lists_exactly_the_public_names():
    assert set(gradcheck.__all__) == EXPECTED_PUBLIC_NAMES


def test_every_public_name_is_importable_from_the_package():
    for name in gradcheck.__all__:
        assert getattr(gradcheck, name) is not None


def test_no_public_name_is_private_and_no_module_leaks():
    assert all(not name.startswith("_") for name in gradcheck.__all__)


def test_the_package_ships_py_typed():
    assert (Path(gradcheck.__file__).parent / "py.typed").is_file()


def test_the_engine_imports_no_torch_unless_given_tensors(fresh_python):
    code = (
        "import sys, numpy as np, gradcheck\n"
        "g = gradcheck.numerical_gradient(lambda x: (x**2).sum(), np.ones(3))\n"
        "r = gradcheck.check(lambda x: (x**2).sum(), np.ones(3), lambda x: 2*x)\n"
        "assert r.passed, r.summary()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    fresh_python(code)
