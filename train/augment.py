"""torchvision's training augmentations in PIL + numpy: AutoAugment, RandAugment, TrivialAugmentWide,
AugMix, RandomErasing, MixUp and CutMix, each split into an op of explicit parameters and a sampler.

Follows torchvision 0.28 ``transforms/v2/_auto_augment.py`` and ``_augment.py`` as
``references/classification/presets.py`` (``ClassificationPresetTrain``, backend "pil") applies them:
RandomResizedCrop -> RandomHorizontalFlip -> auto-augment policy on the PIL image -> PILToTensor ->
ToDtype(float, scale) -> Normalize -> RandomErasing; MixUp/CutMix on the batch (``RandomChoice``
between them when both are set, ``references/classification/transforms.py``).

* ``apply_op(img, op, magnitude, interpolation, fill)``: one op on a PIL image, as torchvision's
  ``_apply_image_or_video_transform`` does it with its PIL kernels (``F.affine`` / ``F.rotate`` ->
  ``Image.transform`` / ``Image.rotate``; ``ImageEnhance``; ``ImageOps``), so the result is PIL's
  own, pixel for pixel.
* ``apply_op_tensor(x, op, magnitude, interpolation, fill)``: the same op with torchvision's
  *tensor* kernels on an HWC uint8 array. AugMix needs these: its ``forward`` turns a PIL image into
  a tensor before augmenting. float32 arithmetic in torch's order; where torch's CPU kernels use a
  fused multiply-add (``add_(x, alpha=...)``, ``linspace``) the product is formed exactly in long
  double and rounded once.
* ``sample_*(rng, ...)``: the random draws of each policy with torchvision's distributions, from a
  ``numpy.random.Generator`` (op uniform over the policy's space, magnitude bin, sign ``rand <= 0.5``
  negative, application ``rand <= p``); they return plain data (lists of ``(op, magnitude)``).
* ``random_erasing_box`` / ``erase``, ``mixup_cutmix_params`` / ``mix_batch``: the same split.

Magnitude tables are torch's float32 ``linspace`` values (reproduced exactly, see ``linspace``).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

_LD = np.longdouble  # x86-64: 64-bit mantissa, enough for an exact float32 product plus a float32 addend

# torchvision.transforms.functional.pil_modes_mapping
PIL_FILTERS = {"nearest": 0, "nearest-exact": 0, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5, "lanczos": 1}
POLICIES = ("imagenet", "ra", "ta_wide", "augmix")
# Image.transform / Image.rotate take only these filters; torch's grid_sample only nearest/bilinear.
PIL_AFFINE_INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic")
TENSOR_INTERPOLATIONS = ("nearest", "bilinear")


def linspace(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps) in float32, bit for bit (CPU kernel: first half from start,
    second half from end, each a fused multiply-add)."""
    s, e = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([s], np.float32)
    step = (e - s) / np.float32(steps - 1)
    i = np.arange(steps)
    lo = (_LD(s) + _LD(step) * i.astype(_LD)).astype(np.float32)
    hi = (_LD(e) - _LD(step) * (steps - i - 1).astype(_LD)).astype(np.float32)
    return np.where(i < steps // 2, lo, hi).astype(np.float32)


def _posterize_bins(top: int, num_bins: int, div: float) -> np.ndarray:
    # (top - (torch.arange(num_bins) / ((num_bins - 1) / div))).round().int()
    x = np.float32(top) - np.arange(num_bins, dtype=np.float32) / np.float32((num_bins - 1) / div)
    return np.rint(x).astype(np.int64)


def _signed(fn):
    return fn, True


def _unsigned(fn):
    return fn, False


_NONE = _unsigned(lambda n, h, w: None)

# op -> (magnitudes(num_bins, height, width) or None, signed); dict order = torchvision's (op draws index it)
AUTOAUGMENT_SPACE = {
    "ShearX": _signed(lambda n, h, w: linspace(0.0, 0.3, n)),
    "ShearY": _signed(lambda n, h, w: linspace(0.0, 0.3, n)),
    "TranslateX": _signed(lambda n, h, w: linspace(0.0, 150.0 / 331.0 * w, n)),
    "TranslateY": _signed(lambda n, h, w: linspace(0.0, 150.0 / 331.0 * h, n)),
    "Rotate": _signed(lambda n, h, w: linspace(0.0, 30.0, n)),
    "Brightness": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Color": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Contrast": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Sharpness": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Posterize": _unsigned(lambda n, h, w: _posterize_bins(8, n, 4)),
    "Solarize": _unsigned(lambda n, h, w: linspace(1.0, 0.0, n)),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
    "Invert": _NONE,
}
RANDAUGMENT_SPACE = {"Identity": _NONE, **{k: v for k, v in AUTOAUGMENT_SPACE.items() if k != "Invert"}}
TRIVIALAUGMENT_SPACE = {
    "Identity": _NONE,
    "ShearX": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "ShearY": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "TranslateX": _signed(lambda n, h, w: linspace(0.0, 32.0, n)),
    "TranslateY": _signed(lambda n, h, w: linspace(0.0, 32.0, n)),
    "Rotate": _signed(lambda n, h, w: linspace(0.0, 135.0, n)),
    "Brightness": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "Color": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "Contrast": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "Sharpness": _signed(lambda n, h, w: linspace(0.0, 0.99, n)),
    "Posterize": _unsigned(lambda n, h, w: _posterize_bins(8, n, 6)),
    "Solarize": _unsigned(lambda n, h, w: linspace(1.0, 0.0, n)),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
}
AUGMIX_PARTIAL_SPACE = {
    "ShearX": _signed(lambda n, h, w: linspace(0.0, 0.3, n)),
    "ShearY": _signed(lambda n, h, w: linspace(0.0, 0.3, n)),
    "TranslateX": _signed(lambda n, h, w: linspace(0.0, w / 3.0, n)),
    "TranslateY": _signed(lambda n, h, w: linspace(0.0, h / 3.0, n)),
    "Rotate": _signed(lambda n, h, w: linspace(0.0, 30.0, n)),
    "Posterize": _unsigned(lambda n, h, w: _posterize_bins(4, n, 4)),
    "Solarize": _unsigned(lambda n, h, w: linspace(1.0, 0.0, n)),
    "AutoContrast": _NONE,
    "Equalize": _NONE,
}
AUGMIX_SPACE = {
    **AUGMIX_PARTIAL_SPACE,
    "Brightness": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Color": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Contrast": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
    "Sharpness": _signed(lambda n, h, w: linspace(0.0, 0.9, n)),
}
AUGMIX_PARAMETER_MAX = 10

# AutoAugmentPolicy.IMAGENET: 25 sub-policies of two (op, probability, magnitude bin of 10)
IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
)


