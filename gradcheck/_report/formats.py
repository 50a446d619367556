"""Render: the report formats, by name and by file extension: the one list that the CLI
(``--format``, ``--output``), the pytest plugin (``--gradcheck-report``) and the renderers use.

It imports nothing: the pytest plugin reads it while pytest starts.
"""

from __future__ import annotations

from pathlib import Path

# Format names, in the order the help texts list them.
FORMATS = ("text", "markdown", "json", "junit", "html")
# File extension -> format, for ``--output PATH`` and ``--gradcheck-report=PATH``.
EXTENSIONS = {
    ".txt": "text",
    ".md": "markdown",
    ".json": "json",
    ".xml": "junit",
    ".html": "html",
    ".htm": "html",
}


def described() -> str:
    """The extensions and their formats, for help texts and errors: '.txt (text), ...'."""
    return ", ".join(f"{ext} ({fmt})" for ext, fmt in EXTENSIONS.items())


def format_for_path(path: str | Path, default: str | None = None) -> str:
    """The report format for a file name, from its extension (``default`` for others).

    Raises ValueError naming the file and the extensions there are.
    """
    found = EXTENSIONS.get(Path(path).suffix.lower(), default)
    if found is None:
        raise ValueError(
            f"cannot tell the report format of {str(path)!r}; use one of {described()}"
        )
    return found
