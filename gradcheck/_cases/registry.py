"""Load: import the case modules under some paths and collect their cases, sorted by name.

Rules, in one place:

* A path is a ``.py`` file or a directory searched recursively for ``*.py``; files whose name
  starts with ``_`` (``__init__.py``, shared helpers) and ``__pycache__`` are skipped, and so
  is a symlink whose target lies outside the directory (pytest --gradcheck skips it too).
* With no paths: ``[tool.gradcheck] paths`` (relative to that file) in the nearest
  ``pyproject.toml`` with a ``[tool.gradcheck]`` table, searched from the working directory
  upward as pytest finds its rootdir (:func:`config_root`), else ``cases/`` there (or, with
  no such file, in the working directory). ``[tool.gradcheck] timeout`` comes from it too.
* Every :class:`~gradcheck._cases.case.Case` or :class:`~gradcheck._cases.case.Descent` bound at
  module level
  is collected, alone or inside a list or tuple; the same object bound twice counts once.
* Two different cases with one name are refused with :class:`DuplicateCaseError`, naming both
  definitions.
* A module that fails to import becomes a :class:`LoadError` (with the file and line where it
  failed); the other modules are still loaded.
* Each module is imported under a private name (``_gradcheck_cases.<stem>_<hash of its path>``)
  with its own directory on ``sys.path`` meanwhile, so that it may import helpers beside it.
* The user's own code imports as under pytest: the project root (the folder of the nearest
  ``pyproject.toml`` above the case paths, else above the working directory, else the working
  directory) and each ``[tool.gradcheck] pythonpath`` entry (relative to that file) go to the
  front of ``sys.path`` and stay there, as pytest's ``pythonpath`` setting does. A module that
  still fails to import says where it was looked for.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gradcheck._cases.case import AnyCase, Case, Descent

DEFAULT_PATH = "cases"
MODULE_PREFIX = "_gradcheck_cases"


class RegistryError(Exception):
    """The cases cannot be loaded as asked (a missing path, a bad configuration)."""


class DuplicateCaseError(RegistryError):
    """Two cases share a name."""


@dataclass(frozen=True)
class LoadError:
    """A case module that could not be imported.

    Fields:
        path: the module's file.
        line: the line in that file where the import failed (1 when unknown).
        error: the exception's type and message, e.g. ``ZeroDivisionError: division by zero``.
        traceback: the formatted traceback, for details.
    """

    path: str
    line: int
    error: str
    traceback: str = ""


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` found: the cases sorted by name, and the modules that failed."""

    cases: tuple[AnyCase, ...]
    errors: tuple[LoadError, ...]
    paths: tuple[str, ...]
    files: tuple[str, ...]


def config_root(cwd: Path | None = None) -> Path:
    """The folder of the nearest ``pyproject.toml`` with a ``[tool.gradcheck]`` table, from
    ``cwd`` (default: the working directory) upward; ``cwd`` itself when there is none."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _has_table(pyproject):
            return folder
    return here


def _has_table(pyproject: Path) -> bool:
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"^\s*\[\s*tool\s*\.\s*gradcheck\s*[\].]", text, re.M) is not None


def _found_root(root: str | Path | None) -> Path:
    """``root`` as given, else :func:`config_root`, shown relative to the working directory
    ('.' for the working directory itself)."""
    if root is not None:
        return Path(root)
    found = config_root()
    return Path(os.path.relpath(found)) if found != Path.cwd().resolve() else Path(".")


def default_paths(root: str | Path | None = None) -> list[str]:
    """``[tool.gradcheck] paths`` from ``root/pyproject.toml``, else ``['cases']`` (under root);
    without ``root``, the :func:`config_root` of the working directory."""
    root = _found_root(root)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        paths = _setting(pyproject, "paths")
        if paths is not None:
            return [str(root / p) if str(root) != "." else p for p in paths]
    return [str(root / DEFAULT_PATH) if str(root) != "." else DEFAULT_PATH]


def _setting(pyproject: Path, key: str) -> list[str] | None:
    """``[tool.gradcheck] key`` of a pyproject.toml: a list of strings, or None when unset."""
    value = _settings(pyproject).get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise RegistryError(
            f"{pyproject}: [tool.gradcheck] {key} must be a list of strings, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class SearchPath:
    """Where the user's own code is looked for: the project root and its configured paths.

    Fields:
        root: the project root (the folder of ``pyproject``, or the working directory).
        pyproject: the ``pyproject.toml`` that made it the root, or None.
        pythonpath: ``[tool.gradcheck] pythonpath``, resolved against the root.
    """

    root: Path
    pyproject: Path | None
    pythonpath: tuple[Path, ...]

    @property
    def folders(self) -> tuple[Path, ...]:
        return (self.root, *self.pythonpath)

    def describe(self) -> str:
        """The folders searched, in words, for an import error."""
        root = f"the project root {self.root}" + (
            f" (from {self.pyproject.name})" if self.pyproject else " (the working directory)"
        )
        extra = "".join(f", {p} ([tool.gradcheck] pythonpath)" for p in self.pythonpath)
        return f"{root}{extra} and the packages installed for {sys.executable}"


def project_root(paths: Sequence[str | Path] = (), cwd: Path | None = None) -> Path | None:
    """The folder of the nearest ``pyproject.toml`` above the case paths, else above ``cwd``."""
    here = (cwd or Path.cwd()).resolve()
    starts = []
    resolved = [(here / p).resolve() for p in paths]
    if resolved:
        folders = [p if p.is_dir() else p.parent for p in resolved]
        starts.append(Path(os.path.commonpath(folders)))
    starts.append(here)
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / "pyproject.toml").is_file():
                return folder
    return None


def search_path(paths: Sequence[str | Path] = (), cwd: Path | None = None) -> SearchPath:
    """The project root for these case paths and its ``[tool.gradcheck] pythonpath``."""
    root = project_root(paths, cwd)
    if root is None:
        return SearchPath(root=(cwd or Path.cwd()).resolve(), pyproject=None, pythonpath=())
    pyproject = root / "pyproject.toml"
    extra = _setting(pyproject, "pythonpath") or []
    return SearchPath(
        root=root, pyproject=pyproject, pythonpath=tuple((root / p).resolve() for p in extra)
    )


def add_to_sys_path(search: SearchPath) -> None:
    """Put the search path's folders at the front of ``sys.path`` (each once), to stay."""
    for folder in reversed(search.folders):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)


