"""What ``pytest --gradcheck`` costs against ``gradcheck run`` on the same cases (issue 17).

Generates ``--cases`` small cases (default 2000, in modules of 100; one formula source, float64;
every tenth a known-bad case, ``expect="fail"``, which pytest reports as xfail), then runs, in
fresh processes and interleaved (so that drift in the machine's load hits both alike):

* ``gradcheck run DIR -q``
* ``pytest --gradcheck DIR -q -p no:cacheprovider`` (and, with ``--xdist``, ``-n 2`` too)
* the same with ``-p no:hypothesispytest``: hypothesis's pytest plugin imports hypothesis at
  the end of any session where it is installed (about 1 s), a cost that is not gradcheck's

and prints each one's median wall time and the ratio of pytest's to the CLI's. Both exit 0
(every case as expected), which the script checks. The target of issue 17: within 1.5x.

    .venv/bin/python benchmarks/bench_plugin_cost.py [--cases 2000] [--repeat 3] [--xdist]
    .venv/bin/python benchmarks/bench_plugin_cost.py --quick     # a smoke run: 40 cases, once
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE_HEAD = "import numpy as np\nfrom gradcheck import case\n\n"
CASE = (
    "c{n:05d} = case(name='c{n:05d}', f=lambda x: (np.sin(x) * {k}).sum(),\n"
    "    inputs={{'x': np.linspace(-1, 1, 4)}}, grad=lambda x: {grad},\n"
    "    dtypes=['float64'], expect='{expect}')\n"
)


def write_cases(directory: Path, count: int, per_module: int = 100) -> None:
    """``count`` cases; every tenth has a wrong formula and says so (expect='fail')."""
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, per_module):
        lines = [MODULE_HEAD]
        for n in range(start, min(start + per_module, count)):
            k = 1 + n % 7
            bad = n % 10 == 0
            grad = f"np.cos(x) * {k + 1}" if bad else f"np.cos(x) * {k}"
            lines.append(CASE.format(n=n, k=k, grad=grad, expect="fail" if bad else "pass"))
        (directory / f"ops_{start // per_module:03d}.py").write_text("".join(lines))


def seconds(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--xdist", action="store_true", help="also time pytest -n 2")
    parser.add_argument("--quick", action="store_true", help="40 cases, once (a smoke run)")
    args = parser.parse_args(argv)
    count, repeat = (40, 1) if args.quick else (args.cases, args.repeat)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cases(root / "cases", count)
        commands = {
            "gradcheck run": [sys.executable, "-m", "gradcheck", "run", "cases", "-q"],
            "pytest --gradcheck": [
                *(sys.executable, "-m", "pytest", "--gradcheck", "cases", "-q"),
                *("-p", "no:cacheprovider"),
            ],
        }
        # hypothesis's own pytest plugin imports hypothesis at the end of every session where
        # it is installed (its terminal summary), gradcheck or not: about 1 s, timed apart.
        commands["pytest --gradcheck, no hypothesis plugin"] = [
            *commands["pytest --gradcheck"],
            *("-p", "no:hypothesispytest"),
        ]
        if args.xdist:
            commands["pytest --gradcheck -n 2"] = [*commands["pytest --gradcheck"], "-n", "2"]
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeat):
            for name, command in commands.items():
                times[name].append(seconds(command, root))
    print(f"{count} cases, {repeat} interleaved run(s) each, median wall seconds:")
    cli = statistics.median(times["gradcheck run"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<26} {median:8.2f} s  ({median / cli:.2f}x gradcheck run)")
    ratio = statistics.median(times["pytest --gradcheck"]) / cli
    print(f"ratio pytest --gradcheck / gradcheck run: {ratio:.2f} (target: within 1.5)")
    own = statistics.median(times["pytest --gradcheck, no hypothesis plugin"]) / cli
    print(f"the same without hypothesis's pytest plugin (its import, not gradcheck's): {own:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
