"""PyTorch reference models whose state_dict is key-for-key and shape-for-shape torchvision's.

`torchref.create_model(name, **kwargs)` builds the torch twin of `flaxnets.create_model(name)`.
"""
from __future__ import annotations

from netspecs.registry import Registry, import_families

MODELS = Registry("torchref")
register = MODELS.register


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs):
    """A torch.nn.Module with torchvision's architecture and state_dict layout."""
    return MODELS.create(name, **kwargs)


# Families register themselves on import (the list: netspecs.FAMILIES).
import_families("torchref")
