"""Render: reports as pure functions of a RunResult: text, Markdown, JSON, JUnit XML.

Render once, show everywhere: :func:`text_lines` is what the CLI prints and what the pytest
summary prints; :func:`detail_lines` is the explanation of one row that is not as expected.
Nothing here imports torch or runs a case. The one side effect, :func:`write_atomic`, writes a
finished string to a temporary file beside the target and renames it into place.

Columns of the tables:

* case, source, dtype: the row (source 'autograd' or a hand formula's name);
* #params: the number of differentiated elements;
* max abs err, max rel err: over every element (descent: over the final parameters and the
  loss curve, analytic run against numerical run);
* error estimate: the numerical side's largest error estimate;
* tolerance: the absolute tolerance at the worst element (``atol + rtol·|n| + e``);
* verdict: pass / fail / inconclusive / error, with the expectation when it is not 'pass'
  (``fail (expected)``) and in capitals when the row is not as expected.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from tabulate import tabulate

from gradcheck._cases.descent import DescentRun
from gradcheck._cases.runner import OUTCOMES, CaseResult, RunResult
from gradcheck._check import explain as _explain
from gradcheck._judge.verdict import TABLE_ORDER, WORST_ELEMENT_COLUMNS, Verdict
from gradcheck._report.escape import (
    fence,
    markdown_cell,
    no_surrogates,
    printable,
    printable_lines,
    xml_text,
)

SCHEMA_VERSION = 1
HEADERS = (
    "case",
    "source",
    "dtype",
    "#params",
    "max abs err",
    "max rel err",
    "error estimate",
    "tolerance",
    "verdict",
)
# Inputs up to this many elements carry their analytic and numerical gradients in the JSON.
JSON_ARRAY_LIMIT = 100


# -- the table --------------------------------------------------------------------------------


def verdict_label(row: CaseResult) -> str:
    """``pass``; ``fail (expected)`` for a known-bad case; capitals when not as expected."""
    if row.outcome == "passed":
        return row.verdict
    if row.outcome == "xfailed":
        return f"{row.verdict} (expected)"
    if row.outcome == "xpassed":
        return f"PASS (expected {row.expected})"
    if row.outcome == "error":
        return "ERROR"
    suffix = "" if row.expected == "pass" else f" (expected {row.expected})"
    return row.verdict.upper() + suffix


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def table_rows(result: RunResult) -> list[list[str]]:
    """The table's rows as strings, in the order of ``HEADERS`` (user text :func:`printable`)."""
    return [
        [
            printable(row.case),
            printable(row.source),
            row.dtype,
            str(row.parameters) if row.kind != "load" else "-",
            _number(row.max_abs_error),
            _number(row.max_rel_error),
            _number(row.error_estimate),
            _number(row.tolerance),
            verdict_label(row),
        ]
        for row in result.rows
    ]


def _table(result: RunResult, tablefmt: str, cell: Callable[[str], str] = lambda text: text) -> str:
    return tabulate(
        [[cell(text) for text in row] for row in table_rows(result)],
        headers=HEADERS,
        tablefmt=tablefmt,
        disable_numparse=True,
        colalign=("left", "left", "left", "right", "right", "right", "right", "right", "left"),
    )


def summary_line(result: RunResult) -> str:
    """One line: rows by outcome, load errors, and the seed to replay the run with."""
    counts = result.counts
    parts = [f"{counts[o]} {o}" for o in OUTCOMES if counts[o] or o in ("passed", "failed")]
    status = "as expected" if result.ok else "NOT as expected"
    line = f"gradcheck: {len(result.rows)} rows {status}: " + ", ".join(parts)
    if result.load_errors:
        line += f"; {len(result.load_errors)} module(s) failed to load"
    if result.interrupted:
        line += "; INTERRUPTED: the report holds only the cases run before the interruption"
    if result.unreported:
        line += f"; {len(result.unreported)} row(s) NEVER REPORTED: " + _some(result.unreported)
    return line + f"; seed {result.seed} (replay: gradcheck run --seed {result.seed})"


def _some(ids: tuple[str, ...], shown: int = 5) -> str:
    named = ", ".join(printable(i) for i in ids[:shown])
    return named + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def quiet_lines(result: RunResult) -> list[str]:
    """``--quiet``: one line per row not as expected and per module that failed to load, each
    with its ``file:line``, then the summary line."""
    lines = [
        printable(f"{e.path}:{e.line}: ERROR: the case module failed to import")
        for e in result.load_errors
    ]
    for row in result.rows:
        if not row.ok:
            where = f"{row.file}:{row.line}: " if row.file else ""
            lines.append(printable(f"{where}{verdict_label(row)}: {row.id}"))
    return [*lines, summary_line(result)]


