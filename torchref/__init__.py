"""PyTorch reference models whose state_dict is key-for-key and shape-for-shape torchvision's.

`torchref.create_model(name, **kwargs)` builds the torch twin of `flaxnets.create_model(name)`.
"""
from __future__ import annotations

from netspecs.registry import Registry

MODELS = Registry("torchref")
register = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs):
    """A torch.nn.Module with torchvision's architecture and state_dict layout."""
    return MODELS.create(name, **kwargs)


# Families register themselves on import.
from torchref import (  # noqa: E402,F401
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
