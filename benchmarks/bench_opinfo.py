"""Sensitivity on the whole of PyTorch's OpInfo database: every op, every small sample.

    .venv/bin/python benchmarks/bench_opinfo.py [--dtype float32|float64|both]
        [--max-elements 64] [--per-op N] [--ops NAME,...] [--shard I/N] [--misses FILE]

``tests/test_opinfo.py`` checks a chosen spread of ops; this runs every op of ``op_db`` that
supports autograd in the dtype, on every one of its ``sample_inputs`` whose floating tensors
hold at most ``--max-elements`` elements in all, are finite (and ``|x| <= 1e4``, as there), and
where f is finite and autograd runs. Per sample: autograd's correct gradient (a fail is a
false alarm) and the same gradient times ``1 + 1e-4`` (caught when it fails). Prints, per
dtype: samples, 1e-4 caught %, false alarms, inconclusive (correct gradients), and the time.
``--misses`` appends one line per miss and false alarm, to find their classes.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import gradcheck
from gradcheck._sources.reference import Autograd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_opinfo import MAX_MAGNITUDE, Planted, _op_db

torch.set_num_threads(1)
SCALE = 1e-4


def op_samples(
    op: Any, dtype: torch.dtype, max_elements: int, per_op: int | None
) -> Iterator[tuple[Callable[..., Any], tuple[Any, ...]]]:
    """The op's usable small samples (module docstring), in OpInfo's order."""
    torch.manual_seed(0)
    count = 0
    try:
        # requires_grad=True: the samples torch's own gradient tests draw (some sample
        # functions leave out padding_idx, max_norm, ... for them); used detached.
        generated = op.sample_inputs("cpu", dtype, requires_grad=True)
        for s in generated:
            args = tuple(a.detach() if torch.is_tensor(a) else a for a in (s.input, *s.args))
            if not all(isinstance(a, (torch.Tensor, int, float, bool, type(None))) for a in args):
                continue
            floats = [a for a in args if torch.is_tensor(a) and a.is_floating_point()]
            if not floats or sum(t.numel() for t in floats) > max_elements:
                continue
            if any(t.numel() == 0 or not torch.isfinite(t).all() for t in floats):
                continue
            if any(float(t.abs().max()) > MAX_MAGNITUDE for t in floats):
                continue
            if any(torch.is_tensor(v) for v in s.kwargs.values()):
                continue
            f, inputs = as_function(op, s, args)
            if _usable(f, inputs) and not _narrowing(f, inputs):
                yield f, inputs
                count += 1
                if per_op is not None and count >= per_op:
                    return
    except Exception:  # an op whose sample generator itself fails on CPU: skipped
        return


def as_function(op: Any, sample: Any, args: tuple[Any, ...]) -> tuple[Callable[..., Any], tuple]:
    """f of the sample's floating tensors, called as torch's own OpInfo gradient tests call the
    op: through ``op.gradcheck_wrapper`` (a Hermitian or positive-definite input made so) and
    the sample's ``output_process_fn_grad`` (gauge-free outputs of svd, eigh, ...); every
    output is judged."""
    positions = [i for i, a in enumerate(args) if torch.is_tensor(a) and a.is_floating_point()]
    kwargs = dict(sample.kwargs)

    def f(*tensors: torch.Tensor) -> Any:
        full = list(args)
        for p, t in zip(positions, tensors, strict=True):
            full[p] = t
        out = sample.output_process_fn_grad(op.gradcheck_wrapper(op, *full, **kwargs))
        if isinstance(out, (tuple, list)):
            kept = tuple(o for o in out if torch.is_tensor(o) and o.is_floating_point())
            return kept[0] if len(kept) == 1 else kept
        return out

    return f, tuple(args[p] for p in positions)


def _usable(f: Callable[..., Any], inputs: tuple[Any, ...]) -> bool:
    """f runs, its outputs are floating and finite, and autograd differentiates them."""
    try:
        out = f(*inputs)
        outs = out if isinstance(out, tuple) else (out,)
        if not outs or not all(o.is_floating_point() and torch.isfinite(o).all() for o in outs):
            return False
        leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
        with torch.enable_grad():
            made = f(*leaves)
            made = made if isinstance(made, tuple) else (made,)
            total = sum((o * torch.ones_like(o)).sum() for o in made)
            torch.autograd.grad(total, leaves, allow_unused=True)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return False
    return True


class _Planted(Planted):
    """``Planted('scale')``, counted only where the planted error is there to find: autograd's
    gradient in float64 is not zero up to rounding (at most 1e-10: ``corrcoef`` of two
    observations is +-1 whatever they are), and, below float64, the error (``1e-4 max |g|``)
    is more than 4 times the analytic side's own rounding (``max |g - g64|``, autograd in the
    inputs' dtype against float64): a group norm's ``eps`` term is 1e-8 of its gradient, and
    float32 autograd gets it 10% wrong, so no check can see 1e-4 of it."""

    decided: bool | None = None

    def gradients(self, f: Callable[..., Any], inputs: tuple, cotangent: Any) -> tuple:
        grads = super().gradients(f, inputs, cotangent)
        if self.decided is None:  # the first call is at the inputs in their own dtype
            wide = tuple(x.detach().double() for x in inputs)
            exact = Autograd().gradients(f, wide, cotangent)
            top = max(float(abs(g).max(initial=0.0)) for g in exact)
            own = max(
                float(abs(g / self.factor - e).max(initial=0.0))
                for g, e in zip(grads, exact, strict=True)
            )
            self.decided = self.planted and top > 1e-10 and (self.factor - 1) * top > 4 * own
        self.planted = self.decided
        return grads


def _torch_skips(op: Any, dtype: torch.dtype) -> bool:
    """Whether torch's own backward-gradient tests (``TestBwdGradients``, ``test_fn_grad``) skip
    the op on CPU in ``dtype`` or expect it to fail (the random ops such as ``normal``,
    ``linalg.norm.subgradients_at_zero``, ``cov``, ``istft``, ...): those ops are left out, as
    torch leaves them out. A tolerance override there is not a skip."""
    for d in (*op.decorators, *op.skips):
        if not hasattr(d, "cls_name"):  # a bare decorator (skipCPUIfNoLapack): conditional
            continue
        if d.cls_name not in (None, "TestBwdGradients"):
            continue
        if getattr(d, "test_name", None) not in (None, "test_fn_grad"):
            continue
        if getattr(d, "device_type", None) not in (None, "cpu"):
            continue
        dtypes = getattr(d, "dtypes", None)
        if dtypes is not None and dtype not in dtypes:
            continue
        wrapped = getattr(d, "decorators", [d])
        wrapped = wrapped if isinstance(wrapped, (list, tuple)) else [wrapped]
        names = [getattr(w, "__qualname__", "") for w in wrapped]
        if any("skip" in n.lower() or "expectedFailure" in n for n in names):
            return True
    return False


def _still_right(planted: Any) -> bool:
    """Whether every element the planted error changed was accepted as a subgradient at a
    kink: a value between the one-sided derivatives, scaled by 1 + 1e-4, is still one."""
    changed = [c.element_reasons[c.analytic != 0] for c in planted.inputs]
    return any(r.size for r in changed) and all(bool((r == "subgradient").all()) for r in changed)


def _narrowing(f: Callable[..., Any], inputs: tuple[Any, ...]) -> bool:
    """Whether the op returns a floating dtype below its inputs' (``x.half()``,
    ``x.bfloat16()``): its gradient is only as precise as that dtype, far coarser than the
    planted error. Such samples are left out (they are not counted)."""
    out = f(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    width = max(t.dtype.itemsize for t in inputs)
    return any(o.is_floating_point() and o.dtype.itemsize < width for o in outs)


def tally(
    dtype: torch.dtype, names: list[str], args: argparse.Namespace
) -> tuple[Counter[str], list[str]]:
    ops = _op_db()
    counts: Counter[str] = Counter()
    lines = _Lines(args.misses, str(dtype).removeprefix("torch."))
    for name in names:
        op = ops[name]
        if not op.supports_autograd or dtype not in op.supported_backward_dtypes("cpu"):
            continue
        if _torch_skips(op, dtype):
            counts["ops torch skips"] += 1
            continue
        for j, (f, inputs) in enumerate(op_samples(op, dtype, args.max_elements, args.per_op)):
            shapes = [tuple(t.shape) for t in inputs]
            try:
                result = gradcheck.check(f, inputs, seed=j)
                source = _Planted("scale", seed=j, factor=1 + SCALE)
                planted = gradcheck.check(f, inputs, source, seed=j)
            except Exception as exc:  # a check that raises is counted, never hidden
                counts["raised"] += 1
                lines.append(f"raised: {name} {shapes}: {type(exc).__name__}: {exc}"[:300])
                continue
            counts["samples"] += 1
            counts["correct " + result.verdict.value] += 1
            if source.planted and planted.verdict == "pass" and _still_right(planted):
                source.planted = False  # every changed element is still a valid subgradient
                counts["planted still a subgradient"] += 1
            if result.verdict != "pass":
                lines.append(
                    f"correct {result.verdict.value}: {name} {shapes}: {result.summary()}"[:600]
                )
            if not source.planted:
                counts["nothing planted"] += 1
            if source.planted:
                counts["planted"] += 1
                counts["planted " + planted.verdict.value] += 1
                if planted.verdict != "fail":
                    lines.append(
                        f"missed {planted.verdict.value}: {name} {shapes}: {planted.summary()}"[
                            :600
                        ]
                    )
    return counts, lines


class _Lines(list[str]):
    """The misses and false alarms, each also appended to ``path`` as it is found."""

    def __init__(self, path: str, tag: str) -> None:
        super().__init__()
        self.path, self.tag = path, tag

    def append(self, line: str) -> None:
        super().append(line)
        if self.path:
            with open(self.path, "a") as out:
                out.write(f"{self.tag} {line}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--max-elements", type=int, default=64)
    parser.add_argument("--per-op", type=int, default=None, help="samples per op (all: none)")
    parser.add_argument("--ops", default="", help="comma-separated op names (all: empty)")
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th op from the I-th")
    parser.add_argument("--misses", default="", help="file to append misses and false alarms")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    names = args.ops.split(",") if args.ops else sorted(_op_db())
    i, n = (int(v) for v in args.shard.split("/"))
    names = names[i::n]
    dtypes = (
        [torch.float64, torch.float32] if args.dtype == "both" else [getattr(torch, args.dtype)]
    )
    for dtype in dtypes:
        start = time.perf_counter()
        counts, _ = tally(dtype, names, args)
        planted = counts["planted"]
        caught = counts["planted fail"]
        print(
            f"{str(dtype).removeprefix('torch.')}: samples {counts['samples']}; "
            f"1e-4 caught {caught}/{planted} = {100 * caught / max(planted, 1):.2f}%; "
            f"false alarms {counts['correct fail']}; "
            f"inconclusive {counts['correct inconclusive']}; raised {counts['raised']}; "
            f"left out: {counts['ops torch skips']} ops torch's test_fn_grad skips, "
            f"{counts['planted still a subgradient']} planted errors still a subgradient, "
            f"{counts['nothing planted']} samples with nothing to plant (zero gradient, or 1e-4 "
            "below the analytic side's own rounding); "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
