"""The house's layout, as docs/design.md states it: stages as folders, no import circles.

Read from the source with ``ast`` (nothing is imported), so lazy imports inside functions and
``TYPE_CHECKING`` imports count like any other.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradcheck"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """The gradcheck modules that ``path`` imports, anywhere in it."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        out.update(n for n in names if n in MODULES)
    return out


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_of_gradcheck_imports_itself_back_through_others():
    graph = {m: imported(p) - {m} for m, p in MODULES.items()}
    # a package's empty __init__ is imported on the way to its modules, and imports nothing
    assert cycle_through(graph) is None


def test_the_stages_are_private_subpackages_of_two_or_more_modules_with_empty_inits():
    packages = [p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    assert len(packages) >= 4
    for folder in packages:
        assert folder.name.startswith("_"), folder
        assert (folder / "__init__.py").read_text() == "", f"{folder.name}/__init__.py not empty"
        assert len([p for p in folder.glob("*.py") if p.name != "__init__.py"]) >= 2, folder


def test_the_top_level_holds_at_most_twelve_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 12


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_700_lines(name):
    assert len(MODULES[name].read_text(encoding="utf-8").splitlines()) <= 700


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    count = len(names) + (a.vararg is not None) + (a.kwarg is not None)
    return count - (bool(names) and names[0].arg in ("self", "cls"))


def private_functions(path: Path) -> list[tuple[str, int]]:
    """(name, parameter count) of every function that is not public API: a module-level
    function or method named with a leading underscore, or any function of a private module."""
    out = []
    private_module = any(p.startswith("_") and p != "__init__.py" for p in path.parts[-2:])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            private = node.name.startswith("_") and not node.name.startswith("__")
            if private or private_module:
                out.append((node.name, parameters(node)))
    return out


def test_no_private_function_takes_more_than_eight_parameters():
    """Public names keep their keywords (torch users rely on them); inside, options travel as
    one object."""
    import gradcheck

    public = {(module, name) for name, module in gradcheck._EXPORTS.items()}
    wide = [
        f"{name}:{fn} ({count})"
        for name, path in MODULES.items()
        for fn, count in private_functions(path)
        if count > 8 and (name, fn) not in public
    ]
    assert wide == []


def test_a_check_result_has_at_most_eight_fields():
    from gradcheck import CheckResult

    assert len(dataclasses.fields(CheckResult)) <= 8
