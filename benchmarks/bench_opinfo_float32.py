"""Sensitivity on PyTorch's OpInfo samples: 1e-4 scale errors in float32, 1e-6 in float64.

The sample is ``tests/test_opinfo.py``'s (the same ops, the same deterministic choice of
``reference_inputs``, ties included). Per dtype it counts what ``check`` says about autograd's
correct gradient (no fail allowed) and how many planted relative scale errors it catches
(``1 + 1e-4`` in float32, ``1 + 1e-6`` in float64), with each input's stated resolution:

    .venv/bin/python benchmarks/bench_opinfo_float32.py [--dtype float32|float64|both]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import gradcheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_opinfo import KINKED_OPS, SMOOTH_OPS, Planted, _op_db, samples

torch.set_num_threads(1)
SCALE = {torch.float32: 1e-4, torch.float64: 1e-6}


def tally(dtype: torch.dtype, names: list[str]) -> tuple[Counter, list[str], list[float]]:
    """(verdict counts per kind, a line per wrong verdict, the resolution of every pass)."""
    ops = _op_db()
    counts: Counter = Counter()
    wrong: list[str] = []
    resolutions: list[float] = []
    for name in names:
        for j, (f, inputs, origin) in enumerate(samples(ops[name], dtype)):
            result = gradcheck.check(f, inputs, seed=j)
            counts["correct", result.verdict.value] += 1
            if result.verdict == "pass":
                resolutions.extend(c.resolution for c in result.inputs)
            if result.verdict != "pass":
                wrong.append(f"correct {result.verdict}: {name}: {result.summary()}")
            if origin == "tie":
                continue
            source = Planted("scale", seed=j, factor=1 + SCALE[dtype])
            planted = gradcheck.check(f, inputs, source, seed=j)
            if source.planted:
                counts["scale", planted.verdict.value] += 1
                if planted.verdict != "fail":
                    wrong.append(f"scale {planted.verdict}: {name}: {planted.summary()}")
    return counts, wrong, resolutions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--show", type=int, default=10, help="wrong verdicts to print")
    args = parser.parse_args()
    dtypes = (
        [torch.float32, torch.float64] if args.dtype == "both" else [getattr(torch, args.dtype)]
    )
    warnings.filterwarnings("ignore", message="There is a performance drop")
    for dtype in dtypes:
        start = time.perf_counter()
        counts, wrong, resolutions = tally(dtype, KINKED_OPS + SMOOTH_OPS)
        correct = sum(n for (kind, _), n in counts.items() if kind == "correct")
        planted = sum(n for (kind, _), n in counts.items() if kind == "scale")
        print(
            f"{str(dtype).removeprefix('torch.')}: correct gradients {correct}: "
            f"{counts['correct', 'pass']} pass, {counts['correct', 'fail']} fail, "
            f"{counts['correct', 'inconclusive']} inconclusive; "
            f"{SCALE[dtype]:g} scale errors caught {counts['scale', 'fail']}/{planted}; "
            f"median resolution of a pass {np.nanmedian(resolutions):.2g}; "
            f"{time.perf_counter() - start:.0f} s"
        )
        for line in wrong[: args.show]:
            print("   ", line)


if __name__ == "__main__":
    main()
