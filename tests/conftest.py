"""Shared fixtures."""
import os

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """folder: dataset of crops of scikit-learn's two sample photographs (2 classes; 8 train, 3 val each)."""
    from sklearn.datasets import load_sample_images

    root = tmp_path_factory.mktemp("photos")
    ims = load_sample_images().images
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c in range(2):
            os.makedirs(root / split / f"c{c}")
            for k in range(n):
                im = ims[(k + c) % 2]
                y, x = rng.integers(0, 250), rng.integers(0, 400)
                Image.fromarray(im[y:y + 90 + 7 * k, x:x + 80]).save(root / split / f"c{c}" / f"{k}.jpg")
    return f"folder:{root}"


@pytest.fixture(scope="session")
def twin_variables():
    """`make(name, **kwargs)`: variables for `flaxnets.create_model(name, **kwargs)`, converted
    from its torchref twin's seeded state_dict. For tests that need some trained-looking
    variables, not Flax's init: torch's init takes milliseconds, a jitted Flax init ~10 s of
    XLA compile per mid-sized model on the 2-core machine (threefry, one program per shape)."""
    import torch

    import flaxnets
    import torchref

    def make(name, seed=0, **kwargs):
        torch.manual_seed(seed)
        return flaxnets.from_torch_state_dict(name, torchref.create_model(name, **kwargs).state_dict(),
                                              **kwargs)

    return make
