"""Training configuration: one frozen dataclass, filled from the command line by `parse_args`.

Every field is a CLI option (`--snake-case` spelled with dashes); `HELP` documents each one.
Defaults train `regnet_x_400mf` on the bundled digits32 dataset to >= 95% test top-1 in a few
minutes on a small CPU (measured figures: README, "Training"). They are AdamW's: with SGD
(torch semantics) RegNet diverges on this data at large learning rates; pass e.g.
`--optimizer sgd --lr 0.01 --weight-decay 5e-5` for an SGD run. `--recipe NAME` presets the
options of one of torchvision's documented training commands (train/recipes.py); options given
explicitly override the preset.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Sequence

from train.data import DataConfig
from train.optim import LR_SCHEDULERS, OPTIMIZERS, WARMUP_METHODS


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
    freeze_backbone: bool = False
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
    # optimisation (torchvision references/classification/train.py option names and semantics;
    # --recipe NAME presets them: train/recipes.py)
    recipe: str | None = None
    opt: str = "adamw"
    lr: float = 0.02
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.05
    norm_weight_decay: float | None = None
    bias_weight_decay: float | None = None
    transformer_embedding_decay: float | None = None
    wd_on_bn_bias: bool = True
    lr_scheduler: str = "cosine_per_step"
    lr_warmup_epochs: float = 2.0
    lr_warmup_method: str = "linear"
    lr_warmup_decay: float = 0.01
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    lr_milestones: tuple[int, ...] = ()
    lr_min: float = 0.0
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0
    model_ema: bool = False
    model_ema_steps: int = 32
    model_ema_decay: float = 0.99998
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
    "freeze_backbone": "linear probe: train only the model's final classifier layer (its `classifier` module, e.g. fc; "
                       "flaxnets.features); the forward runs in eval mode, so the trunk's BatchNorm statistics "
                       "stay fixed and dropout is off",
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
    "recipe": "preset the options of one of torchvision's documented training commands (train/recipes.py, "
              "docs/recipes.md; its model unless --model is given); any option given explicitly overrides it",
    "opt": "optimizer (torchvision's --opt; alias --optimizer): sgd, sgd_nesterov (torch.optim.SGD), rmsprop "
           "(torch.optim.RMSprop(alpha=0.9, eps=0.0316) as torchvision builds it) or adamw",
    "lr": "peak learning rate for the global batch",
    "momentum": "SGD/RMSprop momentum (AdamW: beta1)",
    "nesterov": "Nesterov momentum (SGD; same as --opt sgd_nesterov)",
    "weight_decay": "weight decay (alias --wd; SGD/RMSprop: added to the gradient as torch does; AdamW: decoupled)",
    "norm_weight_decay": "weight decay of normalisation layers' parameters (None: --weight-decay)",
    "bias_weight_decay": "weight decay of parameters named bias (None: --weight-decay)",
    "transformer_embedding_decay": "weight decay of class_token, position_embedding and relative_position_bias_table "
                                   "parameters (torchvision's list; None: --weight-decay)",
    "wd_on_bn_bias": "apply weight decay to all 0/1-d leaves (BatchNorm, biases); --no-wd-on-bn-bias exempts them",
    "lr_scheduler": "cosine_per_step (warmup, then cosine to --lr-min, updated every step), or torchvision's "
                    "per-epoch steplr, multisteplr, cosineannealinglr, exponentiallr (after the warmup, in a "
                    "SequentialLR; the lr is constant within an epoch)",
    "lr_warmup_epochs": "warmup length in epochs (alias --warmup-epochs; whole epochs for the per-epoch schedulers)",
    "lr_warmup_method": "warmup: linear (from lr * lr_warmup_decay to lr) or constant (lr * lr_warmup_decay)",
    "lr_warmup_decay": "warmup start factor (linear) or factor (constant)",
    "lr_step_size": "steplr: multiply the lr by --lr-gamma every this many epochs",
    "lr_gamma": "steplr/multisteplr/exponentiallr decay factor",
    "lr_milestones": "multisteplr: epochs (counted from the end of the warmup, as torch's SequentialLR does) at "
                     "which the lr is multiplied by --lr-gamma",
    "lr_min": "cosine schedules: final lr (eta_min)",
    "clip_grad_norm": "clip gradients to this global L2 norm (torch.nn.utils.clip_grad_norm_; None: off)",
    "label_smoothing": "label smoothing of the cross-entropy (torch's meaning)",
    "model_ema": "torchvision's EMA of params and buffers (updated every --model-ema-steps steps with the decay "
                 "adjusted by global batch * steps / epochs; reset during warmup epochs), evaluated alongside",
    "model_ema_steps": "--model-ema: update the average every this many steps of an epoch",
    "model_ema_decay": "--model-ema: decay before torchvision's adjustment",
    "ema_decay": "per-step EMA of params and BatchNorm statistics with decay min(d, (1+t)/(10+t)), evaluated "
                 "alongside (0: off; --model-ema is torchvision's)",
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
CHOICES = {"dtype": ("float32", "bfloat16"), "opt": OPTIMIZERS, "lr_scheduler": LR_SCHEDULERS,
           "lr_warmup_method": WARMUP_METHODS}
LOWER = {"opt", "lr_scheduler", "lr_warmup_method"}  # torchvision lower-cases these
ALIASES = {"opt": ("--optimizer",), "weight_decay": ("--wd",), "lr_warmup_epochs": ("--warmup-epochs",)}
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def _type(field: dataclasses.Field):
    t = str(field.type)
    return int if t.startswith("int") else float if t.startswith("float") else str


def build_parser(suppress_defaults: bool = False) -> argparse.ArgumentParser:
    """The CLI; `suppress_defaults`: options not on the command line stay out of the namespace
    (how `parse_args` tells explicit options from defaults)."""
    p = argparse.ArgumentParser(prog="python -m train.main",
                                description="Train or evaluate a flaxnets classifier.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flags = ["--" + f.name.replace("_", "-"), *ALIASES.get(f.name, ())]
        default = f.default
        if f.name in ENV and os.environ.get(ENV[f.name]):
            default = _type(f)(os.environ[ENV[f.name]])
        if suppress_defaults:
            default = argparse.SUPPRESS
        if f.type == "bool":
            p.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                           help=HELP[f.name])
        elif str(f.type).startswith("tuple"):
            p.add_argument(*flags, dest=f.name, type=int, nargs="*", default=default, help=HELP[f.name])
        else:
            typ = (lambda v: v.lower()) if f.name in LOWER else _type(f)
            p.add_argument(*flags, dest=f.name, type=typ, default=default, choices=CHOICES.get(f.name),
                           help=HELP[f.name])
    return p


def explicit_options(argv: Sequence[str] | None = None) -> dict:
    """{field: value} of the options given on the command line."""
    return vars(build_parser(suppress_defaults=True).parse_args(argv))


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """TrainConfig from the command line: defaults, then the --recipe preset, then every
    option given explicitly."""
    from train import recipes

    parser = build_parser()
    values = vars(parser.parse_args(argv))
    values["lr_milestones"] = tuple(values["lr_milestones"])
    if values["recipe"]:
        try:
            preset = recipes.get(values["recipe"])
        except ValueError as e:
            parser.error(str(e))
        explicit = explicit_options(argv)
        values.update({k: v for k, v in preset.items() if k not in explicit})
    return TrainConfig(**values)
