"""flaxnets models from `flax.nnx`, through Flax's own linen->NNX bridge (`nnx.bridge.ToNNX`).

    from flax import nnx
    import flaxnets
    from flaxnets.nnx_bridge import to_nnx, linen_variables

    variables = flaxnets.from_torch_state_dict("resnet50", torch_state_dict)
    model = to_nnx("resnet50", variables)                 # an nnx.Module holding the weights
    logits = model(x, train=False)
    logits = model(x, train=True, mutable=["batch_stats"], rngs=nnx.Rngs(dropout=0))
    # running statistics are updated in place; back to linen variables / torch:
    sd = flaxnets.to_torch_state_dict("resnet50", linen_variables(model))

The NNX module's state keeps linen's layout: `nnx.Param` for `params`, `nnx.BatchStat` for
`batch_stats`, under the same module paths (so the converter's names apply unchanged).
"""
from __future__ import annotations

from typing import Any, Mapping


def to_nnx(name_or_module, variables: Mapping[str, Any] | None = None, *, rngs=None,
           input_shape=None, **kwargs):
    """An `nnx.bridge.ToNNX` module for a registered model name (built with `kwargs`) or a
    flaxnets linen module, initialised from `variables` (e.g. converted torch weights), or
    freshly from `rngs` (default `nnx.Rngs(0)`) when `variables` is None."""
    import jax.numpy as jnp
    from flax import nnx
    from flax.nnx.bridge import variables as bridge_vars

    from flaxnets import create_model
    from flaxnets.convert import input_shape as default_shape

    module = create_model(name_or_module, **kwargs) if isinstance(name_or_module, str) else name_or_module
    m = nnx.bridge.ToNNX(module, rngs=rngs if rngs is not None else nnx.Rngs(0))
    shape = tuple(input_shape) if input_shape is not None else default_shape(module)
    nnx.bridge.lazy_init(m, jnp.zeros(shape, jnp.float32), train=False)
    if variables is not None:
        unknown = set(variables) - {"params", "batch_stats"}
        if unknown:
            raise ValueError(f"to_nnx: unexpected variable collections {sorted(unknown)}")
        import jax
        from flaxnets.convert import _flatten

        want = {k: tuple(jax.numpy.shape(v)) for k, v in _flatten(linen_variables(m)).items()}
        got = {k: tuple(jax.numpy.shape(v)) for k, v in _flatten(dict(variables)).items()}
        if want != got:
            raise ValueError("to_nnx: variables do not fit the model (convert them with "
                             "flaxnets.from_torch_state_dict for the same name and knobs)")
        nnx.update(m, nnx.State(bridge_vars.linen_vars_to_nnx_attrs(dict(variables))))
    return m


def linen_variables(m) -> dict:
    """The linen variables ({"params", "batch_stats"}) an NNX-bridged model holds now."""
    from flax.nnx.bridge import variables as bridge_vars

    attrs = {k: v for k, v in vars(m).items() if not k.startswith(("to_nnx__", "_pytree__"))}
    return bridge_vars.nnx_attrs_to_linen_vars(attrs)
