"""Render (sweeps): what a step-size sweep may say when its reference gradient is wrong.

A sweep measures the central difference against a reference gradient. When that reference is a
formula that fails its own check (trusted because its case expects a pass), the curve never
comes down to rounding: its floor is the formula's error, at every step. The report then says
so, on the plot and in the text, and recommends no step: the bug is in the gradient, not in h.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck._cases.runner import CaseResult
from gradcheck._cases.sweep import Sweep

STEP_CAPTION = "Step-size sweep: error of the central difference against the step h."


def against_failing(rows: Sequence[CaseResult], sweep: Sweep) -> bool:
    """Whether the sweep's reference gradient is a source that fails its check in these rows."""
    failing = {row.source for row in rows if row.verdict == "fail"}
    return any(sweep.reference.startswith(f"{source} in ") for source in failing)


def caption(sweep: Sweep, failing: bool) -> str:
    if not failing:
        return STEP_CAPTION
    return (
        f"Step-size sweep against {sweep.reference}, which fails its check: no step makes the "
        "differences agree with it."
    )


def plot_note(reference: str) -> str:
    """The words drawn across the plot of a sweep against a failing gradient."""
    return (
        f"against {reference}, which FAILS its check:\n"
        "the differences disagree with it at every step;\n"
        "the floor is the gradient's error, not the step's"
    )


def summary_lines(sweep: Sweep, failing: bool) -> list[str]:
    """The sweep's summary; against a failing gradient, per dtype how far the differences stay
    from it (the smallest disagreement on the grid), with no step recommended."""
    if not failing:
        return sweep.summary().splitlines()
    return [
        f"{c.dtype}: the central differences disagree with {sweep.reference} at every step on "
        f"the grid, by {c.best(sweep.steps)[1]:.2e} of the gradient's size or more: the "
        "gradient is wrong, not the step"
        for c in sweep.curves
        if not c.failure
    ]
