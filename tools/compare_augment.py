"""Development-only: train/augment.py against torchvision 0.28's augmentations, live, on random cases.

1. 300 random crops (20..230 px, both sample photos) x one random op each of TrivialAugmentWide's space on
   PIL and of AugMix's space on uint8 tensors, random interpolation, table and off-table magnitudes, both
   signs: max |diff| and differing pixels per op.
2. 40 seeds x whole AutoAugment / RandAugment / TrivialAugmentWide / AugMix passes on 224x224 crops, torch's
   draws recorded and replayed: max |diff| per policy.

Needs torchvision (through the CPU shim); CI uses the goldens of tools/gen_augment_golden.py. Run from the
repository root: python tools/compare_augment.py
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("TORCHVISION_SHIM_DIR", "/work/shared/tools"))
sys.path.insert(0, REPO)
from torchvision_shim import torchvision  # noqa: E402,F401

from train import augment as A  # noqa: E402

import numpy as np, torch, collections
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms import v2
ims = load_sample_images().images
tv = v2.TrivialAugmentWide(); fill = {Image.Image: None, torch.Tensor: None}
rng = np.random.default_rng(123)
worst = collections.defaultdict(int); npx = collections.Counter(); tot = collections.Counter()
for it in range(300):
    im = ims[it % 2]; h, w = int(rng.integers(20, 230)), int(rng.integers(20, 230))
    y, x = int(rng.integers(0, 427 - h)), int(rng.integers(0, 640 - w))
    c = np.ascontiguousarray(im[y:y+h, x:x+w])
    for kind in ("pil", "tensor"):
        space = A.TRIVIALAUGMENT_SPACE if kind == "pil" else A.AUGMIX_SPACE
        op = list(space)[int(rng.integers(len(space)))]
        interp = ["nearest", "bilinear", "bicubic"][int(rng.integers(3 if kind == "pil" else 2))]
        fn, signed = space[op]
        mags = fn(31, h, w)
        mag = 0.0 if mags is None else float(mags[int(rng.integers(31 if kind == "pil" else 10))])
        if op == "Posterize" and kind == "pil": mag = max(mag, 1)
        if signed and rng.random() < 0.5: mag = -mag
        if op in ("ShearX","ShearY","Rotate","TranslateX","TranslateY") and rng.random() < 0.5: mag = mag * float(rng.uniform(0.1, 1))  # off-table values too
        if kind == "pil":
            want = np.asarray(tv._apply_image_or_video_transform(Image.fromarray(c), op, mag, interpolation=v2.InterpolationMode(interp), fill=fill))
            got = np.asarray(A.apply_op(Image.fromarray(c), op, mag, interp))
        else:
            t = torch.from_numpy(c).permute(2, 0, 1).contiguous()
            want = tv._apply_image_or_video_transform(t, op, mag, interpolation=v2.InterpolationMode(interp), fill=fill).permute(1, 2, 0).numpy()
            got = A.apply_op_tensor(c, op, mag, interp)
        d = np.abs(want.astype(int) - got)
        worst[(kind, op)] = max(worst[(kind, op)], int(d.max())); npx[(kind, op)] += int((d > 0).sum()); tot[(kind, op)] += d.size
for k in sorted(worst): print(k, "max", worst[k], "pixels differing", npx[k], "of", tot[k])

import numpy as np, torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision.transforms import v2
ims = load_sample_images().images
def record(t):
    calls = []; orig = t._apply_image_or_video_transform
    def wrapped(image, tid, mag, interpolation, fill):
        calls.append((image, tid, float(mag))); return orig(image, tid, mag, interpolation, fill)
    t._apply_image_or_video_transform = wrapped; return calls
worst = {}
for seed in range(40):
    c = np.ascontiguousarray(ims[seed % 2][seed:seed + 224, 2 * seed:2 * seed + 224])
    for name in ("imagenet", "ra", "ta_wide", "augmix"):
        interp = ["nearest", "bilinear", "bicubic"][seed % (2 if name == "augmix" else 3)]
        I = v2.InterpolationMode(interp)
        t = {"imagenet": lambda: v2.AutoAugment(interpolation=I), "ra": lambda: v2.RandAugment(interpolation=I),
             "ta_wide": lambda: v2.TrivialAugmentWide(interpolation=I), "augmix": lambda: v2.AugMix(severity=1 + seed % 10, interpolation=I)}[name]()
        calls = record(t); dl = []
        if name == "augmix":
            o = t._sample_dirichlet; t._sample_dirichlet = lambda p: dl.append(o(p)) or dl[-1]
        torch.manual_seed(seed)
        want = np.asarray(t(Image.fromarray(c)))
        if name == "augmix":
            chains, start = [], None
            for img, op, mag in calls:
                start = img if start is None else start
                if img is start: chains.append([])
                chains[-1].append((op, mag))
            m = dl[0][0].numpy(); w = (dl[1] * dl[0][:, 1].reshape(1, -1))[0].numpy()
            got = A.augmix(c, m, w, chains, interp)
        else:
            img = Image.fromarray(c)
            for _, op, mag in calls: img = A.apply_op(img, op, mag, interp)
            got = np.asarray(img)
        d = int(np.abs(want.astype(int) - got).max()); worst[name] = max(worst.get(name, 0), d)
print(worst)
