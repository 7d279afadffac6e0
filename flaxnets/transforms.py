"""Per-checkpoint eval preprocessing: torchvision's (and timm's) inference transforms, as data.

    tf = flaxnets.eval_transform("resnet50", weights="IMAGENET1K_V2")
    x = tf(PIL.Image.open("cat.jpg"))          # (224, 224, 3) float32, normalised, HWC
    logits = model.apply(variables, x[None], train=False)

The facts (resize size, crop size, interpolation, mean/std, published accuracy, weights file,
number of parameters) are read from ``flaxnets/data/weights.json``, generated from torchvision
0.28.0's weights enums and timm 1.0.31's pretrained cfgs by ``tools/gen_weights_meta.py``.

The transform follows torchvision's ``ImageClassification`` preset
(torchvision/transforms/_presets.py) on a PIL image, step for step:

* ``F.resize(img, [resize_size], interpolation)``: the shorter side becomes ``resize_size``,
  the longer ``int(resize_size * long / short)`` (truncated), through PIL's ``Image.resize``
  (antialiased for bilinear/bicubic, as torchvision on PIL input); an image already at that
  size is not resampled;
* ``F.center_crop(img, [crop_size])``: zero padding (left/top ``(crop - size) // 2``,
  right/bottom the rest) when the crop is larger than the image, then the crop at
  ``int(round((size - crop) / 2))`` (Python's round: halves to even);
* ``(x / 255 - mean) / std`` in float32, channels last (the Flax models' layout).

timm checkpoints use timm's eval transform (timm/data/transforms_factory.py,
``transforms_imagenet_eval`` with crop_mode "center"): resize of the shorter side to
``floor(input_size / crop_pct)`` with the cfg's interpolation, then the same center crop and
normalisation.

Input: a PIL image (converted to RGB if it is not, like torchvision's ImageFolder loader) or
an HWC uint8 numpy array (H, W, 3) or (H, W), turned into a PIL image first. PIL is imported
only when a transform is called.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from importlib import resources

import numpy as np

# torchvision.transforms.functional.pil_modes_mapping (InterpolationMode value -> PIL filter).
_PIL_FILTERS = {"nearest": 0, "nearest-exact": 0, "bilinear": 2, "bicubic": 3, "box": 4,
                "hamming": 5, "lanczos": 1}


@functools.lru_cache(maxsize=None)
def _load(filename: str) -> dict:
    return json.loads(resources.files("flaxnets").joinpath("data", filename).read_text())


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1K class names in torchvision's order (``_IMAGENET_CATEGORIES``)."""
    return list(_load("imagenet_classes.json")["categories"])


def _entry(name: str) -> tuple[str, dict]:
    db = _load("weights.json")
    for source in ("torchvision", "timm"):
        if name in db[source]:
            return source, db[source][name]
    known = sorted([*db["torchvision"], *db["timm"]])
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    raise ValueError(f"no published weights metadata for model {name!r}"
                     + (f" (did you mean {', '.join(close)}?)" if close else "")
                     + f"; models with weights: {', '.join(known)}")


def list_weights(name: str) -> list[str]:
    """The weights releases of model ``name`` (torchvision enum names, or timm tags)."""
    return list(_entry(name)[1]["weights"])


def weights_info(name: str, weights: str = "DEFAULT") -> dict:
    """Metadata of one weights release of ``name``: ``source`` ("torchvision"/"timm"), ``weights``
    (the resolved release name), ``resize_size``, ``crop_size``, ``interpolation``, ``mean``,
    ``std`` and what the generator recorded (torchvision: ``acc1``/``acc5``, ``num_params``,
    ``url``, ``file``; timm: the pretrained cfg's ``input_size``/``crop_pct``/..., ``url``)."""
    source, entry = _entry(name)
    key = entry["default"] if weights == "DEFAULT" else weights
    if key not in entry["weights"]:
        raise ValueError(f"{name} has no weights {weights!r}; valid: DEFAULT (= {entry['default']}), "
                         + ", ".join(entry["weights"]))
    info = {"source": source, "model": name, "weights": key, **entry["weights"][key]}
    if source == "timm":
        if info["crop_mode"] != "center" or info["input_size"][1] != info["input_size"][2]:
            raise ValueError(f"{name}.{key}: timm crop_mode {info['crop_mode']!r} / non-square input "
                             f"{info['input_size']} is not supported")
        size = info["input_size"][1]
        info.update(crop_size=size, resize_size=math.floor(size / info["crop_pct"]),
                    num_params=entry["num_params"])
    return info


@dataclasses.dataclass(frozen=True)
class EvalTransform:
    """Resize (shorter side) + center crop + normalise; call it on a PIL image or HWC uint8 array."""

    resize_size: int
    crop_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def crop(self, image) -> np.ndarray:
        """The resized, center-cropped image as (crop, crop, 3) uint8, before normalisation."""
        from PIL import Image

        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
                raise ValueError(f"expected an HWC uint8 array with 3 channels (or HW grayscale), got "
                                 f"{image.dtype} {image.shape}")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image or a uint8 numpy array, got {type(image).__name__}")
        if image.mode != "RGB":
            image = image.convert("RGB")
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), _PIL_FILTERS[self.interpolation])
        return center_crop(np.asarray(image), self.crop_size)

    def normalize(self, crop: np.ndarray) -> np.ndarray:
        """uint8 HWC -> float32 ``(x / 255 - mean) / std``, as torchvision's convert_image_dtype + normalize."""
        x = crop.astype(np.float32) / np.float32(255)
        return (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def __call__(self, image) -> np.ndarray:
        return self.normalize(self.crop(image))


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """torchvision.transforms.functional.center_crop on an HWC array: zero padding when the
    crop is larger than the image, then the crop at int(round((size - crop) / 2))."""
    h, w = arr.shape[:2]
    if size > w or size > h:
        pw, ph = max(size - w, 0), max(size - h, 0)
        arr = np.pad(arr, ((ph // 2, (ph + 1) // 2), (pw // 2, (pw + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return np.ascontiguousarray(arr[top:top + size, left:left + size])


def eval_transform(name: str, weights: str = "DEFAULT") -> EvalTransform:
    """The eval transform of model ``name``'s weights release ``weights`` ("DEFAULT", or e.g.
    "IMAGENET1K_V1", "IMAGENET1K_V2", "IMAGENET1K_SWAG_E2E_V1"; timm models: a pretrained tag)."""
    info = weights_info(name, weights)
    return EvalTransform(resize_size=int(info["resize_size"]), crop_size=int(info["crop_size"]),
                         interpolation=info["interpolation"], mean=tuple(info["mean"]), std=tuple(info["std"]))
