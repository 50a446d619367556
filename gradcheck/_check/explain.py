"""Check (explain): the lines a failed check starts with, so a failure leads to the wrong input.

Every message that reports a check that did not pass (``assert_gradients_close``, the errors of
``gradcheck.torch``, the CLI and the text reports) starts with one line per differentiated input:
its verdict, and for an input that is not a plain pass, at how many of its elements::

    gradient check fail, per input:
      W1: pass (15 elements)
      b1: pass (5 elements)
      W2: fail at 10 of 10 elements (4 sign flips)
      b2: pass (2 elements)

then the summary line, then the worst-element table under a line that says how it is sorted.
These functions only read ``result.inputs`` (each input's verdict and per-element arrays) and
the result's ``summary()``/``table()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gradcheck._check.trace import OUTPUT_LEGEND
from gradcheck._judge.verdict import TABLE_ORDER, InputComparison, Verdict

if TYPE_CHECKING:
    from gradcheck._check.result import CheckResult


def input_name(c: InputComparison) -> str:
    """The input as the user knows it: its name (a dict key, f's parameter), else 'input k'."""
    return c.name or f"input {c.position}"


def input_line(c: InputComparison, name: str = "") -> str:
    """One input's verdict with counts: 'W2: fail at 10 of 10 elements (4 sign flips)';
    ``name`` overrides the input's own (a case names its inputs by ``wrt``)."""
    total = int(np.prod(c.shape)) if c.shape else 1
    verdicts = np.asarray(c.element_verdicts, dtype=object).reshape(-1)
    counts = {v: int(np.sum(verdicts == v.value)) for v in Verdict}
    name = name or input_name(c)
    if c.verdict is Verdict.PASS:
        return f"{name}: pass ({total} element{'s' if total != 1 else ''})"
    of = f"of {total}" if c.elements is None else f"of the {verdicts.size} the screen located"
    parts = []
    if counts[Verdict.FAIL]:
        flips = c.sign_flips().size
        flip = f" ({flips} sign flip{'s' if flips != 1 else ''})" if flips else ""
        parts.append(f"fail at {counts[Verdict.FAIL]} {of} elements{flip}")
    if counts[Verdict.INCONCLUSIVE]:
        parts.append(f"inconclusive at {counts[Verdict.INCONCLUSIVE]} {of} elements")
    if not parts:  # the verdict comes from the input as a whole (e.g. its noise), not elements
        parts.append(str(c.verdict))
    return f"{name}: " + ", ".join(parts)


def input_lines(result: CheckResult) -> list[str]:
    """One line per differentiated input, then one per failing part beyond first order."""
    lines = [input_line(c) for c in result.inputs]
    beyond = result.beyond
    forward = beyond.forward if beyond is not None else None
    if forward is not None and forward.verdict is not Verdict.PASS:
        lines += [f"forward mode, {input_line(c)}" for c in forward.inputs]
    second = beyond.second if beyond is not None else None
    if second is not None and second.check is not None and second.verdict is not Verdict.PASS:
        lines += [f"second order, {input_line(c)}" for c in second.check.inputs]
    return lines


def failure_message(result: CheckResult, what: str) -> str:
    """The whole message of a check that did not pass: ``what`` and the verdict, the input
    lines, the summary, then the worst elements under a line that says how they are sorted."""
    table = result.table()
    lines = [
        f"{what}{result.verdict}, per input:",
        *(f"  {line}" for line in input_lines(result)),
        result.summary(),
    ]
    if table:
        lines += [f"worst elements ({TABLE_ORDER}):", table]
        if result.outputs is not None and result.outputs.traced:
            lines.append(OUTPUT_LEGEND)
    return "\n".join(lines)
