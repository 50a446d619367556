"""Nothing hides a failure, part two: probes as a hostile user or a broken machine would try
them, each through the real command line or pytest in a subprocess.

Crashed workers, hard exits and segfaults, interrupts, swallowed timeouts, text no file can
hold, outputs that fail on their own, an f that changes directory or prints from a thread, case
modules that raise BaseExceptions, and a mistyped ``[tool.gradcheck]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
import numpy as np
from gradcheck import case

good = case(name="good", f=lambda x: (x**2).sum(), inputs={"x": np.array([3.0, 4.0])},
            grad=lambda x: 2 * x, dtypes=["float64"])
"""


def crash_case(name: str, body: str, imports: str = "") -> str:
    """A case module whose f runs ``body`` (one statement per line), then returns x's sum."""
    code = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return (
        f"import numpy as np\nfrom gradcheck import case\n{imports}\n\n"
        f"def f(x):\n{code}\n    return (x**2).sum()\n\n"
        f"{name} = case(name={name!r}, f=f, inputs={{'x': np.array([1.0, 2.0])}},\n"
        f"    grad=lambda x: 2 * x, dtypes=['float64'])\n"
    )


SEGFAULT = "import ctypes"
SEGFAULT_BODY = "ctypes.string_at(0)"


def project(tmp_path: Path, **modules: str) -> Path:
    cases = tmp_path / "cases"
    cases.mkdir(parents=True, exist_ok=True)
    for name, text in modules.items():
        (cases / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def gradcheck(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        timeout=timeout,
    )


def pytest_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=300,
    )


def json_report(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text(encoding="utf-8"))


# -- 1. a report names the rows that never reported ---------------------------------------------


def test_a_crashed_xdist_worker_leaves_a_report_that_is_not_ok_and_names_the_lost_row(tmp_path):
    pytest.importorskip("xdist")
    root = project(
        tmp_path,
        good=GOOD,
        crash=crash_case("crash", SEGFAULT_BODY, SEGFAULT),
        more=GOOD.replace('"good"', '"more"').replace("good =", "more ="),
    )
    result = pytest_run("--gradcheck", "-n", "2", "--gradcheck-report", "r.json", cwd=root)
    assert result.returncode != 0
    document = json_report(root / "r.json")
    assert document["ok"] is False and document["exit_code"] != 0
    assert document["unreported"] == ["crash[formula-float64]"]
    assert sorted(r["id"] for r in document["rows"]) == [
        "good[formula-float64]",
        "more[formula-float64]",
    ]
    assert "NEVER REPORTED" in document["summary"]


@pytest.mark.parametrize("xdist", [False, True])
def test_ctrl_c_in_f_under_pytest_marks_the_report_interrupted_and_names_what_never_ran(
    tmp_path, xdist
):
    if xdist:
        pytest.importorskip("xdist")
    root = project(
        tmp_path,
        a_good=GOOD,
        b_stops=crash_case("stops", "raise KeyboardInterrupt"),
        c_later=GOOD.replace('"good"', '"zlater"').replace("good =", "zlater ="),
    )
    options = ["-n", "1"] if xdist else []
    result = pytest_run("--gradcheck", *options, "--gradcheck-report", "r.xml", cwd=root)
    assert result.returncode == 2  # pytest's exit status for an interrupted session
    suite = ET.parse(root / "r.xml").getroot()
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["interrupted"] == "true"
    lost = [t.get("name") for t in suite.iter("testcase") if t.find("error") is not None]
    assert "zlater[formula-float64]" in lost


