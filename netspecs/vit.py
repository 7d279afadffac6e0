"""Vision Transformer configurations (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", https://arxiv.org/abs/2010.11929).

Layers, hidden size D, MLP size and heads are the paper's Table 1 (ViT-Base, -Large, -Huge);
the patch size is the name's suffix (/16, /32, /14), as in torchvision's
`torchvision/models/vision_transformer.py` builders.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    patch_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int


# Table 1: Base (12 layers, D=768, MLP 3072, 12 heads), Large (24, 1024, 4096, 16),
# Huge (32, 1280, 5120, 16).
VARIANTS: dict[str, ViTConfig] = {
    "vit_b_16": ViTConfig(patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit_b_32": ViTConfig(patch_size=32, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
    "vit_l_16": ViTConfig(patch_size=16, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096),
    "vit_l_32": ViTConfig(patch_size=32, num_layers=24, num_heads=16, hidden_dim=1024, mlp_dim=4096),
    "vit_h_14": ViTConfig(patch_size=14, num_layers=32, num_heads=16, hidden_dim=1280, mlp_dim=5120),
}
