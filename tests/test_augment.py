"""torchvision's training augmentations (train/augment.py) and their wiring into train/data.py.

Goldens: tests/data/augment_golden.{json,npz}, written by tools/gen_augment_golden.py with torchvision
0.28 (not needed here). Every op of each policy at several magnitudes/signs/interpolations, whole
policy passes with torchvision's recorded draws, AugMix, RandomErasing, MixUp, CutMix and the
RandomResizedCrop kernel must match them exactly (uint8 images: max |diff| 0; float outputs: equal).
The samplers are checked against torchvision's distributions with fixed seeds and 5-sigma bounds.
"""
from __future__ import annotations

import collections
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from train import augment as A
from train import data

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "data", "augment_golden")


@pytest.fixture(scope="module")
def golden():
    with open(GOLDEN + ".json") as f:
        meta = json.load(f)
    arrays = dict(np.load(GOLDEN + ".npz"))
    return meta, arrays


def _cases(golden, kind):
    meta, arrays = golden
    out = [c for c in meta["cases"] if c["kind"] == kind]
    assert out, kind
    return out, arrays


def _max_diffs(golden, kind, run) -> dict:
    cases, arrays = _cases(golden, kind)
    worst = collections.defaultdict(int)
    for c in cases:
        got = run(c, arrays)
        want = arrays[c["key"]]
        assert got.shape == want.shape and got.dtype == want.dtype, c
        worst[c.get("op", c.get("policy", kind))] = max(worst[c.get("op", c.get("policy", kind))],
                                                        int(np.abs(got.astype(np.int64) - want).max()))
    return dict(worst)


def test_magnitude_tables_op_orders_and_policy_are_torchvisions(golden):
    meta, _ = golden
    spaces = {"imagenet": A.AUTOAUGMENT_SPACE, "ra": A.RANDAUGMENT_SPACE, "ta_wide": A.TRIVIALAUGMENT_SPACE,
              "augmix": A.AUGMIX_SPACE}
    bins = {"imagenet": 10, "ra": 31, "ta_wide": 31, "augmix": 10}
    for name, space in spaces.items():
        assert list(space) == meta["space_order"][name], name  # op draws index this order
    assert list(A.AUGMIX_PARTIAL_SPACE) == meta["augmix_partial_order"]
    n = 0
    for key, want in meta["tables"].items():
        name, op, hw = key.split("/")
        h, w = map(int, hw.split("x"))
        got = spaces[name][op][0](bins[name], h, w)
        if want is None:
            assert got is None, key
        else:
            np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(want, np.float64), err_msg=key)
            n += 1
    assert n > 200
    assert [[list(x) for x in sub] for sub in A.IMAGENET_POLICY] == meta["imagenet_policy"]


def test_linspace_is_torchs_float32():
    # values torch.linspace(0, end, 10) gives (float32), where a plain start + i * step differs
    assert A.linspace(0.0, 32.0, 10)[6] == np.float32(21.333334)
    assert A.linspace(0.0, 32.0, 10).dtype == np.float32 and A.linspace(1.0, 0.0, 31)[-1] == 0.0


def test_every_op_on_pil_matches_torchvision(golden):
    worst = _max_diffs(golden, "pil", lambda c, a: np.asarray(
        A.apply_op(Image.fromarray(a[f"image{c['image']}"]), c["op"], c["magnitude"], c["interpolation"])))
    print("max |diff| per op (PIL kernels):", worst)
    assert set(worst) == set(A.AUTOAUGMENT_SPACE) | {"Identity"}
    assert max(worst.values()) == 0, worst


def test_every_augmix_op_on_tensors_matches_torchvision(golden):
    worst = _max_diffs(golden, "tensor", lambda c, a: A.apply_op_tensor(
        a[f"image{c['image']}"], c["op"], c["magnitude"], c["interpolation"]))
    print("max |diff| per op (tensor kernels):", worst)
    assert set(worst) == set(A.AUGMIX_SPACE)
    assert max(worst.values()) == 0, worst


def test_policies_with_torchvisions_draws_match(golden):
    def run(c, a):
        img = Image.fromarray(a[f"image{c['image']}"])
        for op, mag in c["ops"]:
            img = A.apply_op(img, op, mag, c["interpolation"])
        return np.asarray(img)

    worst = _max_diffs(golden, "policy", run)
    assert set(worst) == {"imagenet", "ra", "ta_wide"} and max(worst.values()) == 0, worst


