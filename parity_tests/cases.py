"""Per-model parity settings: which input sizes, which builder knobs, which tier.

Defaults: eval at 224x224 and the odd 199x227; train mode (float64) at 64x64; dropout and
stochastic depth off. Models above ~100M parameters run eval at reduced sizes in the default
suite and their float64 train-mode check in the `large` tier (`pytest -m large`).
"""
from __future__ import annotations

import dataclasses

import flaxnets

EVAL_SIZES = ((224, 224), (199, 227))
SMALL_EVAL_SIZES = ((96, 96), (67, 81))
TRAIN_SIZE = (64, 64)
TRAIN_KWARGS = {"dropout": 0.0, "stochastic_depth_prob": 0.0}
LARGE_PARAMS = 100_000_000


@dataclasses.dataclass(frozen=True)
class Case:
    eval_sizes: tuple = EVAL_SIZES
    train_size: tuple = TRAIN_SIZE
    kwargs: tuple = ()             # builder kwargs for both checks, as ((k, v), ...)
    large: bool | None = None      # None: decided by parameter count
    train_large: bool | None = None


# Family overrides (one block per family).
OVERRIDES: dict[str, Case] = {
    # regnet
    "regnet_y_128gf": Case(eval_sizes=((64, 64), (67, 81)), train_size=(32, 32)),
    # resnet
    # vgg
    # alexnet
    # squeezenet
    # lenet
    # googlenet
    # inception
    # densenet
    # mobilenetv1
    # mobilenetv2
    # mobilenetv3
    # mnasnet
    # shufflenetv2
    # efficientnet
}


def case(name: str) -> Case:
    return OVERRIDES.get(name, Case())
