"""The README's "Use with pytest" and "Use in CI" sections run as written."""

from __future__ import annotations

import re
from pathlib import Path

import hypothesis.internal.observability  # noqa: F401  # pytester in-process: see test_plugin.py
import numpy  # noqa: F401

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block_after(heading: str, language: str) -> str:
    """The first fenced ``language`` block after ``heading`` in the README."""
    start = README.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match is not None, f"no {language} block after {heading!r}"
    return match[1]


def test_the_fixture_example_passes_as_written(pytester):
    pytester.makepyfile(test_layers=block_after("### The `gradcheck` fixture", "python"))
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_hypothesis_example_passes_as_written(pytester):
    code = block_after("### Property-based checks with hypothesis", "python")
    pytester.makepyfile(test_property=code)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_local_pre_commit_hook_matches_the_published_one():
    local = block_after("## Use in CI", "yaml")  # the workflow comes first
    config = README[README.index("repos:\n  - repo: local") :]
    hooks = (Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml").read_text()
    field = re.compile(r"^\s*-?\s*(id|name|entry|language|pass_filenames|types): (.+)$", re.M)
    assert "python -m gradcheck run --github" in local
    published = dict(field.findall(hooks))
    in_readme = dict(field.findall(config.split("```")[0]))
    assert in_readme == published
