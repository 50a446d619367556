"""The CUDA and half-precision paths, on a real GPU: one prepared script.

    .venv/bin/python benchmarks/gpu_check.py

Without CUDA it prints that it skipped and exits 0 (CI has no GPU; nothing depends on one).
With CUDA it runs three groups and prints one line per item, ``ok`` or ``WRONG`` with the
summary, then a count; it exits 1 if any item is wrong:

1. **CUDA tensors**: float64 and float32 checks of torch code on the GPU (autograd and a hand
   formula capturing a CUDA float32 tensor), a 1e-4 scale error caught in float32, the
   gradient, numerical values and contract run on the device.
2. **The contract's device item**: a custom Function whose backward returns its gradient on
   the CPU for a CUDA input is named by ``grad_dtypes`` ("... is on cpu for an input on
   cuda:0"); the same Function returning it on the GPU is clean.
3. **The measuring stick on a real bfloat16 kernel**: ``silu(x @ w)`` with bfloat16 CUDA
   inputs runs cuBLAS's bfloat16 matmul; its autograd passes on basis 'stick' (autograd of the
   same maths in bfloat16 against float64), and the same gradient off by 2% fails. A float16
   kernel likewise.
"""

from __future__ import annotations

import sys

import torch

import gradcheck


def item(name: str, ok: bool, detail: str, wrong: list[str]) -> None:
    print(f"{'ok   ' if ok else 'WRONG'} {name}" + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        wrong.append(name)


def cuda_tensors(dev: torch.device, wrong: list[str]) -> None:
    g = torch.Generator(device=dev).manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(64, device=dev, dtype=dtype, generator=g)
        r = gradcheck.check(lambda v: torch.tanh(v).pow(2).sum(), x)
        item(f"autograd on {dev} {dtype}", r.verdict == "pass", r.summary(), wrong)
    captured = torch.randn(16, device=dev, generator=g)  # float32, captured by the closure
    w = 0.5 * torch.randn(8, 16, device=dev, generator=g)

    def f(w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(w @ captured).sum()

    def formula(scale: float):
        return lambda w: (1 - torch.tanh(w @ captured) ** 2)[:, None] * captured[None, :] * scale

    right = gradcheck.check(f, (w,), formula(1.0))
    item(
        "hand formula capturing a CUDA float32 tensor passes (basis measured)",
        right.verdict == "pass" and right.inputs[0].tolerance_basis == "measured",
        f"{right.summary()} basis {right.inputs[0].tolerance_basis}",
        wrong,
    )
    off = gradcheck.check(f, (w,), formula(1 + 1e-4))
    item("its 1e-4 scale error fails", off.verdict == "fail", off.summary(), wrong)
    second = gradcheck.check(lambda v: torch.sin(v).sum(), torch.randn(8, device=dev), order=2)
    item("order 2 on CUDA", second.verdict == "pass", second.summary(), wrong)


def device_item(dev: torch.device, wrong: list[str]) -> None:
    def scaled(to_cpu: bool) -> type[torch.autograd.Function]:
        class Scaled(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return 3 * x

            @staticmethod
            def backward(ctx, grad):
                out = 3 * grad
                return out.cpu() if to_cpu else out

        return Scaled

    x = torch.randn(5, device=dev, dtype=torch.float64)
    for to_cpu in (True, False):
        fn = scaled(to_cpu)
        try:
            r = gradcheck.check(lambda v, fn=fn: fn.apply(v).sum(), x)
            text = " ".join(r.reasons)
            named = "is on cpu for an input on cuda" in text
            ok = (named and r.verdict == "fail") if to_cpu else (r.verdict == "pass")
            detail = r.summary()
        except Exception as exc:  # autograd itself may refuse the device mismatch: say so
            ok, detail = to_cpu and "device" in str(exc).lower(), f"raised {exc!r}"
        label = "backward returning a CPU gradient is named" if to_cpu else "a GPU one is clean"
        item(f"contract device item: {label}", ok, detail, wrong)


def stick(dev: torch.device, wrong: list[str]) -> None:
    for dtype in (torch.bfloat16, torch.float16):
        g = torch.Generator(device=dev).manual_seed(1)
        x = torch.randn(32, 64, device=dev, generator=g).to(dtype)
        w = (torch.randn(64, 16, device=dev, generator=g) / 8).to(dtype)

        def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.silu(x @ w).sum()

        right = gradcheck.check(f, (x, w))
        bases = {c.tolerance_basis for c in right.inputs}
        item(
            f"{dtype} cuBLAS kernel: autograd passes on the measuring stick",
            right.verdict == "pass" and bases == {"stick"},
            f"{right.summary()} bases {bases}",
            wrong,
        )

        def off(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xs, ws = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
            with torch.enable_grad():
                gx, gw = torch.autograd.grad(f(xs, ws), (xs, ws))
            return gx * 1.02, gw * 1.02

        wrong_grad = gradcheck.check(f, (x, w), off)
        item(
            f"{dtype}: a 2% error fails", wrong_grad.verdict == "fail", wrong_grad.summary(), wrong
        )


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here: skipped (nothing was checked)")
        return 0
    dev = torch.device("cuda", 0)
    print(f"gpu_check on {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
    wrong: list[str] = []
    for group in (cuda_tensors, device_item, stick):
        group(dev, wrong)
    print(f"gpu_check: {len(wrong)} wrong" + (f": {', '.join(wrong)}" if wrong else ""))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
