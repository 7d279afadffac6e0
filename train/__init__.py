"""Training flaxnets models with optax under jax.jit (see train.main)."""