def test_ctrl_c_in_the_cli_names_the_rows_never_run_in_every_format(tmp_path):
    root = project(
        tmp_path,
        a_good=GOOD,
        b_stops=crash_case("stops", "raise KeyboardInterrupt"),
        c_later=GOOD.replace('"good"', '"zlater"').replace("good =", "zlater ="),
    )
    outputs = ["r.json", "r.xml", "r.md", "r.txt", "r.html"]
    result = gradcheck("run", *(f"--output={o}" for o in outputs), cwd=root)
    assert result.returncode == 130
    document = json_report(root / "r.json")
    assert document["interrupted"] is True
    assert document["unreported"] == ["stops[formula-float64]", "zlater[formula-float64]"]
    for name in ("r.md", "r.txt", "r.html"):
        text = (root / name).read_text(encoding="utf-8")
        assert "INTERRUPTED" in text and "zlater[formula-float64]" in text, name


# -- 2. f that ends the process ---------------------------------------------------------------


def test_os_exit_0_in_f_is_an_error_row_in_the_cli_and_in_pytest(tmp_path):
    root = project(tmp_path, good=GOOD, quits=crash_case("quits", "os._exit(0)", "import os"))
    result = gradcheck("run", "--format", "json", cwd=root)
    assert result.returncode == 1
    rows = {r["id"]: r for r in json.loads(result.stdout)["rows"]}
    assert rows["quits[formula-float64]"]["outcome"] == "error"
    assert "os._exit(0)" in rows["quits[formula-float64]"]["error"]
    assert rows["good[formula-float64]"]["outcome"] == "passed"
    assert pytest_run("--gradcheck", cwd=root).returncode == 1


def test_a_segfault_in_f_leaves_no_earlier_report_and_names_the_case(tmp_path):
    root = project(tmp_path, good=GOOD, crash=crash_case("crash", SEGFAULT_BODY, SEGFAULT))
    (root / "r.json").write_text('{"ok": true, "exit_code": 0}')  # an earlier green run's
    result = gradcheck("run", "--output", "r.json", cwd=root)
    assert result.returncode not in (0, 1)  # killed by the signal
    document = json_report(root / "r.json")
    assert document["ok"] is False and document["exit_code"] == 1
    assert document["unreported"] == ["crash[formula-float64]", "good[formula-float64]"]
    assert "gradcheck case crash[formula-float64]" in result.stderr


def test_a_segfault_while_the_case_modules_load_leaves_no_earlier_report(tmp_path):
    root = project(tmp_path, crash="import ctypes\nctypes.string_at(0)\n", good=GOOD)
    (root / "r.json").write_text('{"ok": true, "exit_code": 0}')
    result = gradcheck("run", "--output", "r.json", cwd=root)
    assert result.returncode not in (0, 1, 2)
    document = json_report(root / "r.json")
    assert document["ok"] is False and document["interrupted"] is True


def test_a_segfault_under_pytest_without_xdist_leaves_no_earlier_report(tmp_path):
    root = project(tmp_path, crash=crash_case("crash", SEGFAULT_BODY, SEGFAULT))
    (root / "r.json").write_text('{"ok": true, "exit_code": 0}')
    result = pytest_run("--gradcheck", "--gradcheck-report", "r.json", cwd=root)
    assert result.returncode != 0
    document = json_report(root / "r.json")
    assert document["ok"] is False and document["unreported"] == ["crash[formula-float64]"]
    assert "gradcheck case crash[formula-float64]" in result.stderr


# -- 3. a swallowed timeout ----------------------------------------------------------------------


def test_a_case_that_swallows_the_timeout_is_an_error_row(tmp_path):
    body = """
    try:
        time.sleep(30)
    except BaseException:
        pass
    """
    root = project(tmp_path, swallows=crash_case("swallows", body, "import time"))
    result = gradcheck("run", "--timeout", "1", "--format", "json", cwd=root)
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)["rows"]
    assert row["outcome"] == "error" and row["error"].startswith("CaseTimeout:")
    assert "ran past the 1 s timeout" in row["error"]


# -- 4, 9, 10. text no report can break on -----------------------------------------------------

