"""Development-only: flaxnets.eval_transform against torchvision's / timm's own transforms, live.

For every distinct torchvision (resize, crop, interpolation, mean, std) in flaxnets/data/weights.json
and every timm architecture.tag, on the images of tests/transform_cases.py (scikit-learn's china.jpg
and flower.jpg at 8 sizes / aspect ratios each), prints the max |difference| of the uint8 crop
(before normalisation) and of the float32 output (after); also F.center_crop with padding. Needs
torchvision (through the CPU shim) and timm; CI uses the recorded goldens instead
(tools/gen_transform_golden.py). Run from the repository root: python tools/compare_transforms.py
"""
import os
import sys, json, numpy as np
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("TORCHVISION_SHIM_DIR", "/work/shared/tools")); from torchvision_shim import torchvision
import torchvision.models as M, torchvision.transforms.functional as F
import timm, timm.data
from timm.models import get_pretrained_cfg
from PIL import Image
sys.path.insert(0, REPO); sys.path.insert(0, os.path.join(REPO, "tests"))
import flaxnets.transforms as T
import transform_cases

imgs = transform_cases.variants()
db = json.load(open(os.path.join(REPO, "flaxnets", "data", "weights.json")))
combos = {}
for n, e in db["torchvision"].items():
    for w, m in e["weights"].items():
        combos.setdefault((m["resize_size"], m["crop_size"], m["interpolation"], tuple(m["mean"]), tuple(m["std"])), (n, w))
rows = []
for key, (n, w) in sorted(combos.items()):
    tw = M.get_model_weights(n)[w]; tvt = tw.transforms()
    ours = T.eval_transform(n, w)
    d_u8 = d_f = 0.0
    for lbl, im in imgs:
        ref_u8 = np.asarray(F.center_crop(F.resize(im, tvt.resize_size, tvt.interpolation, antialias=True), tvt.crop_size))
        got_u8 = ours.crop(im)
        assert ref_u8.shape == got_u8.shape, (lbl, ref_u8.shape, got_u8.shape)
        d_u8 = max(d_u8, np.abs(ref_u8.astype(int) - got_u8.astype(int)).max())
        ref = tvt(im).permute(1, 2, 0).numpy()
        got = ours(im)
        assert got.dtype == np.float32 and ref.shape == got.shape
        d_f = max(d_f, float(np.abs(ref - got).max()))
        # numpy-array input path
        assert np.array_equal(ours(np.asarray(im)), got)
    rows.append((f"{n}.{w}", key[:3], key[3] != (0.485, 0.456, 0.406), d_u8, d_f))
    print(rows[-1], flush=True)
# center_crop padding vs F.center_crop
dpad = 0
for lbl, im in imgs:
    for c in (30, 64, 100, 225, 700):
        ref = np.asarray(F.center_crop(im, [c])); got = T.center_crop(np.asarray(im), c)
        assert ref.shape == got.shape; dpad = max(dpad, np.abs(ref.astype(int) - got.astype(int)).max())
print("center_crop incl. padding, max |diff| =", dpad)
# timm
trows = []
for n, e in db["timm"].items():
    for tag in e["weights"]:
        cfg = get_pretrained_cfg(f"{n}.{tag}" if tag else n).to_dict()
        dc = timm.data.resolve_data_config(pretrained_cfg=cfg)
        tt = timm.data.create_transform(**dc, is_training=False)
        ours = T.eval_transform(n, tag)
        d_f = 0.0
        for lbl, im in imgs:
            ref = tt(im).permute(1, 2, 0).numpy(); got = ours(im)
            assert ref.shape == got.shape, (n, tag, ref.shape, got.shape)
            d_f = max(d_f, float(np.abs(ref - got).max()))
        trows.append((f"{n}.{tag}", ours.resize_size, ours.crop_size, ours.interpolation, d_f))
        print(trows[-1], str(tt).replace("\n", " "), flush=True)
print("images:", [l for l, _ in imgs])
