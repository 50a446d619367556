"""Custom autograd Functions: the forward and the backward are both written by hand."""

import torch


class Cube(torch.autograd.Function):
    """x ** 3, with the derivative 3 x ** 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3 * x**2


class Tanh(torch.autograd.Function):
    """tanh(x); its derivative is 1 - tanh(x) ** 2, but the backward below forgot the square."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y)  # the bug: should be (1 - y**2)