NAMES = {
    "surrogate": "\\ud800",
    "noncharacters": "\\ufffe\\uffff",
    "separators": "\\u2028\\u2029",
}


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_no_text_in_a_name_or_message_stops_a_report_from_being_written_or_parsed(tmp_path, kind):
    text = NAMES[kind]
    module = f"""
import numpy as np
from gradcheck import case, Formula

def wrong(x):
    return 3 * x

def broken(x):
    raise ValueError("bad {text} here")

cases = [
    case(name="wr{text}ong", f=lambda x: (x**2).sum(), inputs={{"x": np.ones(2)}},
         grad={{"src{text}": wrong}}, dtypes=["float64"], description="d{text}", tags=["t{text}"]),
    case(name="ra{text}ises", f=lambda x: (x**2).sum(), inputs={{"x": np.ones(2)}},
         grad=broken, dtypes=["float64"]),
]
"""
    root = project(tmp_path, hostile=module)
    outputs = ["r.json", "r.xml", "r.md", "r.txt", "r.html"]
    result = gradcheck("run", "--github", *(f"--output={o}" for o in outputs), cwd=root)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    document = json_report(root / "r.json")
    assert {r["outcome"] for r in document["rows"]} == {"failed", "error"}
    ET.parse(root / "r.xml")  # a strict parser: no character XML forbids
    for name in ("r.md", "r.txt"):
        report = (root / name).read_text(encoding="utf-8")
        assert "\u2028" not in report and "\u2029" not in report
    table = (root / "r.txt").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith(("wr", "ra")) for line in table) == 2  # a row a line
    assert (root / "r.html").read_text(encoding="utf-8").rstrip().endswith("</html>")


# -- 5, 6. each output on its own -----------------------------------------------------------------


def test_an_unwritable_step_summary_costs_no_report(tmp_path):
    root = project(tmp_path, good=GOOD)
    summary = root / "summary-is-a-directory"
    summary.mkdir()
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = gradcheck("run", "--github", "--output", "r.json", cwd=root, env=env)
    assert result.returncode == 2
    assert "cannot append to $GITHUB_STEP_SUMMARY" in result.stderr
    assert "Traceback" not in result.stderr
    assert json_report(root / "r.json")["ok"] is True


IN_SWEEP = """
import pathlib, sys, time
import numpy as np
from gradcheck import case

def in_sweep():
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith("sweep.py"):
            return True
        frame = frame.f_back
    return False

def f(x):
    if in_sweep():
        pathlib.Path("sweeping").touch()
        time.sleep(60)
    return (x**2).sum()

slow_sweep = case(name="slow_sweep", f=f, inputs={"x": np.array([1.0, 2.0])},
                  grad=lambda x: 2 * x, dtypes=["float64"])
"""


def test_ctrl_c_during_the_html_sweeps_still_writes_every_report(tmp_path):
    pytest.importorskip("matplotlib")
    root = project(tmp_path, slow=IN_SWEEP)
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck", "run", "--output", "r.html", "--output", "r.json"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    marker = root / "sweeping"
    try:
        for _ in range(1200):  # wait (up to 120 s) for the sweep to call f
            if marker.exists() or process.poll() is not None:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
        assert marker.exists(), "the sweep never ran"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert json_report(root / "r.json")["ok"] is True
    page = (root / "r.html").read_text(encoding="utf-8")
    assert "no sweep: interrupted" in page and "Traceback" not in err


# -- 7. an f that changes directory ---------------------------------------------------------------


