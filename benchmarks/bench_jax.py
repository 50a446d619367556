"""gradcheck on JAX code against ``jax.test_util.check_grads`` and a hand-written ``jit(vmap)``
central difference, in one run:

    .venv/bin/python benchmarks/bench_jax.py            # the corpus, then the MLP (n ~ 1e4)
    .venv/bin/python benchmarks/bench_jax.py --corpus   # the corpus only
    .venv/bin/python benchmarks/bench_jax.py --speed    # the MLP only

**The corpus** (``tests/jax_corpus.py``): JAX functions with custom rules of each class (safe
functions with ``custom_jvp``, fused backward passes with ``custom_vjp`` including a
cross-entropy's derivative in the labels, implicit differentiation through a fixed point and a
Newton solver, pytrees, ``nondiff_argnums``), each correct and with mutants (scale errors of
1e-6, 1e-3 and 1e-1, a wrong sign, a missing term, a wrong derivative in the labels, a bug
that shows only at order 2). Each is checked at the order and modes its family names, in
float64 and float32, by ``gradcheck.jax.check_grads`` and by ``jax.test_util.check_grads``
(arguments that are not floating arrays bound with a closure for jax's, which cannot take
them). Printed: per mutant, who caught it; the counts; false alarms on the correct rules.

**Speed.** The loss of a jitted MLP 32 -> 256 -> 8 (tanh, softmax cross-entropy, 64 samples)
of its parameters (a dict; n = 10504) in float64: gradcheck's full check (``mode='full'``:
every element, with error bars where needed) against a hand-written central-difference
gradient (``jit(vmap)`` over chunks of 64 indices per parameter, 2n evaluations, one compile
per parameter) and ``jax.test_util.check_grads`` (one direction, order 1, rev). Interleaved
rounds, median seconds, the ratio to the hand-written one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads as jax_check_grads
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from jax_corpus import FAMILIES, scale_of

import gradcheck
from gradcheck.jax import check_grads


def outcome(checker: Callable[..., None], f: Any, args: Any, order: int, modes: Any) -> str:
    """'caught', 'passed', 'inconclusive' or 'refused' (any other exception)."""
    try:
        checker(f, args, order, modes=modes)
    except AssertionError as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return "inconclusive" if "inconclusive" in first and "fail" not in first else "caught"
    except Exception:
        return "refused"
    return "passed"


def for_jax(f: Any, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """f of its floating-array arguments only, the others bound (jax's checker perturbs every
    leaf of every argument and cannot take an int, a string or integer labels)."""

    def floating(a: Any) -> bool:
        leaves = jax.tree_util.tree_leaves(a)
        return bool(leaves) and all(
            hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) for x in leaves
        )

    keep = [i for i, a in enumerate(args) if floating(a)]

    def bound(*kept: Any) -> Any:
        full = list(args)
        for i, a in zip(keep, kept, strict=True):
            full[i] = a
        return f(*full)

    return bound, tuple(args[i] for i in keep)


def corpus() -> dict[str, Any]:
    rows, counts = [], {}
    for dtype in ("float64", "float32"):
        jax.config.update("jax_enable_x64", dtype == "float64")
        for name, (build, mutants, order, modes) in FAMILIES.items():
            for mutant in (None, *mutants):
                f, args = build(mutant, dtype)
                ours = outcome(check_grads, f, args, order, modes)
                theirs = outcome(jax_check_grads, *for_jax(f, args), order, modes)
                rows.append([dtype, name, mutant or "correct", ours, theirs])
    jax.config.update("jax_enable_x64", False)
    print(tabulate(rows, headers=["dtype", "family", "mutant", "gradcheck", "jax check_grads"]))
    for dtype in ("float64", "float32"):
        mine = [r for r in rows if r[0] == dtype]
        correct = [r for r in mine if r[2] == "correct"]
        bad = [r for r in mine if r[2] != "correct"]
        big = [r for r in bad if scale_of(r[2]) >= 1e-3]
        counts[dtype] = {
            "correct rules": len(correct),
            "gradcheck passes": sum(r[3] == "passed" for r in correct),
            "jax passes": sum(r[4] == "passed" for r in correct),
            "mutants": len(bad),
            "gradcheck catches": sum(r[3] == "caught" for r in bad),
            "jax catches": sum(r[4] == "caught" for r in bad),
            "jax catches, gradcheck not": sum(r[4] == "caught" != r[3] for r in bad),
            ">= 1e-3 mutants": len(big),
            ">= 1e-3 caught by gradcheck": sum(r[3] == "caught" for r in big),
            "1e-6 caught by gradcheck": sum(r[3] == "caught" for r in bad if "1e-6" in r[2]),
            "1e-6 caught by jax": sum(r[4] == "caught" for r in bad if "1e-6" in r[2]),
        }
    print()
    print(
        tabulate(
            [[k, *(counts[d][k] for d in counts)] for k in counts["float64"]], headers=["", *counts]
        )
    )
    return counts


def mlp() -> tuple[Any, dict[str, Any], Any, Any]:
    rng = np.random.default_rng(0)
    params = {
        "w1": jnp.asarray(rng.normal(size=(32, 256)) * 0.2),
        "b1": jnp.asarray(rng.normal(size=256) * 0.1),
        "w2": jnp.asarray(rng.normal(size=(256, 8)) * 0.2),
        "b2": jnp.asarray(rng.normal(size=8) * 0.1),
    }
    X = jnp.asarray(rng.normal(size=(64, 32)))
    y = jnp.asarray(rng.integers(0, 8, 64))

    @jax.jit
    def loss(p: Any, X: Any, y: Any) -> Any:
        h = jnp.tanh(X @ p["w1"] + p["b1"])
        logp = jax.nn.log_softmax(h @ p["w2"] + p["b2"])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss, params, X, y


def hand_written(loss: Any, params: dict[str, Any], X: Any, y: Any, chunk: int = 64) -> Any:
    """Central differences of every parameter, ``jit(vmap)`` over chunks of indices."""
    grads = {}
    for name, leaf in params.items():
        flat = leaf.ravel()
        h = np.finfo(np.float64).eps ** (1 / 3) * jnp.maximum(1.0, jnp.abs(flat))

        def at(i: Any, s: Any, flat: Any = flat, name: str = name, shape: Any = leaf.shape) -> Any:
            moved = {**params, name: flat.at[i].add(s).reshape(shape)}
            return loss(moved, X, y)

        batched = jax.jit(jax.vmap(at))
        parts = []
        for start in range(0, flat.size, chunk):
            i = jnp.arange(start, min(start + chunk, flat.size))
            parts.append((batched(i, h[i]) - batched(i, -h[i])) / (2 * h[i]))
        grads[name] = np.concatenate([np.asarray(p) for p in parts]).reshape(leaf.shape)
    return grads


def speed(rounds: int = 3) -> float:
    jax.config.update("jax_enable_x64", True)
    loss, params, X, y = mlp()
    n = sum(int(v.size) for v in params.values())
    times: dict[str, list[float]] = {"hand-written jit(vmap)": [], "gradcheck": [], "jax": []}
    analytic = jax.grad(loss)(params, X, y)
    for _ in range(rounds):
        start = time.perf_counter()
        numeric = hand_written(loss, params, X, y)
        times["hand-written jit(vmap)"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result = gradcheck.check(loss, (params, X, y), mode="full")
        times["gradcheck"].append(time.perf_counter() - start)
        start = time.perf_counter()
        jax_check_grads(lambda p: loss(p, X, y), (params,), 1, modes=("rev",))
        times["jax"].append(time.perf_counter() - start)
    worst = max(float(np.max(np.abs(numeric[k] - analytic[k]))) for k in params)
    base = statistics.median(times["hand-written jit(vmap)"])
    rows = [[k, statistics.median(v), statistics.median(v) / base] for k, v in times.items()]
    print(f"\njitted MLP loss, n = {n} parameters, float64, {rounds} interleaved rounds")
    print(tabulate(rows, headers=["checker", "median s", "ratio to hand-written"], floatfmt=".3g"))
    print(f"gradcheck: {result.summary()}")
    print(f"gradcheck's path: {result.numerics.path_reason}")
    print(f"hand-written: max |numeric - jax.grad| = {worst:.3g} (no verdict, no error bar)")
    jax.config.update("jax_enable_x64", False)
    return statistics.median(times["gradcheck"]) / base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="store_true", help="the corpus only")
    parser.add_argument("--speed", action="store_true", help="the MLP only")
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    if not options.speed:
        corpus()
    if not options.corpus:
        speed(options.rounds)


if __name__ == "__main__":
    main()
