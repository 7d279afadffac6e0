"""Image-classification input pipelines for flaxnets training, without TensorFlow.

Datasets: any TFDS name prepared in ArrayRecord format (read with
``tfds.data_source``), ``digits32`` (built locally on first use, see
``train.digits``), or ``folder:PATH`` for an ImageFolder tree (one subfolder
per class; ``PATH/train`` + ``PATH/val`` when present, otherwise a fixed split
of ``PATH``). Nothing is downloaded unless ``DataConfig.download`` is set; a
dataset that is not prepared fails at once with a message saying how to
prepare it.

Bad files in ``folder:`` trees: when the dataset is opened every file's header is
checked (``PIL.Image.open`` + ``verify``: identifies the format and size, checks
PNG chunk CRCs, decodes nothing; 8 threads), so a non-image or empty file fails
at once with its path. A file whose data is corrupt past the header (a truncated
JPEG) is met when it is decoded and raises ``BadImageError`` naming it. With
``skip_bad_images`` the former are left out (``DatasetInfo.bad_files``) and the
latter replaced by the next readable example of the split (train) or masked out
(eval); batches then carry ``"skipped"`` (how many of their records were bad),
which is not a model input.

Batches are built with grain (``MapDataset`` over step numbers, one element
per local batch) and come out as NHWC float32 numpy, normalised as
torchvision's ``ToDtype(float32, scale=True)`` + ``Normalize`` (ImageNet
mean/std); with ``train_batches(..., raw=True)`` (what ``python -m train.main``
uses) train batches stop at uint8 and carry the RandomErasing / MixUp-CutMix
draws, and ``train.preprocess.DeviceFinish`` (``finish_for``) completes them in
the jitted train step, bit for bit the same float32 batch. Train augmentation follows torchvision's ``ClassificationPresetTrain``
(references/classification/presets.py, PIL backend): RandomResizedCrop
(``train_crop_size``, ``interpolation``; crop, then resize) + flip for
ImageNet-like data (images larger than 64 px), pad-4 random crop + flip for
small (32x32) data; then the ``auto_augment`` policy on the PIL image
(``imagenet`` AutoAugment, ``ra`` RandAugment, ``ta_wide`` TrivialAugmentWide,
``augmix`` AugMix; ``train.augment``), normalisation, RandomErasing
(``random_erase``) on the float image. With ``mixup_alpha``/``cutmix_alpha`` the
batch is mixed with itself rolled by one row (torchvision's collate_fn:
``RandomChoice([MixUp, CutMix])``) and ``"label"`` is float32 (B, num_classes)
soft labels. Flipping is a per-dataset flag, off for digit/character datasets
such as digits32, where a mirrored digit is a different digit. Eval:
``ClassificationPresetEval``: resize of the shorter side to ``val_resize_size``
(default ``val_crop_size / 0.875``) + center crop ``val_crop_size`` (default
the train size) for ImageNet-like data, a resize to ``val_crop_size`` for
small data (identity at the native size). With ``DataConfig.eval_transform``
(the trainer's ``--eval-weights``) eval is that checkpoint's torchvision/timm
preprocessing instead (``flaxnets.eval_transform``: its resize, interpolation,
crop, mean/std; ``image_size`` defaults to its crop size) and train batches are
normalised with its mean/std.

Everything is a pure function of ``(seed, step)``: the epoch's example order
comes from ``(seed, epoch)`` and each example's augmentation (crop, flip,
policy, erasing) from its own generator seeded with ``(seed, epoch, example
index)``, so starting at ``start_step=k`` yields exactly the stream's batches
k, k+1, ... MixUp/CutMix draws come from ``(seed, step)``. With ``ra_sampler``
the epoch order is torchvision's RASampler (num_replicas=1) applied to the
epoch's permutation: each index ``ra_reps`` times in a row, truncated to
``num_train // 256 * 256`` examples (RASampler's epoch length); repetition r
of an example is augmented from ``(seed, epoch, index, r)``. The global batch
of a step never depends on ``process_count``: process p yields rows
``[p*L, (p+1)*L)`` of it (L = global batch / process_count), reading only
those examples (plus, with MixUp/CutMix, the previous row, its first row's
partner), which is the layout ``jax.make_array_from_process_local_data``
reassembles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from typing import Any, Iterator

import grain
import numpy as np
from PIL import Image

from train import augment, digits

SMALL_MAX = 64  # images up to this size get the CIFAR recipe, larger ones the ImageNet one
LARGE_SIZE = 224
EVAL_CROP = 0.875
NO_HFLIP = frozenset({"digits32", "mnist", "emnist", "kmnist", "svhn_cropped"})
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits32"          # TFDS name or "folder:PATH"
    data_dir: str | None = None        # default: ~/.cache/flaxnets/tensorflow_datasets
    image_size: int | None = None      # None: dataset's native size (32 for digits/cifar, 224 for imagenet-like)
    download: bool = False
    val_fraction: float = 0.1          # for folder: trees without val/
    num_workers: int = 0               # grain worker processes (0 = in-process)
    skip_bad_images: bool = False      # folder: leave out / replace unreadable image files instead of failing
    eval_transform: Any = None         # a flaxnets.transforms.EvalTransform: a checkpoint's eval preprocessing
    # torchvision references/classification options (train.config.TrainConfig documents them)
    train_crop_size: int | None = None
    val_resize_size: int | None = None
    val_crop_size: int | None = None
    interpolation: str = "bilinear"
    auto_augment: str | None = None
    ra_magnitude: int = 9
    augmix_severity: int = 3
    random_erase: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ra_sampler: bool = False
    ra_reps: int = 3
    num_classes: int | None = None     # soft labels' width with mixup/cutmix (None: the dataset's classes)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    num_train: int
    num_eval: int
    image_size: int
    train_split: str
    eval_split: str
    bad_files: tuple[str, ...] = ()    # folder: files left out at build time (skip_bad_images)
    eval_image_size: int | None = None  # eval crop size where it differs from image_size (--val-crop-size)
    train_epoch_size: int | None = None  # examples per train epoch where not num_train (--ra-sampler)

    @property
    def eval_size(self) -> int:
        return self.eval_image_size or self.image_size

    @property
    def epoch_size(self) -> int:
        return self.train_epoch_size if self.train_epoch_size is not None else self.num_train


def default_data_dir() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flaxnets", "tensorflow_datasets")


# ----------------------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """What the pipeline needs to know about a dataset, plus how to open its splits."""

    num_classes: int
    split_sizes: dict[str, int]
    train_split: str
    eval_split: str
    native_size: int | None  # None: variable or large (ImageNet-like)
    hflip: bool
    open_split: Any  # picklable callable: split -> sequence of {"image": HWC uint8, "label": int} (or None: skipped)
    bad_files: tuple[str, ...] = ()
    skip_bad: bool = False


class BadImageError(ValueError):
    """An image file of a folder: dataset that cannot be decoded."""


def _decode_error(path: str, e: Exception) -> BadImageError:
    return BadImageError(f"{path}: unreadable image ({type(e).__name__}: {e}); pass --skip-bad-images to "
                         f"train without such files")


class _FolderSource:
    """Decodes lazily; a file that fails to decode raises BadImageError naming it, or (skip) gives None."""

    def __init__(self, files: list[str], labels: list[int], skip_bad: bool = False):
        self.files, self.labels, self.skip_bad = files, labels, skip_bad

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict | None:
        try:
            with Image.open(self.files[i]) as img:
                return {"image": np.asarray(img.convert("RGB")), "label": self.labels[i]}
        except (OSError, SyntaxError, ValueError) as e:  # truncated/corrupt data, not an image, unreadable
            if self.skip_bad:
                return None
            raise _decode_error(self.files[i], e) from None


def _check_header(path: str) -> str | None:
    """None if PIL identifies `path` as an image (header parsed; PNG chunk CRCs checked), else why not."""
    try:
        with Image.open(path) as img:
            img.verify()
        return None
    except Exception as e:  # noqa: BLE001  (any failure means: not a usable image)
        return f"{type(e).__name__}: {e}"


def _find_bad(files: list[str]) -> dict[str, str]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        return {f: why for f, why in zip(files, pool.map(_check_header, files, chunksize=64)) if why}


class _TfdsSource:
    """Maps a TFDS data source's records to {"image", "label"} (grayscale -> RGB)."""

    def __init__(self, source, image_key: str, label_key: str):
        self.source, self.image_key, self.label_key = source, image_key, label_key

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        rec = self.source[i]
        img = np.asarray(rec[self.image_key])
        if img.ndim == 2 or img.shape[-1] == 1:
            img = np.repeat(img.reshape(img.shape[:2] + (1,)), 3, axis=2)
        return {"image": img, "label": int(rec[self.label_key])}


