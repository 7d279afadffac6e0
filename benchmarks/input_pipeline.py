"""Input pipeline benchmark: the flaxnets train pipeline against torch's DataLoader, img/s per
worker count, on a folder of real JPEG photographs.

    python -m benchmarks.input_pipeline [--workers 0,1,2] [--files 300] [--batch 32] \
        [--batches 30] [--repeats 3] [--no-augment] [--write-docs] [--json out.json]

Data: ``--files`` JPEGs in an ImageFolder tree (``train/`` with 10 class folders, and a small
``val/``), made from scikit-learn's two sample photographs (``load_sample_images``: china.jpg
and flower.jpg, 640x427) by random crops (35-100% of the area), resizes to ImageNet-like sizes
(long side ``--min-side``..``--max-side``, 500-1000 px by default, 4:3 landscape or 3:4
portrait, Lanczos), flips, brightness changes and JPEG qualities 70-95, so every file differs
and decodes at a realistic cost. Written once under ``--cache-dir`` (default
``$TMPDIR/flaxnets-bench``) and reused.

flax: ``train.data.train_batches`` with a ``folder:`` ``DataConfig`` (what ``python -m
train.main`` runs): PIL JPEG decode, RandomResizedCrop(``--size``) as a PIL bilinear resize of
the crop box, horizontal flip, TrivialAugmentWide (``auto_augment="ta_wide"``), RandomErasing
(``random_erase=0.1``), normalisation, a batch of NHWC float32; grain with ``num_workers``
worker processes (0: in-process, where grain still reads with 2 threads).

torch: ``torch.utils.data.DataLoader(dataset, batch_size, num_workers, drop_last=True)`` (default
collation, random sampling) over the same files. torchvision cannot be imported in this
repository, so the dataset's ``__getitem__`` performs the operations torchvision's PIL backend
performs for references/classification's ``ClassificationPresetTrain(crop_size,
auto_augment_policy="ta_wide", random_erase_prob=0.1)``: ``PIL.Image.open(path).convert("RGB")``
(torchvision's default loader), RandomResizedCrop = ``get_params`` with torch's RNG, then
``img.crop(box)`` and ``img.resize(size, BILINEAR)`` (``F.resized_crop`` on PIL),
RandomHorizontalFlip (``Image.transpose``), TrivialAugmentWide (torchvision's op/magnitude
draws, 31 bins, with the op applied by the project's own PIL implementation in
``train.augment``), PILToTensor + ConvertImageDtype(float) + Normalize in torch, RandomErasing
in torch (torchvision's box draws, value 0), a batch of NCHW float32. A scratch check against
real torchvision's Compose (through the development shim) measured the same img/s within
noise; docs/input_pipeline.md gives the figure.

TrivialAugmentWide and RandomErasing run on both sides when ``train.augment`` (the #16
augmentations) can be imported and ``--no-augment`` is not given; otherwise neither side
applies them and the table says so.

Measured per worker count: ``2 * workers + 4`` warm-up batches (worker start-up, and the
batches the workers' buffers hold after it), then the wall time of ``--batches`` batches; img/s is the median over
``--repeats`` rounds, the frameworks and worker counts interleaved within each round.
Per-core img/s = images / CPU seconds of this process and all its descendants (threads and
worker processes, from /proc) over the timed batches: what one core of a host delivers, to size
a GPU host (cores needed = the GPU's train img/s / per-core img/s). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import collections
import inspect
import json
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.common import cpu_count, cpu_model, write_markdown

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "input_pipeline.md")
DATA_VERSION = 1
CLASSES = 10
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def log(msg: str) -> None:
    print(f"[input_pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the photographs


def prepare_folder(cache_dir: str, files: int, min_side: int, max_side: int, seed: int = 0) -> str:
    """An ImageFolder tree of `files` distinct JPEGs (train/ plus a val/ of one per class); cached."""
    root = os.path.join(cache_dir, f"photos-v{DATA_VERSION}-n{files}-s{min_side}-{max_side}-seed{seed}")
    if os.path.exists(os.path.join(root, "done")):
        return root
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(a) for a in load_sample_images().images]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for k in range(files + CLASSES):
        split, idx = ("train", k) if k < files else ("val", k - files)
        cls = idx % CLASSES
        d = os.path.join(root, split, f"class{cls:02d}")
        os.makedirs(d, exist_ok=True)
        src = photos[int(rng.integers(len(photos)))]
        w, h = src.size
        frac, aspect = rng.uniform(0.35, 1.0), math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = min(w, round(math.sqrt(frac * w * h * aspect)))
        ch = min(h, round(math.sqrt(frac * w * h / aspect)))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        long_side = int(rng.integers(min_side, max_side + 1))
        size = (long_side, round(long_side * 3 / 4))
        if rng.random() < 0.3:  # portrait
            size = size[::-1]
        img = src.resize(size, Image.LANCZOS, box=(left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
        img.save(os.path.join(d, f"{idx:05d}.jpg"), quality=int(rng.integers(70, 96)))
    open(os.path.join(root, "done"), "w").close()
    log(f"wrote {files + CLASSES} JPEGs to {root} in {time.perf_counter() - t0:.1f} s")
    return root


def list_train_files(root: str) -> tuple[list[str], list[int]]:
    """train/ files and labels in ImageFolder order (sorted classes, sorted names)."""
    train = os.path.join(root, "train")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    files, labels = [], []
    for label, cls in enumerate(classes):
        for n in sorted(os.listdir(os.path.join(train, cls))):
            files.append(os.path.join(train, cls, n))
            labels.append(label)
    return files, labels


# ----------------------------------------------------------------------------- TrivialAugmentWide op


def _ta_op():
    """`op(img, name, magnitude) -> img` from train.augment (PIL, torchvision's op names), or
    None when the module or its per-op function is not there.

    Looks for ``apply_op`` (or ``_apply_op``) with torchvision's ``_apply_op`` signature
    ``(img, op_name, magnitude, interpolation=..., fill=...)``; interpolation is passed as
    bilinear (ClassificationPresetTrain's), as a string if the function's default is one.
    """
    try:
        from train import augment
    except ImportError:
        return None
    fn = getattr(augment, "apply_op", None) or getattr(augment, "_apply_op", None)
    if not callable(fn):
        return None
    params = inspect.signature(fn).parameters
    kw = {}
    if "interpolation" in params:
        default = params["interpolation"].default
        kw["interpolation"] = "bilinear" if isinstance(default, str) else Image.Resampling.BILINEAR
    if "fill" in params:
        kw["fill"] = None
    return lambda img, name, magnitude: fn(img, name, magnitude, **kw)


def ta_wide_space(num_bins: int = 31) -> dict[str, tuple[np.ndarray | None, bool]]:
    """torchvision TrivialAugmentWide._augmentation_space: op -> (magnitudes or None, signed)."""
    lin = lambda a, b: np.linspace(a, b, num_bins)  # noqa: E731
    return {
        "Identity": (None, False),
        "ShearX": (lin(0.0, 0.99), True),
        "ShearY": (lin(0.0, 0.99), True),
        "TranslateX": (lin(0.0, 32.0), True),
        "TranslateY": (lin(0.0, 32.0), True),
        "Rotate": (lin(0.0, 135.0), True),
        "Brightness": (lin(0.0, 0.99), True),
        "Color": (lin(0.0, 0.99), True),
        "Contrast": (lin(0.0, 0.99), True),
        "Sharpness": (lin(0.0, 0.99), True),
        "Posterize": (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / 6)).astype(int), False),
        "Solarize": (lin(255.0, 0.0), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }


# ----------------------------------------------------------------------------- the torch side


class TorchvisionStyleDataset:
    """torchvision ImageFolder + ClassificationPresetTrain(PIL backend), op for op (module doc)."""

    def __init__(self, files: list[str], labels: list[int], size: int, augment: bool, random_erase: float = 0.1):
        self.files, self.labels, self.size = files, labels, size
        self.augment, self.random_erase = augment, random_erase
        self._op = None
        self._space = list(ta_wide_space().items())

    def __len__(self) -> int:
        return len(self.files)

    def _crop_params(self, torch, w: int, h: int) -> tuple[int, int, int, int]:
        """RandomResizedCrop.get_params(scale=(0.08, 1), ratio=(3/4, 4/3)): (top, left, h, w)."""
        area, log_ratio = w * h, torch.log(torch.tensor((3 / 4, 4 / 3)))
        for _ in range(10):
            target = area * torch.empty(1).uniform_(0.08, 1.0).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                i = torch.randint(0, h - ch + 1, size=(1,)).item()
                j = torch.randint(0, w - cw + 1, size=(1,)).item()
                return i, j, ch, cw
        ratio = w / h
        if ratio < 3 / 4:
            cw, ch = w, int(round(w / (3 / 4)))
        elif ratio > 4 / 3:
            cw, ch = int(round(h * 4 / 3)), h
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def _ta_wide(self, torch, img):
        if self._op is None:
            self._op = _ta_op()
        name, (mags, signed) = self._space[int(torch.randint(len(self._space), (1,)).item())]
        magnitude = float(mags[int(torch.randint(len(mags), (1,)).item())]) if mags is not None else 0.0
        if signed and torch.randint(2, (1,)):
            magnitude *= -1.0
        return self._op(img, name, magnitude)

    def _erase(self, torch, t):
        """RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0) on a CHW tensor."""
        if torch.rand(1) >= self.random_erase:
            return t
        _, h, w = t.shape
        area, log_ratio = h * w, torch.log(torch.tensor((0.3, 3.3)))
        for _ in range(10):
            erase = area * torch.empty(1).uniform_(0.02, 0.33).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            eh, ew = int(round(math.sqrt(erase * aspect))), int(round(math.sqrt(erase / aspect)))
            if eh < h and ew < w:
                i = torch.randint(0, h - eh + 1, size=(1,)).item()
                j = torch.randint(0, w - ew + 1, size=(1,)).item()
                t = t.clone()  # F.erase(inplace=False)
                t[..., i:i + eh, j:j + ew] = torch.tensor([0.0])[:, None, None]
                return t
        return t

    def __getitem__(self, k: int):
        import torch

        with open(self.files[k], "rb") as f:  # torchvision.datasets.folder.pil_loader
            img = Image.open(f).convert("RGB")
        i, j, ch, cw = self._crop_params(torch, *img.size)
        img = img.crop((j, i, j + cw, i + ch)).resize((self.size, self.size), Image.BILINEAR)
        if torch.rand(1) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.augment:
            img = self._ta_wide(torch, img)
        # PILToTensor, ConvertImageDtype(torch.float), Normalize: torchvision's own tensor ops
        # (a permuted, non-contiguous CHW view, as torchvision leaves it)
        w, h = img.size
        t = torch.as_tensor(np.array(img, copy=True)).view(h, w, 3).permute((2, 0, 1))
        t = t.to(torch.float32) / 255.0
        t = t.clone()
        mean = torch.as_tensor(MEAN, dtype=t.dtype)
        std = torch.as_tensor(STD, dtype=t.dtype)
        if (std == 0).any():
            raise ValueError("std evaluated to zero")
        t.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
        if self.augment and self.random_erase > 0:
            t = self._erase(torch, t)
        return t, self.labels[k]


def torch_stream(files, labels, size, batch, workers, augment, seed=0):
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    ds = TorchvisionStyleDataset(files, labels, size, augment)
    g = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(ds, replacement=False, num_samples=10**8, generator=g)  # reshuffled each pass
    return iter(DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True))


# ----------------------------------------------------------------------------- the flax side


def flax_config(root: str, size: int, workers: int, augment: bool):
    from train.data import DataConfig

    extra = {"auto_augment": "ta_wide", "random_erase": 0.1} if augment else {}
    return DataConfig(dataset=f"folder:{root}", image_size=size, num_workers=workers, **extra)


class _DeviceFinished:
    """train.main's arrangement: raw uint8 batches from grain, finished (normalise, erasing) by the jitted
    train.preprocess step on the default device; each batch waited for, so its cost is in the timing."""

    def __init__(self, it, finish):
        self.it, self.finish = it, finish

    def __next__(self):
        import jax

        return jax.block_until_ready(self.finish(next(self.it)))

    def close(self):
        self.it.close()


def flax_stream(root, size, batch, workers, augment, seed=0, mode="device"):
    from train import data

    cfg = flax_config(root, size, workers, augment)
    info = data.get_dataset_info(cfg)
    it = data.train_batches(cfg, info, global_batch_size=batch, seed=seed, raw=mode == "device")
    if mode == "host":
        return it
    import jax

    return _DeviceFinished(it, jax.jit(data.finish_for(cfg, info)))


# ----------------------------------------------------------------------------- measuring


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (Linux /proc), else
    of this process and its reaped children (os.times)."""
    try:
        tck, stats = os.sysconf("SC_CLK_TCK"), {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        s = f.read()
                except OSError:
                    continue
                fields = s[s.rindex(")") + 2:].split()
                stats[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tck)
    except OSError:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system
    children = collections.defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children[pid]
    return total


def measure(stream, batches: int, warmup: int, batch: int) -> dict:
    """Pull `warmup` then `batches` batches from `stream`; the last batch comes back too."""
    try:
        for _ in range(warmup):
            b = next(stream)
        c0, t0 = tree_cpu_seconds(), time.perf_counter()
        for _ in range(batches):
            b = next(stream)
        wall, cpu = time.perf_counter() - t0, tree_cpu_seconds() - c0
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        del stream  # a DataLoader iterator stops its workers when collected
    n = batches * batch
    return {"img_s": n / wall, "cpu_s": cpu, "per_core_img_s": n / cpu if cpu > 0 else None,
            "cores_busy": cpu / wall, "last_batch": b}


def _as_nhwc(b, framework: str) -> np.ndarray:
    if framework == "torch":
        return b[0].permute(0, 2, 3, 1).numpy()
    return np.asarray(b["image"])


def run(args) -> dict:
    root = prepare_folder(args.cache_dir, args.files, args.min_side, args.max_side)
    files, labels = list_train_files(root)
    augment = not args.no_augment and _ta_op() is not None
    why = ("on both sides" if augment else "--no-augment" if args.no_augment
           else "train.augment (or its apply_op) not importable")
    log(f"{len(files)} train files in {root}; TrivialAugmentWide + RandomErasing: {'on' if augment else 'off'} ({why})")
    import torch

    results = {"rows": [], "augment": augment, "augment_note": why, "root": root, "files": len(files),
               "batch": args.batch, "batches": args.batches, "repeats": args.repeats, "size": args.size,
               "meta": meta(torch), "shapes": {},
               "flax_modes": list(args.flax_modes)}
    make = {f"flax_{m}": (lambda w, m=m: flax_stream(root, args.size, args.batch, w, augment, mode=m))
            for m in args.flax_modes}
    make["torch"] = lambda w: torch_stream(files, labels, args.size, args.batch, w, augment)
    got = {(fw, w): [] for w in args.workers for fw in make}
    for r in range(args.repeats):
        for w in args.workers:
            for fw, mk in make.items():
                m = measure(mk(w), args.batches, 2 * w + 4, args.batch)
                x = _as_nhwc(m.pop("last_batch"), fw)
                results["shapes"][fw] = {"shape": list(x.shape), "dtype": str(x.dtype)}
                got[fw, w].append(m)
                log(f"round {r + 1}/{args.repeats}: {fw} {w} workers: {m['img_s']:.1f} img/s, "
                    f"{m['cores_busy']:.2f} cores busy")
    for w in args.workers:
        row = {"workers": w}
        for fw in make:
            ms = got[fw, w]
            row[f"{fw}_img_s"] = statistics.median(m["img_s"] for m in ms)
            row[f"{fw}_img_s_all"] = [m["img_s"] for m in ms]
            pc = [m["per_core_img_s"] for m in ms if m["per_core_img_s"]]
            row[f"{fw}_per_core_img_s"] = statistics.median(pc) if pc else None
            row[f"{fw}_cores_busy"] = statistics.median(m["cores_busy"] for m in ms)
        for fw in make:
            if fw != "torch":
                row[f"{fw}_ratio"] = row[f"{fw}_img_s"] / row["torch_img_s"]
        results["rows"].append(row)
    results["meta"]["loadavg_end"] = os.getloadavg()
    return results


def meta(torch) -> dict:
    import grain
    import PIL

    return {"cpu": cpu_model(), "cores": cpu_count(), "torch": torch.__version__,
            "grain": getattr(grain, "__version__", "?"), "pillow": PIL.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "loadavg_start": os.getloadavg()}


def _f(v, spec=".1f"):
    return "–" if v is None else format(v, spec)


def markdown(res: dict, command: str) -> str:
    m = res["meta"]
    aug = ("TrivialAugmentWide + RandomErasing(0.1) on both sides" if res["augment"]
           else f"**TrivialAugmentWide and RandomErasing off on both sides** ({res['augment_note']})")
    lines = [
        f"`{command}`", "",
        f"{m['cpu']}, {m['cores']} cores; torch {m['torch']}, grain {m['grain']}, Pillow {m['pillow']}, "
        f"numpy {m['numpy']}, Python {m['python']}. Load average (1 min) {m['loadavg_start'][0]:.1f} at "
        f"start, {m['loadavg_end'][0]:.1f} at end. {res['files']} JPEGs (scikit-learn's sample photographs, "
        f"cropped and resized to ImageNet-like sizes), RandomResizedCrop {res['size']}, flip, {aug}, "
        f"normalise, batch {res['batch']}; img/s over {res['batches']} batches after warm-up, median of "
        f"{res['repeats']} interleaved rounds. Per-core = images per CPU-second of the process tree "
        f"(main process, threads and workers). flax: `train.data.train_batches` (grain; 0 workers = "
        f"in-process, 2 reader threads): *uint8 + device finish* is what `python -m train.main` runs (uint8 "
        f"batches and erasing boxes from grain, normalise + erase by the jitted `train.preprocess` step on "
        f"the default device, here the same CPU, waited for each batch), *host float32* normalises and "
        f"erases in grain's workers; torch: `DataLoader` + torchvision's PIL-backend train preset, "
        f"op for op (benchmarks/input_pipeline.py).", "",
    ]
    cols = [f"flax_{m}" for m in res["flax_modes"]] + ["torch"]
    label = {"flax_device": "flax (uint8 + device finish)", "flax_host": "flax (host float32)", "torch": "torch"}
    lines += ["| workers | " + " | ".join(f"{label[c]} img/s" for c in cols) + " | "
              + " | ".join(f"{label[c]} / torch" for c in cols[:-1]) + " | "
              + " | ".join(f"{label[c]} per-core" for c in cols) + " | "
              + " | ".join(f"{label[c]} cores busy" for c in cols) + " |",
              "|---:" * (1 + 4 * len(cols) - 1) + "|"]
    for r in res["rows"]:
        lines.append(f"| {r['workers']} | " + " | ".join(f"{r[c + '_img_s']:.1f}" for c in cols) + " | "
                     + " | ".join(f"{r[c + '_ratio']:.2f}×" for c in cols[:-1]) + " | "
                     + " | ".join(_f(r[c + "_per_core_img_s"]) for c in cols) + " | "
                     + " | ".join(f"{r[c + '_cores_busy']:.2f}" for c in cols) + " |")
    pcs = {c: [r[f"{c}_per_core_img_s"] for r in res["rows"] if r[f"{c}_per_core_img_s"]] for c in cols}
    if all(pcs.values()):
        f, t = statistics.median(pcs[cols[0]]), statistics.median(pcs["torch"])
        lines += ["", f"Sizing a GPU host: about **{f:.0f} img/s per core** with flaxnets' pipeline "
                      f"({label[cols[0]]}; {t:.0f} with torch's), median over the worker counts above; a GPU "
                      f"training at N img/s needs about N / {f:.0f} cores for this augmentation (e.g. 3000 "
                      f"img/s: {math.ceil(3000 / f)} cores), plus the training process's own."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--workers", default=None, help="comma-separated worker counts (default 0, 1, 2, 4, ... cores)")
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--min-side", type=int, default=500)
    p.add_argument("--max-side", type=int, default=1000)
    p.add_argument("--size", type=int, default=224, help="RandomResizedCrop size")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "flaxnets-bench"))
    p.add_argument("--no-augment", action="store_true", help="no TrivialAugmentWide / RandomErasing on either side")
    p.add_argument("--write-docs", nargs="?", const=DOCS, default=None, metavar="PATH",
                   help=f"write the table into PATH's <!-- bench:input-pipeline --> block (default {DOCS})")
    p.add_argument("--flax-modes", default="device,host",
                   help="flax variants: device (uint8 batches, normalise/erase in a jitted step, as train.main), "
                        "host (float32 batches from the workers)")
    p.add_argument("--json")
    return p


def default_workers(cores: int) -> list[int]:
    """0, 1, 2, 4, ... up to `cores`, and `cores` itself."""
    out, w = [0], 1
    while w < cores:
        out.append(w)
        w *= 2
    return out + [cores]


def main(argv=None) -> dict:
    p = parser()
    args = p.parse_args(argv)
    args.flax_modes = [m for m in args.flax_modes.split(",") if m]
    if not args.flax_modes or set(args.flax_modes) - {"device", "host"}:
        p.error(f"--flax-modes: expected a comma-separated subset of device,host, got {args.flax_modes}")
    args.workers = ([int(w) for w in args.workers.split(",") if w != ""] if args.workers
                    else default_workers(cpu_count()))
    for opt, low in (("files", CLASSES), ("batch", 1), ("batches", 1), ("repeats", 1), ("size", 1)):
        if getattr(args, opt) < low:
            p.error(f"--{opt} must be >= {low}, got {getattr(args, opt)}")
    if args.batch > args.files or any(w < 0 for w in args.workers) or args.min_side > args.max_side:
        p.error("need --batch <= --files, --workers >= 0 and --min-side <= --max-side")
    if args.min_side <= 64:
        p.error("--min-side must exceed 64 (smaller images take train.data's CIFAR-style pipeline)")
    res = run(args)
    command = "python -m benchmarks.input_pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(res, command.strip())
    print(text)
    if args.write_docs:
        write_markdown(args.write_docs, "input-pipeline", text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
