"""flaxnets: torchvision's CNN classifiers in JAX/Flax, numerically identical to PyTorch.

    import flaxnets
    model = flaxnets.create_model("regnet_x_400mf")          # a flax.linen.Module, NHWC input
    variables = flaxnets.from_torch_state_dict("regnet_x_400mf", torch_state_dict)
    logits = model.apply(variables, images_nhwc, train=False)
"""
from __future__ import annotations

from flaxnets import _xla_flags  # noqa: F401  (first: XLA:CPU flags before jax's backend starts)

from netspecs.registry import Registry

MODELS = Registry("flaxnets")
register = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs):
    """A flax.linen.Module for torchvision model `name`; kwargs are torchvision's builder knobs."""
    return MODELS.create(name, **kwargs)


# Families register themselves on import.
from flaxnets import (  # noqa: E402,F401
    regnet,
    resnet,
    vgg,
    alexnet,
    squeezenet,
    lenet,
    googlenet,
    inception,
    densenet,
    mobilenetv1,
    mobilenetv2,
    mobilenetv3,
    mnasnet,
    shufflenetv2,
    efficientnet,
    semnasnet,
)
from flaxnets.convert import (  # noqa: E402
    from_torch_state_dict,
    init_variables,
    load_torch_checkpoint,
    to_torch_state_dict,
)

__all__ = ["list_models", "create_model", "from_torch_state_dict", "to_torch_state_dict",
           "load_torch_checkpoint", "init_variables", "register"]
