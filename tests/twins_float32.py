"""Float32 twins: correct and buggy gradients of torch code that captures float32 tensors.

Each twin is a float32 function of one differentiated input written the way people write it:
the data, targets and other layers' weights come from the enclosing scope (a closure) or live
in a module (``nn.Linear``'s float32 parameters), never among the inputs. Its gradient comes
from a hand formula or from a custom ``autograd.Function``'s backward (autograd code), in two
versions: the correct one, and the same code with one planted error:

* a scale error of 1e-3, 1e-4, 1e-5 or 1e-6 relative (the gradient times ``1 + r``);
* a ridge term ``1e-3 * w`` left out of the gradient of ``... + 0.5e-3 * ||w||^2``.

Every formula is derived by hand (the expected verdicts come from the maths, not from the
checker). :func:`gap` measures, against the same code built in float64, how far
a twin's error lies above the analytic side's own float32 rounding: a pair is required to be
told apart where the error is clearly above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd import Function

SCALES = (1e-3, 1e-4, 1e-5, 1e-6)
F32 = torch.float32


def _randn(*shape: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Float32 values (the same in either dtype), held in ``dtype``."""
    values = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return values.to(dtype)


@dataclass(frozen=True)
class Twin:
    """One function with its correct gradient and one buggy one.

    Fields:
        name: what the code is, and the planted error.
        f: the float32 function of ``x`` (it captures float32 tensors or holds a module).
        x: the float32 input.
        correct: the correct gradient (a formula of x; None: autograd of ``f``).
        buggy: the buggy one (a formula of x; None: autograd of ``buggy_f``).
        buggy_f: for autograd code, f with the buggy backward (else None).
        error: the planted relative error, or 'ridge'.
        reference: the correct gradient of the same code built in float64 (same values), at
            x in float64: the independent float64 run :func:`gap` measures rounding against.
    """

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    correct: Callable[[torch.Tensor], torch.Tensor] | None
    buggy: Callable[[torch.Tensor], torch.Tensor] | None
    buggy_f: Callable[[torch.Tensor], torch.Tensor] | None
    error: float | str
    reference: Callable[[], torch.Tensor]


def _scaled(g: Callable[[torch.Tensor], torch.Tensor], r: float) -> Callable[..., Any]:
    return lambda x: g(x) * (1.0 + r)