def test_augmix_with_torchvisions_draws_matches(golden):
    def run(c, a):
        return A.augmix(a[f"image{c['image']}"], a[c["m_key"]], a[c["w_key"]], c["chains"], c["interpolation"])

    cases, _ = _cases(golden, "augmix")
    assert sum(len(ch) for c in cases for ch in c["chains"]) >= 20
    assert _max_diffs(golden, "augmix", run) == {"augmix": 0}


def test_random_erasing_mixup_cutmix_resized_crop_match(golden):
    cases, a = _cases(golden, "erase")
    for c in cases:
        got = A.erase(a[c["in_key"]].copy(), tuple(c["box"]))
        np.testing.assert_array_equal(got, a[c["key"]])
        assert (got != a[c["in_key"]]).any()
    images, labels = a["mix_images"], a["mix_labels"]
    cases, _ = _cases(golden, "mixup")
    for c in cases:
        x, y = A.mix_batch(images, labels, 5, {"kind": "mixup", "lam": c["lam"]})
        np.testing.assert_array_equal(x, a[c["key"]])
        np.testing.assert_array_equal(y, a[c["y_key"]])
    cases, _ = _cases(golden, "cutmix")
    for c in cases:
        h, w = images.shape[1:3]
        box, lam = A.cutmix_box(c["lam"], c["r_x"], c["r_y"], h, w)
        assert list(box) == c["box"] and lam == c["lam_adjusted"]
        x, y = A.mix_batch(images, labels, 5, {"kind": "cutmix", "box": box, "lam": lam})
        np.testing.assert_array_equal(x, a[c["key"]])
        np.testing.assert_array_equal(y, a[c["y_key"]])
    cases, _ = _cases(golden, "resized_crop")
    for c in cases:
        img = data._resized_crop(Image.fromarray(a["rrc_source"]), tuple(c["box"]), c["size"], c["interpolation"])
        np.testing.assert_array_equal(np.asarray(img.transpose(Image.FLIP_LEFT_RIGHT)), a[c["key"]])


def test_whole_train_preset_chain_matches(golden):
    """RandomResizedCrop -> flip -> policy op -> PILToTensor -> ToDtype(float32, scale) -> Normalize ->
    RandomErasing, torchvision's v2 functionals with fixed parameters: float32 equal."""
    cases, a = _cases(golden, "preset")
    for c in cases:
        img = data._resized_crop(Image.fromarray(a["rrc_source"]), tuple(c["crop"]), c["size"], c["interpolation"])
        img = A.apply_op(img.transpose(Image.FLIP_LEFT_RIGHT), c["op"], c["magnitude"], c["interpolation"])
        x = A.erase(A.normalize(np.asarray(img), c["mean"], c["std"]), tuple(c["erase"]))
        np.testing.assert_array_equal(x, a[c["key"]])


# ----------------------------------------------------------------------------- the draws' distributions


def _within(count, n, p, what):
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= 5 * sigma, f"{what}: {count} vs {n * p:.1f} +- 5 * {sigma:.1f}"


def _bin_of(table, mag):
    hits = np.nonzero(np.asarray(table, np.float64) == abs(mag))[0]
    assert len(hits), (mag, table)
    return int(hits[0])


