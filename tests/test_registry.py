"""Load: case modules imported by path, cases collected and sorted, duplicates refused."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck._cases.registry import (
    DuplicateCaseError,
    RegistryError,
    default_paths,
    keyword_matcher,
    load,
    select,
)

HEADER = "import numpy as np\nfrom gradcheck import case\n"


def write(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def square_case(name: str) -> str:
    return f"case(name={name!r}, f=lambda x: (x**2).sum(), inputs={{'x': np.ones(2)}})"


def test_cases_bound_alone_or_in_lists_and_tuples_are_collected_sorted_by_name(tmp_path):
    write(
        tmp_path,
        "m.py",
        f"""
        zeta = {square_case("zeta")}
        pair = [{square_case("beta")}, {square_case("alpha")}]
        triple = ({square_case("gamma")},)
        not_a_case = 3
        """,
    )
    loaded = load([str(tmp_path)])
    assert [c.name for c in loaded.cases] == ["alpha", "beta", "gamma", "zeta"]
    assert loaded.errors == ()


def test_the_same_case_bound_twice_counts_once(tmp_path):
    write(tmp_path, "m.py", f"one = {square_case('one')}\nalias = one\nboth = [one]\n")
    assert [c.name for c in load([str(tmp_path)]).cases] == ["one"]


def test_two_cases_with_one_name_are_refused_naming_both_definitions(tmp_path):
    write(tmp_path, "a.py", f"first = {square_case('same')}\n")
    write(tmp_path, "b.py", f"\n\nsecond = {square_case('same')}\n")
    with pytest.raises(DuplicateCaseError) as info:
        load([str(tmp_path)])
    message = str(info.value)
    assert "two cases are named 'same'" in message
    assert f"{tmp_path / 'a.py'}:3" in message and f"{tmp_path / 'b.py'}:5" in message
    assert "rename one" in message


def test_a_module_that_fails_to_import_is_an_error_and_the_others_still_load(tmp_path):
    write(tmp_path, "good.py", f"good = {square_case('good')}\n")
    broken = write(tmp_path, "broken.py", "x = 1\nraise RuntimeError('boom')\n")
    write(tmp_path, "syntax.py", "def (:\n")
    loaded = load([str(tmp_path)])
    assert [c.name for c in loaded.cases] == ["good"]
    by_path = {Path(e.path).name: e for e in loaded.errors}
    assert set(by_path) == {"broken.py", "syntax.py"}
    assert by_path["broken.py"].error == "RuntimeError: boom"
    assert by_path["broken.py"].line == 4  # two header lines, then x = 1, then the raise
    assert by_path["broken.py"].path == str(broken.resolve())
    assert by_path["syntax.py"].error.startswith("SyntaxError")
    assert by_path["syntax.py"].line == 3
    assert "Traceback" in by_path["broken.py"].traceback


def test_a_module_calling_sys_exit_is_an_error_not_the_end_of_the_run(tmp_path):
    write(tmp_path, "exits.py", "import sys\nsys.exit(3)\n")
    write(tmp_path, "good.py", f"good = {square_case('good')}\n")
    loaded = load([str(tmp_path)])
    assert [c.name for c in loaded.cases] == ["good"]
    assert loaded.errors[0].error == "SystemExit: 3"


def test_underscore_files_are_helpers_that_case_modules_may_import(tmp_path):
    (tmp_path / "_helpers_for_registry_test.py").write_text("def double(x):\n    return 2 * x\n")
    write(
        tmp_path,
        "uses.py",
        """
        from _helpers_for_registry_test import double
        uses = case(name="uses", f=lambda x: (x**2).sum(), inputs={"x": np.ones(2)}, grad=double)
        """,
    )
    loaded = load([str(tmp_path)])
    assert [c.name for c in loaded.cases] == ["uses"]
    assert loaded.errors == ()
    assert str(tmp_path) not in sys.path  # the directory is on sys.path only while importing


def test_subdirectories_are_searched_and_single_files_accepted(tmp_path):
    write(tmp_path, "sub/deep.py", f"deep = {square_case('deep')}\n")
    top = write(tmp_path, "top.py", f"top = {square_case('top')}\n")
    assert [c.name for c in load([str(tmp_path)]).cases] == ["deep", "top"]
    assert [c.name for c in load([str(top)]).cases] == ["top"]


def test_a_missing_path_is_refused_with_what_to_give_instead(tmp_path):
    with pytest.raises(RegistryError, match="does not exist; give a directory of case modules"):
        load([str(tmp_path / "nowhere")])


def test_a_file_that_is_not_python_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RegistryError, match=r"is not a \.py file"):
        load([str(tmp_path / "notes.txt")])


def test_default_paths_come_from_pyproject_tool_gradcheck(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\npaths = ["checks", "more"]\n')
    monkeypatch.chdir(tmp_path)
    assert default_paths() == ["checks", "more"]


def test_default_paths_fall_back_to_cases_without_configuration(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    assert default_paths() == ["cases"]
    (tmp_path / "pyproject.toml").unlink()
    assert default_paths() == ["cases"]


def test_a_bad_paths_setting_is_refused(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.gradcheck]\npaths = 3\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError, match="must be a list of strings"):
        default_paths()


def test_load_without_paths_uses_the_configured_directory(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\npaths = ["checks"]\n')
    write(tmp_path, "checks/c.py", f"c = {square_case('configured')}\n")
    monkeypatch.chdir(tmp_path)
    assert [c.name for c in load().cases] == ["configured"]


class Named:
    def __init__(self, name: str, tags: tuple[str, ...] = ()) -> None:
        self.name, self.tags = name, tags


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("seed003", ["seed003_a", "seed003_bad"]),
        ("seed003 and not bad", ["seed003_a"]),
        ("seed000 or bad", ["seed000_x", "seed003_bad"]),
        ("not (seed000 or seed003)", ["other"]),
        ("SEED000", ["seed000_x"]),
        ("slow", ["other"]),  # a tag matches too
    ],
)
def test_keyword_expressions_combine_words_like_pytest_k(expression, expected):
    items = [
        Named("seed000_x"),
        Named("seed003_a"),
        Named("seed003_bad"),
        Named("other", ("slow",)),
    ]
    match = keyword_matcher(expression)
    assert [i.name for i in items if match(i)] == expected


@pytest.mark.parametrize("expression", ["", "a and", "(a", "a b", "and a", "a )"])
def test_a_malformed_keyword_expression_is_refused(expression):
    with pytest.raises(ValueError, match="-k"):
        keyword_matcher(expression)


def test_select_filters_by_keyword_and_by_any_tag(tmp_path):
    write(
        tmp_path,
        "m.py",
        """
        a = case(name="a1", f=lambda x: x.sum(), inputs={"x": np.ones(1)}, tags=["t1"])
        b = case(name="b1", f=lambda x: x.sum(), inputs={"x": np.ones(1)}, tags=["t2"])
        c = case(name="a2", f=lambda x: x.sum(), inputs={"x": np.ones(1)})
        """,
    )
    cases = load([str(tmp_path)]).cases
    assert [c.name for c in select(cases, "a")] == ["a1", "a2"]
    assert [c.name for c in select(cases, tags=["t1", "t2"])] == ["a1", "b1"]
    assert [c.name for c in select(cases, "a", ["t2"])] == []