def check_options(auto_augment: str | None, interpolation: str, ra_magnitude: int = 9, augmix_severity: int = 3,
                  random_erase: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
    """ValueError naming the option and its valid values for anything torchvision would reject."""
    if interpolation not in PIL_FILTERS:
        raise ValueError(f"--interpolation {interpolation!r}: expected one of {', '.join(PIL_FILTERS)}")
    if auto_augment is not None and auto_augment not in POLICIES:
        raise ValueError(f"--auto-augment {auto_augment!r}: expected one of {', '.join(POLICIES)} (or unset)")
    if auto_augment in ("imagenet", "ra", "ta_wide") and interpolation not in PIL_AFFINE_INTERPOLATIONS:
        raise ValueError(f"--auto-augment {auto_augment} with --interpolation {interpolation!r}: PIL's affine "
                         f"transforms take only {', '.join(PIL_AFFINE_INTERPOLATIONS)}")
    if auto_augment == "augmix" and interpolation not in TENSOR_INTERPOLATIONS:
        raise ValueError(f"--auto-augment augmix with --interpolation {interpolation!r}: AugMix augments tensors, "
                         f"whose affine transforms take only {', '.join(TENSOR_INTERPOLATIONS)}")
    if auto_augment == "ra" and not 0 <= ra_magnitude < 31:
        raise ValueError(f"--ra-magnitude {ra_magnitude}: expected an integer in [0, 30] (31 magnitude bins)")
    if auto_augment == "augmix" and not 1 <= augmix_severity <= AUGMIX_PARAMETER_MAX:
        raise ValueError(f"--augmix-severity {augmix_severity}: expected an integer in [1, {AUGMIX_PARAMETER_MAX}]")
    if not 0 <= random_erase <= 1:
        raise ValueError(f"--random-erase {random_erase}: expected a probability in [0, 1]")
    for name, a in (("mixup-alpha", mixup_alpha), ("cutmix-alpha", cutmix_alpha)):
        if a < 0:
            raise ValueError(f"--{name} {a}: expected >= 0 (0: off)")


# ----------------------------------------------------------------------------- ops on PIL images


def inverse_affine_matrix(center, angle: float, translate, scale: float, shear) -> list[float]:
    """torchvision.transforms.v2.functional._geometry._get_inverse_affine_matrix (inverted=True)."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx, rot_minus_sy = math.cos(sy), math.tan(sx), rot - sy
    cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    m[2] += cx - m[0] * cx_plus_tx - m[1] * cy_plus_ty
    m[5] += cy - m[3] * cx_plus_tx - m[4] * cy_plus_ty
    return m


def _pil_fill(fill, img: Image.Image):
    """torchvision _functional_pil._parse_fill (integer modes)."""
    n = len(img.getbands())
    fill = 0 if fill is None else fill
    if isinstance(fill, (int, float)) and n > 1:
        fill = (fill,) * n
    if isinstance(fill, (list, tuple)):
        fill = tuple(int(x) for x in (tuple(fill) * n if len(fill) == 1 else fill))
    else:
        fill = int(fill)
    return fill


def _affine_args(op: str, magnitude: float, w: int, h: int):
    """(center, translate, shear) of the affine ops, as _apply_image_or_video_transform passes them."""
    if op == "ShearX":
        return (0.0, 0.0), (0, 0), (math.degrees(math.atan(magnitude)), 0.0)
    if op == "ShearY":
        return (0.0, 0.0), (0, 0), (0.0, math.degrees(math.atan(magnitude)))
    if op == "TranslateX":
        return None, (int(magnitude), 0), (0.0, 0.0)
    return None, (0, int(magnitude)), (0.0, 0.0)  # TranslateY


def apply_op(img: Image.Image, op: str, magnitude: float, interpolation: str = "nearest", fill=None) -> Image.Image:
    """One augmentation op on a PIL image: torchvision's _apply_image_or_video_transform, PIL kernels."""
    if op == "Identity":
        return img
    if op in ("ShearX", "ShearY", "TranslateX", "TranslateY"):
        center, translate, shear = _affine_args(op, magnitude, *img.size)
        if center is None:
            center = (img.size[0] * 0.5, img.size[1] * 0.5)
        matrix = inverse_affine_matrix(center, 0.0, [float(t) for t in translate], 1.0, shear)
        return img.transform(img.size, Image.AFFINE, matrix, PIL_FILTERS[interpolation],
                             fillcolor=_pil_fill(fill, img))
    if op == "Rotate":
        return img.rotate(magnitude, PIL_FILTERS[interpolation], False, None, fillcolor=_pil_fill(fill, img))
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    if op == "Color":
        return ImageEnhance.Color(img).enhance(1.0 + magnitude)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
    if op == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if op == "Solarize":
        return ImageOps.solarize(img, 255.0 * magnitude)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    raise ValueError(f"unknown augmentation op {op!r}")


# ----------------------------------------------------------------------------- ops on uint8 arrays (tensor kernels)


def _fma(a, b, c) -> np.ndarray:
    """float32(a * b + c) with one rounding, as Vectorized<float>::fmadd (a, b, c float32 arrays or scalars).

    In float64 the product of two float32s is exact and the sum is rounded once; rounding that to float32
    differs from the fused result only where the float64 sum lies exactly halfway between two float32s,
    and those (rare) elements are redone in long double."""
    a, b, c = (np.asarray(v, np.float32) for v in (a, b, c))
    r = a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)
    out = np.asarray(r.astype(np.float32))
    back = out.astype(np.float64)
    toward = np.nextafter(out, np.where(r > back, np.float32(np.inf), np.float32(-np.inf))).astype(np.float64)
    tie = (r != back) & (2 * r == back + toward)
    if tie.any():
        a, b, c = (np.broadcast_to(v, r.shape)[tie] for v in (a, b, c))
        out[tie] = (a.astype(_LD) * b.astype(_LD) + c.astype(_LD)).astype(np.float32)
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)  # clamp_(0, 255).to(uint8): truncation


