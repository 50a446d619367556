"""The pytest plugin end to end (pytester): the fixture, the seed, the options, cases as items."""

from __future__ import annotations

import difflib
import json
import re
import textwrap
import xml.etree.ElementTree as ET

import hypothesis.internal.observability  # noqa: F401  # see below
import numpy  # noqa: F401
import pytest

import gradcheck._plugin.items  # noqa: F401
from gradcheck._plugin.fixture import seed_for_test

# pytester's in-process runs drop the modules they imported when they end, so these are
# imported here, before any run: NumPy cannot be imported twice in one process; a re-imported
# gradcheck._cases.case would make Case a new class that cases built through gradcheck.case (cached
# in the package) are not instances of; and hypothesis's pytest plugin imports hypothesis at
# the end of every run, which would otherwise cost a second a run.

GOOD_AND_BAD = """
    import numpy as np
    from gradcheck import case

    square = case(
        name="square",
        f=lambda x: (x ** 2).sum(),
        inputs={"x": np.array([3.0, 4.0])},
        grad=lambda x: 2 * x,
    )

    def triple(x):
        return 3 * x  # d/dx sum(x**2) is 2x: wrong by x

    tripled = case(
        name="tripled",
        f=lambda x: (x ** 2).sum(),
        inputs={"x": np.array([3.0, 4.0])},
        grad=triple,
        dtypes=["float64"],
        tags=["demo"],
    )

    halved = case(
        name="halved",
        f=lambda x: (x ** 2).sum(),
        inputs={"x": np.array([3.0, 4.0])},
        grad={"half": lambda x: x},
        dtypes=["float64"],
        expect="fail",
    )
"""

PASSING = """
    import numpy as np
    from gradcheck import case, normal

    cube = case(
        name="cube",
        f=lambda x: (x ** 3).sum(),
        inputs={"x": normal(3)},
        grad=lambda x: 3 * x ** 2,
    )
"""


def write_cases(pytester: pytest.Pytester, folder: str = "cases", **modules: str) -> None:
    for name, source in modules.items():
        path = pytester.path / folder / f"{name}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


# -- header, seed, fixture ---------------------------------------------------------------------


def test_the_header_prints_the_default_seed_and_how_to_replay_it(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["gradcheck: seed 0 (the default; replay with --gradcheck-seed=0)"])


