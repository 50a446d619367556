"""gradcheck cases for the energies package: they import the project's own code."""

import numpy as np
from energies.losses import (
    softplus_energy,
    softplus_energy_grad,
    spring_energy,
    spring_energy_grad_wrong,
)

from gradcheck import case, normal

softplus = case(
    name="softplus_energy",
    f=softplus_energy,
    inputs={"x": normal(6)},
    grad=softplus_energy_grad,
)

springs = case(
    name="spring_energy_sign_slip",
    f=spring_energy,
    inputs={"x": normal(5), "k": np.array([1.0, 2.0, 0.5, 3.0])},
    wrt="x",
    grad=spring_energy_grad_wrong,
    expect="fail",
)
