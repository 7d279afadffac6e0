"""The one 2-D convolution every flaxnets model goes through, with per-shape fast paths.

`conv2d` is numerically the convolution `lax.conv_general_dilated` computes (NHWC input,
HWIO kernel, torch's explicit symmetric padding). XLA:CPU is slow at grouped and depthwise
convolutions (its depthwise filter gradient becomes a dense C x C convolution), so:

- ``grouped``: a grouped convolution as one dense convolution per group on channel slices;
- ``depthwise``: a depthwise convolution as k*k shifted, strided slices times a per-channel
  weight, summed.

`FLAXNETS_CONV_IMPL` selects the implementation: ``auto`` (default: the fast paths on CPU,
XLA's own grouped convolution elsewhere), ``plain`` (always `lax.conv_general_dilated`, for
comparison) or ``fast`` (the fast paths on every backend).
"""
from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "plain", "fast")
_DIMS = ("NHWC", "HWIO", "NHWC")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def conv_impl() -> str:
    impl = os.environ.get("FLAXNETS_CONV_IMPL", "auto")
    if impl not in IMPLS:
        raise ValueError(f"FLAXNETS_CONV_IMPL={impl!r}: expected one of {', '.join(IMPLS)}")
    return impl


def _use_fast_paths(impl: str) -> bool:
    if impl == "plain":
        return False
    if impl == "fast":
        return True
    return jax.default_backend() == "cpu"


def plain_conv2d(x, w, stride, padding, dilation, groups, precision=None):
    return lax.conv_general_dilated(
        x, w, window_strides=stride, padding=padding, rhs_dilation=dilation,
        dimension_numbers=_DIMS, feature_group_count=groups, precision=precision)


def depthwise_conv2d(x, w, stride, padding, dilation):
    """Depthwise (groups == in_channels == out_channels) convolution as shifted slices."""
    kh, kw, _, c = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    n, hp, wp, _ = x.shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            patch = lax.slice(
                x, (0, i * dh, j * dw, 0),
                (n, i * dh + sh * (ho - 1) + 1, j * dw + sw * (wo - 1) + 1, c),
                (1, sh, sw, 1))
            term = patch * w[i, j, 0]
            out = term if out is None else out + term
    return out


def grouped_conv2d(x, w, stride, padding, dilation, groups, precision=None):
    """Grouped convolution as one dense convolution per group, concatenated."""
    cin_g, cout = w.shape[2], w.shape[3]
    cout_g = cout // groups
    outs = [
        plain_conv2d(x[..., g * cin_g:(g + 1) * cin_g], w[..., g * cout_g:(g + 1) * cout_g],
                     stride, padding, dilation, 1, precision)
        for g in range(groups)
    ]
    return jnp.concatenate(outs, axis=-1)


def conv2d(x, w, stride=1, padding=0, dilation=1, groups: int = 1,
           impl: str | None = None, precision=None):
    """2-D convolution, NHWC x HWIO -> NHWC, with explicit symmetric (or per-side) padding.

    `padding` is an int, a (ph, pw) pair, or ((top, bottom), (left, right)).
    """
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    else:
        padding = tuple(_pair(p) if not isinstance(p, int) else (p, p) for p in padding)
    cin = x.shape[-1]
    if w.shape[2] * groups != cin or w.shape[3] % groups:
        raise ValueError(
            f"conv2d: input has {cin} channels, kernel {tuple(w.shape)} with groups={groups}")
    impl = impl or conv_impl()
    if groups > 1 and _use_fast_paths(impl):
        if groups == cin and w.shape[3] == cin:
            return depthwise_conv2d(x, w, stride, padding, dilation)
        return grouped_conv2d(x, w, stride, padding, dilation, groups, precision)
    return plain_conv2d(x, w, stride, padding, dilation, groups, precision)