def test_gradcheck_seed_sets_the_session_seed(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest("--gradcheck-seed=1234")
    result.stdout.fnmatch_lines(["gradcheck: seed 1234 (from --gradcheck-seed; *=1234)"])


def test_gradcheck_seed_random_picks_a_seed_and_prints_it(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    first = pytester.runpytest("--gradcheck-seed=random").stdout.str()
    second = pytester.runpytest("--gradcheck-seed=random").stdout.str()
    pattern = r"gradcheck: seed (\d+) \(random; replay with --gradcheck-seed=\1\)"
    seeds = [re.search(pattern, out) for out in (first, second)]
    assert all(seeds), first
    assert seeds[0][1] != seeds[1][1]  # type: ignore[index]  # 1 in 2**32 to collide


@pytest.mark.parametrize("value", ["abc", "-1", str(2**32)])
def test_a_bad_seed_is_a_usage_error_that_says_what_to_give(pytester, value):
    result = pytester.runpytest(f"--gradcheck-seed={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*{value!r} is not a seed; give an integer in [[]0, 2**32) or 'random'"]
    )


FIXTURE_TESTS = """
    def test_first(gradcheck):
        print("SEEDS", gradcheck.session_seed, gradcheck.seed, repr(gradcheck.rng.random()))

    def test_second(gradcheck):
        print("SEEDS", gradcheck.session_seed, gradcheck.seed, repr(gradcheck.rng.random()))
"""


def fixture_seeds(pytester: pytest.Pytester, *args: str) -> dict[str, tuple[str, ...]]:
    pytester.makepyfile(test_seeds=FIXTURE_TESTS)
    result = pytester.runpytest("-s", "-v", *args)
    result.assert_outcomes(passed=2)
    return {
        match[0]: match[1:]
        for match in re.findall(r"(test_\w+) SEEDS (\d+) (\d+) (\S+)", result.stdout.str())
    }


def test_the_fixture_seed_derives_from_the_session_seed_and_the_test_id(pytester):
    default = fixture_seeds(pytester)
    assert default == fixture_seeds(pytester)  # replayable
    other = fixture_seeds(pytester, "--gradcheck-seed=5")
    assert default["test_first"][1] != default["test_second"][1]
    assert default["test_first"][1] != other["test_first"][1]
    # The seed is crc32 of the node id started from the session seed (as documented).
    expected = seed_for_test(5, "test_seeds.py::test_second")
    assert other["test_second"][:2] == ("5", str(expected))


def test_xdist_workers_share_the_controllers_random_seed(pytester):
    pytester.makepyfile(
        test_seeds="""
        def record(name, gradcheck, factory):
            (factory.getbasetemp().parent / name).write_text(str(gradcheck.session_seed))

        def test_first(gradcheck, tmp_path_factory):
            record("first", gradcheck, tmp_path_factory)

        def test_second(gradcheck, tmp_path_factory):
            record("second", gradcheck, tmp_path_factory)
        """
    )
    result = pytester.runpytest("-n", "2", "--gradcheck-seed=random", "--basetemp=base")
    result.assert_outcomes(passed=2)
    header = re.search(r"gradcheck: seed (\d+)", result.stdout.str())
    assert header is not None
    base = pytester.path / "base"
    assert {(base / "first").read_text(), (base / "second").read_text()} == {header[1]}


def test_the_fixture_assert_fails_with_the_worst_elements_and_the_replay_command(pytester):
    pytester.makepyfile(
        test_grad="""
        import numpy as np

        def test_wrong_gradient(gradcheck):
            x = np.array([1.0, 2.0, 3.0])
            gradcheck.assert_gradients_close(lambda v: np.sum(v ** 2), x, lambda v: 2 * v + 1)
        """
    )
    result = pytester.runpytest("--gradcheck-seed=9")
    result.assert_outcomes(failed=1)
    seed = seed_for_test(9, "test_grad.py::test_wrong_gradient")
    result.stdout.fnmatch_lines(
        [
            "E * gradient check fail, per input:",
            "E *   v: fail at 3 of 3 elements",
            f"E * fail: formula vs numerical *seed {seed}*",
            "E * input*index*analytic*numeric*abs err*rel err*tolerance*verdict",
            "E * 0*(2,)*7*6*1*fail",
            "E * replay: pytest --gradcheck-seed=9 'test_grad.py::test_wrong_gradient' "
            f"(this test's seed is {seed})",
        ]
    )
    assert "_check.py" not in result.stdout.str(), "the harness's frames should be hidden"


def test_the_fixture_check_returns_a_result_with_the_test_seed(pytester):
    pytester.makepyfile(
        test_grad="""
        import numpy as np

        def test_right_gradient(gradcheck):
            x = gradcheck.rng.standard_normal((2, 3))
            result = gradcheck.check(np.sin, x, lambda v, cotangent: np.cos(v) * cotangent)
            assert result.verdict == "pass", result.table()
            assert result.seed == gradcheck.seed
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


# -- cases as items ----------------------------------------------------------------------------


def test_each_case_source_and_dtype_becomes_an_item_with_a_readable_id(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    result = pytester.runpytest("--gradcheck", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "cases/mine.py::square[[]formula-float64]",
            "cases/mine.py::square[[]formula-float32]",
            "cases/mine.py::tripled[[]triple-float64]",
            "cases/mine.py::halved[[]half-float64]",
            "4 tests collected*",
        ]
    )


def test_without_the_option_case_modules_are_not_collected(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    result = pytester.runpytest("cases")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_failing_case_shows_the_worst_element_table_not_a_traceback(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    result = pytester.runpytest("--gradcheck", "-k", "tripled")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ gradcheck case tripled[[]triple-float64] _*",
            "FAIL: tripled[[]triple-float64] (cases/mine.py:15)",
            "  fail: triple vs numerical (native float64), max abs err 4, max rel err 0.333*",
            "*input*index*analytic*numeric*abs err*rel err*tolerance*verdict",
            "*x*(1,)*12*8*4*0.333333*fail",
            "*x*(0,)*9*6*3*0.333333*fail",
            "FAILED cases/mine.py::tripled[[]triple-float64] - FAIL: tripled*",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "_runner.py" not in out and "def runtest" not in out


def test_a_known_bad_case_that_fails_is_an_expected_failure(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    result = pytester.runpytest("--gradcheck", "-k", "halved", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["XFAIL cases/mine.py::halved[[]half-float64] - fail (expected)*"])


def test_a_known_bad_case_that_passes_fails_and_says_to_fix_the_expectation(pytester):
    write_cases(
        pytester,
        mine="""
        import numpy as np
        from gradcheck import case

        fixed = case(name="fixed", f=lambda x: (x ** 2).sum(), inputs={"x": np.ones(2)},
                     grad=lambda x: 2 * x, dtypes=["float64"], expect="fail")
        """,
    )
    result = pytester.runpytest("--gradcheck")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "PASS (expected fail): fixed[[]formula-float64] (cases/mine.py:5)",
            "  expected fail, but the gradients agree; fix the expectation",
        ]
    )


def test_a_case_that_raises_shows_the_exception_from_the_users_code(pytester):
    write_cases(
        pytester,
        mine="""
        import numpy as np
        from gradcheck import case

        def broken(x):
            raise RuntimeError("my formula is not written yet")

        unfinished = case(name="unfinished", f=lambda x: (x ** 2).sum(),
                          inputs={"x": np.ones(2)}, grad=broken, dtypes=["float64"])
        """,
    )
    result = pytester.runpytest("--gradcheck")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "ERROR: unfinished[[]broken-float64] (cases/mine.py:8)",
            "  RuntimeError: my formula is not written yet",
            "Traceback (most recent call last):",
            '*cases/mine.py", line 6, in broken',
            '    raise RuntimeError("my formula is not written yet")',
            "RuntimeError: my formula is not written yet",
        ]
    )
    assert "_runner.py" not in result.stdout.str(), "gradcheck's own frames should be left out"


def test_k_selects_cases_by_name_and_by_tag(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    by_tag = pytester.runpytest("--gradcheck", "--collect-only", "-q", "-k", "demo")
    by_tag.stdout.fnmatch_lines(
        ["cases/mine.py::tripled[[]triple-float64]", "1/4 tests collected*"]
    )
    by_name = pytester.runpytest("--gradcheck", "--collect-only", "-q", "-k", "square and float32")
    by_name.stdout.fnmatch_lines(["cases/mine.py::square[[]formula-float32]", "1/4 tests *"])


def test_without_paths_the_cases_come_from_tool_gradcheck_beside_the_tests(pytester):
    write_cases(pytester, folder="checks", mine=PASSING)
    pytester.makepyfile(test_unit="def test_unit():\n    pass\n")
    pytester.makepyprojecttoml(
        """
        [tool.gradcheck]
        paths = ["checks"]

        [tool.pytest.ini_options]
        testpaths = ["."]
        """
    )
    result = pytester.runpytest("--gradcheck", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["checks/mine.py::cube[[]formula-float64] PASSED*"])


def test_configured_paths_outside_testpaths_are_collected_too(pytester):
    write_cases(pytester, folder="checks", mine=PASSING)
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit():\n    pass\n")
    pytester.makepyprojecttoml(
        """
        [tool.gradcheck]
        paths = ["checks"]

        [tool.pytest.ini_options]
        testpaths = ["tests"]
        """
    )
    pytester.runpytest("--gradcheck").assert_outcomes(passed=3)
    pytester.runpytest().assert_outcomes(passed=1)


def test_paths_given_to_pytest_replace_the_configured_ones(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    write_cases(pytester, folder="more", extra=PASSING)
    result = pytester.runpytest("--gradcheck", "more", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["more/extra.py::cube[[]formula-float64]", "2 tests collected*"])
    single = pytester.runpytest("--gradcheck", "more/extra.py", "--collect-only", "-q")
    single.stdout.fnmatch_lines(["more/extra.py::cube[[]formula-float64]", "2 tests collected*"])


def test_one_item_can_be_run_by_its_node_id(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    result = pytester.runpytest("--gradcheck", "cases/mine.py::square[formula-float32]", "-v")
    result.assert_outcomes(passed=1)


def test_a_missing_case_path_is_a_usage_error_that_says_how_to_fix_it(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest("--gradcheck")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*the case path * does not exist; create it, set [[]tool.gradcheck] paths*"]
    )


def test_a_module_that_fails_to_import_is_one_failing_item_and_the_others_still_run(pytester):
    write_cases(pytester, good=PASSING, broken="import numpy as np\n\nx = 1 / 0\n")
    result = pytester.runpytest("--gradcheck")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "ERROR: cases/broken.py:3: the case module failed to import",
            "  ZeroDivisionError: division by zero",
            "",
            "Traceback (most recent call last):",
            '  File "*cases/broken.py", line 3, in <module>',
            "FAILED cases/broken.py::<import> - *",
        ]
    )


def test_two_cases_with_one_name_are_refused_naming_both_definitions(pytester):
    write_cases(pytester, first=PASSING, second=PASSING)
    result = pytester.runpytest("--gradcheck")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*two cases are named 'cube': */cases/first.py:5 and */cases/second.py:5; "
            "case names must be unique, rename one of them*"
        ]
    )


# -- the report --------------------------------------------------------------------------------


def test_report_format_follows_the_extension_and_each_parses(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    pytester.runpytest("--gradcheck", "--gradcheck-report=out/r.json")
    pytester.runpytest("--gradcheck", "--gradcheck-report=out/r.xml")
    result = pytester.runpytest("--gradcheck", "--gradcheck-report=out/r.md")
    result.stdout.fnmatch_lines(
        [
            "*= gradcheck =*",
            "gradcheck: 4 rows NOT as expected: 2 passed, 1 xfailed, 1 failed; seed 0 *",
            "gradcheck: report written to */out/r.md",
        ]
    )
    document = json.loads((pytester.path / "out/r.json").read_text())
    assert document["schema_version"] == 1
    assert [row["id"] for row in document["rows"]] == [
        "halved[half-float64]",
        "square[formula-float64]",
        "square[formula-float32]",
        "tripled[triple-float64]",
    ]
    assert [row["outcome"] for row in document["rows"]] == ["xfailed", "passed", "passed", "failed"]
    suite = ET.fromstring((pytester.path / "out/r.xml").read_text())
    assert len(suite.findall(".//testcase")) == 4
    assert len(suite.findall(".//failure")) == 1
    markdown = (pytester.path / "out/r.md").read_text()
    assert markdown.startswith("# gradcheck report\n")
    assert re.search(r"^\| tripled +\| triple +\| float64 +\| +2 \|", markdown, re.M)


def test_the_report_option_implies_gradcheck(pytester):
    write_cases(pytester, good=PASSING)
    result = pytester.runpytest("--gradcheck-report=r.json")
    result.assert_outcomes(passed=2)
    assert json.loads((pytester.path / "r.json").read_text())["counts"]["passed"] == 2


def test_a_report_path_with_an_unknown_extension_is_refused(pytester):
    result = pytester.runpytest("--gradcheck-report=report.pdf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*cannot tell the report format of 'report.pdf'; use one of .txt (text), .md (markdown*"]
    )


def test_text_and_html_reports_are_written_as_the_cli_writes_them(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD)
    pytester.runpytest("--gradcheck-report=r.txt")
    pytester.runpytest("--gradcheck-report=r.html")
    text = (pytester.path / "r.txt").read_text()
    assert text.startswith("case ") and text.rstrip().endswith("(replay: gradcheck run --seed 0)")
    page = (pytester.path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "tripled" in page


def test_the_report_is_byte_identical_under_xdist(pytester):
    write_cases(pytester, mine=GOOD_AND_BAD, good=PASSING)
    for fmt in ("json", "md"):  # the XML renders the same rows; two runs keep the test quick
        pytester.runpytest("--gradcheck", f"--gradcheck-report=serial.{fmt}", "-p", "no:xdist")
        pytester.runpytest("--gradcheck", f"--gradcheck-report=parallel.{fmt}", "-n", "2")
        serial = (pytester.path / f"serial.{fmt}").read_text()
        parallel = (pytester.path / f"parallel.{fmt}").read_text()
        difference = difflib.unified_diff(serial.splitlines(), parallel.splitlines(), lineterm="")
        assert serial == parallel, "\n".join(difference)
    assert len(json.loads((pytester.path / "serial.json").read_text())["rows"]) == 6


def test_the_report_equals_what_the_runner_renders_for_the_same_cases_and_seed(pytester):
    from gradcheck._cases.runner import run
    from gradcheck._report.text import render_json

    write_cases(pytester, mine=GOOD_AND_BAD, good=PASSING)
    pytester.runpytest("--gradcheck", "--gradcheck-seed=77", "--gradcheck-report=r.json")
    expected = render_json(run(["cases"], seed=77))
    assert (pytester.path / "r.json").read_text() == expected
    assert json.loads(expected)["seed"] == 77


def test_a_traceback_with_no_frame_of_the_users_is_kept_whole():
    from gradcheck._cases import runner as _runner
    from gradcheck._plugin.items import user_traceback

    text = (
        "Traceback (most recent call last):\n"
        f'  File "{_runner.__file__}", line 1, in run\n'
        "    boom()\n"
        "ValueError: a bug in gradcheck itself\n"
    )
    assert user_traceback(text) == text.rstrip().splitlines()
