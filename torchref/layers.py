"""Shared torch building blocks with torchvision's module layout (and so its state_dict keys).

`spatial_dims` (2 by default, 1 for signals) picks torch's Conv2d/Conv1d, BatchNorm2d/1d,
pools; a 1-D build has the 2-D build's keys, with 1-D shapes (conv weights (O, I/g, k)).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from flaxnets.layers import make_divisible  # noqa: F401  (one definition for both sides)


def _by_rank(spatial_dims: int, classes: dict):
    try:
        return classes[spatial_dims]
    except KeyError:
        raise ValueError(f"spatial_dims must be 1 or 2, got {spatial_dims!r}") from None


def conv_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """nn.Conv1d or nn.Conv2d."""
    return _by_rank(spatial_dims, {1: nn.Conv1d, 2: nn.Conv2d})


def batch_norm_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """nn.BatchNorm1d or nn.BatchNorm2d."""
    return _by_rank(spatial_dims, {1: nn.BatchNorm1d, 2: nn.BatchNorm2d})


def adaptive_avg_pool_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """nn.AdaptiveAvgPool1d or nn.AdaptiveAvgPool2d."""
    return _by_rank(spatial_dims, {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d})


def max_pool_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """nn.MaxPool1d or nn.MaxPool2d."""
    return _by_rank(spatial_dims, {1: nn.MaxPool1d, 2: nn.MaxPool2d})


CONV_TYPES = (nn.Conv1d, nn.Conv2d)  # for the families' init loops
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: Sequential(conv, norm, activation) -> keys 0.*, 1.*.

    `spatial_dims=1`: Conv1d, and the default norm layer becomes BatchNorm1d (a norm_layer
    passed explicitly must already be of that rank, e.g. `partial(batch_norm_nd(1), eps=...)`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: Optional[int] = None, groups: int = 1,
                 norm_layer: Optional[Callable[..., nn.Module]] = nn.BatchNorm2d,
                 activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
                 dilation: int = 1, inplace: Optional[bool] = True, bias: Optional[bool] = None,
                 spatial_dims: int = 2):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        if norm_layer is nn.BatchNorm2d:
            norm_layer = batch_norm_nd(spatial_dims)
        layers: list[nn.Module] = [conv_nd(spatial_dims)(
            in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
            groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation (keys fc1.*, fc2.*); `spatial_dims=1`: Conv1d."""

    def __init__(self, input_channels: int, squeeze_channels: int,
                 activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid, spatial_dims: int = 2):
        super().__init__()
        self.avgpool = adaptive_avg_pool_nd(spatial_dims)(1)
        self.fc1 = conv_nd(spatial_dims)(input_channels, squeeze_channels, 1)
        self.fc2 = conv_nd(spatial_dims)(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * s


def stochastic_depth(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth, mode="row"."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
    noise = noise.bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return x * noise


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        if mode != "row":
            raise ValueError(f"StochasticDepth: only mode='row' is used by torchvision classifiers, got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x):
        return stochastic_depth(x, self.p, self.training)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis after (N, C): torchvision's `x.mean([2, 3])` at any spatial rank."""
    return x.mean(list(range(2, x.ndim)))


class _NormAct:
    """BatchNorm + `drop` (Identity) + `act` in one module, as timm.layers.BatchNormAct2d."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 apply_act: bool = True, act_layer: Callable[..., nn.Module] = nn.ReLU,
                 inplace: bool = True):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = nn.Identity()
        self.act = act_layer(inplace=inplace) if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class BatchNormAct2d(_NormAct, nn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: a BatchNorm2d (keys weight/bias/running_*) with children
    `drop` (Identity) and `act`; the activation is part of the module's output."""


class BatchNormAct1d(_NormAct, nn.BatchNorm1d):
    """BatchNormAct2d's 1-D twin (timm has none): a BatchNorm1d with `drop` and `act`."""


def batch_norm_act_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """BatchNormAct1d or BatchNormAct2d."""
    return _by_rank(spatial_dims, {1: BatchNormAct1d, 2: BatchNormAct2d})