def headline(row: CaseResult) -> str:
    """One line on a row not as expected: its verdict label, then which inputs fail (or the
    error), then the check's summary."""
    if row.check is None:
        return printable(f"{verdict_label(row)}: {row.error or row.outcome}")
    wrong = [
        _explain.input_line(c, input_name(row, c.position))
        for c in row.check.inputs
        if c.verdict is not Verdict.PASS
    ]
    return printable(f"{verdict_label(row)}: " + "; ".join([*wrong, row.check.summary()]))


def detail_lines(row: CaseResult) -> list[str]:
    """What went wrong in a row: its id and definition, then the worst elements or the error.

    Each line is :func:`printable`: user text (names, messages) cannot add or end a line.
    """
    if row.kind == "load":
        lines = [f"ERROR: {row.file}:{row.line}: the case module failed to import"]
    else:
        where = f" ({row.file}:{row.line})" if row.file else ""
        lines = [f"{verdict_label(row)}: {row.id}{where}"]
    if row.error is not None:
        lines.extend(f"  {line}" for line in printable_lines(row.error))
    if row.outcome == "xpassed":
        lines.append(f"  expected {row.expected}, but the gradients agree; fix the expectation")
    if row.check is not None:
        if row.check.verdict is not Verdict.PASS:
            lines.extend(
                f"  {_explain.input_line(c, input_name(row, c.position))}" for c in row.check.inputs
            )
        lines.append(f"  {row.check.summary()}")
        lines.append(f"  {resolution_line(row)}")
        failed_in = failed_parts(row)
        if failed_in:
            lines.append(f"  failed beyond first order: {', '.join(failed_in)}")
        table = worst_elements_table(row).splitlines()
        if table:
            lines.append(f"  worst elements ({TABLE_ORDER}):")
        lines.extend("  " + line for line in table)
        beyond = row.check.beyond.table() if row.check.beyond is not None else ""
        lines.extend("  " + line for line in beyond.splitlines())
    if row.descent is not None:
        d = row.descent
        lines.append(
            f"  {d.analytic.gradient} vs numerical descent: max abs diff {d.max_abs_error:.3g}, "
            f"max rel diff {d.max_rel_error:.3g}, tolerance {d.tolerance:.3g}"
        )
        lines.extend(f"  {reason}" for reason in d.reasons)
        for run in (d.analytic, d.numerical):
            lines.append(f"  {run.gradient}: {_run_summary(run)}")
    return [printable(line) for line in lines]


def failed_parts(row: CaseResult) -> tuple[str, ...]:
    """Which checks beyond the first-order gradient failed: 'fwd', 'order 2',
    'contract (linearity)', ... (``CheckResult.beyond``); () when none."""
    beyond = row.check.beyond if row.check is not None else None
    return () if beyond is None else beyond.failed


def input_name(row: CaseResult, position: int) -> str:
    """An input's name as the case declares it (``wrt``); its position when it has none."""
    return row.wrt[position] if position < len(row.wrt) else str(position)


def resolution_line(row: CaseResult) -> str:
    """What the check could tell apart, per input: its resolution (the smallest relative error
    it would have called fail; for a gradient zero within f's rounding, the smallest absolute
    one) and what the tolerance rests on (``InputComparison.tolerance_basis``)."""
    assert row.check is not None
    parts = []
    for c in row.check.inputs:
        name = input_name(row, c.position)
        if math.isnan(c.resolution):
            parts.append(f"{name} none ({c.tolerance_basis})")
        elif c.resolution >= 1:
            parts.append(
                f"{name} {c.absolute_resolution:.2g} absolute: zero within f's rounding "
                f"({c.tolerance_basis})"
            )
        else:
            parts.append(f"{name} {c.resolution:.2g} ({c.tolerance_basis})")
    return "resolution: " + ", ".join(parts)


def worst_elements_table(row: CaseResult, count: int = 5) -> str:
    """``CheckResult.table()`` with each input named, as the JSON and HTML reports name it."""
    assert row.check is not None
    rows = []
    for c in row.check.inputs:
        if c.verdict is Verdict.PASS and row.check.verdict is not Verdict.PASS:
            continue
        for element in c.worst_elements(count):
            name = input_name(row, c.position)
            rows.append([name, *(element[key] for _, key in WORST_ELEMENT_COLUMNS)])
    headers = ["input", *(header for header, _ in WORST_ELEMENT_COLUMNS)]
    return tabulate(rows, headers=headers, floatfmt=".6g")


def _run_summary(run: DescentRun) -> str:
    params = ", ".join(
        f"{name} = {', '.join(f'{v:.6g}' for v in values)}" for name, values in run.params.items()
    )
    readout = "".join(f", {name} = {value:.6g}" for name, value in run.readout.items())
    last = f", final loss {run.losses[-1]:.3g}" if run.losses else ""
    return params + readout + last