def _list_images(root: str, classes: list[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, cls in enumerate(classes):
        d = os.path.join(root, cls)
        if not os.path.isdir(d):
            continue
        for dirpath, _, names in sorted(os.walk(d, followlinks=True)):
            for n in sorted(names):
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, n))
                    labels.append(label)
    return files, labels


def _open_folder_split(splits: dict[str, tuple[list[str], list[int]]], skip_bad: bool, split: str) -> _FolderSource:
    return _FolderSource(*splits[split], skip_bad=skip_bad)


def _drop_bad(cfg: DataConfig, files: list[str], labels: list[int]) -> tuple[list[str], list[int], list[str]]:
    """Header check of every file (fast: PIL parses headers, decodes nothing); bad ones fail or are dropped."""
    bad = _find_bad(files)
    if bad and not cfg.skip_bad_images:
        shown = "; ".join(f"{f} ({why})" for f, why in list(bad.items())[:5])
        raise BadImageError(f"dataset {cfg.dataset!r}: {len(bad)} file(s) are not readable images: {shown}"
                            + (f"; ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
                            + "; pass --skip-bad-images to leave them out")
    keep = [k for k, f in enumerate(files) if f not in bad]
    return [files[k] for k in keep], [labels[k] for k in keep], list(bad)


def _resolve_folder(cfg: DataConfig) -> _Resolved:
    path = cfg.dataset[len("folder:"):]
    if not os.path.isdir(path):
        raise ValueError(f"dataset {cfg.dataset!r}: {path!r} is not a directory")
    has_split_dirs = os.path.isdir(os.path.join(path, "train"))
    train_root = os.path.join(path, "train") if has_split_dirs else path
    classes = sorted(e.name for e in os.scandir(train_root) if e.is_dir())
    files, labels, bad = _drop_bad(cfg, *_list_images(train_root, classes))
    if not files:
        raise ValueError(f"dataset {cfg.dataset!r}: no images in class subfolders of {train_root!r}")
    if has_split_dirs:
        val_root = os.path.join(path, "val")
        if not os.path.isdir(val_root):
            raise ValueError(f"dataset {cfg.dataset!r}: {train_root!r} exists but {val_root!r} does not")
        unknown = {e.name for e in os.scandir(val_root) if e.is_dir()} - set(classes)
        if unknown:
            raise ValueError(f"dataset {cfg.dataset!r}: val classes {sorted(unknown)} not in train")
        val_files, val_labels, val_bad = _drop_bad(cfg, *_list_images(val_root, classes))
        bad += val_bad
        splits = {"train": (files, labels), "val": (val_files, val_labels)}
    else:
        if not 0 < cfg.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {cfg.val_fraction}")
        perm = np.random.RandomState(0).permutation(len(files))
        n_val = max(1, round(len(files) * cfg.val_fraction))
        pick = lambda idx: ([files[i] for i in sorted(idx)], [labels[i] for i in sorted(idx)])
        splits = {"train": pick(perm[n_val:]), "val": pick(perm[:n_val])}
    with Image.open(files[0]) as img:  # the first image decides small vs ImageNet-like (header only)
        native = max(img.size) if max(img.size) <= SMALL_MAX else None
    return _Resolved(
        num_classes=len(classes),
        split_sizes={k: len(v[0]) for k, v in splits.items()},
        train_split="train",
        eval_split="val",
        native_size=native,
        hflip=True,
        open_split=functools.partial(_open_folder_split, splits, cfg.skip_bad_images),
        bad_files=tuple(bad),
        skip_bad=cfg.skip_bad_images,
    )


def _open_tfds_split(name: str, data_dir: str, image_key: str, label_key: str, split: str) -> _TfdsSource:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    return _TfdsSource(builder.as_data_source(split=split), image_key, label_key)


def _resolve_tfds(cfg: DataConfig) -> _Resolved:
    import tensorflow_datasets as tfds

    name, data_dir = cfg.dataset, cfg.data_dir or default_data_dir()
    # Not `tfds build`: the tfds CLI needs TensorFlow.
    how = (f"set download=True (the trainer's --download), or run: python -c \"import tensorflow_datasets as tfds; "
           f"tfds.builder('{name}', data_dir='{data_dir}').download_and_prepare(file_format='array_record')\" "
           f"(datasets with manual downloads, like imagenet2012, need their archives in {data_dir}/downloads/manual)")
    if name == digits.NAME:
        builder = digits.prepare(data_dir)
    else:
        try:
            builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(f"unknown dataset {name!r}: not a TFDS name (nor 'folder:PATH')") from e
        if not builder.is_prepared():
            if not cfg.download:
                raise FileNotFoundError(
                    f"dataset {name!r} is not prepared: nothing at {builder.data_path}. To prepare it, {how}.")
            builder.download_and_prepare(file_format=tfds.core.FileFormat.ARRAY_RECORD)
    info = builder.info
    if info.file_format not in tfds.core.FileFormat.with_random_access():
        raise ValueError(
            f"dataset {name!r} at {builder.data_path} is in {info.file_format.value} format, which "
            f"tfds.data_source cannot read; rebuild it as ArrayRecord in another data_dir: {how}.")
    image_key, label_key = info.supervised_keys or ("image", "label")
    splits = {k: v.num_examples for k, v in info.splits.items()}
    eval_split = next((s for s in ("validation", "val", "test") if s in splits), None)
    if "train" not in splits or eval_split is None:
        raise ValueError(f"dataset {name!r} needs a 'train' and a validation/test split, has {sorted(splits)}")
    shape = info.features[image_key].shape
    small = None not in shape[:2] and max(shape[:2]) <= SMALL_MAX
    return _Resolved(
        num_classes=info.features[label_key].num_classes,
        split_sizes=splits,
        train_split="train",
        eval_split=eval_split,
        native_size=max(shape[:2]) if small else None,
        hflip=name.split("/")[0].split(":")[0] not in NO_HFLIP,
        open_split=functools.partial(_open_tfds_split, name, data_dir, image_key, label_key),
    )


@functools.lru_cache(maxsize=8)  # a folder tree is walked once, not at every eval pass
def _resolve(cfg: DataConfig) -> _Resolved:
    if cfg.dataset.startswith("folder:"):
        return _resolve_folder(cfg)
    return _resolve_tfds(cfg)


def check_options(cfg: DataConfig) -> None:
    """The augmentation/sampling options: a ValueError naming the option and its valid values."""
    augment.check_options(cfg.auto_augment, cfg.interpolation, cfg.ra_magnitude, cfg.augmix_severity,
                          cfg.random_erase, cfg.mixup_alpha, cfg.cutmix_alpha)
    for name in ("train_crop_size", "val_resize_size", "val_crop_size", "image_size"):
        v = getattr(cfg, name)
        if v is not None and v <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if cfg.ra_sampler and cfg.ra_reps < 1:
        raise ValueError(f"--ra-reps must be >= 1, got {cfg.ra_reps}")
    if cfg.image_size is not None and cfg.train_crop_size not in (None, cfg.image_size):
        raise ValueError(f"--image-size {cfg.image_size} and --train-crop-size {cfg.train_crop_size} differ: "
                         f"give one of them")
    tf = cfg.eval_transform
    if tf is not None:
        if cfg.image_size not in (None, tf.crop_size):
            raise ValueError(f"--image-size {cfg.image_size} differs from the eval transform's crop size "
                             f"{tf.crop_size}")
        if cfg.val_resize_size is not None or cfg.val_crop_size is not None:
            raise ValueError("--val-resize-size/--val-crop-size and --eval-weights both set the eval transform: "
                             "give one of them")


def ra_epoch_size(num_train: int) -> int:
    """torchvision RASampler's epoch length (num_selected_samples) for num_replicas=1: num_train // 256 * 256
    examples, whatever ra_reps is (the repeated list is truncated to it)."""
    return num_train // 256 * 256


def get_dataset_info(cfg: DataConfig) -> DatasetInfo:
    """Describes ``cfg.dataset``; prepares digits32 if needed, fails fast if a dataset or an option is bad."""
    check_options(cfg)
    tf = cfg.eval_transform
    r = _resolve(cfg)
    size = (cfg.train_crop_size or cfg.image_size or (tf.crop_size if tf is not None else None) or r.native_size
            or LARGE_SIZE)
    eval_size = (tf.crop_size if tf is not None else None) or cfg.val_crop_size or size
    num_train = r.split_sizes[r.train_split]
    epoch = None
    if cfg.ra_sampler:
        epoch = ra_epoch_size(num_train)
        if epoch == 0:
            raise ValueError(f"--ra-sampler: dataset {cfg.dataset!r} has {num_train} train examples; torchvision's "
                             f"RASampler keeps num_train // 256 * 256 of them per epoch, which is 0")
    return DatasetInfo(
        name=cfg.dataset,
        num_classes=r.num_classes,
        num_train=num_train,
        num_eval=r.split_sizes[r.eval_split],
        image_size=size,
        train_split=r.train_split,
        eval_split=r.eval_split,
        bad_files=r.bad_files,
        eval_image_size=eval_size if eval_size != size else None,
        train_epoch_size=epoch,
    )


# ----------------------------------------------------------------------------- transforms


def _random_resized_crop_box(rng: np.random.Generator, w: int, h: int) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params(scale=(0.08, 1), ratio=(3/4, 4/3)), as a PIL box."""
    area, log_ratio = w * h, (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return left, top, left + cw, top + ch
    ratio = w / h
    if ratio < 3 / 4:
        cw, ch = w, round(w / (3 / 4))
    elif ratio > 4 / 3:
        cw, ch = round(h * (4 / 3)), h
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return left, top, left + cw, top + ch


def _resized_crop(img: Image.Image, box: tuple[int, int, int, int], size: int, interpolation: str) -> Image.Image:
    """F.resized_crop on PIL: crop, then resize (skipped when the crop already has the size), as torchvision."""
    img = img.crop(box)
    return img if img.size == (size, size) else img.resize((size, size), augment.PIL_FILTERS[interpolation])


def _resize(img: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), augment.PIL_FILTERS[interpolation]))


def _pad_crop_flip(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Vectorised RandomCrop(S, padding=S//8) (zero fill) + optional horizontal flip."""
    b, s = images.shape[:2]
    pad = s // 8
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ar = np.arange(s)
    rows = (offsets[:, 0, None] + ar)[:, :, None]
    cols = offsets[:, 1, None] + np.where(flips[:, None], ar[::-1], ar)
    return padded[np.arange(b)[:, None, None], rows, cols[:, None, :]]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalize(images: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """uint8 -> float32 as torchvision's ToDtype(float32, scale=True) + Normalize(mean, std)."""
    return augment.normalize(images, mean, std)


def ra_order(perm: np.ndarray, reps: int, epoch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """torchvision RASampler.__iter__ for num_replicas=1 on the epoch's permutation: each index repeated ``reps``
    times in a row, truncated to ``epoch_size``; also each entry's repetition number (0 .. reps-1)."""
    order = np.repeat(perm, reps)
    return order[:epoch_size], np.tile(np.arange(reps), len(perm))[:epoch_size]


# ----------------------------------------------------------------------------- batches


class _BatchReader:
    """Picklable map function ``step -> local batch`` (opens its source lazily, once per worker)."""

    def __init__(self, r: _Resolved, split: str, image_size: int, seed: int, global_batch: int,
                 process_index: int, process_count: int, train: bool, cfg: DataConfig | None = None,
                 epoch_size: int | None = None, raw: bool = False):
        cfg = cfg or DataConfig()
        eval_transform = cfg.eval_transform
        self.open_split, self.split, self.size = r.open_split, split, image_size
        self.small, self.hflip, self.skip_bad = r.native_size is not None, r.hflip, r.skip_bad
        self.interpolation = cfg.interpolation
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        if eval_transform is not None:  # train with the checkpoint's mean/std too
            self.mean, self.std = tuple(eval_transform.mean), tuple(eval_transform.std)
        self.eval_tf = eval_transform
        if eval_transform is None and not self.small and not train:  # torchvision ClassificationPresetEval
            from flaxnets.transforms import EvalTransform

            self.eval_tf = EvalTransform(resize_size=cfg.val_resize_size or int(image_size / EVAL_CROP),
                                         crop_size=image_size, interpolation=cfg.interpolation,
                                         mean=self.mean, std=self.std)
        self.policy = (augment.AutoAugmentPolicy(cfg.auto_augment, cfg.interpolation, cfg.ra_magnitude,
                                                 cfg.augmix_severity) if train and cfg.auto_augment else None)
        self.random_erase = cfg.random_erase if train else 0.0
        self.mixup_alpha, self.cutmix_alpha = (cfg.mixup_alpha, cfg.cutmix_alpha) if train else (0.0, 0.0)
        self.mix = self.mixup_alpha > 0 or self.cutmix_alpha > 0
        self.num_classes = cfg.num_classes or r.num_classes
        self.ra_reps = cfg.ra_reps if train and cfg.ra_sampler else 0
        self.n = r.split_sizes[split]
        self.epoch_size = epoch_size or self.n
        self.seed, self.global_batch, self.train = seed, global_batch, train
        self.local = global_batch // process_count
        self.offset = process_index * self.local
        self.raw = raw and train  # uint8 images + the draws of normalise/erase/mix (train.preprocess)
        self._source = None

    def __getstate__(self):
        return {**self.__dict__, "_source": None}

    @functools.lru_cache(maxsize=2)
    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        if self.ra_reps:
            return ra_order(perm, self.ra_reps, self.epoch_size)
        return perm, None

    def _mix_params(self, step: int) -> dict | None:
        """MixUp/CutMix draws of global step ``step`` (a pure function of (seed, step))."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, step], spawn_key=(1,)))
        return augment.mixup_cutmix_params(rng, self.size, self.size, self.mixup_alpha, self.cutmix_alpha)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        if self._source is None:
            self._source = self.open_split(self.split)
        step = int(step)
        extra = 0  # leading rows read only as the MixUp/CutMix partner of this process's first row
        if self.train:
            epoch, pos = divmod(step, self.epoch_size // self.global_batch)
            start = pos * self.global_batch + self.offset
            rows = np.arange(start, start + self.local)
            if self.mix and self.local < self.global_batch and not self.raw:  # partner: previous global row
                rows = np.concatenate([[pos * self.global_batch + (self.offset - 1) % self.global_batch], rows])
                extra = 1
            order, reps = self._order(epoch)
            indices = order[rows]
            keys = [[self.seed, epoch, int(i)] for i in indices] if reps is None else \
                [[self.seed, epoch, int(i), int(k)] for i, k in zip(indices, reps[rows])]
        else:
            epoch, start = 0, step * self.global_batch + self.offset
            indices = np.arange(start, min(start + self.local, self.n))
        records = [self._source[int(i)] for i in indices]
        valid = np.array([r is not None for r in records], np.float32)
        if not valid.all():  # skip_bad: a file that failed to decode
            if self.train:  # replaced by the next readable example (deterministic: a function of the index)
                records = [r if r is not None else self._substitute(int(i)) for r, i in zip(records, indices)]
            else:  # left out of the metrics (mask 0)
                blank = {"image": np.zeros((self.size, self.size, 3), np.uint8), "label": 0}
                records = [r if r is not None else blank for r in records]
        labels = np.array([r["label"] for r in records], np.int32)
        boxes = None
        if self.train:
            images, boxes = self._augment(records, keys)
        else:
            images = self._eval(records)
        if self.raw:
            batch = {"image": images, "label": labels, **self._raw_draws(boxes, len(labels), step)}
            if self.skip_bad:
                batch["skipped"] = np.array(len(valid) - int(valid.sum()), np.int32)
            return batch
        if images.dtype != np.float32:  # (an eval transform normalises itself)
            images = _normalize(images, self.mean, self.std)
        if boxes is not None:
            for x, box in zip(images, boxes):
                augment.erase(x, box)
        if self.mix:  # torchvision's collate_fn: RandomChoice([MixUp, CutMix]) on the (global) batch
            images, labels = augment.mix_batch(images, labels, self.num_classes, self._mix_params(step))
            images, labels, valid = images[extra:], labels[extra:], valid[extra:]
        batch = {"image": images, "label": labels}
        if not self.train:
            pad = self.local - len(records)
            batch = {
                "image": np.concatenate([batch["image"], np.zeros((pad,) + batch["image"].shape[1:], np.float32)]),
                "label": np.concatenate([labels, np.zeros(pad, np.int32)]),
                "mask": np.concatenate([valid, np.zeros(pad, np.float32)]),
            }
        if self.skip_bad:
            batch["skipped"] = np.array(len(valid) - int(valid.sum()), np.int32)  # not a model input: pop it
        return batch

    def _raw_draws(self, boxes: list | None, n: int, step: int) -> dict[str, np.ndarray]:
        """The raw batch's erase boxes and the step's MixUp/CutMix draws (train.preprocess.raw_extras)."""
        from train import preprocess

        out = {}
        if self.random_erase > 0:
            out["erase"] = np.array([b if b is not None else (0, 0, 0, 0) for b in boxes], np.int32).reshape(n, 4)
        if self.mix:
            p = self._mix_params(step)
            kind = preprocess.MIXUP if p["kind"] == "mixup" else preprocess.CUTMIX
            out["mix_kind"] = np.full(n, kind, np.int32)
            out["mix_w"] = np.tile(np.array([p["lam"], 1.0 - p["lam"]], np.float32), (n, 1))
            out["mix_box"] = np.tile(np.array(p.get("box", (0, 0, 0, 0)), np.int32), (n, 1))
        return out

    def _substitute(self, i: int) -> dict:
        for k in range(1, self.n):
            r = self._source[(i + k) % self.n]
            if r is not None:
                return r
        raise BadImageError(f"no readable image in split {self.split!r}")

    def _eval(self, records: list[dict]) -> np.ndarray:
        if not records:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        if self.eval_tf is not None:  # torchvision's eval preset: resize, center crop, normalise
            return np.stack([self.eval_tf(r["image"]) for r in records])
        return np.stack([_resize(r["image"], self.size, self.interpolation) for r in records])

    def _augment(self, records: list[dict], keys: list[list[int]]) -> tuple[np.ndarray, list | None]:
        """ClassificationPresetTrain up to normalisation: crop, flip, auto-augment policy (uint8 NHWC), and the
        random erasing boxes (None: erasing off); each example from its own generator (seeded by (seed, epoch,
        index[, repetition]))."""
        rngs = [np.random.default_rng(k) for k in keys]
        flips = np.array([self.hflip and rng.random() < 0.5 for rng in rngs])
        if self.small:
            images = np.stack([_resize(r["image"], self.size, self.interpolation) for r in records])
            offsets = np.stack([rng.integers(0, 2 * (self.size // 8) + 1, size=2) for rng in rngs])
            out = list(_pad_crop_flip(images, offsets, flips))
        else:
            out = []
            for r, rng, flip in zip(records, rngs, flips):
                img = Image.fromarray(r["image"])
                img = _resized_crop(img, _random_resized_crop_box(rng, *img.size), self.size, self.interpolation)
                out.append(np.asarray(img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img))
        if self.policy is not None:
            out = [np.asarray(self.policy(Image.fromarray(a), rng)) for a, rng in zip(out, rngs)]
        boxes = None
        if self.random_erase > 0:
            boxes = [augment.random_erasing_box(rng, self.size, self.size, self.random_erase) for rng in rngs]
        return np.stack(out), boxes


def _check_batch(global_batch_size: int, process_index: int, process_count: int) -> None:
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} is not a positive multiple of "
                         f"process_count={process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} not in [0, process_count={process_count})")


def _iterate(cfg: DataConfig, steps: grain.MapDataset, reader: _BatchReader) -> Iterator[dict]:
    # In-process: 2 reader threads (PIL decodes and resizes without the GIL); in worker processes
    # 1 thread each, so N workers use N cores (more threads than cores only contend).
    threads = 2 if cfg.num_workers == 0 else 1
    ds = steps.map(reader).to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4))
    if cfg.num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's worker processes read absl flags, raising if unparsed
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers, per_worker_buffer_size=2))
    it = iter(ds)
    try:
        yield from it
    finally:
        it.close()  # stops grain's threads / worker processes


def steps_per_epoch(info: DatasetInfo, global_batch_size: int) -> int:
    """Full train batches per epoch (the remainder is dropped; each epoch is reshuffled). With --ra-sampler an
    epoch is RASampler's: num_train // 256 * 256 examples (each example ra_reps times in a row)."""
    n, what = info.epoch_size, "num_train" if info.train_epoch_size is None else "RASampler epoch size"
    if not 0 < global_batch_size <= n:
        raise ValueError(f"global_batch_size={global_batch_size} must be in [1, {what}={n}]")
    return n // global_batch_size


def train_batches(cfg: DataConfig, info: DatasetInfo, *, global_batch_size: int, seed: int, start_step: int = 0,
                  process_index: int = 0, process_count: int = 1, raw: bool = False) -> Iterator[dict]:
    """Infinite stream of local train batches {"image": f32 [L,H,W,3], "label": i32 [L]}, from step ``start_step``;
    with mixup/cutmix "label" is f32 [L, num_classes] (soft labels summing to 1).

    ``raw=True``: {"image": uint8 [L,H,W,3], "label": i32 [L]} plus the draws of the steps after the uint8
    augmentations (``train.preprocess.raw_extras``), which ``train.preprocess.DeviceFinish`` (``finish_for``)
    applies on the device to the global batch, giving bit for bit the ``raw=False`` batch.

    ``close()`` the iterator to stop grain's worker processes before it is garbage collected.
    """
    _check_batch(global_batch_size, process_index, process_count)
    steps_per_epoch(info, global_batch_size)
    reader = _BatchReader(_resolve(cfg), info.train_split, info.image_size, seed, global_batch_size,
                          process_index, process_count, train=True, cfg=cfg, epoch_size=info.epoch_size, raw=raw)
    return _iterate(cfg, grain.MapDataset.range(start_step, sys.maxsize), reader)


def finish_for(cfg: DataConfig, info: DatasetInfo):
    """The ``train.preprocess.DeviceFinish`` that completes this config's ``train_batches(raw=True)``."""
    from train import preprocess

    mean, std = (tuple(cfg.eval_transform.mean), tuple(cfg.eval_transform.std)) if cfg.eval_transform is not None \
        else (IMAGENET_MEAN, IMAGENET_STD)
    return preprocess.DeviceFinish(mean, std, num_classes=cfg.num_classes or info.num_classes,
                                   erase=cfg.random_erase > 0, mix=cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)


def raw_batch_spec(cfg: DataConfig, info: DatasetInfo, n: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{key: (shape, dtype)} of a raw train batch of n rows (for tracing the train step before data flows)."""
    from train import preprocess

    f = finish_for(cfg, info)
    s = info.image_size
    return {"image": ((n, s, s, 3), np.uint8), "label": ((n,), np.int32), **preprocess.raw_extras(n, f.erase, f.mix)}


def eval_batches(cfg: DataConfig, info: DatasetInfo, *, global_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
    """One pass over the eval split; the last batch is zero-padded, with "mask" f32 [L] 0 on padding."""
    _check_batch(global_batch_size, process_index, process_count)
    reader = _BatchReader(_resolve(cfg), info.eval_split, info.eval_size, 0, global_batch_size,
                          process_index, process_count, train=False, cfg=cfg)
    return _iterate(cfg, grain.MapDataset.range(-(-info.num_eval // global_batch_size)), reader)
