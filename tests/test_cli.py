"""Surface: the command line, through main(argv) and as a real subprocess."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcheck import cli
from gradcheck.cli import main

GOOD = """
import numpy as np
from gradcheck import case

square = case(name="square", f=lambda x: (x**2).sum(), inputs={"x": np.array([3.0, 4.0])},
              grad=lambda x: 2 * x, tags=["quick"])
known_bad = case(name="known_bad", f=lambda x: (x**2).sum(), inputs={"x": np.ones(2)},
                 grad=lambda x: x, expect="fail")
"""
WRONG = """
import numpy as np
from gradcheck import case

wrong = case(name="wrong", f=lambda x: (x**2).sum(), inputs={"x": np.ones(2)},
             grad=lambda x: 3 * x)
"""


@pytest.fixture
def cases_dir(tmp_path):
    directory = tmp_path / "mycases"
    directory.mkdir()
    (directory / "good.py").write_text(textwrap.dedent(GOOD))
    return directory


def test_a_run_where_everything_is_as_expected_exits_0_and_prints_the_table(cases_dir, capsys):
    assert main(["run", str(cases_dir)]) == 0
    out = capsys.readouterr().out
    assert "max abs err" in out and "square" in out and "fail (expected)" in out
    assert out.rstrip().splitlines()[-1].startswith("gradcheck: 4 rows as expected")
    assert "seed 0" in out


def test_a_failing_case_exits_1(cases_dir, capsys):
    (cases_dir / "wrong.py").write_text(textwrap.dedent(WRONG))
    assert main(["run", str(cases_dir)]) == 1
    assert "FAIL: wrong[formula-float64]" in capsys.readouterr().out


def test_a_broken_module_is_an_error_row_exit_2_and_the_others_still_run(cases_dir, capsys):
    (cases_dir / "broken.py").write_text("import numpy\nraise RuntimeError('boom')\n")
    assert main(["run", str(cases_dir), "--format", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    outcomes = {row["case"]: row["outcome"] for row in document["rows"]}
    assert outcomes["square"] == "passed" and outcomes["known_bad"] == "xfailed"
    broken = [row for row in document["rows"] if row["kind"] == "load"]
    assert len(broken) == 1 and broken[0]["error"] == "RuntimeError: boom"
    assert broken[0]["line"] == 2 and broken[0]["file"].endswith("broken.py")


def test_duplicate_names_are_refused_with_a_clear_message_and_exit_2(cases_dir, capsys):
    (cases_dir / "again.py").write_text(textwrap.dedent(GOOD))
    assert main(["run", str(cases_dir)]) == 2
    err = capsys.readouterr().err
    assert "gradcheck: error: two cases are named 'square'" in err
    assert "rename one of them" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "does/not/exist"], "does not exist"),
        (["run", "{cases}", "--output", "report.pdf"], "cannot tell the report format"),
        (["run", "{cases}", "-k", "nothing_like_this"], "no case matches -k 'nothing_like_this'"),
        (["run", "{cases}", "-k", "a and"], "-k 'a and'"),
        (["run", "{cases}", "--dtype", "float16"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_and_say_what_was_wrong(cases_dir, capsys, argv, message):
    argv = [a.replace("{cases}", str(cases_dir)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["run", "--help"]) == 0
    assert "--output PATH" in capsys.readouterr().out


def test_outputs_repeat_and_take_their_format_from_the_extension(cases_dir, tmp_path, capsys):
    reports = tmp_path / "reports"
    argv = ["run", str(cases_dir)]
    for name in ("r.md", "r.json", "r.xml", "r.txt"):
        argv += ["--output", str(reports / name)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (reports / "r.md").read_text().startswith("# gradcheck report")
    assert json.loads((reports / "r.json").read_text())["schema_version"] == 1
    suite = ET.parse(reports / "r.xml").getroot().find("testsuite")
    assert len(suite.findall("testcase")) == 4
    assert (reports / "r.txt").read_text() == out  # stdout shows the same text report


def test_every_format_on_stdout_parses(cases_dir, capsys):
    for fmt in ("text", "markdown", "json", "junit"):
        assert main(["run", str(cases_dir), "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt == "json":
            json.loads(out)
        elif fmt == "junit":
            ET.fromstring(out)
        else:
            assert "square" in out


def test_the_json_report_is_byte_identical_for_a_given_seed(cases_dir, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["run", str(cases_dir), "--seed", "9", "--output", str(a)]) == 0
    assert main(["run", str(cases_dir), "--seed", "9", "--output", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert json.loads(a.read_text())["seed"] == 9


def test_selection_by_keyword_tag_and_dtype(cases_dir, capsys):
    assert main(["run", str(cases_dir), "-k", "square", "--dtype", "float32", "-q"]) == 0
    assert capsys.readouterr().out.startswith("gradcheck: 1 rows as expected")
    assert main(["run", str(cases_dir), "--tag", "quick", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {row["case"] for row in rows} == {"square"}


def test_list_shows_each_case_with_its_sources_and_definition(cases_dir, capsys):
    assert main(["list", str(cases_dir)]) == 0
    out = capsys.readouterr().out
    assert "known_bad" in out and "fail" in out and "good.py:7" in out
    assert "2 case(s)" in out


def test_a_progress_line_appears_on_stderr_when_a_run_takes_over_a_second(
    tmp_path, capsys, monkeypatch
):
    # A clock that moves a second each time it is read: the run "takes" seconds whatever the
    # machine's load, and the test reads no wall clock.
    ticks = itertools.count()
    monkeypatch.setattr(
        cli, "ProgressLine", functools.partial(cli.ProgressLine, clock=lambda: float(next(ticks)))
    )
    (tmp_path / "slow.py").write_text(
        "import numpy as np\nfrom gradcheck import case\n"
        "def slow(x):\n    return (x**2).sum()\n"
        "slow_case = case(name='slow', f=slow, inputs={'x': np.ones(8)}, grad=lambda x: 2 * x)\n"
    )
    assert main(["run", str(tmp_path)]) == 0
    assert re.search(r"gradcheck: [12]/2 rows, \d+ s: slow\[formula-", capsys.readouterr().err)


def test_a_fast_run_prints_no_progress_line(cases_dir, capsys):
    # importing torch alone can take a second, so only NumPy cases here
    assert main(["run", str(cases_dir), "-k", "square"]) == 0
    assert "rows," not in capsys.readouterr().err


def run_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )


def test_python_m_gradcheck_runs_the_default_cases_directory(cases_dir, tmp_path):
    (tmp_path / "mycases").rename(tmp_path / "cases")
    done = run_subprocess("-m", "gradcheck", "run", "--output", "out/r.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "square" in done.stdout
    assert json.loads((tmp_path / "out" / "r.json").read_text())["counts"]["passed"] == 2
    assert json.loads((tmp_path / "out" / "r.json").read_text())["rows"][0]["file"] == (
        "cases/good.py"
    )


def test_the_console_script_exits_with_the_documented_codes(cases_dir):
    script = Path(sys.executable).with_name("gradcheck")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}: the package is not installed")
    ok = subprocess.run([script, "run", str(cases_dir)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (cases_dir / "wrong.py").write_text(textwrap.dedent(WRONG))
    failing = subprocess.run([script, "run", str(cases_dir)], capture_output=True, text=True)
    assert failing.returncode == 1
    (cases_dir / "broken.py").write_text("raise RuntimeError('boom')\n")
    broken = subprocess.run([script, "run", str(cases_dir)], capture_output=True, text=True)
    assert broken.returncode == 2
    usage = subprocess.run([script, "run", "--seed", "x"], capture_output=True, text=True)
    assert usage.returncode == 2 and "is not a seed" in usage.stderr


def readme_case_module() -> str:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "cases.md").read_text()
    section = readme.split("A complete module a user can copy", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_complete_case_module_runs_as_documented(tmp_path, capsys):
    (tmp_path / "gradchecks").mkdir()
    (tmp_path / "gradchecks" / "layers.py").write_text(readme_case_module())
    assert main(["run", str(tmp_path / "gradchecks"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    outcomes = {(row["case"], row["source"], row["dtype"]): row["outcome"] for row in rows}
    assert outcomes[("cube_backward", "autograd", "float32")] == "passed"
    assert outcomes[("least_squares", "mse_grad", "float64")] == "passed"
    assert outcomes[("least_squares_forgot_the_2", "formula", "float64")] == "xfailed"
    assert outcomes[("fit_slope", "formula", "float64")] == "passed"
    assert len(rows) == 10


# -- finding the user's own code, as pytest does -------------------------------------------------

USER_CASES = """
import numpy as np
from {package}.losses import energy, energy_grad
from gradcheck import case

