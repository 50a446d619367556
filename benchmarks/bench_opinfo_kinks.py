"""The kink probe: every ``reference_inputs`` sample of OpInfo's kink-prone ops, float64.

    .venv/bin/python benchmarks/bench_opinfo_kinks.py [--ops NAME,...] [--show N]

``tests/test_opinfo_kinks.py`` takes the first 6 samples per op; this takes them all (the same
filter: finite floating tensors, a single-tensor sample above 64 elements cut to 48 distinct
values, f finite and differentiable), huge values included. Autograd's gradient is right, so
no sample may fail; prints the verdict counts and each inconclusive sample with its reason
(jumps at integers, ``|x| >= 1/eps``, a 1e20 element whose rounding swamps the others).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch

import gradcheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_opinfo_kinks as kinks

torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="", help="comma-separated op names (all: empty)")
    parser.add_argument("--show", type=int, default=40, help="inconclusive samples to print")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    kinks.PER_OP = 10**6
    names = args.ops.split(",") if args.ops else kinks.KINK_PRONE_OPS
    counts: Counter[str] = Counter()
    shown = 0
    for name in names:
        for j, (f, inputs) in enumerate(kinks.kink_samples(kinks._op_db()[name])):
            result = gradcheck.check(f, inputs, seed=j)
            counts[result.verdict.value] += 1
            if result.verdict != "pass" and shown < args.show:
                shown += 1
                shapes = [tuple(t.shape) for t in inputs]
                print(f"  {result.verdict} {name} {shapes}: {result.summary()}"[:300])
    total = sum(counts.values())
    print(
        f"kink probe: {total} samples: {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['inconclusive']} inconclusive"
    )


if __name__ == "__main__":
    main()
