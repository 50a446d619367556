"""Collect: a descent case's two runs, ``p = p - lr * grad`` with the analytic source and with the
numerical engine's gradient, in the row's dtype, and their comparison (see :func:`run_descent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from gradcheck._cases.case import Descent, Source
from gradcheck._cases.inputs import Constants, bind, differentiated, gradient_source, uses_torch
from gradcheck._judge.verdict import Verdict, combine, rule
from gradcheck._numerics import arrays as _arrays
from gradcheck._numerics import engine as _engine

NUMERICAL = "numerical"
DESCENT_RTOL = {"float64": 1e-6, "float32": 1e-3}


@dataclass(frozen=True)
class DescentRun:
    """One run of gradient descent.

    Fields:
        gradient: which gradient drove it: a source name, or 'numerical'.
        losses: the loss per epoch (the mean of the losses seen before each step of the epoch;
            with batch='full' simply the loss before each step). For plotting.
        params: name -> final value, as a flat tuple of floats.
        readout: the case's readout of the final parameters (name -> number), computed from
            NumPy arrays in the row's dtype.
        max_error_estimate: for the numerical run, the engine's largest error estimate along the
            way; 0 for an analytic run.
    """

    gradient: str
    losses: tuple[float, ...]
    params: Mapping[str, tuple[float, ...]]
    readout: Mapping[str, float]
    max_error_estimate: float = 0.0


@dataclass(frozen=True)
class DescentResult:
    """An analytic descent against a numerical one.

    Fields:
        verdict: 'pass' when the runs agree within tolerance and both reach the target;
            'fail' otherwise; 'inconclusive' when a run produced NaN/Inf.
        analytic, numerical: the two :class:`DescentRun` s.
        max_abs_error, max_rel_error: the largest difference between the runs, over the final
            parameters and the loss curve; relative to ``max(|a|, |n|, rtol * scale)`` as in the
            reports' relative error of a gradient.
        tolerance: the absolute tolerance at the worst value: ``rtol * scale``, with scale the
            largest magnitude in its group (the final parameters, or the loss curve).
        rtol: the relative agreement tolerance used.
        target: name -> the value each run had to reach; ``target_atol`` its tolerance.
        reasons: why the verdict is not a plain pass, one sentence each.
    """

    verdict: Verdict
    analytic: DescentRun
    numerical: DescentRun
    max_abs_error: float
    max_rel_error: float
    tolerance: float
    rtol: float
    target: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    target_atol: float = 0.0
    reasons: tuple[str, ...] = ()


def run_descent(
    item: Descent,
    source: Source,
    dtype: str,
    values: Mapping[str, Any],
    numerical_runs: dict[tuple[str, str], DescentRun] | None = None,
) -> DescentResult:
    """Descend with the analytic source and with the numerical gradient; compare the runs.

    ``numerical_runs`` caches the numerical run per (dtype, array library), which does not
    depend on the analytic source.
    """
    torch_arrays = uses_torch(item, source)
    analytic = descend(item, source, dtype, values, torch_arrays)
    key = (dtype, "torch" if torch_arrays else "numpy")
    cache = {} if numerical_runs is None else numerical_runs
    if key not in cache:
        cache[key] = descend(item, None, dtype, values, torch_arrays)
    return compare_runs(item, dtype, analytic, cache[key])


def descend(
    item: Descent,
    source: Source | None,
    dtype: str,
    values: Mapping[str, Any],
    torch_arrays: bool,
) -> DescentRun:
    """``epochs`` of ``p = p - lr * g`` in ``dtype``; g from ``source`` (None: numerical)."""
    names = tuple(item.params)
    params = [np.asarray(_arrays.to_numpy64(values[n]), dtype=np.dtype(dtype)) for n in names]
    lr = np.dtype(dtype).type(item.lr)
    losses: list[float] = []
    worst_estimate = 0.0
    batches = batches_of(item, torch_arrays)
    for _ in range(item.epochs):
        epoch_losses = []
        for batch in batches:
            inputs = tuple(differentiated(p, dtype, torch_arrays) for p in params)
            bound = bind(item.loss, names, batch)
            if source is None:
                estimate = _engine.estimate_gradient(bound, inputs)
                grads = estimate.values
                loss = estimate.f0
                worst_estimate = max(worst_estimate, *(float(np.max(e)) for e in estimate.errors))
            else:
                loss = _arrays.scalar_value(bound(*inputs))
                grads = gradient_source(source, names, batch).gradients(bound, inputs, None)
            epoch_losses.append(loss)
            params = [
                p - lr * np.asarray(g, dtype=p.dtype) for p, g in zip(params, grads, strict=True)
            ]
        losses.append(float(np.mean(epoch_losses)))
    final = {n: p for n, p in zip(names, params, strict=True)}
    readout = (
        # in the row's dtype, as the seeds compute their predictions (float32 throughout)
        item.readout(**{n: p.copy() for n, p in final.items()}) if item.readout else {}
    )
    return DescentRun(
        gradient=NUMERICAL if source is None else source.name,
        losses=tuple(losses),
        params=MappingProxyType(
            {n: tuple(float(v) for v in p.reshape(-1)) for n, p in final.items()}
        ),
        readout=MappingProxyType({str(k): float(v) for k, v in readout.items()}),
        max_error_estimate=worst_estimate,
    )


def batches_of(item: Descent, torch_arrays: bool) -> list[Constants]:
    """The data each step sees: all of it ('full'), or one sample per step ('sample')."""
    if not item.data:
        return [Constants({}, torch_arrays)]
    if item.batch == "full":
        return [Constants(item.data, torch_arrays)]
    count = len(next(iter(item.data.values())))
    return [Constants({k: v[i] for k, v in item.data.items()}, torch_arrays) for i in range(count)]


def compare_runs(
    item: Descent, dtype: str, analytic: DescentRun, numerical: DescentRun
) -> DescentResult:
    """Judge two descent runs: agreement of final parameters and losses, and the target."""
    rtol = item.rtol if item.rtol is not None else DESCENT_RTOL[dtype]
    groups = [
        (
            np.array([v for p in analytic.params.values() for v in p]),
            np.array([v for p in numerical.params.values() for v in p]),
        ),
        (np.array(analytic.losses), np.array(numerical.losses)),
    ]
    reasons: list[str] = []
    worst = (0.0, 0.0, 0.0, -1.0)  # abs err, rel err, tolerance, ratio
    max_abs = max_rel = 0.0
    finite, shown = True, []
    for a, n in groups:
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
            finite = False
            continue
        err = np.abs(a - n)
        bigger = np.maximum(np.abs(a), np.abs(n))
        # rtol times the group's largest magnitude: a loss that falls to 1e-9 is judged
        # against the size of the curve, as _compare judges small gradient elements.
        scale = float(np.max(bigger, initial=0.0))
        tol = np.full(err.shape, max(rtol * scale, np.finfo(np.float64).tiny))
        verdicts, _ = rule(a, n, 0.0, tol, bigger)  # the runs carry no error bar
        shown += [Verdict(v) for v in set(verdicts.tolist())]
        ratio = err / tol
        i = int(np.argmax(ratio))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(err == 0, 0.0, err / np.maximum(bigger, rtol * scale))
        max_abs = max(max_abs, float(np.max(err)))
        max_rel = max(max_rel, float(np.max(rel)))
        if ratio[i] > worst[3]:
            worst = (float(err[i]), float(rel[i]), float(tol[i]), float(ratio[i]))
    verdict = combine(shown)  # a pass is what the rule showed for every group
    if not finite:
        verdict = Verdict.INCONCLUSIVE
        reasons.append("a run produced NaN/Inf (diverged?)")
    elif verdict is Verdict.FAIL:
        reasons.append(
            f"analytic and numerical runs differ by {worst[0]:.3g} (tolerance {worst[2]:.3g})"
        )
    for run_ in (analytic, numerical):
        for key, want in item.target.items():
            got = _reached(run_, key)
            if got is None:
                raise ValueError(
                    f"descent {item.name!r}: target {key!r} is neither a parameter of size 1 "
                    f"nor a readout; the names are {[*run_.params, *run_.readout]}"
                )
            if not abs(got - want) <= item.target_atol:
                verdict = Verdict.FAIL
                reasons.append(
                    f"the {run_.gradient} run reached {key} = {got:.6g}, "
                    f"not {want:g} ± {item.target_atol:g}"
                )
    return DescentResult(
        verdict=verdict,
        analytic=analytic,
        numerical=numerical,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        tolerance=worst[2],
        rtol=rtol,
        target=item.target,
        target_atol=item.target_atol,
        reasons=tuple(reasons),
    )


def _reached(run_: DescentRun, key: str) -> float | None:
    if key in run_.readout:
        return run_.readout[key]
    values = run_.params.get(key)
    return values[0] if values is not None and len(values) == 1 else None
