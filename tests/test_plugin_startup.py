"""The plugin loads in every pytest session of everyone who installs gradcheck: it must stay light.

The time it costs is measured by benchmarks/bench_plugin_startup.py; these tests pin the cause of
a slow start-up, a heavy import, and the lazy package __init__ that keeps it away.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import gradcheck

HEAVY = ("numpy", "torch", "jax", "tabulate", "hypothesis")


def test_importing_the_plugin_imports_nothing_heavy():
    code = (
        "import sys, gradcheck.pytest_plugin\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_pytest_session_that_does_not_use_gradcheck_never_imports_numpy(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_was_imported():
            assert "gradcheck.pytest_plugin" in sys.modules, "the plugin should be loaded"
            assert "numpy" not in sys.modules
            assert "torch" not in sys.modules
            assert "jax" not in sys.modules
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_pytest_gradcheck_on_a_project_without_jax_imports_no_jax(pytester):
    project = Path(__file__).resolve().parent / "numpy_project"
    shutil.copytree(project, pytester.path, dirs_exist_ok=True)
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            with open("imported.txt", "w") as out:
                out.write(" ".join(m for m in ("jax", "jaxlib") if m in sys.modules) or "none")
        """
    )
    result = pytester.runpytest_subprocess("--gradcheck", "cases", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, xfailed=2)
    assert (pytester.path / "imported.txt").read_text() == "none"


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the ``if TYPE_CHECKING:`` imports in gradcheck/__init__.py."""
    tree = ast.parse(Path(gradcheck.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_the_lazy_export_table_agrees_with_the_type_checking_imports():
    assert _type_checking_imports() == gradcheck._EXPORTS
    assert sorted(gradcheck.__all__) == sorted(gradcheck._EXPORTS)


def test_every_lazy_name_resolves_to_the_object_its_module_defines():
    import importlib

    for name, module in gradcheck._EXPORTS.items():
        assert getattr(gradcheck, name) is getattr(importlib.import_module(module), name)
    assert "check" in dir(gradcheck)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    import pytest

    with pytest.raises(AttributeError, match="module 'gradcheck' has no attribute 'chek'"):
        gradcheck.chek  # noqa: B018
