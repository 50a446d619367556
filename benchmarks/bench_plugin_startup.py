"""What the gradcheck pytest plugin costs every pytest session: start-up with and without it.

pytest loads ``gradcheck.pytest_plugin`` through its ``pytest11`` entry point in the session of
everyone who installs gradcheck, whether or not they use it. This runs
``python -m pytest -q <one trivial test>`` in fresh processes, each time once without the
plugin and once with it, back to back (so that drift in the machine's load hits both alike),
and prints per variant the median wall time and CPU time (user + system, from getrusage), and
the median and quartiles of the paired differences: the plugin's cost.

Three settings:

* entry point, bytecode cached: a normal install. ``-p no:gradcheck`` (pytest skips the entry
  point before importing it) against the default. Compiled modules and pytest's
  assertion-rewrite cache are written under a temporary PYTHONPYCACHEPREFIX (the checkout
  stays clean).
* entry point, no bytecode: the same with PYTHONDONTWRITEBYTECODE=1, as in some sandboxes:
  gradcheck's modules are compiled, and the plugin's asserts rewritten, in every session.
* isolated: PYTEST_DISABLE_PLUGIN_AUTOLOAD=1, so no other plugin adds its noise, and
  ``-p gradcheck.pytest_plugin`` against nothing; bytecode cached.

Session times on a shared machine vary by tens of milliseconds, more than the plugin costs, so
it also prints a steadier figure: the time Python itself reports (``-X importtime``) for
importing ``gradcheck.pytest_plugin`` after pytest, median over fresh processes. And what that
import pulls in beyond pytest; the script exits 1 if it is a heavy module (NumPy, torch).

    .venv/bin/python benchmarks/bench_plugin_startup.py [--repeat 41]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("numpy", "torch", "tabulate", "hypothesis")
MODULES_CODE = (
    "import sys; import pytest; before = set(sys.modules); import gradcheck.pytest_plugin; "
    "print(' '.join(sorted(m for m in set(sys.modules) - before if '.' not in m)))"
)


def session_seconds(directory: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one pytest session in a fresh process."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "."]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(command)}):\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def paired(
    directory: Path, env: dict[str, str], without: list[str], with_: list[str], repeat: int
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """``repeat`` pairs of (without, with) sessions, after one warm-up pair."""
    session_seconds(directory, without, env)
    session_seconds(directory, with_, env)
    return [
        (session_seconds(directory, without, env), session_seconds(directory, with_, env))
        for _ in range(repeat)
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.1f} ms"


def report(title: str, pairs: list[tuple[tuple[float, float], tuple[float, float]]]) -> None:
    print(title)
    for label, side in (("without the plugin", 0), ("with the plugin", 1)):
        wall = statistics.median(p[side][0] for p in pairs)
        cpu = statistics.median(p[side][1] for p in pairs)
        print(f"  {label:<22} median wall {ms(wall)}   CPU {ms(cpu)}")
    for label, measure in (("wall", 0), ("CPU", 1)):
        differences = [p[1][measure] - p[0][measure] for p in pairs]
        q1, _, q3 = statistics.quantiles(differences, n=4)
        print(
            f"  plugin's cost, {label:<4}   median {ms(statistics.median(differences))}"
            f"   quartiles {q1 * 1e3:+.1f} .. {q3 * 1e3:+.1f} ms"
        )


def import_microseconds(env: dict[str, str]) -> int:
    """What ``-X importtime`` reports for importing the plugin module after pytest (cumulative)."""
    code = "import pytest; import gradcheck.pytest_plugin"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stderr.splitlines() if x.endswith("| gradcheck.pytest_plugin"))
    return int(line.split("|")[1])


def new_top_level_modules() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", MODULES_CODE], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41, help="pairs of sessions (41)")
    args = parser.parse_args(argv)
    print(f"pytest start-up, one trivial test, {args.repeat} pairs of sessions per setting")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "test_trivial.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached = {**base, "PYTHONPYCACHEPREFIX": str(directory / "pycache")}
        uncached = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
        isolated = {**cached, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        blocked, loaded = ["-p", "no:gradcheck"], []
        settings = [
            ("entry point, bytecode cached (a normal install):", cached, blocked, loaded),
            ("entry point, no bytecode (PYTHONDONTWRITEBYTECODE=1):", uncached, blocked, loaded),
            (
                "isolated (no plugin autoload; -p gradcheck.pytest_plugin), bytecode cached:",
                isolated,
                [],
                ["-p", "gradcheck.pytest_plugin"],
            ),
        ]
        for title, env, without, with_ in settings:
            report(title, paired(directory, env, without, with_, args.repeat))
        for label, env in (("bytecode cached", cached), ("no bytecode", uncached)):
            times = [import_microseconds(env) for _ in range(args.repeat)]
            print(
                f"importing gradcheck.pytest_plugin after pytest ({label}): "
                f"median {statistics.median(times) / 1e3:.1f} ms (-X importtime)"
            )
    modules = new_top_level_modules()
    print(f"top-level modules the plugin imports beyond pytest: {' '.join(modules) or '(none)'}")
    heavy = [m for m in modules if m in HEAVY]
    if heavy:
        print(f"HEAVY imports at plugin load: {heavy}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
