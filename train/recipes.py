"""`--recipe NAME`: torchvision's documented ImageNet training commands as TrainConfig presets.

Each preset is torchvision references/classification/train.py's argparse defaults
(`TORCHVISION_DEFAULTS`) updated with the options of one documented command, in TrainConfig
field names (the same names as train.py's `dest`s). Two translations:

- `batch_size` is GLOBAL here: train.py's `--batch-size` is per GPU, so a preset holds
  (GPUs x --batch-size) of the command (8 GPUs: `torchrun --nproc_per_node=8`). lr is not
  rescaled: torchvision's lr is already the one for that global batch.
- `--amp` (CUDA float16 autocast) is not carried: presets train in float32 (`--dtype bfloat16`
  is this trainer's mixed precision).

`model` is the command's model; `python -m train.main --recipe NAME --model OTHER ...` trains
OTHER with the recipe, and every option given explicitly overrides the preset. The sources and
deviations are in docs/recipes.md.
"""
from __future__ import annotations

import difflib

# references/classification/train.py `get_args_parser` defaults (torchvision main; README "Except
# otherwise noted ... 8x V100 GPUs with --batch_size 32 --epochs 90 --lr 0.1 --momentum 0.9 --wd 1e-4
# --lr-step-size 30 --lr-gamma 0.1"), plus this trainer's own switches set to torchvision's behaviour.
GPUS = 8
TORCHVISION_DEFAULTS = {
    "opt": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "norm_weight_decay": None, "bias_weight_decay": None, "transformer_embedding_decay": None,
    "label_smoothing": 0.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
    "lr_scheduler": "steplr", "lr_warmup_epochs": 0, "lr_warmup_method": "constant", "lr_warmup_decay": 0.01,
    "lr_step_size": 30, "lr_gamma": 0.1, "lr_min": 0.0,
    "auto_augment": None, "ra_magnitude": 9, "augmix_severity": 3, "random_erase": 0.0,
    "model_ema": False, "model_ema_steps": 32, "model_ema_decay": 0.99998,
    "interpolation": "bilinear", "val_resize_size": 256, "val_crop_size": 224, "train_crop_size": 224,
    "clip_grad_norm": None, "ra_sampler": False, "ra_reps": 3,
    "epochs": 90, "batch_size": GPUS * 32,
    # not train.py options: this trainer's own, set to what train.py does
    "nesterov": False, "wd_on_bn_bias": True, "ema_decay": 0.0, "lr_milestones": (),
}

