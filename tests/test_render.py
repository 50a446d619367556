"""Render: reports are pure functions of a RunResult; every format parses; files appear whole."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gradcheck import case, normal
from gradcheck._cases.registry import LoadError
from gradcheck._cases.runner import run_cases
from gradcheck._report.formats import EXTENSIONS, FORMATS, format_for_path
from gradcheck._report.render import render_report, write_atomic
from gradcheck._report.text import (
    HEADERS,
    render_json,
    render_junit,
    render_markdown,
    render_text,
    summary_line,
    text_lines,
    verdict_label,
)


def square(x):
    return (x**2).sum()


CASES = [
    case(name="good", f=square, inputs={"x": normal(3)}, grad=lambda x: 2 * x),
    case(name="known_bad", f=square, inputs={"x": np.ones(2)}, grad=lambda x: x, expect="fail"),
    case(name="wrong", f=square, inputs={"x": np.array([3.0, 4.0])}, grad=lambda x: 2.5 * x),
    case(name="raises", f=lambda x: 1 / 0, inputs={"x": np.ones(2)}, grad=lambda x: x),
]
BROKEN = LoadError(path="cases/broken.py", line=7, error="RuntimeError: boom", traceback="tb")


@pytest.fixture(scope="module")
def result():
    return run_cases(CASES, seed=11, dtypes=["float64"], load_errors=[BROKEN])


def test_the_text_table_has_the_issues_columns_and_ends_with_a_summary_printing_the_seed(result):
    lines = text_lines(result)
    for header in HEADERS:
        assert header in lines[0]
    assert lines[-1] == summary_line(result)
    assert "seed 11" in lines[-1] and "--seed 11" in lines[-1]
    assert "1 passed, 1 xfailed, 1 failed, 2 error" in lines[-1]
    assert "1 module(s) failed to load" in lines[-1]


def test_verdict_labels_say_expected_failures_and_shout_what_is_not_as_expected(result):
    labels = {row.case: verdict_label(row) for row in result.rows}
    assert labels == {
        "good": "pass",
        "known_bad": "fail (expected)",
        "wrong": "FAIL",
        "raises": "ERROR",
        "cases/broken.py": "ERROR",
    }


def test_rows_not_as_expected_are_explained_below_the_table_with_their_worst_elements(result):
    text = render_text(result)
    assert "FAIL: wrong[formula-float64] (tests/test_render.py:" in text
    assert "analytic" in text and "numeric" in text  # the worst-element table's header
    assert "ZeroDivisionError: division by zero" in text
    assert "ERROR: cases/broken.py:7: the case module failed to import" in text
    assert "known_bad[" not in text.split("\n\n", 1)[1]  # an expected failure needs no story


def test_markdown_is_a_github_table_with_the_summary(result):
    md = render_markdown(result)
    assert md.startswith("# gradcheck report\n")
    assert "| case " in md and ("|:-" in md or "|--" in md)
    assert f"**{summary_line(result)}**" in md
    assert "## Not as expected" in md


def test_json_parses_and_carries_the_schema_version_seed_and_rows(result):
    document = json.loads(render_json(result))
    assert document["schema_version"] == 1
    assert document["seed"] == 11
    assert document["exit_code"] == 2
    assert document["counts"] == {"passed": 1, "xfailed": 1, "failed": 1, "xpassed": 0, "error": 2}
    rows = {row["id"]: row for row in document["rows"]}
    wrong = rows["wrong[formula-float64]"]
    assert wrong["verdict"] == "fail" and wrong["ok"] is False
    assert wrong["check"]["inputs"][0]["name"] == "x"
    assert wrong["check"]["inputs"][0]["analytic"] == [7.5, 10.0]
    assert rows["raises[formula-float64]"]["error"] == "ZeroDivisionError: division by zero"
    assert document["load_errors"] == [
        {"path": "cases/broken.py", "line": 7, "error": "RuntimeError: boom"}
    ]
    assert "generated_at" not in document


def test_json_is_byte_identical_for_a_seed_and_differs_for_another():
    first = render_json(run_cases(CASES[:1], seed=3))
    again = render_json(run_cases(CASES[:1], seed=3))
    other = render_json(run_cases(CASES[:1], seed=4))
    assert first == again
    assert first != other


def test_json_records_a_timestamp_only_when_asked(result):
    assert (
        json.loads(render_json(result, timestamp="2026-01-01T00:00:00+00:00"))["generated_at"]
        == "2026-01-01T00:00:00+00:00"
    )


def test_json_writes_non_finite_numbers_as_strings_that_strict_parsers_accept():
    c = case(
        name="nan",
        f=lambda x: (x**2).sum() * np.nan,
        inputs={"x": np.ones(2)},
        grad=lambda x: 2 * x,
    )
    text = render_json(run_cases([c], dtypes=["float64"]))
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))
    assert '"NaN"' in text


def test_junit_has_one_testcase_per_row_with_failures_errors_and_skips(result):
    root = ET.fromstring(render_junit(result))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [row.id for row in result.rows]
    assert suite.get("tests") == "5" and suite.get("failures") == "1"
    assert suite.get("errors") == "2" and suite.get("skipped") == "1"
    by_name = {c.get("name"): c for c in cases}
    assert by_name["wrong[formula-float64]"].find("failure") is not None
    assert by_name["raises[formula-float64]"].find("error") is not None
    assert by_name["known_bad[formula-float64]"].find("skipped") is not None
    assert list(by_name["good[formula-float64]"]) == []
    assert suite.find("properties/property").get("value") == "11"


def test_formats_are_named_by_extension():
    assert [format_for_path(p) for p in ("r.md", "r.json", "r.xml", "r.txt", "R.HTML")] == [
        "markdown",
        "json",
        "junit",
        "text",
        "html",
    ]
    assert format_for_path("report", "json") == "json"
    with pytest.raises(ValueError, match=r"cannot tell the report format of 'r\.pdf'"):
        format_for_path("r.pdf")


def test_render_refuses_an_unknown_format(result):
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        render_report(result, "yaml")


def test_write_atomic_writes_the_whole_text_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "report.md"
    write_atomic(target, "hello\n")
    assert target.read_text() == "hello\n"
    assert os.listdir(target.parent) == ["report.md"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    target.write_text("old\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["report.md"]


def test_the_worst_element_table_names_each_input_as_the_case_declares_it():
    two = case(
        name="two_inputs",
        f=lambda weight, bias: (weight**2).sum() + (bias**3).sum(),
        inputs={"weight": np.array([1.0, 2.0]), "bias": np.array([0.5, -1.0])},
        grad=lambda weight, bias: (2 * weight, 2 * bias),  # bias: should be 3 bias**2
    )
    run = run_cases([two], seed=0, dtypes=["float64"])
    (row,) = run.rows
    table = [line.split() for line in render_text(run).splitlines()]
    worst = [line for line in table if line[:1] in (["weight"], ["bias"])]
    assert worst and all(line[0] == "bias" for line in worst), worst  # weight passes
    assert row.verdict == "fail"


def test_every_report_format_renders_and_every_extension_names_one(result, tmp_path):
    assert set(EXTENSIONS.values()) == set(FORMATS)
    for fmt in FORMATS:
        text = render_report(result, fmt)
        assert "wrong" in text and "raises" in text, fmt
