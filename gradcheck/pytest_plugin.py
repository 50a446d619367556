"""Surface: the pytest plugin (hooks only), registered through the ``pytest11`` entry point.

pytest imports this module in the session of everyone who installs gradcheck, so it imports
nothing heavy: no NumPy, no torch, no gradcheck module that needs them. The work lives in
``gradcheck._plugin.fixture`` (the ``gradcheck`` fixture) and ``gradcheck._plugin.items``
(cases as test items, the report), imported only when a test asks for the fixture or the
session runs with ``--gradcheck``. Its state is one frozen :class:`Settings` in
``config.stash``.

Options: ``--gradcheck`` (collect the registered cases as test items), ``--gradcheck-seed=N``
or ``=random`` (the session seed; printed in the header), ``--gradcheck-report=PATH`` (write
the tolerance report, format from the extension; implies ``--gradcheck``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradcheck._plugin.settings import Settings
from gradcheck._report import formats as _formats  # imports nothing: the one list of report formats

if TYPE_CHECKING:
    from gradcheck._plugin.fixture import GradcheckFixture

DEFAULT_SEED = 0
PLUGIN_NAME = "gradcheck-cases"


SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradient checks (gradcheck)")
    group.addoption(
        "--gradcheck",
        action="store_true",
        default=False,
        help="Run the registered gradcheck cases as test items: those under the given paths, "
        "else under [tool.gradcheck] paths in pyproject.toml (default: cases/).",
    )
    group.addoption(
        "--gradcheck-seed",
        type=_seed_option,
        default=None,
        metavar="N|random",
        help=f"Seed for the gradcheck fixture and the cases (default: {DEFAULT_SEED}); "
        "'random' picks one and prints it in the header.",
    )
    group.addoption(
        "--gradcheck-report",
        type=_report_option,
        default=None,
        metavar="PATH",
        help="Write the gradcheck tolerance report to PATH at the end of the session; the "
        f"format follows the extension: {_formats.described()}. Implies --gradcheck.",
    )


def _seed_option(text: str) -> int | str:
    if text == "random":
        return text
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed; give an integer in [0, 2**32) or 'random'"
        )
    return seed


def _report_option(text: str) -> Path:
    try:
        _formats.format_for_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return Path(text)


def pytest_configure(config: pytest.Config) -> None:
    seed, source = _session_seed(config)
    report: Path | None = config.getoption("gradcheck_report")
    settings = Settings(
        seed=seed,
        seed_source=source,
        collect_cases=bool(config.getoption("gradcheck")) or report is not None,
        report=None if report is None else Path(config.invocation_params.dir, report),
    )
    config.stash[SETTINGS] = settings
    if settings.collect_cases:
        from gradcheck._plugin.items import CasePlugin

        config.pluginmanager.register(CasePlugin(config, settings), PLUGIN_NAME)


def _session_seed(config: pytest.Config) -> tuple[int, str]:
    """The seed from the controller (under xdist), the option, or the default."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and "gradcheck_seed" in workerinput:
        return int(workerinput["gradcheck_seed"]), str(workerinput["gradcheck_seed_source"])
    option = config.getoption("gradcheck_seed")
    if option is None:
        return DEFAULT_SEED, "default"
    if option == "random":
        import secrets

        return secrets.randbelow(2**32), "random"
    return int(option), "option"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's seed, even a random one."""
    settings = node.config.stash[SETTINGS]
    node.workerinput["gradcheck_seed"] = settings.seed
    node.workerinput["gradcheck_seed_source"] = settings.seed_source


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[SETTINGS]
    how = {"default": "the default", "option": "from --gradcheck-seed", "random": "random"}
    return [
        f"gradcheck: seed {settings.seed} ({how[settings.seed_source]}; "
        f"replay with --gradcheck-seed={settings.seed})"
    ]


@pytest.fixture
def gradcheck(request: pytest.FixtureRequest) -> GradcheckFixture:
    """Gradient checks seeded for this test: ``gradcheck.check(f, inputs, grad)`` returns a
    result, ``gradcheck.assert_gradients_close(...)`` fails the test with the worst elements;
    ``gradcheck.seed`` and ``gradcheck.rng`` (a NumPy Generator) are this test's seed."""
    from gradcheck._plugin.fixture import GradcheckFixture

    settings = request.config.stash[SETTINGS]
    return GradcheckFixture(session_seed=settings.seed, nodeid=request.node.nodeid)