def test_trivialaugment_and_randaugment_draws():
    rng = np.random.default_rng(0)
    n = 6000
    ops, bins, signs = collections.Counter(), collections.Counter(), collections.Counter()
    for _ in range(n):
        [(op, mag)] = A.sample_trivialaugment(rng, 40, 32)
        ops[op] += 1
        fn, signed = A.TRIVIALAUGMENT_SPACE[op]
        if op in ("ShearX", "Rotate", "Brightness"):  # ops whose 31 bins are distinct and 0 only at bin 0
            bins[_bin_of(fn(31, 40, 32), mag)] += 1
            if mag != 0:
                signs[mag < 0] += 1
    assert set(ops) == set(A.TRIVIALAUGMENT_SPACE)
    for op in A.TRIVIALAUGMENT_SPACE:
        _within(ops[op], n, 1 / 14, f"TA op {op}")
    m = sum(bins.values())
    for b in range(31):
        _within(bins[b], m, 1 / 31, f"TA bin {b}")
    _within(signs[True], sum(signs.values()), 0.5, "TA sign")

    ops, signs = collections.Counter(), collections.Counter()
    for _ in range(n // 2):
        for op, mag in A.sample_randaugment(rng, 40, 32, magnitude=9):
            ops[op] += 1
            fn, signed = A.RANDAUGMENT_SPACE[op]
            table = fn(31, 40, 32)
            if table is not None:
                assert abs(mag) == float(table[9])
            if signed:
                signs[mag < 0] += 1
    assert sum(ops.values()) == n
    for op in A.RANDAUGMENT_SPACE:
        _within(ops[op], n, 1 / 14, f"RA op {op}")
    _within(signs[True], sum(signs.values()), 0.5, "RA sign")


def test_autoaugment_draws():
    """Each op's count per image is a mixture over the 25 sub-policies (uniform) of independent
    rand <= p applications: its mean and variance are computed from the policy table."""
    rng = np.random.default_rng(1)
    n = 8000
    counts = collections.defaultdict(list)
    neg = collections.Counter()
    for _ in range(n):
        c = collections.Counter()
        for op, mag in A.sample_autoaugment(rng, 32, 40):
            c[op] += 1
            if A.AUTOAUGMENT_SPACE[op][1] and mag:
                neg[mag < 0] += 1
        for op in A.AUTOAUGMENT_SPACE:
            counts[op].append(c[op])
    for op in A.AUTOAUGMENT_SPACE:
        ev = ev2 = 0.0
        for sub in A.IMAGENET_POLICY:
            ps = [p for o, p, _ in sub if o == op]
            mean = sum(ps)
            var = sum(p * (1 - p) for p in ps)
            ev += mean / 25
            ev2 += (var + mean ** 2) / 25
        sigma = math.sqrt(max(ev2 - ev ** 2, 0) / n)
        got = np.mean(counts[op])
        assert abs(got - ev) <= 5 * sigma + 1e-12, f"AA {op}: {got} vs {ev} +- 5 * {sigma}"
    _within(neg[True], sum(neg.values()), 0.5, "AA sign")


def test_augmix_draws():
    rng = np.random.default_rng(2)
    n = 3000
    depths, ops, bins, m0 = collections.Counter(), collections.Counter(), collections.Counter(), []
    for _ in range(n):
        m, w, chains = A.sample_augmix(rng, 32, 40, severity=3)
        assert m.dtype == w.dtype == np.float32 and len(chains) == 3
        assert abs(float(m.sum()) - 1) < 1e-6 and abs(float(w.sum()) - float(m[1])) < 1e-6
        m0.append(float(m[0]))
        for ch in chains:
            depths[len(ch)] += 1
            for op, mag in ch:
                ops[op] += 1
                if op == "Rotate":
                    bins[_bin_of(A.AUGMIX_SPACE[op][0](10, 32, 40), mag)] += 1
    for d in (1, 2, 3):
        _within(depths[d], 3 * n, 1 / 3, f"AugMix depth {d}")
    assert set(depths) == {1, 2, 3} and set(bins) == {0, 1, 2}  # bins [0, severity)
    for b in range(3):
        _within(bins[b], sum(bins.values()), 1 / 3, f"AugMix bin {b}")
    for op in A.AUGMIX_SPACE:
        _within(ops[op], sum(ops.values()), 1 / 13, f"AugMix op {op}")
    # m[0] ~ Beta(1, 1) = U(0, 1): mean 1/2, sd 1/sqrt(12)
    assert abs(np.mean(m0) - 0.5) <= 5 / math.sqrt(12 * n)


def test_random_erasing_draws():
    rng = np.random.default_rng(3)
    n, h, w = 4000, 48, 40
    boxes = [A.random_erasing_box(rng, h, w, 0.3) for _ in range(n)]
    got = [b for b in boxes if b is not None]
    _within(len(got), n, 0.3, "erase probability")  # (a box is found in 10 tries with probability ~1)
    area = []
    for i, j, bh, bw in got:
        assert 0 <= i <= h - bh and 0 <= j <= w - bw and bh < h and bw < w
        area.append(bh * bw / (h * w))
    # mean erased fraction given acceptance, integrated over the proposal (scale, log ratio) on a fine grid
    s = np.linspace(0.02, 0.33, 1201)[:, None]
    lr = np.linspace(math.log(0.3), math.log(3.3), 1201)[None, :]
    ea = s * h * w
    bh = np.floor(np.sqrt(ea * np.exp(lr)) + 0.5)
    bw = np.floor(np.sqrt(ea / np.exp(lr)) + 0.5)
    ok = (bh < h) & (bw < w)
    frac = np.where(ok, bh * bw / (h * w), 0)
    mean = frac.sum() / ok.sum()
    sd = math.sqrt(((np.where(ok, frac, 0) - mean) ** 2 * ok).sum() / ok.sum())
    assert abs(np.mean(area) - mean) <= 5 * sd / math.sqrt(len(area)), (np.mean(area), mean)
    assert all(A.random_erasing_box(rng, h, w, 0.0) is None for _ in range(100))


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_cutmix_draws(alpha):
    rng = np.random.default_rng(4)
    n = 4000
    ps = [A.mixup_cutmix_params(rng, 24, 32, alpha, alpha) for _ in range(n)]
    _within(sum(p["kind"] == "mixup" for p in ps), n, 0.5, "RandomChoice(MixUp, CutMix)")
    lam = np.array([p["beta"] for p in ps])
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a)
    assert abs(lam.mean() - 0.5) <= 5 * math.sqrt(var / n)
    # E[lam^2] = var + 1/4; Var[lam^2] = E[lam^4] - E[lam^2]^2 from Beta moments
    e2 = var + 0.25
    e4 = np.prod([(alpha + k) / (2 * alpha + k) for k in range(4)])
    assert abs((lam ** 2).mean() - e2) <= 5 * math.sqrt((e4 - e2 ** 2) / n)
    expected, got, centres = [], [], []
    for p in ps:
        if p["kind"] == "cutmix":
            x1, y1, x2, y2 = p["box"]
            assert 0 <= x1 <= x2 <= 32 and 0 <= y1 <= y2 <= 24
            assert p["lam"] == 1 - (x2 - x1) * (y2 - y1) / (24 * 32)
            # box area for a centre uniform over the pixels: mean clipped width x mean clipped height
            r = 0.5 * math.sqrt(1 - p["beta"])
            rw, rh, cx, cy = int(r * 32), int(r * 24), np.arange(32), np.arange(24)
            mw = (np.minimum(cx + rw, 32) - np.maximum(cx - rw, 0)).mean()
            mh = (np.minimum(cy + rh, 24) - np.maximum(cy - rh, 0)).mean()
            expected.append(1 - mw * mh / (24 * 32))
            got.append(p["lam"])
            if 0 < x1 and x2 < 32 and 0 < y1 and y2 < 24:  # unclipped: the centre is the box's
                centres.append(((x1 + x2) / 2, (y1 + y2) / 2))
        else:
            assert p["lam"] == p["beta"]
    got, expected = np.array(got), np.array(expected)
    assert abs(got.mean() - expected.mean()) <= 5 * (got - expected).std() / math.sqrt(len(got))
    # centres of boxes inside the image (x1 > 0, x2 < size) are uniform on [r + 1, size - r - 1]: mean size / 2
    c = np.array(centres)
    assert len(c) > 200
    for axis, size in ((0, 32), (1, 24)):
        assert abs(c[:, axis].mean() - size / 2) <= 5 * c[:, axis].std() / math.sqrt(len(c))
    assert A.mixup_cutmix_params(rng, 8, 8, alpha, 0)["kind"] == "mixup"
    assert A.mixup_cutmix_params(rng, 8, 8, 0, alpha)["kind"] == "cutmix"
    assert A.mixup_cutmix_params(rng, 8, 8, 0, 0) is None


