"""MaxViT configuration (Tu et al., "MaxViT: Multi-Axis Vision Transformer", ECCV 2022,
arXiv:2204.01697), as torchvision/models/maxvit.py builds it.

Pure Python and numpy: the block input sizes, the stochastic-depth schedule and the
relative position index buffers are derived here for both `flaxnets` and `torchref`.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaxVitConfig:
    stem_channels: int
    block_channels: tuple[int, ...]
    block_layers: tuple[int, ...]
    head_dim: int
    stochastic_depth_prob: float
    partition_size: int = 7
    squeeze_ratio: float = 0.25
    expansion_ratio: float = 4
    mlp_ratio: int = 4
    bn_eps: float = 1e-3        # torchvision: partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
    bn_momentum: float = 0.01
    ln_eps: float = 1e-5        # nn.LayerNorm's default (attention, MLP and classifier norms)


# Paper Table 1 (MaxViT-T: channels 64/128/256/512, blocks 2/2/5/2, stem 64, head dim 32,
# 7x7 partitions); stochastic depth 0.2 as torchvision's maxvit_t.
VARIANTS: dict[str, MaxVitConfig] = {
    "maxvit_t": MaxVitConfig(stem_channels=64, block_channels=(64, 128, 256, 512),
                             block_layers=(2, 2, 5, 2), head_dim=32, stochastic_depth_prob=0.2),
}


def with_knobs(config: MaxVitConfig, **knobs) -> MaxVitConfig:
    """`config` with the builder knobs that are not None (stochastic_depth_prob, partition_size,
    squeeze_ratio, expansion_ratio, mlp_ratio) replaced."""
    return dataclasses.replace(config, **{k: v for k, v in knobs.items() if v is not None})


def conv_output_shape(size: tuple[int, int], kernel_size: int = 3, stride: int = 2,
                      padding: int = 1) -> tuple[int, int]:
    """torchvision's _get_conv_output_shape."""
    return ((size[0] - kernel_size + 2 * padding) // stride + 1,
            (size[1] - kernel_size + 2 * padding) // stride + 1)


def block_grid_sizes(input_size: tuple[int, int], n_blocks: int) -> list[tuple[int, int]]:
    """The feature-map size inside each block (after its first, strided layer)."""
    shapes, s = [], conv_output_shape(input_size)  # stem stride
    for _ in range(n_blocks):
        s = conv_output_shape(s)
        shapes.append(s)
    return shapes


def check_input_size(input_size: tuple[int, int], partition_size: int, n_blocks: int) -> None:
    """torchvision's MaxVit.__init__ check, plus the square-partition condition its grid
    attention needs at run time (the relative position bias is partition_size**2 long)."""
    shapes = block_grid_sizes(input_size, n_blocks)
    for idx, (h, w) in enumerate(shapes):
        if h % partition_size or w % partition_size:
            raise ValueError(
                f"Input size {(h, w)} of block {idx} is not divisible by partition size "
                f"{partition_size}. Consider changing the partition size or the input size.\n"
                f"Current configuration yields the following block input sizes: {shapes}.")
        if w % (h // partition_size):
            raise ValueError(
                f"input_size {tuple(input_size)}: block {idx}'s grid attention splits its {h}x{w} "
                f"map into {h // partition_size}x{h // partition_size} cells (height / "
                f"partition_size), which does not divide the width {w}")
        if (h // (h // partition_size)) * (w // (h // partition_size)) != partition_size ** 2:
            raise ValueError(
                f"input_size {tuple(input_size)}: block {idx}'s {h}x{w} map gives grid-attention "
                f"sequences of {(h // (h // partition_size)) * (w // (h // partition_size))} tokens,"
                f" not partition_size**2 = {partition_size ** 2} (torchvision fails there too)")


def stochastic_depth_probs(config: MaxVitConfig, stochastic_depth_prob: float) -> list[list[float]]:
    """Per-block lists of per-layer probabilities: np.linspace(0, p, total layers), as torchvision."""
    flat = np.linspace(0, stochastic_depth_prob, sum(config.block_layers)).tolist()
    out, i = [], 0
    for n in config.block_layers:
        out.append(flat[i:i + n])
        i += n
    return out


def relative_position_index(height: int, width: int) -> np.ndarray:
    """torchvision's _get_relative_position_index: (h*w, h*w) int64."""
    coords = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"))
    flat = coords.reshape(2, -1)
    rel = (flat[:, :, None] - flat[:, None, :]).transpose(1, 2, 0).copy()
    rel[:, :, 0] += height - 1
    rel[:, :, 1] += width - 1
    rel[:, :, 0] *= 2 * width - 1
    return rel.sum(-1).astype(np.int64)