# The commands. Sources: torchvision references/classification/README.md (main) and the weights'
# `meta["recipe"]` links (torchvision.models.*_Weights).
_COMMANDS = {
    # ResNet50_Weights.IMAGENET1K_V2 (acc@1 80.858), meta recipe
    # https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621 :
    # torchrun --nproc_per_node=8 train.py --model resnet50 --batch-size 128 --lr 0.5 \
    #   --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
    #   --auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \
    #   --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \
    #   --train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps=4
    "resnet50": dict(
        model="resnet50", batch_size=GPUS * 128, lr=0.5, lr_scheduler="cosineannealinglr", lr_warmup_epochs=5,
        lr_warmup_method="linear", auto_augment="ta_wide", epochs=600, random_erase=0.1, weight_decay=0.00002,
        norm_weight_decay=0.0, label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0, train_crop_size=176,
        model_ema=True, val_resize_size=232, ra_sampler=True, ra_reps=4),
    # MobileNet_V2_Weights.IMAGENET1K_V1, README "MobileNetV2":
    # torchrun --nproc_per_node=8 train.py --model mobilenet_v2 --epochs 300 --lr 0.045 --wd 0.00004 \
    #   --lr-step-size 1 --lr-gamma 0.98
    "mobilenet_v2": dict(model="mobilenet_v2", epochs=300, lr=0.045, weight_decay=0.00004, lr_step_size=1,
                         lr_gamma=0.98),
    # MobileNet_V3_Large_Weights.IMAGENET1K_V1, README "MobileNetV3 Large & Small":
    # torchrun --nproc_per_node=8 train.py --model mobilenet_v3_large --epochs 600 --opt rmsprop \
    #   --batch-size 128 --lr 0.064 --wd 0.00001 --lr-step-size 2 --lr-gamma 0.973 \
    #   --auto-augment imagenet --random-erase 0.2
    # (torchvision then averaged the last 3 checkpoints that improved Acc@1: not part of the command)
    "mobilenet_v3_large": dict(
        model="mobilenet_v3_large", epochs=600, opt="rmsprop", batch_size=GPUS * 128, lr=0.064,
        weight_decay=0.00001, lr_step_size=2, lr_gamma=0.973, auto_augment="imagenet", random_erase=0.2),
    # EfficientNet_V2_S_Weights.IMAGENET1K_V1, README "EfficientNet-V2" ($TRAIN_SIZE 300, $EVAL_SIZE 384
    # for the Small variant; the weights were trained on 32 GPUs x --batch_size 32: the same global 1024):
    # torchrun --nproc_per_node=8 train.py --model efficientnet_v2_s --batch-size 128 --lr 0.5 \
    #   --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
    #   --auto-augment ta_wide --epochs 600 --random-erase 0.1 --label-smoothing 0.1 --mixup-alpha 0.2 \
    #   --cutmix-alpha 1.0 --weight-decay 0.00002 --norm-weight-decay 0.0 --train-crop-size 300 \
    #   --model-ema --val-crop-size 384 --val-resize-size 384 --ra-sampler --ra-reps 4
    "efficientnet_v2_s": dict(
        model="efficientnet_v2_s", batch_size=GPUS * 128, lr=0.5, lr_scheduler="cosineannealinglr",
        lr_warmup_epochs=5, lr_warmup_method="linear", auto_augment="ta_wide", epochs=600, random_erase=0.1,
        label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0, weight_decay=0.00002, norm_weight_decay=0.0,
        train_crop_size=300, model_ema=True, val_crop_size=384, val_resize_size=384, ra_sampler=True, ra_reps=4),
    # RegNet_Y_400MF_Weights.IMAGENET1K_V2, meta recipe https://github.com/pytorch/vision/issues/3995#new-recipe
    # (torchvision's "New Recipe", the ResNet50 V2 one without the FixRes train crop and repeated augmentation;
    # its eval transform 232/224 is the --val-resize-size):
    # torchrun --nproc_per_node=8 train.py --model regnet_y_400mf --batch-size 128 --lr 0.5 \
    #   --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
    #   --auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 \
    #   --norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 \
    #   --model-ema --val-resize-size 232
    "regnet_y_400mf": dict(
        model="regnet_y_400mf", batch_size=GPUS * 128, lr=0.5, lr_scheduler="cosineannealinglr",
        lr_warmup_epochs=5, lr_warmup_method="linear", auto_augment="ta_wide", epochs=600, random_erase=0.1,
        weight_decay=0.00002, norm_weight_decay=0.0, label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0,
        model_ema=True, val_resize_size=232),
    # ConvNeXt_Tiny_Weights.IMAGENET1K_V1, README "ConvNeXt" (weights: 16 GPUs x --batch_size 64, the same
    # global 1024; val resize 236 of the weights was "optimized in a post-training step"):
    # torchrun --nproc_per_node=8 train.py --model convnext_tiny --batch-size 128 --opt adamw --lr 1e-3 \
    #   --lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear \
    #   --auto-augment ta_wide --epochs 600 --random-erase 0.1 --label-smoothing 0.1 --mixup-alpha 0.2 \
    #   --cutmix-alpha 1.0 --weight-decay 0.05 --norm-weight-decay 0.0 --train-crop-size 176 --model-ema \
    #   --val-resize-size 232 --ra-sampler --ra-reps 4
    "convnext_tiny": dict(
        model="convnext_tiny", batch_size=GPUS * 128, opt="adamw", lr=1e-3, lr_scheduler="cosineannealinglr",
        lr_warmup_epochs=5, lr_warmup_method="linear", auto_augment="ta_wide", epochs=600, random_erase=0.1,
        label_smoothing=0.1, mixup_alpha=0.2, cutmix_alpha=1.0, weight_decay=0.05, norm_weight_decay=0.0,
        train_crop_size=176, model_ema=True, val_resize_size=232, ra_sampler=True, ra_reps=4),
    # ViT_B_16_Weights.IMAGENET1K_V1, README "vit_b_16" (weights: 64 GPUs x --batch_size 64, the same global
    # 4096):
    # torchrun --nproc_per_node=8 train.py --model vit_b_16 --epochs 300 --batch-size 512 --opt adamw \
    #   --lr 0.003 --wd 0.3 --lr-scheduler cosineannealinglr --lr-warmup-method linear --lr-warmup-epochs 30 \
    #   --lr-warmup-decay 0.033 --amp --label-smoothing 0.11 --mixup-alpha 0.2 --auto-augment ra \
    #   --clip-grad-norm 1 --ra-sampler --cutmix-alpha 1.0 --model-ema
    "vit_b_16": dict(
        model="vit_b_16", epochs=300, batch_size=GPUS * 512, opt="adamw", lr=0.003, weight_decay=0.3,
        lr_scheduler="cosineannealinglr", lr_warmup_method="linear", lr_warmup_epochs=30, lr_warmup_decay=0.033,
        label_smoothing=0.11, mixup_alpha=0.2, auto_augment="ra", clip_grad_norm=1.0, ra_sampler=True,
        cutmix_alpha=1.0, model_ema=True),
    # Swin_T_Weights.IMAGENET1K_V1, README "SwinTransformer":
    # torchrun --nproc_per_node=8 train.py --model swin_t --epochs 300 --batch-size 128 --opt adamw \
    #   --lr 0.001 --weight-decay 0.05 --norm-weight-decay 0.0 --bias-weight-decay 0.0 \
    #   --transformer-embedding-decay 0.0 --lr-scheduler cosineannealinglr --lr-min 0.00001 \
    #   --lr-warmup-method linear --lr-warmup-epochs 20 --lr-warmup-decay 0.01 --amp --label-smoothing 0.1 \
    #   --mixup-alpha 0.8 --clip-grad-norm 5.0 --cutmix-alpha 1.0 --random-erase 0.25 \
    #   --interpolation bicubic --auto-augment ta_wide --model-ema --ra-sampler --ra-reps 4 \
    #   --val-resize-size 224
    "swin_t": dict(
        model="swin_t", epochs=300, batch_size=GPUS * 128, opt="adamw", lr=0.001, weight_decay=0.05,
        norm_weight_decay=0.0, bias_weight_decay=0.0, transformer_embedding_decay=0.0,
        lr_scheduler="cosineannealinglr", lr_min=0.00001, lr_warmup_method="linear", lr_warmup_epochs=20,
        lr_warmup_decay=0.01, label_smoothing=0.1, mixup_alpha=0.8, clip_grad_norm=5.0, cutmix_alpha=1.0,
        random_erase=0.25, interpolation="bicubic", auto_augment="ta_wide", model_ema=True, ra_sampler=True,
        ra_reps=4, val_resize_size=224),
}

RECIPES = {name: {**TORCHVISION_DEFAULTS, **cmd} for name, cmd in _COMMANDS.items()}


def names() -> list[str]:
    return sorted(RECIPES)


def get(name: str) -> dict:
    """The preset `name` (a copy): {TrainConfig field: value}. ValueError listing the names."""
    if name not in RECIPES:
        close = difflib.get_close_matches(name, RECIPES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown recipe {name!r}{hint}; recipes: {', '.join(names())}")
    return dict(RECIPES[name])