def _blend(img1: np.ndarray, img2, ratio: float) -> np.ndarray:
    # image1.mul(ratio).add_(image2, alpha=1 - ratio).clamp_(0, 255).to(uint8)
    return _to_uint8(_fma(img2, 1.0 - float(ratio), img1.astype(np.float32) * np.float32(ratio)))


def _gray_floor(x: np.ndarray) -> np.ndarray:
    # r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114), then floor_ (uint8 input); HW1 float32
    f = x.astype(np.float32)
    g = _fma(f[..., 2], 0.114, _fma(f[..., 1], 0.587, f[..., 0] * np.float32(0.2989)))
    return np.floor(g)[..., None]


def _affine_grid(theta: np.ndarray, w: int, h: int) -> np.ndarray:
    """torchvision _affine_grid (ow = w, oh = h): (h, w, 2) float32 sampling grid."""
    xs = linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, w)
    ys = linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, h)
    t = theta.reshape(2, 3).T / np.array([0.5 * w, 0.5 * h], np.float32)  # (3, 2) float32
    gx = xs[None, :, None] * t[0] + ys[:, None, None] * t[1]
    return (gx + t[2]).astype(np.float32)


def _grid_sample(img: np.ndarray, grid: np.ndarray, mode: str) -> np.ndarray:
    """torch grid_sample(align_corners=False, padding_mode="zeros") on HWC float32; returns HWC float32."""
    h, w = img.shape[:2]
    # unnormalize: (x + 1) * (size / 2) - 0.5, the multiply-subtract fused (as torch's AVX2 CPU build runs it)
    ix = _fma(grid[..., 0] + np.float32(1), np.float32(w / 2), np.float32(-0.5))
    iy = _fma(grid[..., 1] + np.float32(1), np.float32(h / 2), np.float32(-0.5))

    padded = np.pad(img, ((1, 1), (1, 1), (0, 0))).reshape((h + 2) * (w + 2), -1)  # zero border: outside -> 0

    def gather(yy, xx):
        yy = np.clip(yy, -1, h).astype(np.int64) + 1
        xx = np.clip(xx, -1, w).astype(np.int64) + 1
        return padded[yy * (w + 2) + xx]

    if mode == "nearest":
        return gather(np.rint(iy), np.rint(ix))
    x0, y0 = np.floor(ix), np.floor(iy)
    we = ix - x0  # ATen's compute_interp_params: w = x - floor(x), e = 1 - w, n = y - floor(y), s = 1 - n
    ww = np.float32(1) - we
    wn = iy - y0
    ws = np.float32(1) - wn
    nw, ne, sw, se = (ws * ww)[..., None], (ws * we)[..., None], (wn * ww)[..., None], (wn * we)[..., None]
    # nw_val * nw + ne_val * ne + sw_val * sw + se_val * se, compiled as a chain of fused multiply-adds
    out = _fma(gather(y0, x0 + 1), ne, gather(y0, x0) * nw)
    out = _fma(gather(y0 + 1, x0), sw, out)
    return _fma(gather(y0 + 1, x0 + 1), se, out)


