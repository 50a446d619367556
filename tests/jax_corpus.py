"""A corpus of JAX functions with custom differentiation rules, each correct and with mutants.

Each family is a function ``build(mutant, dtype) -> (f, args)``; ``mutant`` None is the correct
rule. The classes: numerically safe functions (``custom_jvp``), fused backward passes
(``custom_vjp``, a cross-entropy whose derivative in the labels can be wrong), implicit
differentiation (a fixed point, a Newton solver), pytrees, ``nondiff_argnums`` and static
arguments, an attention whose backward recomputes the softmax (as flash attention does), and
bugs that show only at order 2. Mutants: ``scale:r`` (the rule's output times
``1 + r``), ``sign`` (one term's sign flipped), ``missing`` (one term dropped), ``labels`` (a
wrong derivative in the labels), ``second`` (right at order 1, wrong at order 2).

``FAMILIES`` maps a name to (build, mutants, order, modes): the order and modes a test of that
rule checks (a ``custom_vjp`` function has no forward mode in JAX, so 'rev' only).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SCALES = ("scale:1e-6", "scale:1e-3", "scale:1e-1")


def _factor(mutant: str | None) -> float:
    return 1.0 + float(mutant.split(":")[1]) if mutant and mutant.startswith("scale:") else 1.0


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _arr(values: Any, dtype: Any) -> Any:
    return jnp.asarray(np.asarray(values), dtype=dtype)


# ---- safe functions, custom_jvp -------------------------------------------------------------


def log1pexp(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """softplus, safe for large x; jvp t * sigmoid(x)."""
    k = _factor(mutant)

    @jax.custom_jvp
    def sigmoid(x: Any) -> Any:
        return 1 / (1 + jnp.exp(-x))

    @sigmoid.defjvp
    def _sigmoid_jvp(p: Any, t: Any) -> Any:
        (x,), (tx,) = p, t
        s = sigmoid(x)
        wrong = 1.001 if mutant == "second" else 1.0  # the derivative of the derivative
        return s, tx * s * (1 - s) * wrong

    @jax.custom_jvp
    def f(x: Any) -> Any:
        return jnp.where(x > 20, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20))))

    @f.defjvp
    def _f_jvp(p: Any, t: Any) -> Any:
        (x,), (tx,) = p, t
        if mutant == "sign":
            slope = -sigmoid(x)
        elif mutant == "missing":
            slope = jnp.exp(x)  # the denominator 1 + exp(x) dropped
        else:
            slope = sigmoid(x) * k
        return f(x), tx * slope

    x = _arr(_rng(1).uniform(-3, 3, 7), dtype)
    return (lambda x: f(x)), (x,)


def safe_norm(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """||x||, with a jvp that is safe at 0: <x, t> / ||x||."""
    k = _factor(mutant)

    @jax.custom_jvp
    def norm(x: Any) -> Any:
        return jnp.sqrt(jnp.sum(x * x))

    @norm.defjvp
    def _norm_jvp(p: Any, t: Any) -> Any:
        (x,), (tx,) = p, t
        y = norm(x)
        safe = jnp.where(y == 0, 1.0, y)
        if mutant == "sign":
            return y, jnp.sum(-x * tx) / safe
        if mutant == "missing":
            return y, jnp.sum(x * tx)  # the division by the norm dropped
        if mutant == "second":
            return y, jnp.sum(x * tx) / jax.lax.stop_gradient(safe)
        return y, k * jnp.sum(x * tx) / safe

    x = _arr(_rng(2).normal(size=(3, 4)), dtype)
    return (lambda x: norm(x) * 0.5 + jnp.sum(x**2) * 0.1), (x,)


# ---- fused backward passes, custom_vjp ------------------------------------------------------


def softmax_xent(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """Cross-entropy of soft labels (not normalised) and logits, with a fused backward."""
    k = _factor(mutant)

    @jax.custom_vjp
    def xent(logits: Any, labels: Any) -> Any:
        return -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1)

    def fwd(logits: Any, labels: Any) -> Any:
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.sum(labels * logp, axis=-1), (logp, labels)

    def bwd(res: Any, g: Any) -> Any:
        logp, labels = res
        p = jnp.exp(logp)
        total = jnp.sum(labels, axis=-1, keepdims=True)
        d_logits = p * total - labels
        d_labels = -logp
        if mutant == "sign":
            d_logits = labels - p * total
        elif mutant == "missing":
            d_logits = p - labels  # assumes labels sum to 1
        elif mutant == "labels":
            d_labels = -(logp - jnp.mean(logp, axis=-1, keepdims=True))
        elif mutant == "second":
            d_logits = jax.lax.stop_gradient(p) * total - labels
        return g[:, None] * d_logits * k, g[:, None] * d_labels

    xent.defvjp(fwd, bwd)
    rng = _rng(3)
    logits = _arr(rng.normal(size=(4, 5)), dtype)
    labels = _arr(rng.uniform(0.1, 1.0, size=(4, 5)), dtype)
    return xent, (logits, labels)


# ---- implicit differentiation ---------------------------------------------------------------


def fixed_point(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """z* = tanh(W z* + b) by iteration; the backward by the implicit function theorem."""
    k = _factor(mutant)

    def step(W: Any, b: Any, z: Any) -> Any:
        return jnp.tanh(W @ z + b)

    @jax.custom_vjp
    def solve(W: Any, b: Any) -> Any:
        return jax.lax.fori_loop(0, 80, lambda _, z: step(W, b, z), jnp.zeros_like(b))

    def fwd(W: Any, b: Any) -> Any:
        z = solve(W, b)
        return z, (W, b, z)

    def bwd(res: Any, g: Any) -> Any:
        W, b, z = res
        _, pull = jax.vjp(step, W, b, z)
        J = jax.jacobian(step, argnums=2)(W, b, z)
        eye = jnp.eye(z.shape[0], dtype=z.dtype)
        if mutant == "missing":
            w = g  # (I - J)^-T dropped: the unrolled last step only
        elif mutant == "sign":
            w = jnp.linalg.solve((eye + J).T, g)
        elif mutant == "second":
            w = jnp.linalg.solve(jax.lax.stop_gradient((eye - J).T), g)
        else:
            w = jnp.linalg.solve((eye - J).T, g)
        dW, db, _ = pull(w)
        return dW * k, db

    solve.defvjp(fwd, bwd)
    rng = _rng(4)
    W = _arr(rng.normal(size=(4, 4)) * 0.15, dtype)  # contraction 0.48: 80 steps converge
    b = _arr(rng.normal(size=4), dtype)
    return (lambda W, b: jnp.sum(jnp.sin(solve(W, b)))), (W, b)


def newton_sqrt(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """sqrt(a) by Newton's method (a solver), differentiated implicitly: g / (2 y)."""
    k = _factor(mutant)

    @jax.custom_vjp
    def root(a: Any) -> Any:
        return jax.lax.fori_loop(0, 60, lambda _, y: 0.5 * (y + a / y), jnp.maximum(a, 1.0))

    def fwd(a: Any) -> Any:
        y = root(a)
        return y, y

    def bwd(y: Any, g: Any) -> Any:
        if mutant == "sign":
            return (-g / (2 * y),)
        if mutant == "missing":
            return (g / y,)  # the factor 1/2 dropped
        if mutant == "second":
            return (g / (2 * jax.lax.stop_gradient(y)),)
        return (k * g / (2 * y),)

    root.defvjp(fwd, bwd)
    a = _arr(_rng(5).uniform(0.5, 4.0, 6), dtype)
    return (lambda a: root(a) * a), (a,)


