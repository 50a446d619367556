"""The examples in the README and the documentation pages run as written, and print what the
page says they print.

Sybil reads the pages: every fenced ``python`` block runs, in order, in one namespace per page
(a later block may use what an earlier one defined), in a scratch working directory. A block
that starts with ``>>>`` is a doctest: what it prints (a summary line, a verdict, a failure
message) is compared with the page, so a stale number fails the suite (``...`` stands for
text that is not the point). A block that is deliberately not run says so on the line before
its fence: ``<!-- skip: next -->``, with the reason beside it. Test files among the examples
(the fixture, hypothesis) also run under pytest, as a user's tests would; the pre-commit hook
shown is the one this repository publishes.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import hypothesis.internal.observability  # noqa: F401  # pytester in-process: see test_plugin.py
import numpy  # noqa: F401
import pytest
import torch
from sybil import Sybil
from sybil.example import SybilFailure
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<marker><!-- skip: next(?P<why>[^>]*)-->\n)?```python\n", re.M)
SYBIL = Sybil(
    parsers=[
        PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE),
        SkipParser(),
    ]
)


def python_blocks(page: Path) -> list[tuple[int, str | None]]:
    """(line, the skip marker's reason or None) for every fenced python block of a page."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m["why"]) for m in FENCE.finditer(text)]


def block_after(page: Path, heading: str, language: str = "python") -> str:
    """The first fenced ``language`` block after ``heading`` in a page."""
    text = page.read_text()
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, text.index(heading))
    assert match is not None, f"no {language} block after {heading!r} in {page.name}"
    return match[1]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_python_example_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    document = SYBIL.parse(page)
    document.namespace["__name__"] = f"example_{page.stem}"
    for example in document.examples():
        example.evaluate()


def test_the_pages_have_examples_and_none_is_left_out_silently():
    blocks = {page.name: python_blocks(page) for page in PAGES}
    assert len(blocks["README.md"]) >= 4
    assert sum(len(b) for b in blocks.values()) >= 10
    skipped = [(name, line) for name, b in blocks.items() for line, why in b if why is not None]
    assert skipped == []  # every example runs today; a marker must say why if one cannot


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "pytest.md"])
def test_the_fixture_example_passes_as_written(pytester, page):
    pytester.makepyfile(test_layers=block_after(page, "The `gradcheck` fixture"))
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_hypothesis_example_passes_as_written(pytester):
    code = block_after(ROOT / "docs" / "pytest.md", "## Property-based checks with hypothesis")
    pytester.makepyfile(test_property=code)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_readmes_case_module_runs_under_the_cli_and_pytest(pytester):
    (pytester.path / "cases").mkdir()
    code = block_after(ROOT / "README.md", "## Cases, the command line and `pytest --gradcheck`")
    (pytester.path / "cases" / "layers.py").write_text(code)
    pytester.runpytest("--gradcheck", "cases").assert_outcomes(passed=4, xfailed=2)


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "ci.md"])
def test_the_local_pre_commit_hook_matches_the_published_one(page):
    text = page.read_text()
    config = text[text.index("repos:\n  - repo: local") :].split("```")[0]
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    field = re.compile(r"^\s*-?\s*(id|name|entry|language|pass_filenames|types): (.+)$", re.M)
    assert dict(field.findall(config)) == dict(field.findall(hooks))


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "ci.md"])
def test_the_github_workflow_runs_gradcheck_with_annotations(page):
    workflow = block_after(page, "GitHub Actions", "yaml")
    assert "gradcheck run --github" in workflow


def test_the_readme_stays_short_and_links_every_documentation_page():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= 300
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"(docs/{page.name})" in readme, page.name


def run_page(page: Path) -> None:
    document = SYBIL.parse(page)
    document.namespace["__name__"] = f"example_{page.stem}"
    for example in document.examples():
        example.evaluate()


def test_a_stale_number_printed_in_the_readme_fails_the_suite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "README.md").read_text()
    printed = re.search(r"^pass: .*max abs err (?P<value>[0-9.e+-]+),", text, re.M)
    assert printed is not None, "the README prints a summary line in a doctest"
    stale = tmp_path / "README.md"
    stale.write_text(text.replace(printed[0], printed[0].replace(printed["value"], "7.51e-12")))
    with pytest.raises(SybilFailure, match=r"max abs err 7\.51e-12"):
        run_page(stale)
    run_page(ROOT / "README.md")  # and the README as it is passes


def test_the_fixtures_failure_shown_in_the_pytest_page_is_what_pytest_prints(pytester):
    page = ROOT / "docs" / "pytest.md"
    text = page.read_text()
    shown = block_after(page, "With a sign slip in `softplus_grad`", "").splitlines()
    test = block_after(page, "The `gradcheck` fixture").replace(
        "1.0 / (1.0 + np.exp(-x))", "1.0 / (1.0 + np.exp(x))  # the sign slip"
    )
    test = re.sub(r"\bsoftplus_grad\b", "softplus_grad_wrong", test)
    test = re.sub(r"\btest_softplus_gradient\b", "test_softplus_gradient_wrong", test)
    assert "the sign slip" in test and "With a sign slip" in text
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_layers.py").write_text(test)
    printed = [
        line for line in pytester.runpytest("-p", "no:cacheprovider").outlines if line[:1] == "E"
    ]
    assert_shown(shown, printed)


def assert_shown(shown: list[str], printed: list[str]) -> None:
    """Every line shown is printed, in order ('...' stands for rows left out); a table row is
    compared without its tolerance, which holds the error bar, whose last digits are f's
    rounding on this machine."""

    def key(line: str) -> list[str]:
        words = line.split()
        row = re.match(r"(E\s+)?\s*\w+( \(\w+\))?\s+\(\d[\d, ]*\)\s+-?\d", line)
        return words[:-2] + words[-1:] if row else words

    wanted = [key(line) for line in shown if line.split()[-1:] != ["..."]]
    got = [key(line) for line in printed]
    assert len(wanted) >= 8
    position = 0
    for want in wanted:
        assert want in got[position:], (want, printed)
        position = got.index(want, position) + 1


def test_a_case_failure_shown_in_the_pytest_page_is_what_pytest_prints(pytester):
    shown = block_after(ROOT / "docs" / "pytest.md", "traceback into gradcheck:", "")
    project = ROOT / "tests" / "sample_project"
    for path in project.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = pytester.path / path.relative_to(project)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    result = pytester.runpytest("-p", "no:cacheprovider", "--gradcheck", "-k", "tanh and float64")
    assert_shown(shown.splitlines()[1:], result.outlines)


def test_the_report_table_shown_in_the_cli_page_is_what_gradcheck_prints(capsys, monkeypatch):
    from gradcheck.cli import main

    shown = block_after(ROOT / "docs" / "cli.md", "The table, as one machine printed it", "")
    command, *table = shown.rstrip("\n").splitlines()
    assert command.startswith("$ gradcheck run")
    monkeypatch.chdir(ROOT)
    assert main(command.split()[2:]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()

    def key(line: str) -> list[str]:
        cells = re.split(r"\s{2,}", line.strip())
        return cells[:6] + cells[8:] if len(cells) == 9 else cells  # no error bar, tolerance

    assert [key(line) for line in printed] == [key(line) for line in table]