def text_lines(result: RunResult, tablefmt: str = "simple") -> list[str]:
    """The report as lines: the table, details of each row not as expected, the summary."""
    lines = _table(result, tablefmt).splitlines()
    for row in result.rows:
        if not row.ok:
            lines.append("")
            lines.extend(detail_lines(row))
    lines.extend(unreported_lines(result))
    lines.append("")
    lines.append(summary_line(result))
    return lines


def unreported_lines(result: RunResult) -> list[str]:
    """Every row that never reported, a line each, after a blank line and a heading."""
    if not result.unreported:
        return []
    heading = "NEVER REPORTED (not run, or lost with the process that ran it):"
    return ["", heading, *(f"  {printable(row_id)}" for row_id in result.unreported)]


def render_text(result: RunResult) -> str:
    return "\n".join(text_lines(result)) + "\n"


def render_markdown(result: RunResult) -> str:
    """A GitHub-flavoured Markdown report: title, table, summary, details in code blocks."""
    table = _table(result, "github", markdown_cell)
    lines = ["# gradcheck report", "", table, "", f"**{summary_line(result)}**"]
    failing = [row for row in result.rows if not row.ok]
    if failing:
        lines += ["", "## Not as expected", ""]
        for row in failing:
            details = detail_lines(row)
            lines += [fence(details), *details, fence(details), ""]
    if result.unreported:
        lines += ["", "## Never reported", ""]
        lines += [f"* {markdown_cell(row_id)}" for row_id in result.unreported]
    return "\n".join(lines).rstrip("\n") + "\n"


# -- JSON -------------------------------------------------------------------------------------


def _float(value: float | None) -> float | str | None:
    """JSON has no NaN or Infinity: those become the strings 'NaN', 'Infinity', '-Infinity'."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _floats(values: Iterable[Any]) -> list[Any]:
    return [_floats(v) if isinstance(v, list) else _float(v) for v in values]


def _check_json(row: CaseResult) -> dict[str, Any] | None:
    c = row.check
    if c is None:
        return None
    inputs = []
    for comparison in c.inputs:
        entry: dict[str, Any] = {
            "position": comparison.position,
            "name": row.wrt[comparison.position] if comparison.position < len(row.wrt) else None,
            "shape": list(comparison.shape),
            "dtype": comparison.dtype,
            "verdict": str(comparison.verdict),
            "max_abs_error": _float(comparison.max_abs_error),
            "max_rel_error": _float(comparison.max_rel_error),
            "max_error_estimate": _float(comparison.max_error_estimate),
            "worst_index": list(comparison.worst_index),
            "worst_analytic": _float(comparison.worst_analytic),
            "worst_numeric": _float(comparison.worst_numeric),
            "worst_error_estimate": _float(comparison.worst_error_estimate),
            "worst_tolerance": _float(comparison.worst_tolerance),
            "rtol": _float(comparison.rtol),
            "atol": _float(comparison.atol),
            "tolerance_basis": comparison.tolerance_basis,
            "tolerance_note": comparison.tolerance_note,
            "resolution": _float(comparison.resolution),
            "absolute_resolution": _float(comparison.absolute_resolution),
            "reasons": list(comparison.reasons),
        }
        if comparison.analytic.size <= JSON_ARRAY_LIMIT:
            entry["analytic"] = _floats_of(comparison.analytic.tolist())
            entry["numeric"] = _floats_of(comparison.numeric.tolist())
        if comparison.elements is not None:  # mode 'screen': the arrays hold these elements
            entry["elements"] = [int(i) for i in comparison.elements]
        inputs.append(entry)
    return {
        "policy": c.numerics.policy,
        "policy_reason": c.numerics.policy_reason,
        "evaluation_dtype": c.numerics.evaluation_dtype,
        "evaluations": c.evaluations,
        "mode": c.mode,
        "path": c.numerics.path,
        "refined": list(c.numerics.refined),
        "inputs": inputs,
        "beyond": None
        if c.beyond is None
        else {
            "modes": list(c.beyond.modes),
            "order": c.beyond.order,
            "verdict": str(c.beyond.verdict),
            "failed": list(c.beyond.failed),
            "reasons": list(c.beyond.reasons),
        },
    }


def _floats_of(value: Any) -> Any:
    return _floats(value) if isinstance(value, list) else _float(value)


def _run_json(run: DescentRun) -> dict[str, Any]:
    return {
        "gradient": run.gradient,
        "params": {name: _floats(values) for name, values in run.params.items()},
        "readout": {name: _float(value) for name, value in run.readout.items()},
        "losses": _floats(run.losses),
        "max_error_estimate": _float(run.max_error_estimate),
    }


def _descent_json(row: CaseResult) -> dict[str, Any] | None:
    d = row.descent
    if d is None:
        return None
    return {
        "rtol": _float(d.rtol),
        "target": {name: _float(value) for name, value in d.target.items()},
        "target_atol": _float(d.target_atol),
        "analytic": _run_json(d.analytic),
        "numerical": _run_json(d.numerical),
    }


def row_json(row: CaseResult) -> dict[str, Any]:
    """One row as JSON-ready data (no traceback: it holds machine-specific paths)."""
    return {
        "id": row.id,
        "case": row.case,
        "source": row.source,
        "dtype": row.dtype,
        "kind": row.kind,
        "expected": row.expected,
        "verdict": row.verdict,
        "outcome": row.outcome,
        "ok": row.ok,
        "file": row.file,
        "line": row.line,
        "tags": list(row.tags),
        "seed": row.seed,
        "parameters": row.parameters,
        "description": row.description,
        "max_abs_error": _float(row.max_abs_error),
        "max_rel_error": _float(row.max_rel_error),
        "error_estimate": _float(row.error_estimate),
        "tolerance": _float(row.tolerance),
        "reasons": list(row.reasons),
        "error": row.error,
        "check": _check_json(row),
        "descent": _descent_json(row),
    }


def render_json(result: RunResult, *, timestamp: str | None = None) -> str:
    """The JSON report; byte-identical for a given seed and cases (no timestamp unless given)."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "gradcheck",
        "seed": result.seed,
        "ok": result.ok,
        "exit_code": result.exit_code,
        "counts": result.counts,
        "summary": summary_line(result),
        "load_errors": [
            {"path": e.path, "line": e.line, "error": e.error} for e in result.load_errors
        ],
        "rows": [row_json(row) for row in result.rows],
    }
    if result.interrupted:  # absent otherwise, so that complete reports keep their bytes
        document["interrupted"] = True
    if result.unreported:  # likewise
        document["unreported"] = list(result.unreported)
    if timestamp is not None:
        document["generated_at"] = timestamp
    text = json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False)
    # A lone surrogate (only ever inside a string) as its JSON escape: the file is UTF-8.
    return no_surrogates(_NUMBER_LIST.sub(_one_line, text)) + "\n"


