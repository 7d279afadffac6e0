"""Swin Transformer V1 / V2 architecture table and the window geometry both implementations use.

Papers: Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows",
ICCV 2021 (arXiv:2103.14030), Sec. 3.3 "Architecture Variants" and Table 1 (Swin-T/S/B);
Liu et al., "Swin Transformer V2: Scaling Up Capacity and Resolution", CVPR 2022
(arXiv:2111.09883), Sec. 3 (post-norm, scaled cosine attention, log-spaced continuous position
bias) and Sec. 4.1 / Appendix (SwinV2-T/S/B share V1's C and depths). Numbers as in
torchvision/models/swin_transformer.py (`swin_t` ... `swin_v2_b`).

The numpy functions reproduce torchvision's buffers and attention mask exactly (the converter
checks `relative_position_index` / `relative_coords_table` of a checkpoint against them).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SwinConfig:
    patch_size: tuple[int, int]
    embed_dim: int                 # C of stage 1; stage i has C * 2**i channels
    depths: tuple[int, ...]        # blocks per stage
    num_heads: tuple[int, ...]     # heads per stage (head dim 32 throughout)
    window_size: tuple[int, int]   # M
    stochastic_depth_prob: float   # torchvision's default drop-path rate (linear over blocks)
    version: int = 1               # 1: pre-norm, PatchMerging; 2: post-norm, cosine attention, cpb_mlp
    mlp_ratio: float = 4.0

    def block_drop_probs(self, stochastic_depth_prob: float) -> list[list[float]]:
        """Per-stage, per-block drop-path rates: p * block_id / (total_blocks - 1)."""
        total, out, i = sum(self.depths), [], 0
        for d in self.depths:
            out.append([stochastic_depth_prob * float(i + j) / (total - 1) for j in range(d)])
            i += d
        return out

    def shift_size(self, i_layer: int) -> tuple[int, int]:
        """Even blocks: regular windows; odd blocks: shifted by half a window."""
        return (0, 0) if i_layer % 2 == 0 else (self.window_size[0] // 2, self.window_size[1] // 2)


VARIANTS: dict[str, SwinConfig] = {
    # Swin V1, paper Sec. 3.3: Swin-T C=96 {2,2,6,2}; Swin-S C=96 {2,2,18,2}; Swin-B C=128
    # {2,2,18,2}; window M=7, head dim 32, MLP ratio 4; drop path 0.2/0.3/0.5 (Appendix A2.1).
    "swin_t": SwinConfig((4, 4), 96, (2, 2, 6, 2), (3, 6, 12, 24), (7, 7), 0.2),
    "swin_s": SwinConfig((4, 4), 96, (2, 2, 18, 2), (3, 6, 12, 24), (7, 7), 0.3),
    "swin_b": SwinConfig((4, 4), 128, (2, 2, 18, 2), (4, 8, 16, 32), (7, 7), 0.5),
    # Swin V2, same C / depths / heads as V1 (V2 paper: SwinV2-T/S/B keep V1's configurations);
    # window 8, as the V2 paper's ImageNet-1K models at 256x256 and torchvision's weights.
    "swin_v2_t": SwinConfig((4, 4), 96, (2, 2, 6, 2), (3, 6, 12, 24), (8, 8), 0.2, version=2),
    "swin_v2_s": SwinConfig((4, 4), 96, (2, 2, 18, 2), (3, 6, 12, 24), (8, 8), 0.3, version=2),
    "swin_v2_b": SwinConfig((4, 4), 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 8), 0.5, version=2),
}


def relative_position_index(window_size) -> np.ndarray:
    """torchvision's `relative_position_index` buffer: int64 (Wh*Ww*Wh*Ww,), row-major (q, k)."""
    wh, ww = window_size
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    rel = rel + np.array([wh - 1, ww - 1])
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1).reshape(-1).astype(np.int64)


def relative_coords_table(window_size) -> np.ndarray:
    """torchvision V2's `relative_coords_table` buffer: float32 (1, 2Wh-1, 2Ww-1, 2), the
    log-spaced coordinates sign(x) * log2(|x| + 1) / 3 of x in [-8, 8] (float32 arithmetic,
    bit-equal to torch's)."""
    wh, ww = window_size
    f32 = np.float32
    h = np.arange(-(wh - 1), wh, dtype=f32)
    w = np.arange(-(ww - 1), ww, dtype=f32)
    t = np.stack(np.meshgrid(h, w, indexing="ij"), -1)[None].astype(f32)
    t[..., 0] /= f32(wh - 1)
    t[..., 1] /= f32(ww - 1)
    t *= f32(8)
    return (np.sign(t) * np.log2(np.abs(t) + f32(1.0)) / f32(3.0)).astype(f32)


def effective_shift(padded_hw, window_size, shift_size) -> tuple[int, int]:
    """torchvision's rule: no shift along an axis where one window covers the (padded) map."""
    return tuple(0 if w >= p else s for p, w, s in zip(padded_hw, window_size, shift_size))


def attention_mask(padded_hw, window_size, shift_size) -> np.ndarray:
    """torchvision's shifted-window mask, (num_windows, N, N) of 0 / -100, for a padded map
    (built with the same slices as torchvision, including their behaviour at shift 0)."""
    ph, pw = padded_hw
    wh, ww = window_size
    sh, sw = shift_size
    mask = np.zeros((ph, pw))
    count = 0
    for h in ((0, -wh), (-wh, -sh), (-sh, None)):
        for w in ((0, -ww), (-ww, -sw), (-sw, None)):
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    mask = mask.reshape(ph // wh, wh, pw // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
    diff = mask[:, None, :] - mask[:, :, None]
    return np.where(diff != 0, -100.0, 0.0)
