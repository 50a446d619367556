"""Surface: the pytest plugin's state, one frozen :class:`Settings` per session.

Its own module so that the hooks (``gradcheck.pytest_plugin``) and the case items
(``gradcheck._plugin.items``) share the type without importing each other; it imports nothing
heavy, as the plugin's start must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """What this session asked of gradcheck, decided once in ``pytest_configure``.

    Fields:
        seed: the session seed; each test's and each case's seed is derived from it.
        seed_source: how it was chosen: 'default', 'option' (--gradcheck-seed) or 'random'.
        collect_cases: whether registered cases become test items (--gradcheck).
        report: where to write the tolerance report (--gradcheck-report), or None.
    """

    seed: int
    seed_source: str
    collect_cases: bool
    report: Path | None
