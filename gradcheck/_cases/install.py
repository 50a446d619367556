"""Surface: what an optional feature needs, and the command that installs it *as this copy of
gradcheck was installed*: from a checkout (an editable install, or the source tree on the path)
the extra of that checkout with its pinned constraints; from a wheel the packages themselves,
read from the installed metadata, so the hint never names an extra of an unpublished package.

Extras: ``torch`` (torch autograd, custom ``autograd.Function`` code, torch inputs), ``jax``
(JAX code and arrays) and ``html`` (matplotlib: the plots of the HTML report and of
``gradcheck sweep``).
"""

from __future__ import annotations

import re
from pathlib import Path

# What each extra needs when the installed metadata cannot say (a source tree on sys.path).
FALLBACK = {"torch": ["torch"], "jax": ["jax>=0.4.20"], "html": ["matplotlib>=3.7"]}
# Plain ``pip install torch`` fetches the CUDA build on Linux (several GB); the CPU one is here.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"  # the rest of the checkout's pins


def checkout() -> Path | None:
    """The source checkout this gradcheck runs from, or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return None
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"gradcheck"', text, re.M) else None


def requirements(extra: str) -> list[str]:
    """The requirements of ``gradcheck[extra]``, from the installed metadata."""
    from importlib import metadata

    try:
        declared = metadata.requires("gradcheck") or []
    except metadata.PackageNotFoundError:
        declared = []
    marker = re.compile(rf"""^(?P<req>[^;]+);\s*extra\s*==\s*["']{re.escape(extra)}["']\s*$""")
    found = [m["req"].strip() for m in map(marker.match, declared) if m is not None]
    return found or FALLBACK.get(extra, [])


def hint(extra: str) -> str:
    """The command that installs what ``extra`` needs, e.g. ``pip install 'matplotlib>=3.7'``."""
    root = checkout()
    if root is not None:
        constraints = root / "constraints.txt"
        pins = f"-c {constraints} " if constraints.is_file() else ""
        if extra == "torch":  # the pin names a version, not a build: the index picks the CPU one
            return (
                f"pip install {pins}-e '{root}[torch]' --index-url {TORCH_CPU_INDEX} "
                f"--extra-index-url {PYPI} (torch's CPU build)"
            )
        return f"pip install {pins}-e '{root}[{extra}]'"
    packages = " ".join(f"'{r}'" if re.search(r"[<>=!~ ]", r) else r for r in requirements(extra))
    if extra == "torch":
        return f"pip install {packages} --index-url {TORCH_CPU_INDEX} (the CPU build)"
    return f"pip install {packages}"


def missing_torch() -> str:
    """The one-line message for a case that needs torch where torch is not installed."""
    needs = "torch is not installed, and this needs it (torch autograd or torch inputs)"
    return f"{needs}: {hint('torch')}"


def plain_message(exc: BaseException) -> str | None:
    """A plain sentence for an exception that only says an optional package is missing."""
    missing = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    if missing == "torch":
        return missing_torch()
    if missing in ("jax", "jaxlib"):
        return f"jax is not installed, and this needs it (JAX code or JAX arrays): {hint('jax')}"
    return None


def numpy_without_grad(autograd: bool, exc: BaseException) -> str | None:
    """The hint for NumPy code in a case without ``grad=`` (``autograd``: the row checks torch
    autograd): f gets torch tensors there, and without torch the row asks for it."""
    if not autograd:
        return None
    missing = plain_message(exc)
    if missing is None and "numpy" not in str(exc).lower():
        return None
    why = missing or str(exc).strip().rstrip(".")
    return (
        f"{why}; this case has no grad=, so it checks torch autograd and f gets torch tensors: "
        "for NumPy code, pass the hand-derived gradient (case(..., grad=your_gradient))"
    )