# ----------------------------------------------------------------------------- the pipeline


def _take(cfg, info, n, **kw):
    it = data.train_batches(cfg, info, global_batch_size=4, seed=3, **kw)
    try:
        return [next(it) for _ in range(n)]
    finally:
        it.close()


@pytest.mark.parametrize("policy", [None, "imagenet", "ra", "ta_wide", "augmix"])
def test_pipeline_policies_deterministic_resumable_and_process_split(photo_folder, policy):
    cfg = data.DataConfig(dataset=photo_folder, image_size=40, auto_augment=policy, random_erase=0.5,
                          mixup_alpha=0.2, cutmix_alpha=1.0)
    info = data.get_dataset_info(cfg)
    a = _take(cfg, info, 5)
    b = _take(cfg, info, 2, start_step=3)
    for x, y in zip(a[3:], b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    for batch in a:
        assert batch["image"].shape == (4, 40, 40, 3) and batch["label"].shape == (4, 2)
        np.testing.assert_allclose(batch["label"].sum(1), 1, atol=1e-6)
    halves = [_take(cfg, info, 1, start_step=4, process_index=p, process_count=2)[0] for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([h["image"] for h in halves]), a[4]["image"])
    np.testing.assert_array_equal(np.concatenate([h["label"] for h in halves]), a[4]["label"])
    if policy is not None:  # same crops and flips as without a policy (drawn first), then the policy changes them
        plain = _take(data.DataConfig(dataset=photo_folder, image_size=40), info, 2)
        base = _take(data.DataConfig(dataset=photo_folder, image_size=40, auto_augment=policy), info, 2)
        assert any((p["image"] != q["image"]).any() for p, q in zip(plain, base))


def test_pipeline_images_are_the_augmentations_of_their_records(photo_folder):
    """Train images = normalise(policy(resized crop + flip)) from the example's own generator; eval =
    ClassificationPresetEval(val_resize_size, val_crop_size, interpolation)."""
    cfg = data.DataConfig(dataset=photo_folder, train_crop_size=36, val_resize_size=50, val_crop_size=44,
                          interpolation="bicubic", auto_augment="ta_wide", random_erase=1.0)
    info = data.get_dataset_info(cfg)
    assert (info.image_size, info.eval_size) == (36, 44)
    r = data._resolve(cfg)
    source = r.open_split("train")
    [batch] = _take(cfg, info, 1)
    order = np.random.default_rng([3, 0]).permutation(info.num_train)
    for row, idx in enumerate(order[:4]):
        rng = np.random.default_rng([3, 0, int(idx)])
        flip = rng.random() < 0.5
        img = Image.fromarray(source[int(idx)]["image"])
        img = data._resized_crop(img, data._random_resized_crop_box(rng, *img.size), 36, "bicubic")
        img = img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img
        [(op, mag)] = A.sample_trivialaugment(rng, 36, 36)
        x = A.normalize(np.asarray(A.apply_op(img, op, mag, "bicubic")), data.IMAGENET_MEAN, data.IMAGENET_STD)
        box = A.random_erasing_box(rng, 36, 36, 1.0)
        np.testing.assert_array_equal(batch["image"][row], A.erase(x, box))
        assert batch["label"][row] == source[int(idx)]["label"]
    from flaxnets.transforms import EvalTransform

    tf = EvalTransform(50, 44, "bicubic", data.IMAGENET_MEAN, data.IMAGENET_STD)
    it = data.eval_batches(cfg, info, global_batch_size=4)
    ev = next(it)
    it.close()
    val = r.open_split("val")
    for k in range(4):
        np.testing.assert_array_equal(ev["image"][k], tf(val[k]["image"]))


def test_ra_sampler_order_is_torchvisions(tmp_path):
    """RASampler(num_replicas=1, rank=0, repetitions=r).__iter__ on our epoch permutation (its code, for
    one replica): repeat each index r times, pad to total_size, subsample, keep num_selected_samples."""
    def rasampler(perm, reps, n):
        num_samples = int(math.ceil(n * float(reps) / 1))
        total_size = num_samples * 1
        num_selected = int(math.floor(n // 256 * 256 / 1))
        indices = [ele for ele in perm.tolist() for _ in range(reps)]
        indices += indices[: (total_size - len(indices))]
        indices = indices[0:total_size:1]
        return indices[:num_selected]

    for n, reps in ((1500, 3), (600, 4), (256, 1), (300, 2)):
        perm = np.random.default_rng(n).permutation(n)
        order, rep = data.ra_order(perm, reps, data.ra_epoch_size(n))
        assert order.tolist() == rasampler(perm, reps, n)
        assert (rep == np.arange(len(order)) % reps).all()
    cfg = data.DataConfig(dataset="digits32", data_dir=str(tmp_path), ra_sampler=True, ra_reps=3)
    info = data.get_dataset_info(cfg)
    assert info.epoch_size == 1280 and data.steps_per_epoch(info, 100) == 12
    it = data.train_batches(cfg, info, global_batch_size=100, seed=5, start_step=12)  # epoch 1, first batch
    batch = next(it)
    it.close()
    order, _ = data.ra_order(np.random.default_rng([5, 1]).permutation(1500), 3, 1280)
    src = data._resolve(cfg).open_split("train")
    assert batch["label"].tolist() == [src[int(i)]["label"] for i in order[:100]]
    # the 3 repetitions of an example are augmented differently (their own generators)
    assert (batch["image"][0] != batch["image"][1]).any() and (batch["image"][1] != batch["image"][2]).any()
    with pytest.raises(ValueError, match="RASampler"):
        data.get_dataset_info(data.DataConfig(dataset="folder:" + str(_tiny_folder(tmp_path)), ra_sampler=True))


def _tiny_folder(tmp_path):
    root = tmp_path / "tiny"
    for c in ("a", "b"):
        os.makedirs(root / c)
        for k in range(3):
            Image.fromarray(np.full((20, 20, 3), 40 * k, np.uint8)).save(root / c / f"{k}.png")
    return root


@pytest.mark.parametrize("kw, match", [
    ({"auto_augment": "autoaugment"}, "--auto-augment 'autoaugment': expected one of imagenet, ra, ta_wide, augmix"),
    ({"interpolation": "cubic"}, "--interpolation 'cubic': expected one of nearest"),
    ({"auto_augment": "ta_wide", "interpolation": "lanczos"}, "PIL's affine transforms take only"),
    ({"auto_augment": "augmix", "interpolation": "bicubic"}, "AugMix augments tensors"),
    ({"auto_augment": "ra", "ra_magnitude": 31}, "--ra-magnitude 31"),
    ({"auto_augment": "augmix", "augmix_severity": 0}, "--augmix-severity 0"),
    ({"random_erase": 1.5}, "--random-erase 1.5"),
    ({"mixup_alpha": -1.0}, "--mixup-alpha -1.0"),
    ({"ra_sampler": True, "ra_reps": 0}, "--ra-reps"),
    ({"image_size": 32, "train_crop_size": 40}, "--train-crop-size 40"),
])
def test_bad_options_fail_naming_them(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        data.get_dataset_info(data.DataConfig(dataset="folder:/nonexistent", **kw))


def test_soft_label_loss_is_torchs():
    import jax.numpy as jnp

    from train import optim

    logits = jnp.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    soft = jnp.array([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]])
    for eps in (0.0, 0.1):
        t = soft * (1 - eps) + eps / 3
        want = -(t * (logits - jnp.log(jnp.exp(logits).sum(-1, keepdims=True)))).sum(-1)
        np.testing.assert_allclose(optim.cross_entropy(logits, soft, eps), want, rtol=1e-6)
    np.testing.assert_allclose(optim.cross_entropy(logits, jnp.array([1, 2]), 0.1),
                               optim.cross_entropy(logits, jnp.eye(3)[jnp.array([1, 2])], 0.1), rtol=1e-6)


def test_train_main_with_torchvision_recipe_augmentations(tmp_path, capsys):
    from train import main as train_main

    work = tmp_path / "run"
    rc = train_main.main(["--model", "lenet5", "--epochs", "1", "--batch-size", "100", "--data-dir", str(tmp_path),
                          "--workdir", str(work), "--auto-augment", "ta_wide", "--random-erase", "0.25",
                          "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--label-smoothing", "0.1",
                          "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 15 and summary["num_eval"] == 297 and 0 <= summary["test_top1"] <= 1
    rc = train_main.main(["--model", "lenet5", "--data-dir", str(tmp_path), "--workdir", str(tmp_path / "bad"),
                          "--auto-augment", "trivial", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--auto-augment 'trivial': expected one of imagenet, ra, ta_wide, augmix" in err