def _grid_transform(x: np.ndarray, matrix: list[float], mode: str, fill) -> np.ndarray:
    h, w = x.shape[:2]
    grid = _affine_grid(np.asarray(matrix, np.float32), w, h)
    f = x.astype(np.float32)
    if fill is None:
        return np.rint(_grid_sample(f, grid, mode)).astype(np.uint8)
    f = np.concatenate([f, np.ones(f.shape[:2] + (1,), np.float32)], axis=-1)
    out = _grid_sample(f, grid, mode)
    out, mask = out[..., :-1], out[..., -1:]
    fill_img = np.broadcast_to(np.asarray(fill if isinstance(fill, (list, tuple)) else [fill], np.float32),
                               out.shape)
    if mode == "nearest":
        out = np.where(mask < 0.5, fill_img, out)
    else:
        out = (out - fill_img) * mask + fill_img
    return np.rint(out).astype(np.uint8)


def apply_op_tensor(x: np.ndarray, op: str, magnitude: float, interpolation: str = "bilinear",
                    fill=None) -> np.ndarray:
    """One augmentation op with torchvision's tensor kernels, on an HWC uint8 array (3 channels)."""
    h, w = x.shape[:2]
    if op == "Identity":
        return x
    if op in ("ShearX", "ShearY", "TranslateX", "TranslateY"):
        center, translate, shear = _affine_args(op, magnitude, w, h)
        center_f = (0.0, 0.0) if center is None else (center[0] - w * 0.5, center[1] - h * 0.5)
        matrix = inverse_affine_matrix(center_f, 0.0, [float(t) for t in translate], 1.0, shear)
        return _grid_transform(x, matrix, interpolation, fill)
    if op == "Rotate":
        angle = magnitude % 360
        if angle == 0:
            return x.copy()
        if angle == 180:
            return np.ascontiguousarray(x[::-1, ::-1])
        if h == w and angle in (90, 270):
            return np.ascontiguousarray(np.rot90(x, k=1 if angle == 90 else 3))
        matrix = inverse_affine_matrix((0.0, 0.0), -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
        return _grid_transform(x, matrix, interpolation, fill)
    if op == "Brightness":
        return _to_uint8(x.astype(np.float32) * np.float32(1.0 + magnitude))
    if op == "Color":
        return _blend(x, _gray_floor(x), 1.0 + magnitude)
    if op == "Contrast":
        gray = _gray_floor(x)
        mean = np.float32(gray.sum(dtype=np.float64)) / np.float32(gray.size)  # integer sum: exact below 2**24
        return _blend(x, mean, 1.0 + magnitude)
    if op == "Sharpness":
        factor = 1.0 + magnitude
        if h <= 2 or w <= 2:
            return x
        f = x.astype(np.float32)
        # conv2d with [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, then round_(): the exact value is k / 13 (k an
        # integer), never within float32 error of a rounding tie, so the exact quotient rounds the same
        k = sum(f[dy:h - 2 + dy, dx:w - 2 + dx].astype(np.float64) for dy in range(3) for dx in range(3))
        blurred = np.rint((k + 4 * f[1:-1, 1:-1]) / 13.0).astype(np.float32)
        view = f[1:-1, 1:-1]
        f[1:-1, 1:-1] = _fma(blurred - view, 1.0 - factor, view)
        return _to_uint8(f)
    if op == "Posterize":
        bits = int(magnitude)
        if bits >= 8:
            return x
        return x & np.uint8(((1 << bits) - 1) << (8 - bits))
    if op == "Solarize":
        threshold = np.float32(255.0 * magnitude)  # uint8 >= python float compares in float32
        return np.where(x.astype(np.float32) >= threshold, 255 - x, x).astype(np.uint8)
    if op == "AutoContrast":
        f = x.astype(np.float32)
        lo, hi = f.min(axis=(0, 1)), f.max(axis=(0, 1))
        eq = hi == lo
        inv_scale = np.where(eq, np.float32(1), (hi - lo) * np.float32(1.0 / 255))
        lo = np.where(eq, np.float32(0), lo)
        return _to_uint8((f - lo) / inv_scale)
    if op == "Equalize":
        out = x.copy()
        for c in range(x.shape[2]):
            ch = x[..., c]
            hist = np.bincount(ch.ravel(), minlength=256)
            step = (ch.size - hist[np.nonzero(hist)[0][-1]]) // 255
            if step == 0:
                continue
            lut = np.concatenate([[0], np.clip((np.cumsum(hist)[:-1] + step // 2) // step, 0, 255)]).astype(np.uint8)
            out[..., c] = lut[ch]
        return out
    if op == "Invert":
        return 255 - x
    raise ValueError(f"unknown augmentation op {op!r}")


# ----------------------------------------------------------------------------- policies: draws and application


def _draw_op(rng: np.random.Generator, space: dict) -> str:
    keys = tuple(space)
    return keys[int(rng.integers(len(keys)))]


def _sign(rng: np.random.Generator, magnitude: float, signed: bool) -> float:
    return -magnitude if signed and rng.random() <= 0.5 else magnitude


def sample_autoaugment(rng: np.random.Generator, height: int, width: int) -> list[tuple[str, float]]:
    """AutoAugment(IMAGENET).forward's draws: a sub-policy uniformly, each op applied if rand <= p."""
    ops = []
    for op, p, bin_ in IMAGENET_POLICY[int(rng.integers(len(IMAGENET_POLICY)))]:
        if not rng.random() <= p:
            continue
        fn, signed = AUTOAUGMENT_SPACE[op]
        mags = fn(10, height, width)
        ops.append((op, _sign(rng, float(mags[bin_]), signed) if mags is not None else 0.0))
    return ops


def sample_randaugment(rng: np.random.Generator, height: int, width: int, num_ops: int = 2, magnitude: int = 9,
                       num_magnitude_bins: int = 31) -> list[tuple[str, float]]:
    """RandAugment.forward's draws: num_ops ops uniformly (with replacement), fixed magnitude bin."""
    ops = []
    for _ in range(num_ops):
        op = _draw_op(rng, RANDAUGMENT_SPACE)
        fn, signed = RANDAUGMENT_SPACE[op]
        mags = fn(num_magnitude_bins, height, width)
        ops.append((op, _sign(rng, float(mags[magnitude]), signed) if mags is not None else 0.0))
    return ops


def sample_trivialaugment(rng: np.random.Generator, height: int, width: int,
                          num_magnitude_bins: int = 31) -> list[tuple[str, float]]:
    """TrivialAugmentWide.forward's draws: one op uniformly, a magnitude bin uniformly."""
    op = _draw_op(rng, TRIVIALAUGMENT_SPACE)
    fn, signed = TRIVIALAUGMENT_SPACE[op]
    mags = fn(num_magnitude_bins, height, width)
    if mags is None:
        return [(op, 0.0)]
    return [(op, _sign(rng, float(mags[int(rng.integers(num_magnitude_bins))]), signed))]


def sample_augmix(rng: np.random.Generator, height: int, width: int, severity: int = 3, mixture_width: int = 3,
                  chain_depth: int = -1, alpha: float = 1.0, all_ops: bool = True):
    """AugMix.forward's draws: (m: Dirichlet([alpha]*2) float32 (2,), weights: Dirichlet([alpha]*width) * m[1]
    float32 (width,), chains: per chain a list of (op, magnitude); depth uniform in [1, 3] if chain_depth < 0,
    magnitude bin uniform in [0, severity) of 10)."""
    space = AUGMIX_SPACE if all_ops else AUGMIX_PARTIAL_SPACE
    m = rng.dirichlet([alpha, alpha]).astype(np.float32)
    weights = rng.dirichlet([alpha] * mixture_width).astype(np.float32) * m[1]
    chains = []
    for _ in range(mixture_width):
        depth = chain_depth if chain_depth > 0 else int(rng.integers(1, 4))
        chain = []
        for _ in range(depth):
            op = _draw_op(rng, space)
            fn, signed = space[op]
            mags = fn(AUGMIX_PARAMETER_MAX, height, width)
            chain.append((op, _sign(rng, float(mags[int(rng.integers(severity))]), signed) if mags is not None
                          else 0.0))
        chains.append(chain)
    return m, weights.astype(np.float32), chains


def augmix(x: np.ndarray, m: np.ndarray, weights: np.ndarray, chains: Sequence[Sequence[tuple[str, float]]],
           interpolation: str = "bilinear", fill=None) -> np.ndarray:
    """AugMix's mixing on an HWC uint8 array: m[0] * x + sum_i weights[i] * chain_i(x), in float32, truncated."""
    mix = x.astype(np.float32) * np.float32(m[0])
    for wi, chain in zip(np.asarray(weights, np.float32), chains):
        aug = x
        for op, mag in chain:
            aug = apply_op_tensor(aug, op, mag, interpolation, fill)
        mix = mix + np.float32(wi) * aug.astype(np.float32)
    return mix.astype(np.uint8)


class AutoAugmentPolicy:
    """The per-image policy of the trainer's --auto-augment: ``policy(img, rng) -> PIL image``."""

    def __init__(self, name: str, interpolation: str = "bilinear", ra_magnitude: int = 9, augmix_severity: int = 3):
        check_options(name, interpolation, ra_magnitude, augmix_severity)
        self.name, self.interpolation = name, interpolation
        self.ra_magnitude, self.augmix_severity = ra_magnitude, augmix_severity

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        if self.name == "augmix":
            m, weights, chains = sample_augmix(rng, h, w, self.augmix_severity)
            return Image.fromarray(augmix(np.asarray(img), m, weights, chains, self.interpolation))
        if self.name == "imagenet":
            ops = sample_autoaugment(rng, h, w)
        elif self.name == "ra":
            ops = sample_randaugment(rng, h, w, magnitude=self.ra_magnitude)
        else:
            ops = sample_trivialaugment(rng, h, w)
        for op, mag in ops:
            img = apply_op(img, op, mag, self.interpolation)
        return img


# ----------------------------------------------------------------------------- random erasing


def random_erasing_box(rng: np.random.Generator, height: int, width: int, p: float,
                       scale=(0.02, 0.33), ratio=(0.3, 3.3)) -> tuple[int, int, int, int] | None:
    """RandomErasing(p, scale, ratio, value=0)'s draws: None (not applied, or no box found in 10 tries, when
    torchvision erases nothing either) or the box (i, j, h, w): top, left, height, width."""
    if not rng.random() < p:  # _RandomApplyTransform: skipped when rand >= p
        return None
    area = height * width
    log_ratio = np.log(np.array(ratio, np.float32))  # torch.log(torch.tensor(ratio)): float32
    for _ in range(10):
        erase_area = area * float(np.float32(rng.uniform(scale[0], scale[1])))
        aspect = float(np.exp(np.float32(rng.uniform(log_ratio[0], log_ratio[1]))))
        h = int(round(math.sqrt(erase_area * aspect)))
        w = int(round(math.sqrt(erase_area / aspect)))
        if not (h < height and w < width):
            continue
        return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return None


def erase(x: np.ndarray, box: tuple[int, int, int, int] | None, value: float = 0.0) -> np.ndarray:
    """F.erase on an HWC float array (in place); box from random_erasing_box."""
    if box is not None:
        i, j, h, w = box
        x[i:i + h, j:j + w] = value
    return x


# ----------------------------------------------------------------------------- MixUp / CutMix


def mixup_cutmix_params(rng: np.random.Generator, height: int, width: int, mixup_alpha: float,
                        cutmix_alpha: float) -> dict | None:
    """The batch transform's draws: RandomChoice([MixUp, CutMix]) (uniform) over those with alpha > 0, then
    MixUp: lam ~ Beta(a, a); CutMix: lam ~ Beta(a, a), centre uniform, box clipped, lam adjusted by its area.
    None when both are off. Returns {"kind": "mixup", "lam"} or {"kind": "cutmix", "box": (x1, y1, x2, y2),
    "lam", "beta"} (lam: the weight of the un-rolled batch, for CutMix adjusted by the box area; beta: the
    Beta draw)."""
    kinds = [k for k, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not kinds:
        return None
    kind = kinds[int(rng.integers(len(kinds)))] if len(kinds) > 1 else kinds[0]
    a = mixup_alpha if kind == "mixup" else cutmix_alpha
    lam = float(np.float32(rng.beta(a, a)))  # torch's Beta samples float32
    if kind == "mixup":
        return {"kind": "mixup", "lam": lam, "beta": lam}
    box, lam_adjusted = cutmix_box(lam, int(rng.integers(width)), int(rng.integers(height)), height, width)
    return {"kind": "cutmix", "box": box, "lam": lam_adjusted, "beta": lam}


def cutmix_box(lam: float, r_x: int, r_y: int, height: int, width: int) -> tuple[tuple[int, int, int, int], float]:
    """CutMix.make_params given its draws (lam, centre r_x, r_y): box (x1, y1, x2, y2) and the adjusted lam."""
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * width), int(r * height)
    x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
    x2, y2 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
    return (x1, y1, x2, y2), float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))


def mix_labels(labels: np.ndarray, num_classes: int, lam: float) -> np.ndarray:
    """_mixup_label: one_hot(labels).roll(1, 0) * (1 - lam) + one_hot(labels) * lam, float32 (B, K)."""
    y = labels.astype(np.float32) if labels.ndim == 2 else np.eye(num_classes, dtype=np.float32)[labels]
    return np.roll(y, 1, axis=0) * np.float32(1.0 - lam) + y * np.float32(lam)


def mix_batch(images: np.ndarray, labels: np.ndarray, num_classes: int, params: dict | None):
    """MixUp/CutMix of a float NHWC batch with its partner batch rolled by one; returns (images, soft labels)."""
    if params is None:
        return images, labels
    rolled = np.roll(images, 1, axis=0)
    if params["kind"] == "mixup":
        out = rolled * np.float32(1.0 - params["lam"]) + images * np.float32(params["lam"])
    else:
        x1, y1, x2, y2 = params["box"]
        out = images.copy()
        out[:, y1:y2, x1:x2] = rolled[:, y1:y2, x1:x2]
    return out.astype(images.dtype), mix_labels(labels, num_classes, params["lam"])


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """ToDtype(float32, scale=True) + Normalize(mean, std) on uint8 HWC/NHWC: x * f32(1/255), - mean, / std."""
    x = images.astype(np.float32) * np.float32(1.0 / 255)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return x