def _tanh_layer(dtype: torch.dtype) -> tuple[Any, ...]:
    x = _randn(8, seed=1, dtype=dtype)

    def f(w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(w @ x).sum()

    def grad(w: torch.Tensor) -> torch.Tensor:
        return (1 - torch.tanh(w @ x) ** 2)[:, None] * x[None, :]

    return "tanh layer, captured x", f, _randn(4, 8, seed=2, dtype=dtype) * 0.5, grad


def _linear_module(dtype: torch.dtype) -> tuple[Any, ...]:
    torch.manual_seed(3)
    layer = torch.nn.Linear(6, 4).to(dtype)  # weight and bias held by the module

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(layer(x)).sum()

    def grad(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (1 - torch.tanh(layer(x)) ** 2) @ layer.weight

    return "nn.Linear module, tanh", f, _randn(5, 6, seed=4, dtype=dtype), grad


def _softmax_xent(dtype: torch.dtype) -> tuple[Any, ...]:
    targets = torch.softmax(_randn(5, 7, seed=5, dtype=F32), dim=1).to(dtype)  # soft labels

    def f(z: torch.Tensor) -> torch.Tensor:
        return -(targets * torch.log_softmax(z, dim=1)).sum()

    def grad(z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z, dim=1) * targets.sum(1, keepdim=True) - targets

    return "softmax cross-entropy, captured targets", f, _randn(5, 7, seed=6, dtype=dtype), grad


def _logistic(dtype: torch.dtype) -> tuple[Any, ...]:
    data = _randn(20, 6, seed=7, dtype=dtype)
    labels = torch.sign(_randn(20, seed=8, dtype=dtype))

    def f(w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-labels * (data @ w)).mean()

    def grad(w: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(-labels * (data @ w))
        return -(data * (labels * s)[:, None]).sum(0) / data.shape[0]

    return "logistic regression, captured data", f, _randn(6, seed=9, dtype=dtype), grad


def _mlp(dtype: torch.dtype) -> tuple[Any, ...]:
    data = _randn(10, 5, seed=10, dtype=dtype)
    w2 = (_randn(7, 3, seed=11, dtype=F32) * 0.4).to(dtype)

    def f(w1: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(data @ w1) @ w2).pow(2).sum() / 2

    def grad(w1: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(data @ w1)
        out = h @ w2
        return data.T @ ((out @ w2.T) * (1 - h**2))

    x = (_randn(5, 7, seed=12, dtype=F32) * 0.4).to(dtype)
    return "two-layer MLP, captured data and second layer", f, x, grad


def _layernorm(dtype: torch.dtype) -> tuple[Any, ...]:
    gamma = (1 + 0.1 * _randn(6, seed=13, dtype=F32)).to(dtype)
    beta = (0.1 * _randn(6, seed=14, dtype=F32)).to(dtype)
    weights = _randn(4, 6, seed=15, dtype=dtype)

    def f(x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + 1e-5) * gamma + beta
        return (y * weights).sum()

    def grad(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        inv = 1 / torch.sqrt(var + 1e-5)
        xhat = (x - mu) * inv
        dy = weights * gamma
        return inv / n * (n * dy - dy.sum(1, keepdim=True) - xhat * (dy * xhat).sum(1, True))

    return "layer norm, captured gain", f, _randn(4, 6, seed=16, dtype=dtype), grad


def _ridge(dtype: torch.dtype) -> tuple[Any, ...]:
    a = _randn(12, 5, seed=17, dtype=dtype)
    b = _randn(12, seed=18, dtype=dtype)

    def f(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((a @ w - b) ** 2).sum() + 0.5e-3 * (w**2).sum()

    def grad(w: torch.Tensor) -> torch.Tensor:
        return a.T @ (a @ w - b) + 1e-3 * w

    return "ridge least squares, captured design", f, _randn(5, seed=19, dtype=dtype), grad


def _custom_function(r: float, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """Autograd code: a scaled tanh layer as a custom Function whose backward uses the captured
    float32 weights; its backward is off by ``r`` relative."""
    weights = _randn(4, 6, seed=20, dtype=dtype) * 0.5
    scale = torch.tensor(0.7, dtype=torch.float32).to(dtype)

    class ScaledTanh(Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = torch.tanh(x @ weights.T) * scale
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, grad_y: torch.Tensor) -> torch.Tensor:
            (y,) = ctx.saved_tensors
            d = grad_y * (scale - y * y / scale)
            return (d @ weights) * (1.0 + r)

    return lambda x: ScaledTanh.apply(x).sum()


FORMULAS = (_tanh_layer, _linear_module, _softmax_xent, _logistic, _mlp, _layernorm, _ridge)


def twins() -> list[Twin]:
    """Every twin: each formula at each scale error, the ridge term left out, and the custom
    Function (autograd code) at each scale error."""
    out = []
    for build in FORMULAS:
        name, f, x, grad = build(F32)
        _, f64, x64, grad64 = build(torch.float64)
        ref = _reference(grad64, f64, x64)
        for r in SCALES:
            out.append(Twin(f"{name}: x(1+{r:g})", f, x, grad, _scaled(grad, r), None, r, ref))
    name, f, x, grad = _ridge(F32)
    _, f64, x64, grad64 = _ridge(torch.float64)
    out.append(
        Twin(
            f"{name}: 1e-3*w left out",
            f,
            x,
            grad,
            lambda w: grad(w) - 1e-3 * w,
            None,
            "ridge",
            _reference(grad64, f64, x64),
        )
    )
    x = _randn(5, 6, seed=21, dtype=F32)
    ref = _reference(None, _custom_function(0.0, torch.float64), x.double())
    for r in SCALES:
        out.append(
            Twin(
                f"custom Function, captured weights: x(1+{r:g})",
                _custom_function(0.0, F32),
                x,
                None,
                None,
                _custom_function(r, F32),
                r,
                ref,
            )
        )
    return out


def _reference(g: Any, f: Any, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: gradient(g, f, x)


def gradient(g: Callable[..., Any] | None, f: Callable[..., Any], x: torch.Tensor) -> Any:
    """The gradient a twin's source gives at x (autograd of f where g is None)."""
    if g is not None:
        return g(x)
    leaf = x.detach().clone().requires_grad_(True)
    (out,) = torch.autograd.grad(f(leaf), leaf)
    return out


def gap(twin: Twin) -> float:
    """How many times the planted error exceeds the analytic side's own float32 rounding, in
    the worst element: ``max |buggy - correct| / max |correct - reference|``, where the
    reference is the correct source of the same code built in float64 (``Twin.reference``)."""
    correct32 = gradient(twin.correct, twin.f, twin.x).double()
    buggy32 = gradient(twin.buggy, twin.buggy_f or twin.f, twin.x).double()
    rounding = float((correct32 - twin.reference().double()).abs().max())
    planted = float((buggy32 - correct32).abs().max())
    return planted / max(rounding, 1e-300)
