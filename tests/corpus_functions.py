"""A corpus of custom torch.autograd.Functions modelled on real code, each with described mutants.

Each entry is written the way its model is (the PyTorch tutorials' LinearFunction and
MulConstant, extension-cpp's LLTM cell, a fused bias-GeLU, LayerNorm, focal loss, sparsemax,
attention, a clipped straight-through estimator, a weighted MSE with constant target and
weight, ...) and is called the way a torch user calls ``torch.autograd.gradcheck``: with the
same inputs tuple, constants (ints, floats, bool masks, index tensors, None) included.

``make(bug)`` returns the Function; ``bug=None`` is the correct one, and each name in ``bugs``
(with its description) plants one real bug class in the backward. Expected verdicts come from
the maths: the correct backward is exact; every mutant is wrong at the inputs drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd import Function


@dataclass(frozen=True)
class Entry:
    name: str
    make: Callable[[str | None], type[Function]]
    inputs: Callable[[torch.dtype], tuple]
    bugs: dict[str, str]


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, dtype: torch.dtype, seed: int, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed), dtype=dtype).requires_grad_(grad)


def linear(bug: str | None) -> type[Function]:
    class LinearFunction(Function):  # the PyTorch "Extending torch.autograd" tutorial
        @staticmethod
        def forward(ctx, input, weight, bias=None):
            ctx.save_for_backward(input, weight, bias)
            output = input.mm(weight.t())
            if bias is not None:
                output += bias.unsqueeze(0).expand_as(output)
            return output

        @staticmethod
        def backward(ctx, grad_output):
            input, weight, bias = ctx.saved_tensors
            grad_input = grad_weight = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_input = grad_output.mm(weight)
            if ctx.needs_input_grad[2 if bug == "needs_input_grad_index" else 1]:
                grad_weight = grad_output.t().mm(input)
            if bug == "input_grad_rows_flipped":
                grad_input = grad_output.mm(weight).flip(0)
            if bias is not None and ctx.needs_input_grad[2]:
                grad_bias = grad_output.sum(0)
            return grad_input, grad_weight, grad_bias

    return LinearFunction


def linear_bias(bug: str | None) -> type[Function]:
    class LinearBias(Function):
        @staticmethod
        def forward(ctx, input, weight, bias):
            ctx.save_for_backward(input, weight)
            return input.mm(weight.t()) + bias

        @staticmethod
        def backward(ctx, grad_output):
            input, weight = ctx.saved_tensors
            grad_bias = grad_output.mean(0) if bug == "bias_mean_not_sum" else grad_output.sum(0)
            grad_weight = grad_output.t().mm(input)
            if bug == "weight_grad_ignores_batch_but_first":
                grad_weight = grad_output[:1].t().mm(input[:1])
            return grad_output.mm(weight), grad_weight, grad_bias

    return LinearBias


def mul_constant(bug: str | None) -> type[Function]:
    class MulConstant(Function):  # the tutorial's, with a float constant
        @staticmethod
        def forward(ctx, tensor, constant):
            assert type(constant) is float, "the constant reaches forward as a Python float"
            ctx.constant = constant
            return tensor * constant

        @staticmethod
        def backward(ctx, grad_output):
            if bug == "ignores_constant":
                return grad_output, None
            if bug == "constant_squared":
                return grad_output * ctx.constant**2, None
            return grad_output * ctx.constant, None

    return MulConstant


def lltm(bug: str | None) -> type[Function]:
    def d_sigmoid(z):
        s = torch.sigmoid(z)
        return (1 - s) * s

    def d_tanh(z):
        return 1 - z.tanh() if bug == "d_tanh_not_squared" else 1 - z.tanh().pow(2)

    def d_elu(z, alpha=1.0):
        if bug == "d_elu_ignores_negative":
            return torch.ones_like(z)
        e = z.exp()
        mask = (alpha * (e - 1)) < 0
        return (z > 0).type_as(z) + mask.type_as(z) * (alpha * e)

    class LLTMFunction(Function):  # extension-cpp's LLTM cell, in Python
        @staticmethod
        def forward(ctx, input, weights, bias, old_h, old_cell):
            X = torch.cat([old_h, input], dim=1)
            gate_weights = F.linear(X, weights, bias)
            gates = gate_weights.chunk(3, dim=1)
            input_gate = torch.sigmoid(gates[0])
            output_gate = torch.sigmoid(gates[1])
            candidate_cell = F.elu(gates[2])
            new_cell = old_cell + candidate_cell * input_gate
            new_h = torch.tanh(new_cell) * output_gate
            ctx.save_for_backward(
                X, weights, input_gate, output_gate, old_cell, candidate_cell, gate_weights
            )
            ctx.state_size = old_h.shape[1]
            return new_h, new_cell

        @staticmethod
        def backward(ctx, grad_h, grad_cell):
            X, weights, input_gate, output_gate, old_cell, candidate_cell, gate_weights = (
                ctx.saved_tensors
            )
            new_cell = old_cell + candidate_cell * input_gate
            d_output_gate = torch.tanh(new_cell) * grad_h
            d_tanh_new_cell = output_gate * grad_h
            d_new_cell = d_tanh(new_cell) * d_tanh_new_cell
            if bug != "ignores_grad_cell":
                d_new_cell = d_new_cell + grad_cell
            d_old_cell = d_new_cell
            d_candidate_cell = input_gate * d_new_cell
            d_input_gate = candidate_cell * d_new_cell
            gates = gate_weights.chunk(3, dim=1)
            d_input_gate = d_input_gate * d_sigmoid(gates[0])
            d_output_gate = d_output_gate * d_sigmoid(gates[1])
            d_candidate_cell = d_candidate_cell * d_elu(gates[2])
            d_gates = torch.cat([d_input_gate, d_output_gate, d_candidate_cell], dim=1)
            d_weights = d_gates.t().mm(X)
            d_bias = d_gates.sum(dim=0)
            d_X = d_gates.mm(weights)
            d_old_h, d_input = d_X[:, : ctx.state_size], d_X[:, ctx.state_size :]
            return d_input, d_weights, d_bias, d_old_h, d_old_cell

    return LLTMFunction


def lltm_inputs(dtype: torch.dtype) -> tuple:
    batch, features, state = 2, 3, 2
    return (
        _randn(batch, features, dtype=dtype, seed=1),
        _randn(3 * state, features + state, dtype=dtype, seed=2),
        _randn(3 * state, dtype=dtype, seed=3),
        _randn(batch, state, dtype=dtype, seed=4),
        _randn(batch, state, dtype=dtype, seed=5),
    )


def bias_gelu(bug: str | None) -> type[Function]:
    k = 0.7978845608028654  # sqrt(2 / pi)

    class BiasGeLU(Function):  # a fused bias + tanh-GeLU, as in Megatron-style kernels
        @staticmethod
        def forward(ctx, x, bias):
            ctx.save_for_backward(x, bias)
            y = x + bias
            return y * 0.5 * (1.0 + torch.tanh(k * y * (1 + 0.044715 * y * y)))

        @staticmethod
        def backward(ctx, g):
            x, bias = ctx.saved_tensors
            y = x + bias
            t = torch.tanh(k * y * (1 + 0.044715 * y * y))
            kk = 0.7979 if bug == "truncated_sqrt_2_over_pi" else k
            cubic = 0.044715 if bug == "drops_the_3_of_the_cubic" else 3 * 0.044715
            ff = 0.5 * y * ((1 - t * t) * (kk + kk * cubic * y * y)) + 0.5 * (1 + t)
            gx = ff * g
            gb = gx[0] if bug == "bias_grad_first_row_only" else gx.sum(0)
            return gx, gb

    return BiasGeLU


def layer_norm(bug: str | None) -> type[Function]:
    class LayerNorm(Function):  # over the last axis, with an affine weight and bias, float eps
        @staticmethod
        def forward(ctx, x, weight, bias, eps):
            mean = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            rstd = (var + eps).rsqrt()
            xhat = (x - mean) * rstd
            ctx.save_for_backward(xhat, rstd, weight)
            ctx.eps = eps
            return xhat * weight + bias

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, weight = ctx.saved_tensors
            if bug == "eps_added_twice":  # rstd recomputed from the variance with 2 eps
                var = rstd.pow(-2) - ctx.eps
                rstd = (var + 2 * ctx.eps).rsqrt()
            gxhat = g * weight
            mean_term = gxhat.mean(-1, keepdim=True)
            var_term = xhat * (gxhat * xhat).mean(-1, keepdim=True)
            if bug == "drops_the_mean_term":
                mean_term = mean_term * 0
            if bug == "drops_the_variance_term":
                var_term = var_term * 0
            gx = rstd * (gxhat - mean_term - var_term)
            gw = (g * xhat).sum(0)
            if bug == "weight_grad_without_xhat":
                gw = g.sum(0)
            return gx, gw, g.sum(0), None

    return LayerNorm


def focal_loss(bug: str | None) -> type[Function]:
    class FocalLoss(Function):  # multi-class focal loss; int64 targets, float gamma
        @staticmethod
        def forward(ctx, logits, target, gamma):
            logp = torch.log_softmax(logits, dim=1)
            logpt = logp.gather(1, target[:, None]).squeeze(1)
            pt = logpt.exp()
            ctx.save_for_backward(logits, target)
            ctx.gamma = gamma
            return (-((1 - pt) ** gamma) * logpt).mean()

        @staticmethod
        def backward(ctx, g):
            logits, target = ctx.saved_tensors
            gamma = ctx.gamma
            p = torch.softmax(logits, dim=1)
            logpt = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
            pt = logpt.exp()
            # dL/dlogpt per sample, then through log_softmax: d logpt / d logits = onehot - p
            slope = gamma * (1.001 if bug == "modulating_slope_off_by_0.1%" else 1.0)
            dlogpt = -((1 - pt) ** gamma) + slope * (1 - pt) ** (gamma - 1) * pt * logpt
            if bug == "drops_the_modulating_derivative":
                dlogpt = -((1 - pt) ** gamma)
            onehot = torch.zeros_like(p).scatter_(1, target[:, None], 1.0)
            through = onehot if bug == "softmax_jacobian_as_identity" else onehot - p
            grad = dlogpt[:, None] * through / logits.shape[0]
            return grad * g, None, None

    return FocalLoss


def sparsemax(bug: str | None) -> type[Function]:
    class Sparsemax(Function):  # Martins & Astudillo 2016, along an int dim
        @staticmethod
        def forward(ctx, x, dim):
            z = x.transpose(dim, -1)
            zs, _ = z.sort(-1, descending=True)
            k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
            cum = zs.cumsum(-1)
            support = 1 + k * zs > cum
            kz = support.sum(-1, keepdim=True)
            tau = (cum.gather(-1, kz - 1) - 1) / kz.to(z.dtype)
            out = (z - tau).clamp(min=0).transpose(dim, -1)
            ctx.save_for_backward(out)
            ctx.dim = dim
            return out

        @staticmethod
        def backward(ctx, g):
            (out,) = ctx.saved_tensors
            dim = ctx.dim
            nz = (out > 0).to(g.dtype)
            mean = (g * nz).sum(dim, keepdim=True) / nz.sum(dim, keepdim=True)
            if bug == "forgets_the_support_mean":
                mean = mean * 0
            if bug == "mean_over_all_elements":
                mean = g.mean(dim, keepdim=True)
            return nz * (g - mean), None

    return Sparsemax


def attention(bug: str | None) -> type[Function]:
    class Attention(Function):  # scaled dot-product attention returning (out, attn)
        @staticmethod
        def forward(ctx, q, k, v, scale):
            attn = torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1)
            ctx.save_for_backward(q, k, v, attn)
            ctx.scale = scale
            return attn @ v, attn

        @staticmethod
        def backward(ctx, g_out, g_attn):
            q, k, v, attn = ctx.saved_tensors
            d_attn = g_out @ v.transpose(-1, -2)
            if bug != "ignores_grad_attn":
                d_attn = d_attn + g_attn
            d_scores = attn * (d_attn - (d_attn * attn).sum(-1, keepdim=True))
            scale = 1.0 if bug == "dq_misses_the_scale" else ctx.scale
            dq = d_scores @ k * scale
            dk = d_scores.transpose(-1, -2) @ q * ctx.scale
            dv = attn.transpose(-1, -2) @ g_out
            if bug == "dv_untransposed_attn":
                dv = attn @ g_out
            return dq, dk, dv, None

    return Attention


def clipped_ste(bug: str | None) -> type[Function]:
    class ClippedSTE(Function):  # hard-tanh straight-through: gradient passes where |x| <= 1
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(-1, 1)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            if bug == "passes_everywhere":
                return g
            if bug == "passes_outside_only":
                return g * (x.abs() > 1).to(g.dtype)
            return g * (x.abs() <= 1).to(g.dtype)

    return ClippedSTE


def weighted_mse(bug: str | None) -> type[Function]:
    class WeightedMSE(Function):  # constant target and weight, guarded by needs_input_grad
        @staticmethod
        def forward(ctx, pred, target, weight):
            ctx.save_for_backward(pred, target, weight)
            return (weight * (pred - target) ** 2).mean()

        @staticmethod
        def backward(ctx, g):
            pred, target, weight = ctx.saved_tensors
            grad_pred = None
            if ctx.needs_input_grad[1 if bug == "needs_input_grad_index" else 0]:
                factor = 1.0 if bug == "drops_the_2" else 2.0
                w = 1.0 if bug == "ignores_weight" else weight
                grad_pred = g * factor * w * (pred - target) / pred.numel()
            return grad_pred, None, None

    return WeightedMSE


def masked_softmax(bug: str | None) -> type[Function]:
    class MaskedSoftmax(Function):  # a bool mask and an int dim
        @staticmethod
        def forward(ctx, x, mask, dim):
            y = torch.softmax(x.masked_fill(~mask, float("-inf")), dim=dim)
            ctx.save_for_backward(y)
            ctx.dim = dim
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            dim = 0 if bug == "sum_over_the_wrong_dim" else ctx.dim
            if bug == "drops_the_sum":
                return y * g, None, None
            return y * (g - (g * y).sum(dim, keepdim=True)), None, None

    return MaskedSoftmax


def gather_rows(bug: str | None) -> type[Function]:
    class GatherRows(Function):  # an int64 index tensor with repeats
        @staticmethod
        def forward(ctx, x, index):
            ctx.save_for_backward(index)
            ctx.shape = x.shape
            return x[index]

        @staticmethod
        def backward(ctx, g):
            (index,) = ctx.saved_tensors
            grad = g.new_zeros(ctx.shape)
            if bug == "scatter_without_add":
                grad[index] = g
            else:
                grad.index_add_(0, index, g)
            return grad, None

    return GatherRows


def reverse_cumsum(bug: str | None) -> type[Function]:
    class CumSum(Function):
        @staticmethod
        def forward(ctx, x, dim):
            ctx.dim = dim
            return x.cumsum(dim)

        @staticmethod
        def backward(ctx, g):
            if bug == "forward_cumsum_of_grad":
                return g.cumsum(ctx.dim), None
            return g.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim), None

    return CumSum


def sin_exp(bug: str | None) -> type[Function]:
    class SinExp(Function):  # a tuple output
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin(), x.exp()

        @staticmethod
        def backward(ctx, g_sin, g_exp):
            (x,) = ctx.saved_tensors
            if bug == "ignores_the_second_grad":
                return g_sin * x.cos()
            if bug == "sin_grad_times_sin":
                return g_sin * x.sin() + g_exp * x.exp()
            return g_sin * x.cos() + g_exp * x.exp()

    return SinExp


def complex_scale(bug: str | None) -> type[Function]:
    class ComplexMul(Function):  # y = z * w, complex inputs and output
        @staticmethod
        def forward(ctx, z, w):
            ctx.save_for_backward(z, w)
            return z * w

        @staticmethod
        def backward(ctx, g):
            z, w = ctx.saved_tensors
            gz = g * (w if bug == "missing_conj" else w.conj())
            gw = g * z.conj()
            if bug == "conj_of_the_product":
                gw = (g * z).conj()
            return gz, gw

    return ComplexMul


def swish(bug: str | None) -> type[Function]:
    class Swish(Function):  # x * sigmoid(beta x) with a float beta
        @staticmethod
        def forward(ctx, x, beta):
            ctx.save_for_backward(x)
            ctx.beta = beta
            return x * torch.sigmoid(beta * x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            b = 1.0 if bug == "forgets_beta" else ctx.beta
            s = torch.sigmoid(ctx.beta * x)
            return g * (s + x * b * s * (1 - s)), None

    return Swish


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


CORPUS: tuple[Entry, ...] = (
    Entry(
        "LinearFunction (bias None)",
        linear,
        lambda d: (_randn(4, 3, dtype=d, seed=1), _randn(2, 3, dtype=d, seed=2), None),
        {
            "needs_input_grad_index": "grad_weight guarded by needs_input_grad[2] (the bias)",
            "input_grad_rows_flipped": "grad_input rows in the wrong order",
        },
    ),
    Entry(
        "Linear with bias",
        linear_bias,
        lambda d: tuple(_randn(*s, dtype=d, seed=i) for i, s in enumerate([(4, 3), (2, 3), (2,)])),
        {
            "bias_mean_not_sum": "grad_bias averaged over the batch instead of summed",
            "weight_grad_ignores_batch_but_first": "grad_weight from the first sample only",
        },
    ),
    Entry(
        "MulConstant (float constant)",
        mul_constant,
        lambda d: (_randn(3, 2, dtype=d, seed=3), 5.5),
        {"ignores_constant": "returns grad_output unscaled", "constant_squared": "scales twice"},
    ),
    Entry(
        "LLTM cell (tuple output)",
        lltm,
        lltm_inputs,
        {
            "ignores_grad_cell": "the new_cell output's grad is dropped",
            "d_tanh_not_squared": "d tanh = 1 - tanh instead of 1 - tanh^2",
            "d_elu_ignores_negative": "elu's derivative taken as 1 everywhere",
        },
    ),
    Entry(
        "fused bias-GeLU",
        bias_gelu,
        lambda d: (_randn(3, 4, dtype=d, seed=6), _randn(4, dtype=d, seed=7)),
        {
            "drops_the_3_of_the_cubic": "d/dy of 0.044715 y^3 without the 3",
            "bias_grad_first_row_only": "grad_bias from the first row, not summed",
            "truncated_sqrt_2_over_pi": "sqrt(2/pi) written 0.7979 in the backward",
        },
    ),
    Entry(
        "LayerNorm (float eps)",
        layer_norm,
        lambda d: (
            _randn(3, 5, dtype=d, seed=8),
            _randn(5, dtype=d, seed=9),
            _randn(5, dtype=d, seed=10),
            1e-5,
        ),
        {
            "drops_the_mean_term": "dx without the mean of dxhat",
            "drops_the_variance_term": "dx without the xhat * mean(dxhat xhat) term",
            "weight_grad_without_xhat": "grad_weight = sum(g), not sum(g xhat)",
            "eps_added_twice": "the backward's rstd from var + 2 eps (a 1e-5 relative error)",
        },
    ),
    Entry(
        "focal loss (int64 target, float gamma)",
        focal_loss,
        lambda d: (_randn(4, 3, dtype=d, seed=11), torch.tensor([0, 2, 1, 2]), 2.0),
        {
            "drops_the_modulating_derivative": "(1 - pt)^gamma treated as a constant",
            "softmax_jacobian_as_identity": "d log_softmax taken as onehot only",
            "modulating_slope_off_by_0.1%": "gamma (1 - pt)^(gamma - 1) scaled by 1.001",
        },
    ),
    Entry(
        "sparsemax (int dim)",
        sparsemax,
        lambda d: (_randn(3, 5, dtype=d, seed=12) * 2, 1),
        {
            "forgets_the_support_mean": "g masked to the support, the mean not subtracted",
            "mean_over_all_elements": "the mean over every element, not the support",
        },
    ),
    Entry(
        "attention (out, attn)",
        attention,
        lambda d: (
            _randn(3, 2, dtype=d, seed=13),
            _randn(3, 2, dtype=d, seed=14),
            _randn(3, 2, dtype=d, seed=15),
            0.7,
        ),
        {
            "ignores_grad_attn": "the attn output's grad is dropped (its rows sum to 1)",
            "dq_misses_the_scale": "dq without the softmax temperature",
            "dv_untransposed_attn": "dv = attn @ g instead of attn^T @ g",
        },
    ),
    Entry(
        "clipped straight-through estimator",
        clipped_ste,
        lambda d: (torch.tensor([-1.7, -0.6, 0.2, 0.9, 1.4], dtype=d, requires_grad=True),),
        {
            "passes_everywhere": "the gradient passes outside [-1, 1] too",
            "passes_outside_only": "the mask inverted",
        },
    ),
    Entry(
        "WeightedMSE (constant target and weight)",
        weighted_mse,
        lambda d: (
            _randn(6, dtype=d, seed=16),
            _randn(6, dtype=d, seed=17, grad=False),
            torch.rand(6, generator=_g(18), dtype=d) + 0.5,
        ),
        {
            "needs_input_grad_index": "grad_pred guarded by needs_input_grad[1] (the target)",
            "drops_the_2": "d (p - t)^2 = (p - t)",
            "ignores_weight": "the weight left out of the gradient",
        },
    ),
    Entry(
        "masked softmax (bool mask, int dim)",
        masked_softmax,
        lambda d: (
            _randn(3, 4, dtype=d, seed=19),
            torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool),
            1,
        ),
        {
            "drops_the_sum": "dx = y g, without the - sum(g y) term",
            "sum_over_the_wrong_dim": "the sum over dim 0",
        },
    ),
    Entry(
        "gather rows (int64 index with repeats)",
        gather_rows,
        lambda d: (_randn(4, 3, dtype=d, seed=20), torch.tensor([0, 2, 2, 3, 0])),
        {"scatter_without_add": "repeated rows overwrite instead of accumulating"},
    ),
    Entry(
        "cumsum (int dim)",
        reverse_cumsum,
        lambda d: (_randn(3, 4, dtype=d, seed=21), 1),
        {"forward_cumsum_of_grad": "cumsum of g, not the reversed cumsum"},
    ),
    Entry(
        "sin and exp (tuple output)",
        sin_exp,
        lambda d: (_randn(4, dtype=d, seed=22),),
        {
            "ignores_the_second_grad": "the exp output's grad is dropped",
            "sin_grad_times_sin": "d sin taken as sin",
        },
    ),
    Entry(
        "complex multiply",
        complex_scale,
        lambda d: (
            torch.randn(3, generator=_g(23), dtype=_complex(d)).requires_grad_(),
            torch.randn(3, generator=_g(24), dtype=_complex(d)).requires_grad_(),
        ),
        {
            "missing_conj": "grad_z = g w, without conj()",
            "conj_of_the_product": "grad_w = conj(g z)",
        },
    ),
    Entry(
        "Swish (float beta)",
        swish,
        lambda d: (_randn(5, dtype=d, seed=25), 1.7),
        {"forgets_beta": "the derivative uses beta = 1"},
    ),
)
