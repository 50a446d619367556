"""What users read: a failure names the wrong input, user mistakes get the answer that fits,
the command line works from anywhere in a project and --quiet names the failing cases."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck.cli import main

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

# A two-layer network's loss, hand-differentiated: inputs W1 (3x5), b1 (5), W2 (5x2), b2 (2).
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
PARAMS = {
    "W1": rng.normal(size=(3, 5)),
    "b1": rng.normal(size=5),
    "W2": rng.normal(size=(5, 2)),
    "b2": rng.normal(size=2),
}


def loss(W1, b1, W2, b2):
    h = np.tanh(X @ W1 + b1)
    return 0.5 * np.sum((h @ W2 + b2 - Y) ** 2)


def backprop(W1, b1, W2, b2, dW2_factor=1.0):
    h = np.tanh(X @ W1 + b1)
    d = h @ W2 + b2 - Y
    dh = d @ W2.T * (1 - h**2)
    return X.T @ dh, dh.sum(0), dW2_factor * (h.T @ d), d.sum(0)


def test_a_four_input_loss_with_one_wrong_input_says_which_input_fails_and_at_how_many():
    def wrong_dW2(W1, b1, W2, b2):
        return backprop(W1, b1, W2, b2, dW2_factor=1.5)  # dW2 off by half: every element

    with pytest.raises(AssertionError) as raised:
        gradcheck.assert_gradients_close(loss, PARAMS, wrong_dW2)
    lines = str(raised.value).splitlines()
    assert lines[:5] == [
        "gradient check fail, per input:",
        "  W1: pass (15 elements)",
        "  b1: pass (5 elements)",
        "  W2: fail at 10 of 10 elements",
        "  b2: pass (2 elements)",
    ]
    assert lines[5].startswith("fail: wrong_dW2 vs numerical")
    assert lines[6].startswith("worst elements (sign flips first, then by |analytic - numeric|")


def test_a_sign_flip_leads_the_table_and_the_largest_error_is_always_shown():
    x = np.array([10.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -0.5])

    def grad(x):
        g = 2 * x
        g[1:7] *= 1.001  # six small errors, each far outside the tolerance
        g[0] = 2 * x[0] + 0.05  # the largest absolute error, smallest relative one
        g[7] = -g[7]  # one sign flip
        return g

    result = gradcheck.check(lambda x: np.sum(x**2), x, grad)
    rows = result.inputs[0].worst_elements(count=3)
    indices = [row["index"] for row in rows]
    assert indices[0] == (7,)  # the sign flip first, whatever its ratio
    assert (0,) in indices  # the element of the max abs err, though 3 rows were asked for
    assert max(row["abs_error"] for row in rows) == pytest.approx(result.max_abs_error)
    assert "fail at 8 of 8 elements (1 sign flip)" in gradcheck_message(x, grad)


def gradcheck_message(x, grad):
    with pytest.raises(AssertionError) as raised:
        gradcheck.assert_gradients_close(lambda x: np.sum(x**2), x, grad)
    return str(raised.value)


def test_a_gradient_dict_with_an_unknown_key_names_it_and_the_valid_keys():
    def misspelt(W1, b1, W2, b2):
        g = backprop(W1, b1, W2, b2)
        return {"W1": g[0], "b1": g[1], "w2": g[2], "b2": g[3]}

    with pytest.raises(ValueError, match=r"'w2'.*valid keys are 'W1', 'b1', 'W2', 'b2'"):
        gradcheck.check(loss, PARAMS, misspelt)


def test_a_gradient_dict_keyed_by_name_for_positional_inputs_says_they_are_keyed_by_position():
    def by_name(x, y):
        return {"x": 2 * x, "y": np.ones_like(y)}

    with pytest.raises(ValueError, match=r"'x', 'y'.*valid keys are 0, 1 \(by position"):
        gradcheck.check(lambda x, y: np.sum(x**2) + np.sum(y), (np.ones(2), np.ones(3)), by_name)


def test_f_that_modifies_its_input_in_place_is_an_error_that_says_so():
    def doubles_in_place(x):
        x *= 2
        return np.sum(x**2)

    x = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match=r"f modifies its input in place: input 0 \(x\)"):
        gradcheck.check(doubles_in_place, x, lambda x: 8 * x)
    assert np.array_equal(x, np.linspace(-1, 1, 5))  # the user's array is untouched


def test_a_torch_f_that_modifies_its_input_in_place_is_an_error_that_says_so():
    def adds_in_place(x):
        x.add_(1.0)
        return (x**2).sum()

    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="f modifies its input in place"):
        gradcheck.check(adds_in_place, x, lambda x: 2 * (x + 1))


def test_a_gradient_returned_as_a_list_gets_the_np_asarray_hint():
    x = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match=r"np\.asarray"):
        gradcheck.check(lambda x: np.sum(x**2), x, lambda x: [2 * v for v in x])
    with pytest.raises(TypeError, match=r"np\.asarray"):
        gradcheck.check(
            lambda x, y: np.sum(x**2) + np.sum(y),
            (x, np.ones(2)),
            lambda x, y: ([2 * v for v in x], np.ones(2)),
        )


def test_nan_in_the_inputs_is_named_as_such():
    x = np.array([1.0, np.nan, 3.0])
    result = gradcheck.check(lambda x: np.sum(x**2), x, lambda x: 2 * x)
    assert result.verdict == "inconclusive"
    assert result.reasons[0].startswith("input 0 (x) holds NaN at 1 element(s), the first at (1,)")


NUMPY_CASE = """
import numpy as np
from gradcheck import case