# The keys of [tool.gradcheck]; any other is a usage error, so that a typo is not ignored.
SETTINGS = ("paths", "pythonpath", "timeout")


def _settings(pyproject: Path) -> dict[str, Any]:
    """The ``[tool.gradcheck]`` table of a pyproject.toml ({} without one, or on Python 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: no tomllib; fall back to the defaults
        return {}
    try:
        config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read {pyproject}: {exc}") from None
    tool = config.get("tool", {})
    table = tool.get("gradcheck", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise RegistryError(
            f"{pyproject}: [tool.gradcheck] must be a table, got {table!r}; write it as a "
            f"section [tool.gradcheck] with keys among {', '.join(SETTINGS)}"
        )
    unknown = sorted(set(table) - set(SETTINGS))
    if unknown:
        near = difflib.get_close_matches(unknown[0], SETTINGS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise RegistryError(
            f"{pyproject}: unknown [tool.gradcheck] key {unknown[0]!r}{hint}; the keys are "
            f"{', '.join(SETTINGS)}"
        )
    return table


def check_settings(root: str | Path = ".") -> None:
    """Read ``root/pyproject.toml``'s ``[tool.gradcheck]`` (if any) only to refuse a bad one:
    :class:`RegistryError` naming an unknown key, or a value that is not a table."""
    pyproject = Path(root) / "pyproject.toml"
    if pyproject.is_file():
        _settings(pyproject)


def configured_timeout(root: str | Path | None = None) -> float | None:
    """``[tool.gradcheck] timeout`` (seconds per case) from ``root/pyproject.toml`` (without
    ``root``, the :func:`config_root` of the working directory), else None."""
    from gradcheck._cases.timeout import check_timeout

    pyproject = _found_root(root) / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        return check_timeout(_settings(pyproject).get("timeout"), f"{pyproject} [tool.gradcheck]")
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def case_files(paths: Iterable[str | Path]) -> list[Path]:
    """The ``.py`` files under the paths, sorted, each once; a missing path is an error."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if path.suffix != ".py":
                raise RegistryError(f"{path} is not a .py file; give case modules or directories")
            found[path.resolve()] = None
        elif path.is_dir():
            root = path.resolve()
            for file in sorted(path.rglob("*.py")):
                # A symlink whose target lies outside the directory is not a case of it (as
                # under pytest --gradcheck); give the target's path to run it.
                if not _skipped(file.relative_to(path)) and file.resolve().is_relative_to(root):
                    found[file.resolve()] = None
        else:
            raise RegistryError(
                f"case path {str(raw)!r} does not exist; give a directory of case modules "
                "or a .py file (default: cases/, or [tool.gradcheck] paths in pyproject.toml)"
            )
    return list(found)


def _skipped(relative: Path) -> bool:
    return any(part.startswith("_") or part.startswith(".") for part in relative.parts)


def load(paths: Sequence[str | Path] | None = None) -> Loaded:
    """Import the case modules under ``paths`` (default: :func:`default_paths`) and collect.

    Raises :class:`RegistryError` for a missing path and :class:`DuplicateCaseError` for a
    name defined twice; a module that fails to import becomes a :class:`LoadError` instead.
    """
    chosen = [str(p) for p in (paths if paths else default_paths())]
    files = case_files(chosen)
    search = search_path(chosen)
    add_to_sys_path(search)
    cases: list[AnyCase] = []
    errors: list[LoadError] = []
    for file in files:
        try:
            module = import_case_module(file)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken module is an error row; the others run
            # (SystemExit, GeneratorExit and the module's own BaseException subclasses too)
            errors.append(_load_error(file, exc, search))
            continue
        cases.extend(collect(module))
    return Loaded(
        cases=unique_sorted(cases),
        errors=tuple(errors),
        paths=tuple(chosen),
        files=tuple(str(f) for f in files),
    )


