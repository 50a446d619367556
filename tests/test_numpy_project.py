"""A NumPy user project (tests/numpy_project): its case module imports the project's own
package, which is not installed; ``gradcheck run`` and ``pytest --gradcheck`` find it at the
project root, as pytest finds a project's code. (.ci/packaging runs the same from the wheel,
in a venv without torch.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent / "numpy_project"


@pytest.fixture
def project(tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_gradcheck_run_imports_the_projects_own_package(project):
    script = Path(sys.executable).with_name("gradcheck")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}: the package is not installed")
    done = subprocess.run([script, "run", "cases"], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 rows as expected: 2 passed, 2 xfailed, 0 failed" in done.stdout


def test_pytest_gradcheck_imports_the_projects_own_package(project, pytester):
    shutil.copytree(project, pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess("--gradcheck", "cases", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, xfailed=2)
