"""Development-only: golden outputs of torchvision 0.28's training augmentations for tests/test_augment.py.

CI has no torchvision; this script (run with it installed, through the development shim) writes
tests/data/augment_golden.json (case descriptions, torchvision's magnitude tables, op orders, the
ImageNet AutoAugment policy, recorded draws) and tests/data/augment_golden.npz (the input crops
and torchvision's outputs). Cases:

* ``pil``: one op of AutoAugment/RandAugment/TrivialAugmentWide on a PIL image through torchvision's
  ``_apply_image_or_video_transform`` (what every policy calls), per op, several magnitudes taken
  from torchvision's own tables, both signs, nearest/bilinear/bicubic for the geometric ops;
* ``tensor``: the same on a uint8 tensor (the kernels AugMix uses), nearest/bilinear;
* ``policy``: full ``AutoAugment``/``RandAugment``/``TrivialAugmentWide``/``AugMix`` forward passes on
  a PIL image with torch's generator seeded, recording the ops and magnitudes drawn (and AugMix's
  Dirichlet weights), so the test replays those draws;
* ``erase``, ``mixup``, ``cutmix``, ``resized_crop``: RandomErasing, MixUp, CutMix and
  RandomResizedCrop's kernel with recorded / fixed parameters;
* ``preset``: the whole ClassificationPresetTrain chain (resized crop, flip, one policy op,
  PILToTensor, ToDtype(float32, scale), Normalize, erase) with fixed parameters.

Run from the repository root:

    python tools/gen_augment_golden.py
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "data", "augment_golden")
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
ENHANCE = ("Brightness", "Color", "Contrast", "Sharpness")
SIZES = ((32, 40), (40, 32), (27, 37), (224, 224), (176, 176))


def crops() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return [np.ascontiguousarray(a) for a in
            (china[100:132, 200:240], flower[150:190, 50:82], china[10:37, 300:337])]


def main() -> None:
    sys.path.insert(0, os.environ.get("TORCHVISION_SHIM_DIR", "/work/shared/tools"))
    from torchvision_shim import torchvision  # noqa: F401

    import torch
    from PIL import Image
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    images = crops()
    arrays = {f"image{k}": im for k, im in enumerate(images)}
    ramp = np.stack([np.arange(256), np.arange(256)[::-1], (np.arange(256) * 7) % 256], -1).astype(np.uint8)
    arrays["image3"] = ramp.reshape(16, 16, 3)  # every value: thresholds at their float32/float64 edges
    cases = []
    fill = {Image.Image: None, torch.Tensor: None}
    spaces = {"imagenet": v2.AutoAugment._AUGMENTATION_SPACE, "ra": v2.RandAugment._AUGMENTATION_SPACE,
              "ta_wide": v2.TrivialAugmentWide._AUGMENTATION_SPACE, "augmix": v2.AugMix._AUGMENTATION_SPACE}
    bins = {"imagenet": 10, "ra": 31, "ta_wide": 31, "augmix": 10}
    tables = {}
    for name, space in spaces.items():
        for h, w in SIZES:
            for op, (fn, signed) in space.items():
                m = fn(bins[name], h, w)
                tables[f"{name}/{op}/{h}x{w}"] = None if m is None else [float(x) for x in m]
    meta = {"torchvision": torchvision.__version__, "tables": tables,
            "space_order": {k: list(v) for k, v in spaces.items()},
            "augmix_partial_order": list(v2.AugMix._PARTIAL_AUGMENTATION_SPACE),
            "imagenet_policy": [[list(x) for x in sub] for sub in v2.AutoAugment()._policies]}

    def add(kind, out, **info):
        key = f"out{len(cases)}"
        arrays[key] = np.asarray(out)
        cases.append({"kind": kind, "key": key, **info})

    tv = v2.TrivialAugmentWide()

    def magnitudes(space_names, op, image):
        h, w = image.shape[:2]
        out = []
        for name, idx in space_names:
            fn, signed = spaces[name][op]
            m = fn(bins[name], h, w)
            if m is not None:
                v = float(m[idx])
                out += [v, -v] if signed else [v]
        return sorted(set(out))

    # --- single ops on PIL images (AutoAugment / RandAugment / TrivialAugmentWide kernels)
    k = 0
    for op in list(spaces["imagenet"]) + ["Identity"]:
        interps = ("nearest", "bilinear", "bicubic") if op in GEOMETRIC else ("nearest",)
        for interp in interps:
            for idx in range(3):
                image = images[(k := k + 1) % 3]
                picks = [("ta_wide", 30), ("ta_wide", 17), ("ra", 9), ("imagenet", 5)] if idx == 0 else \
                    [("ta_wide", 9 + 7 * idx)] if op in GEOMETRIC else [("ta_wide", 9 + 7 * idx), ("imagenet", 3 * idx)]
                for mag in (magnitudes(picks, op, image) if op not in ("AutoContrast", "Equalize", "Invert",
                                                                         "Identity") else [0.0]):
                    out = tv._apply_image_or_video_transform(Image.fromarray(image), op, mag,
                                                             interpolation=v2.InterpolationMode(interp), fill=fill)
                    add("pil", out, op=op, magnitude=mag, interpolation=interp, image=k % 3)
    # --- single ops on uint8 tensors (AugMix's kernels)
    for op in spaces["augmix"]:
        interps = ("nearest", "bilinear") if op in GEOMETRIC else ("bilinear",)
        for interp in interps:
            for idx in range(2):
                image = images[(k := k + 1) % 3]
                picks = [("augmix", 9), ("augmix", 2)] if idx == 0 else [("augmix", 5)]
                mags = magnitudes(picks, op, image) if op not in ("AutoContrast", "Equalize") else [0.0]
                if op == "Posterize":
                    mags = [4, 3, 2, 1, 0] if idx == 0 else [2]
                if op == "Solarize":  # bins 6 and 3: 255 * magnitude is just above 85 / 170 in float64, not float32
                    mags += magnitudes([("augmix", 6), ("augmix", 3)], op, image)
                for mag in mags:
                    t = torch.from_numpy(image).permute(2, 0, 1).contiguous()
                    out = tv._apply_image_or_video_transform(t, op, mag, interpolation=v2.InterpolationMode(interp),
                                                             fill=fill).permute(1, 2, 0).numpy()
                    add("tensor", out, op=op, magnitude=float(mag), interpolation=interp, image=k % 3)

    for name, n in (("imagenet", 10), ("ta_wide", 31), ("augmix", 10)):
        for mag in spaces[name]["Solarize"][0](n, 16, 16):
            mag = float(mag)
            add("pil", tv._apply_image_or_video_transform(Image.fromarray(arrays["image3"]), "Solarize", mag,
                                                          interpolation=v2.InterpolationMode.NEAREST, fill=fill),
                op="Solarize", magnitude=mag, interpolation="nearest", image=3)
            t = torch.from_numpy(arrays["image3"]).permute(2, 0, 1).contiguous()
            out = tv._apply_image_or_video_transform(t, "Solarize", mag, interpolation=v2.InterpolationMode.NEAREST,
                                                     fill=fill).permute(1, 2, 0).numpy()
            add("tensor", out, op="Solarize", magnitude=mag, interpolation="nearest", image=3)

    # --- whole policies, draws recorded
    def record(t):
        calls = []
        orig = t._apply_image_or_video_transform

        def wrapped(image, transform_id, magnitude, interpolation, fill):
            calls.append((image, transform_id, float(magnitude)))
            return orig(image, transform_id, magnitude, interpolation, fill)

        t._apply_image_or_video_transform = wrapped
        return calls

    for name, make in (("imagenet", lambda i: v2.AutoAugment(interpolation=i)),
                       ("ra", lambda i: v2.RandAugment(interpolation=i)),
                       ("ra", lambda i: v2.RandAugment(magnitude=15, interpolation=i)),
                       ("ta_wide", lambda i: v2.TrivialAugmentWide(interpolation=i))):
        for seed in range(6):
            interp = ("bilinear", "nearest", "bicubic")[seed % 3]
            t = make(v2.InterpolationMode(interp))
            calls = record(t)
            torch.manual_seed(seed)
            image = images[seed % 3]
            out = t(Image.fromarray(image))
            add("policy", out, policy=name, interpolation=interp, image=seed % 3,
                ops=[[op, mag] for _, op, mag in calls])
    for seed in range(6):
        interp = ("bilinear", "nearest")[seed % 2]
        severity = (3, 10, 1)[seed % 3]
        t = v2.AugMix(severity=severity, interpolation=v2.InterpolationMode(interp))
        calls = record(t)
        dirichlet = []
        orig = t._sample_dirichlet
        t._sample_dirichlet = lambda p: dirichlet.append(orig(p)) or dirichlet[-1]
        torch.manual_seed(seed)
        image = images[seed % 3]
        out = t(Image.fromarray(image))
        chains, start = [], None
        for img, op, mag in calls:
            if start is None:
                start = img
            if img is start:
                chains.append([])
            chains[-1].append([op, mag])
        m = dirichlet[0][0].numpy().astype(np.float32)
        weights = (dirichlet[1] * dirichlet[0][:, 1].reshape(1, -1))[0].numpy().astype(np.float32)
        arrays[f"augmix_m{len(cases)}"] = m
        arrays[f"augmix_w{len(cases)}"] = weights
        add("augmix", out, interpolation=interp, image=seed % 3, severity=severity, chains=chains,
            m_key=f"augmix_m{len(cases)}", w_key=f"augmix_w{len(cases)}")

    # --- RandomErasing on the normalised float image
    for seed in range(3):
        image = images[seed]
        x = F.normalize(F.to_dtype(torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.float32, scale=True),
                        [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        t = v2.RandomErasing(p=1.0)
        params = []
        orig = t.make_params
        t.make_params = lambda flat: params.append(orig(flat)) or params[-1]
        torch.manual_seed(seed)
        out = t(x)
        p = params[0]
        arrays[f"erase_in{len(cases)}"] = x.permute(1, 2, 0).numpy()
        add("erase", out.permute(1, 2, 0).numpy(), image=seed, box=[int(p["i"]), int(p["j"]), int(p["h"]),
                                                                      int(p["w"])], in_key=f"erase_in{len(cases)}")

    # --- MixUp / CutMix with fixed parameters, and CutMix's box rule for given draws
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((4, 3, 10, 14)).astype(np.float32)
    labels = np.array([0, 3, 1, 2])
    arrays["mix_images"] = batch.transpose(0, 2, 3, 1)
    arrays["mix_labels"] = labels
    for lam in (0.3, 0.8125):
        t = v2.MixUp(alpha=1.0, num_classes=5)
        t.make_params = lambda flat, lam=lam: {"lam": lam}
        xo, yo = t(torch.from_numpy(batch), torch.from_numpy(labels))
        arrays[f"mix_y{len(cases)}"] = yo.numpy()
        add("mixup", xo.permute(0, 2, 3, 1).numpy(), lam=lam, y_key=f"mix_y{len(cases)}")
    real_randint = torch.randint
    for lam, r_x, r_y in ((0.3, 5, 2), (0.75, 0, 9), (0.05, 13, 4), (0.999, 7, 7)):
        t = v2.CutMix(alpha=1.0, num_classes=5)
        t._dist = type("D", (), {"sample": lambda self, shape, lam=lam: torch.tensor([lam])})()
        draws = iter([torch.tensor([r_x]), torch.tensor([r_y])])
        torch.randint = lambda *a, **kw: next(draws)
        try:
            params = t.make_params([torch.from_numpy(batch)])
        finally:
            torch.randint = real_randint
        t.make_params = lambda flat, params=params: params
        xo, yo = t(torch.from_numpy(batch), torch.from_numpy(labels))
        arrays[f"mix_y{len(cases)}"] = yo.numpy()
        add("cutmix", xo.permute(0, 2, 3, 1).numpy(), lam=lam, r_x=r_x, r_y=r_y, box=list(params["box"]),
            lam_adjusted=params["lam_adjusted"], y_key=f"mix_y{len(cases)}")

    # --- RandomResizedCrop's kernel (crop, then resize) and the flip
    from sklearn.datasets import load_sample_images

    src = np.ascontiguousarray(load_sample_images().images[1][200:290, 300:372])
    arrays["rrc_source"] = src
    for top, left, h, w, size, interp in ((3, 5, 60, 50, 32, "bilinear"), (0, 0, 90, 72, 40, "bicubic"),
                                          (20, 11, 31, 41, 24, "nearest"), (10, 10, 32, 32, 32, "bilinear")):
        out = F.horizontal_flip(F.resized_crop(Image.fromarray(src), top, left, h, w, [size, size],
                                               interpolation=v2.InterpolationMode(interp), antialias=True))
        add("resized_crop", out, box=[left, top, left + w, top + h], size=size, interpolation=interp)

    # --- the whole ClassificationPresetTrain chain (v2 functionals) with fixed parameters
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    for (top, left, h, w), size, interp, op, mag, box in (
            ((3, 5, 60, 50), 32, "bilinear", "Rotate", -17.5, (4, 6, 10, 12)),
            ((0, 9, 81, 63), 28, "bicubic", "Color", 0.66, (0, 0, 5, 27)),
            ((11, 2, 40, 66), 36, "nearest", "ShearY", 0.4, (20, 3, 16, 9))):
        img = F.horizontal_flip(F.resized_crop(Image.fromarray(src), top, left, h, w, [size, size],
                                               interpolation=v2.InterpolationMode(interp), antialias=True))
        img = tv._apply_image_or_video_transform(img, op, mag, interpolation=v2.InterpolationMode(interp), fill=fill)
        x = F.normalize(F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True), mean, std)
        x = F.erase(x, *box, v=torch.tensor([0.0])[:, None, None])
        add("preset", x.permute(1, 2, 0).numpy(), crop=[left, top, left + w, top + h], size=size, interpolation=interp,
            op=op, magnitude=mag, erase=list(box), mean=mean, std=std)

    with open(OUT + ".json", "w") as f:
        json.dump({**meta, "cases": cases}, f, separators=(",", ":"))
    np.savez_compressed(OUT + ".npz", **arrays)
    print(f"{len(cases)} cases; {os.path.getsize(OUT + '.npz') / 1e3:.0f} kB npz, "
          f"{os.path.getsize(OUT + '.json') / 1e3:.0f} kB json")


if __name__ == "__main__":
    main()
