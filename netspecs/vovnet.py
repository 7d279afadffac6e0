"""VoVNet V1 / V2 architecture tables (timm's variants).

Papers: Lee et al. 2019, "An Energy and GPU-Computation Efficient Backbone Network for
Real-Time Object Detection" (arXiv:1904.09730; VoVNet-V1: One-Shot Aggregation (OSA) modules,
its architecture table gives VoVNet-39 and VoVNet-57) and Lee & Park 2020, "CenterMask:
Real-Time Anchor-Free Instance Segmentation" (arXiv:1911.06667, Sec. 3.2 VoVNetV2: an
identity residual around every OSA module but a stage's first, and an effective
squeeze-excitation (eSE, one 1x1 conv + hard sigmoid) after a stage's last module). The
19-layer (3 convs per module) and 99-layer depths, and the depthwise "dw" variant, are the
authors' vovnet-detectron2 configs as timm copies them (timm/models/vovnet.py `model_cfgs`).

    stem    3x3/2 conv -> 3x3 conv -> 3x3/2 conv (stem_chs; the last two depthwise-separable
            in the dw variant)
    stage i (i > 0: 3x3/2 max pool, ceil_mode) block_per_stage[i] OSA modules, each
            layer_per_block 3x3 convs of stage_conv_chs[i] channels whose outputs, together
            with the module's input, are concatenated and reduced by a 1x1 conv to
            stage_out_chs[i] channels
    head    global average pool, dropout, linear
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class VoVNetConfig:
    stem_chs: tuple[int, int, int]
    stage_conv_chs: tuple[int, int, int, int]   # the 3x3 convs of each OSA module
    stage_out_chs: tuple[int, int, int, int]    # the 1x1 aggregation conv
    layer_per_block: int                        # 3x3 convs per OSA module
    block_per_stage: tuple[int, int, int, int]  # OSA modules per stage
    residual: bool   # V2: identity shortcut around every module but a stage's first
    depthwise: bool  # 1x1 reduction to stage_conv_chs + depthwise-separable 3x3 convs
    ese: bool        # V2: effective SE after each stage's last module

    def stage_in_chs(self) -> tuple[int, ...]:
        return (self.stem_chs[-1],) + self.stage_out_chs[:-1]


_V1 = dict(stem_chs=(64, 64, 128), stage_conv_chs=(128, 160, 192, 224),
           stage_out_chs=(256, 512, 768, 1024), residual=False, depthwise=False, ese=False)
_V2 = dict(_V1, residual=True, ese=True)

VARIANTS: dict[str, VoVNetConfig] = {
    # Lee et al. 2019, VoVNet-39 / VoVNet-57 (5 convs per OSA module).
    "vovnet39a": VoVNetConfig(layer_per_block=5, block_per_stage=(1, 1, 2, 2), **_V1),
    "vovnet57a": VoVNetConfig(layer_per_block=5, block_per_stage=(1, 1, 4, 3), **_V1),
    # CenterMask's VoVNetV2-19 with depthwise-separable convs ("V-19-dw"): 64-channel stem.
    "ese_vovnet19b_dw": VoVNetConfig(layer_per_block=3, block_per_stage=(1, 1, 1, 1),
                                     **dict(_V2, stem_chs=(64, 64, 64), depthwise=True)),
    # CenterMask's VoVNetV2-39 / -57 / -99.
    "ese_vovnet39b": VoVNetConfig(layer_per_block=5, block_per_stage=(1, 1, 2, 2), **_V2),
    "ese_vovnet57b": VoVNetConfig(layer_per_block=5, block_per_stage=(1, 1, 4, 3), **_V2),
    "ese_vovnet99b": VoVNetConfig(layer_per_block=5, block_per_stage=(1, 3, 9, 3), **_V2),
}


def linspace_f32(stop: float, num: int) -> list[float]:
    """torch.linspace(0, stop, num) (float32) as Python floats, by ATen's scalar rule: the first
    half counts up from 0, the second half down from `stop`. ATen's vectorised CPU kernel takes
    the first SIMD-width elements from the start even past halfway, so torch can differ in the
    last float32 bit for num > 8 (a drop-path probability, 6e-9 at most for rate <= 0.5)."""
    if num == 1:
        return [0.0]
    start, end = np.float32(0), np.float32(stop)
    step = np.float32((end - start) / np.float32(num - 1))
    half = num // 2
    return [float(start + step * np.float32(i)) if i < half
            else float(end - step * np.float32(num - 1 - i)) for i in range(num)]


def drop_path_rates(config: VoVNetConfig, drop_path_rate: float) -> tuple[tuple[float, ...], ...]:
    """timm's calculate_drop_path_rates(rate, block_per_stage, stagewise=True): one rate per
    OSA module rising linearly from 0 over the whole network, split by stage."""
    rates = linspace_f32(drop_path_rate, sum(config.block_per_stage))
    out, i = [], 0
    for n in config.block_per_stage:
        out.append(tuple(rates[i:i + n]))
        i += n
    return tuple(out)
