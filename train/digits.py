"""TFDS builder for ``digits32``: scikit-learn's bundled 8x8 digits as 32x32x3 uint8 images.

The 1797 images ship inside the scikit-learn wheel, so the dataset is built
locally (no network, no TensorFlow) into ``data_dir`` in ArrayRecord format the
first time it is used. Pixels 0..16 are scaled to 0..255, upsampled 8->32 with
bilinear interpolation and replicated to 3 channels. The train/test split
(1500/297) is a fixed permutation from ``np.random.RandomState(0)``, whose
stream NumPy guarantees never to change.
"""

from __future__ import annotations

import fcntl
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds

NAME = "digits32"
NUM_TRAIN = 1500


def _upsample(img8: np.ndarray):
    from PIL import Image

    big = Image.fromarray((img8 * (255.0 / 16.0)).astype(np.float32))
    big = np.asarray(big.resize((32, 32), Image.BILINEAR))
    big = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    # A PIL image, not an array: TFDS encodes arrays with TensorFlow, PIL images with PIL.
    return Image.fromarray(np.repeat(big[:, :, None], 3, axis=2))


class Digits32(tfds.core.GeneratorBasedBuilder):
    """sklearn digits, upsampled to 32x32x3; splits ``train`` (1500) and ``test`` (297)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # Nothing to download, hence no checksums file to look up next to the code (that lookup
    # fails when `train` is a namespace package seen through an editable install).
    url_infos = None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        perm = np.random.RandomState(0).permutation(1797)
        return {
            "train": self._generate_examples(perm[:NUM_TRAIN]),
            "test": self._generate_examples(perm[NUM_TRAIN:]),
        }

    def _generate_examples(self, indices):
        from sklearn.datasets import load_digits

        digits = load_digits()
        for i in indices:
            yield int(i), {"image": _upsample(digits.images[i]), "label": int(digits.target[i])}


def prepare(data_dir: str) -> Digits32:
    """Returns the builder, building the dataset under ``data_dir`` first if needed.

    Safe against concurrent builders (a file lock serialises them; TFDS itself
    writes into ``incomplete.*`` and renames) and against killed ones (their
    leftover ``incomplete.*`` dirs are removed on the next build).
    """
    builder = Digits32(data_dir=data_dir)
    if builder.is_prepared():
        return builder
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{NAME}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        builder = Digits32(data_dir=data_dir)  # another process may have built it meanwhile
        if not builder.is_prepared():
            parent = builder.data_path.parent
            for stale in parent.glob("incomplete.*") if parent.exists() else ():
                shutil.rmtree(stale, ignore_errors=True)
            builder.download_and_prepare(
                file_format=tfds.core.FileFormat.ARRAY_RECORD,
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
    return builder
