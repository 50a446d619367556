"""Two energies and their gradients, derived by hand; the second one has a slip."""

import numpy as np


def softplus_energy(x):
    return np.sum(np.logaddexp(0.0, x))


def softplus_energy_grad(x):
    return 1.0 / (1.0 + np.exp(-x))


def spring_energy(x, k):
    return 0.5 * np.sum(k * np.diff(x) ** 2)


def spring_energy_grad_wrong(x, k):
    """Forgot the minus sign of the left neighbour's term."""
    d = k * np.diff(x)
    return np.concatenate([d[:1], d[1:] + d[:-1], d[-1:]])