def energy(x):
    return np.sum(np.log1p(np.exp(x)))

softplus = case(name="softplus", f=energy, inputs={"x": np.ones(3)}, dtypes=["float64"])
"""


def test_a_numpy_case_without_grad_is_told_to_pass_grad(tmp_path, capsys):
    (tmp_path / "c.py").write_text(NUMPY_CASE)
    assert main(["run", str(tmp_path), "--format", "json"]) == 1
    error = json.loads(capsys.readouterr().out)["rows"][0]["error"]
    assert "this case has no grad=" in error and "grad=your_gradient" in error
    assert "install" not in error


WRONG_CASE = """
import numpy as np
from gradcheck import case

right = case(name="right", f=lambda x: (x**2).sum(), inputs={"x": np.ones(2)},
             grad=lambda x: 2 * x)
wrong = case(name="wrong", f=lambda x: (x**2).sum(), inputs={"x": np.ones(2)},
             grad=lambda x: 3 * x, dtypes=["float64"])
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.gradcheck]\npaths = ["checks"]\n')
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "grads.py").write_text(textwrap.dedent(WRONG_CASE))
    (tmp_path / "src" / "deep").mkdir(parents=True)
    return tmp_path


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "gradcheck", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_gradcheck_run_from_a_subdirectory_runs_the_projects_cases(project):
    done = run_in(project / "src" / "deep", "run", "--format", "json")
    assert done.returncode == 1, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert {row["id"] for row in rows} == {
        "right[formula-float64]",
        "right[formula-float32]",
        "wrong[formula-float64]",
    }


def test_quiet_names_each_failing_case_with_file_and_line(project):
    done = run_in(project / "src", "run", "--quiet")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r".*checks[/\\]grads\.py:7: FAIL: wrong\[formula-float64\]", lines[0])
    assert lines[1].startswith("gradcheck: 3 rows NOT as expected")


