"""Shared torch building blocks with torchvision's (and timm's) module layout, so its state_dict keys.

`spatial_dims` (2 by default, 1 for signals) picks torch's Conv2d/Conv1d, BatchNorm2d/1d,
pools; a 1-D build has the 2-D build's keys, with 1-D shapes (conv weights (O, I/g, k)).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from netspecs.common import make_divisible, timm_padding  # noqa: F401  (one definition for both sides)


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
                 act_layer: Optional[Callable[..., nn.Module]] = nn.ReLU, apply_act: bool = True,
                 inplace: bool = True):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = nn.Identity()
        self.act = (act_layer(inplace=inplace) if apply_act and act_layer is not None
                    else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class ConvNormAct(nn.Module):
    """timm.layers.ConvNormAct (BatchNormAct2d norm, no anti-aliasing): keys conv.*, bn.*.
    Padding is timm's `padding=''` rule (`timm_padding`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 dilation: int = 1, groups: int = 1, apply_act: bool = True,
                 act_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              timm_padding(kernel_size, stride, dilation), dilation=dilation,
                              groups=groups, bias=False)
        self.bn = BatchNormAct2d(out_channels, eps, momentum, act_layer, apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SEModule(nn.Module):
    """timm.layers.SEModule (no BN, no max pool): keys fc1.*, fc2.*; gate sigmoid."""

    def __init__(self, channels: int, rd_channels: int,
                 act_layer: Callable[..., nn.Module] = nn.ReLU):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=True)
        self.bn = nn.Identity()
        self.act = act_layer()
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_se = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * self.gate(x_se)


class DropPath(nn.Module):
    """timm.layers.DropPath (scale_by_keep): per-sample drop, same as stochastic_depth "row"."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.drop_prob, self.training)


class SelectAdaptivePool2d(nn.Module):
    """timm.layers.SelectAdaptivePool2d(pool_type='avg', flatten=True): children pool, flatten
    (`spatial_dims=1`: AdaptiveAvgPool1d, no state either way)."""

    def __init__(self, spatial_dims: int = 2):
        super().__init__()
        self.pool_type = "avg"
        self.pool = adaptive_avg_pool_nd(spatial_dims)(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


class ClassifierHead(nn.Module):
    """timm.layers.ClassifierHead(pool_type='avg'): global_pool, drop, fc (Linear), flatten."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.global_pool = SelectAdaptivePool2d()
        self.num_features = in_features
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.flatten = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.fc(self.drop(self.global_pool(x))))


class MLP(nn.Sequential):
    """torchvision.ops.MLP: (Linear, [norm], activation, Dropout) per hidden width, then the last
    Linear and Dropout, as one Sequential (ViT's MLPBlock keys mlp.0 / mlp.3, Swin's MLP)."""

    def __init__(self, in_channels: int, hidden_channels: list[int],
                 norm_layer: Optional[Callable[..., nn.Module]] = None,
                 activation_layer: Optional[Callable[..., nn.Module]] = nn.ReLU,
                 inplace: Optional[bool] = None, bias: bool = True, dropout: float = 0.0):
        params = {} if inplace is None else {"inplace": inplace}
        layers: list[nn.Module] = []
        in_dim = in_channels
        for hidden_dim in hidden_channels[:-1]:
            layers.append(nn.Linear(in_dim, hidden_dim, bias=bias))
            if norm_layer is not None:
                layers.append(norm_layer(hidden_dim))
            layers.append(activation_layer(**params))
            layers.append(nn.Dropout(dropout, **params))
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, hidden_channels[-1], bias=bias))
        layers.append(nn.Dropout(dropout, **params))
        super().__init__(*layers)


class SeparableConvNormAct(nn.Module):
    """timm.layers.SeparableConvNormAct: `conv_dw` (depthwise), `conv_pw` (1x1), `bn`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, act_layer: Optional[Callable[..., nn.Module]] = nn.ReLU):
        super().__init__()
        self.conv_dw = nn.Conv2d(in_channels, in_channels, kernel_size, stride,
                                 timm_padding(kernel_size, stride, dilation), dilation,
                                 groups=in_channels, bias=False)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = BatchNormAct2d(out_channels, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv_pw(self.conv_dw(x)))


class BatchNormAct2d(_NormAct, nn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: a BatchNorm2d (keys weight/bias/running_*) with children
    `drop` (Identity) and `act`; the activation is part of the module's output."""


class BatchNormAct1d(_NormAct, nn.BatchNorm1d):
    """BatchNormAct2d's 1-D twin (timm has none): a BatchNorm1d with `drop` and `act`."""


def batch_norm_act_nd(spatial_dims: int = 2) -> type[nn.Module]:
    """BatchNormAct1d or BatchNormAct2d."""
    return _by_rank(spatial_dims, {1: BatchNormAct1d, 2: BatchNormAct2d})


def init_mobile_(model: nn.Module, linear: str = "normal") -> None:
    """torchvision's init loop of MobileNetV1-V3 and EfficientNet, in place, in module order:
    convolutions kaiming_normal_(mode="fan_out") with zero bias, BatchNorm weight 1 and bias 0,
    Linear weights normal(0, 0.01) (`linear="normal"`) or U(-1/sqrt(out), 1/sqrt(out))
    (`linear="uniform"`, EfficientNet) with zero bias."""
    for m in model.modules():
        if isinstance(m, CONV_TYPES):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, BN_TYPES):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear == "uniform":
                r = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -r, r)
            else:
                nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def init_goog_(model: nn.Module) -> None:
    """timm's `_init_weight_goog` (its EfficientNet-builder models: MnasNet-A1, MobileNetV1), in
    place, in module order: conv normal(0, sqrt(2 / fan_out)) with fan_out = k.. * out / groups
    and zero bias, BatchNorm weight 1 and bias 0, Linear U(-1/sqrt(out), 1/sqrt(out)), zero bias."""
    for m in model.modules():
        if isinstance(m, CONV_TYPES):
            fan_out = math.prod(m.kernel_size) * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, BN_TYPES):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            r = 1.0 / math.sqrt(m.weight.size(0))
            nn.init.uniform_(m.weight, -r, r)
            nn.init.zeros_(m.bias)
