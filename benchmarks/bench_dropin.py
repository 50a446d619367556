"""Time spent inside checker calls on the library-style suite (tests/dropin_suite): torch's
``torch.autograd.gradcheck`` against ``gradcheck.torch.gradcheck`` swapped in, the suite run
unchanged in its own interpreter for each, in interleaved rounds.

    .venv/bin/python benchmarks/bench_dropin.py [--rounds 3]

Prints, per test, the median seconds inside checker calls under each and their ratio; then the
totals (ours / torch) over the suite and over the suite without its slowest test, and the
same for the fast_mode tests alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

SUITE = Path(__file__).resolve().parent.parent / "tests" / "dropin_suite"


def run(checker: str, record: Path) -> dict[str, dict[str, object]]:
    env = {**os.environ, "DROPIN_CHECKER": checker, "DROPIN_RECORD": str(record)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            str(SUITE),
        ],
        env=env,
        capture_output=True,
        check=False,
    )
    tests: dict[str, dict[str, object]] = json.loads(record.read_text())["tests"]
    return {k.split("dropin_suite/")[-1]: v for k, v in tests.items()}


def totals(times: dict[str, tuple[float, float]]) -> tuple[float, float, float, float, str]:
    torch_total = sum(t for t, _ in times.values())
    ours_total = sum(o for _, o in times.values())
    slowest = max(times, key=lambda k: max(times[k]))
    rest = {k: v for k, v in times.items() if k != slowest}
    return (
        torch_total,
        ours_total,
        sum(t for t, _ in rest.values()),
        sum(o for _, o in rest.values()),
        slowest,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, dict[str, list[float]]] = {"torch": {}, "gradcheck": {}}
    outcomes: dict[str, dict[str, str]] = {"torch": {}, "gradcheck": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for checker in ("torch", "gradcheck") if r % 2 == 0 else ("gradcheck", "torch"):
                for name, entry in run(checker, Path(tmp) / f"{checker}{r}.json").items():
                    seconds[checker].setdefault(name, []).append(float(entry["checker_seconds"]))  # type: ignore[arg-type]
                    outcomes[checker][name] = str(entry["outcome"])
    times = {
        name: (
            statistics.median(seconds["torch"][name]),
            statistics.median(seconds["gradcheck"][name]),
        )
        for name in seconds["torch"]
    }
    rows = [
        [
            name,
            outcomes["torch"][name],
            outcomes["gradcheck"][name],
            t * 1e3,
            o * 1e3,
            o / t if t else float("nan"),
        ]
        for name, (t, o) in times.items()
    ]
    print(
        tabulate(
            rows, headers=["test", "torch", "ours", "torch ms", "ours ms", "ratio"], floatfmt=".3g"
        )
    )
    fast = {k: v for k, v in times.items() if _is_fast(k)}
    for label, part in (("suite", times), ("fast_mode tests", fast)):
        t, o, t_rest, o_rest, slowest = totals(part)
        print(
            f"{label}: torch {t:.3f} s, ours {o:.3f} s, ratio {o / t:.2f}; without its slowest "
            f"test ({slowest}): ratio {o_rest / t_rest:.2f}"
        )


def _is_fast(name: str) -> bool:
    text = (SUITE / name.split("::")[0]).read_text()
    function = name.split("::")[1].split("[")[0]
    body = text[text.index(f"def {function}(") :]
    body = body[: body.find("\ndef ", 1) if "\ndef " in body[1:] else len(body)]
    return "fast_mode=True" in body or "fast_mode=fast" in body


if __name__ == "__main__":
    main()