def test_the_junit_failure_message_carries_the_summary(project, capsys):
    assert main(["run", str(project / "checks"), "--format", "junit"]) == 1
    root = ET.fromstring(capsys.readouterr().out)
    failure = root.find(".//failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("FAIL: x: fail at 2 of 2 elements; fail: formula vs numerical")


# -- the torch migration -------------------------------------------------------------------


def test_a_gradgradcheck_failure_says_second_order_and_hints_at_a_detached_backward():
    class Detached(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x.detach() ** 2  # right once, but cut off from autograd

    from gradcheck.torch import GradcheckError, gradgradcheck

    x = torch.linspace(0.5, 1.5, 4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError) as raised:
        gradgradcheck(Detached.apply, (x,))
    message = str(raised.value)
    assert message.startswith("gradgradcheck: second order (")
    assert "hint: the double backward is zero for input 0" in message
    assert "detached" in message


def test_the_torch_front_door_hides_its_frames_from_pytest_tracebacks(pytester):
    pytester.makepyfile(
        """
        import torch
        from gradcheck.torch import gradcheck

        def test_wrong():
            class Off(torch.autograd.Function):
                @staticmethod
                def forward(ctx, x):
                    return x * 3

                @staticmethod
                def backward(ctx, g):
                    return g * 3.001

            gradcheck(Off.apply, (torch.ones(2, dtype=torch.double, requires_grad=True),))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "def verdict_of" not in out and "CheckResult(" not in out
    assert "gradcheck fail, per input:" in out


# -- reports, help and docs speak to users -------------------------------------------------

WRONG_FORMULA = """
import numpy as np
from gradcheck import case

wrong = case(name="wrong_square", f=lambda x: (x**2).sum(), inputs={"x": np.array([1.0, 2.0])},
             grad=lambda x: 3 * x, dtypes=["float64"])
"""
INTERNAL = re.compile(r"\b[Ss]eeds? ?0\d\d\b|\b[Ii]ssues? \d+\b")


def test_the_html_report_of_a_failing_formula_says_the_gradient_is_wrong_not_the_step(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "wrong.py").write_text(WRONG_FORMULA)
    report = tmp_path / "report.html"
    assert main(["run", str(tmp_path / "cases"), "--output", str(report)]) == 1
    html = report.read_text()
    assert "Step-size sweep against &lt;lambda&gt; in float64" in html or "sweep" in html
    assert "best on the grid" not in html
    assert "disagree with" in html and "at every step" in html
    assert "the gradient is wrong, not the step" in html
    assert INTERNAL.search(html) is None, INTERNAL.search(html)


def test_sweep_help_says_nothing_of_the_projects_own_documents(capsys):
    with contextlib.suppress(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--step" in text and INTERNAL.search(text) is None


def test_the_docs_a_user_reads_speak_of_no_issue_numbers_or_seed_documents():
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    found = [
        (page.name, match[0]) for page in pages for match in INTERNAL.finditer(page.read_text())
    ]
    assert found == []


def test_the_api_reference_covers_every_public_name_gradcheck_torch_and_the_fixture():
    import gradcheck.strategies
    import gradcheck.torch

    api = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^::: ([\w.]+)", api, re.M))
    names = [f"gradcheck.{name}" for name in gradcheck.__all__]
    names += [f"gradcheck.torch.{name}" for name in gradcheck.torch.__all__]
    missing = [n for n in names if n not in documented]
    assert missing == []
    assert "gradcheck.strategies" in documented
    assert any(name.endswith("GradcheckFixture") for name in documented)


def test_the_defaults_written_as_values_in_public_signatures_are_the_constants():
    import inspect

    from gradcheck._judge import screen
    from gradcheck._numerics import evaluate

    check = inspect.signature(gradcheck.check).parameters
    estimate = inspect.signature(gradcheck.estimate_gradient).parameters
    assert check["probes"].default == screen.DEFAULT_PROBES
    assert check["memory_budget"].default == evaluate.DEFAULT_MEMORY_BUDGET
    assert estimate["memory_budget"].default == evaluate.DEFAULT_MEMORY_BUDGET


class Tripled(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 3

    @staticmethod
    def backward(ctx, g):
        return g * 3.001


def test_the_output_column_has_one_notation_and_a_legend():
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(AssertionError) as raised:
        gradcheck.assert_gradients_close(Tripled.apply, x)
    message = str(raised.value)
    rows = [line for line in message.splitlines() if line.endswith("fail")]
    assert len(rows) == 3 and all(re.match(r"output\[\d\]\s", row) for row in rows), rows
    assert "output[4] is element 4 of f's only output" in message


def test_the_forward_mode_table_says_what_its_index_means():
    class WrongJvp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * 3

        @staticmethod
        def jvp(ctx, t):
            return t * 3.01

    result = gradcheck.check(
        WrongJvp.apply, torch.ones(3, dtype=torch.float64), modes=("rev", "fwd")
    )
    assert result.beyond is not None and "fwd" in result.beyond.failed
    assert "index = (k, output element)" in result.table()
    assert "forward mode, input 0: fail at" in gradcheck_message_of(result)


def gradcheck_message_of(result):
    from gradcheck._check.explain import failure_message

    return failure_message(result, "gradient check ")


def test_the_torch_install_hint_from_a_checkout_names_the_cpu_index():
    from gradcheck._cases import install

    hint = install.hint("torch")
    if install.checkout() is None:
        pytest.skip("gradcheck is installed from a wheel here")
    assert install.TORCH_CPU_INDEX in hint and "[torch]" in hint


def test_the_plugins_junit_failure_message_says_which_input_fails(pytester):
    (pytester.path / "cases").mkdir()
    (pytester.path / "cases" / "wrong.py").write_text(textwrap.dedent(WRONG_FORMULA))
    pytester.runpytest_subprocess("--gradcheck", "cases", "--junitxml=junit.xml")
    failure = ET.parse(pytester.path / "junit.xml").getroot().find(".//failure")
    assert failure is not None
    message = failure.get("message", "")
    assert "x: fail at 2 of 2 elements" in message and "formula vs numerical" in message
