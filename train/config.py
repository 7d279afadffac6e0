"""Training configuration: one frozen dataclass, filled from the command line by `parse_args`.

Every field is a CLI option (`--snake-case` spelled with dashes); `HELP` documents each one.
Defaults train `regnet_x_400mf` on the bundled digits32 dataset to >= 95% test top-1 in a few
minutes on a small CPU (measured figures: README, "Training"). They are AdamW's: with SGD
(torch semantics) RegNet diverges on this data at large learning rates; pass e.g.
`--optimizer sgd --lr 0.01 --weight-decay 5e-5` for an SGD run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Sequence

from train.data import DataConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    # model / data
    model: str = "regnet_x_400mf"
    dataset: str = "digits32"
    data_dir: str | None = None
    download: bool = False
    num_workers: int = 0
    val_fraction: float = 0.1
    skip_bad_images: bool = False
    eval_weights: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    init_from: str | None = None
    dtype: str = "float32"
    # train/eval preprocessing and augmentation (torchvision references/classification option names)
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
    # optimisation
    optimizer: str = "adamw"
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.05
    wd_on_bn_bias: bool = True
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    epochs: int = 25
    batch_size: int = 128
    grad_accum: int = 1
    seed: int = 0
    # run
    workdir: str | None = None
    keep_checkpoints: int = 2
    checkpoint_every: int = 0
    eval_only: bool = False
    log_every: int = 10
    progress: bool = True
    # distributed
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def data_config(self) -> DataConfig:
        tf = None
        if self.eval_weights:
            from flaxnets.transforms import eval_transform

            tf = eval_transform(self.model, self.eval_weights)
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(DataConfig) if hasattr(self, f.name)}
        return DataConfig(**{**shared, "eval_transform": tf})

    def resolved_workdir(self) -> str:
        if self.workdir:
            return self.workdir
        name = self.dataset.rstrip("/").split("/")[-1].split(":")[-1] or "data"
        return os.path.join("runs", f"{self.model}-{name}")


HELP = {
    "model": "registered flaxnets model name (see flaxnets.list_models())",
    "dataset": "TFDS dataset name (prepared in ArrayRecord format), 'digits32' (built locally), or folder:PATH "
               "(ImageFolder tree)",
    "data_dir": "TFDS data directory (None: ~/.cache/flaxnets/tensorflow_datasets)",
    "download": "download and prepare the TFDS dataset if it is missing",
    "num_workers": "data loading worker processes (0: in-process threads)",
    "val_fraction": "folder:PATH trees without train/ and val/ subfolders: this fraction of the images (a fixed "
                    "random split, independent of --seed) is held out for evaluation",
    "skip_bad_images": "folder:PATH datasets: leave out files that are not readable images (found by a header check "
                       "when the dataset is opened) and replace (train) or mask out (eval) images that fail to decode "
                       "later, e.g. truncated JPEGs; counts go to summary.json. Without it such a file is an error "
                       "naming it",
    "eval_weights": "evaluate with the eval preprocessing of this torchvision/timm weights release of --model "
                    "(DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2, ...; flaxnets.list_weights(MODEL)): its resize, "
                    "interpolation, center crop and mean/std; --image-size defaults to its crop size and train "
                    "batches use its mean/std (None: resize image_size/0.875 + center crop, bilinear, ImageNet "
                    "mean/std)",
    "num_classes": "classifier outputs (None: the dataset's number of classes)",
    "image_size": "train/eval image size (None: the dataset's native size, 224 for ImageNet-like data)",
    "init_from": "initial weights: torchvision .pth/.safetensors, or a Flax .msgpack from `python -m "
                 "flaxnets.convert`; a classifier head of another shape is re-initialised",
    "dtype": "compute dtype: float32 or bfloat16 (parameters and BatchNorm statistics stay float32)",
    "train_crop_size": "train RandomResizedCrop size (None: --image-size); torchvision's --train-crop-size",
    "val_resize_size": "eval: resize the shorter side to this (None: int(val_crop_size / 0.875))",
    "val_crop_size": "eval center-crop size (None: the train size); the eval step is compiled at this size",
    "interpolation": "interpolation of the train crop resize, the eval resize and the auto-augment geometric ops "
                     "(nearest, nearest-exact, bilinear, bicubic, box, hamming, lanczos; with --auto-augment: "
                     "nearest/bilinear/bicubic, augmix: nearest/bilinear, as torchvision allows)",
    "auto_augment": "per-image policy after crop and flip, as torchvision.transforms.v2: imagenet (AutoAugment, "
                    "ImageNet policy), ra (RandAugment, 2 ops), ta_wide (TrivialAugmentWide), augmix (AugMix) "
                    "(None: off); see docs/augmentations.md",
    "ra_magnitude": "RandAugment magnitude bin (0..30 of 31)",
    "augmix_severity": "AugMix severity (1..10)",
    "random_erase": "RandomErasing probability (scale 0.02-0.33, ratio 0.3-3.3, value 0, on the normalised "
                    "image; 0: off)",
    "mixup_alpha": "MixUp with lam ~ Beta(alpha, alpha) on each batch (0: off; with --cutmix-alpha one of the "
                   "two per batch, uniformly); labels become soft, --label-smoothing applies to them",
    "cutmix_alpha": "CutMix with lam ~ Beta(alpha, alpha) on each batch (0: off)",
    "ra_sampler": "repeated-augmentation sampling, torchvision's RASampler: each example ra_reps times in a row, "
                  "differently augmented; an epoch is num_train // 256 * 256 examples, as RASampler's",
    "ra_reps": "repetitions per example with --ra-sampler",
    "optimizer": "sgd (torch.optim.SGD semantics) or adamw",
    "lr": "peak learning rate for the global batch",
    "momentum": "SGD momentum (AdamW: beta1)",
    "nesterov": "Nesterov momentum (SGD)",
    "weight_decay": "weight decay (SGD: added to the gradient as torch does; AdamW: decoupled)",
    "wd_on_bn_bias": "apply weight decay to BatchNorm and bias parameters (all 0/1-d leaves); "
                     "--no-wd-on-bn-bias exempts them",
    "warmup_epochs": "linear warmup length in epochs (from lr/100), then cosine decay to 0",
    "label_smoothing": "label smoothing of the cross-entropy (torch's meaning)",
    "ema_decay": "decay of an exponential moving average of params and BatchNorm statistics, "
                 "evaluated alongside (0: off)",
    "epochs": "training epochs",
    "batch_size": "global batch size (over all devices and processes)",
    "grad_accum": "split each global batch into this many sequential micro-batches (gradient accumulation)",
    "seed": "random seed (init, data order, augmentation, dropout)",
    "workdir": "checkpoints, TensorBoard logs and summary.json (None: runs/<model>-<dataset>); "
               "an existing workdir resumes from its latest checkpoint",
    "keep_checkpoints": "keep this many latest checkpoints (plus the best by eval top-1)",
    "checkpoint_every": "also checkpoint every N steps (0: only at the end of each epoch)",
    "eval_only": "evaluate --init-from (or the workdir's latest checkpoint) and exit",
    "log_every": "log train scalars every N steps",
    "progress": "show a tqdm progress bar per epoch",
    "coordinator_address": "multi-process: host:port of process 0 (env JAX_COORDINATOR_ADDRESS)",
    "num_processes": "multi-process: number of processes (env JAX_NUM_PROCESSES)",
    "process_id": "multi-process: this process's index (env JAX_PROCESS_ID)",
}
CHOICES = {"dtype": ("float32", "bfloat16"), "optimizer": ("sgd", "adamw")}
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def _type(field: dataclasses.Field):
    t = str(field.type)
    return int if t.startswith("int") else float if t.startswith("float") else str


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.main",
                                description="Train or evaluate a flaxnets classifier.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=HELP[f.name])
        else:
            default = f.default
            if f.name in ENV and os.environ.get(ENV[f.name]):
                default = _type(f)(os.environ[ENV[f.name]])
            p.add_argument(flag, type=_type(f), default=default, choices=CHOICES.get(f.name),
                           help=HELP[f.name])
    return p


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    return TrainConfig(**vars(build_parser().parse_args(argv)))
