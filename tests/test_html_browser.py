"""Render: the HTML report opened in a real browser (headless Chromium): DOM and screenshot.

Debian's ``chromium`` package provides the browser; ``.ci/run`` installs it when it can. Where it
is not installed these tests skip and say so.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_html import Page  # the same parser reads the string and the browser's DOM

from gradcheck import case
from gradcheck._cases.runner import run_cases
from gradcheck._cases.sweep import sweep_cases
from gradcheck._report.html import render_html

torch.set_num_threads(1)

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed, so the HTML report cannot be opened in a browser here: "
    "install Debian's package (apt-get install chromium; .ci/run does so in CI)",
)
XSS_NAME = "<script>alert(1)</script>"
PWNED = "document.body.dataset.pwned='yes'"
CASES = [
    case(
        name=XSS_NAME,
        description=f'<img src=x onerror="{PWNED}">',
        f=lambda W: (W.tanh() ** 2).sum(),
        inputs={"W": np.array([[0.1, -0.5, 0.9], [1.3, -0.2, 0.4]])},
        grad=lambda W: 2 * W.tanh(),  # forgets the factor 1 - tanh^2
        expect="fail",
        arrays="torch",
        dtypes=["float64"],
    ),
    case(name="square", f=lambda x: (x**2).sum(), inputs={"x": np.array([3.0, 4.0])}),
]


def chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("browser")
    page = directory / "gradcheck.html"
    result = run_cases(CASES, seed=0)
    page.write_text(render_html(result, sweeps=sweep_cases(CASES, seed=0)), encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def dom(report, tmp_path_factory):
    profile = tmp_path_factory.mktemp("profile")
    return Page(chromium("--dump-dom", report.as_uri(), profile=profile).stdout)


def test_the_browser_shows_the_summary_table_and_every_case(dom):
    assert dom.tags.count("table") >= 3  # the summary, and one per case
    assert dom.tags.count("tr") >= 1 + 3 + 2 + 3  # summary rows, then each case's rows
    assert [h.split()[0] for h in dom.headings[:3]] == ["At", "Summary", "Reading"]


def test_the_browser_gets_every_picture_inline(dom):
    # The overview, the heat map of the failing 2x3 gradient, and two sweeps.
    assert len(dom.images) == 4
    assert all(str(i["src"]).startswith("data:image/png;base64,") for i in dom.images)


def test_a_case_named_script_alert_is_text_in_the_browser(dom):
    assert "script" not in dom.tags
    assert any(heading.startswith(XSS_NAME) for heading in dom.headings)
    assert "data-pwned" not in dom.body  # the description's onerror never ran


def test_a_screenshot_of_the_report_is_a_real_picture(report, tmp_path):
    shot = tmp_path / "report.png"
    chromium(
        "--hide-scrollbars",
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        report.as_uri(),
        profile=tmp_path / "profile",
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1600)
    assert len(data) > 50_000  # text, tables and plots; a blank page compresses to a few kB
