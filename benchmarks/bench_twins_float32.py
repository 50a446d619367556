"""Float32 twins that capture tensors: how many correct/buggy pairs are told apart.

    .venv/bin/python benchmarks/bench_twins_float32.py

The corpus is ``tests/twins_float32.py``: hand formulas and a custom Function's backward for
float32 code that captures float32 tensors (closures, an ``nn.Linear``), each correct and with
one planted error (a scale error of 1e-3 down to 1e-6 relative, a ridge term left out). A pair
is told apart when the correct one passes and the buggy one fails. "above rounding" counts the
pairs whose planted error exceeds 4 times the analytic side's own float32 rounding (measured
against the same code built in float64): those must all be told apart.

Two columns: gradcheck as a user calls it (the float64 side computes every tensor f meets in
float64), and ``dtype_policy='native'`` (f differentiated in float32, tolerance ``sqrt(eps)``),
which is what a float32 check of such code fell back to when f could not run on float64 inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import twins_float32

import gradcheck

torch.set_num_threads(1)


def verdicts(twin: twins_float32.Twin, policy: str) -> tuple[str, str]:
    correct = gradcheck.check(twin.f, (twin.x,), twin.correct, dtype_policy=policy)  # type: ignore[arg-type]
    buggy = gradcheck.check(
        twin.buggy_f or twin.f,
        (twin.x,),
        twin.buggy,
        dtype_policy=policy,  # type: ignore[arg-type]
    )
    return correct.verdict.value, buggy.verdict.value


def main() -> None:
    rows = []
    totals = {"auto": [0, 0, 0], "native": [0, 0, 0]}  # told apart, above-rounding apart, false
    above = 0
    for twin in twins_float32.twins():
        gap = twins_float32.gap(twin)
        above += gap > 4
        row = [twin.name, f"{gap:.3g}"]
        for policy in ("auto", "native"):
            correct, buggy = verdicts(twin, policy)
            apart = correct == "pass" and buggy == "fail"
            totals[policy][0] += apart
            totals[policy][1] += apart and gap > 4
            totals[policy][2] += correct == "fail"
            row.append(f"{correct}/{buggy}")
        rows.append(row)
    headers = ["twin", "error/rounding", "gradcheck", "native float32"]
    print(tabulate(rows, headers=headers))
    count = len(rows)
    for policy, label in (("auto", "gradcheck"), ("native", "native float32")):
        apart, apart_above, false = totals[policy]
        print(
            f"{label}: {apart}/{count} pairs told apart; {apart_above}/{above} of those above "
            f"rounding; {false} false alarms"
        )


if __name__ == "__main__":
    main()
