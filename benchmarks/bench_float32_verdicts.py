"""Verdicts against torch.autograd.gradcheck on correct float32 gradients and small float64 bugs.

One run, same functions for both checkers, default settings as a new user would call them:

    .venv/bin/python benchmarks/bench_float32_verdicts.py

Prints, per function, what each checker says about a correct float32 gradient, and how many
small float64 bugs (a relative scale error of 1e-3 and of 1e-4 in the gradient) each catches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tabulate import tabulate

import gradcheck

torch.set_num_threads(1)
GEN = torch.Generator().manual_seed(0)


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


A, B, X31, X13 = rand(3, 4), rand(4), rand(3, 1), rand(1, 3)
T3 = torch.tensor([0.0, 0.0, 1.0])
X2 = torch.tensor([0.6, 0.9])

FUNCTIONS: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], tuple[int, ...]]] = [
    ("sum x^2", lambda x: (x**2).sum(), (5,)),
    ("seed000 x^2-2x+1", lambda x: (x**2 - 2 * x + 1).sum(), (3,)),
    ("sum sin", lambda x: torch.sin(x).sum(), (5,)),
    ("sum cos", lambda x: torch.cos(x).sum(), (5,)),
    ("sum exp", lambda x: torch.exp(x).sum(), (5,)),
    ("sum tanh^2", lambda x: torch.tanh(x).square().sum(), (6,)),
    ("sum sigmoid", lambda x: torch.sigmoid(x).sum(), (6,)),
    ("sum softplus", lambda x: F.softplus(x).sum(), (6,)),
    ("sum log(1+x^2)", lambda x: torch.log1p(x**2).sum(), (6,)),
    ("sum x^3", lambda x: (x**3).sum(), (4,)),
    ("sum sqrt(1+x^2)", lambda x: torch.sqrt(1 + x**2).sum(), (4,)),
    ("sum atan", lambda x: torch.atan(x).sum(), (4,)),
    ("sum erf", lambda x: torch.erf(x).sum(), (4,)),
    ("sum gelu", lambda x: F.gelu(x).sum(), (4,)),
    ("sum silu", lambda x: F.silu(x).sum(), (4,)),
    ("logsumexp", lambda x: torch.logsumexp(x, 0), (6,)),
    ("norm", lambda x: torch.linalg.vector_norm(x), (6,)),
    ("x.x / (1 + x.x)", lambda x: (x @ x) / (1 + x @ x), (4,)),
    ("prod", lambda x: torch.prod(x), (4,)),
    ("mean x^4", lambda x: (x**4).mean(), (5,)),
    ("sin(x) cos(x)", lambda x: (torch.sin(x) * torch.cos(x)).sum(), (5,)),
    ("exp(-x^2)", lambda x: torch.exp(-(x**2)).sum(), (5,)),
    ("A x quadratic", lambda x: (A.to(x.dtype) @ x).square().sum(), (4,)),
    ("linear + bias", lambda x: (A.to(x.dtype) @ x + 1).sum() + (x * B.to(x.dtype)).sum(), (4,)),
    ("softmax entropy", lambda x: -(torch.softmax(x, 0) * torch.log_softmax(x, 0)).sum(), (5,)),
    ("log_softmax pick", lambda x: -torch.log_softmax(x, 0)[2], (5,)),
    (
        "perceptron (seed001)",
        lambda w: F.mse_loss(torch.sigmoid(X13.to(w.dtype) @ w.T), torch.ones(1, 1, dtype=w.dtype)),
        (1, 3),
    ),
    (
        "mlp 4x3 (seed001)",
        lambda w: F.mse_loss(torch.sigmoid(w @ X31.to(w.dtype)), torch.ones(4, 1, dtype=w.dtype)),
        (4, 3),
    ),
    (
        "simpleNet CE (seed003)",
        lambda w: -(T3.to(w.dtype) * torch.log_softmax(X2.to(w.dtype) @ w, 0)).sum(),
        (2, 3),
    ),
    ("tanh layer mse", lambda w: (torch.tanh(w @ X31.to(w.dtype)) - 0.5).square().mean(), (4, 3)),
    (
        "bce with logits",
        lambda w: F.binary_cross_entropy_with_logits(
            w @ X31.to(w.dtype), torch.ones(4, 1, dtype=w.dtype)
        ),
        (4, 3),
    ),
]


def torch_verdict(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> str:
    leaf = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ok = torch.autograd.gradcheck(f, (leaf,), raise_exception=False)
        except Exception as exc:  # a peer crashing is a result too
            return f"error: {type(exc).__name__}"
    return "pass" if ok else "fail"


def scaled(f: Callable[[torch.Tensor], torch.Tensor], factor: float) -> Callable[..., torch.Tensor]:
    """f with its gradient (not its value) multiplied by `factor`: a planted scale bug."""

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx: object, y: torch.Tensor) -> torch.Tensor:
            return y.clone()

        @staticmethod
        def backward(ctx: object, g: torch.Tensor) -> torch.Tensor:
            return g * factor

    return lambda x: Scale.apply(f(x))


def main() -> None:
    rows, counts = [], {"torch": [0, 0, 0], "gradcheck": [0, 0, 0]}
    for name, f, shape in FUNCTIONS:
        x32 = 0.5 * torch.randn(*shape, generator=GEN) + 0.2
        x64 = x32.double()
        ours32 = gradcheck.check(f, x32).verdict.value
        theirs32 = torch_verdict(f, x32)
        caught = []
        for factor in (1 + 1e-3, 1 + 1e-4):
            ours = gradcheck.check(scaled(f, factor), x64).verdict.value
            theirs = torch_verdict(scaled(f, factor), x64)
            caught.append((theirs == "fail", ours == "fail"))
        counts["torch"][0] += theirs32 != "pass"
        counts["gradcheck"][0] += ours32 != "pass"
        for k, (t, o) in enumerate(caught, start=1):
            counts["torch"][k] += t
            counts["gradcheck"][k] += o
        word = {True: "caught", False: "missed"}
        rows.append([name, theirs32, ours32, *(f"{word[t]} / {word[o]}" for t, o in caught)])
    headers = [
        "function",
        "torch: f32",
        "gradcheck: f32",
        "1e-3 bug torch/ours",
        "1e-4 bug torch/ours",
    ]
    print(tabulate(rows, headers=headers))
    n = len(FUNCTIONS)
    print()
    print(
        tabulate(
            [
                [who, f"{c[0]}/{n}", f"{c[1]}/{n}", f"{c[2]}/{n}"]
                for who, c in (
                    ("torch.autograd.gradcheck", counts["torch"]),
                    ("gradcheck", counts["gradcheck"]),
                )
            ],
            headers=[
                "checker",
                "correct f32 called wrong",
                "1e-3 f64 bugs caught",
                "1e-4 f64 bugs caught",
            ],
        )
    )


if __name__ == "__main__":
    main()