# A JSON list of numbers (or null/"NaN"/"Infinity"/"-Infinity"), which indent=2 would spread
# one number a line: loss curves of a thousand epochs read and diff better on one line.
_SCALAR = r'(?:-?\d[\d.eE+-]*|null|"NaN"|"-?Infinity")'
_NUMBER_LIST = re.compile(r"\[\s*" + _SCALAR + r"(?:\s*,\s*" + _SCALAR + r")*\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(part.strip() for part in match.group(0)[1:-1].split(",")) + "]"


# -- JUnit XML --------------------------------------------------------------------------------


def render_junit(result: RunResult) -> str:
    """JUnit XML: one testcase per case x source x dtype (and per module that failed to load).

    Not as expected -> <failure>; an exception -> <error>; an expected failure -> <skipped>
    (as pytest reports xfail). No timings, so the file is reproducible.
    """
    counts = result.counts
    attrs = {
        "name": "gradcheck",
        "tests": str(len(result.rows) + len(result.unreported)),
        "failures": str(counts["failed"] + counts["xpassed"]),
        "errors": str(counts["error"] + len(result.unreported)),
        "skipped": str(counts["xfailed"]),
    }
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", attrs)
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "seed", "value": str(result.seed)})
    if result.interrupted:
        ET.SubElement(properties, "property", {"name": "interrupted", "value": "true"})
    for row in result.rows:
        _junit_testcase(suite, row)
    for row_id in result.unreported:
        testcase = ET.SubElement(suite, "testcase", {"classname": "gradcheck.unreported"})
        testcase.set("name", xml_text(row_id))
        message = "never reported: not run, or lost with the process that ran it"
        ET.SubElement(testcase, "error", {"message": message})
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _junit_testcase(suite: ET.Element, row: CaseResult) -> None:
    """One <testcase>; every text goes through :func:`xml_text` (no ANSI ESC in the file)."""
    testcase = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": f"gradcheck.{row.kind}",
            "name": xml_text(row.id),
            "file": xml_text(row.file),
            "line": str(row.line),
        },
    )
    details = "\n".join(detail_lines(row))
    if row.outcome == "error":
        element = ET.SubElement(testcase, "error", {"message": xml_text(row.error or "error")})
        element.text = xml_text(details + ("\n\n" + row.traceback if row.traceback else ""))
    elif row.outcome in ("failed", "xpassed"):
        element = ET.SubElement(testcase, "failure", {"message": xml_text(headline(row))})
        element.text = xml_text(details)
    elif row.outcome == "xfailed":
        ET.SubElement(testcase, "skipped", {"type": "xfail", "message": f"expected {row.expected}"})
