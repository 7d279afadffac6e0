"""LeNet-5 in Flax (not in torchvision; `torchref/lenet.py` is the reference).

Paper: LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998,
Sec. II-B and Fig. 2 (C1 6@5x5, S2, C3 16@5x5, S4, C5/F6 120 and 84 units, 10 outputs), in
its common modern form: ReLU instead of the scaled tanh, 2x2 max pooling instead of trainable
sub-sampling, C3 fully connected to S2, and a plain linear output layer instead of RBF units.
ReLU keeps the family consistent with every other model here and trains from torch's default
init without the paper's tanh-specific init and input scaling.

For 32x32 inputs only (the 16x5x5 map feeds fc1). `in_channels` defaults to 3: the training
pipeline yields 3-channel images (grey digits replicated), and so do the converter and the
parity harness; use in_channels=1 for single-channel data. `num_classes` defaults to 10.

State dict (PyTorch layout, C = in_channels, K = num_classes), docs/lenet5.md:
    conv1.weight (6, C, 5, 5)    conv1.bias (6,)
    conv2.weight (16, 6, 5, 5)   conv2.bias (16,)
    fc1.weight (120, 400)        fc1.bias (120,)    400 = 16*5*5 in torch's NCHW flatten order
    fc2.weight (84, 120)         fc2.bias (84,)
    fc3.weight (K, 84)           fc3.bias (K,)
"""
from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn

from flaxnets import MODELS
from flaxnets.layers import (Conv2d, Linear, flatten_nchw, max_pool2d, relu, torch_default_bias,
                             torch_default_init)
from netspecs.lenet import VARIANTS, LeNetConfig
from netspecs.registry import register_variants


class LeNet(nn.Module):
    config: LeNetConfig
    num_classes: int = 10
    in_channels: int = 3
    dtype: Any = None

    default_input_size = 32
    # backbone (flaxnets.features): the two convolutions' outputs (the reference applies ReLU
    # and pooling functionally)
    feature_modules: ClassVar = ("conv1", "conv2")
    feature_rule: ClassVar = "all"
    classifier: ClassVar = "fc3"

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.config
        if x.shape[1:] != (cfg.input_size, cfg.input_size, self.in_channels):
            raise ValueError(f"LeNet-5 expects NHWC input (N, {cfg.input_size}, {cfg.input_size}, "
                             f"{self.in_channels}), got {x.shape}")
        k = cfg.kernel_size
        for i, c in enumerate(cfg.conv_channels, start=1):
            x = Conv2d(c, k, padding=0, use_bias=True, dtype=self.dtype,
                       kernel_init=torch_default_init,
                       bias_init=torch_default_bias(x.shape[-1] * k * k), name=f"conv{i}")(x)
            x = max_pool2d(relu(x), 2)
        x = flatten_nchw(x)
        for i, f in enumerate(cfg.fc_features, start=1):
            x = relu(Linear(f, dtype=self.dtype, name=f"fc{i}")(x))
        return Linear(self.num_classes, dtype=self.dtype, name="fc3")(x)


def build(cfg: LeNetConfig, *, num_classes: int = 10, in_channels: int = 3, dtype: Any = None) -> LeNet:
    return LeNet(cfg, num_classes, in_channels, dtype)


register_variants(MODELS, VARIANTS, build)
