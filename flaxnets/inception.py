"""Inception-v3 in Flax.

Paper: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
(arXiv:1512.00567); layout from its Table 1 (the modules of its Figures 5, 6 and 7, grid
reductions of Figure 10). Follows torchvision/models/inception.py (module paths
`Conv2d_1a_3x3` ... `Mixed_7c`, `AuxLogits`, `fc`; every BasicConv2d is `conv` + `bn`).
Natural input size 299; the auxiliary head (train mode) needs an input of at least 299.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

import flax.linen as nn
import jax.numpy as jnp

from flaxnets import register
from flaxnets.googlenet import BasicConv2d, transform_inputs, trunc_normal
from flaxnets.layers import Linear, avg_pool2d, max_pool2d, torch_default_init


class _Block(nn.Module):
    """Base: `conv(name, features, kernel, stride, padding)` builds a BasicConv2d."""

    kernel_init: Callable = torch_default_init
    dtype: Any = None

    def conv(self, name, features, kernel=1, stride=1, padding=0):
        return BasicConv2d(features, kernel, stride, padding, kernel_init=self.kernel_init,
                           dtype=self.dtype, name=name)


class InceptionA(_Block):
    """Figure 5 (35x35 grid); like torchvision (and the TF release) it keeps a 5x5 branch too."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        b1 = self.conv("branch1x1", 64)(x, train)
        b5 = self.conv("branch5x5_1", 48)(x, train)
        b5 = self.conv("branch5x5_2", 64, 5, padding=2)(b5, train)
        b3 = self.conv("branch3x3dbl_1", 64)(x, train)
        b3 = self.conv("branch3x3dbl_2", 96, 3, padding=1)(b3, train)
        b3 = self.conv("branch3x3dbl_3", 96, 3, padding=1)(b3, train)
        bp = self.conv("branch_pool", self.pool_features)(avg_pool2d(x, 3, 1, 1), train)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    """Grid reduction 35 -> 17 (Figure 10)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b3 = self.conv("branch3x3", 384, 3, 2)(x, train)
        bd = self.conv("branch3x3dbl_1", 64)(x, train)
        bd = self.conv("branch3x3dbl_2", 96, 3, padding=1)(bd, train)
        bd = self.conv("branch3x3dbl_3", 96, 3, 2)(bd, train)
        return jnp.concatenate([b3, bd, max_pool2d(x, 3, 2)], axis=-1)


class InceptionC(_Block):
    """Figure 6 (17x17 grid, factorised 7x7)."""

    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        c7 = self.channels_7x7
        b1 = self.conv("branch1x1", 192)(x, train)
        b7 = self.conv("branch7x7_1", c7)(x, train)
        b7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7, train)
        b7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7, train)
        bd = self.conv("branch7x7dbl_1", c7)(x, train)
        bd = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd, train)
        bd = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd, train)
        bd = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd, train)
        bd = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd, train)
        bp = self.conv("branch_pool", 192)(avg_pool2d(x, 3, 1, 1), train)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    """Grid reduction 17 -> 8."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b3 = self.conv("branch3x3_1", 192)(x, train)
        b3 = self.conv("branch3x3_2", 320, 3, 2)(b3, train)
        b7 = self.conv("branch7x7x3_1", 192)(x, train)
        b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7, train)
        b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7, train)
        b7 = self.conv("branch7x7x3_4", 192, 3, 2)(b7, train)
        return jnp.concatenate([b3, b7, max_pool2d(x, 3, 2)], axis=-1)


class InceptionE(_Block):
    """Figure 7 (8x8 grid, expanded filter bank)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b1 = self.conv("branch1x1", 320)(x, train)
        b3 = self.conv("branch3x3_1", 384)(x, train)
        b3a = self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3, train)
        b3b = self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3, train)
        bd = self.conv("branch3x3dbl_1", 448)(x, train)
        bd = self.conv("branch3x3dbl_2", 384, 3, padding=1)(bd, train)
        bda = self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd, train)
        bdb = self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd, train)
        bp = self.conv("branch_pool", 192)(avg_pool2d(x, 3, 1, 1), train)
        return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], axis=-1)


class InceptionAux(_Block):
    num_classes: int = 1000
    fc_init: Callable = torch_default_init

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = self.conv("conv0", 128)(avg_pool2d(x, 5, 3), train)
        x = self.conv("conv1", 768, 5)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return Linear(self.num_classes, kernel_init=self.fc_init, dtype=self.dtype, name="fc")(x)


# Table 1 of the paper: (module, Inception{A..E}, knobs); 299x299 input -> 35, 17, 8 grids.
from netspecs.inception import MIXED

BLOCKS = {"A": InceptionA, "B": InceptionB, "C": InceptionC, "D": InceptionD, "E": InceptionE}


class Inception3(nn.Module):
    """Eval: logits. Train with aux_logits: (logits, aux_logits), torchvision's InceptionOutputs."""

    # backbone (flaxnets.features): the last Conv2d_* / Mixed_* block at each resolution
    # (Conv2d_2b_3x3, Conv2d_4a_3x3, Mixed_5d, Mixed_6e, Mixed_7c: timm's choice too)
    feature_modules: ClassVar = ("Conv2d_*", "Mixed_*")
    classifier: ClassVar = "fc"

    num_classes: int = 1000
    aux_logits: bool = True
    transform_input: bool = False
    init_weights: Optional[bool] = None  # None: True, as torchvision
    dropout: float = 0.5
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        trunc = self.init_weights in (None, True)
        # torchvision's init: std 0.1 everywhere but AuxLogits.fc (0.001); its
        # `AuxLogits.conv1.stddev = 0.01` sits on the BasicConv2d, so it is never used.
        init = trunc_normal(0.1) if trunc else torch_default_init
        kw = dict(kernel_init=init, dtype=self.dtype)
        if self.transform_input:
            x = transform_inputs(x)

        def conv(name, features, kernel, padding=0, stride=1):
            return BasicConv2d(features, kernel, stride, padding, name=name, **kw)

        x = conv("Conv2d_1a_3x3", 32, 3, stride=2)(x, train)
        x = conv("Conv2d_2a_3x3", 32, 3)(x, train)
        x = conv("Conv2d_2b_3x3", 64, 3, padding=1)(x, train)
        x = max_pool2d(x, 3, 2)
        x = conv("Conv2d_3b_1x1", 80, 1)(x, train)
        x = conv("Conv2d_4a_3x3", 192, 3)(x, train)
        x = max_pool2d(x, 3, 2)
        aux = None
        for name, kind, knobs in MIXED:
            x = BLOCKS[kind](name=name, **knobs, **kw)(x, train)
            if name == "Mixed_6e" and self.aux_logits and (train or self.is_initializing()):
                head = InceptionAux(num_classes=self.num_classes, name="AuxLogits",
                                    fc_init=trunc_normal(0.001) if trunc else torch_default_init,
                                    **kw)
                # Eval-mode init creates the head's variables on a 17x17 map (the head needs
                # one at least that large; eval never runs it, at any input size).
                aux = head(x if train else jnp.zeros((1, 17, 17, x.shape[-1]), x.dtype), train)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = Linear(self.num_classes, name="fc", **kw)(x)
        if train and self.aux_logits:
            return x, aux
        return x


@register("inception_v3")
def inception_v3(*, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, init_weights: Optional[bool] = None,
                 dropout: float = 0.5, dtype: Any = None) -> Inception3:
    return Inception3(num_classes, aux_logits, transform_input, init_weights, dropout, dtype)
