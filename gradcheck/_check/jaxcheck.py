"""Surface (JAX): ``check`` on JAX code and JAX values, the same verdicts as for NumPy and torch.

``check`` hands a call that :func:`gradcheck._sources.jaxcall.involved` recognises to
:func:`check_jax`, which runs the ordinary check on the flat problem
(``gradcheck._sources.jaxcall.adapt``) under JAX's 64-bit mode (restored after):

* the analytic side is ``jax.vjp`` (:class:`~gradcheck._sources.jaxcall.JaxVjp`), or the hand
  formula ``grad=`` called as f is (:class:`~gradcheck._sources.jaxcall.JaxFormula`);
* the perturbed points go through ``jax.jit(jax.vmap(f))`` in chunks
  (``gradcheck._numerics.jaxbatch``; ``batch='loop'`` asks for the loop);
* ``modes=("rev", "fwd")``: forward mode by ``jax.jvp`` (a ``custom_jvp`` rule is what it
  checks; a ``custom_vjp`` function has no forward mode, which makes 'fwd' inconclusive, saying
  so);
* ``order=2``: the gradient differentiated again, by JAX, as jax's own checker does it: with
  seeded directions ``u_k`` and the first order's cotangent ``v``,
  ``h(x, v) = sum_k <u_k, vjp(f, x)(v)_k>`` is itself checked (``check(h, (x, v))``), so a
  backward rule whose own derivative is wrong fails at the element, named 'order 2'.

The check function is passed in (``check_fn``): this module sits beside ``check`` and does not
import it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck._check import second as _second
from gradcheck._check.result import Beyond, CheckResult, Part, SecondOrderResult, with_part
from gradcheck._judge.forward import ForwardUnavailable
from gradcheck._numerics.jaxbatch import JaxBatch
from gradcheck._sources import jaxcall as _jaxcall
from gradcheck._sources.reference import Autograd

# check's keywords that mean nothing for JAX code, with what to do instead.
_TORCH_ONLY = {
    "reference": "reference= is for torch half-precision kernels; leave it out for JAX code",
    "jvp": "for JAX code forward mode comes from jax.jvp (a custom_jvp rule is what it "
    "checks); leave jvp= out",
}


def check_jax(
    check_fn: Callable[..., CheckResult],
    f: Callable[..., Any],
    inputs: Any,
    grad: Any,
    options: dict[str, Any],
) -> CheckResult:
    """``check(f, inputs, grad, **options)`` for JAX code (module docstring)."""
    for name, why in _TORCH_ONLY.items():
        if options.get(name) is not None:
            raise ValueError(why)
    options = {k: v for k, v in options.items() if k not in _TORCH_ONLY}
    with _jaxcall.x64():
        problem = _jaxcall.adapt(f, inputs, options.pop("wrt", None))
        if grad is None or isinstance(grad, Autograd):  # autograd of JAX code is jax.vjp
            grad = None
            source: Any = _jaxcall.JaxVjp(problem)
        elif hasattr(grad, "gradients"):
            source = grad
        else:
            name = getattr(grad, "__name__", "formula")
            source = _jaxcall.JaxFormula(
                problem,
                grad,
                options.get("cotangent") is not None,
                "formula" if name == "<lambda>" else name,
            )
        order = options.pop("order", 1)
        modes = options.get("modes", ("rev",))
        if options.get("batch", "auto") == "auto":
            options["batch"] = JaxBatch(problem.scalar_of)
        options["cotangent"] = problem.cotangent_in(options.get("cotangent"))
        options.update(jvp=_forward(problem) if "fwd" in tuple(modes) else None, contract=False)
        first = check_fn(problem.f, problem.inputs, source, order=1, **options)
        if order != 2 or grad is not None:
            if order == 2:
                raise ValueError(
                    "order=2 differentiates JAX's own gradient; with a hand formula (grad=), "
                    "check its derivative as a function instead (see 'Beyond first order')"
                )
            return first
        return _with_second(check_fn, problem, first, options)


def _forward(problem: _jaxcall.Problem) -> Callable[..., Any]:
    def jvp(*items: Any, tangents: tuple[Any, ...]) -> Any:
        try:
            return problem.jvp(*items, tangents=tangents)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ForwardUnavailable(
                f"fwd: jax.jvp of f raised {type(exc).__name__}: {first}. A custom_vjp function "
                "has no forward mode in JAX; check modes=('rev',) for it"
            ) from exc

    jvp.__name__ = "jax.jvp"
    return jvp


def _with_second(
    check_fn: Callable[..., CheckResult],
    problem: _jaxcall.Problem,
    first: CheckResult,
    options: dict[str, Any],
) -> CheckResult:
    """``first`` with order 2 checked (module docstring) and merged into its verdict."""
    import jax
    import jax.numpy as jnp

    items = tuple(problem.inputs.values())
    count, v = len(items), first.cotangent
    directions = _second.directions_for(items, options.get("seed", 0))
    units = [jnp.asarray(u, dtype=x.dtype) for u, x in zip(directions, items, strict=True)]

    def h(*args: Any) -> Any:
        out, pullback = jax.vjp(problem.jax_fn, *args[:count])
        grads = pullback(problem.cotangent_tree(out, args[count] if v is not None else None))
        return sum((jnp.vdot(u, g) for u, g in zip(units, grads, strict=True)), jnp.zeros(()))

    h_inputs = [jnp.asarray(x) for x in items]
    if v is not None:
        # v in the inputs' own precision: the cotangent is cast to f's output dtype anyway
        h_inputs.append(jnp.asarray(v, dtype=jnp.result_type(*items)))
    h_options = {
        k: options[k] for k in ("seed", "step", "dtype_policy", "mode", "probes") if k in options
    }
    checked = check_fn(
        h,
        tuple(h_inputs),
        rtol=_with_v(options.get("rtol"), v is not None),
        atol=_with_v(options.get("atol"), v is not None),
        **h_options,
    )
    second = SecondOrderResult(
        checked.verdict, checked, directions, _second.named_failures(checked, count)
    )
    beyond = first.beyond or Beyond(tuple(options.get("modes", ("rev",))), 1)
    beyond = dataclasses.replace(beyond, order=2, second=second)
    # the first check's reasons hold its forward mode's already: add order 2's alone
    result = with_part(
        first,
        Part("beyond", beyond.verdict, beyond.reasons, beyond),
        reasons=tuple(f"order 2: {r}" for r in second.reasons),
    )
    return dataclasses.replace(result, evaluations=first.evaluations + checked.evaluations)


def _with_v(tol: Any, has_v: bool) -> Any:
    """A per-input tolerance for h's inputs: f's, then the default for ``v``."""
    if tol is None or isinstance(tol, (int, float)) or not has_v:
        return tol
    return [*list(tol), None] if isinstance(tol, Sequence | np.ndarray) else tol
