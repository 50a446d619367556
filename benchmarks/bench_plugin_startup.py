"""What the gradcheck pytest plugin costs every pytest session: start-up with and without it.

pytest loads ``gradcheck.pytest_plugin`` through its ``pytest11`` entry point in the session of
everyone who installs gradcheck, whether or not they use it. This runs
``python -m pytest -q <one trivial test>`` in a fresh process, alternating
``-p no:gradcheck`` (the plugin blocked before it is imported) with the default (the plugin
loaded), and prints the median wall time of each and their difference. It also prints what
importing the plugin module pulls in that pytest alone does not, which must not include
NumPy or torch.

    .venv/bin/python benchmarks/bench_plugin_startup.py [--repeat 41]
"""

from __future__ import annotations

import argparse
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


def session_seconds(directory: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, "."]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(command)}):\n{done.stdout}{done.stderr}")
    return elapsed


def new_top_level_modules() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", MODULES_CODE], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=41, help="sessions per variant (41)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "test_trivial.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        variants = {"without (-p no:gradcheck)": ["-p", "no:gradcheck"], "with (default)": []}
        for extra in variants.values():  # warm the file system caches
            session_seconds(directory, extra)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            for name, extra in variants.items():
                times[name].append(session_seconds(directory, extra))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"pytest start-up, one trivial test, median of {args.repeat} sessions each:")
    for name, value in medians.items():
        spread = statistics.quantiles(times[name], n=4)
        print(
            f"  {name:<28} {value * 1e3:7.1f} ms  (quartiles {spread[0] * 1e3:.1f}-"
            f"{spread[2] * 1e3:.1f} ms)"
        )
    without, with_plugin = medians.values()
    print(
        f"  difference                   {(with_plugin - without) * 1e3:+7.1f} ms"
        f"  (ratio {with_plugin / without:.3f})"
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
