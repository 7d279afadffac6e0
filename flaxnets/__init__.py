"""flaxnets: torchvision's (and timm's) image classifiers in JAX/Flax, numerically identical
to PyTorch, with strict checkpoint conversion both ways.

    import flaxnets
    model = flaxnets.create_model("regnet_x_400mf")          # a flax.linen.Module, NHWC input
    variables = flaxnets.from_torch_state_dict("regnet_x_400mf", torch_state_dict)
    logits = model.apply(variables, images_nhwc, train=False)
    x = flaxnets.eval_transform("regnet_x_400mf", "IMAGENET1K_V2")(pil_image)  # HWC float32

Importing flaxnets imports jax and flax, never torch or tensorflow, and starts no backend. The
one process setting it makes is XLA:CPU's convolution flag (`flaxnets/_xla_flags.py`, only
while jax's backend has not started; `FLAXNETS_NO_XLA_FLAGS=1` opts out).
"""
from __future__ import annotations

from flaxnets import _xla_flags  # noqa: F401  (first: XLA:CPU flags before jax's backend starts)

from netspecs.registry import Registry, import_families

MODELS = Registry("flaxnets")
register = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs):
    """A flax.linen.Module for torchvision model `name`; kwargs are torchvision's builder knobs."""
    return MODELS.create(name, **kwargs)


# Families register themselves on import (the list: netspecs.FAMILIES).
import_families("flaxnets")
from flaxnets.convert import (  # noqa: E402
    ConversionError,
    from_torch_state_dict,
    init_variables,
    load_torch_checkpoint,
    save_checkpoint,
    to_numpy_state_dict,
    to_torch_state_dict,
)
from flaxnets.transforms import eval_transform, imagenet_classes, list_weights, weights_info  # noqa: E402

__all__ = ["list_models", "create_model", "from_torch_state_dict", "to_torch_state_dict",
           "to_numpy_state_dict", "load_torch_checkpoint", "save_checkpoint", "init_variables",
           "register", "ConversionError", "MODELS", "eval_transform", "list_weights",
           "weights_info", "imagenet_classes"]
