"""False alarms and misses of the screen over many functions, inputs, sizes and dtypes.

For each case (a function, an input, n, dtype, seed) the screen checks the autograd gradient;
anything but a pass is counted as a false alarm (a fail, or an inconclusive where the bars are
honestly too wide; both are printed). Where it passes, an error of 3x the screen's reported
single-element bound is planted in the largest element and must fail. The functions couple
their elements (running sums, norms, log-sum-exp, a quadratic form, ...) and the inputs
include symmetric linspaces, whose running sums round far coarser than eps |f|.

    .venv/bin/python benchmarks/bench_screen_stress.py [--sizes 300 3000 20000] [--given]
        [--mode screen|fast]

``--mode fast`` runs mode 'fast' (torch's fast_mode: one probe, screened where it does not
pass) instead of mode 'screen'; its bound is then the one probe's.

``--given`` passes the float-dtype autograd gradient as a fixed array instead of the autograd
source, so that a float32 gradient cannot be re-run in float64 (its own rounding then counts).
To compare two versions, run it in a worktree of each (``git worktree add``) with
``PYTHONPATH`` pointing there.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import gradcheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chains import CHAIN_OPS

torch.set_num_threads(1)
Fn = Callable[[torch.Tensor], torch.Tensor]


def chain(seed: int, depth: int = 3) -> Fn:
    ops = list(CHAIN_OPS.values())
    picks = [ops[i] for i in np.random.default_rng(seed).integers(0, len(ops), depth)]

    def composed(x: torch.Tensor) -> torch.Tensor:
        for op in picks:
            x = op(x)
        return x

    return composed


def functions(seed: int, n: int, dtype: torch.dtype) -> dict[str, Fn]:
    c = chain(seed)
    fs: dict[str, Fn] = {
        "cumsum*x": lambda v: (torch.cumsum(v, 0) * v).sum(),
        "tanh(cumsum)": lambda v: torch.tanh(torch.cumsum(v, 0) / math.sqrt(n)).sum(),
        "logsumexp": lambda v: torch.logsumexp(v, 0) - v[0],
        "variance": lambda v: ((v - v.mean()) ** 2).mean(),
        "chain.sum": lambda v: c(v).sum(),
        "chain.norm": lambda v: c(v).norm(),
        "sum^2": lambda v: v.sum() ** 2 + (v**2).sum(),
        "cumsum(sin)^2": lambda v: torch.cumsum(torch.sin(v), 0).pow(2).mean(),
    }
    if n <= 2000:
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(n, n, generator=gen, dtype=dtype) / math.sqrt(n)
        fs["quadform"] = lambda v: v @ (a @ v)
    return fs


def inputs(seed: int, n: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "randn": torch.randn(n, generator=gen, dtype=dtype),
        "linspace": torch.linspace(-1, 1, n, dtype=dtype),
        "linspace0-10": torch.linspace(0, 10, n, dtype=dtype),
        "randn*30": 30 * torch.randn(n, generator=gen, dtype=dtype),
        "arange/n": torch.arange(n, dtype=dtype) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 3000, 20000])
    parser.add_argument("--given", action="store_true", help="a fixed gradient array")
    parser.add_argument("--mode", choices=("screen", "fast"), default="screen")
    args = parser.parse_args(argv)
    alarms, missed, evaluations, total = [], [], [], 0
    start = time.perf_counter()
    for dtype, n, seed in itertools.product((torch.float64, torch.float32), args.sizes, (0, 1)):
        cases = itertools.product(functions(seed, n, dtype).items(), inputs(seed, n, dtype).items())
        for (fname, f), (xname, x) in cases:
            if fname == "logsumexp" and xname == "randn*30":
                continue
            g = torch.func.grad(f)(x).detach()
            if not torch.isfinite(g).all():
                continue
            total += 1
            label = f"{str(dtype)[6:]} n={n} seed={seed} {fname} at {xname}"
            given = (lambda v, g=g: g) if args.given else None
            right = gradcheck.check(f, x, given, mode=args.mode, seed=seed)
            evaluations.append(right.evaluations)
            if right.verdict != "pass":
                alarms.append(f"{label}: {right.verdict} ({(right.reasons or ('',))[0][:100]})")
                continue
            assert right.screen is not None
            j = int(torch.argmax(g.abs()))
            wrong = g.clone()
            wrong[j] += 3 * right.screen.bounds[0] / max(1.0, abs(float(x[j])))
            caught = gradcheck.check(f, x, lambda v, w=wrong: w, mode=args.mode, seed=seed)
            if caught.verdict != "fail":
                missed.append(f"{label}: {caught.verdict}")
    fails = sum(": fail" in a for a in alarms)
    print(
        f"{total} cases in {time.perf_counter() - start:.0f} s: {fails} correct gradients called "
        f"fail, {len(alarms) - fails} inconclusive; {len(missed)} planted errors at 3x the bound "
        f"missed; evaluations median {np.median(evaluations):.0f}, max {max(evaluations)}"
    )
    for line in alarms:
        print("not a pass:", line)
    for line in missed:
        print("missed:", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
