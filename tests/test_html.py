"""Render: the HTML report as a string: tables, embedded plots, escaping, no matplotlib, the CLI."""

from __future__ import annotations

import base64
import html
import re
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcheck import case, descent
from gradcheck._cases.runner import run_cases
from gradcheck._cases.sweep import sweep_cases
from gradcheck._report.figures import default_sweep_path, relative_errors, tolerance_ratio
from gradcheck._report.html import render_html
from gradcheck.cli import main

ROOT = Path(__file__).resolve().parents[1]
# These tests run from the checkout, so the hint is the checkout's own extra, pinned.
REPO_HINT = f"pip install -c {ROOT / 'constraints.txt'} -e '{ROOT}[html]'"

torch.set_num_threads(1)

XSS_NAME = "<script>alert(1)</script>"
XSS_DESCRIPTION = "<img src=x onerror=\"document.body.dataset.pwned='yes'\">"
MATHTEXT_NAME = "descent_$x^{_unbalanced"  # '$' would start matplotlib mathtext


def tanh_sum(W):
    return np.sum(np.tanh(W))


CASES = [
    case(name="square", f=lambda x: (x**2).sum(), inputs={"x": np.array([3.0, 4.0])}),
    case(
        name="tanh_forgets_square",
        description="d tanh = 1 - tanh, not 1 - tanh^2",
        f=tanh_sum,
        inputs={"W": np.array([[0.1, -0.5, 0.9], [1.3, -0.2, 0.4]])},
        grad=lambda W: 1 - np.tanh(W),
        expect="fail",
    ),
    case(
        name="cube_vector_wrong",
        f=lambda x: np.sum(x**3),
        inputs={"x": np.array([1.0, 2.0])},
        grad=lambda x: 2 * x**2,
        expect="fail",
    ),
    descent(
        name=MATHTEXT_NAME,
        loss=lambda w, x, y: ((x * w - y) ** 2).mean(),
        grad=lambda w, x, y: (2 * x * (x * w - y)).mean(),
        params={"w": 1.0},
        data={"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]},
        epochs=20,
        dtypes=["float64"],
    ),
    case(
        name=XSS_NAME,
        description=XSS_DESCRIPTION,
        f=lambda x: (x**2).sum(),
        inputs={"x": np.array([1.0, 2.0])},
        grad={"</td><b>bold": lambda x: 2 * x},
        dtypes=["float64"],
    ),
]


class Page(HTMLParser):
    """What a page holds: tags, images, the text of its h2 headings, the body's attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []
        self.body: dict[str, str | None] = {}
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)
        elif tag == "h2":
            self._in_h2 = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.headings[-1] += data


@pytest.fixture(scope="module")
def result():
    return run_cases(CASES, seed=0)


@pytest.fixture(scope="module")
def page(result):
    return render_html(result, sweeps=sweep_cases(CASES, seed=0))


def alts(page_text):
    return [str(image["alt"]) for image in Page(page_text).images]


def test_the_summary_table_has_one_row_per_case_source_and_dtype(result, page):
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert summary.count("<tr>") == 1 + len(result.rows) == 1 + 8
    assert "fail (expected)" in summary and "known-bad, caught" in page


def test_every_picture_is_an_embedded_png(page):
    images = Page(page).images
    assert images
    for image in images:
        src = str(image["src"])
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_failing_matrix_gets_a_heat_map_and_a_failing_vector_a_heat_strip_per_dtype(page):
    heat_maps = [a for a in alts(page) if a.startswith("heat")]
    assert sorted(heat_maps) == [
        "heat map d/dW (2×3) · formula · float32",
        "heat map d/dW (2×3) · formula · float64",
        "heat strip d/dx (2) · formula · float32",
        "heat strip d/dx (2) · formula · float64",
    ]


def test_a_descent_case_gets_its_loss_curves_and_every_case_a_sweep_or_a_reason(page):
    pictures = alts(page)
    assert [a for a in pictures if a.startswith("loss curves")] == [
        f"loss curves {MATHTEXT_NAME} · float64"
    ]
    # A known-bad formula is no reference, and these two NumPy functions cannot run under
    # autograd: the two known-bad cases say so instead of showing a sweep.
    assert sum(a.startswith("step-size sweep") for a in pictures) == len(CASES) - 2
    assert "No step-size sweep: ValueError: case &#x27;tanh_forgets_square&#x27; has no" in page
    assert "every row&#x27;s error against its tolerance" in page  # the overview


def test_the_page_is_self_contained(page):
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_a_case_named_like_a_script_tag_is_text_not_markup(page):
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert XSS_DESCRIPTION not in page and "&lt;img src=x onerror=" in page
    assert "</td><b>bold" not in page and "&lt;/td&gt;&lt;b&gt;bold" in page
    parsed = Page(page)
    assert "script" not in parsed.tags
    assert any(XSS_NAME in heading for heading in parsed.headings)


def test_the_same_results_render_to_the_same_bytes(result):
    sweeps = sweep_cases(CASES[:2], seed=0)
    assert render_html(result, sweeps=sweeps) == render_html(result, sweeps=sweeps)


def test_without_matplotlib_the_tables_remain_and_the_page_says_how_to_get_plots(
    result, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    text = render_html(result, sweeps=sweep_cases(CASES[:1], seed=0))
    assert f"Install it with <code>{html.escape(REPO_HINT)}</code>" in text
    assert Page(text).images == []
    assert text.count("<tr>") > len(result.rows)  # the summary and the per-case tables
    assert "square: engine step" not in text and "float64: engine step h = 6.06e-06" in text


def test_relative_errors_are_the_difference_over_the_larger_magnitude(result):
    row = next(r for r in result.rows if r.case == "tanh_forgets_square")
    comparison = row.check.inputs[0]
    W = np.array([[0.1, -0.5, 0.9], [1.3, -0.2, 0.4]])
    right, wrong = 1 - np.tanh(W) ** 2, 1 - np.tanh(W)
    expected = np.abs(wrong - right) / np.maximum(np.abs(wrong), np.abs(right))
    np.testing.assert_allclose(relative_errors(comparison), expected, rtol=1e-6)


def test_the_tolerance_ratio_is_above_one_exactly_for_failing_rows(result):
    for row in result.rows:
        ratio = tolerance_ratio(row)
        assert ratio is not None
        assert (ratio > 1) == (row.verdict == "fail"), row.id


def test_sweep_plots_get_file_names_safe_for_any_case_name():
    assert default_sweep_path("seed001_mlp") == "reports/sweep-seed001_mlp.png"
    assert default_sweep_path(XSS_NAME) == "reports/sweep-script-alert-1-script.png"
    assert default_sweep_path("../..") == "reports/sweep-case.png"


# -- through the command line -----------------------------------------------------------------

MODULE = """
import numpy as np
from gradcheck import case

tanh_forgets_square = case(
    name="tanh_forgets_square", f=lambda W: np.sum(np.tanh(W)),
    inputs={"W": np.array([[0.1, -0.5], [1.3, 0.4]])}, grad=lambda W: 1 - np.tanh(W),
    expect="fail", dtypes=["float64"],
)
sigmoid = case(
    name="sigmoid", f=lambda x: np.sum(1 / (1 + np.exp(-x))), inputs={"x": np.array([0.3, -1.2])},
    grad=lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2,
)
"""


@pytest.fixture
def cases_dir(tmp_path):
    directory = tmp_path / "mycases"
    directory.mkdir()
    (directory / "mine.py").write_text(textwrap.dedent(MODULE))
    return directory


def test_run_writes_an_html_report_chosen_by_its_extension(cases_dir, tmp_path, capsys):
    target = tmp_path / "out" / "report.html"
    assert main(["run", str(cases_dir), "--output", str(target)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {target}" in captured.err
    text = target.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "tanh_<wbr>forgets_<wbr>square" in text
    assert "heat map d/dW (2×2) · formula · float64" in alts(text)
    assert not list(target.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_run_prints_html_with_format_html(cases_dir, capsys):
    assert main(["run", str(cases_dir), "-k", "sigmoid", "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")


def test_sweep_prints_the_table_and_writes_the_plot(cases_dir, tmp_path, capsys):
    png = tmp_path / "sweep.png"
    argv = ["sweep", "sigmoid", str(cases_dir), "--step", "1e-50", "--output", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "sigmoid: relative error against formula in float64"
    assert lines[1].split() == ["h", "float64", "error", "float32", "error", "note"]
    assert re.match(r"\s*1e-50\s+lost\s+lost", lines[3])
    assert "float32: engine step h = 0.00492" in out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_sweep_of_one_dtype_without_a_plot(cases_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "sigmoid", str(cases_dir), "--dtype", "float32", "--no-plot"]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["h", "float32", "error", "note"]
    assert not (tmp_path / "reports").exists()


def test_sweep_of_a_known_bad_case_uses_torch_autograd_as_the_reference(tmp_path, capsys):
    module = tmp_path / "bad.py"
    module.write_text(
        "import torch\nfrom gradcheck import case\n"
        "bad = case(name='bad', f=lambda W: W.tanh().sum(), inputs={'W': torch.ones(2, 2)},\n"
        "           grad=lambda W: 1 - W.tanh(), expect='fail', arrays='torch')\n"
    )
    assert main(["sweep", "bad", str(module), "--no-plot"]) == 0
    assert "bad: relative error against autograd in float64" in capsys.readouterr().out


def test_sweep_of_a_known_bad_numpy_case_says_it_has_no_reference(cases_dir, capsys):
    assert main(["sweep", "tanh_forgets_square", str(cases_dir), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "has no gradient to sweep against" in err and "give the case autograd=True" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "sigmoi"], "no case named 'sigmoi' among 2; did you mean sigmoid?"),
        (["sweep", "nothing_like_it"], "see `gradcheck list`"),
        (["sweep", "sigmoid", "--step", "-1"], "steps must be positive and finite"),
    ],
)
def test_sweep_usage_errors_exit_2_and_say_what_to_do(cases_dir, capsys, argv, message):
    assert main([*argv[:2], str(cases_dir), *argv[2:]]) == 2
    assert message in capsys.readouterr().err


def test_sweep_without_matplotlib_asks_for_it_or_for_no_plot(cases_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["sweep", "sigmoid", str(cases_dir)]) == 2
    assert f"{REPO_HINT}; or pass --no-plot" in capsys.readouterr().err


def test_from_a_wheel_the_hint_names_the_packages_the_html_extra_declares(monkeypatch):
    import tomllib

    from gradcheck._cases import install as _install

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (matplotlib,) = declared["optional-dependencies"]["html"]
    monkeypatch.setattr(_install, "checkout", lambda: None)
    assert _install.hint("html") == f"pip install '{matplotlib}'"
    assert "gradcheck[" not in _install.hint("html")  # the package is not on an index


def test_the_first_row_not_as_expected_shows_its_worst_elements_open_and_only_it(page):
    opened = re.findall(r'<details class="row" open><summary>([^<]*)</summary>', page)
    assert len(opened) == 1 and page.count("<details") > 1
    section = page[page.index('<details class="row" open>') :].split("</details>", 1)[0]
    assert "the worst elements:" in section
