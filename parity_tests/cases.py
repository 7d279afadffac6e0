"""Per-model parity settings: which input sizes, which builder knobs, which tier.

Defaults: eval at 224x224 and the odd 199x227; train mode (float64) at 64x64; dropout and
stochastic depth off. Tiers (`pytest -m large` runs the large one):
- `large` (default: above LARGE_PARAMS): the default suite runs eval at reduced sizes; the large
  tier at full size.
- `train_large` (default: `large`): the float64 train-mode check runs in the large tier only.
  Set for the deepest variants of a family whose smaller variants exercise the same code
  (their float64 gradient compile is the costliest part of the default suite).
- `eval_large` (default: above HUGE_PARAMS, i.e. regnet_y_128gf): eval too is large-tier only
  (its eval alone peaks at 9.3 GB resident, two at once overflow a 24 GB CI machine).
- `features_train_large`: the family representative's backbone float64 train check
  (test_features_train) runs in the large tier. Set where the same model's test_train already
  runs its float64 forward and gradients by default and the backbone machinery (intercepted
  forward, early stop, the gradient set) is covered by the families that keep the check.

Default-suite budget (2026-12-02): the suite took 40 min on the 2-core machine (CI: 46 min with
the install); the `_budget` moves at the end of OVERRIDES take out the costliest repeats: the
backbone float64 check where the model's own train check runs, train checks of a family's
other widths/depths, and evals of the widest/deepest variants whose blocks a smaller sibling
runs. A second round (same day, CI 41 min) moved more train checks and evals of the same kind.
A third round (2026-12-03; the suite at 42 min here, CI 51 min with the install): the 1-D
float64 train checks of the builds whose 2-D twin trains by default and whose 1-D layers
resnet18 and mobilenet_v3_small train in 1-D (`train_1d_large`), the backbone float64 checks of
six more families whose own train check runs by default, and evals of further widths and
depths of blocks a sibling's default eval runs. Every moved check still runs in
`pytest -m large`.

1-D builds (`spatial_dims=1`, (N, L, C) input): a model with `lengths_1d` also gets
`test_eval_1d` (float32 logits and layer by layer at every length) and `test_train_1d`
(float64 at `train_length_1d`), built with `in_channels=IN_CHANNELS_1D`. ONE_D is the
default: an even and an odd length; training at 128 (a 4-long map at the head, 8 values per
channel for train-mode BN at batch 2, as 64x64 images give 2x2 maps).
"""
from __future__ import annotations

import dataclasses

EVAL_SIZES = ((224, 224), (199, 227))
SMALL_EVAL_SIZES = ((96, 96), (67, 81))
TRAIN_SIZE = (64, 64)
TRAIN_KWARGS = {"dropout": 0.0, "stochastic_depth_prob": 0.0}
ONE_D_LENGTHS = (224, 199)
ONE_D_TRAIN_LENGTH = 128
IN_CHANNELS_1D = 2
LARGE_PARAMS = 100_000_000
HUGE_PARAMS = 300_000_000


@dataclasses.dataclass(frozen=True)
class Case:
    eval_sizes: tuple = EVAL_SIZES
    train_size: tuple = TRAIN_SIZE
    kwargs: tuple = ()             # builder kwargs for both checks, as ((k, v), ...)
    train_kwargs: tuple = ()       # builder kwargs for the float64 train check only (over kwargs)
    large: bool | None = None        # None: decided by parameter count
    train_large: bool | None = None  # None: same as large
    eval_large: bool | None = None   # None: decided by parameter count
    full_sizes: tuple | None = None  # large-tier eval sizes; None: EVAL_SIZES
    layers_at_every_size: bool = False  # eval: layer by layer at every size, not the first only
    features_train_size: tuple | None = None  # backbone float64 train check (None: train_size)
    features_train_large: bool = False  # family representative's backbone float64 check: large tier
    lengths_1d: tuple = ()           # 1-D eval lengths (empty: no 1-D parity tests)
    train_length_1d: int = ONE_D_TRAIN_LENGTH
    train_1d_large: bool = False     # the 1-D build's float64 train check: large tier


