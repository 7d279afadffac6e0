"""Test images for the eval-transform goldens (tests/test_transforms.py, tools/gen_transform_golden.py).

scikit-learn's two sample JPEG photos (china.jpg, flower.jpg, 640x427), resized and cropped
with PIL to several sizes and aspect ratios: landscape, portrait, small (upsampled by every
transform), tiny, square, short side exactly 256 (no resampling at resize 256), very wide.
"""
from __future__ import annotations

import hashlib

import numpy as np


def sample_images():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(a) for a in load_sample_images().images]


def variants(images=None) -> list[tuple[str, "object"]]:
    from PIL import Image

    out = []
    for i, im in enumerate(images or sample_images()):
        out += [
            (f"{i}:orig", im),
            (f"{i}:land500x333", im.resize((500, 333), Image.BILINEAR)),
            (f"{i}:portrait201x427", im.crop((100, 0, 301, 427))),
            (f"{i}:small97x61", im.resize((97, 61), Image.BICUBIC)),
            (f"{i}:tiny31x45", im.crop((10, 10, 41, 55))),
            (f"{i}:square257", im.crop((0, 0, 257, 257))),
            (f"{i}:short384x256", im.resize((384, 256), Image.BILINEAR)),
            (f"{i}:wide640x120", im.crop((0, 200, 640, 320))),
        ]
    return out


def sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()
