"""A case of JAX code: without jax it is an error that says jax is needed and how to get it."""

import jax.numpy as jnp

from gradcheck import case, normal

softplus = case(
    name="softplus_by_jax", f=lambda x: jnp.sum(jnp.logaddexp(x, 0.0)), inputs={"x": normal(3)}
)
