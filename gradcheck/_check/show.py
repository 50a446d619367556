"""Check (showing a result): the one-line summary and the worst-elements tables, as text.

A :class:`~gradcheck._check.result.CheckResult` holds data only; ``result.summary()`` and
``result.table()`` (and the reports, the CLI, the pytest failure message) format it here. The
functions read results by their documented attributes, so this module imports no result type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from gradcheck._judge.verdict import WORST_ELEMENT_COLUMNS, InputComparison, Verdict

# What a forward-mode row is: its index is (direction, *output element), not an input element.
FORWARD_HEADER = (
    "forward mode (Jacobian-vector products): each row is one seeded direction k along which "
    "the input moved, and one element of f's output; index = (k, output element); analytic = "
    "the JVP's entry there, numeric = the directional difference of f"
)


def input_label(c: InputComparison) -> str:
    return f"input {c.position}" + (f" ({c.name})" if c.name else "")


def summary(result: Any) -> str:
    """One line: verdict, source, worst errors, policy, seed, evaluations (and the mode)."""
    errors = f"max abs err {result.max_abs_error:.3g}, max rel err {result.max_rel_error:.3g}"
    if result.screen is not None:
        errors = result.screen.summary()
    numerics = result.numerics
    line = (
        f"{result.verdict}: {result.source} vs numerical "
        f"({numerics.policy} {numerics.evaluation_dtype}), "
        f"{errors}, seed {result.seed}, {result.evaluations} evaluations"
    )
    return line + "".join(f"; {r}" for r in result.reasons)


def table(result: Any, count: int = 5) -> str:
    """The worst elements of every input that is not a plain pass (``CheckResult.table``)."""
    rows = []
    outputs = result.outputs
    traced = outputs is not None and bool(outputs.traced)
    for c in result.inputs:
        if c.verdict is Verdict.PASS and result.verdict is not Verdict.PASS:
            continue
        for row in c.worst_elements(count):
            cells = [
                input_label(c).removeprefix("input "),
                *(row[key] for _, key in WORST_ELEMENT_COLUMNS),
            ]
            if traced:
                found = outputs.find(c.position, row["index"])
                cells.insert(0, "" if found is None else found.describe())
            rows.append(cells)
    headers = ["input", *(header for header, _ in WORST_ELEMENT_COLUMNS)]
    text = tabulate(rows, headers=(["output", *headers] if traced else headers), floatfmt=".6g")
    more = beyond_table(result.beyond, count) if result.beyond is not None else ""
    if not more:
        return text
    return f"{text}\n{more}" if rows else more


def beyond_table(beyond: Any, count: int = 5) -> str:
    """The worst elements of forward mode and order 2 where they are not a plain pass."""
    blocks = []
    if beyond.forward is not None and beyond.forward.verdict is not Verdict.PASS:
        blocks.append((FORWARD_HEADER, beyond.forward.inputs))
    second = beyond.second.check if beyond.second is not None else None
    if second is not None and second.verdict is not Verdict.PASS:
        blocks.append(
            ("order 2 (the last input is grad_output when f is not scalar)", second.inputs)
        )
    return "\n".join(f"{title}:\n{_inputs_table(inputs, count)}" for title, inputs in blocks)


def _inputs_table(inputs: Sequence[InputComparison], count: int) -> str:
    rows = [
        [c.position, *(row[key] for _, key in WORST_ELEMENT_COLUMNS)]
        for c in inputs
        if c.verdict is not Verdict.PASS
        for row in c.worst_elements(count)
    ]
    headers = ["input", *(header for header, _ in WORST_ELEMENT_COLUMNS)]
    return tabulate(rows, headers=headers, floatfmt=".6g")