# ---- pytrees --------------------------------------------------------------------------------


def pytree_mlp(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """An MLP loss of nested parameters (dict of tuples and lists), a fused dense+tanh layer
    with a custom_vjp, integer labels and a static config dict."""
    k = _factor(mutant)

    @jax.custom_vjp
    def dense_tanh(x: Any, w: Any, b: Any) -> Any:
        return jnp.tanh(x @ w + b)

    def fwd(x: Any, w: Any, b: Any) -> Any:
        y = jnp.tanh(x @ w + b)
        return y, (x, w, y)

    def bwd(res: Any, g: Any) -> Any:
        x, w, y = res
        d = g * (1 - y * y)
        if mutant == "sign":
            d = g * (y * y - 1)
        if mutant == "second":
            d = g * (1 - jax.lax.stop_gradient(y) ** 2)
        db = jnp.sum(d, axis=0) if mutant != "missing" else jnp.sum(d, axis=0) * 0
        return d @ w.T, x.T @ d * k, db

    dense_tanh.defvjp(fwd, bwd)

    def loss(params: Any, batch: Any, config: Any) -> Any:
        (w1, b1), layers = params["first"], params["rest"]
        h = dense_tanh(batch["x"], w1, b1)
        for w, b in layers:
            h = jnp.tanh(h @ w + b)
        logp = jax.nn.log_softmax(h * config["scale"], axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, batch["y"][:, None], axis=-1))

    rng = _rng(6)
    params = {
        "first": (_arr(rng.normal(size=(5, 6)) * 0.4, dtype), _arr(rng.normal(size=6), dtype)),
        "rest": [(_arr(rng.normal(size=(6, 3)) * 0.4, dtype), _arr(rng.normal(size=3), dtype))],
    }
    batch = {"x": _arr(rng.normal(size=(8, 5)), dtype), "y": jnp.asarray(rng.integers(0, 3, 8))}
    return loss, (params, batch, {"scale": 2, "name": "static"})


# ---- nondiff_argnums ------------------------------------------------------------------------


