"""gradcheck run --github: workflow-command annotations at the case's definition, the step summary,
the pre-commit hook, and a sample user project whose custom autograd.Function is wrong."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gradcheck import case
from gradcheck._cases.runner import run, run_cases
from gradcheck._report.github import (
    annotation_lines,
    emit,
    escape_data,
    escape_property,
    repository_path,
)
from gradcheck.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).resolve().parent / "sample_project"


def line_of(path: Path, start: str) -> int:
    """The 1-based number of the first line of ``path`` that starts with ``start``."""
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.lstrip().startswith(start))


def squared(x):
    return np.sum(x**2)


doubled = case(name="doubled", f=squared, inputs={"x": np.array([1.0, 2.0])}, grad=lambda x: x)
correct = case(name="correct", f=squared, inputs={"x": np.array([1.0, 2.0])}, grad=lambda x: 2 * x)
known = case(name="known", f=squared, inputs={"x": np.ones(2)}, grad=lambda x: x, expect="fail")


def test_data_escapes_percent_and_line_breaks_as_githubs_toolkit_does():
    assert escape_data("100% sure\r\nnext: a, b") == "100%25 sure%0D%0Anext: a, b"


def test_properties_also_escape_colon_and_comma():
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_a_row_not_as_expected_becomes_one_error_at_its_case_definition(monkeypatch):
    monkeypatch.chdir(REPO)
    result = run_cases([doubled, correct, known], dtypes=["float64"])
    lines = annotation_lines(result, workspace=str(REPO))
    assert len(lines) == 1, lines  # the passing and the expected failure say nothing
    line = line_of(Path(__file__), "doubled = case(")
    prefix = (
        f"::error file=tests/test_github.py,line={line},"
        "title=gradcheck FAIL%3A doubled[formula-float64]::"
        f"FAIL: doubled[formula-float64] (tests/test_github.py:{line})%0A"
        "  x: fail at 2 of 2 elements%0A  fail: formula vs"
    )
    assert lines[0].startswith(prefix), lines[0]
    assert "\n" not in lines[0]
    assert re.search(r"%0A +x +\(1,\) +2 +4 +2 +0\.5 +\S+ +fail", lines[0]), lines[0]


def test_a_module_that_fails_to_import_is_annotated_at_the_failing_line(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("import math\n\nvalue = math.sqrt(-1)\n")
    monkeypatch.chdir(tmp_path)
    lines = annotation_lines(run([str(tmp_path)]), workspace=str(tmp_path))
    assert lines == [
        "::error file=broken.py,line=3,title=gradcheck ERROR%3A broken.py::"
        "ERROR: broken.py:3: the case module failed to import%0A  ValueError: math domain error"
    ]


def test_paths_are_made_relative_to_the_workspace_and_others_are_left_as_they_are(tmp_path):
    inside = tmp_path / "cases" / "ops.py"
    assert repository_path(str(inside), str(tmp_path)) == "cases/ops.py"
    assert repository_path("/elsewhere/ops.py", str(tmp_path)) == "/elsewhere/ops.py"


def test_the_step_summary_gets_the_markdown_report_appended(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    out = io.StringIO()
    result = run_cases([doubled, correct], dtypes=["float64"])
    emit(result, out, {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(REPO)})
    text = summary.read_text()
    assert text.startswith("# earlier step\n# gradcheck report\n")
    assert re.search(r"^\| doubled +\| formula +\| float64 +\| +2 \|.*\| FAIL +\|$", text, re.M)
    assert "## Not as expected" in text
    assert out.getvalue().count("::error ") == 1


def test_without_a_step_summary_only_the_annotations_are_printed(monkeypatch):
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    emit(run_cases([doubled], dtypes=["float64"]), out, {})
    assert out.getvalue().startswith("::error file=tests/test_github.py,")
    assert out.getvalue().count("\n") == 1


def test_the_cli_prints_annotations_after_the_report_with_github(tmp_path, monkeypatch, capsys):
    module = tmp_path / "cases" / "mine.py"
    module.parent.mkdir()
    module.write_text(
        "import numpy as np\nfrom gradcheck import case\n\n"
        "half = case(name='half', f=lambda x: (x ** 2).sum(), inputs={'x': np.ones(2)},\n"
        "            grad=lambda x: x, dtypes=['float64'])\n"
    )
    summary = tmp_path / "summary.md"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    assert main(["run", "--github", "-q"]) == 1
    out = capsys.readouterr().out.splitlines()
    token = out[0].removeprefix("::stop-commands::")  # the report is printed with commands off
    assert len(token) == 32 and out[3] == f"::{token}::"
    assert out[1] == "cases/mine.py:4: FAIL: half[formula-float64]"  # --quiet names the case
    assert out[2].startswith("gradcheck: 1 rows NOT as expected")
    assert out[4].startswith(
        "::error file=cases/mine.py,line=4,title=gradcheck FAIL%3A half[formula-float64]::"
    )
    assert summary.read_text().startswith("# gradcheck report\n")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    assert main(["run", "-q"]) == 1
    assert "::error" not in capsys.readouterr().out  # annotations only when asked


# -- the sample user project, end to end -------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of tests/sample_project: mylib's Tanh has a wrong backward, its Cube a right one."""
    target = tmp_path / "project"
    shutil.copytree(SAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
    return target


def test_github_run_on_the_sample_project_points_at_the_wrong_backwards_case(project, tmp_path):
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(project)}
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck", "run", "--github"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    line = line_of(project / "gradient_cases" / "functions.py", "tanh = case(")
    errors = [row for row in done.stdout.splitlines() if row.startswith("::error ")]
    assert [e.split("::")[1] for e in errors] == [
        f"error file=gradient_cases/functions.py,line={line},"
        f"title=gradcheck FAIL%3A tanh[autograd-{dtype}]"
        for dtype in ("float64", "float32")
    ]
    assert "cube" not in "".join(errors)
    report = summary.read_text()
    assert re.search(r"^\| cube +\| autograd +\| float64 .*\| pass +\|$", report, re.M)
    assert re.search(r"^\| tanh +\| autograd +\| float64 .*\| FAIL +\|$", report, re.M)


def test_the_pre_commit_hook_stops_a_commit_of_the_wrong_backward(project):
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text()
    fields = dict(re.findall(r"^\s*-?\s*(id|entry|language|pass_filenames): (.+)$", hooks, re.M))
    assert fields == {
        "id": "gradcheck",
        "entry": "python -m gradcheck run --quiet",
        "language": "system",
        "pass_filenames": "false",
    }
    command = shlex.split(fields["entry"])
    done = subprocess.run(
        [sys.executable, *command[1:]], cwd=project, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[:2] == [  # each failing case with the line defining it
        "gradient_cases/functions.py:9: FAIL: tanh[autograd-float64]",
        "gradient_cases/functions.py:9: FAIL: tanh[autograd-float32]",
    ]
    assert done.stdout.splitlines()[2].startswith(
        "gradcheck: 4 rows NOT as expected: 2 passed, 2 failed;"
    )
