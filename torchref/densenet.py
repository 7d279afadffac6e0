"""DenseNet-BC reference in PyTorch, state_dict-identical to torchvision/models/densenet.py.

Paper: Huang et al., "Densely Connected Convolutional Networks", CVPR 2017. Variants come
from `flaxnets.densenet.VARIANTS` (the paper's Table 1).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from netspecs.densenet import VARIANTS, DenseNetConfig
from torchref import MODELS
from netspecs.registry import register_variants


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int,
                 drop_rate: float, memory_efficient: bool = False):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1,
                               bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(inputs, 1))))

    def forward(self, prev_features):
        if isinstance(prev_features, torch.Tensor):
            prev_features = [prev_features]
        if self.memory_efficient and any(t.requires_grad for t in prev_features):
            out = cp.checkpoint(lambda *xs: self.bn_function(xs), *prev_features,
                                use_reentrant=False)
        else:
            out = self.bn_function(prev_features)
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float, memory_efficient: bool = False):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(
                num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate,
                memory_efficient))

    def forward(self, init_features):
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, cfg: DenseNetConfig, drop_rate: float = 0, num_classes: int = 1000,
                 memory_efficient: bool = False):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, cfg.num_init_features, kernel_size=7, stride=2, padding=3,
                                bias=False)),
            ("norm0", nn.BatchNorm2d(cfg.num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        width = cfg.num_init_features
        for i, num_layers in enumerate(cfg.block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(
                num_layers, width, cfg.bn_size, cfg.growth_rate, drop_rate, memory_efficient))
            width += num_layers * cfg.growth_rate
            if i != len(cfg.block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(width, width // 2))
                width //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(width))
        self.classifier = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(F.relu(self.features(x), inplace=True), (1, 1))
        return self.classifier(torch.flatten(out, 1))


def build(cfg: DenseNetConfig, *, num_classes: int = 1000, drop_rate: float = 0.0, bn_size: int = 4,
          memory_efficient: bool = False) -> DenseNet:
    return DenseNet(dataclasses.replace(cfg, bn_size=bn_size), drop_rate, num_classes,
                    memory_efficient)


register_variants(MODELS, VARIANTS, build)