def power_nondiff(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """x**n with n in nondiff_argnums (an int that must reach f as an int)."""
    k = _factor(mutant)

    @partial(jax.custom_vjp, nondiff_argnums=(0,))
    def power(n: int, x: Any) -> Any:
        assert isinstance(n, int), type(n)
        return x**n

    def fwd(n: int, x: Any) -> Any:
        return x**n, x

    def bwd(n: int, x: Any, g: Any) -> Any:
        if mutant == "sign":
            return (-g * n * x ** (n - 1),)
        if mutant == "missing":
            return (g * x ** (n - 1),)  # the factor n dropped
        if mutant == "second":
            return (g * n * jax.lax.stop_gradient(x) ** (n - 1),)
        return (k * g * n * x ** (n - 1),)

    power.defvjp(fwd, bwd)
    x = _arr(_rng(7).uniform(0.5, 1.5, 5), dtype)
    return (lambda n, x: jnp.sum(power(n, x) * jnp.cos(x))), (3, x)


# ---- recomputation: attention whose backward recomputes the softmax ----------------------------


def attention(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """softmax(q k^T / sqrt(d)) v with a custom_vjp that saves only q, k, v and recomputes the
    attention weights in the backward (as flash attention does)."""
    k_ = _factor(mutant)

    def weights(q: Any, k: Any) -> Any:
        return jax.nn.softmax(q @ k.T / np.sqrt(q.shape[-1]), axis=-1)

    @jax.custom_vjp
    def attend(q: Any, k: Any, v: Any) -> Any:
        return weights(q, k) @ v

    def fwd(q: Any, k: Any, v: Any) -> Any:
        return attend(q, k, v), (q, k, v)

    def bwd(res: Any, g: Any) -> Any:
        q, k, v = res
        p = weights(q, k)  # recomputed, not saved
        if mutant == "second":
            p = jax.lax.stop_gradient(p)
        dv = p.T @ g
        dp = g @ v.T
        if mutant == "missing":
            ds = p * dp  # the row sum term of the softmax backward dropped
        elif mutant == "sign":
            ds = p * (dp + jnp.sum(p * dp, axis=-1, keepdims=True))
        else:
            ds = p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True))
        ds = ds / np.sqrt(q.shape[-1])
        return ds @ k * k_, ds.T @ q, dv

    attend.defvjp(fwd, bwd)
    rng = _rng(8)
    q, k, v = (_arr(rng.normal(size=(4, 3)), dtype) for _ in range(3))
    return (lambda q, k, v: jnp.sum(jnp.tanh(attend(q, k, v)))), (q, k, v)


# ---- a safe reduction, custom_jvp ---------------------------------------------------------------


def logsumexp(mutant: str | None, dtype: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """log(sum(exp(x))) shifted by the max, with a jvp <softmax(x), t>."""
    k = _factor(mutant)

    @jax.custom_jvp
    def lse(x: Any) -> Any:
        m = jax.lax.stop_gradient(jnp.max(x))
        return m + jnp.log(jnp.sum(jnp.exp(x - m)))

    @lse.defjvp
    def _lse_jvp(p: Any, t: Any) -> Any:
        (x,), (tx,) = p, t
        y = lse(x)
        w = jnp.exp(x - y)
        if mutant == "sign":
            return y, -jnp.sum(w * tx)
        if mutant == "missing":
            return y, jnp.sum(jnp.exp(x) * tx)  # the normalisation dropped
        if mutant == "second":
            return y, jnp.sum(jnp.exp(x - jax.lax.stop_gradient(y)) * tx)
        return y, k * jnp.sum(w * tx)

    x = _arr(_rng(9).normal(size=6), dtype)
    return (lambda x: lse(x) * lse(2 * x)), (x,)


# name: (build, mutants, order, modes)
FAMILIES: dict[str, tuple[Callable[..., Any], tuple[str, ...], int, tuple[str, ...]]] = {
    "log1pexp": (log1pexp, (*SCALES, "sign", "missing", "second"), 2, ("fwd", "rev")),
    "safe_norm": (safe_norm, (*SCALES, "sign", "missing", "second"), 2, ("fwd", "rev")),
    "softmax_xent": (softmax_xent, (*SCALES, "sign", "missing", "labels", "second"), 2, ("rev",)),
    "fixed_point": (fixed_point, (*SCALES, "sign", "missing", "second"), 2, ("rev",)),
    "newton_sqrt": (newton_sqrt, (*SCALES, "sign", "missing", "second"), 2, ("rev",)),
    "pytree_mlp": (pytree_mlp, (*SCALES, "sign", "missing", "second"), 2, ("rev",)),
    "power_nondiff": (power_nondiff, (*SCALES, "sign", "missing", "second"), 2, ("rev",)),
    "attention": (attention, (*SCALES, "sign", "missing", "second"), 2, ("rev",)),
    "logsumexp": (logsumexp, (*SCALES, "sign", "missing", "second"), 2, ("fwd", "rev")),
}


def scale_of(mutant: str) -> float:
    """The relative size of a mutant's error: its scale, or 1 for a structural bug."""
    return float(mutant.split(":")[1]) if mutant.startswith("scale:") else 1.0
