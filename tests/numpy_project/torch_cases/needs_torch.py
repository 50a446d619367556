"""A case for torch autograd (no grad= given): without torch it is an error row that says so."""

import numpy as np

from gradcheck import case

square = case(name="square_by_autograd", f=lambda x: (x**2).sum(), inputs={"x": np.ones(3)})
