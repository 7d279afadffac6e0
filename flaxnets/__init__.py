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


def create_model(name: str, *, features_only: bool = False, out_indices=None, **kwargs):
    """A flax.linen.Module for torchvision model `name`; kwargs are torchvision's builder knobs.

    `features_only=True`: a backbone returning a list of feature maps (NHWC; NLC for
    `spatial_dims=1`), highest resolution first, selected by `out_indices` (None: all;
    negative indices count from the end): `feature_info(name)` lists them. `num_classes=0`:
    the pooled pre-logit features (N, C), without head parameters. See `flaxnets.features`.
    """
    from flaxnets import features

    if features_only:
        return features.features_model(name, out_indices, **kwargs)
    if out_indices is not None:
        raise TypeError(f"{name}: out_indices needs features_only=True")
    if kwargs.get("num_classes") == 0:
        return features.pooled_model(name, **kwargs)
    return MODELS.create(name, **kwargs)


def feature_info(name: str, **kwargs) -> list[dict]:
    """[{"module", "num_chs", "reduction"}] of the features of `create_model(name,
    features_only=True, **kwargs)` (see `flaxnets.features`)."""
    from flaxnets import features

    return features.feature_info(name, **kwargs)


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

__all__ = ["list_models", "create_model", "feature_info", "from_torch_state_dict", "to_torch_state_dict",
           "to_numpy_state_dict", "load_torch_checkpoint", "save_checkpoint", "init_variables",
           "register", "ConversionError", "MODELS", "eval_transform", "list_weights",
           "weights_info", "imagenet_classes"]