energy_case = case(name="energy", f=energy, inputs={{"x": np.array([0.5, -1.0])}}, grad=energy_grad)
"""
USER_LOSSES = """
import numpy as np

def energy(x):
    return np.sum(np.cos(x) * x)

def energy_grad(x):
    return np.cos(x) - x * np.sin(x)
"""


def user_project(root: Path, package: str, *, source_folder: str = "") -> Path:
    """A project as a user has it: pyproject.toml, their package, cases importing it."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "mine"\nversion = "0"\n')
    home = root / source_folder if source_folder else root
    (home / package).mkdir(parents=True)
    (home / package / "__init__.py").write_text("")
    (home / package / "losses.py").write_text(USER_LOSSES)
    (root / "cases").mkdir()
    (root / "cases" / "gradients.py").write_text(USER_CASES.format(package=package))
    return root


def test_the_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"gradcheck {version('gradcheck')}\n"


def test_case_modules_import_the_users_package_from_the_project_root(tmp_path, capsys):
    project = user_project(tmp_path / "project", "userpkg_at_root")
    assert main(["run", str(project / "cases"), "-q"]) == 0  # run from elsewhere: the repo
    assert "2 rows as expected: 2 passed" in capsys.readouterr().out  # float64, float32


def test_tool_gradcheck_pythonpath_adds_a_source_folder(tmp_path, capsys):
    project = user_project(tmp_path / "project", "userpkg_in_src", source_folder="src")
    assert main(["run", str(project / "cases")]) == 2
    error = " ".join(capsys.readouterr().out.split())  # the report's lines, joined
    assert "No module named 'userpkg_in_src'" in error
    assert f"the project root {project} (from pyproject.toml)" in error
    assert f"[tool.gradcheck] pythonpath in {project / 'pyproject.toml'}" in error
    with (project / "pyproject.toml").open("a") as config:
        config.write('\n[tool.gradcheck]\npythonpath = ["src"]\n')
    assert main(["run", str(project / "cases"), "-q"]) == 0


def test_a_torch_case_without_torch_says_torch_is_needed_and_how_to_install_it(
    tmp_path, capsys, monkeypatch
):
    (tmp_path / "needs_torch.py").write_text("import torch\n")
    (tmp_path / "autograd.py").write_text(
        "import numpy as np\nfrom gradcheck import case\n"
        "c = case(name='c', f=lambda x: (x**2).sum(), inputs={'x': np.ones(2)})\n"
    )
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ModuleNotFoundError
    assert main(["run", str(tmp_path), "--format", "json"]) == 2
    document = json.loads(capsys.readouterr().out)
    errors = [document["load_errors"][0]["error"], *(row["error"] for row in document["rows"])]
    assert len(errors) == 4  # the module, then autograd in float64 and float32 (load row last)
    for error in errors:
        assert "torch is not installed, and this needs it" in error, error
        assert "pip install" in error and "\n" not in error