def module_name(file: Path) -> str:
    digest = hashlib.sha1(os.fsencode(file)).hexdigest()[:10]
    stem = re.sub(r"\W", "_", file.stem)
    return f"{MODULE_PREFIX}.{stem}_{digest}"


def import_case_module(file: Path) -> ModuleType:
    """Execute one case module (fresh each call) with its directory importable."""
    name = module_name(file)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up while it runs
    directory = str(file.parent)
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    return module


def collect(module: ModuleType) -> list[AnyCase]:
    """Every case bound at module level, alone or in a list/tuple, in binding order."""
    found: list[AnyCase] = []
    for value in vars(module).values():
        items: Iterable[Any] = value if isinstance(value, (list, tuple)) else (value,)
        found.extend(item for item in items if isinstance(item, (Case, Descent)))
    return found


def unique_sorted(cases: Iterable[AnyCase]) -> tuple[AnyCase, ...]:
    """Cases sorted by name, each object once; two objects with one name are refused."""
    by_name: dict[str, AnyCase] = {}
    for item in cases:
        seen = by_name.get(item.name)
        if seen is None:
            by_name[item.name] = item
        elif seen is not item:
            raise DuplicateCaseError(
                f"two cases are named {item.name!r}: {seen.file}:{seen.line} and "
                f"{item.file}:{item.line}; case names must be unique, rename one of them"
            )
    return tuple(by_name[name] for name in sorted(by_name))


def _load_error(file: Path, exc: BaseException, search: SearchPath | None = None) -> LoadError:
    frames = traceback.extract_tb(exc.__traceback__)
    lines = [f.lineno for f in frames if Path(f.filename).resolve() == file and f.lineno]
    line = lines[-1] if lines else 1
    if isinstance(exc, SyntaxError) and exc.lineno and Path(exc.filename or "") == file:
        line = exc.lineno
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = _import_hint(file, exc, search) or message
    return LoadError(
        path=str(file),
        line=line,
        error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
        traceback=text,
    )


def _import_hint(file: Path, exc: BaseException, search: SearchPath | None) -> str | None:
    """For a module that is not found: torch's install command, or where it was looked for."""
    from gradcheck._cases import install as _install

    plain = _install.plain_message(exc)
    if plain is not None or not isinstance(exc, ModuleNotFoundError) or search is None:
        return plain
    where = search.pyproject or search.root / "pyproject.toml"
    return (
        f"{exc}; looked in the case module's folder {file.parent}, {search.describe()}; "
        f"install that package (pip install -e .) or add its folder to "
        f"[tool.gradcheck] pythonpath in {where}"
    )


def select(
    cases: Iterable[AnyCase], keyword: str | None = None, tags: Sequence[str] = ()
) -> tuple[AnyCase, ...]:
    """The cases matching ``keyword`` (a ``-k`` expression) and carrying any of ``tags``."""
    match = keyword_matcher(keyword) if keyword else None
    chosen = []
    for item in cases:
        if tags and not set(tags) & set(item.tags):
            continue
        if match is not None and not match(item):
            continue
        chosen.append(item)
    return tuple(chosen)


Matcher = Callable[[AnyCase], bool]
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")


def keyword_matcher(expression: str) -> Matcher:
    """Compile a ``-k`` expression like pytest's: words combined with and, or, not, ( ).

    A word matches a case when it is a substring of the case's name or equals one of its tags
    (case-insensitive). Raises ValueError naming the problem for a malformed expression.
    """
    tokens: list[str] = _TOKEN.findall(expression)
    if not tokens:
        raise ValueError("-k expression is empty; give words such as 'seed003 and not bad'")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    def parse_or() -> Matcher:
        left = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda c: a(c) or b(c))(left, right)
        return left

    def parse_and() -> Matcher:
        left = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            left = (lambda a, b: lambda c: a(c) and b(c))(left, right)
        return left

    def parse_not() -> Matcher:
        if peek() == "not":
            take()
            inner = parse_not()
            return lambda c: not inner(c)
        return parse_atom()

    def parse_atom() -> Matcher:
        token = peek()
        if token is None or token in ("and", "or", ")"):
            raise ValueError(f"-k {expression!r}: expected a word at {token or 'the end'!r}")
        take()
        if token == "(":
            inner = parse_or()
            if peek() != ")":
                raise ValueError(f"-k {expression!r}: a '(' is not closed")
            take()
            return inner
        word = token.lower()
        return lambda c: word in c.name.lower() or word in (t.lower() for t in c.tags)

    matcher = parse_or()
    if position != len(tokens):
        raise ValueError(f"-k {expression!r}: unexpected {tokens[position]!r}")
    return matcher