ONE_D = dict(lengths_1d=ONE_D_LENGTHS)


# Family overrides (one block per family).
OVERRIDES: dict[str, Case] = {
    # regnet
    # regnet_y_128gf trains at the default 64x64, not 32x32: there block4 sees 1x1 maps, train-mode
    # BN normalises 2 values per channel, and float64 gradients lose digits to that conditioning
    # (2.5e-9 measured at 32x32, 2.1e-12 at 64x64).
    # Default-suite budget (2026-12-01, backbones added): the float64 train check by default for
    # regnet_x/y_400mf and _800mf (X and Y blocks, SE included); the wider variants repeat them.
    **{n: Case(train_large=True) for n in (
        "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
        "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf")},
    # resnet
    # Deepest variants: float64 train check in the large tier (resnet50 / resnext50_32x4d
    # exercise the same blocks by default).
    # Default-suite budget (2026-12-01, backbones added): the 101/152-layer variants' eval and
    # resnet101's train check run in the large tier (resnet50 / resnext50_32x4d run their blocks).
    "resnet101": Case(train_large=True),
    "resnet152": Case(train_large=True, eval_large=True),
    "resnext101_32x8d": Case(train_large=True, eval_large=True),
    "resnext101_64x4d": Case(train_large=True, eval_large=True),
    "wide_resnet50_2": Case(train_large=True),  # (default-suite budget: resnet50's blocks, wider)
    "resnet18": Case(**ONE_D),
    # vgg
    # Adaptive 7x7 pooling + NCHW flatten at every map size: 3x4 (100x130), 1x1 (32x32), 6x7.
    **{n: Case(eval_sizes=((100, 130), (32, 32), (199, 227)))
       for n in ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")},
    # alexnet
    # Adaptive 6x6 pooling at maps 6x6 (224), 1x1 (63, the smallest valid input), 2x3, 5x6.
    "alexnet": Case(eval_sizes=((224, 224), (63, 63), (100, 130), (199, 227))),
    # squeezenet
    # lenet
    "lenet5": Case(eval_sizes=((32, 32),), train_size=(32, 32)),
    # googlenet
    # aux-head dropout off for train parity; odd train size exercises every ceil-mode pool.
    "googlenet": Case(train_size=(97, 97), kwargs=(("dropout_aux", 0.0),)),
    # inception
    # The auxiliary head (train mode) needs an input of at least 299x299.
    # (The backbone has no auxiliary head: its float64 train check runs at the odd 107x139.)
    "inception_v3": Case(eval_sizes=((299, 299), (107, 139)), train_size=(299, 299),
                         features_train_size=(107, 139)),
    # densenet
    # densenet121 and densenet161 (other growth rate and stem width) keep the train check.
    # densenet169/201 (densenet121's blocks, deeper): eval too in the large tier (budget, 2026-12-01).
    "densenet169": Case(train_large=True, eval_large=True),
    "densenet161": Case(train_large=True),  # (default suite budget, 2026-12-01: densenet121 covers it)
    "densenet201": Case(train_large=True, eval_large=True),
    # mobilenetv1
    # mobilenetv2
    "mobilenet_v2": Case(**ONE_D),
    # mobilenetv3
    "mobilenet_v3_small": Case(**ONE_D),
    # mnasnet
    "mnasnet1_0": Case(**ONE_D),
    "mnasnet1_3": Case(train_large=True),  # (default-suite budget: mnasnet0_5/1_0 run its blocks)
    "mnasnet0_75": Case(train_large=True),
    # shufflenetv2: x0_5 and x1_0 keep the train check; x1_5 / x2_0 are other widths (budget)
    "shufflenet_v2_x1_5": Case(train_large=True),
    "shufflenet_v2_x2_0": Case(train_large=True),
    # efficientnet
    # b5 keeps the train check for the b5-b7 BatchNorm settings (eps 1e-3, momentum 0.01);
    # v2_s for the fused-MBConv family.
    "efficientnet_b0": Case(**ONE_D),
    # Default-suite budget (2026-12-01, 103 models): b1-b4 repeat b0's MBConv blocks at other
    # widths/depths, their float64 train checks run in the large tier; b6/b7 eval at reduced sizes.
    **{n: Case(train_large=True) for n in ("efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
                                           "efficientnet_b4")},
    # b6/b7/v2_l (b5's / v2_m's blocks, wider and deeper): eval in the large tier only (budget).
    "efficientnet_b6": Case(large=True, eval_large=True),
    "efficientnet_b7": Case(large=True, eval_large=True),
    "efficientnet_v2_l": Case(large=True, eval_large=True),
    "efficientnet_v2_m": Case(train_large=True),
    # convnext
    # convnext_tiny: eval at 224 and 199x227 + float64 train at 64x64 in the default suite;
    # small/base/large run the same blocks (other widths/depths): default suite eval at the
    # reduced sizes, full-size eval and float64 train in the large tier.
    # base/large: eval in the large tier only (default-suite budget, 2026-12-01).
    "convnext_small": Case(large=True),
    "convnext_base": Case(large=True, eval_large=True),
    "convnext_large": Case(large=True, eval_large=True),
    # maxvit
    # Built for one input size (the harness passes input_size=(h, w) per size): with 7x7
    # partitions the valid sizes are 221..224 per side (and 445..448, ...), all block grids
    # square. 221x223 exercises odd stem/stride-2 maps at 224's cost. The float64 train check
    # at 224 takes 73 CPU-s and 4.8 GB peak (measured once: grads 3.7e-13): the default suite
    # trains at 64x64 with 2x2 partitions instead (block grids 16/8/4/2, same code paths;
    # 45 CPU-s, 2.3 GB).
    "maxvit_t": Case(eval_sizes=((224, 224), (221, 223)), train_kwargs=(("partition_size", 2),)),
    # darknet (timm)
    # Eval for all five by default; the float64 train check by default for darknet17 (dark
    # stages), sedarknet21 (+ SE) and cspdarknet53 (cross stages: split, concat); darknet21 and
    # darknet53 repeat darknet17's blocks (train 49 / 81 s measured) and go to the large tier.
    "darknet21": Case(train_large=True),
    "darknet53": Case(train_large=True),
    # vit
    # A ViT is defined for one input size (image_size, 224 by default; torchvision asserts it):
    # every check runs at 224x224, train included. vit_b_32 keeps eval + float64 train in the
    # default suite; vit_b_16 eval by default, its train check in the large tier;
    # tests/test_vit.py checks vit_b_16 built with image_size=160 (eval, layer by layer) and
    # interpolate_embeddings end to end. vit_l_* / vit_h_14 (> 300M parameters) are large-tier
    # only (eval_large by parameter count), eval at 224.
    "vit_b_16": Case(eval_sizes=((224, 224),), train_size=(224, 224), train_large=True),
    "vit_b_32": Case(eval_sizes=((224, 224),), train_size=(224, 224)),
    **{n: Case(eval_sizes=((224, 224),), full_sizes=((224, 224),), train_size=(224, 224))
       for n in ("vit_l_16", "vit_l_32", "vit_h_14")},
    # vovnet
    # ese_vovnet19b_dw (depthwise, eSE) and ese_vovnet39b (residual, eSE) keep the train check;
    # vovnet39a (V1: no residual, no eSE) keeps eval. 99b: reduced-size eval by default.
    "vovnet39a": Case(train_large=True),
    "vovnet57a": Case(train_large=True),
    "ese_vovnet57b": Case(train_large=True),
    "ese_vovnet99b": Case(large=True),
    # timm_mobilenetv1
    # mobilenetv1_100 keeps the train check (the others differ in widths / one head conv).
    "mobilenetv1_100h": Case(train_large=True),
    "mobilenetv1_125": Case(train_large=True),
    # swin
    # Eval at 224 and 199x227 (maps 49x56 -> 25x28 -> 13x14 -> 7x7: padding to window multiples,
    # odd patch merging). Train (float64) at 96x160: maps 24x40, 12x20, 6x10, 3x5 give shifted
    # padded windows and, at stage 3, a shift along W only (one window covers H: torchvision's
    # no-shift rule per axis), for window 7 and window 8 alike.
    # swin_t / swin_v2_t: eval + train in the default suite (22-27 s per test on 2 cores at load
    # ~5; 4.7 / 6.5 min for both of a model's tests at load ~9). _s and _b run the same blocks
    # (stage 3 deeper, _b wider): large tier only, eval at full size (35-60 s each) and train
    # (45-75 s each): no code path that _t lacks.
    **{n: Case(train_size=(96, 160)) for n in ("swin_t", "swin_v2_t")},
    **{n: Case(train_size=(96, 160), large=True, eval_large=True)
       for n in ("swin_s", "swin_v2_s", "swin_b", "swin_v2_b")},
    # semnasnet (timm's MnasNet-A1): layer by layer at 224x224 and 199x227; semnasnet_100 in 1-D
    # semnasnet_100 keeps the float64 train check (050/075/140: other widths of its blocks).
    **{n: Case(layers_at_every_size=True, train_large=True)
       for n in ("semnasnet_050", "semnasnet_075", "semnasnet_140")},
    "semnasnet_100": Case(layers_at_every_size=True, **ONE_D),
}


def _budget(names, **fields) -> None:
    """Default-suite budget moves over the family blocks above (fields replaced, others kept)."""
    for n in names:
        OVERRIDES[n] = dataclasses.replace(OVERRIDES.get(n, Case()), **fields)


# Default-suite budget (2026-12-02; see the module docstring). Backbone float64 check in the
# large tier where the representative's own float64 train check runs by default; the families
# that keep it (resnet18, regnet_y_400mf, vgg11, alexnet, squeezenet1_1, lenet5,
# mobilenet_v1_0_25, shufflenet_v2_x0_5, darknet17, ese_vovnet19b_dw, mobilenetv1_100, vit_b_32)
# cover every feature rule (every candidate, last per resolution, ViT's token map).
_budget(("densenet121", "maxvit_t", "convnext_tiny", "efficientnet_b0", "mnasnet0_5", "mobilenet_v3_small",
         "mobilenet_v2", "semnasnet_100", "googlenet", "inception_v3", "swin_t"), features_train_large=True)
# Train checks of other widths / depths of blocks a sibling trains by default: resnet18 (basic
# blocks), regnet_x/y_400mf, mobilenet_v1_0_25, mnasnet0_5, shufflenet_v2_x0_5, mobilenet_v3_small.
_budget(("resnet34", "regnet_x_800mf", "regnet_y_800mf", "mobilenet_v1", "mobilenet_v1_0_5", "mobilenet_v1_0_75",
         "mnasnet1_0", "shufflenet_v2_x1_0", "mobilenet_v3_large"), train_large=True)
# Eval of the widest / deepest variants in the large tier (at full size): their blocks run in
# the default suite's eval of regnet_x/y_400mf..3_2gf, wide_resnet50_2, efficientnet_b0..b3/b5,
# efficientnet_v2_s, vgg11/vgg11_bn, convnext_tiny.
_budget(("regnet_x_8gf", "regnet_x_16gf", "regnet_x_32gf", "regnet_y_8gf", "regnet_y_16gf", "regnet_y_32gf",
         "wide_resnet101_2", "efficientnet_b4", "efficientnet_v2_m", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
         "vgg19", "vgg19_bn", "convnext_small"), eval_large=True)


# Second round (2026-12-02, CI 41 min with the install; this machine 38 min): train checks whose
# ops another default-suite train check differentiates (efficientnet_b5/v2_s: b0's MBConv,
# fused MBConv is its conv+BN+SiLU; inception_v3: googlenet's BasicConv2d and both pools;
# regnet_x_400mf: regnet_y_400mf without SE; ese_vovnet39b: 19b_dw's OSA blocks, dense convs;
# resnext50_32x4d: grouped convs as in the RegNets; squeezenet1_0: squeezenet1_1's Fire;
# sedarknet21: darknet17's blocks with the SE of the mobile families).
_budget(("efficientnet_b5", "efficientnet_v2_s", "inception_v3", "regnet_x_400mf", "ese_vovnet39b",
         "resnext50_32x4d", "squeezenet1_0", "sedarknet21"), train_large=True)
# ... and evals of other widths/depths whose blocks a smaller sibling's eval runs by default
# (efficientnet_b0, densenet121, semnasnet_050..100, regnet_x/y_400mf/800mf, resnet50,
# ese_vovnet39b, vovnet39a, darknet21, shufflenet_v2_x0_5/x1_0, mobilenetv1_100/100h, mnasnet0_5..1_0,
# vit_b_32).
_budget(("efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b5", "densenet161",
         "semnasnet_140", "regnet_x_1_6gf", "regnet_y_1_6gf", "regnet_x_3_2gf", "regnet_y_3_2gf", "resnet101",
         "ese_vovnet57b", "ese_vovnet99b", "vovnet57a", "darknet53", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
         "mobilenetv1_125", "mnasnet1_3", "vit_b_16"), eval_large=True)


# Third round (2026-12-03, the suite 42 min on this machine, CI 51 min with the install; see
# docs/benchmarks.md). 1-D float64 train checks in the large tier where resnet18's (basic blocks)
# and mobilenet_v3_small's (inverted residuals, depthwise, SE, hardswish) 1-D train checks run
# the same 1-D layers by default and the model's 2-D train check runs by default (mobilenet_v2,
# mnasnet0_5 for mnasnet1_0, efficientnet_b0, semnasnet_100); their 1-D evals stay.
_budget(("mobilenet_v2", "mnasnet1_0", "efficientnet_b0", "semnasnet_100"), train_1d_large=True)
# Backbone float64 checks of further families whose own float64 train check runs by default (the
# round-1 rule): the machinery (intercepted forward in train mode, early stop, gradients through
# it) and every feature rule stay covered by resnet18 ("layer*", last per resolution), vgg11
# (its only default float64 check), squeezenet1_1, alexnet, lenet5 ("features.*") and vit_b_32
# ("all", the token map).
_budget(("regnet_y_400mf", "shufflenet_v2_x0_5", "mobilenet_v1_0_25", "mobilenetv1_100", "ese_vovnet19b_dw",
         "darknet17"), features_train_large=True)
# ... and evals of widths / depths whose blocks a sibling's default eval runs: regnet_x/y_800mf
# (400mf), semnasnet_075 (050, 100), mnasnet0_75 (0_5, 1_0), mobilenet_v1_0_5 / 0_75
# (mobilenet_v1, 0_25), wide_resnet50_2 (resnet50), resnet34 (resnet18), mobilenet_v3_large
# (mobilenet_v3_small: the same block types), darknet21 (darknet17).
_budget(("regnet_x_800mf", "regnet_y_800mf", "semnasnet_075", "mnasnet0_75", "mobilenet_v1_0_5",
         "mobilenet_v1_0_75", "wide_resnet50_2", "resnet34", "mobilenet_v3_large", "darknet21"),
        eval_large=True)


def case(name: str) -> Case:
    return OVERRIDES.get(name, Case())