def test_an_f_calling_chdir_moves_neither_the_report_nor_later_rows_paths(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = project(
        tmp_path / "project",
        a_moves=crash_case("moves", f"os.chdir({str(elsewhere)!r})", "import os"),
        b_good=GOOD,
    )
    result = gradcheck("run", "--output", "out/r.json", cwd=root)
    assert result.returncode == 0, result.stderr
    assert not (elsewhere / "out").exists()
    rows = json_report(root / "out" / "r.json")["rows"]
    assert sorted(r["file"] for r in rows) == ["cases/a_moves.py", "cases/b_good.py"]


# -- 8. case modules that raise BaseExceptions at import ----------------------------------------


@pytest.mark.parametrize("raised", ["GeneratorExit()", "type('Custom', (BaseException,), {})()"])
def test_a_module_raising_a_base_exception_at_import_is_an_error_row_and_others_run(
    tmp_path, raised
):
    root = project(tmp_path, a_broken=f"raise {raised}\n", b_good=GOOD)
    result = gradcheck("run", "--format", "json", cwd=root)
    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    assert [r["outcome"] for r in document["rows"]] == ["passed", "error"]
    assert document["load_errors"][0]["path"].endswith("a_broken.py")


# -- 11. the plugin checks its report path before any case runs -------------------------------


def test_the_plugin_refuses_a_report_path_under_a_file_before_any_case_runs(tmp_path):
    marks = GOOD + '\nimport pathlib\npathlib.Path(__file__).with_name("ran").touch()\n'
    root = project(tmp_path, marks=marks)
    (root / "afile").write_text("")
    result = pytest_run("--gradcheck-report", "afile/r.json", cwd=root)
    assert result.returncode == 4  # pytest's usage error
    assert "cannot write --gradcheck-report" in result.stderr and "afile/r.json" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (root / "cases" / "ran").exists()


# -- 12. stdout stays one document ----------------------------------------------------------------

LATE_PRINTS = """
import threading, time
import numpy as np
from gradcheck import case

def chatter():
    for _ in range(40):
        print("chatter from a thread", flush=True)
        time.sleep(0.01)

def f(x):
    if not getattr(f, "started", False):
        f.started = True
        threading.Thread(target=chatter).start()  # not a daemon: it outlives the run
    print("chatter from f")
    return (x**2).sum()

late = case(name="late", f=f, inputs={"x": np.array([1.0, 2.0])}, grad=lambda x: 2 * x,
            dtypes=["float64"])
"""


@pytest.mark.parametrize("fmt", ["json", "junit", "markdown"])
def test_stdout_stays_one_document_whatever_f_prints_and_whenever(tmp_path, fmt):
    root = project(tmp_path, late=LATE_PRINTS)
    result = gradcheck("run", "--format", fmt, cwd=root)
    assert result.returncode == 0, result.stderr
    assert "chatter" not in result.stdout and "chatter from a thread" in result.stderr
    if fmt == "json":
        assert json.loads(result.stdout)["ok"] is True
    elif fmt == "junit":
        ET.fromstring(result.stdout)
    else:
        assert result.stdout.startswith("# gradcheck report")


# -- 13. [tool.gradcheck] -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ("[tool.gradcheck]\ntimout = 1\n", "unknown [tool.gradcheck] key 'timout'"),
        ("[tool]\ngradcheck = 5\n", "[tool.gradcheck] must be a table"),
    ],
)
def test_a_mistyped_tool_gradcheck_is_a_usage_error_naming_the_key_and_the_valid_ones(
    tmp_path, table, said
):
    root = project(tmp_path, good=GOOD)
    (root / "pyproject.toml").write_text(table)
    for args in (["run", "cases", "--timeout", "5"], ["run"], ["list"]):
        result = gradcheck(*args, cwd=root)
        assert result.returncode == 2, args
        assert said in result.stderr and "paths, pythonpath, timeout" in result.stderr
    result = pytest_run("--gradcheck", cwd=root)
    assert result.returncode == 4 and said in result.stderr


# -- smaller ones -------------------------------------------------------------------------------


def test_an_f_returning_a_python_int_gets_a_clear_message(tmp_path):
    module = GOOD.replace("lambda x: (x**2).sum()", "lambda x: 3")
    root = project(tmp_path, ints=module)
    result = gradcheck("run", "--format", "json", cwd=root)
    (row,) = json.loads(result.stdout)["rows"]
    assert row["outcome"] == "error"
    assert row["error"].startswith("TypeError: f returned a Python int (3)")
    assert "floating-point" in row["error"]
